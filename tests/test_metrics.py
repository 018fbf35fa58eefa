"""qcalc.core.metrics: quantization error of a tensor under an encoding.

Expected values are computed by hand (arithmetic in the comments), with plain float64 numpy
from AIMET's golden quantize-dequantize outputs (tests/golden), or from invariants (streamed
== in memory, batches == concatenation, a channel == that channel alone).
"""

from __future__ import annotations

import math
import os

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

from golden_cases import CASES, GOLDEN, inputs_of, load_input, spec_for_case
from qcalc import Spec, compute_encodings, encode_array
from qcalc.errors import SpecError
from qcalc.core.grid import effective_range
from qcalc.core.encoding import Metrics
from qcalc.core.metrics import array_metrics, tensor_metrics
from qcalc.io.readers import open_input
from qcalc.core.encoding import Encoding

BF16 = np.dtype(ml_dtypes.bfloat16)
SUMS = ("sqnr_db", "mse", "worst_sqnr_db")  # float64 sums: equal up to summation order
EXACT = (
    "max_abs_error",
    "clipped_fraction",
    "grid_used_fraction",
    "worst_index",
    "elements",
    "nan_count",
    "inf_count",
)


def make_encoding(scale, offset, qmin, qmax, granularity="per-tensor", axis=None, **blocks):
    """An Encoding with the given grid (float32 scale / offset in the grid's shape)."""
    scale = np.asarray(scale, dtype=np.float32)
    offset = np.asarray(offset, dtype=np.float32)
    lo, hi = effective_range(scale, offset, qmin, qmax)
    bitwidth = int(qmax - qmin).bit_length()
    spec = Spec(bitwidth=bitwidth, signed=qmin < 0, per_channel=axis is not None)
    return Encoding(
        name="t",
        source="<test>",
        dtype="float32",
        shape=None,
        spec=spec,
        granularity=granularity,
        axis=axis,
        qmin=qmin,
        qmax=qmax,
        scale=scale,
        offset=offset,
        min=lo,
        max=hi,
        raw_min=lo,
        raw_max=hi,
        **blocks,
    )


def f32(*values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def db(signal: float, noise: float) -> float:
    return 10 * math.log10(signal / noise)


def assert_same_metrics(actual: Metrics, expected: Metrics) -> None:
    for name in SUMS:
        a, b = getattr(actual, name), getattr(expected, name)
        if b is None or not math.isfinite(b):
            assert a == b or (a is not None and math.isnan(a) and math.isnan(b)), name
        else:
            # float32 row sums: chunking and layout change the last bits (module docstring)
            assert a == pytest.approx(b, rel=1e-6, abs=0), name
    for name in EXACT:
        a, b = getattr(actual, name), getattr(expected, name)
        assert a == b or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), name


# --- hand-computed cases -----------------------------------------------------------------

# 2-bit unsigned grid q in 0..3, scale 0.5, offset -2: xhat = (q - 2) * 0.5 in
# {-1, -0.5, 0, 0.5}; min = 0.5 * (-2 + 0) = -1, max = 0.5 * (-2 + 3) = 0.5.
TWO_BIT = make_encoding(0.5, -2, 0, 3)


def test_two_bit_hand_case():
    # x       x / 0.5   round (half even)  q = r + 2, clamp 0..3   xhat   x - xhat
    # -1.25   -2.5      -2                 0                       -1.0   -0.25
    # -0.375  -0.75     -1                 1                       -0.5    0.125
    #  0.125   0.25      0                 2                        0.0    0.125
    #  2.0     4.0       4                 6 -> 3 (clipped)         0.5    1.5
    m = array_metrics(f32(-1.25, -0.375, 0.125, 2.0), TWO_BIT)
    signal = 1.5625 + 0.140625 + 0.015625 + 4.0  # sum x^2 = 5.71875
    noise = 0.0625 + 0.015625 + 0.015625 + 2.25  # sum (x - xhat)^2 = 2.34375
    assert m.sqnr_db == pytest.approx(db(signal, noise), rel=1e-12)  # 10 log10(2.44) = 3.874 dB
    assert m.mse == 2.34375 / 4
    assert m.max_abs_error == 1.5
    # clipped: the level before the clamp is off the grid, i.e. only 2.0 (6 > 3); -1.25 is
    # below min = -1 but rounds onto level 0
    assert m.clipped_fraction == 1 / 4
    assert m.grid_used_fraction == 4 / 4  # levels 0..3 span the grid
    assert (m.worst_sqnr_db, m.worst_index) == (None, None)
    assert (m.elements, m.nan_count, m.inf_count) == (4, 0, 0)


