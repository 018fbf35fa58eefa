"""AIMET 2.42's histogram observer and its percentile / SQNR (tf-enhanced) analyzers, numpy only.

Everything is vectorised over encoding cells (a cell = the elements sharing one encoding) and
follows tests/golden/NOTES.md sections 7-9 operation by operation, in the dtypes AIMET's tensors
have, so the ranges are bit-identical to AIMET's.

A batch is observed in three steps, so that it can be streamed in chunks with bounded memory:

1. ``plan_batch(previous, batch_min, batch_max, ...)`` - from the batch's per-cell *finite*
   min/max (a first pass over the batch) and the histogram so far, decide the counting range
   of every cell and rebin the old counts (AIMET's merge);
2. ``count(values, binning)`` for each chunk of the batch - exact integer counts, additive:
   the sum over any chunking of the batch equals one call on the whole batch;
3. ``finish(binning, total_counts)`` - AIMET's float32 histogram for the batch merged in.

``percentile_range`` and ``sqnr_range`` then turn the histogram into the raw float32
``(rmin, rmax)`` that AIMET's quantizer stores; scale and offset follow from
``qcalc.core.grid.scale_offset`` as for min-max.

Counts are int64 until ``finish``: AIMET's ``torch.histc`` accumulates in float32 (one
thread: a bin stops growing at 2^24), which a float32 sum of per-chunk counts would not
reproduce once a bin passes 2^24 (float32 sums of integer counts are exact only below 2^24).
``finish`` applies the 2^24 saturation of a single-threaded histc to the exact total.

Machine-level behaviour reproduced (the golden corpus was made with torch on x86-64 CPU,
one thread):

* histc's bin index ``int64(float32(float32(x - lo) * bins) / float32(hi - lo))``; an
  inf/NaN quotient becomes INT64_MIN, which torch's pointer arithmetic wraps to bin 0;
* comparisons of the input with float32 edges run in the input dtype (edges rounded to
  float16 / bfloat16), so a float16 value can be counted twice or dropped, as in AIMET;
* torch.cumsum accumulates float32 in double; the SQNR offset grid comes from torch.arange,
  whose double ``start + i * step`` is one fused multiply-add (this gives the -0.0 offset
  AIMET reports for 8-bit relu data);
* element-wise max / min return the second operand on +-0 ties in torch's vector path and
  the first in its scalar tail (TORCH_VECTOR_FLOATS = 8, AVX2); only zero signs depend on it;
* the SQNR noise sums 2048 (or 512) float32 terms with numpy's pairwise sum. torch's
  cascade sum rounds differently in about half the noises (last bits), which changed no
  chosen candidate in the corpus; only a near-tie between candidates could.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from typing import Optional

import numpy as np

from qcalc.core import kernels, parallel
from qcalc.core.dtypes import FLOAT32 as F32
from qcalc.core.dtypes import StoredFloat, round_to_bfloat16, widen
from qcalc.core.grid import (
    bits_equal,
    minimum_scale,
    record_asymmetric,
    record_delta,
    record_minimum_scale,
    record_zero,
)
from qcalc.core.kernels import kernel
from qcalc.core.stats import reduce_minmax
from qcalc.core.trace import Trace, add, fmt, one, operand
from qcalc.core.workspace import work_array
from qcalc.errors import HistogramError

MAX_FINITE_PRODUCT = np.float32(1e38)  # (x - lo) * bins below this cannot overflow float32
HISTC_SATURATION = 2**24  # float32 += 1 stops here: single-threaded torch.histc's bin ceiling
MAX_PARALLELISM = 64  # AIMET's SQNR analyzer handles histograms 64 at a time
# float32 lanes of torch's CPU vectors (AVX2: 8; AVX512: 16). It only decides which elements
# of an element-wise max / min take the scalar tail, i.e. the sign of a zero that ties with a
# zero of the other sign (SQNR offsets).
TORCH_VECTOR_FLOATS = 8
_WORK_ELEMENTS = 1 << 18  # float32 elements per SQNR noise block and thread (1 MB)


def _f32(x) -> np.ndarray:
    return np.asarray(x, dtype=F32)


def _check_dtype(dtype) -> np.dtype:
    dtype = dtype if isinstance(dtype, StoredFloat) else np.dtype(dtype)
    if dtype == F32 or dtype.name in ("float16", "bfloat16"):
        return dtype
    raise ValueError(f"histogram analyzers compute in float32, float16 or bfloat16, not {dtype}")


def _round_to(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """float32 values rounded (to nearest even, overflow to inf) to `dtype`, held as float32."""
    x = _f32(x)
    if dtype == F32:
        return x
    if dtype.name == "bfloat16":  # bit arithmetic: no ml_dtypes
        return round_to_bfloat16(x)
    with np.errstate(over="ignore"):
        return x.astype(dtype).astype(F32)


def _round_cells(x: np.ndarray, dtype: np.dtype, merged: Optional[np.ndarray]) -> np.ndarray:
    """`_round_to(x, dtype)` in the cells (axis 0 of `x`) whose stats have the input dtype;
    cells whose stats are float32 (`merged`: after a merge) keep x. None: no cell merged."""
    if dtype == F32 or (merged is not None and merged.all()):
        return _f32(x)
    rounded = _round_to(x, dtype)
    if merged is None or not merged.any():
        return rounded
    return np.where(merged.reshape((-1,) + (1,) * (rounded.ndim - 1)), _f32(x), rounded)


def _cell(index: int) -> str:
    """How errors name a cell when the caller gives no `describe`."""
    return f"histogram: cell {index}"


def _vector_part(inner: int) -> int:
    """How many leading elements of an inner loop of `inner` floats torch's CPU kernels take
    through the vector path (pairs of vectors); the rest goes through the scalar tail."""
    return inner - inner % (2 * TORCH_VECTOR_FLOATS)


def _torch_max(a, b, tail):
    """torch.maximum on CPU: NaN propagates; on equal values (only +-0 can differ) the vector
    path returns `b` (_mm*_max_ps), the scalar tail (`tail` true) returns `a` (std::max)."""
    a, b = np.broadcast_arrays(_f32(a), _f32(b))
    out = np.where(a > b, a, b)
    out = np.where(tail & (a == b), a, out)
    return np.where(np.isnan(a) | np.isnan(b), np.float32(np.nan), out)


def _torch_min(a, b, tail):
    """torch.minimum on CPU, as `_torch_max`."""
    a, b = np.broadcast_arrays(_f32(a), _f32(b))
    out = np.where(a < b, a, b)
    out = np.where(tail & (a == b), a, out)
    return np.where(np.isnan(a) | np.isnan(b), np.float32(np.nan), out)


def _cell_tail(cells: int, first: int = 0, count: Optional[int] = None) -> np.ndarray:
    """Cells in the scalar tail of (cells,) element-wise ops: AIMET runs them on chunks of
    `max_parallelism` = 64 histograms. Of cells first.. first + count (default: all)."""
    index = np.arange(first, cells if count is None else first + count)
    start = index - index % MAX_PARALLELISM
    size = np.minimum(MAX_PARALLELISM, cells - start)
    return index - start >= size - size % (2 * TORCH_VECTOR_FLOATS)


def _bin_start_step(mn: np.ndarray, mx: np.ndarray, dtype: np.dtype, bins: int, merged=None):
    """AIMET's ``_create_bin_edges``: (lo, step), float32, with ``edges[i] = _edge(lo, step, i)``.

    A cell with ``min == max`` is widened by 0.5 each way first, in the stats dtype
    (float16 rounding for float16 stats; float32 in the `merged` cells).
    """
    mn, mx = _f32(mn), _f32(mx)
    same = mn == mx
    with np.errstate(over="ignore"):
        lo = np.where(same, _round_cells(mn - np.float32(0.5), dtype, merged), mn)
        hi = np.where(same, _round_cells(mx + np.float32(0.5), dtype, merged), mx)
    with np.errstate(all="ignore"):
        step = (hi - lo) / np.float32(bins)
    return lo, step


def _edge(lo: np.ndarray, step: np.ndarray, index) -> np.ndarray:
    """Bin edge `index`: ``float32(index) * step + lo``, two float32 roundings (so edge 0 of a
    -0.0 minimum is +0.0, as in torch)."""
    with np.errstate(all="ignore"):
        return _f32(index).astype(F32) * step + lo


@dataclass(frozen=True)
class Histogram:
    """AIMET's per-cell histogram statistics after one or more batches.

    `min` / `max` are the stats min/max AIMET keeps (the first batch's finite min/max, then
    the merged range), `left` / `right` the growth limits fixed by the first batch (±inf when
    unlimited). `dtype` is the dtype AIMET's min/max tensors have: the input dtype after the
    first batch, float32 after any merge (``torch.clamp`` promotes them). It decides where
    the analyzers round, so the range functions take it from here.

    `started` marks the cells that have seen a finite value and `merged` those whose stats
    went through a merge (float32 stats, whatever `dtype` says). They differ from cell to cell
    only under --nonfinite ignore, where a batch in which a cell has no finite value leaves it
    as it was (and a cell that never had one stays unstarted: its counts are 0, its range the
    placeholder [0, 0]).
    """

    counts: np.ndarray  # (cells, bins) float32
    min: np.ndarray  # (cells,) float32
    max: np.ndarray
    left: np.ndarray
    right: np.ndarray
    dtype: np.dtype
    started: np.ndarray  # (cells,) bool
    merged: np.ndarray  # (cells,) bool

    @property
    def bins(self) -> int:
        return self.counts.shape[1]

    @property
    def cells(self) -> int:
        return self.counts.shape[0]


@dataclass(frozen=True)
class Binning:
    """How one batch is counted, and what the resulting Histogram will hold.

    `lo` / `hi` are the range torch.histc counts over (an element counts iff
    ``lo <= x <= hi``); `below` / `above` are the thresholds of AIMET's out-of-range counts
    (``x < edges[0]`` into the first bin, ``x > edges[-1]`` into the last), rounded to the
    input dtype because torch compares in it. `carried` are the old counts rebinned onto the
    new range (None for a first batch). `strict` marks cells where a NaN or inf value makes
    AIMET raise (their range collapsed to one value, so histc derives it from the data).
    """

    lo: np.ndarray
    hi: np.ndarray
    below: np.ndarray
    above: np.ndarray
    bins: int
    carried: Optional[np.ndarray]  # None for a first batch (nothing to carry)
    min: np.ndarray
    max: np.ndarray
    left: np.ndarray
    right: np.ndarray
    dtype: np.dtype
    strict: np.ndarray
    started: np.ndarray
    merged: np.ndarray

    @property
    def cells(self) -> int:
        return self.lo.shape[0]

    def rows(self, part: slice) -> "Binning":
        """The binning of a run of cells (a chunk whose rows are those cells)."""
        per_cell = {
            name: value[part]
            for name, value in vars(self).items()
            if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == self.cells
        }
        return dataclasses.replace(self, **per_cell)

    def histogram(self, counts: np.ndarray) -> "Histogram":
        """The Histogram this batch leaves, with its float32 (cells, bins) `counts`."""
        return Histogram(
            counts,
            self.min,
            self.max,
            self.left,
            self.right,
            self.dtype,
            self.started,
            self.merged,
        )

    def zeros(self) -> np.ndarray:
        """An empty count accumulator, (cells, bins + 2) int64 (see `count`)."""
        return np.zeros((self.cells, self.bins + 2), dtype=np.int64)


def _batch_edges(batch_min, batch_max, dtype: np.dtype, bins: int, describe):
    """The batch's own histogram range (AIMET's collect_stats runs histc on it for every batch,
    first or not): raises where torch.histc would, returns (first edge, last edge, degenerate).
    Every cell's range must be finite."""
    lo, step = _bin_start_step(batch_min, batch_max, dtype, bins)
    first, last = _edge(lo, step, 0), _edge(lo, step, bins)
    ok = np.isfinite(first) & np.isfinite(last)
    if not ok.all():
        bad = int(np.flatnonzero(~ok)[0])
        raise HistogramError(
            f"{describe(bad)}: range [{float(batch_min[bad]):.9g}, {float(batch_max[bad]):.9g}] "
            "overflows float32 arithmetic: AIMET's histogram bin edges are not finite "
            "(torch.histc raises)"
        )
    return first, last, first == last


