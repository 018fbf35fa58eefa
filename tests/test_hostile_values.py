"""Hostile tensor values: ±max of every float dtype, float64 values beyond float32, NaN / inf
everywhere, subnormals, constants, single elements, huge ranges.

Every run either gives a valid result (finite encodings unless --nonfinite keep asked for
AIMET's own) or one QcalcError naming the file, the tensor (and the channel) and the problem;
never a traceback, a numpy warning (RuntimeWarning is an error in this suite) or a hang.

The first part pins each defect the fuzzing campaign found to a minimal reproducer whose
expected result is worked out by hand (comments) or follows from an invariant; the second part
generates tensors with hypothesis. QCALC_FUZZ_EXAMPLES raises the examples per property for a
long session (`QCALC_FUZZ_EXAMPLES=2000 python -m pytest tests/test_hostile_values.py`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file
from typer.testing import CliRunner

import qcalc
from helpers import plain_text
from qcalc.cli import app
from qcalc.core.dtypes import FLOAT32_OVERFLOW, float32_view
from qcalc.core.grid import minmax_range, minimum_scale, scale_offset
from qcalc.core.spec import Spec
from qcalc.errors import HistogramError, NonFiniteError, QcalcError
from qcalc.ops.check import Thresholds, check
from qcalc.ops.hist import hist

runner = CliRunner()
F32_MAX = float(np.finfo(np.float32).max)
F64_MAX = float(np.finfo(np.float64).max)
MS = 2.0**-23  # minimum scale of every grid up to 16 bits
BF16 = np.dtype(ml_dtypes.bfloat16)
F8E4 = np.dtype(ml_dtypes.float8_e4m3fn)
F8E5 = np.dtype(ml_dtypes.float8_e5m2)
ANALYZERS = ("minmax", "percentile", "sqnr", "tf-enhanced")


def save(tmp_path, name: str, array: np.ndarray) -> str:
    """`array` as tensor `name` in a file: .npy, or .safetensors for bfloat16 / float8 (which
    .npy cannot hold)."""
    if array.dtype.name in ("bfloat16", "float8_e4m3fn", "float8_e5m2"):
        path = tmp_path / f"{name}.safetensors"
        save_file({name: np.ascontiguousarray(array)}, str(path))
    else:
        path = tmp_path / f"{name}.npy"
        np.save(path, array)
    return str(path)


def encode(path: str, **settings) -> qcalc.Encoding:
    (encoding,) = qcalc.compute_encodings([path], Spec(**settings)).encodings
    return encoding


def refused(error_type, path: str, **settings) -> str:
    with pytest.raises(error_type) as error:
        encode(path, **settings)
    return str(error.value)


def f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


# --- 1. float64 values beyond float32 ----------------------------------------------------------


def test_float32_view_threshold():
    """float32 max is (2 - 2^-23) 2^127; float64 values from max + half a step (2^128 - 2^103,
    the tie, which rounds to even: inf) up round to inf; below it they round to max."""
    assert FLOAT32_OVERFLOW == F32_MAX + 2.0**103
    below = np.nextafter(FLOAT32_OVERFLOW, 0)
    with np.errstate(over="ignore"):
        assert np.float32(FLOAT32_OVERFLOW) == np.inf and np.float32(below) == F32_MAX
    values = np.array([FLOAT32_OVERFLOW, below, -FLOAT32_OVERFLOW, 1.0, np.nan, -1e300])
    seen, changed = float32_view(values)
    assert changed == 3
    np.testing.assert_array_equal(seen, [np.inf, below, -np.inf, 1.0, np.nan, -np.inf])
    assert float32_view(np.array([below, 1.0]))[1] == 0


BIG = np.array([[1e39, -1.0], [2.0, 3.0]])  # float64; 1e39 > float32 max


@pytest.mark.parametrize("analyzer", ANALYZERS)
@pytest.mark.parametrize("per_channel", [False, True])
def test_float64_beyond_float32_is_counted_as_inf(tmp_path, analyzer, per_channel):
    """Defect 1: in float32 arithmetic (the default) 1e39 is +inf, so --nonfinite error
    refuses the tensor with the counts (it used to write an infinite grid, or crash in the
    histogram analyzers)."""
    path = save(tmp_path, "big", BIG)
    message = refused(NonFiniteError, path, analyzer=analyzer, per_channel=per_channel)
    assert message == (
        f"{path}: tensor 'big' holds 0 NaN, 1 +inf and 0 -inf values, counting 1 float64 "
        "value beyond the float32 range as inf (float32 arithmetic; see --compute-dtype) "
        "(--nonfinite ignore skips them, keep encodes them as AIMET does)"
    )


@pytest.mark.parametrize("analyzer", ANALYZERS)
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("nonfinite", ["ignore", "keep"])
def test_float64_beyond_float32_is_what_a_float32_model_holds(
    tmp_path, analyzer, per_channel, nonfinite
):
    """ignore leaves 1e39 out and keep feeds it as +inf: both exactly as for the float32
    tensor holding +inf in its place (the float32 model's tensor)."""
    settings = dict(analyzer=analyzer, per_channel=per_channel, nonfinite=nonfinite)
    got = encode(save(tmp_path, "big", BIG), **settings)
    model = encode(save(tmp_path, "model", f32([[np.inf, -1.0], [2.0, 3.0]])), **settings)
    for key in ("scale", "offset", "min", "max"):
        np.testing.assert_array_equal(getattr(got, key), getattr(model, key))
    if nonfinite == "ignore" and analyzer == "minmax" and not per_channel:
        # [-1, 3], 8-bit asymmetric: scale 4 / 255, offset round(-1 / scale) = round(-63.75)
        assert got.scale == np.float32(4) / np.float32(255) and got.offset == -64


def test_float64_range_overflowing_float32_in_float64_arithmetic(tmp_path):
    """--compute-dtype input: the range arithmetic runs in float64 and 1e39 is finite, but
    AIMET's quantizer parameters are float32: the scale overflows. Refused (error, ignore);
    keep gives AIMET's infinite encoding."""
    path = save(tmp_path, "big", BIG)
    for nonfinite in ("error", "ignore"):
        message = refused(NonFiniteError, path, compute_dtype="input", nonfinite=nonfinite)
        assert message == (
            f"{path}: tensor 'big': range [-1, 1e+39] overflows float32 arithmetic: the "
            "encoding's scale inf, min nan, max inf (--nonfinite keep encodes it as AIMET does)"
        )
    kept = encode(path, compute_dtype="input", nonfinite="keep")
    assert kept.scale == np.inf and math.isnan(kept.min)
    # the histogram analyzers bin in float32: AIMET's torch.histc raises on such a range
    message = refused(
        HistogramError, path, compute_dtype="input", nonfinite="keep", analyzer="percentile"
    )
    assert message.startswith(f"{path}: tensor 'big': range [-1, 1e+39] is beyond float32")
    message = refused(NonFiniteError, path, compute_dtype="input", analyzer="sqnr")
    assert message.startswith(f"{path}: tensor 'big': range [-1, 1e+39] overflows float32")


def test_float64_beyond_float32_in_check_and_hist(tmp_path):
    """check used to crash (per-channel percentile) or pass a tensor whose 1e39 the float32
    model holds as inf; now it is counted as an inf value, like NaN / inf, and left out of
    the error sums. hist leaves it out of the picture and counts it."""
    path = save(tmp_path, "big", BIG)
    for spec in (Spec(), Spec(per_channel=True, analyzer="percentile")):
        report = check([path], spec, Thresholds())
        (result,) = report.results
        assert result.failures == ("0 NaN and 1 inf values",)
        assert (result.metrics.elements, result.metrics.inf_count) == (3, 1)
    view = hist([path], Spec(), "big")
    assert (view.data.min, view.data.max, view.data.posinf) == (-1.0, 3.0, 1)
    assert view.counts.sum() == 3


def test_float32_range_overflow_is_refused_unless_kept(tmp_path):
    """Defect 1, finite tensors: ±float32 max spans 2 max, which overflows: AIMET's scale is
    inf / 255 = inf and its min inf * 0 = NaN. Never printed as an encoding by default."""
    path = save(tmp_path, "w", f32([[F32_MAX, -F32_MAX], [1.0, 2.0]]))
    for nonfinite in ("error", "ignore"):
        assert refused(NonFiniteError, path, nonfinite=nonfinite) == (
            f"{path}: tensor 'w': range [-3.40282347e+38, 3.40282347e+38] overflows float32 "
            "arithmetic: the encoding's scale inf, min nan, max inf (--nonfinite keep encodes "
            "it as AIMET does)"
        )
    # per channel, the channel is named; channel 1 ([1, 2]) alone is fine
    message = refused(NonFiniteError, path, per_channel=True)
    assert message.startswith(f"{path}: tensor 'w': channel 0: range [-3.40282347e+38, ")
    # histograms: AIMET's bin edges overflow (torch.histc raises), in every mode
    for nonfinite in ("error", "ignore", "keep"):
        message = refused(
            HistogramError, path, per_channel=True, analyzer="sqnr", nonfinite=nonfinite
        )
        assert message == (
            f"{path}: tensor 'w': channel 0: range [-3.40282347e+38, 3.40282347e+38] "
            "overflows float32 arithmetic: AIMET's histogram bin edges are not finite "
            "(torch.histc raises)"
        )
    kept = encode(path, nonfinite="keep")
    assert kept.scale == np.inf and math.isnan(kept.min) and kept.max == np.inf


def test_check_fails_a_tensor_that_cannot_be_encoded(tmp_path):
    """The CI gate reports the overflow as that tensor's failure (exit 1) and checks the
    others, as it does for NaN / inf."""
    path = save(tmp_path, "w", f32([F32_MAX, -F32_MAX]))
    other = save(tmp_path, "ok", f32([1.0, 2.0]))
    report = check([path, other], Spec(), Thresholds(min_sqnr=10))
    assert [r.name for r in report.failed] == ["w"]
    assert report.failed[0].failures == (
        "cannot be encoded: range [-3.40282347e+38, 3.40282347e+38] overflows float32 "
        "arithmetic: the encoding's scale inf, min nan, max inf",
    )
    assert report.failed[0].metrics is None
    result = runner.invoke(app, ["check", path, other, "--format", "jsonl"])
    assert result.exit_code == 1 and result.stderr == ""
    assert '"passed": false' in result.stdout and '"name": "ok", "passed": true' in result.stdout


# --- 2. extreme values in check, hist, ls, encode --------------------------------------------


EXTREMES = {
    "f16max": np.array([[65504, -65504], [1, 2]], np.float16),
    "bf16max": np.array([[3.3895314e38, -3.3895314e38], [1, 2]], BF16),
    "f32max": f32([[F32_MAX, -F32_MAX], [1, 2]]),
    "f64max": np.array([[F64_MAX, -F64_MAX], [1, 2]]),
    "allnan": np.full((2, 3), np.nan, np.float32),
    "sub32": np.full((2, 3), 1e-45, np.float32),
    "sub64": np.full((2, 3), 5e-324),
    "f8max": np.array([[448, -448], [1, 2]], F8E4),
}


@pytest.mark.parametrize("name", EXTREMES)
@pytest.mark.parametrize("command", ["encode", "check", "hist", "ls"])
def test_extreme_tensors_through_the_cli(tmp_path, name, command):
    """Defect 2: every command gives a result (exit 0 / 1) or one error line (exit 2)."""
    path = save(tmp_path, name, EXTREMES[name])
    args = {"hist": ["--tensor", name], "encode": ["--format", "json"]}.get(command, [])
    result = runner.invoke(app, [command, path, *args])
    assert_clean_exit(result)
    if result.exit_code == 2:
        assert result.stderr.startswith(f"qcalc: error: {path}: tensor '{name}'"), result.stderr
    elif command == "encode":
        assert_finite_records(result.stdout)


def assert_clean_exit(result) -> None:
    """Exit 0 / 1 with nothing on stderr, or exit 2 with one line "qcalc: error: ..."."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        result.exception,
        result.output,
    )
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert result.stdout == ""
        (line,) = result.stderr.splitlines()
        assert line.startswith("qcalc: error: ")
    else:
        assert result.exit_code in (0, 1) and result.stderr == "", result.output


def assert_finite_records(stdout: str) -> None:
    """encode's JSON records hold no NaN / Infinity number."""
    for record in json.loads(stdout):
        for key in ("min", "max", "scale", "offset"):
            assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in record[key])


