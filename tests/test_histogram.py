"""The histogram observer and the percentile / SQNR / tf-enhanced analyzers (qcalc.core.histogram)
against every AIMET 2.42 golden case that uses them, plus properties of the streaming API."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golden_cases import CASES, as_float32, bits_equal, inputs_of, load_input
from qcalc.core import grid
from qcalc.core import histogram as H

F32 = np.float32
HIST_ANALYZERS = ("percentile", "sqnr", "tf-enhanced")
GRANULARITIES = ("per-tensor", "per-channel", "per-block")
from helpers import bin_edges, observe
from qcalc.core.stats import finite_minmax


def _finite_min_max(cells):
    """Each row's finite min / max as float32 (+inf / -inf for a row without one)."""
    stats, _ = finite_minmax(np.asarray(cells), (1,))
    return stats.min.ravel().astype(np.float32), stats.max.ravel().astype(np.float32)


def _is_hist_case(case: dict) -> bool:
    config = case["config"]
    return config["analyzer"] in HIST_ANALYZERS and config["granularity"] in GRANULARITIES


def _memory_order_bug(case: dict) -> bool:
    return "memory o" in (case.get("note") or "")


HIST_CASES = [case for case in CASES if _is_hist_case(case)]


def _dtype(case: dict) -> np.dtype:
    if case["tensor_dtype"] == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(case["tensor_dtype"])


def cells_of(x: np.ndarray, config: dict) -> np.ndarray:
    """(cells, m) float32: the elements of each encoding cell, cells in row-major order."""
    x = x.astype(F32)
    granularity = config["granularity"]
    if granularity == "per-tensor":
        return x.reshape(1, -1)
    if granularity == "per-channel":
        axis = config["axis"]
        return np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    assert granularity == "per-block" and x.ndim == 2 and config["block_axis"] == 1
    rows, cols = x.shape
    block = config["block_size"]
    return x.reshape(rows, cols // block, block).reshape(rows * (cols // block), block)


def _chunks(values: np.ndarray, pieces: int, rng: np.random.Generator) -> list[np.ndarray]:
    """`values` split along the element axis at random places (pieces of any size >= 1)."""
    m = values.shape[1]
    pieces = min(pieces, m)
    if pieces <= 1:
        return [values]
    cuts = np.sort(rng.choice(np.arange(1, m), size=pieces - 1, replace=False))
    return np.split(values, cuts, axis=1)


def calibrate(
    case: dict, pieces: int = 1, memory_order: bool = False, seed: int = 0
) -> H.Histogram:
    """Feed the case's batches through plan_batch / count / finish (several chunks are
    accumulated with ``count(..., out=)``).

    With `memory_order`, batches after the first are counted the way AIMET 2.42 does: the
    raw tensor reshaped to (cells, -1) in memory order (min/max still per true cell)."""
    config = case["config"]
    params = config.get("analyzer_params") or {}
    bins = config["num_bins"]
    growth = params.get("histogram_growth_limit")
    dtype = _dtype(case)
    rng = np.random.default_rng(seed)
    hist = None
    for path in inputs_of(case):
        x = load_input(path, case["tensor_dtype"])
        cells = cells_of(x, config)
        mn, mx = _finite_min_max(cells)
        binning = H.plan_batch(hist, mn, mx, bins, dtype, growth)
        counted = cells
        if memory_order and hist is not None:
            counted = x.astype(F32).reshape(cells.shape[0], -1)
        if pieces == 1:
            total = H.count(counted, binning)
        else:
            total = binning.zeros()
            for chunk in _chunks(counted, pieces, rng):
                H.count(chunk, binning, out=total)
        hist = H.finish(binning, total)
    return hist


def encoding_of(case: dict, hist: H.Histogram) -> dict:
    config = case["config"]
    expected = case["expected"]
    qmin, qmax = expected["qmin"], expected["qmax"]
    n = qmax - qmin
    symmetric = config["symmetric"]
    if config["analyzer"] == "percentile":
        rmin, rmax = H.percentile_range(hist, config["percentile"], n, symmetric)
    else:
        params = config["analyzer_params"]
        rmin, rmax = H.sqnr_range(
            hist,
            n,
            symmetric,
            asymmetric_delta_candidates=params["asymmetric_delta_candidates"],
            symmetric_delta_candidates=params["symmetric_delta_candidates"],
            offset_candidates=params["offset_candidates"],
            gamma=params["gamma"],
            p=params["p"],
        )
    scale, offset = grid.scale_offset(rmin, rmax, qmin, qmax, symmetric)
    emin, emax = grid.effective_range(scale, offset, qmin, qmax)
    return dict(raw_min=rmin, raw_max=rmax, scale=scale, offset=offset, min=emin, max=emax)


FIELDS = ("raw_min", "raw_max", "scale", "offset", "min", "max")


def mismatches(case: dict, got: dict) -> list[str]:
    expected = case["expected"]
    return [f for f in FIELDS if not bits_equal(got[f], as_float32(expected[f]))]


def _params(cases):
    return [pytest.param(case, id=case["id"]) for case in cases]


def test_every_histogram_case_is_covered():
    ids = {case["id"] for case in HIST_CASES}
    assert len(ids) == len(HIST_CASES) == 91
    assert sum(_memory_order_bug(case) for case in HIST_CASES) == 2


@pytest.mark.parametrize("case", _params([c for c in HIST_CASES if not _memory_order_bug(c)]))
@pytest.mark.parametrize("pieces", [1, 5])
def test_golden(case, pieces, compiled):
    got = encoding_of(case, calibrate(case, pieces=pieces, seed=pieces))
    assert mismatches(case, got) == []


@pytest.mark.parametrize("case", _params([c for c in HIST_CASES if _memory_order_bug(c)]))
def test_golden_memory_order_merge(case, compiled):
    """AIMET 2.42 counts later batches of a (1, C) encoding by memory rows, not columns: the
    correct per-channel merge differs from the golden numbers, the reproduced bug matches."""
    correct = encoding_of(case, calibrate(case))
    assert mismatches(case, correct) != []
    buggy = encoding_of(case, calibrate(case, pieces=3, memory_order=True))
    assert mismatches(case, buggy) == []


# ----------------------------------------------------------------------------- properties

finite32 = st.floats(-1e6, 1e6, width=32, allow_nan=False, allow_infinity=False)


@st.composite
def batches(draw, max_cells=4, max_m=40):
    cells = draw(st.integers(1, max_cells))
    m = draw(st.integers(1, max_m))
    values = draw(st.lists(finite32, min_size=cells * m, max_size=cells * m))
    x = np.array(values, dtype=F32).reshape(cells, m)
    # some ties and special values
    if draw(st.booleans()):
        x[:, 0] = x[:, -1]
    extras = draw(st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), max_size=3))
    for i, v in enumerate(extras):
        if m > 1:
            x[i % cells, (i * 7) % m] = v
    return x


