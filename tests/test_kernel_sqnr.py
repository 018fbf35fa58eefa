"""The compiled SQNR scoring (qcalc.core._sqnr) against the numpy path, bit for bit.

The numpy path (``use_compiled(False)``) is the reference: every chosen range must be the
same bits, and every noise too where the kernel computes them all (``sqnr_noise``). The
kernel's shortcuts (empty bins skipped, candidates pruned by a lower bound of their noise,
the previous cell's winner tried first) must never change a choice: ties between candidates,
all-empty histograms, a single occupied bin, duplicated candidates and non-finite or negative
counts (the full path) are all exercised here.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qcalc.core import histogram as H
from qcalc.core import kernels

F32 = np.float32
BF16 = np.dtype(ml_dtypes.bfloat16)

pytestmark = pytest.mark.skipif(
    not kernels.built("sqnr"), reason="qcalc.core._sqnr not built: the numpy path runs"
)


def bits(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=F32).view(np.uint32)


def same_bits(a, b) -> bool:
    """Equal bits; any NaN equals any NaN (payloads are not compared)."""
    a, b = np.asarray(a, dtype=F32), np.asarray(b, dtype=F32)
    nan = np.isnan(a)
    return bool(np.array_equal(nan, np.isnan(b)) and np.array_equal(bits(a)[~nan], bits(b)[~nan]))


def both(fn):
    """fn() with the compiled kernel, then with the numpy path."""
    with kernels.use_compiled(True):
        compiled = fn()
    with kernels.use_compiled(False):
        reference = fn()
    return compiled, reference


def histogram(counts, mn, mx, dtype=F32, merged=False) -> H.Histogram:
    counts = np.asarray(counts, dtype=F32)
    cells = counts.shape[0]
    mn, mx = np.broadcast_to(F32(mn), cells).copy(), np.broadcast_to(F32(mx), cells).copy()
    inf = np.full(cells, np.inf, F32)
    return H.Histogram(
        counts, mn, mx, -inf, inf, np.dtype(dtype), np.ones(cells, bool),
        np.full(cells, merged, bool),
    )  # fmt: skip


def observed(x: np.ndarray, bins: int, dtype=F32) -> H.Histogram:
    """The histogram AIMET builds of (cells, m) data in `dtype`."""
    x = np.asarray(x, dtype=dtype).astype(F32)
    binning = H.plan_batch(None, x.min(axis=1), x.max(axis=1), bins, dtype)
    return H.finish(binning, H.count(x, binning))


def check_range(h: H.Histogram, n: int, symmetric: bool, **kw) -> None:
    (cmin, cmax), (rmin, rmax) = both(lambda: H.sqnr_range(h, n, symmetric, **kw))
    assert same_bits(cmin, rmin) and same_bits(cmax, rmax)


def check_noise(h: H.Histogram, n: int, symmetric: bool, **kw) -> None:
    deltas, offsets = H.sqnr_candidates(h, n, symmetric)
    compiled, reference = both(lambda: H.sqnr_noise(h, deltas, offsets, n, **kw))
    assert same_bits(compiled, reference)


# ----------------------------------------------------------------------------- strategies

BINS = st.sampled_from([512, 2048, 2048, 8, 100, 136, 1000, 3])


@st.composite
def histograms(draw, bins=BINS):
    """Random histograms: sparse or dense integer counts, all-empty rows, rows with one
    occupied bin (constant data), fractional counts (a merge's rebinning), ranges of any
    sign and width."""
    nb = draw(bins)
    cells = draw(st.integers(1, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["sparse", "dense", "empty", "one", "fraction", "gauss"]))
    if kind == "sparse":
        counts = rng.integers(0, 4, (cells, nb)) * (rng.random((cells, nb)) < 0.3)
    elif kind == "dense":
        counts = rng.integers(0, 1000, (cells, nb))
    elif kind == "empty":
        counts = np.zeros((cells, nb))
    elif kind == "one":
        counts = np.zeros((cells, nb))
        counts[np.arange(cells), rng.integers(0, nb, cells)] = rng.integers(1, 100, cells)
    elif kind == "fraction":
        counts = np.round(rng.random((cells, nb)) * 5, 1) * (rng.random((cells, nb)) < 0.5)
    else:
        centre = rng.normal(nb / 2, nb / 20, (cells, 1))
        counts = np.round(2000 * np.exp(-(((np.arange(nb) - centre) / (nb / 8)) ** 2)))
    mn = F32(draw(st.sampled_from([-1.0, -0.02, 0.0, 0.5, -300.0, -1e-30])))
    width = F32(draw(st.sampled_from([2.0, 0.04, 1e-6, 1000.0, 0.0])))
    return histogram(counts, mn, mn + width)


SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@SETTINGS
@given(
    h=histograms(),
    symmetric=st.booleans(),
    n=st.sampled_from([255, 15, 1, 65535]),
    gamma=st.sampled_from([3.0, 1.0, 0.0, 0.5]),
    p=st.sampled_from([2.0, 1.0]),
    workers=st.integers(1, 3),
)
def test_range_and_noise_match_numpy(h, symmetric, n, gamma, p, workers):
    check_range(h, n, symmetric, gamma=gamma, p=p, workers=workers)
    check_noise(h, n, symmetric, gamma=gamma, p=p, workers=workers)


@SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    bins=st.sampled_from([512, 2048]),
    dtype=st.sampled_from([F32, np.dtype(np.float16), BF16]),
    symmetric=st.booleans(),
    outliers=st.booleans(),
)
def test_observed_data_in_every_dtype(seed, bins, dtype, symmetric, outliers):
    """Weight-like rows (as the bench checkpoint: N(0, 0.02), a few outlier rows) in
    float32 / float16 / bfloat16: most candidates are pruned here."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.02, (6, 300))
    if outliers:
        x[rng.integers(0, 6)] *= 50
        x[rng.integers(0, 6), rng.integers(0, 300)] = 3.0
    h = observed(x, bins, dtype)
    check_range(h, 255, symmetric)
    check_range(h, 15, symmetric, workers=2)


@pytest.mark.parametrize("bins", [512, 2048])
@pytest.mark.parametrize("symmetric", [True, False])
def test_many_cells_use_the_previous_winner(bins, symmetric):
    """Many similar cells: each starts from the previous cell's winner."""
    rng = np.random.default_rng(7)
    x = rng.normal(0, 0.02, (64, 2048)).astype(BF16)
    x[::9] *= rng.uniform(1, 80, (8, 1)).astype(BF16)
    h = observed(x, bins, BF16)
    for workers in (1, 2, 3):
        check_range(h, 255, symmetric, workers=workers)
    check_noise(h, 255, symmetric)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, -1.0, -0.0])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_non_finite_or_negative_counts_take_the_full_path(bad, where):
    """NaN / inf / negative / -0 counts: every candidate computed in full, np.argmin's
    semantics (the first NaN wins) kept; the other cells are unaffected."""
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 5, (4, 2048)) * (rng.random((4, 2048)) < 0.4)
    counts = counts.astype(F32)
    counts[1, {"first": 0, "middle": 1000, "last": 2047}[where]] = bad
    h = histogram(counts, -1.0, 1.0)
    for symmetric in (True, False):
        check_range(h, 255, symmetric)
        check_noise(h, 255, symmetric)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_range(bad):
    """A cell whose range (hence mids, deltas) is not finite."""
    counts = np.ones((3, 512), F32)
    h = histogram(counts, np.array([-1.0, -bad, 0.0]), np.array([1.0, 2.0, bad]))
    for symmetric in (True, False):
        check_range(h, 255, symmetric)
        check_noise(h, 255, symmetric)