def test_eight_bit_hand_case():
    # 8-bit signed grid q in -128..127, scale 1/16, offset 0: [min, max] = [-8, 7.9375].
    # x         x * 16    round     q               xhat      x - xhat
    #  0.09375   1.5       2        2                0.125    -0.03125
    # -3.0      -48      -48      -48               -3.0       0
    #  9.0       144      144      127 (clipped)     7.9375    1.0625
    # -8.03125  -128.5   -128     -128              -8.0      -0.03125  (below min: clipped)
    enc = make_encoding(1 / 16, 0, -128, 127)
    m = array_metrics(f32(0.09375, -3.0, 9.0, -8.03125), enc)
    signal = 0.0087890625 + 9.0 + 81.0 + 64.5009765625  # 154.509765625
    noise = 0.0009765625 + 0.0 + 1.12890625 + 0.0009765625  # 1.130859375
    assert m.sqnr_db == pytest.approx(db(signal, noise), rel=1e-12)  # 21.356 dB
    assert m.mse == 1.130859375 / 4
    assert m.max_abs_error == 1.0625
    assert m.clipped_fraction == 1 / 4  # 144 > 127; -128.5 rounds (half even) to -128
    assert m.grid_used_fraction == 256 / 256  # levels -128 .. 127 span the grid


def test_on_grid_tensor_has_no_error():
    # Every value is a level of TWO_BIT: xhat == x.
    m = array_metrics(f32(-1.0, -0.5, 0.5, 0.5), TWO_BIT)
    assert m.sqnr_db == math.inf
    assert (m.mse, m.max_abs_error, m.clipped_fraction) == (0.0, 0.0, 0.0)
    assert m.grid_used_fraction == 4 / 4  # levels 0, 1, 3: the span 0..3 is the grid


def test_all_zero_tensor():
    # 0 -> q = 2 -> xhat = 0: no error, no signal; SQNR +inf by definition.
    m = array_metrics(np.zeros((3, 5), np.float32), TWO_BIT)
    assert m.sqnr_db == math.inf
    assert (m.mse, m.max_abs_error, m.clipped_fraction) == (0.0, 0.0, 0.0)
    assert m.grid_used_fraction == 1 / 4
    assert m.elements == 15


def test_zero_signal_with_error_is_minus_inf():
    # Grid with offset 1: levels (q + 1) * 0.5 for q in 0..3, i.e. {0.5, 1, 1.5, 2}; 0 -> 0.5.
    enc = make_encoding(0.5, 1, 0, 3)
    m = array_metrics(np.zeros(4, np.float32), enc)
    assert m.sqnr_db == -math.inf
    assert m.mse == 0.25
    assert m.clipped_fraction == 1.0  # 0 / 0.5 - 1 = -1 < 0: every element off the grid


def test_record_keys_and_types():
    record = array_metrics(f32(-1.25, -0.375, 0.125, 2.0), TWO_BIT).record()
    assert list(record) == [
        "sqnr_db",
        "mse",
        "max_abs_error",
        "clipped_fraction",
        "grid_used_fraction",
        "worst_sqnr_db",
        "worst_index",
    ]
    assert all(type(v) is float for k, v in record.items() if not k.startswith("worst"))
    assert record["worst_sqnr_db"] is None and record["worst_index"] is None
    channel = np.array([[-1.25, 0.5], [0.125, 2.0]], np.float32)
    enc = make_encoding([[0.5], [0.5]], [[-2], [-2]], 0, 3, "per-channel", axis=0)
    record = array_metrics(channel, enc).record()
    assert type(record["worst_sqnr_db"]) is float and type(record["worst_index"]) is int


# --- grid use ------------------------------------------------------------------------------


def test_grid_used_is_the_span_of_levels_per_cell():
    # Two channels of TWO_BIT's grid: channel 0 hits levels {0, 1} (span 2), channel 1 hits
    # {0, 3} (span 4) -> (2 + 4) / (2 cells * 4 levels) = 0.75.
    x = np.array([[-1.0, -0.5, -0.5, -1.0], [-1.0, -1.0, 0.5, 0.5]], np.float32)
    enc = make_encoding([[0.5], [0.5]], [[-2], [-2]], 0, 3, "per-channel", axis=0)
    assert array_metrics(x, enc).grid_used_fraction == 0.75


