"""The compiled histogram count (qcalc.core._histc) against the numpy path, bit for bit, and
the percentile shortcut (histogram.settled_percentile_bins) against the full computation."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
from unittest import mock

import ml_dtypes
import numpy as np
import pytest
from golden_cases import inputs_of, load_input
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_histogram import HIST_CASES, cells_of

from qcalc import Spec
from qcalc.core import histogram as H
from qcalc.core import kernels
from qcalc.core.calibrate import encode_batches
from qcalc.core.stats import finite_minmax
from qcalc.core.tensor import Progress, array_ref
from qcalc.errors import HistogramError

F32 = np.float32
BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = {"float32": np.dtype(F32), "float16": np.dtype(np.float16), "bfloat16": BF16}

needs_kernel = pytest.mark.skipif(
    not kernels.built("histc"), reason="qcalc was installed without its compiled kernels"
)


def slow(examples: int = 100):
    return settings(
        max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


def _finite_min_max(x: np.ndarray):
    stats, _ = finite_minmax(np.asarray(x, dtype=F32), (1,))
    return stats.min.ravel().astype(F32), stats.max.ravel().astype(F32)


def _counts_both_ways(x, binning, **kwargs):
    """(compiled, numpy) counts, or the HistogramError both raise (with the same message)."""
    results = []
    for enabled in (True, False):
        with kernels.use_compiled(enabled):
            try:
                results.append(H.count(x, binning, **kwargs))
            except HistogramError as error:
                results.append(str(error))
    return results


# ----------------------------------------------------------------------------- values

SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45, -1e-40, 3e38, -3e38, 65504.0, 1e-7]


@st.composite
def cell_values(draw, max_cells=5, max_m=70, dtypes=tuple(DTYPES)):
    """(cells, m) values of a drawn dtype: ordinary floats of a drawn scale, ties (a small
    pool), special values (NaN, inf, subnormals, near-overflow), constant rows."""
    dtype = DTYPES[draw(st.sampled_from(dtypes))]
    cells = draw(st.integers(1, max_cells))
    m = draw(st.integers(1, max_m))
    scale = draw(st.sampled_from([1e-42, 1e-30, 1e-3, 0.02, 1.0, 1e4, 1e30, 1e38]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    with np.errstate(all="ignore"):
        x = (rng.standard_normal((cells, m)) * scale).astype(F32)
        if draw(st.booleans()):  # ties: every value from a pool of a few
            pool = x.reshape(-1)[: draw(st.integers(1, 4))]
            x = rng.choice(pool, size=(cells, m)).astype(F32)
        if draw(st.booleans()) and cells > 1:
            x[draw(st.integers(0, cells - 1))] = x[0, 0]  # a constant row (collapsed range)
        for _ in range(draw(st.integers(0, 4))):
            x[rng.integers(cells), rng.integers(m)] = draw(st.sampled_from(SPECIALS))
        return x.astype(dtype)


def _plan_of(x: np.ndarray, bins: int) -> H.Binning:
    """A first batch's plan (outside property tests: it must exist)."""
    return H.plan_batch(None, *_finite_min_max(x), bins, x.dtype)


def _plan(x: np.ndarray, bins: int, growth=None, previous=None):
    """The plan of `x`, or an example hypothesis drops (AIMET refuses the batch)."""
    mn, mx = _finite_min_max(x)
    assume(np.isfinite(mn).all())  # AIMET refuses a cell without a finite value
    try:
        return H.plan_batch(previous, mn, mx, bins, x.dtype, growth)
    except HistogramError:
        assume(False)


# ----------------------------------------------------------------------------- count


ARBITRARY = np.array([0, -0.0, 1, -1, 1e-45, 3e38, -3e38, np.inf, -np.inf, np.nan, 1e-3, 0.5], F32)