def _has_finite_rows(x):
    return bool(np.isfinite(x).any(axis=1).all())


def _dtype_named(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches(),
    batches(),
    st.integers(1, 6),
    st.sampled_from([7, 64, 512]),
    st.sampled_from([None, 3.0]),
    st.sampled_from(["float32", "float16", "bfloat16"]),
    st.integers(0, 2**31),
)
def test_count_is_additive_over_chunks(first, second, pieces, bins, growth, dtype, seed):
    """Summing count() over any chunking of a batch (returned arrays, or accumulated with
    out=) gives exactly the counts of one call, batch after batch."""
    rng = np.random.default_rng(seed)
    dtype = _dtype_named(dtype)
    with np.errstate(over="ignore"):
        first = first.astype(dtype).astype(F32)
        second = second.astype(dtype).astype(F32)
    hist = None
    for x in (first, second[: first.shape[0]]):
        if x.shape[0] != first.shape[0] or not _has_finite_rows(x):
            break
        mn, mx = _finite_min_max(x)
        try:
            binning = H.plan_batch(hist, mn, mx, bins, dtype, growth)
            whole = H.count(x, binning)
        except H.HistogramError:
            # AIMET fails too, only where a range collapses to one value: a constant cell
            # whose +-0.5 widening rounds away (bf16 130 -> [130, 130]) holding NaN / inf,
            # or a later batch after such a cell (its limits are [c, c], or NaN)
            own = bin_edges(
                np.where(np.isfinite(mn), mn, 0), np.where(np.isfinite(mx), mx, 0), dtype, bins
            )
            collapsed = own[:, 0] == own[:, -1]
            if hist is not None:
                collapsed |= ~(hist.left < hist.right)
            assert collapsed.any()
            return
        summed, accumulated = binning.zeros(), binning.zeros()
        for chunk in _chunks(x, pieces, rng):
            summed += H.count(chunk, binning)
            assert H.count(chunk, binning, out=accumulated) is accumulated
        assert np.array_equal(summed, whole) and np.array_equal(accumulated, whole)
        if hist is None and dtype == np.float32:
            # first batch: every non-NaN value is counted exactly once, except in cells whose
            # bin edges collapse to one value (a subnormal range: the step underflows). There
            # torch.histc counts over [c - 1, c + 1] and AIMET adds the values above the last
            # edge again, so they count twice, as in AIMET.
            edges = bin_edges(binning.min, binning.max, dtype, bins)
            regular = edges[:, 0] != edges[:, -1]
            assert whole[regular].sum() == np.count_nonzero(~np.isnan(x[regular]))
        one, many = H.finish(binning, whole), H.finish(binning, summed)
        assert np.array_equal(one.counts.view(np.uint32), many.counts.view(np.uint32))
        hist = one