def _histc_range(lo: np.ndarray, hi: np.ndarray):
    """torch.histc's own range for requested (lo, hi): equal bounds become (lo - 1, hi + 1)
    in doubles, then float32 (its linspace edges). That only happens when the data is one
    value (else AIMET raises first), so aminmax of the data gives the same bounds back."""
    same = lo == hi
    lo2 = np.where(same, (lo.astype(np.float64) - 1).astype(F32), lo)
    hi2 = np.where(same, (hi.astype(np.float64) + 1).astype(F32), hi)
    return lo2, hi2, same


def plan_batch(
    previous: Optional[Histogram],
    batch_min: np.ndarray,
    batch_max: np.ndarray,
    bins: int,
    dtype,
    growth_limit: Optional[float] = None,
    *,
    empty_ok: bool = False,
    describe=None,
) -> Binning:
    """Plan the counting of one batch (NOTES.md section 7).

    `batch_min` / `batch_max`: (cells,) float32 holding the batch's finite min / max per cell
    (input-dtype values); a cell with no finite value (+inf / -inf here) raises
    HistogramError, as AIMET does (torch.histc is handed a NaN range), unless `empty_ok`
    (--nonfinite ignore): then the batch leaves that cell as it was (see Histogram). `dtype`
    is the input dtype AIMET sees (float32, float16 or bfloat16). `growth_limit`
    (tf-enhanced: 3.0) only matters for a cell's first batch, which fixes its limits; None is
    unlimited. `describe(cell)` names a cell in errors.
    """
    dtype = _check_dtype(dtype)
    describe = describe or _cell
    batch_min, batch_max = _f32(batch_min).ravel(), _f32(batch_max).ravel()
    cells = batch_min.shape[0]
    if previous is not None and (previous.bins != bins or previous.cells != cells):
        raise ValueError(
            f"batch has {cells} cells x {bins} bins, the histogram {previous.cells} x "
            f"{previous.bins}"
        )
    has = np.isfinite(batch_min) & np.isfinite(batch_max)
    if not has.all():
        bad = int(np.flatnonzero(~has)[0])
        if not empty_ok:
            raise HistogramError(
                f"{describe(bad)}: no finite value; AIMET's histogram observer cannot "
                "bin it (torch.histc: range of [nan, nan] is not finite)"
            )
        zero = np.float32(0)  # a placeholder range for the cells this batch leaves alone
        batch_min, batch_max = np.where(has, batch_min, zero), np.where(has, batch_max, zero)
    first, last, degenerate = _batch_edges(batch_min, batch_max, dtype, bins, describe)
    # each cell's first batch (every cell's when there is no previous histogram)
    g = np.float32(np.inf if growth_limit is None else growth_limit)
    with np.errstate(all="ignore"):
        spread = (last - first) * g / np.float32(2)
        left, right = first - spread, last + spread
    lo, hi, _ = _histc_range(first, last)
    plan = {
        "lo": lo,
        "hi": hi,
        "below": _round_to(first, dtype),
        "above": _round_to(last, dtype),
        "min": batch_min,
        "max": batch_max,
        "left": left,
        "right": right,
        "strict": degenerate & has,
        "started": has,
        "merged": np.zeros(cells, dtype=bool),
    }
    carried = None
    before = np.zeros(cells, dtype=bool) if previous is None else previous.started
    if previous is not None and before.any():
        carried = _merge(
            previous, batch_min, batch_max, has, before, degenerate, dtype, plan, describe
        )
    return Binning(bins=bins, carried=carried, dtype=F32 if plan["merged"].all() else dtype, **plan)