def test_extremes_by_hand(tmp_path):
    """The results those extremes must give, worked out by hand."""
    # float16 ±65504 computes in float32: span 131008, scale 131008 / 255 (no overflow)
    enc = encode(save(tmp_path, "h", EXTREMES["f16max"]))
    assert enc.scale == np.float32(131008) / np.float32(255)
    # bfloat16 max 3.3895314e38: ±max spans 6.8e38 > float32 max: refused
    path = save(tmp_path, "b", EXTREMES["bf16max"])
    assert "overflows float32 arithmetic" in refused(NonFiniteError, path)
    # float8 e4m3 ±448: scale 896 / 255
    assert encode(save(tmp_path, "e", EXTREMES["f8max"])).scale == np.float32(896) / 255
    # ls: float64 subnormals (2^-1074): their mean is themselves and std 0 (it overflowed
    # scaling them); ±float64 max: mean (max - max + 1 + 2) / 4 = 0.75, std at most max
    (sub,) = qcalc.inventory([save(tmp_path, "s", EXTREMES["sub64"])])
    assert (sub.min, sub.max, sub.mean, sub.std) == (5e-324, 5e-324, 5e-324, 0.0)
    (big,) = qcalc.inventory([save(tmp_path, "m", EXTREMES["f64max"])])
    assert big.mean == 0.75 and 0 < big.std <= F64_MAX
    (nan,) = qcalc.inventory([save(tmp_path, "n", EXTREMES["allnan"])])
    assert (nan.min, nan.mean, nan.nan_count) == (None, None, 6)


