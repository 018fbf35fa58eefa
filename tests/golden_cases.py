"""The AIMET 2.42 reference cases in tests/golden (see its README.md): loading them, selecting
them, and turning them into what qcalc takes (a Spec, CLI flags, input files) and gives (an
Encoding, an encodings file, an encodings-file entry)."""

from __future__ import annotations

import copy
import functools
import json
import math
import os
from pathlib import Path

import numpy as np

from qcalc.core.encoding import Encoding
from qcalc.core.spec import Spec
from qcalc.io.formats import EncodingFile
from qcalc.io.formats.aimet import BLOCKWISE
from qcalc.io.formats.aimet import LEGACY_VERSIONS as LEGACY

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


# --- selecting cases ---------------------------------------------------------------------


def is_minmax_grid_case(case: dict) -> bool:
    """Min-max analyzer, per-tensor or per-channel."""
    config = case["config"]
    return config["analyzer"] == "minmax" and config["granularity"] in ("per-tensor", "per-channel")


def is_grid_case(case: dict) -> bool:
    """Per-tensor / per-channel, any analyzer: the JSON depends only on the final encoding."""
    return case["config"]["granularity"] in ("per-tensor", "per-channel")


def is_finite_case(case: dict) -> bool:
    """AIMET's scale, offset, min and max are all finite (an encodings file can hold them)."""
    expected = case["expected"]
    return all(
        math.isfinite(float(v)) for key in ("scale", "offset", "min", "max") for v in expected[key]
    )


@functools.cache
def _any_nonfinite(paths: tuple[str, ...]) -> bool:
    return any(not np.isfinite(load_input(p, "float32")).all() for p in paths)


def has_nonfinite(case: dict) -> bool:
    """Whether any input of the case holds NaN or infinity (read once per case)."""
    return _any_nonfinite(tuple(inputs_of(case)))


GRID_CASES = [c for c in CASES if is_grid_case(c)]  # any analyzer
FINITE_CASES = [c for c in GRID_CASES if is_finite_case(c)]
BLOCK_CASES = [c for c in CASES if c["config"]["granularity"] in BLOCKWISE]  # per-block, LPBQ


# --- comparing ---------------------------------------------------------------------------


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


# --- what the case asked of AIMET, as qcalc takes it --------------------------------------


def spec_for_case(case: dict, **overrides) -> Spec:
    """The qcalc Spec that asks for what the case asked of AIMET (dtype arithmetic as AIMET's,
    non-finite values kept as AIMET keeps them)."""
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


def cli_args(case: dict) -> list[str]:
    """The qcalc flags that ask for what the case asked of AIMET."""
    config = case["config"]
    args = ["-b", str(config["bitwidth"])]
    args.append("--symmetric" if config["symmetric"] else "--asymmetric")
    args.append("--signed" if config["signed"] else "--unsigned")
    if config["strict"]:
        args.append("--strict-symmetric")
    if config["axis"] is not None:
        args += ["--per-channel", "--axis", str(config["axis"])]
    if config["block_size"] is not None:
        args += [
            "--block-size",
            str(config["block_size"]),
            "--block-axis",
            str(config["block_axis"]),
        ]
    if config["granularity"] == "lpbq":
        args += ["--lpbq", "--decompressed-bitwidth", str(config["decompressed_bitwidth"])]
    if config["analyzer"] != "minmax":
        args += ["--analyzer", config["analyzer"]]
        if config["percentile"] is not None:
            args += ["--percentile", repr(config["percentile"])]
        if config["num_bins"] is not None:
            args += ["--num-bins", str(config["num_bins"])]
    if case["tensor_dtype"] != "float32":
        args += ["--compute-dtype", "input"]
    if has_nonfinite(case) or not is_finite_case(case):  # AIMET's own NaN / inf encodings
        args += ["--nonfinite", "keep"]
    return args + ["--format", "json"]