def _merge(previous, batch_min, batch_max, has, before, degenerate, dtype, plan, describe):
    """AIMET's merge into `previous` for the cells that have a histogram already (`before`):
    `plan` (the first-batch plan) is updated in place for them; returns the carried counts,
    (cells, bins) float32 (zeros for the cells that start now or have not started)."""
    bins = previous.bins
    merge = has & before  # finite values now and a histogram already
    carry = before & ~has  # no finite value in this batch: the cell is left as it was
    p_lo, p_step = _bin_start_step(
        previous.min, previous.max, previous.dtype, bins, previous.merged
    )
    p_first, p_last = _edge(p_lo, p_step, 0), _edge(p_lo, p_step, bins)
    # new_min.clamp(left, edges[0]) and new_max.clamp(edges[-1], right): 0-d float32 tensors,
    # torch's scalar path (NaN bounds give NaN, ties keep the clamped value's zero sign)
    umin = _torch_min(_torch_max(batch_min, previous.left, True), p_first, True)
    umax = _torch_min(_torch_max(batch_max, p_last, True), previous.right, True)
    broken = merge & ~(np.isfinite(umin) & np.isfinite(umax))
    if broken.any():
        raise HistogramError(
            f"{describe(int(np.flatnonzero(broken)[0]))}: the histogram merge gives a range "
            "that is not finite (AIMET: torch.histc raises)"
        )
    reuse = (umin == previous.min) & (umax == previous.max)
    carried = np.zeros((previous.cells, bins), dtype=F32)
    carried[before] = previous.counts[before]
    rows = np.flatnonzero(merge & ~reuse)
    if rows.size:
        try:
            carried[rows] = _rebin(
                previous.counts[rows], p_lo[rows], p_step[rows], umin[rows], umax[rows], bins
            )
        except _IndexOutOfRange as error:
            cell = int(rows[error.args[0]])
            raise HistogramError(
                f"{describe(cell)}: merging the range [{float(umin[cell]):.9g}, "
                f"{float(umax[cell]):.9g}] into the histogram overflows float32 arithmetic "
                "(AIMET: index_add_ raises, index out of range)"
            ) from None
    lo, hi, same = _histc_range(umin, umax)
    merged = {
        "lo": lo,
        "hi": hi,
        "below": _round_to(umin, dtype),
        "above": _round_to(umax, dtype),
        "min": umin,
        "max": umax,
        "left": previous.left,
        "right": previous.right,
        "strict": degenerate | same,
        "started": np.ones(merge.shape, dtype=bool),
        "merged": np.ones(merge.shape, dtype=bool),
    }
    kept = {  # nothing of theirs is counted: count() sees only NaN in them
        "lo": p_first,
        "hi": p_last,
        "below": p_first,
        "above": p_last,
        "min": previous.min,
        "max": previous.max,
        "left": previous.left,
        "right": previous.right,
        "strict": np.zeros(merge.shape, dtype=bool),
        "started": np.ones(merge.shape, dtype=bool),
        "merged": previous.merged,
    }
    for key in plan:
        plan[key] = np.where(merge, merged[key], np.where(carry, kept[key], plan[key]))
    return carried


def _trunc_index(x: np.ndarray, bins: int) -> np.ndarray:
    """``torch.minimum(x.to(int32), bins - 1)``: truncation toward zero."""
    with np.errstate(invalid="ignore"):
        return np.minimum(x.astype(np.int32).astype(np.int64), bins - 1)


def _rebin(counts, lo, step, umin, umax, bins):
    """AIMET's merge: old counts (on edges i*step + lo) split onto `bins` bins over
    [umin, umax], float32 throughout, accumulated in index_add_'s order."""
    nb = np.float32(bins)
    with np.errstate(all="ignore"):
        dw = ((umax - umin) / nb)[:, None]
        sw = (_edge(lo, step, 1) - _edge(lo, step, 0))[:, None]
        start = _edge(lo[:, None], step[:, None], np.arange(bins, dtype=F32)[None, :])
        umin = umin[:, None]
        dest = _trunc_index((start - umin) / dw, bins)
        dest_end = umin + dw * (dest + 1).astype(F32)
        split = np.rint(((dest_end - start) / sw) * counts)
        part = np.minimum(split, counts)
        other = _trunc_index(((start + dw) - umin) / dw, bins)
        rest = np.where(part < counts, counts - part, np.float32(0))
    broken = (dest < 0).any(axis=1) | (other < 0).any(axis=1)
    if broken.any():  # an index whose float32 quotient overflowed int32 (an inf: INT32_MIN)
        raise _IndexOutOfRange(int(np.flatnonzero(broken)[0]))
    return _index_add(dest, part, other, rest, bins)


class _IndexOutOfRange(Exception):
    """A rebinning index out of range in row `args[0]`: torch's index_add_ raises."""


def _index_add(dest, part, other, rest, bins):
    """Two sequential float32 ``index_add_`` passes (part at dest, then rest at other).

    Where every partial sum is an integer below 2^24 the order cannot matter and one exact
    bincount does it; cells with larger totals are accumulated bin by bin in AIMET's order
    (a loop over bins, vectorised over those cells)."""
    cells = part.shape[0]
    magnitude = np.abs(part).sum(axis=1, dtype=np.float64)
    magnitude += np.abs(rest).sum(axis=1, dtype=np.float64)
    small = magnitude <= HISTC_SATURATION  # False for NaN: those take the exact path
    out = np.zeros((cells, bins), dtype=F32)
    rows = np.flatnonzero(small)
    if rows.size:
        base = (np.arange(rows.size, dtype=np.int64) * bins)[:, None]
        flat = np.concatenate([(dest[rows] + base).ravel(), (other[rows] + base).ravel()])
        weights = np.concatenate([part[rows].ravel(), rest[rows].ravel()]).astype(np.float64)
        sums = np.bincount(flat, weights=weights, minlength=rows.size * bins)
        out[rows] = sums.reshape(rows.size, bins).astype(F32)
    rows = np.flatnonzero(~small)
    if rows.size:
        acc = np.zeros((rows.size, bins), dtype=F32)
        r = np.arange(rows.size)
        for index, value in ((dest[rows], part[rows]), (other[rows], rest[rows])):
            for j in range(bins):
                acc[r, index[:, j]] += value[:, j]
        out[rows] = acc
    return out


def count(
    values: np.ndarray,
    binning: Binning,
    out: Optional[np.ndarray] = None,
    workspace: Optional[dict] = None,
    describe=None,
    workers: Optional[int] = None,
    dtype=None,
) -> np.ndarray:
    """Counts of one chunk, (cells, bins + 2) int64, additive over chunks.

    `values`: (cells, m) array (float32, or the input dtype) holding the chunk's elements of
    every cell. Columns ``[:bins]`` are torch.histc's counts over [lo, hi] (bin
    ``int64(float32(float32(x - lo) * bins) / float32(hi - lo))``, the top edge folded into the
    last bin; NaN and out-of-range values skipped); column ``bins`` counts ``x < below`` and
    ``bins + 1`` counts ``x > above`` (-inf and +inf included, NaN in neither).

    With `out` (an accumulator from ``binning.zeros()``) the counts are added to it in place
    and it is returned: for small chunks this scatters only the chunk's elements instead of
    building a whole (cells, bins) array per chunk. `workspace` (any dict, kept across the
    chunks of a batch) holds reused work arrays. `describe(cell)` names a cell in errors.

    `dtype` is the tensor's (a StoredFloat's values come as bit patterns), else `values`'.
    The compiled kernel (qcalc.core._histc, when built and enabled) gives the same counts;
    it reads float16 / bfloat16 values as they are, on one thread (callers spread chunks over
    the run's threads) or, for tests, over `workers` threads. The numpy path below is the
    reference.
    """
    x = _cell_values(values, binning)
    cells, nb = x.shape[0], binning.bins
    width = nb + 2
    if out is not None and (
        out.shape != (cells, width) or out.dtype != np.int64 or not out.flags.c_contiguous
    ):
        raise ValueError(f"out must be a C-contiguous int64 array of shape {(cells, width)}")
    _check_strict(x, binning, describe, dtype)
    compiled = kernel("histc")
    if compiled is not None:
        return _count_compiled(compiled, x, binning, out, workers, dtype)
    x = _f32(widen(x, dtype))
    workspace = {} if workspace is None else workspace
    lo, hi = binning.lo[:, None], binning.hi[:, None]
    # Each row's min / max (NaN if it holds one) tell which masks can be skipped: usually
    # every value is inside [lo, hi] and none is beyond the out-of-range thresholds.
    row = reduce_minmax(x, (1,)) if x.size else None
    with np.errstate(all="ignore"):
        t = np.subtract(x, lo, out=work_array(workspace, "t", x.shape, F32))
        t *= np.float32(nb)
        t /= hi - lo
        # (hi > lo: a range collapsed by float32 rounding makes every quotient NaN, which
        # only the clipping path maps to bin 0 as torch does)
        everything_inside = row is not None and bool(
            np.all(row.min >= lo) and np.all(row.max <= hi) and np.all(hi > lo)
        )
        flat = work_array(workspace, "flat", x.shape, np.int64)
        # pos == bins is the top edge (-> last bin); an inf/NaN quotient converts to INT64_MIN
        # on x86-64, which torch's float pointer arithmetic wraps to bin 0. With every value
        # inside and finite products, pos is in [0, bins]: only the top needs folding.
        if everything_inside and np.all((row.max - lo) * np.float32(nb) < MAX_FINITE_PRODUCT):
            np.minimum(t, np.float32(nb - 1), out=t)
            np.copyto(flat, t, casting="unsafe")
        else:
            np.copyto(flat, t, casting="unsafe")
            np.clip(flat, 0, nb - 1, out=flat)
        inside = None
        if not everything_inside:
            inside = x >= lo
            inside &= x <= hi
        if cells > 1:
            flat += (np.arange(cells, dtype=np.int64) * width)[:, None]
        below = _count_beyond(x, row, binning.below[:, None], np.less)
        above = _count_beyond(x, row, binning.above[:, None], np.greater)
    size = cells * width
    if out is not None and x.size * 12 < size:  # scatter: cheaper than a full bincount
        np.add.at(out.reshape(-1), flat if inside is None else flat[inside], 1)
        result = out
    else:
        if inside is not None:
            np.logical_not(inside, out=inside)
            flat[inside] = size  # one dump slot past the end
        hist = np.bincount(flat.reshape(-1), minlength=size + 1)[:size].reshape(cells, width)
        if out is None:
            result = hist
        else:
            out += hist
            result = out
    result[:, nb] += below
    result[:, nb + 1] += above
    return result