@pytest.mark.parametrize("name, dtype", [("sub32", np.float32), ("sub64", np.float64)])
@pytest.mark.parametrize("per_channel", [False, True])
def test_tiny_values_quantize_to_zero_and_sqnr_is_0_db(tmp_path, name, dtype, per_channel):
    """Subnormal (or ~1e-25) values all quantize to 0 on a grid whose scale is at least 2^-23:
    the error is the value itself, so SQNR = 10 log10(Σx² / Σx²) = 0 dB. Squares that
    underflow (float32 below ~1e-19, float64 below ~1e-154) used to give 0 / 0 = +inf dB,
    passing any --min-sqnr."""
    for value in (EXTREMES[name].ravel()[0], dtype(1e-25), dtype(1e-160)):
        x = np.full((2, 3), value, dtype)
        if x.ravel()[0] == 0:
            continue
        enc = qcalc.encode_array(x, Spec(per_channel=per_channel))
        metrics = qcalc.array_metrics(x, enc)
        assert metrics.sqnr_db == 0.0 and metrics.max_abs_error == float(value)
        if per_channel:
            assert metrics.worst_sqnr_db == 0.0
    # one tiny channel beside an ordinary one: it is the worst (0 dB)
    x = np.array([[1e-25, 1e-25], [1.0, 2.0]], dtype)
    metrics = qcalc.array_metrics(x, qcalc.encode_array(x, Spec(per_channel=True)))
    assert (metrics.worst_sqnr_db, metrics.worst_index) == (0.0, 0)
    path = save(tmp_path, name, EXTREMES[name])
    (result,) = check([path], Spec(), Thresholds(min_sqnr=1)).results
    assert result.failures == ("sqnr 0.0 dB < 1",)