def _search(h, deltas, offsets, n=255, gamma=3.0, p=2.0, workers=1):
    with kernels.use_compiled(True):
        best = H._compiled_search(H._bin_grid(h), h.counts, deltas, offsets, n, gamma, p, workers)
    with kernels.use_compiled(False):
        noise = H.sqnr_noise(h, deltas, offsets, n, gamma=gamma, p=p)
    return best, noise


@pytest.mark.parametrize("bins", [512, 2048])
def test_ties_go_to_the_first_candidate(bins):
    """Duplicated candidates tie exactly: np.argmin's first one must win, whether it comes
    before or after the kernel's first guess (the previous cell's winner)."""
    rng = np.random.default_rng(11)
    x = rng.normal(0, 1, (12, 4000))
    h = observed(x, bins)
    deltas, offsets = H.sqnr_candidates(h, 255, True)
    noise = H.sqnr_noise(h, deltas, offsets, 255)
    winner = np.argmin(noise, axis=1)
    for copies in ([0, 50, 100], [100, 75, 0], [3, 97]):
        d, o = deltas.copy(), offsets.copy()
        for k in copies:  # the winner's candidate copied to index k (as well)
            d[:, k] = deltas[np.arange(h.cells), winner]
            o[:, k] = offsets[np.arange(h.cells), winner]
        best, reference = _search(h, d, o)
        assert np.array_equal(best, np.argmin(reference, axis=1))
    # every candidate the same: the first wins
    d = np.repeat(deltas[:, 40:41], 101, axis=1)
    o = np.repeat(offsets[:, 40:41], 101, axis=1)
    best, reference = _search(h, d, o)
    assert np.array_equal(best, np.zeros(h.cells)) and np.array_equal(
        best, np.argmin(reference, axis=1)
    )


def test_all_empty_histogram_ties_everywhere():
    """No count at all: every noise is +0, the first candidate wins."""
    h = histogram(np.zeros((3, 2048)), -1.0, 1.0)
    deltas, offsets = H.sqnr_candidates(h, 255, False)
    best, noise = _search(h, deltas, offsets)
    assert not noise.any() and not best.any()
    check_range(h, 255, False)
    check_range(h, 255, True)


def test_near_ties_between_neighbours():
    """Candidates a few ulps apart: their noises differ in the last bits only; the pruning
    bound must not drop the true winner."""
    rng = np.random.default_rng(5)
    h = observed(rng.normal(0, 1, (8, 3000)), 2048)
    deltas, offsets = H.sqnr_candidates(h, 255, True)
    base = deltas[:, 80:81]
    d = base * (1 + np.arange(-50, 51, dtype=F32) * F32(2**-23))[None, :]
    o = np.ascontiguousarray(offsets)
    best, noise = _search(h, np.ascontiguousarray(d.astype(F32)), o)
    assert np.array_equal(best, np.argmin(noise, axis=1))


def test_other_p_uses_numpy():
    """p other than 1 and 2: numpy's power (libm or SVML) is not reproduced, numpy runs."""
    h = histogram(np.ones((2, 512)), -1.0, 1.0)
    deltas, offsets = H.sqnr_candidates(h, 255, True)
    assert H._compiled_search(H._bin_grid(h), h.counts, deltas, offsets, 255, 3.0, 1.5, 1) is None
    check_range(h, 255, True, p=1.5)


def test_kernel_is_the_default():
    assert kernels.kernel("sqnr") is not None or not kernels._enabled