def _cell_values(values, binning: Binning) -> np.ndarray:
    """`values` as an array, ValueError unless (cells, m) with the binning's cells."""
    x = np.asarray(values)
    if x.ndim != 2 or x.shape[0] != binning.cells:
        raise ValueError(f"values must be (cells={binning.cells}, m), got {x.shape}")
    return x


def _check_strict(x: np.ndarray, binning: Binning, describe, dtype=None) -> None:
    """HistogramError where a strict cell (a range collapsed to one value) holds NaN or inf."""
    if not binning.strict.any():
        return
    x = _f32(widen(x, dtype))
    if not np.isfinite(x[binning.strict]).all():
        bad = int(np.flatnonzero(binning.strict & ~np.isfinite(x).all(axis=1))[0])
        raise HistogramError(
            f"{(describe or _cell)(bad)}: holds a single finite value and NaN or inf; AIMET's "
            "torch.histc then derives a non-finite range and raises"
        )


_KERNEL_KINDS = {"float32": 0, "float16": 1, "bfloat16": 2}  # the values _histc reads as is
_THREADED_ELEMENTS = 1 << 18  # with `workers`, chunks from this size are split over threads


def _kernel_input(x: np.ndarray, binning: Binning, dtype=None):
    """(values as the kernel reads them, their kind, the per-cell float32 arrays)."""
    stored = dtype is not None and x.dtype.kind == "u"  # a StoredFloat's bit patterns
    name = dtype.name if stored else x.dtype.name
    kind = _KERNEL_KINDS.get(name) if x.dtype.isnative else None
    if kind is None:  # float64, float8, other byte orders: float32 values
        x, kind = _f32(widen(x, dtype)), 0
    x = np.ascontiguousarray(x)
    per_cell = [
        np.ascontiguousarray(a, dtype=F32)
        for a in (binning.lo, binning.hi, binning.below, binning.above)
    ]
    return (x if kind == 0 else x.view(np.uint16)), kind, per_cell