def test_hist_of_ranges_numpy_cannot_bin(tmp_path):
    """hist with AIMET's non-finite encoding (library, keep): no grid is drawn and the data
    range itself is binned: ±float64 max (its width overflows float64: binned halved), and a
    range of one subnormal step (too narrow for 71 bins: a unit-wide plot around it)."""
    wide = save(tmp_path, "w", np.array([F64_MAX, -F64_MAX, 1.0, np.nan]))
    view = hist([wide], Spec(nonfinite="keep", compute_dtype="input"), "w")
    assert view.grid_min is None and (view.lo, view.hi) == (-F64_MAX, F64_MAX)
    assert view.counts.sum() == 3 and view.counts[0] == 1 and view.counts[-1] == 1
    narrow = save(tmp_path, "n", np.array([0.0, 5e-324, np.nan]))
    view = hist([narrow], Spec(nonfinite="keep"), "n")
    assert view.grid_min is None and view.counts.sum() == 2
    assert view.lo == -0.5 and view.hi == 0.5 + 5e-324 / 2
    for view in (hist([wide], Spec(nonfinite="keep", compute_dtype="input"), "w"),):
        assert plain_text(view)


# --- 3. a cell without finite values under --nonfinite ignore --------------------------------


def zero_range(n: int, symmetric: bool):
    """The min-max result of a cell without finite values: [0, 0] widened by whole
    minimum steps (scale ms)."""
    rmin, rmax = minmax_range(np.float32(np.inf), np.float32(-np.inf), n, symmetric, np.float32)
    return rmin, rmax


GRANULARITIES = {
    "per-channel": dict(per_channel=True),
    "per-block": dict(block_size=2),
    "lpbq": dict(block_size=2, lpbq=True, symmetric=True, bitwidth=4),
}


@pytest.mark.parametrize("analyzer", ANALYZERS)
@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("symmetric", [False, True])
def test_cell_without_finite_values_gets_the_zero_range(tmp_path, analyzer, granularity, symmetric):
    """Defect 3: channel 0 holds only NaN / ±inf. Under ignore every analyzer gives its cells
    (blocks) min-max's zero range (scale ms = 2^-23, the grid [qmin ms, qmax ms] about 0)
    and channel 1 what it gets alone; the histogram analyzers raised HistogramError."""
    settings = {**GRANULARITIES[granularity], "analyzer": analyzer}
    if granularity == "lpbq" and not symmetric:
        return
    settings.setdefault("symmetric", symmetric)
    x = f32([[np.nan, np.inf, -np.inf, np.nan], [1.0, 2.0, 3.0, -1.0]])
    path = save(tmp_path, "x", x)
    enc = encode(path, nonfinite="ignore", **settings)
    scale = enc.scale.reshape(2, -1)
    assert np.all(np.isfinite(enc.scale)) and np.all(np.isfinite(enc.min))
    if granularity == "lpbq":  # channel 0: raw block scales ms, its scale ms / 2^(8 - 4)
        assert enc.per_channel_scale.reshape(-1)[0] == np.float32(MS) / 16
        assert np.all(scale[0] == np.float32(MS))  # multiplier round(ms / (ms / 16)) = 16
    else:
        assert np.all(scale[0] == np.float32(MS))
        n = enc.qmax - enc.qmin
        rmin, rmax = zero_range(n, enc.spec.symmetric)
        want_scale, want_offset = scale_offset(rmin, rmax, enc.qmin, enc.qmax, enc.spec.symmetric)
        assert np.all(enc.offset.reshape(2, -1)[0] == want_offset)
        assert want_scale == np.float32(MS)
        # channel 1 is as if encoded alone (the same cells, per tensor or its blocks)
        alone = encode(save(tmp_path, "c1", x[1:]), nonfinite="ignore", **settings)
        np.testing.assert_array_equal(scale[1], alone.scale.reshape(-1))
    # keep: AIMET raises for such a cell (torch.histc), naming it; min-max propagates NaN
    if analyzer != "minmax":
        message = refused(HistogramError, path, nonfinite="keep", **settings)
        assert message.startswith(f"{path}: tensor 'x': channel 0") and "no finite value" in message


