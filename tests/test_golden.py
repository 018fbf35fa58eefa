"""AIMET 2.42 reference cases (tests/golden): every golden encoding (the min-max, percentile,
SQNR and tf-enhanced analyzers; per-tensor, per-channel, per-block and LPBQ grids; single- and
multi-batch calibration) must come out of the CLI bit-identical (the cases that record
AIMET's memory-order bug instead show qcalc merging per channel), and on every single-input
case the library's quantize / quantize-dequantize must equal AIMET's outputs."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from typer.testing import CliRunner

from golden_cases import (
    CASES,
    GOLDEN,
    as_float32,
    bits_equal,
    cli_args as case_args,
    has_nonfinite,
    inputs_of,
    is_finite_case,
    link_batches,
    load_input,
    spec_for_case,
)
from qcalc import encode_array
from qcalc.cli import app
from qcalc.core.tensor import TensorRef

runner = CliRunner()


def records_aimet_bug(case: dict) -> bool:
    """Cases whose note records AIMET merging later batches' histograms in memory order for a
    channel axis other than 0; qcalc merges per channel (test_aimet_memory_order_bug)."""
    return "memory order" in case.get("note", "")


def _params(cases):
    for case in cases:
        if records_aimet_bug(case):
            continue
        yield pytest.param(case, id=case["id"])


def cli_args(case: dict) -> list[str]:
    """The flags that ask for what the case asked of AIMET; where AIMET's encoding is not
    finite although the input is (a range that overflows float32), `--nonfinite keep` asks
    for it (by default qcalc refuses it: test_overflowing_range_is_refused_by_default)."""
    args = case_args(case)
    if not is_finite_case(case) and "--nonfinite" not in args:
        args = [*args[:-2], "--nonfinite", "keep", *args[-2:]]
    return args


def run_encode(args: list[str]) -> list[dict]:
    result = runner.invoke(app, ["encode", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_matches_aimet(record: dict, expected: dict) -> None:
    assert record["qmin"] == expected["qmin"]
    assert record["qmax"] == expected["qmax"]
    for field in ("min", "max", "scale"):
        assert bits_equal(as_float32(record[field]), expected[field]), field
    offsets = as_float32(record["offset"])
    assert np.array_equal(offsets, np.asarray(expected["offset"], np.float32), equal_nan=True)


@pytest.fixture(params=[1, 2], ids=["jobs1", "jobs2"])
def jobs(request, monkeypatch):
    """--jobs 1, then --jobs 2 with tiny chunks, so that every golden tensor is reduced in
    many chunks spread over two threads and merged back in order."""
    if request.param > 1:
        chunks = TensorRef.chunks
        monkeypatch.setattr(
            TensorRef,
            "chunks",
            lambda self, max_bytes=0, row_multiple=1: chunks(self, 256, row_multiple),
        )
    return ["--jobs", str(request.param)]


@pytest.mark.parametrize("case", list(_params(CASES)))
def test_cli_encoding_matches_aimet(case, tmp_path, compiled, jobs):
    (record,) = run_encode([*link_batches(case, tmp_path), *cli_args(case), *jobs])
    expected = case["expected"]
    assert_matches_aimet(record, expected)
    axis = case["config"]["axis"]
    want_shape = case["config"]["encoding_shape"] if axis is not None else []
    assert record["encoding_shape"] == want_shape
    assert record["granularity"] == case["config"]["granularity"]


def _library_encoding(case: dict):
    """A single-input case's encoding through the library (multi-batch runs are covered
    through the CLI above)."""
    spec = spec_for_case(case)
    x = load_input(case["input"], case["tensor_dtype"])
    return encode_array(x, spec, name=case["id"]), x


SINGLE = [c for c in CASES if not isinstance(c["input"], list)]


@pytest.mark.parametrize("case", [pytest.param(c, id=c["id"]) for c in SINGLE])
def test_library_quantize_matches_aimet(case):
    enc, x = _library_encoding(case)
    expected = case["expected"]
    if expected.get("quantized") is None:
        with pytest.raises(ValueError) as error:
            enc.quantize(x)
        assert str(error.value) in expected["quantized_error"]
    else:
        reference = np.load(GOLDEN / expected["quantized"])
        quantized = enc.quantize(x)
        assert quantized.dtype == x.dtype
        assert np.array_equal(
            quantized.astype(np.float64), reference.astype(np.float64), equal_nan=True
        )


@pytest.mark.parametrize("case", [pytest.param(c, id=c["id"]) for c in SINGLE])
def test_library_qdq_matches_aimet(case):
    enc, x = _library_encoding(case)
    reference = np.load(GOLDEN / case["expected"]["qdq"])
    out = enc.quantize_dequantize(x)
    assert out.dtype == x.dtype
    assert bits_equal(out.astype(np.float32), reference)


def test_batches_in_one_directory_merge_like_separate_files(tmp_path):
    """A subdirectory of .npy batches is one tensor, merged as AIMET merges batches."""
    case = next(c for c in CASES if c["id"] == "mb5-minmax-pt-b8-asym-u")
    batch_dir = tmp_path / "dumps" / "act"
    batch_dir.mkdir(parents=True)
    for i, source in enumerate(inputs_of(case)):
        os.symlink(GOLDEN / source, batch_dir / f"{i:03d}.npy")
    (record,) = run_encode([str(tmp_path / "dumps"), *cli_args(case)])
    assert record["name"] == "act"
    assert_matches_aimet(record, case["expected"])


SEEDS = {c["id"]: c for c in CASES if c["group"] == "seed"}


@pytest.mark.parametrize("seed_id", sorted(SEEDS))
def test_seed_cases_default_flags(seed_id, compiled):
    """seed-1..4 through the CLI with only the flags a user would type."""
    case = SEEDS[seed_id]
    config = case["config"]
    args = [str(GOLDEN / case["input"]), "--format", "json"]
    if config["symmetric"]:
        args.append("--symmetric")
    if config["signed"] != config["symmetric"]:  # defaults: signed iff symmetric
        args.append("--signed" if config["signed"] else "--unsigned")
    (record,) = run_encode(args)
    assert_matches_aimet(record, case["expected"])


def test_seed4_zero_offset_reproduces_the_seed_article():
    """Pre-2025 AIMET unsigned symmetric: same scale, offset 0, range [0, 255 * scale]."""
    case = SEEDS["seed-4"]
    args = [str(GOLDEN / case["input"]), "--symmetric", "--unsigned"]
    (record,) = run_encode([*args, "--symmetric-offset", "zero", "--format", "json"])
    scale = np.float32(case["expected"]["scale"][0])  # the scale does not depend on the offset
    assert bits_equal(as_float32(record["scale"]), [scale])
    assert record["offset"] == [0]
    assert record["min"] == [0.0]
    assert bits_equal(as_float32(record["max"]), [np.float32(255) * scale])


BUG_CASES = [c for c in CASES if records_aimet_bug(c)]


@pytest.mark.parametrize("case", [pytest.param(c, id=c["id"]) for c in BUG_CASES])
def test_aimet_memory_order_bug(case, tmp_path, compiled):
    """For channel axes other than 0, AIMET 2.42 feeds later batches' histograms with rows in
    memory order instead of the channel's column. qcalc merges per channel: each channel of
    the per-channel result equals that channel's column encoded on its own, batch by batch,
    per tensor; and so it differs from AIMET's recorded (buggy) numbers."""
    axis = case["config"]["axis"]
    assert axis != 0 and isinstance(case["input"], list)
    (record,) = run_encode([*link_batches(case, tmp_path), *cli_args(case)])
    expected = case["expected"]
    assert not bits_equal(as_float32(record["scale"]), expected["scale"])

    batches = [load_input(p, case["tensor_dtype"]) for p in inputs_of(case)]
    per_tensor = [a for a in cli_args(case) if a not in ("--per-channel",)]
    per_tensor = [a for i, a in enumerate(per_tensor) if per_tensor[i - 1 : i] != ["--axis"]]
    per_tensor.remove("--axis")
    channels = batches[0].shape[axis]
    for c in range(channels):
        paths = []
        for i, batch in enumerate(batches):
            column_dir = tmp_path / f"ch{c}" / f"b{i}"
            column_dir.mkdir(parents=True)
            np.save(column_dir / "x.npy", np.ascontiguousarray(np.take(batch, c, axis=axis)))
            paths.append(str(column_dir / "x.npy"))
        (alone,) = run_encode([*paths, *per_tensor])
        assert bits_equal(as_float32(record["scale"])[c : c + 1], as_float32(alone["scale"]))
        assert record["offset"][c] == alone["offset"][0]