def _row_parts(cells: int, workers: int) -> list[tuple[int, int]]:
    cuts = np.linspace(0, cells, workers + 1).astype(np.int64)
    return [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def _count_compiled(compiled, x, binning: Binning, out, workers, dtype=None) -> np.ndarray:
    """`count` by qcalc.core._histc: (cells, m) values of any float dtype (float32, float16
    and bfloat16 read as they are, others converted to float32 as the numpy path does). With
    `workers`, rows or, for fewer rows than threads, runs of elements are split over that many
    threads. Counts are integers: any split adds up to the same."""
    data, kind, per_cell = _kernel_input(x, binning, dtype)
    cells, m = x.shape
    result = binning.zeros() if out is None else out
    nb = binning.bins

    def run(target, rows, cols):
        compiled.count(data, kind, m, *per_cell, target, nb, *rows, *cols)

    if workers is None or workers == 1 or x.size < _THREADED_ELEMENTS:
        run(result, (0, cells), (0, m))
    elif cells >= workers:  # each thread counts its own rows, into their own counters
        _on_threads(lambda rows: run(result, rows, (0, m)), _row_parts(cells, workers))
    else:  # few long rows: runs of elements, each counted into a private accumulator
        parts = _row_parts(m, workers)
        private = [binning.zeros() for _ in parts]
        _on_threads(lambda job: run(job[0], (0, cells), job[1]), list(zip(private, parts)))
        for part in private:
            result += part
    return result


def _on_threads(job, parts: list) -> None:
    """`job` over `parts`, one thread each (tests: results must not depend on the split)."""
    if not parts:
        return
    with ThreadPoolExecutor(len(parts)) as pool:
        list(pool.map(job, parts))


def _count_beyond(x: np.ndarray, row, threshold: np.ndarray, beyond) -> np.ndarray:
    """Per row, how many values are beyond (`np.less`: below, `np.greater`: above)
    `threshold`; skipped when each row's min / max shows there are none."""
    cells = x.shape[0]
    if row is not None:
        extreme = row.min if beyond is np.less else row.max
        if not np.any(beyond(extreme, threshold)) and not np.isnan(extreme).any():
            return np.zeros(cells, dtype=np.int64)
    return np.count_nonzero(beyond(x, threshold), axis=1)


def finish(binning: Binning, counts: np.ndarray) -> Histogram:
    """The batch's Histogram from the summed `count` results (int64, (cells, bins + 2)).

    ``histc`` (single-threaded: a bin saturates at 2^24) + carried counts, then the
    out-of-range counts added to the end bins, in float32 and in AIMET's order.
    """
    nb = binning.bins
    counts = np.asarray(counts)
    if counts.shape != (binning.cells, nb + 2):
        raise ValueError(f"counts must be {(binning.cells, nb + 2)}, got {counts.shape}")
    hist = np.minimum(counts[:, :nb], HISTC_SATURATION).astype(F32)
    if binning.carried is not None:
        hist += binning.carried
    hist[:, 0] += counts[:, nb].astype(F32)
    hist[:, -1] += counts[:, nb + 1].astype(F32)
    return binning.histogram(hist)


def counted_histogram(values: np.ndarray, binning: Binning, describe=None, dtype=None) -> Histogram:
    """``finish(binning, count(values, binning))`` for one chunk that is a whole batch of its
    cells (each row of `values` all of one cell's elements). For a first batch (nothing
    carried) with the kernel on, qcalc.core._histc counts each row into a private row of
    counters and writes finish's float32 histogram directly (same counts, then the same
    float32 saturation, conversions and additions in the same order), so no
    (cells, bins + 2) int64 matrix nor its float32 copy is made. Raises as `count` does;
    `dtype` as in `count`."""
    x = _cell_values(values, binning)
    compiled = kernel("histc")
    if compiled is None or binning.carried is not None:
        return finish(binning, count(x, binning, None, None, describe, dtype=dtype))
    _check_strict(x, binning, describe, dtype)
    data, kind, per_cell = _kernel_input(x, binning, dtype)
    cells, m = x.shape
    hist = np.empty((cells, binning.bins), dtype=F32)
    compiled.histogram(
        data, kind, m, *per_cell, hist, binning.bins, HISTC_SATURATION, 0, cells
    )  # fmt: skip
    return binning.histogram(hist)


# ----------------------------------------------------------------------------- percentile


def _searchsorted_left(cum: np.ndarray, value: np.ndarray) -> np.ndarray:
    """torch.searchsorted(cum[i], value[i]) per row: torch's binary search, which moves right
    while ``not (cum[mid] >= value)``. On sorted rows that is the count of entries below the
    value; it also reproduces torch when NaN counts (a degenerate merge) break the order."""
    rows, n = cum.shape
    start = np.zeros(rows, dtype=np.int64)
    end = np.full(rows, n, dtype=np.int64)
    index = np.arange(rows)
    active = start < end
    while active.any():
        mid = start + ((end - start) >> 1)
        right = ~(cum[index, np.minimum(mid, n - 1)] >= value)
        start = np.where(active & right, mid + 1, start)
        end = np.where(active & ~right, mid, end)
        active = start < end
    return start


def _percentile_targets(total: np.ndarray, percentile: float):
    """The cumulative counts AIMET searches for: (vmin, vmax), float32, from the float32
    totals (NOTES.md section 8)."""
    total = _f32(total)
    with np.errstate(all="ignore"):
        vmax = (total * np.float32(percentile)) / np.float32(100)
        vmin = total * np.float32(1 - percentile / 100)
    return vmin, vmax


def percentile_bins(
    h: Histogram, percentile: float, *, trace: Optional[Trace] = None
) -> tuple[np.ndarray, np.ndarray]:
    """AIMET's percentile bins (imin, imax), int64 per cell: the indices of the edges it
    takes, searched in the cumulative counts. With a `trace` (a one-cell histogram), the
    search records its step."""
    if percentile == 100:
        if trace is not None:
            add(
                trace, "percentile positions",
                f"Percentile 100 keeps the whole histogram: edges 0 and {h.bins}.",
                imin=0, imax=h.bins,
            )  # fmt: skip
        return np.zeros(h.cells, dtype=np.int64), np.full(h.cells, h.bins, dtype=np.int64)
    cum = _cumulative_counts(h.counts)
    vmin, vmax = _percentile_targets(cum[:, -1].astype(F32), percentile)
    imin, imax = _searchsorted_left(cum, vmin), _searchsorted_left(cum, vmax)
    if trace is not None:
        total = cum[:, -1].astype(F32)
        add(
            trace, "percentile positions",
            f"Of the {fmt(total)} counted values, the cut at {100 - percentile:.10g}% is the "
            f"first edge whose cumulative count reaches {fmt(total)} × (1 - {fmt(percentile)} "
            f"/ 100) = {fmt(vmin)}: edge {one(imin)}; the cut at {fmt(percentile)}% the first "
            f"reaching {fmt(total)} × {fmt(percentile)} / 100 = {fmt(vmax)}: edge {one(imax)}"
            f" (of {h.bins}).",
            total=one(total), lower_target=one(vmin), upper_target=one(vmax),
            imin=one(imin), imax=one(imax),
        )  # fmt: skip
    return imin, imax


def record_histogram(trace: Trace, h: Histogram) -> None:
    """The "histogram" step: a one-cell histogram's bins, range, bin width and total."""
    lo, step = _bin_start_step(h.min, h.max, h.dtype, h.bins, h.merged)
    first, last = _edge(lo, step, 0), _edge(lo, step, h.bins)
    total = h.counts.sum(dtype=np.float64)
    limits = ""
    if np.isfinite(h.left).all() and np.isfinite(h.right).all():
        limits = f"; later batches may widen it to [{fmt(h.left)}, {fmt(h.right)}] at most"
    add(
        trace, "histogram",
        f"AIMET's histogram of the cell: {h.bins} bins of width {fmt(step)} from {fmt(first)} "
        f"to {fmt(last)}, {fmt(total)} values counted (values beyond the ends count in the end "
        f"bins){limits}.",
        bins=h.bins, min=one(first), max=one(last), bin_width=one(step), counted=float(total),
    )  # fmt: skip


def _record_rounded(trace: Trace, before, after, dtype) -> None:
    """The "tensor dtype" step when the range rounded to the stats dtype changed it."""
    if bits_equal(before[0], after[0]) and bits_equal(before[1], after[1]):
        return
    add(
        trace, "tensor dtype",
        f"Rounded to {np.dtype(dtype).name}, the dtype of AIMET's statistics, the range is "
        f"[{fmt(after[0])}, {fmt(after[1])}].",
        min=one(after[0]), max=one(after[1]),
    )  # fmt: skip


@dataclass(frozen=True)
class SettledBins:
    """Percentile bins known without a histogram (`settled_percentile_bins`): `imin` / `imax`
    (int64 per cell) hold in the cells where `settled` is true (elsewhere: 0)."""

    settled: np.ndarray
    imin: np.ndarray
    imax: np.ndarray


def _histc_bin(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, bins: int) -> np.ndarray:
    """The bin `count` gives a value x with lo <= x <= hi (per cell): int64 of
    float32(float32(x - lo) * bins) / float32(hi - lo), where NaN, inf and |t| >= 2^63 give
    INT64_MIN, clipped to [0, bins - 1]."""
    with np.errstate(all="ignore"):
        t = ((_f32(x) - lo) * np.float32(bins)) / (hi - lo)
        t = np.where(np.abs(t) < np.float32(2.0**63), t, np.float32(0))  # NaN fails too
    return np.clip(t.astype(np.int64), 0, bins - 1)


def settled_percentile_bins(
    binning: Binning,
    values_min: np.ndarray,
    values_max: np.ndarray,
    elements: int,
    percentile: float,
) -> SettledBins:
    """The cells of a histogram's only batch whose percentile bins follow from each cell's
    min and max alone, and those bins: equal to ``percentile_bins(finish(binning, counts))``
    there, without counting.

    `binning` must plan a first batch (nothing carried; otherwise nothing is settled);
    `values_min` / `values_max` (cells,) are the min / max of each cell's values as `count`
    sees them (float32), NaN for a cell holding any NaN or inf; every cell holds `elements`
    values. A cell is settled when

    * its values are all finite, 1 <= elements < 2^24 (no saturation; every cumulative
      count is an exact integer in float32) and hi > lo;
    * every value is counted exactly once: ``below == lo`` or min >= max(lo, below) (no value
      in a gap or counted twice at the bottom; float16 / bfloat16 thresholds can differ from
      lo), ``above == hi`` or max <= min(hi, above) at the top. Then the histogram's total is
      `elements`;
    * the bin index is monotone over the cell's values inside [lo, hi]: the quotient of
      min(max, hi) is finite (else an overflow sends a large value to bin 0). Then the first
      non-empty bin is the min's (0 if it is below `below`), the last the max's (bins - 1 if
      it is above `above`);
    * the searched counts fall in those bins: with T = elements and (vmin, vmax) computed as
      `percentile_range` does in float32, vmin <= 1 (imin = 0 if vmin <= 0, else the first
      non-empty bin: cum < vmin only before it), and vmax > T - 1 (imax = the last non-empty
      bin: cum reaches T only there; bins if vmax > T, as no cum reaches it) or vmax <= 0
      (imax = 0); percentile 100 takes (0, bins) whatever the counts.

    At the default 99.99% every cell of up to 9 994 values is settled (float32 gives
    vmin <= 1 and vmax > T - 1; at 9 995 vmax rounds to T - 1): the rows of LLM weights.
    """
    cells, nb = binning.cells, binning.bins
    none = np.zeros(cells, dtype=bool)
    zeros = np.zeros(cells, dtype=np.int64)
    if binning.carried is not None or not 1 <= elements < HISTC_SATURATION:
        return SettledBins(none, zeros, zeros)
    mn, mx = _f32(values_min).ravel(), _f32(values_max).ravel()
    lo, hi, below, above = binning.lo, binning.hi, binning.below, binning.above
    with np.errstate(all="ignore"):
        settled = np.isfinite(mn) & np.isfinite(mx) & (hi > lo)
        settled &= (below == lo) | ((mn >= lo) & (mn >= below))
        settled &= (above == hi) | ((mx <= hi) & (mx <= above))
        top = ((np.minimum(mx, hi) - lo) * np.float32(nb)) / (hi - lo)
        settled &= np.isfinite(top)
    first = np.where(mn < below, 0, np.where(mn > above, nb - 1, _histc_bin(mn, lo, hi, nb)))
    last = np.where(mx > above, nb - 1, np.where(mx < below, 0, _histc_bin(mx, lo, hi, nb)))
    if percentile == 100:
        return SettledBins(settled, zeros, np.where(settled, nb, 0))
    total = np.float32(elements)
    vmin, vmax = (float(v[0]) for v in _percentile_targets(np.array([total]), percentile))
    if vmin <= 0:
        imin = zeros
    elif vmin <= 1:
        imin = first
    else:
        return SettledBins(none, zeros, zeros)
    if vmax <= 0:
        imax = zeros
    elif vmax > total:
        imax = np.full(cells, nb, dtype=np.int64)
    elif vmax > total - 1:
        imax = last
    else:
        return SettledBins(none, zeros, zeros)
    return SettledBins(settled, np.where(settled, imin, 0), np.where(settled, imax, 0))


def uncounted(binning: Binning) -> Histogram:
    """The Histogram of a first batch whose percentile bins are all known without a count
    matrix (`settled_percentile_bins`, `searched_percentile_bins`): ranges and flags as
    `finish` gives them, counts all zero (lazily allocated: never touched)."""
    counts = np.zeros((binning.cells, binning.bins), dtype=F32)
    return binning.histogram(counts)


MAX_SEARCHED_ROW = 2**23  # the fused search's row counts stay exact float32 integers


def searches_percentiles(binning: Binning, row_length: int) -> bool:
    """Whether `searched_percentile_bins` applies to rows of `row_length` values: the kernel
    is on, the histogram has one batch (nothing carried) and rows are shorter than 2^23."""
    return kernel("histc") is not None and binning.carried is None and row_length < MAX_SEARCHED_ROW


def searched_percentile_bins(
    values: np.ndarray,
    binning: Binning,
    percentile: float,
    describe=None,
    dtype=None,
    workers: Optional[int] = None,
) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """``percentile_bins(finish(binning, count(values, binning)))`` where each row of
    `values` is a whole cell of a histogram's only batch (`binning` carries nothing),
    computed row by row by the compiled kernel without a (cells, bins) count matrix: (imin,
    imax), int64 per row. None when the kernel is off or does not apply (see
    `searches_percentiles`); raises as `count` does. `dtype` as in `count`; `workers` (tests)
    splits the rows over that many threads."""
    x = _cell_values(values, binning)
    if not searches_percentiles(binning, x.shape[1]):
        return None
    compiled = kernel("histc")
    _check_strict(x, binning, describe, dtype)
    data, kind, per_cell = _kernel_input(x, binning, dtype)
    cells, m = x.shape
    imin = np.zeros(cells, dtype=np.int64)
    imax = np.zeros(cells, dtype=np.int64)
    pmin, pmax = float(np.float32(1 - percentile / 100)), float(np.float32(percentile))

    def run(rows):
        compiled.percentile_bins(
            data, kind, m, *per_cell, binning.bins, pmin, pmax, imin, imax, *rows
        )

    if workers is None or workers == 1 or x.size < _THREADED_ELEMENTS or cells < 2:
        run((0, cells))
    else:
        _on_threads(run, _row_parts(cells, min(workers, cells)))
    if percentile == 100:
        imin[:], imax[:] = 0, binning.bins
    return imin, imax


def percentile_range(
    h: Histogram,
    percentile: float,
    num_steps: int,
    symmetric: bool,
    settled: Optional[SettledBins] = None,
    *,
    trace: Optional[Trace] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """AIMET's PercentileEncodingAnalyzer (NOTES.md section 8): raw float32 (rmin, rmax).

    The result is rounded to ``h.dtype`` (the input dtype after one batch; float32 after a
    merge, as AIMET's merged stats are float32). `settled` (from `settled_percentile_bins`)
    gives the bins of its settled cells; the others are searched in ``h.counts``. With a
    `trace` (a one-cell histogram, counted: no `settled`), each rule records its step.
    """
    if not 50 <= percentile <= 100:
        raise ValueError("Percentile value must be within 50-100 range")
    if num_steps <= 0:
        raise ValueError("The number of quantization bins cannot be less than or equal to 0.")
    n = num_steps
    if trace is not None:
        record_histogram(trace, h)
    if settled is not None and settled.settled.all():
        imin, imax = settled.imin, settled.imax
    else:
        imin, imax = percentile_bins(h, percentile, trace=trace)
        if settled is not None:
            imin = np.where(settled.settled, settled.imin, imin)
            imax = np.where(settled.settled, settled.imax, imax)
    lo, step = _bin_start_step(h.min, h.max, h.dtype, h.bins, h.merged)
    cmin = _edge(lo, step, imin.astype(F32))
    cmax = _edge(lo, step, imax.astype(F32))
    if trace is not None:
        add(
            trace, "percentile range",
            f"Edge i lies at first edge + i × bin width: edge {one(imin)} = {fmt(cmin)} and "
            f"edge {one(imax)} = {fmt(cmax)}, the range kept.",
            min=one(cmin), max=one(cmax),
        )  # fmt: skip
    cmin, cmax = _adjust_min_max(cmin, cmax, n, symmetric, trace)
    rmin, rmax = _round_cells(cmin, h.dtype, h.merged), _round_cells(cmax, h.dtype, h.merged)
    if trace is not None:
        _record_rounded(trace, (cmin, cmax), (rmin, rmax), h.dtype)
    return rmin, rmax


def _cumulative_counts(counts: np.ndarray) -> np.ndarray:
    """torch.cumsum of float32 counts on CPU: accumulated in double, each output rounded to
    float32. Counts are whole numbers, so while a row's total is below 2^24 every partial sum
    is exact in float32 and an int32 cumsum (one pass, no float64 array) gives the same."""
    totals = counts.sum(axis=1, dtype=np.float64)
    if np.all(totals < HISTC_SATURATION):  # False with NaN counts (a degenerate merge)
        return np.cumsum(counts, axis=1, dtype=np.int32)
    return np.cumsum(counts, axis=1, dtype=np.float64).astype(F32)


def _adjust_min_max(cmin, cmax, n: int, symmetric: bool, trace: Optional[Trace] = None):
    ms = minimum_scale(n)
    big = np.finfo(F32).max
    with np.errstate(all="ignore"):
        # 0-d tensors: torch's scalar path, which keeps the first operand on ties (+-0)
        given = (cmin, cmax)
        cmin = _torch_min(_torch_max(_torch_min(cmin, 0, True), -big, True), 0, True)
        cmax = _torch_min(_torch_max(_torch_max(cmax, 0, True), 0, True), big, True)
        step = (cmax - cmin) / np.float32(n)
        close = step < np.float32(ms)
        npos, nneg = n // 2, -(-n // 2)
        if trace is not None:
            adj = np.where(close, np.float32(ms), np.float32(0))
            record_zero(trace, *given, cmin, cmax)
            record_minimum_scale(trace, cmin, cmax, step, n, np.float32(ms), adj, symmetric)
        if symmetric:
            cmin = np.where(close, cmin - np.float32(ms * nneg), cmin)
            cmax = np.where(close, cmax + np.float32(ms * npos), cmax)
            a = cmax / np.float32(npos)
            b = -cmin / np.float32(nneg)
            delta = np.where(b > a, b, a)  # Python max(a, b)
            umin, umax = cmin, cmax
            cmin = np.float32(-nneg) * delta
            cmax = np.float32(npos) * delta
            if trace is not None:
                record_delta(trace, umin, umax, a, b, delta, n, cmin, cmax, divisor=npos)
        else:
            cmax = np.where(close, cmax + np.float32(ms * n), cmax)
            if trace is not None:
                record_asymmetric(trace, cmin, cmax, n, np.float32(ms), bool(one(close)))
    return _f32(cmin), _f32(cmax)


# ----------------------------------------------------------------------------- SQNR


def _offset_grid(n: int, offset_candidates: int) -> np.ndarray:
    """``round(torch.arange(-n, step, step, dtype=float32))``, `step` = n / (count - 2).

    torch's CPU arange computes ``start + step * i`` in doubles, contracted to one fused
    multiply-add (one rounding of the exact value), then rounds to float32. The FMA decides
    the sign of the last, zero offset: -0.0 for 8 bits (AIMET's relu case shows it)."""
    count_ = min(n + 2, offset_candidates)
    step = n / (count_ - 2)
    size = math.ceil((step - (-n)) / step)
    exact = Fraction(step)
    values = np.array([float(exact * i - n) for i in range(size)], dtype=np.float64)
    return np.rint(values.astype(F32))


def sqnr_candidates(
    h: Histogram,
    num_steps: int,
    symmetric: bool,
    *,
    asymmetric_delta_candidates: int = 17,
    symmetric_delta_candidates: int = 101,
    offset_candidates: int = 21,
    cells_of: Optional[tuple[int, int]] = None,
    trace: Optional[Trace] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """AIMET's ``_pick_test_candidates``: (deltas, offsets), each (cells, candidates) float32,
    candidates in row-major (delta, offset) order. `cells_of` = (first, total): `h` holds
    cells first.. of a histogram of `total` cells (their place decides torch's vector tail).
    With a `trace` (a one-cell histogram), the candidate grid is recorded."""
    n = num_steps
    ms = minimum_scale(n)
    dtype = h.dtype
    first, total = (0, h.cells) if cells_of is None else cells_of
    tail = _cell_tail(total, first, h.cells)
    with np.errstate(all="ignore"):
        mn = _torch_min(h.min, np.float32(0), tail)
        mx = _torch_max(h.max, np.float32(0), tail)
        mx = np.maximum(mx, _round_cells(mn + np.float32(ms * n), dtype, h.merged))
        nf = np.float32(n)
        if symmetric:
            md = (np.float32(2) * np.maximum(mx, -mn)) / nf
            k = np.arange(1, symmetric_delta_candidates + 1, dtype=F32)
            deltas = (md[:, None] * k[None, :]) / np.float32(symmetric_delta_candidates - 1)
            deltas = np.maximum(deltas, np.float32(ms))
            offsets = np.full_like(deltas, np.float32((-n) // 2))
            if trace is not None:
                add(
                    trace, "candidates",
                    f"With zero in it, the histogram's range is [{fmt(mn)}, {fmt(mx)}]; AIMET "
                    f"tries {symmetric_delta_candidates} symmetric grids: delta = k × "
                    f"2 × max(max, -min) / {n} / {symmetric_delta_candidates - 1} = k × "
                    f"{fmt(md)} / {symmetric_delta_candidates - 1} for k = 1.."
                    f"{symmetric_delta_candidates}, offset {(-n) // 2}.",
                    min=one(mn), max=one(mx), delta=one(md),
                    candidates=symmetric_delta_candidates,
                )  # fmt: skip
            return deltas, offsets
        md = _round_cells(mx - mn, dtype, h.merged) / nf
        observed = np.rint(mn / md)
        omin = md * observed
        omax = omin + md * nf
        k = np.arange(1, asymmetric_delta_candidates + 1, dtype=F32)
        deltas = (md[:, None] * k[None, :]) / np.float32(asymmetric_delta_candidates - 1)
        grid = _offset_grid(n, offset_candidates)
        offsets = np.concatenate(
            [np.broadcast_to(grid, (h.cells, grid.size)), observed[:, None]], axis=1
        )
        tmin = deltas[:, :, None] * offsets[:, None, :]
        tmax = tmin + deltas[:, :, None] * nf
        # (cells, deltas, offsets): each cell's deltas x offsets is one inner loop
        inner = tmin.shape[1] * tmin.shape[2]
        tail = (np.arange(inner) >= _vector_part(inner)).reshape(tmin.shape[1:])
        tmin = _torch_max(omin[:, None, None], tmin, tail)
        tmax = _torch_min(omax[:, None, None], tmax, tail)
        d = np.maximum((tmax - tmin) / nf, np.float32(ms))
        o = np.rint(tmin / d)
    if trace is not None:
        add(
            trace, "candidates",
            f"With zero in it, the histogram's range is [{fmt(mn)}, {fmt(mx)}]: the min-max "
            f"grid has delta ({fmt(mx)} - {operand(mn)}) / {n} = {fmt(md)} and offset "
            f"round(min / delta) = {fmt(observed)}. AIMET tries {deltas.shape[1]} deltas, k × "
            f"{fmt(md)} / {asymmetric_delta_candidates - 1} for k = 1.."
            f"{asymmetric_delta_candidates}, with {offsets.shape[1]} offsets each ({grid.size} "
            f"from {fmt(grid[0])} to {fmt(grid[-1])} and the min-max one), each grid cut back "
            f"to the min-max grid's range: {d.shape[1] * d.shape[2]} candidates.",
            min=one(mn), max=one(mx), delta=one(md), offset=one(observed),
            candidates=int(d.shape[1] * d.shape[2]),
        )  # fmt: skip
    return d.reshape(h.cells, -1), o.reshape(h.cells, -1)


def _noise_blocks(
    block_starts,
    *,
    mid,
    counts,
    deltas,
    offsets,
    noise,
    cell_block,
    cand_block,
    num_steps,
    gamma,
    p,
):
    """Noise of the cells in the given blocks (see `sqnr_noise`), every step in float32 in
    AIMET's order: q = round(m / d - o); clipped = q < 0 or q > n; q = (clamp(q, 0, n) + o) * d;
    err = |q - m|^p * count, times gamma where clipped; noise = sum over bins."""
    cells, ncand = deltas.shape
    nb = mid.shape[1]
    nf = np.float32(num_steps)
    g = np.float32(gamma)
    size = cell_block * cand_block * nb
    buf, clipped, above = np.empty(size, F32), np.empty(size, bool), np.empty(size, bool)
    with np.errstate(all="ignore"):
        for c0 in block_starts:
            c1 = min(cells, c0 + cell_block)
            m = mid[c0:c1, None, :]
            w = counts[c0:c1, None, :]
            for k0 in range(0, ncand, cand_block):
                k1 = min(ncand, k0 + cand_block)
                d = deltas[c0:c1, k0:k1, None]
                o = offsets[c0:c1, k0:k1, None]
                shape = (c1 - c0, k1 - k0, nb)
                used = shape[0] * shape[1] * nb
                t = buf[:used].reshape(shape)
                np.divide(m, d, out=t)
                t -= o
                np.rint(t, out=t)
                if gamma != 1.0:
                    clip = clipped[:used].reshape(shape)
                    np.less(t, 0, out=clip)
                    np.greater(t, nf, out=above[:used].reshape(shape))
                    clip |= above[:used].reshape(shape)
                np.clip(t, np.float32(0), nf, out=t)
                t += o
                t *= d
                t -= m
                if p == 2.0:
                    np.square(t, out=t)  # |e|^2 == e*e exactly
                else:
                    np.abs(t, out=t)
                    if p != 1.0:
                        np.power(t, np.float32(p), out=t)
                t *= w
                if gamma != 1.0:
                    np.multiply(t, g, out=t, where=clip)
                np.sum(t, axis=-1, out=noise[c0:c1, k0:k1])


def _workers(workers: Optional[int]) -> int:
    """How many parts to split the cells into: `workers`, else the run's --jobs."""
    return parallel.jobs() if workers is None else max(1, workers)


def _run_parts(job, parts: list, workers: Optional[int]) -> None:
    """`job` over `parts` on the run's threads (qcalc.core.parallel), or on `workers` threads
    of its own when given (each part fills its own cells: no result depends on the split)."""
    if workers is None or workers == 1 or len(parts) == 1:
        for _ in parallel.ordered(job, parts):
            pass
    else:  # at most `workers` parts: one thread each
        _on_threads(job, parts)


def _bin_grid(h: Histogram) -> tuple[np.ndarray, np.ndarray]:
    """(cells,) float32 each: AIMET's first bin centre ``first + width / 2`` and bin width."""
    lo, step = _bin_start_step(h.min, h.max, h.dtype, h.bins, h.merged)
    with np.errstate(all="ignore"):
        first = _edge(lo, step, 0)
        width = _edge(lo, step, 1) - first
        return first + width / np.float32(2), width


def _bin_mids(h: Histogram) -> np.ndarray:
    """(cells, bins) float32: AIMET's bin centres ``first + width / 2 + width * i``."""
    centre, width = _bin_grid(h)
    with np.errstate(all="ignore"):
        return centre[:, None] + width[:, None] * np.arange(h.bins, dtype=F32)[None, :]


def _compiled_search(grid, counts, deltas, offsets, num_steps, gamma, p, workers, noise=None):
    """The compiled scoring (qcalc.core._sqnr): each cell's np.argmin of the noise, int64
    (cells,), bit for bit the numpy path's choice; with `noise` ((cells, candidates) float32)
    every noise is also written there, unpruned. `grid` is `_bin_grid`'s (centre, width), from
    which the kernel computes `_bin_mids` cell by cell.

    None when the numpy path must run: kernel not available, p other than 1 or 2 (numpy's
    float32 power may be SVML, not libm), inputs not float32, no candidate (np.argmin raises)
    or no bin. Cells are split between `workers` threads (the kernel releases the GIL); each
    cell's result does not depend on the split."""
    module = kernels.kernel("sqnr")
    arrays = [np.stack(grid, axis=1)] + [np.asarray(a) for a in (counts, deltas, offsets)]
    if (
        module is None
        or p not in (1.0, 2.0)
        or any(a.dtype != F32 or a.ndim != 2 for a in arrays)
        or deltas.shape[1] == 0
        or arrays[1].shape[-1] == 0
    ):
        return None
    cells, ncand = deltas.shape
    arrays = [np.ascontiguousarray(a) for a in arrays]
    if arrays[0].shape != (cells, 2) or arrays[1].shape[0] != cells:
        raise ValueError(
            "the grid (cells, 2) and counts (cells, bins) must have the candidates' cells"
        )
    if offsets.shape != deltas.shape:
        raise ValueError("deltas and offsets must have the same shape")
    if noise is not None and (
        noise.shape != (cells, ncand) or noise.dtype != F32 or not noise.flags.c_contiguous
    ):
        raise ValueError("noise must be a C-contiguous float32 (cells, candidates) array")
    best = np.zeros(cells, dtype=np.int64)
    bins = arrays[1].shape[1]

    def job(rows: range) -> None:
        module.search(
            *arrays, best, noise, cells, bins, ncand, float(num_steps), float(gamma), float(p),
            rows.start, rows.stop,
        )  # fmt: skip

    parts = max(1, min(_workers(workers), cells))
    bounds = [cells * i // parts for i in range(parts + 1)]
    _run_parts(job, [range(a, b) for a, b in zip(bounds, bounds[1:])], workers)
    return best


def sqnr_noise(
    h: Histogram,
    deltas: np.ndarray,
    offsets: np.ndarray,
    num_steps: int,
    *,
    gamma: float = 3.0,
    p: float = 2.0,
    work_elements: int = _WORK_ELEMENTS,
    workers: Optional[int] = None,
) -> np.ndarray:
    """AIMET's ``_estimate_clip_and_quant_noise`` for every (cell, candidate): float32
    (cells, candidates). Blocks of cells x candidates bound memory to about
    `work_elements` float32 values per temporary and per worker thread (default: the run's
    --jobs threads, qcalc.core.parallel)."""
    cells, ncand = deltas.shape
    nb = h.bins
    noise = np.empty((cells, ncand), dtype=F32)
    grid = _bin_grid(h)
    best = _compiled_search(grid, h.counts, deltas, offsets, num_steps, gamma, p, workers, noise)
    if best is not None:
        return noise
    mid = _bin_mids(h)
    per_cell = max(1, work_elements // nb)
    cand_block = min(ncand, per_cell)
    cell_block = max(1, per_cell // cand_block)
    starts = list(range(0, cells, cell_block))
    parts = max(1, min(_workers(workers), len(starts)))
    spans = [starts[i::parts] for i in range(parts)]
    job = functools.partial(
        _noise_blocks,
        mid=mid,
        counts=h.counts,
        deltas=deltas,
        offsets=offsets,
        noise=noise,
        cell_block=cell_block,
        cand_block=cand_block,
        num_steps=num_steps,
        gamma=gamma,
        p=p,
    )
    _run_parts(job, spans, workers)  # numpy releases the GIL in every ufunc
    return noise


def sqnr_range(
    h: Histogram,
    num_steps: int,
    symmetric: bool,
    *,
    asymmetric_delta_candidates: int = 17,
    symmetric_delta_candidates: int = 101,
    offset_candidates: int = 21,
    gamma: float = 3.0,
    p: float = 2.0,
    work_elements: int = _WORK_ELEMENTS,
    workers: Optional[int] = None,
    cells_of: Optional[tuple[int, int]] = None,
    trace: Optional[Trace] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """AIMET's SqnrEncodingAnalyzer / TfEnhancedEncodingAnalyzer (NOTES.md section 9): raw
    float32 (rmin, rmax). The two differ only in bins and growth limit, which the Histogram
    already embodies (sqnr: 2048 bins, unlimited; tf-enhanced: 512 bins, limit 3.0). Cells
    are independent: `h` may hold a run of another histogram's cells (`cells_of`, see
    `sqnr_candidates`). With a `trace` (a one-cell histogram), the search records its steps:
    the candidates, and the winner with its noise (every candidate is scored: no pruning)."""
    if num_steps <= 0:
        raise ValueError("The number of quantization bins cannot be less than or equal to 0.")
    if trace is not None:
        record_histogram(trace, h)
    deltas, offsets = sqnr_candidates(
        h,
        num_steps,
        symmetric,
        asymmetric_delta_candidates=asymmetric_delta_candidates,
        symmetric_delta_candidates=symmetric_delta_candidates,
        offset_candidates=offset_candidates,
        cells_of=cells_of,
        trace=trace,
    )
    noise = None
    if trace is None:
        best = _compiled_search(
            _bin_grid(h), h.counts, deltas, offsets, num_steps, gamma, p, workers
        )
    else:  # every noise, for the record: the kernel's unpruned scores or the numpy path's
        noise = np.empty(deltas.shape, dtype=F32)
        best = _compiled_search(
            _bin_grid(h), h.counts, deltas, offsets, num_steps, gamma, p, workers, noise
        )
    if best is None:
        noise = sqnr_noise(
            h,
            deltas,
            offsets,
            num_steps,
            gamma=gamma,
            p=p,
            work_elements=work_elements,
            workers=workers,
        )
        best = np.argmin(noise, axis=1)  # first minimum; first NaN if any, as torch.min(dim)
    rows = np.arange(h.cells)
    d = deltas[rows, best]
    o = offsets[rows, best]
    with np.errstate(all="ignore"):
        rmin = o * d
        rmax = rmin + np.float32(num_steps) * d
    out = _round_cells(rmin, h.dtype, h.merged), _round_cells(rmax, h.dtype, h.merged)
    if trace is not None:
        # the min-max grid among the candidates: k = 100 of 101 (symmetric), else k = 16 of 17
        # with the min-max offset (the last of each delta's offsets)
        if symmetric:
            reference = symmetric_delta_candidates - 2
        else:
            per_delta = deltas.shape[1] // asymmetric_delta_candidates
            reference = (asymmetric_delta_candidates - 1) * per_delta - 1
        _record_winner(trace, noise, best, reference, d, o, rmin, rmax, num_steps, gamma, p,
                       h.bins)  # fmt: skip
        _record_rounded(trace, (rmin, rmax), out, h.dtype)
    return out


def _record_winner(trace, noise, best, reference, d, o, rmin, rmax, n, gamma, p, bins):
    """The "noise" and "best candidate" steps of one cell's SQNR search; `reference` is the
    min-max grid's candidate."""
    scores = np.asarray(noise).reshape(-1)
    index = one(best)
    power = "²" if p == 2.0 else f"^{fmt(p)}"
    scored = scores[~np.isnan(scores)]  # a NaN noise (NaN counts) wins np.argmin: said below
    low, high = (scored.min(), scored.max()) if scored.size else (np.float32(np.nan),) * 2
    add(
        trace, "noise",
        f"Each candidate's expected noise is the sum over the {bins} bins of count × "
        f"|bin centre - its quantize-dequantized value|{power}, × {fmt(gamma)} where the "
        f"bin is clipped off the grid; the scores run from {fmt(low)} to {fmt(high)}"
        + (f", {scores.size - scored.size} are NaN." if scored.size < scores.size else "."),
        candidates=int(scores.size), lowest=float(low), highest=float(high), gamma=gamma, p=p,
    )  # fmt: skip
    compared = ""
    if 0 <= reference < scores.size and reference != index:
        same = scores[reference] == scores[index]
        compared = f" (the min-max grid's candidate {reference} " + (
            "scores the same: the first lowest wins)" if same
            else f"scores {fmt(scores[reference])})"
        )  # fmt: skip
    add(
        trace, "best candidate",
        (
            f"Candidate {index} of {scores.size} wins with a NaN noise (torch.min takes the "
            "first NaN)" if np.isnan(scores[index])
            else f"The lowest noise, {fmt(scores[index])}, is candidate {index} of {scores.size}"
        )
        + f"{compared}: delta {fmt(d)}, offset {fmt(o)}, the range [offset × delta, offset × "
        f"delta + {n} × delta] = [{fmt(rmin)}, {fmt(rmax)}].",
        candidate=index, noise=float(scores[index]), delta=one(d), offset=one(o),
        min=one(rmin), max=one(rmax),
    )  # fmt: skip