@pytest.mark.parametrize("analyzer", ANALYZERS[1:])
def test_cell_empty_in_one_batch_only(tmp_path, analyzer):
    """Under ignore a batch in which a channel has no finite value adds nothing to it: the
    channel's encoding is that of the batches where it has values."""
    first = f32([[np.nan, np.nan, np.nan], [1.0, 5.0, -2.0]])
    second = f32([[0.5, -3.0, 2.0], [np.inf, np.nan, -np.inf]])
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    paths = [save(tmp_path / "a", "x", first), save(tmp_path / "b", "x", second)]
    spec = Spec(analyzer=analyzer, per_channel=True, nonfinite="ignore")
    (both,) = qcalc.compute_encodings(paths, spec).encodings
    row0 = qcalc.encode_array(second[:1], spec)  # channel 0: the second batch only
    row1 = qcalc.encode_array(first[1:], spec)  # channel 1: the first batch only
    assert both.scale.ravel().tolist() == [row0.scale.ravel()[0], row1.scale.ravel()[0]]
    assert both.offset.ravel().tolist() == [row0.offset.ravel()[0], row1.offset.ravel()[0]]
    # float16: a cell that started late keeps float16 stats (its first batch), the other one
    # went through no merge either: both round as single-batch float16 histograms do
    h = dataclasses.replace(spec, compute_dtype="input")
    (half,) = qcalc.compute_encodings(
        [
            save(tmp_path / "a", "y", first.astype(np.float16)),
            save(tmp_path / "b", "y", second.astype(np.float16)),
        ],
        h,
    ).encodings
    alone = qcalc.encode_array(second[:1].astype(np.float16), h)
    assert half.scale.ravel()[0] == alone.scale.ravel()[0]


@pytest.mark.parametrize("analyzer", ANALYZERS[1:])
def test_one_finite_value_with_nan_under_ignore(analyzer):
    """A cell whose range collapses (3e7 ± 0.5 rounds back to 3e7 in float32) used to raise
    under ignore because of its NaN, which ignore leaves out: it encodes as [3e7] alone."""
    spec = Spec(analyzer=analyzer, nonfinite="ignore", per_channel=True)
    with_nan = qcalc.encode_array(f32([[3e7, np.nan], [1.0, 2.0]]), spec)
    alone = qcalc.encode_array(f32([[3e7, 3e7], [1.0, 2.0]]), spec)
    np.testing.assert_array_equal(with_nan.scale, alone.scale)
    np.testing.assert_array_equal(with_nan.offset, alone.offset)


# --- found by the fuzzing below ----------------------------------------------------------------


@pytest.mark.parametrize(
    "x", [np.array(2.0), np.array(np.nan, np.float32), np.array(1e39), np.array(1.5, BF16)]
)
def test_scalar_tensors(x):
    """0-d tensors: metrics crashed on the general path (numpy returns scalars, not arrays, for
    0-d operands) and bfloat16 scalars in the min-max reduction of short rows."""
    enc = qcalc.encode_array(x, Spec(nonfinite="keep"))
    metrics = qcalc.array_metrics(x, enc)
    assert metrics.elements + metrics.nan_count + metrics.inf_count == 1
    if x.dtype == BF16:  # 1.5 on [0, 1.5]: level 255 exactly, no error
        assert enc.max == np.float32(1.5) and metrics.sqnr_db == math.inf