# finite inputs whose AIMET encoding is not finite
OVERFLOW_CASES = [c for c in CASES if not is_finite_case(c) and not has_nonfinite(c)]


def without_nonfinite(args: list[str]) -> list[str]:
    """`args` without a --nonfinite option."""
    if "--nonfinite" not in args:
        return args
    i = args.index("--nonfinite")
    return args[:i] + args[i + 2 :]


def test_the_golden_data_has_overflowing_cases():
    assert len(OVERFLOW_CASES) >= 2


@pytest.mark.parametrize("case", [pytest.param(c, id=c["id"]) for c in OVERFLOW_CASES])
def test_overflowing_range_is_refused_by_default(case, tmp_path):
    """A finite input whose range overflows float32 arithmetic: AIMET's encoding has an
    infinite scale (and a NaN min). qcalc writes it only under --nonfinite keep (above); by
    default, and under ignore (there is nothing non-finite to leave out), it is refused in one
    line naming the file, the tensor and the range, before anything is printed."""
    args = [*link_batches(case, tmp_path), *without_nonfinite(case_args(case))]
    for extra in ([], ["--nonfinite", "error"], ["--nonfinite", "ignore"]):
        result = runner.invoke(app, ["encode", *args, *extra])
        assert result.exit_code == 2 and result.stdout == ""
        (line,) = result.stderr.splitlines()
        assert line.startswith("qcalc: error: ") and "x.npy: tensor 'x'" in line
        assert "overflows float32 arithmetic: the encoding's scale inf" in line