def test_grid_used_on_a_32_bit_grid():
    # min-max over [-1, 1]: the data spans the whole grid, whatever the bitwidth
    x = np.linspace(-1, 1, 100, dtype=np.float32)
    assert array_metrics(x, encode_array(x, Spec(bitwidth=32))).grid_used_fraction == 1.0
    # half of the data: levels of [-1, 0] span about half of a 16-bit grid
    half = array_metrics(x[:50], encode_array(x, Spec(bitwidth=16))).grid_used_fraction
    assert half == pytest.approx(0.5, abs=0.01)


# --- non-finite values ---------------------------------------------------------------------


def test_nan_and_inf_are_counted_and_excluded():
    # The finite values are test_two_bit_hand_case's; NaN, +inf and -inf add nothing.
    x = f32(-1.25, np.nan, -0.375, np.inf, 0.125, -np.inf, 2.0, np.nan)
    m = array_metrics(x, TWO_BIT)
    assert (m.elements, m.nan_count, m.inf_count) == (4, 2, 2)
    assert m.mse == 2.34375 / 4
    assert m.sqnr_db == pytest.approx(db(5.71875, 2.34375), rel=1e-12)
    assert m.max_abs_error == 1.5
    assert m.clipped_fraction == 0.25  # 1 of 4 finite values; the infinities are not counted
    assert m.grid_used_fraction == 1.0  # finite values span all four levels


def test_nonfinite_in_one_channel_streamed():
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (6, 10)).astype(np.float32)
    clean = encode_array(x, Spec(bitwidth=4, per_channel=True, axis=1))
    dirty = x.copy()
    dirty[2, 3], dirty[4, 3], dirty[5, 7] = np.nan, np.inf, -np.inf
    m = tensor_metrics(_npy_refs(dirty), clean, chunk_bytes=1)  # one row per chunk
    assert (m.elements, m.nan_count, m.inf_count) == (57, 1, 2)
    # Channels 0-2, 4-6, 8-9 are untouched; channels 3 and 7 lose their non-finite rows.
    per_cell = _reference_cells(x, dirty, clean)
    assert m.worst_index == int(np.argmin(per_cell))
    assert m.worst_sqnr_db == pytest.approx(per_cell.min(), rel=1e-6)


def _reference_cells(x, dirty, enc) -> np.ndarray:
    """Per-channel (axis 1) SQNR over the finite entries of `dirty`, with numpy in float64."""
    xhat = enc.quantize_dequantize(x).astype(np.float64)  # the qdq itself is golden-tested
    finite = np.isfinite(dirty)
    x64 = np.where(finite, x, 0).astype(np.float64)
    noise = np.where(finite, x64 - xhat, 0.0)
    return 10 * np.log10((x64**2).sum(axis=0) / (noise**2).sum(axis=0))


# --- per-channel / per-block worst cell ------------------------------------------------------


def _channel_grid(axis: int):
    """8-bit signed symmetric per-channel grid, power-of-two scales; channel 2 is 32x coarser."""
    scales = np.array([2**-7, 2**-7, 2**-2, 2**-7], np.float32)
    shape = (4, 1) if axis == 0 else (1, 4)
    return make_encoding(scales.reshape(shape), np.zeros(shape), -128, 127, "per-channel", axis)


def _hand_qdq(x: np.ndarray, scale: float) -> np.ndarray:
    """float64 fake quantization on a signed 8-bit grid with offset 0; exact here because the
    scale is a power of two (x / scale and the product are exact)."""
    return np.clip(np.rint(x.astype(np.float64) / scale), -128, 127) * scale


@pytest.mark.parametrize("axis", [0, 1])
def test_worst_channel(axis):
    rng = np.random.default_rng(7)
    x = rng.uniform(-0.9, 0.9, (4, 32)).astype(np.float32)
    x = x if axis == 0 else np.ascontiguousarray(x.T)
    enc = _channel_grid(axis)
    m = array_metrics(x, enc)
    assert m.worst_index == 2
    channel = np.take(x, 2, axis=axis)
    noise = channel.astype(np.float64) - _hand_qdq(channel, 2**-2)
    expected = db(np.sum(channel.astype(np.float64) ** 2), np.sum(noise**2))
    assert m.worst_sqnr_db == pytest.approx(expected, rel=1e-6)
    alone = array_metrics(channel, make_encoding(2**-2, 0, -128, 127))
    assert m.worst_sqnr_db == pytest.approx(alone.sqnr_db, rel=1e-6)
    assert m.sqnr_db > m.worst_sqnr_db