def test_small_chunks_scatter_like_bincount():
    """The scatter path (small chunk, out=) and the bincount path agree."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 50)).astype(F32)
    x[3, 4], x[7, 1], x[9, 9] = np.nan, np.inf, -np.inf
    mn, mx = _finite_min_max(x)
    binning = H.plan_batch(None, mn, mx, 2048, np.float32)
    acc = binning.zeros()
    for j in range(50):
        H.count(x[:, j : j + 1], binning, out=acc)
    assert np.array_equal(acc, H.count(x, binning))
    assert acc.sum() == x.size - 1


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), st.sampled_from([16, 100, 2048]), st.sampled_from([3, 15, 255]), st.booleans())
def test_percentile_100_brackets_minmax(x, bins, n, symmetric):
    """p = 100 takes the first and last bin edge: the finite data range (with zero), up to the
    float32 rounding of the last edge ``float32(bins) * step + min`` (and the 0.5 widening of
    a constant cell), then AIMET's min-scale and symmetric adjustments."""
    if not _has_finite_rows(x):
        return
    hist = observe(None, x, bins, np.float32)
    rmin, rmax = H.percentile_range(hist, 100.0, n, symmetric)
    mn, mx = _finite_min_max(x)
    e = bin_edges(hist.min, hist.max, hist.dtype, hist.bins)
    assert np.all(e[:, 0] == np.where(mn == mx, mn - F32(0.5), mn))
    tol = 4 * np.finfo(F32).eps * np.maximum(np.abs(mn), np.abs(mx)) + 2 * n * 2.0**-23
    assert np.all(np.abs(e[:, -1] - np.where(mn == mx, mx + F32(0.5), mx)) <= tol)
    assert np.all(rmin <= np.minimum(mn, 0) + tol)
    assert np.all(rmax >= np.maximum(mx, 0) - tol)
    if not symmetric:  # the range is the edges themselves (made to include 0)
        assert np.all(rmin == np.minimum(e[:, 0], 0))
        span_ok = (np.maximum(e[:, -1], 0) - rmin) / F32(n) >= F32(2.0**-23)
        assert np.all(rmax[span_ok] == np.maximum(e[:, -1], 0)[span_ok])
    # min-max: the same range up to the rounding of the last edge (min-max's symmetric 2-bit
    # grid divides the positive side by 2 steps; percentile has no such special case)
    if symmetric and n == 3:
        return
    lo, hi = grid.minmax_range(mn, mx, n, symmetric, np.float32)
    varied = mn < mx
    assert np.all(np.abs(rmin - lo)[varied] <= 2 * tol[varied])
    assert np.all(np.abs(rmax - hi)[varied] <= 2 * tol[varied] + np.abs(hi[varied]) * 2.0**-20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(-1000, 1000), min_size=2, max_size=30, unique=True),
    st.floats(0.25, 50),
    st.sampled_from([1.0, 3.0, 10.0]),
    st.sampled_from([16, 64, 512]),
)
def test_growth_limit_clamps(first_values, factor, growth, bins):
    """The first batch fixes [left, right] = edges +- range * limit / 2; later ranges grow
    with the data only up to those limits, and values beyond land in the end bins."""
    x = (np.array(first_values, dtype=F32) / F32(8))[None, :]
    hist = observe(None, x, bins, np.float32, growth)
    e = bin_edges(hist.min, hist.max, hist.dtype, hist.bins)[0]
    r = e[-1] - e[0]
    assert hist.left[0] == e[0] - r * F32(growth) / F32(2)
    assert hist.right[0] == e[-1] + r * F32(growth) / F32(2)
    centre = (e[0] + e[-1]) / F32(2)
    wide = np.array([[centre - F32(factor) * r, centre + F32(factor) * r, np.inf, np.nan]], F32)
    mn, mx = _finite_min_max(wide)
    binning = H.plan_batch(hist, mn, mx, bins, np.float32, None)
    assert binning.min[0] == min(max(mn[0], hist.left[0]), e[0])
    assert binning.max[0] == max(min(mx[0], hist.right[0]), e[-1])
    assert hist.left[0] <= binning.min[0] <= e[0] <= e[-1] <= binning.max[0] <= hist.right[0]
    merged = H.finish(binning, H.count(wide, binning))
    # rebinning keeps the old total; the 3 non-NaN new values are all counted
    assert merged.counts.sum() == hist.counts.sum() + 3
    assert np.all(merged.left == hist.left) and np.all(merged.right == hist.right)
    # without a limit the range follows the data
    free = observe(None, x, bins, np.float32, None)
    assert free.left[0] == -np.inf and free.right[0] == np.inf
    unlimited = H.plan_batch(free, mn, mx, bins, np.float32, None)
    assert unlimited.min[0] == min(mn[0], e[0]) and unlimited.max[0] == max(mx[0], e[-1])