def link_batches(case: dict, tmp_path) -> list[str]:
    """Each input (batch) as a file of the same tensor name, so the CLI merges them."""
    if case["tensor_dtype"] == "bfloat16":
        sources = case["input_safetensors"]
        sources = sources if isinstance(sources, list) else [sources]
        name = "x.safetensors"
    else:
        sources, name = inputs_of(case), "x.npy"
    paths = []
    for i, source in enumerate(sources):
        batch_dir = tmp_path / f"batch{i}"
        batch_dir.mkdir()
        os.symlink(GOLDEN / source, batch_dir / name)
        paths.append(str(batch_dir / name))
    return paths


# --- what AIMET gave, as qcalc holds it ---------------------------------------------------


def golden_encoding(case: dict, name: str | None = None) -> Encoding:
    """The case's AIMET encoding (expected scale / offset / min / max, grid shape, spec; for
    per-block and LPBQ grids the block settings, LPBQ's per-channel scale shaped (C, 1) and
    integer multipliers shaped like the grid)."""
    config, expected = case["config"], case["expected"]
    shape = tuple(config["encoding_shape"])
    cells = lambda key: as_float32(expected[key]).reshape(shape)  # noqa: E731
    blocks: dict = {}
    if config["granularity"] in BLOCKWISE:
        block_axis = config["block_axis"] % len(shape)
        blocks = {"block_size": config["block_size"], "block_axis": block_axis}
    if config["granularity"] == "lpbq":
        channel_shape = tuple(1 if i == blocks["block_axis"] else n for i, n in enumerate(shape))
        blocks.update(
            per_channel_scale=as_float32(expected["per_channel_scale"]).reshape(channel_shape),
            per_block_int_scale=cells("per_block_int_scale"),
            decompressed_bitwidth=config["decompressed_bitwidth"],
        )
    spec = Spec(
        bitwidth=config["bitwidth"],
        symmetric=config["symmetric"],
        signed=config["signed"],
        strict_symmetric=config["strict"],
        per_channel=config["granularity"] != "per-tensor",
        axis=config["axis"] or 0,
        block_size=blocks.get("block_size"),
        block_axis=blocks.get("block_axis", -1),
        lpbq=config["granularity"] == "lpbq",
        decompressed_bitwidth=config.get("decompressed_bitwidth") or 8,
    )
    return Encoding(
        name=name or case["id"],
        source=case["id"],
        dtype=case["tensor_dtype"],
        shape=tuple(case["input_shape"]),
        spec=spec,
        granularity=config["granularity"],
        axis=config["axis"],
        qmin=expected["qmin"],
        qmax=expected["qmax"],
        scale=cells("scale"),
        offset=cells("offset"),
        min=cells("min"),
        max=cells("max"),
        raw_min=cells("raw_min"),
        raw_max=cells("raw_max"),
        **blocks,
    )


def golden_file(version: str) -> EncodingFile:
    """Every finite golden encoding a version can hold: per-channel ones as parameters,
    per-tensor ones as activations (names are the case ids)."""
    cases = [c for c in FINITE_CASES if not (version in LEGACY and c["config"]["strict"])]
    encs = [golden_encoding(c) for c in cases]
    return EncodingFile(
        params=[e for e in encs if e.granularity == "per-channel"],
        activations=[e for e in encs if e.granularity == "per-tensor"],
    )


def expected_entry(case: dict, version: str):
    """AIMET's to_qnn_encoding_dict(version) with the documented export adjustments:
    per-tensor grids built with shape (1,) are written as QuantSim writes them (a 0-d grid:
    PER_TENSOR in 1.0.0), and 2.x parameter entries carry the positive axis."""
    expected = copy.deepcopy(case["expected"][f"json_{version}"])
    if "error" in expected:
        return expected
    config = case["config"]
    if config["granularity"] == "per-tensor" and config["encoding_shape"] == [1]:
        if version == "1.0.0":
            assert expected["enc_type"] == "PER_CHANNEL"  # AIMET on shape (1,)
            expected["enc_type"] = "PER_TENSOR"
    elif config["granularity"] == "per-tensor":
        assert config["encoding_shape"] == []
        if version == "1.0.0":
            assert expected["enc_type"] == "PER_TENSOR"
    elif version not in LEGACY:
        assert expected["axis"] < 0  # counted from the end of the encoding shape
        expected["axis"] %= len(config["encoding_shape"])
        assert expected["axis"] == config["axis"]
    return expected