def test_worst_ties_pick_the_lowest_index():
    x = np.tile(f32(0.3, -0.7, 0.1), (4, 1))  # four identical channels
    enc = make_encoding(np.full((4, 1), 0.25), np.zeros((4, 1)), -2, 1, "per-channel", 0)
    m = array_metrics(x, enc)
    assert m.worst_index == 0
    assert m.worst_sqnr_db == pytest.approx(m.sqnr_db, rel=1e-6)


def test_worst_block_is_a_flat_c_order_index():
    # (2, 8) tensor, blocks of 4 along axis 1 -> grid (2, 2); cell [1, 0] has the coarse
    # scale -> flat index 1 * 2 + 0 = 2.
    rng = np.random.default_rng(11)
    x = rng.uniform(-0.9, 0.9, (2, 8)).astype(np.float32)
    scales = np.array([[2**-7, 2**-7], [2**-2, 2**-7]], np.float32)
    enc = make_encoding(
        scales, np.zeros((2, 2)), -128, 127, "per-block", 0, block_size=4, block_axis=1
    )
    m = array_metrics(x, enc)
    assert m.worst_index == 2
    block = x[1, :4]
    noise = block.astype(np.float64) - _hand_qdq(block, 2**-2)
    assert m.worst_sqnr_db == pytest.approx(
        db(np.sum(block.astype(np.float64) ** 2), np.sum(noise**2)), rel=1e-6
    )


# --- streaming ---------------------------------------------------------------------------------


def _npy_refs(array: np.ndarray, tmp_path=None):
    """`array` as a TensorRef read from a file (npy, or safetensors for bfloat16)."""
    import tempfile

    directory = tmp_path or tempfile.mkdtemp()
    if array.dtype == BF16:
        path = os.path.join(directory, "t.safetensors")
        save_file({"t": np.ascontiguousarray(array)}, path)
    else:
        path = os.path.join(directory, "t.npy")
        np.save(path, array)
    return open_input(path)


GRANULARITIES = {
    "per-tensor": {},
    "pc-axis0": dict(per_channel=True, axis=0),
    "pc-axis1": dict(per_channel=True, axis=1),
    "block-axis1": dict(per_channel=True, axis=0, block_size=8, block_axis=1),
    "block-axis0": dict(per_channel=True, axis=1, block_size=4, block_axis=0),
    "lpbq": dict(symmetric=True, block_size=8, block_axis=1, lpbq=True, bitwidth=4),
}


@pytest.mark.parametrize("compute", ["float32", "input"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "float64"])
@pytest.mark.parametrize("granularity", sorted(GRANULARITIES))
def test_streamed_equals_in_memory(granularity, dtype, compute, tmp_path):
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((24, 32)) * rng.uniform(0.1, 4, (1, 32))).astype(np.float32)
    x[3, 5] = 40.0  # an outlier
    x = x.astype(BF16 if dtype == "bfloat16" else dtype)
    settings = {"bitwidth": 6, "compute_dtype": compute, **GRANULARITIES[granularity]}
    enc = encode_array(x, Spec(**settings))
    # Percentile clipping so that clipping and the tail are exercised too.
    clipped = encode_array(x, Spec(**settings, analyzer="percentile", percentile=95))
    for encoding in (enc, clipped):
        whole = array_metrics(x, encoding)
        (ref,) = _npy_refs(x, tmp_path)
        for chunk_bytes in (1, 100, 1 << 20):
            assert_same_metrics(tensor_metrics(ref, encoding, chunk_bytes=chunk_bytes), whole)
    assert array_metrics(x, clipped).clipped_fraction > 0


def test_batches_equal_their_concatenation(tmp_path):
    rng = np.random.default_rng(9)
    parts = [rng.standard_normal((n, 16)).astype(np.float32) for n in (5, 1, 7)]
    refs = []
    for i, part in enumerate(parts):
        (tmp_path / str(i)).mkdir()
        refs += _npy_refs(part, str(tmp_path / str(i)))
    whole = np.concatenate(parts)
    for spec in (Spec(bitwidth=4), Spec(bitwidth=4, per_channel=True, axis=1)):
        enc = encode_array(whole, spec)
        assert_same_metrics(tensor_metrics(refs, enc, chunk_bytes=64), array_metrics(whole, enc))