def test_merge_whose_rebinning_overflows(tmp_path):
    """Batch 1 holds 0 (histogram [-0.5, 0.5]); batch 2 holds -float32 max: AIMET's merge
    computes (start + dw - umin) / dw = inf, an int32 index of INT32_MIN, and index_add_
    raises. qcalc raised a ValueError from np.bincount; now a HistogramError naming the
    batch."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    paths = [save(tmp_path / "a", "x", f32(0.0)), save(tmp_path / "b", "x", f32(-F32_MAX))]
    with pytest.raises(HistogramError) as error:
        qcalc.compute_encodings(paths, Spec(analyzer="percentile"))
    assert str(error.value).startswith(
        f"{paths[1]}: tensor 'x': merging the range [-3.40282347e+38, 0.5] into the "
        "histogram overflows float32 arithmetic"
    )


def test_an_infinite_level_is_clipped():
    """bfloat16 max alone, SQNR analyzer, 2 bits: AIMET's candidate noises all overflow, so it
    keeps its first candidate, scale ms. x / ms overflows to inf: quantize clamps it to
    qmax = 3, so the value is clipped (fraction 1) and the grid use is 1 level of 4; the
    metrics used to drop the element's level (clipped 0, grid used 0)."""
    x = np.array([3.3895314e38], BF16)
    enc = qcalc.encode_array(x, Spec(analyzer="sqnr", bitwidth=2))
    assert enc.scale == np.float32(MS)
    metrics = qcalc.array_metrics(x, enc)
    assert (metrics.clipped_fraction, metrics.grid_used_fraction) == (1.0, 0.25)
    assert metrics.max_abs_error == float(np.float32(x[0])) - float(np.float32(3 * MS))


# --- fuzzing ------------------------------------------------------------------------------------

EXAMPLES = int(os.environ.get("QCALC_FUZZ_EXAMPLES", "0"))  # 0: each property's own default


def fuzz(default: int):
    """Settings of a property: `default` examples (QCALC_FUZZ_EXAMPLES overrides), no deadline
    (a shared 2-core machine), deterministic (the project's derandomized profile)."""
    return settings(
        max_examples=EXAMPLES or default,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


DTYPES = [np.dtype(np.float16), BF16, np.dtype(np.float32), np.dtype(np.float64), F8E4, F8E5]


def special_values(dtype: np.dtype) -> list[float]:
    """The values that break things in `dtype`: ±max (and half of it), ±smallest normal,
    ±smallest subnormal, ±0, ±inf, NaN, a few ordinary ones; float64 adds the float32
    boundary (max, the overflow threshold and just below it) and values beyond float32."""
    info = ml_dtypes.finfo(dtype) if dtype.kind != "f" else np.finfo(dtype)
    big, tiny = float(info.max), float(info.smallest_normal)
    sub = float(info.smallest_subnormal)
    values = [0.0, -0.0, 1.0, -1.0, 0.5, -3.0, big, -big, big / 2, -big / 2]
    values += [tiny, -tiny, sub, -sub, 3 * sub, np.inf, -np.inf, np.nan]
    if dtype == np.float64:
        below = float(np.nextafter(FLOAT32_OVERFLOW, 0))
        values += [F32_MAX, -F32_MAX, FLOAT32_OVERFLOW, below, -below, 1e39, -1e300, 1e-300]
    return values


@st.composite
def arrays(draw, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    """A tensor of `dtype` and `shape` made of special values, ordinary floats or a constant."""
    size = math.prod(shape)
    pool = special_values(dtype)
    kind = draw(st.sampled_from(["mixed", "constant", "special", "floats"]))
    if kind == "constant":
        values = [draw(st.sampled_from(pool))] * size
    elif kind == "special":
        values = draw(st.lists(st.sampled_from(pool), min_size=size, max_size=size))
    elif kind == "floats":
        values = draw(st.lists(st.floats(), min_size=size, max_size=size))
    else:
        element = st.sampled_from(pool) | st.floats(-1e4, 1e4) | st.floats(-1e-30, 1e-30)
        values = draw(st.lists(element, min_size=size, max_size=size))
    with np.errstate(all="ignore"):
        return np.array(values, dtype=np.float64).reshape(shape).astype(dtype)


@st.composite
def cases(draw, max_batches: int = 2):
    """(batches, spec): 1..max_batches tensors of one dtype and shape (rank 0..3), and
    quantization settings that are valid for them (every analyzer, granularity, nonfinite
    mode, grid, compute dtype)."""
    dtype = draw(st.sampled_from(DTYPES))
    rank = draw(st.integers(0, 3))
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=rank, max_size=rank)))
    count = draw(st.integers(1, max_batches))
    batches = [draw(arrays(dtype, shape)) for _ in range(count)]
    granularity = draw(st.sampled_from(["per-tensor", "per-channel", "per-block", "lpbq"]))
    settings = {}
    if granularity == "per-channel":
        settings.update(per_channel=True, axis=draw(st.sampled_from([0, -1])))
    elif granularity in ("per-block", "lpbq") and rank >= 2:
        length = shape[-1]
        block = draw(st.sampled_from([d for d in range(1, length + 1) if length % d == 0]))
        settings.update(block_size=block)
        if granularity == "lpbq":
            settings.update(lpbq=True, symmetric=True)
    symmetric = settings.get("symmetric", draw(st.booleans()))
    settings["symmetric"] = symmetric
    if symmetric and not settings.get("lpbq") and draw(st.booleans()):
        settings["strict_symmetric"] = True
    elif not settings.get("lpbq"):
        settings["signed"] = draw(st.sampled_from([None, True, False]))
    bitwidths = [2, 4, 8] if settings.get("lpbq") else [2, 4, 8, 16, 32]
    settings["bitwidth"] = draw(st.sampled_from(bitwidths))
    settings["analyzer"] = draw(st.sampled_from(ANALYZERS))
    if settings["analyzer"] != "minmax":
        settings["num_bins"] = draw(st.sampled_from([None, 1, 7]))
        settings["percentile"] = draw(st.sampled_from([50.0, 99.99, 100.0]))
    settings["nonfinite"] = draw(st.sampled_from(["error", "ignore", "keep"]))
    settings["compute_dtype"] = draw(st.sampled_from(["float32", "input"]))
    return batches, Spec(**settings)