def drawn_binning(x, bins: int, kind: str, rng):
    """A binning of `x`: "first" a first batch's; "merged" one merged into an earlier
    histogram (float32 range, input-dtype thresholds, values out of range; an earlier batch
    AIMET cannot bin is assumed away); "arbitrary" any lo / hi / below / above (collapsed,
    reversed, overflowing, non-finite)."""
    if kind == "merged":
        with np.errstate(over="ignore"):
            earlier = (x.astype(F32) * rng.uniform(0.1, 3)).astype(x.dtype)
        first = _plan(earlier, bins)
        try:
            with kernels.use_compiled(False):
                previous = H.finish(first, H.count(earlier, first))
        except HistogramError:
            assume(False)
        return _plan(x, bins, growth=rng.choice([None, 3.0]), previous=previous)
    binning = _plan(x, bins)
    if kind == "arbitrary":
        finite = x.astype(F32)[np.isfinite(x.astype(F32))]
        pool = np.concatenate([ARBITRARY, finite[:8], np.nextafter(finite[:4], np.inf)])
        pick = lambda: rng.choice(pool, binning.cells).astype(F32)  # noqa: E731
        binning = dataclasses.replace(binning, lo=pick(), hi=pick(), below=pick(), above=pick())
    return binning


@needs_kernel
@slow()
@given(
    cell_values(),
    st.sampled_from([1, 2, 7, 64, 512, 2048]),
    st.sampled_from(["first", "merged", "arbitrary"]),
    st.integers(0, 2**32 - 1),
)
def test_compiled_count_equals_numpy(x, bins, kind, seed):
    """Same counts (or the same HistogramError) for a first batch, a batch merged into an
    earlier histogram (float32 range, input-dtype thresholds, values out of range) and
    arbitrary ranges and thresholds (collapsed, reversed, overflowing)."""
    binning = drawn_binning(x, bins, kind, np.random.default_rng(seed))
    compiled, numpy = _counts_both_ways(x, binning)
    assert type(compiled) is type(numpy)
    assert np.array_equal(compiled, numpy)


@needs_kernel
@slow()
@given(cell_values(max_cells=6, max_m=90), st.sampled_from([3, 128, 2048]), st.data())
def test_compiled_count_is_additive_and_thread_independent(x, bins, data):
    """Chunks accumulated with `out`, over any split of the elements and any thread count,
    add up to the numpy count of the whole."""
    binning = _plan(x, bins)
    with kernels.use_compiled(False):
        try:
            whole = H.count(x, binning)
        except HistogramError:
            assume(False)
    m = x.shape[1]
    cuts = sorted(data.draw(st.lists(st.integers(0, m), max_size=4)))
    workers = data.draw(st.integers(1, 5))
    total = binning.zeros()
    with kernels.use_compiled(True), mock.patch.object(H, "_THREADED_ELEMENTS", 0):
        for piece in np.split(x, cuts, axis=1):
            H.count(piece, binning, out=total, workers=workers)
        assert np.array_equal(total, whole)
        rows = data.draw(st.integers(0, x.shape[0]))  # and a run of cells on its own
        part = slice(0, rows)
        got = H.count(x[part], binning.rows(part), workers=workers)
    assert np.array_equal(got, whole[part])


@needs_kernel
@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_compiled_count_reads_every_half_value(dtype):
    """All 65 536 float16 / bfloat16 bit patterns (or as many float32 values) in one row:
    the kernel's own conversion to float32 is exact."""
    if dtype == "float32":
        x = np.random.default_rng(0).standard_normal((1, 65536)).astype(F32)
        x[0, :8] = [np.nan, np.inf, -np.inf, 0, -0.0, 1e-45, 3e38, -3e38]
    else:
        x = np.arange(65536, dtype=np.uint16).view(DTYPES[dtype]).reshape(1, -1)
    for bins, (lo, hi) in itertools.product((1, 2048), ((-1000, 1000), (-1e-6, 3e-5))):
        binning = H.plan_batch(None, np.array([lo], F32), np.array([hi], F32), bins, x.dtype)
        for workers in (1, 3):
            with mock.patch.object(H, "_THREADED_ELEMENTS", 0):
                compiled, numpy = _counts_both_ways(x, binning, workers=workers)
            assert np.array_equal(compiled, numpy)