def test_rebin_splits_counts_like_aimet():
    """Doubling the range folds pairs of old bins into one new bin; old counts are kept."""
    x = np.arange(16, dtype=F32)[None, :]
    hist = observe(None, x, 8, np.float32)
    assert hist.counts.tolist() == [[2] * 8]
    binning = H.plan_batch(hist, np.array([0.0], F32), np.array([30.0], F32), 8, np.float32)
    assert binning.carried.sum() == 16
    assert binning.carried[0, :4].sum() == 16  # old [0, 15] lies in the new bins 0..3
    same = H.plan_batch(hist, np.array([1.0], F32), np.array([14.0], F32), 8, np.float32)
    assert np.array_equal(same.carried, hist.counts)  # range unchanged: counts reused


def test_no_finite_value_raises():
    x = np.array([[1.0, 2.0], [np.nan, np.inf]], F32)
    mn, mx = _finite_min_max(x)
    with pytest.raises(H.HistogramError):
        H.plan_batch(None, mn, mx, 16, np.float32)


def test_collapsed_range_follows_torch_histc():
    """A constant cell whose +-0.5 widening rounds away (bfloat16 300 -> 300) has edges
    [c, c]: torch.histc then bins over (c - 1, c + 1), NaN / inf in it raise, and a later
    batch raises too (its growth limits are NaN: 0 * inf)."""
    import ml_dtypes

    x = np.full((1, 6), 300.0, F32)
    bf16 = np.dtype(ml_dtypes.bfloat16)
    mn, mx = _finite_min_max(x)
    binning = H.plan_batch(None, mn, mx, 8, bf16)
    assert binning.lo[0] == 299 and binning.hi[0] == 301 and binning.strict[0]
    hist = H.finish(binning, H.count(x, binning))
    assert hist.counts[0].tolist() == [0, 0, 0, 0, 6, 0, 0, 0]
    bad = x.copy()
    bad[0, 2] = np.nan
    with pytest.raises(H.HistogramError):
        H.count(bad, binning)
    with pytest.raises(H.HistogramError):
        H.plan_batch(hist, mn, mx, 8, bf16)


def test_searchsorted_matches_numpy_on_sorted_rows():
    rng = np.random.default_rng(2)
    cum = np.cumsum(rng.integers(0, 3, (400, 64)), axis=1).astype(F32)
    value = rng.uniform(-1, 140, 400).astype(F32)
    expected = [np.searchsorted(cum[i], value[i], side="left") for i in range(400)]
    assert H._searchsorted_left(cum, value).tolist() == expected


def test_histc_saturates_at_2_24():
    binning = H.plan_batch(None, np.array([0.0], F32), np.array([1.0], F32), 4, np.float32)
    counts = binning.zeros()
    counts[0, 0] = 2**24 + 5
    counts[0, 4] = 3  # below: added after the saturation
    hist = H.finish(binning, counts)
    assert hist.counts[0, 0] == F32(2**24) + F32(3)


