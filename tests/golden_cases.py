"""Loading the AIMET 2.42 reference cases in tests/golden (see its README.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

GOLDEN = Path(__file__).parent / "golden"


def load_cases() -> list[dict]:
    with open(GOLDEN / "cases.jsonl") as f:
        return [json.loads(line) for line in f]


CASES = load_cases()


def inputs_of(case: dict) -> list[str]:
    paths = case["input"]
    return paths if isinstance(paths, list) else [paths]


def load_input(path: str, tensor_dtype: str) -> np.ndarray:
    """A golden input as the tensor AIMET saw (bfloat16 inputs are stored as float32)."""
    array = np.load(GOLDEN / path)
    if tensor_dtype == "bfloat16":
        import ml_dtypes

        return array.astype(ml_dtypes.bfloat16)
    return array.astype(tensor_dtype)


def is_minmax_grid_case(case: dict) -> bool:
    """Issue 2's scope: min-max analyzer, per-tensor or per-channel."""
    config = case["config"]
    return config["analyzer"] == "minmax" and config["granularity"] in ("per-tensor", "per-channel")


def is_supported_case(case: dict) -> bool:
    """What qcalc computes: every analyzer at every granularity (all golden cases)."""
    return True


def later_issue_topic(case: dict) -> str:
    return f"issue 4: {case['config']['analyzer']} analyzer"


def has_nonfinite(case: dict) -> bool:
    return any(not np.isfinite(load_input(p, "float32")).all() for p in inputs_of(case))


def as_float32(values) -> np.ndarray:
    """JSON numbers (NaN / inf spelled as strings) to a float32 array."""
    return np.asarray([float(v) for v in values], dtype=np.float32)


def bits_equal(actual, expected) -> bool:
    """Bit-identical float32 values (NaN equal to NaN, -0.0 distinct from 0.0)."""
    a = np.asarray(actual, dtype=np.float32).ravel()
    b = np.asarray(expected, dtype=np.float32).ravel()
    if a.shape != b.shape:
        return False
    both_nan = np.isnan(a) & np.isnan(b)
    return bool(np.all(both_nan | (a.view(np.uint32) == b.view(np.uint32))))


def spec_for_case(case: dict, **overrides):
    """The qcalc Spec that asks for what the case asked of AIMET (dtype arithmetic as AIMET's,
    non-finite values kept as AIMET keeps them)."""
    from qcalc import Spec

    config = case["config"]
    settings = dict(
        bitwidth=config["bitwidth"],
        symmetric=config["symmetric"],
        signed=config["signed"],
        strict_symmetric=config["strict"],
        per_channel=config["axis"] is not None,
        axis=config["axis"] or 0,
        block_size=config["block_size"],
        block_axis=config["block_axis"] if config["block_axis"] is not None else -1,
        lpbq=config["granularity"] == "lpbq",
        decompressed_bitwidth=config["decompressed_bitwidth"] or 8,
        analyzer=config["analyzer"],
        percentile=config["percentile"] if config["percentile"] is not None else 99.99,
        num_bins=config["num_bins"],
        compute_dtype="input",
        nonfinite="keep",
    )
    return Spec(**{**settings, **overrides})