@needs_kernel
def test_compiled_count_other_dtypes_and_layouts():
    """float64 and big-endian values are converted as the numpy path converts them; strided
    views are copied; bad accumulators are refused the same way."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 300)) * 3
    binning = _plan_of(x.astype(F32), 64)
    for values in (x, x.astype(">f4"), x.astype(F32)[:, ::2], x.astype(F32).T.copy().T):
        b = binning if values.shape[1] == 300 else _plan_of(values.astype(F32), 64)
        compiled, numpy = _counts_both_ways(values, b)
        assert np.array_equal(compiled, numpy)
    with kernels.use_compiled(True), pytest.raises(ValueError, match="C-contiguous int64"):
        H.count(x, binning, out=np.zeros((4, 66), dtype=np.int32))


@needs_kernel
def test_compiled_count_refuses_strict_cells_with_nonfinite_values():
    x = np.full((3, 5), 1e8, dtype=F32)  # +-0.5 vanishes: the range collapses
    x[0] = np.arange(5)
    binning = _plan_of(x, 16)
    assert binning.strict[1:].all()
    x[2, 3] = np.nan
    compiled, numpy = _counts_both_ways(x, binning)
    assert compiled == numpy and "cell 2" in compiled


# ----------------------------------------------------------------------------- percentile


PERCENTILES = [50, 75, 99, 99.5, 99.9, 99.99, 99.999, 99.9999, 99.99999, 99.999999, 100]


def _clean_min_max(x: np.ndarray):
    """Each row's min / max as count sees it, NaN for a row holding NaN or inf."""
    xf = x.astype(F32)
    clean = np.isfinite(xf).all(axis=1)
    mn, mx = _finite_min_max(xf)
    return np.where(clean, mn, np.nan).astype(F32), np.where(clean, mx, np.nan).astype(F32)


def _check_settled(x, binning, percentile, num_steps=255, symmetric=True):
    """The settled cells' bins and ranges equal those of the counted histogram; returns how
    many cells were settled."""
    try:
        hist = H.finish(binning, H.count(x, binning))
    except HistogramError:  # a strict cell: nothing to compare (counting is not skipped)
        return 0
    settled = H.settled_percentile_bins(binning, *_clean_min_max(x), x.shape[1], percentile)
    s = settled.settled
    imin, imax = H.percentile_bins(hist, percentile)
    assert np.array_equal(settled.imin[s], imin[s])
    assert np.array_equal(settled.imax[s], imax[s])
    full = H.percentile_range(hist, percentile, num_steps, symmetric)
    short = H.percentile_range(H.uncounted(binning), percentile, num_steps, symmetric, settled)
    for a, b in zip(full, short):
        assert np.array_equal(a[s].view(np.uint32), b[s].view(np.uint32))
    mixed = H.percentile_range(hist, percentile, num_steps, symmetric, settled)
    for a, b in zip(full, mixed):  # settled cells overridden, the rest searched: all equal
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
    return int(s.sum())


@slow(400)
@given(
    cell_values(max_m=120),
    st.one_of(st.sampled_from(PERCENTILES), st.floats(50, 100)),
    st.sampled_from([1, 2, 5, 512, 2048]),
    st.sampled_from([1, 3, 15, 255]),
    st.booleans(),
)
def test_settled_percentile_bins_equal_the_full_computation(
    x, percentile, bins, num_steps, symmetric
):
    _check_settled(x, _plan(x, bins), percentile, num_steps, symmetric)