def test_bf16_is_evaluated_as_its_exact_float32_values():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 8)).astype(BF16)
    enc = encode_array(x, Spec(bitwidth=4))  # compute dtype float32: qdq on float32 values
    assert_same_metrics(array_metrics(x, enc), array_metrics(x.astype(np.float32), enc))


def test_grid_that_does_not_fit_is_an_error():
    enc = make_encoding(np.full((4, 1), 0.5), np.zeros((4, 1)), -2, 1, "per-channel", 0)
    with pytest.raises(SpecError, match="does not fit"):
        array_metrics(np.zeros((3, 2), np.float32), enc)


# --- AIMET's golden quantize-dequantize outputs ------------------------------------------------


def _golden_params():
    for case in CASES:
        if "memory order" in case.get("note", ""):
            continue  # qcalc's encoding deliberately differs from AIMET's there (DESIGN.md)
        if case["expected"].get("qdq") is None:
            continue
        yield pytest.param(case, id=case["id"])


def _golden_encoding(case: dict, tmp_path) -> Encoding:
    """qcalc's encoding for the case: all batches merged as AIMET calibrated them."""
    spec = spec_for_case(case)
    if not isinstance(case["input"], list):
        return encode_array(load_input(case["input"], case["tensor_dtype"]), spec)
    paths = []
    for i, source in enumerate(inputs_of(case)):
        (tmp_path / f"batch{i}").mkdir()
        os.symlink(GOLDEN / source, tmp_path / f"batch{i}" / "x.npy")
        paths.append(str(tmp_path / f"batch{i}" / "x.npy"))
    (enc,) = compute_encodings(paths, spec).encodings
    return enc


def _cells_of(case: dict, shape: tuple[int, ...]) -> np.ndarray:
    """Each element's flat cell index, from the case's own description of the grid."""
    expected = case["expected"]
    grid = tuple(expected["shape"])
    ids = np.arange(int(np.prod(grid, dtype=np.int64))).reshape(grid)
    block_size = case["config"]["block_size"]
    if block_size is not None:
        ids = np.repeat(ids, block_size, axis=case["config"]["block_axis"])
    return np.broadcast_to(ids, shape)


def _close(actual, expected) -> bool:
    if math.isnan(expected):
        return math.isnan(actual)
    if math.isinf(expected):
        return actual == expected
    # qcalc sums each chunk row's squares in float32 (BLAS dots), then chunks in float64
    return actual == pytest.approx(expected, rel=1e-6, abs=0)