def test_subnormal_range_collapses_and_counts_twice_as_aimet():
    """[0, 4e-45]: the bin step underflows, so all edges are 0. torch.histc then counts over
    [-1, 1] (both values land in bin int((x + 1) * 7 / 2) = 3), and AIMET adds
    #(x > edges[-1] = 0) = 1 to the last bin: 3 counts for 2 values."""
    x = np.array([[0.0, 4e-45]], dtype=np.float32)
    mn, mx = _finite_min_max(x)
    binning = H.plan_batch(None, mn, mx, 7, np.float32)
    counts = H.count(x, binning)
    assert counts[0, :7].tolist() == [0, 0, 0, 2, 0, 0, 0]
    assert counts[0, 7:].tolist() == [0, 1]  # below, above


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
@pytest.mark.parametrize("nonfinite", [False, True])
def test_count_shortcuts_equal_the_masked_count(dtype, nonfinite, monkeypatch):
    """count() skips its range masks and out-of-range counts when each row's min / max shows
    they are empty; with that evidence withheld (rows' min / max NaN) it takes the masked path,
    which must count the same, including a merged batch whose range is wider than the data."""
    import ml_dtypes

    np_dtype = np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((40, 300)) * rng.uniform(0.01, 10, (40, 1))).astype(np_dtype)
    x = x.astype(F32)
    if nonfinite:
        x[3, 4], x[7, 1], x[9, 9] = np.nan, np.inf, -np.inf
    mn, mx = _finite_min_max(x)
    first = H.finish(
        H.plan_batch(None, mn, mx, 512, np_dtype),
        H.count(x, H.plan_batch(None, mn, mx, 512, np_dtype)),
    )
    second = x[:, ::-1] * np.float32(0.5)  # a later, narrower batch: rebinned onto the range
    mn2, mx2 = _finite_min_max(second)
    for binning, values in (
        (H.plan_batch(None, mn, mx, 512, np_dtype), x),
        (H.plan_batch(first, mn2, mx2, 512, np_dtype), second),
    ):
        fast = H.count(values, binning)
        real = H.reduce_minmax

        def withheld(v, axes):
            stats = real(v, axes)
            return type(stats)(np.full_like(stats.min, np.nan), np.full_like(stats.max, np.nan))

        monkeypatch.setattr(H, "reduce_minmax", withheld)
        assert np.array_equal(fast, H.count(values, binning))
        monkeypatch.setattr(H, "reduce_minmax", real)


def test_cumulative_counts_match_torch_cumsum_in_both_paths():
    """int32 cumsum while totals are below 2^24, torch's double accumulation otherwise; both
    equal float32(double cumsum) of the counts."""
    rng = np.random.default_rng(6)
    small = rng.integers(0, 5000, (7, 2048)).astype(F32)  # totals ~5e6 < 2^24
    large = small.copy()
    large[2, 10] = 2.0**24  # this row's total passes 2^24: partial sums round in float32
    for counts in (small, large):
        reference = np.cumsum(counts.astype(np.float64), axis=1).astype(F32)
        got = H._cumulative_counts(counts)
        assert np.array_equal(got.astype(F32), reference)
    assert H._cumulative_counts(small).dtype == np.int32
    assert H._cumulative_counts(large).dtype == F32


@pytest.mark.parametrize("value", [1e8, -1e9, 3.0e38])
def test_count_of_a_range_collapsed_by_rounding(value, monkeypatch):
    """A constant cell beyond 2^25: its +-0.5 and +-1 widenings round away, so lo == hi and
    every quotient is NaN, which torch's pointer arithmetic sends to bin 0. The shortcut path
    must not take such a cell (it used to crash on the INT64_MIN index)."""
    x = np.random.default_rng(2).standard_normal((3, 8)).astype(F32)
    x[1] = np.float32(value)
    mn, mx = _finite_min_max(x)
    binning = H.plan_batch(None, mn, mx, 64, np.float32)
    counts = H.count(x, binning)
    assert counts[1, 0] == 8 and counts[1].sum() == 8  # all in bin 0, as AIMET counts them
    real = H.reduce_minmax
    monkeypatch.setattr(
        H, "reduce_minmax",
        lambda v, axes: type(real(v, axes))(
            np.full((v.shape[0], 1), np.nan, F32), np.full((v.shape[0], 1), np.nan, F32)
        ),
    )  # fmt: skip
    assert np.array_equal(counts, H.count(x, binning))