@needs_kernel
@slow(200)
@given(
    cell_values(max_m=120),
    st.one_of(st.sampled_from(PERCENTILES), st.floats(50, 100)),
    st.sampled_from([1, 2, 5, 512, 2048]),
    st.integers(1, 4),
)
def test_searched_percentile_bins_equal_the_counted_search(x, percentile, bins, workers):
    """The compiled count-and-search of whole rows equals the search in the counted matrix
    (every cell, settled or not: NaN, inf, float16 drops and double counts included)."""
    binning = _plan(x, bins)
    try:
        hist = H.finish(binning, H.count(x, binning))
    except HistogramError:
        with kernels.use_compiled(True), pytest.raises(HistogramError):
            H.searched_percentile_bins(x, binning, percentile)
        return
    with kernels.use_compiled(True), mock.patch.object(H, "_THREADED_ELEMENTS", 0):
        imin, imax = H.searched_percentile_bins(x, binning, percentile, workers=workers)
    expected = H.percentile_bins(hist, percentile)
    assert np.array_equal(imin, expected[0]) and np.array_equal(imax, expected[1])
    with kernels.use_compiled(False):
        assert H.searched_percentile_bins(x, binning, percentile) is None


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@pytest.mark.parametrize("m", [1, 2, 100, 2048, 5632, 9994])
def test_llm_rows_are_settled_at_99_99(dtype, m):
    """Weights of an LLM (rows of up to 9 994 values, a few outlier rows) at the default
    99.99%: every row settled, and equal to the counted result. (From 9 995 values on,
    float32 rounding can put vmax at T - 1: the cells are counted.)"""
    rng = np.random.default_rng(m)
    x = (rng.standard_normal((24, m)) * 0.02).astype(F32)
    x[3] *= 50
    x[5, :] = x[5, 0]  # a constant row
    x = x.astype(DTYPES[dtype])
    assert _check_settled(x, _plan_of(x, 2048), 99.99) == 24


def test_settled_percentile_bins_edge_cases():
    """Percentile 100 needs no count; no cell is settled when the searched counts fall inside
    the histogram (vmin > 1 or vmax <= T - 1), after a merge, with 2^24 values or with a NaN."""
    x = np.random.default_rng(3).standard_normal((4, 1000)).astype(F32)
    binning = _plan_of(x, 2048)
    mn, mx = _clean_min_max(x)
    assert H.settled_percentile_bins(binning, mn, mx, 1000, 100).settled.all()
    assert _check_settled(x, binning, 100) == 4
    for p in (99.9, 99.0, 50):  # 1000 * 0.001 = 1 (vmin ~1: settled only if <= 1 in float32)
        _check_settled(x, binning, p)
    assert not H.settled_percentile_bins(binning, mn, mx, 1000, 99.0).settled.any()
    assert not H.settled_percentile_bins(binning, mn, mx, 2**24, 99.99999).settled.any()
    previous = H.finish(binning, H.count(x, binning))
    merged = H.plan_batch(previous, mn * 2, mx * 2, 2048, F32)
    assert not H.settled_percentile_bins(merged, mn * 2, mx * 2, 1000, 99.99).settled.any()
    nan = mn.copy()
    nan[1] = np.nan
    assert H.settled_percentile_bins(binning, nan, mx, 1000, 99.99).settled.tolist() == [
        True, False, True, True,
    ]  # fmt: skip


