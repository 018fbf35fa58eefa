"""The compiled count-and-finish (histogram.counted_histogram, qcalc.core._histc.histogram)
against the numpy reference ``finish(binning, count(values, binning))``, bit for bit, and the
SQNR / TF-enhanced encodings it feeds with the kernel on and off.

Saturation: the kernel takes the bin ceiling as an argument (histogram.HISTC_SATURATION, read
at each call), so the tests below lower it to exercise the clipping with small rows. The
conversions it cannot reach that way (a below / above count or a bin sum beyond 2^24, where
float32 rounds) need rows of more than 2^24 values; there the C does what numpy does: int64
-> float32 by one round-to-nearest-even conversion (C's (float) of an int64, cvtsi2ss, the
same instruction numpy's astype uses), then one IEEE float32 addition per end bin, below
first and above second (built with -ffp-contract=off, -fno-fast-math: no reordering).
"""

from __future__ import annotations

import dataclasses
from unittest import mock

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_kernel_histc import (
    DTYPES,
    F32,
    _plan,
    _plan_of,
    cell_values,
    drawn_binning,
    encoding_numbers,
    needs_kernel,
    slow,
)

from qcalc import Spec
from qcalc.core import histogram as H
from qcalc.core import kernels
from qcalc.errors import HistogramError


def _reference(x, binning, describe=None):
    with kernels.use_compiled(False):
        return H.finish(binning, H.count(x, binning, describe=describe))


def _both(x, binning, describe=None):
    """(compiled, reference) Histograms, or the HistogramError messages both raise."""
    results = []
    for compute in (
        lambda: _compiled(x, binning, describe),
        lambda: _reference(x, binning, describe),
    ):
        try:
            results.append(compute())
        except HistogramError as error:
            results.append(str(error))
    return results


def _compiled(x, binning, describe=None):
    with kernels.use_compiled(True):
        return H.counted_histogram(x, binning, describe, dtype=x.dtype)


def _same(a, b) -> None:
    assert type(a) is type(b)
    if isinstance(a, str):
        assert a == b
        return
    assert a.counts.dtype == b.counts.dtype == F32
    assert a.counts.shape == b.counts.shape
    assert a.counts.tobytes() == b.counts.tobytes()  # bit for bit
    for field in ("min", "max", "left", "right", "started", "merged"):
        assert np.array_equal(getattr(a, field), getattr(b, field), equal_nan=True)
    assert a.dtype == b.dtype


@needs_kernel
@slow(200)
@given(
    cell_values(max_cells=6, max_m=90),
    st.sampled_from([1, 2, 7, 64, 512, 2048]),
    st.sampled_from(["first", "arbitrary", "merged"]),
    st.integers(0, 2**32 - 1),
)
def test_counted_histogram_equals_finish_of_count(x, bins, kind, seed):
    """float32 / float16 / bfloat16 values with NaN, inf, subnormals, ties and constant rows
    (collapsed ranges, strict cells); first-batch plans, arbitrary ranges and thresholds
    (values outside [lo, hi], below / above counts, collapsed, reversed and non-finite
    ranges) and merged batches (carried counts: the numpy path)."""
    binning = drawn_binning(x, bins, kind, np.random.default_rng(seed))
    _same(*_both(x, binning))


@needs_kernel
@slow(200)
@given(
    cell_values(max_cells=4, max_m=200),
    st.sampled_from([1, 2, 5, 64, 2048]),
    st.integers(0, 12),
    st.integers(0, 2**32 - 1),
)
def test_saturation_with_a_lower_ceiling(x, bins, ceiling, seed):
    """Bins clipped at the ceiling before the below / above counts are added (which may take
    an end bin past it), as finish does: both read HISTC_SATURATION at the call, so a small
    ceiling exercises the clipping with rows of a few hundred values (many ties: bins above
    it). Thresholds are also drawn inside the range, so values are counted twice."""
    rng = np.random.default_rng(seed)
    binning = _plan(x, bins)
    if rng.random() < 0.5:
        finite = x.astype(F32)[np.isfinite(x.astype(F32))]
        if finite.size:
            pick = lambda: rng.choice(finite, binning.cells).astype(F32)  # noqa: E731
            binning = dataclasses.replace(binning, below=pick(), above=pick())
    with mock.patch.object(H, "HISTC_SATURATION", ceiling):
        _same(*_both(x, binning))