def write(directory, batches: list[np.ndarray], name: str = "x") -> list[str]:
    """Each batch as tensor `name` in its own subdirectory (batches of one tensor)."""
    paths = []
    for i, batch in enumerate(batches):
        sub = directory / f"b{i}"
        sub.mkdir(exist_ok=True)
        paths.append(save(sub, name, batch))
    return paths


def arithmetic_view(batch: np.ndarray, spec: Spec) -> np.ndarray:
    """The values as the encoding's arithmetic sees them, as float64: float64 tensors in
    float32 arithmetic hold ±inf beyond float32."""
    values = batch.astype(np.float64)
    if batch.dtype == np.float64 and spec.compute_dtype == "float32":
        values = float32_view(values)[0]
    return values


def assert_names(message: str, paths: list[str], name: str = "x") -> None:
    """One line naming a file (the batch in question, or the batches' common directory) and
    the tensor."""
    assert "\n" not in message
    places = [*paths, os.path.commonpath(paths)]
    assert any(message.startswith(f"{p}: tensor '{name}'") for p in places), (message, paths)


COUNTS = re.compile(r"holds \d+ NaN, \d+ \+inf and \d+ -inf values")


def reference(directory, batches, spec: Spec, view) -> qcalc.Encoding:
    """Per tensor under ignore: the encoding of each batch's finite values alone (batches
    without any left out; none left: min-max's zero range, that of a lone 0)."""
    kept = []
    for batch, values in zip(batches, view):
        finite = np.isfinite(values)
        if finite.any():
            kept.append(batch[finite].ravel())
    alone = dataclasses.replace(spec, nonfinite="error")
    if not kept:
        kept = [np.zeros(1, batches[0].dtype)]
        alone = dataclasses.replace(alone, analyzer="minmax")
    paths = write(directory, kept, "finite")
    (encoding,) = qcalc.compute_encodings(paths, alone).encodings
    return encoding


@fuzz(200)
@given(cases(max_batches=3))
def test_fuzz_encode(tmp_path_factory, case):
    """encode (with metrics): a finite encoding and sane metrics, or one QcalcError naming the
    file and tensor. NaN / inf refusals happen exactly when --nonfinite error meets them;
    --nonfinite ignore per tensor equals encoding the finite values alone; chunks of a row
    give the encoding of the whole."""
    batches, spec = case
    directory = tmp_path_factory.mktemp("fuzz")
    paths = write(directory, batches)
    view = [arithmetic_view(b, spec) for b in batches]
    has_nonfinite = any(not np.isfinite(v).all() for v in view)
    try:
        (enc,) = qcalc.compute_encodings(paths, spec, metrics=True).encodings
    except QcalcError as error:
        assert isinstance(error, (NonFiniteError, HistogramError)), error
        assert_names(str(error), paths)
        if COUNTS.search(str(error)):  # NaN / inf refused: exactly when error mode meets them
            assert spec.nonfinite == "error" and has_nonfinite
        return
    assert not (spec.nonfinite == "error" and has_nonfinite)
    (small,) = qcalc.compute_encodings(paths, spec, chunk_bytes=8).encodings
    for key in ("scale", "offset", "min", "max"):
        np.testing.assert_array_equal(getattr(small, key), getattr(enc, key))
    if spec.nonfinite == "keep":
        return
    for key in ("scale", "offset", "min", "max"):
        assert np.isfinite(getattr(enc, key)).all(), key
    assert (enc.scale > 0).all()
    m = enc.metrics
    assert not math.isnan(m.sqnr_db) and m.mse >= 0 and 0 <= m.clipped_fraction <= 1
    if not (spec.compute_dtype == "input" and batches[0].dtype in (np.float16, BF16)):
        # AIMET's quantize-dequantize in float16 can overflow (65504 on a 2-bit grid: the
        # float16 scale 21840 times 3 is 65520, which rounds to inf): then the error is inf
        assert math.isfinite(m.mse) and math.isfinite(m.max_abs_error)
    assert m.nan_count + m.inf_count == sum(int((~np.isfinite(v)).sum()) for v in view)
    if m.grid_used_fraction is not None:
        assert 0 < m.grid_used_fraction <= 1
    if spec.nonfinite == "ignore" and enc.granularity == "per-tensor":
        want = reference(directory, batches, spec, view)
        np.testing.assert_array_equal(enc.scale, want.scale)
        np.testing.assert_array_equal(enc.offset, want.offset)