def test_settled_percentile_bins_float16_top_edge():
    """float16 thresholds: the last edge is rounded to float16, and a max above the float32
    last edge but not above its float16 rounding is dropped by AIMET's count (e.g. [-0.001317,
    128] in 2048 bins; often with 5 bins). Such cells are not settled (the drop changes the
    total and the last bin); the others agree with the count."""
    rng = np.random.default_rng(9)
    settled = dropped = 0
    for bins in (5, 2048):
        for _ in range(100):
            x = (rng.standard_normal((8, 64)) * rng.uniform(1e-3, 1e3)).astype(np.float16)
            x[0, :2] = [-0.0013170242, 128.0]
            x[0, 2:] = np.clip(x[0, 2:], -0.0013170242, 128.0)
            binning = _plan_of(x, bins)
            mx = x.astype(F32).max(axis=1)
            drop = (mx > binning.hi) & (mx <= binning.above)
            mn, mx = _clean_min_max(x)
            s = H.settled_percentile_bins(binning, mn, mx, 64, 99.99).settled
            assert not (s & drop).any()
            dropped += int(drop.sum())
            settled += _check_settled(x, binning, 99.99)
    assert dropped >= 100 and settled > 0


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, id=case["id"])
        for case in HIST_CASES
        if case["config"]["analyzer"] == "percentile" and len(inputs_of(case)) == 1
    ],
)
def test_settled_percentile_bins_on_golden_cases(case):
    config = case["config"]
    x = load_input(inputs_of(case)[0], case["tensor_dtype"])
    dtype = BF16 if case["tensor_dtype"] == "bfloat16" else np.dtype(case["tensor_dtype"])
    cells = cells_of(x, config).astype(dtype)
    binning = _plan_of(cells, config["num_bins"])
    _check_settled(cells, binning, config["percentile"])


# ----------------------------------------------------------------------------- end to end


def encoding_numbers(x, spec, chunk_bytes, compiled, shortcut=True):
    """The encoding's numbers (or its error); without `shortcut`, every percentile is searched
    in a counted (cells, bins) matrix."""
    nothing = lambda binning, *args: H.SettledBins(  # noqa: E731
        np.zeros(binning.cells, bool), *[np.zeros(binning.cells, np.int64)] * 2
    )
    patches = contextlib.ExitStack()
    if not shortcut:
        patches.enter_context(mock.patch.object(H, "settled_percentile_bins", nothing))
        patches.enter_context(mock.patch.object(H, "searches_percentiles", lambda *a, **k: False))
    with kernels.use_compiled(compiled), patches:
        try:
            enc = encode_batches("t", [array_ref(x, "t")], spec, Progress(), chunk_bytes)
        except Exception as error:  # noqa: BLE001 - the same refusal every way
            return type(error).__name__, str(error)
    return tuple(
        np.asarray(getattr(enc, key), F32).tobytes() for key in ("scale", "offset", "min", "max")
    )


@slow(60)
@given(
    cell_values(max_cells=6, max_m=40),
    st.sampled_from(["percentile", "tf-enhanced"]),
    st.sampled_from([99.99, 99.9, 100, 60]),
    st.sampled_from(["keep", "ignore", "error"]),
    st.booleans(),
    st.sampled_from([1, 64, 1 << 20]),
)
def test_encodings_equal_with_or_without_kernel_and_shortcut(
    x, analyzer, percentile, nonfinite, per_channel, chunk_bytes
):
    """compute path end to end: compiled or numpy count, shortcut or counted percentile, any
    chunk size: the same encoding (or the same error)."""
    spec = Spec(
        analyzer=analyzer, percentile=percentile, nonfinite=nonfinite, per_channel=per_channel
    )
    reference = encoding_numbers(x, spec, 1 << 20, False, False)
    ways = [(False, True)]
    if kernels.built("histc"):  # with the shortcut: counted and searched row by row
        ways += [(True, False), (True, True)]
    for compiled, shortcut in ways:
        assert encoding_numbers(x, spec, chunk_bytes, compiled, shortcut) == reference


@pytest.mark.parametrize("percentile", [99.99, 99.0])
def test_progress_counts_every_byte_once(percentile):
    """Settled, searched or counted: the progress hears of the tensor's bytes once."""

    class Recorder(Progress):
        def __init__(self):
            self.seen = 0

        def advance(self, nbytes):
            self.seen += nbytes

    x = np.random.default_rng(0).standard_normal((64, 300)).astype(F32)
    for compiled in (True, False):
        progress = Recorder()
        spec = Spec(analyzer="percentile", percentile=percentile, per_channel=True)
        with kernels.use_compiled(compiled):
            encode_batches("t", [array_ref(x, "t")], spec, progress, 4096)
        assert progress.seen == x.nbytes