@pytest.mark.parametrize("case", list(_golden_params()))
def test_matches_aimet_qdq(case, tmp_path):
    first = inputs_of(case)[0]
    x = load_input(first, case["tensor_dtype"])
    m = array_metrics(x, _golden_encoding(case, tmp_path))

    # Reference: AIMET's input and qdq output, in float64, finite elements only.
    x64 = np.load(GOLDEN / first).astype(np.float64)
    qdq64 = np.load(GOLDEN / case["expected"]["qdq"]).astype(np.float64)
    finite = np.isfinite(x64)
    n = int(finite.sum())
    with np.errstate(invalid="ignore"):
        error = x64[finite] - qdq64[finite]
    signal, noise = float(np.sum(x64[finite] ** 2)), float(np.sum(error**2))
    if noise == 0:
        sqnr = math.inf
    elif math.isnan(noise):
        sqnr = math.nan
    else:
        sqnr = 10 * math.log10(signal / noise) if signal else -math.inf
    assert (m.elements, m.nan_count) == (n, int(np.isnan(x64).sum()))
    assert m.inf_count == int(np.isinf(x64).sum())
    assert _close(m.sqnr_db, sqnr)
    assert _close(m.mse, noise / n)
    expected_max = float(np.max(np.abs(error))) if error.size else 0.0
    assert m.max_abs_error == expected_max or (
        math.isnan(m.max_abs_error) and math.isnan(expected_max)
    )

    # Clipping, from AIMET's own output: an element is clipped when the clamp moved it, i.e.
    # it landed on an end level of the grid from beyond it, more than half a step away. Half
    # a step (within float32 rounding of x / scale) is a tie that may or may not have been.
    cells = _cells_of(case, x64.shape)
    step = np.asarray(case["expected"]["scale"], np.float64)[cells]
    quantized = case["expected"].get("quantized")
    exact_levels = case["tensor_dtype"] == "float32" and case["config"]["bitwidth"] <= 16
    if quantized is not None and n and exact_levels and np.isfinite(step).all():
        q = np.load(GOLDEN / quantized).astype(np.float64)
        qmin, qmax = case["expected"]["qmin"], case["expected"]["qmax"]
        with np.errstate(invalid="ignore"):
            beyond = ((q == qmin) & (x64 < qdq64)) | ((q == qmax) & (x64 > qdq64))
            gap = np.abs(x64 - qdq64)
            # x / scale and (q + offset) * scale each round in float32: ~2 ulps of x
            tie = np.abs(gap - step / 2) <= step * 1e-6 + np.abs(x64) * 2.4e-7
        surely = int(np.count_nonzero(beyond & finite & (gap > step / 2) & ~tie))
        maybe = int(np.count_nonzero(beyond & finite & tie))
        assert surely <= m.clipped_fraction * n <= surely + maybe

    # Grid use from AIMET's integer outputs: each cell's span of levels.
    levels = case["expected"]["qmax"] - case["expected"]["qmin"] + 1
    ncells = int(np.prod(case["expected"]["shape"], dtype=np.int64))
    if quantized is not None and n and np.isfinite(case["expected"]["scale"]).all():
        q = np.load(GOLDEN / quantized).astype(np.float64)
        cell, level = cells[finite].ravel(), q[finite].ravel()
        lo = np.full(ncells, np.inf)
        hi = np.full(ncells, -np.inf)
        np.minimum.at(lo, cell, level)
        np.maximum.at(hi, cell, level)
        spans = np.where(np.isfinite(lo), hi - lo + 1, 0)
        assert m.grid_used_fraction == pytest.approx(spans.sum() / (ncells * levels), rel=1e-12)


def test_golden_cases_cover_every_granularity():
    covered = {p.values[0]["config"]["granularity"] for p in _golden_params()}
    assert covered == {"per-tensor", "per-channel", "per-block", "lpbq"}


@pytest.mark.parametrize("granularity", sorted(GRANULARITIES))
@pytest.mark.parametrize("analyzer", ["minmax", "percentile"])
@pytest.mark.parametrize("bitwidth", [4, 8, 16])
def test_fast_path_equals_general_path(granularity, analyzer, bitwidth, monkeypatch):
    """The in-place float32 path and the general (float64 error) path agree: clipped counts,
    max abs error and grid use exactly, the sums up to float32 dot-product rounding."""
    import qcalc.core.metrics

    rng = np.random.default_rng(11)
    x = (rng.standard_normal((24, 512)) * rng.uniform(0.1, 4, (1, 512))).astype(np.float32)
    x[3, 5] = 40.0
    settings = {**GRANULARITIES[granularity], "bitwidth": bitwidth}
    if granularity == "lpbq":
        settings["decompressed_bitwidth"] = bitwidth + 4
    enc = encode_array(x, Spec(analyzer=analyzer, percentile=95, **settings))
    fast = array_metrics(x, enc)
    monkeypatch.setattr(qcalc.core.metrics._Accumulator, "_add_rows", lambda *args: False)
    general = array_metrics(x, enc)
    assert_same_metrics(fast, general)
    assert fast.clipped_fraction == general.clipped_fraction
    if analyzer == "percentile":
        assert fast.clipped_fraction > 0


def test_a_cell_wholly_beyond_the_grid_uses_one_level():
    # 4-bit symmetric grid from [-1, 1]: scale 1/7, levels -8..7. Channel 1 holds [5, 6]:
    # 5 * 7 = 35 and 42 are both above 7, so every element is clipped onto level 7:
    # one level of 16 used in that cell; channel 0 ([-1, 1]) spans levels -7..7 (15 levels).
    grid_source = np.array([[-1.0, 1.0], [-1.0, 1.0]], np.float32)
    enc = encode_array(grid_source, Spec(bitwidth=4, symmetric=True, per_channel=True))
    x = np.array([[-1.0, 1.0], [5.0, 6.0]], np.float32)
    m = array_metrics(x, enc)
    assert m.clipped_fraction == 2 / 4
    assert m.grid_used_fraction == (15 + 1) / (2 * 16)