@fuzz(120)
@given(cases(max_batches=2), st.integers(0, 4), st.sampled_from([8, 1 << 20]))
def test_fuzz_check_ls_hist(tmp_path_factory, case, channel, chunk_bytes):
    """check, ls and hist on the same tensors (read whole, or in chunks of a row): results or
    one QcalcError, and their numbers agree with numpy on the values."""
    batches, spec = case
    directory = tmp_path_factory.mktemp("fuzz")
    paths = write(directory, batches)
    view = [arithmetic_view(b, spec) for b in batches]
    nonfinite = sum(int((~np.isfinite(v)).sum()) for v in view)
    try:
        report = check(paths, spec, Thresholds(min_sqnr=10, max_clip=0.5), chunk_bytes=chunk_bytes)
    except QcalcError as error:
        # only AIMET's own failure (kept): a histogram cell without finite value
        assert spec.nonfinite == "keep" and isinstance(error, HistogramError), error
        assert_names(str(error), paths)
    else:
        (result,) = report.results
        if result.metrics is None:
            assert result.failures[0].startswith("cannot be encoded: ")
        else:
            assert result.metrics.nan_count + result.metrics.inf_count == nonfinite
            assert (f"{result.metrics.nan_count} NaN" in " ".join(result.failures)) == bool(
                nonfinite
            )

    for batch, path in zip(batches, paths):
        (info,) = qcalc.inventory([path], chunk_bytes=chunk_bytes)
        values = batch.astype(np.float64)
        finite = values[np.isfinite(values)]
        assert info.nan_count == int(np.isnan(values).sum())
        assert info.inf_count == int(np.isinf(values).sum())
        if finite.size == 0:
            assert info.min is info.max is info.mean is info.std is None
            continue
        assert (info.min, info.max) == (finite.min(), finite.max())
        assert info.min <= info.mean <= info.max
        assert 0 <= info.std <= info.max / 2 - info.min / 2

    picked = None
    if batches[0].ndim >= 2:
        picked = channel % batches[0].shape[spec.axis]
    for k in (None, picked):
        try:
            view_ = hist(paths, spec, "x", channel=k, chunk_bytes=chunk_bytes)
        except QcalcError as error:
            assert_names(str(error), paths)
            continue
        assert view_.counts.sum() == view_.data.finite
        assert view_.lo <= view_.data.min and view_.data.max <= view_.hi
        assert plain_text(view_)


CLI_COMMANDS = ["encode", "check", "ls", "hist"]


@fuzz(60)
@given(cases(max_batches=1), st.sampled_from(CLI_COMMANDS))
def test_fuzz_cli(tmp_path_factory, case, command):
    """A sample through the command line: exit 0 / 1 with clean stderr and (encode) no NaN /
    Infinity unless --nonfinite keep, or exit 2 with exactly one line "qcalc: error: "."""
    (batch,), spec = case
    path = write(tmp_path_factory.mktemp("cli"), [batch])[0]
    args = ["-b", str(spec.bitwidth), "--analyzer", spec.analyzer]
    args += ["--symmetric"] if spec.symmetric else ["--asymmetric"]
    if spec.strict_symmetric:
        args.append("--strict-symmetric")
    if spec.per_channel:
        args += ["--per-channel", "--axis", str(spec.axis)]
    if spec.block_size is not None:
        args += ["--block-size", str(spec.block_size)]
    if spec.lpbq:
        args.append("--lpbq")
    if spec.num_bins is not None:
        args += ["--num-bins", str(spec.num_bins)]
    args += ["--percentile", repr(spec.percentile), "--compute-dtype", spec.compute_dtype]
    if command == "encode":
        args += ["--nonfinite", spec.nonfinite, "--format", "json", "--metrics"]
    elif command == "hist":
        args += ["--tensor", "x"]
    elif command == "ls":
        args = ["--format", "json"]
    result = runner.invoke(app, [command, path, *args])
    assert_clean_exit(result)
    if result.exit_code == 2:
        assert result.stderr.startswith(f"qcalc: error: {path}: tensor 'x'"), result.stderr
    elif command == "encode" and spec.nonfinite != "keep":
        assert_finite_records(result.stdout)