@needs_kernel
@pytest.mark.parametrize("dtype", sorted(DTYPES))
def test_moderate_rows_with_large_bins(dtype):
    """Rows of 2^20 values (one bin holding most of them, others below / above the range)
    and a row of every 16-bit pattern: exact at the real ceiling, and at lowered ones."""
    rng = np.random.default_rng(3)
    m = 1 << 20
    x = np.full((3, m), 0.25, dtype=F32)
    x[0, : m // 3] = rng.standard_normal(m // 3)
    x[1, ::7] = -5.0
    x[1, ::11] = 9.0
    x[2, ::5] = np.nan
    x = x.astype(DTYPES[dtype])
    binning = _plan_of(x, 2048)
    binning = dataclasses.replace(
        binning,
        lo=np.array([-1, -1, 0.25], F32),
        hi=np.array([1, 1, 0.25], F32),
        below=np.array([-1, -1, 0.25], F32),
        above=np.array([1, 1, 0.25], F32),
    )
    for ceiling in (H.HISTC_SATURATION, 1000, 1 << 19):
        with mock.patch.object(H, "HISTC_SATURATION", ceiling):
            _same(*_both(x, binning))
    if dtype != "float32":
        bits = np.arange(65536, dtype=np.uint16).view(DTYPES[dtype]).reshape(1, -1)
        for bins in (1, 512, 2048):
            b = H.plan_batch(None, np.array([-7], F32), np.array([300], F32), bins, bits.dtype)
            _same(*_both(bits, b))


@needs_kernel
def test_bit_patterns_other_dtypes_and_errors():
    """bf16 as uint16 bit patterns (how the stream hands them over), float64 and big-endian
    values converted as count converts them, strict cells refused with count's message."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((4, 300)) * 3).astype(DTYPES["bfloat16"])
    binning = _plan_of(x, 512)
    with kernels.use_compiled(True):
        bits = H.counted_histogram(x.view(np.uint16), binning, dtype=x.dtype)
    _same(bits, _reference(x, binning))
    y = rng.standard_normal((4, 300)) * 3
    b = _plan_of(y.astype(F32), 64)
    for values in (y, y.astype(">f4"), y.astype(F32)[:, ::-1]):
        _same(*_both(values, b))
    z = np.full((3, 5), 1e8, dtype=F32)  # +-0.5 vanishes: the range collapses
    z[0] = np.arange(5)
    strict = _plan_of(z, 16)
    z[2, 3] = np.inf
    compiled, numpy = _both(z, strict, describe=lambda k: f"row {k}")
    assert compiled == numpy and "row 2" in compiled
    with pytest.raises(ValueError, match="values must be"):
        H.counted_histogram(z[:2], strict)


@slow(60)
@given(
    cell_values(max_cells=6, max_m=40),
    st.sampled_from(["sqnr", "tf-enhanced"]),
    st.sampled_from(["keep", "ignore", "error"]),
    st.booleans(),
    st.booleans(),
    st.sampled_from([1, 64, 1 << 20]),
)
def test_encodings_equal_with_or_without_kernel(
    x, analyzer, nonfinite, per_channel, symmetric, chunk_bytes
):
    """End to end (per channel: chunks of whole cells through counted_histogram): the same
    encoding, or the same error, with the kernel on or off and any chunk size."""
    spec = Spec(
        analyzer=analyzer, nonfinite=nonfinite, per_channel=per_channel, symmetric=symmetric
    )
    reference = encoding_numbers(x, spec, 1 << 20, False)
    if kernels.built("histc"):
        assert encoding_numbers(x, spec, chunk_bytes, True) == reference


@needs_kernel
def test_sqnr_rows_use_the_fused_kernel():
    """Per-channel SQNR of one batch finishes its chunks in the kernel, never through a
    (cells, bins + 2) count matrix."""
    x = np.random.default_rng(5).standard_normal((32, 256)).astype(DTYPES["bfloat16"])
    spec = Spec(analyzer="sqnr", per_channel=True)
    with mock.patch.object(H, "count", side_effect=AssertionError("counted")):
        fused = encoding_numbers(x, spec, 4096, True)
    assert fused == encoding_numbers(x, spec, 4096, False)
