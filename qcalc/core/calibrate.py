"""One tensor's calibration: its batches streamed chunk by chunk into statistics (min-max or
AIMET's histograms), then the range -> grid math, giving its Encoding."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import threading
from typing import Optional

import numpy as np

from qcalc.core import grid, parallel
from qcalc.core.conventions import toolchain_grid
from qcalc.core.dtypes import (
    FLOAT32,
    FLOAT32_OVERFLOW,
    FLOAT64,
    arithmetic_dtype,
    beyond_float32,
    float32_view,
    widen,
)
from qcalc.core.encoding import Encoding
from qcalc.core.kernels import kernel
from qcalc.core.layout import spec_layout
from qcalc.core.spec import Spec
from qcalc.core.stats import (
    MinMax,
    NonFiniteCount,
    bf16_minmax,
    bf16_minmax_compiled,
    finite_minmax,
    is_all_finite,
    reduce_minmax,
)
from qcalc.core.tensor import Progress, TensorRef, chunk_rows, row_range
from qcalc.core.toolchains import needs_peaks, shape_refused
from qcalc.errors import HistogramError, NonFiniteError, SpecError


class RangeOverflowError(NonFiniteError):
    """A tensor (or cell) whose encoding is not finite although its values are: its range
    overflows float32 arithmetic. Refused unless --nonfinite keep. `reason` is the message
    without the tensor's name and the hint."""

    def __init__(self, where: str, reason: str, hint: str = "") -> None:
        super().__init__(f"{where}: {reason}{hint}")
        self.reason = reason


def encode_batches(
    name: str,
    batches: list[TensorRef],
    spec: Spec,
    progress: Progress,
    chunk_bytes: int,
    statistics: Optional[list] = None,
) -> Encoding:
    """The Encoding of tensor `name` from its calibration `batches` (statistics merged in
    order), read in chunks of at most `chunk_bytes`; `progress` hears of every chunk.
    `statistics`: each batch's statistics computed before (a stats file): MinMax for the
    min-max analyzer (`minmax_statistics`), BatchHistogram with counts for the histogram
    analyzers (`histogram_ranges`, then `histogram_counts`); then no batch is read.

    Unless --nonfinite is "keep", an encoding that is not finite (a range that overflows
    float32 arithmetic: AIMET's scale is inf, its min NaN) is refused: NonFiniteError naming
    the tensor, the cell and its range."""
    first = batches[0]
    layout, dtype, stream = _prepared(batches, spec, progress, chunk_bytes)
    qmin, qmax = spec.int_range
    if spec.convention != "aimet":
        return _toolchain_encoding(name, batches, spec, layout, stream, statistics)
    if spec.analyzer == "minmax":
        stats = _merged(batches, stream, statistics)
        observed = stats
        rmin, rmax = grid.minmax_range(
            _cast(stats.min, dtype).reshape(layout.encoding_shape),
            _cast(stats.max, dtype).reshape(layout.encoding_shape),
            qmax - qmin,
            spec.symmetric,
            dtype,
        )
    else:
        rmin, rmax, observed = _histogram_range(
            batches, stream, spec, dtype, qmax - qmin, statistics
        )

    granularity = layout.granularity
    extra: dict = {}
    if spec.lpbq and layout.block_axis is not None:
        granularity = "lpbq"
        scale, per_channel, per_block = grid.lpbq_scales(
            rmin, rmax, qmax - qmin, spec.bitwidth, spec.decompressed_bitwidth, layout.block_axis
        )
        offset = np.zeros_like(scale)
        extra = {
            "per_channel_scale": per_channel,
            "per_block_int_scale": per_block,
            "decompressed_bitwidth": spec.decompressed_bitwidth,
        }
    else:
        scale, offset = grid.scale_offset(
            rmin, rmax, qmin, qmax, spec.symmetric, spec.symmetric_offset == "zero"
        )
    encoding = _on_grid(
        name, batches, spec, layout, granularity, scale, offset, rmin, rmax, **extra
    )
    if spec.nonfinite != "keep":
        where = first.where if len(batches) == 1 else f"{encoding.source}: tensor '{name}'"
        _check_finite(encoding, observed, layout, where)
    return encoding


def _toolchain_encoding(
    name: str, batches: list[TensorRef], spec: Spec, layout, stream, statistics=None
) -> Encoding:
    """Another toolchain's encoding (--convention) of the tensor's per-cell min-max range.
    Its numbers are the toolchain's, degenerate ones included (a zero scale, an infinite
    multiplier): they are not refused as AIMET's non-finite encodings are."""
    first = batches[0]
    refused = shape_refused(spec, tuple(first.shape))
    if refused is not None:
        raise SpecError(f"{first.where}: {refused}")
    stats = _merged(batches, stream, statistics)
    mn = _cast(stats.min, FLOAT32).reshape(layout.encoding_shape)
    mx = _cast(stats.max, FLOAT32).reshape(layout.encoding_shape)
    peak = None
    if needs_peaks(spec):
        peak = first_peaks(batches, layout, mn, mx, stream.chunk_bytes)
    numbers = toolchain_grid(spec, mn, mx, peak)
    return _on_grid(
        name, batches, spec, layout, layout.granularity, numbers.scale, numbers.offset, mn, mx,
        toolchain=numbers,
    )  # fmt: skip


def minmax_statistics(
    batches: list[TensorRef], spec: Spec, progress: Progress, chunk_bytes: int
) -> list[MinMax]:
    """Each batch's min-max statistics, as `encode_batches` streams them (for a stats file:
    `encode_batches(..., statistics=...)` finishes the encoding from them)."""
    _, _, stream = _prepared(batches, spec, progress, chunk_bytes)
    return [stream.minmax(batch) for batch in batches]


def _merged(batches: list[TensorRef], stream, statistics: Optional[list[MinMax]]) -> MinMax:
    """The batches' min-max statistics merged in order (streamed unless given)."""
    parts = statistics if statistics is not None else [stream.minmax(b) for b in batches]
    stats = parts[0]
    for part in parts[1:]:
        stats = stats.merge(part)
    return stats


def _on_grid(name, batches, spec, layout, granularity, scale, offset, rmin, rmax, **extra):
    """The tensor's Encoding of `scale` / `offset` (`Encoding.on_grid`) with its layout and
    the first batch's dtype and shape."""
    first = batches[0]
    return Encoding.on_grid(
        name,
        _describe_sources(batches),
        spec,
        granularity,
        scale,
        offset,
        raw_min=rmin,
        raw_max=rmax,
        dtype=first.dtype.name,
        shape=tuple(first.shape),
        axis=layout.channel_axis,
        block_size=layout.block_size,
        block_axis=layout.block_axis,
        **extra,
    )


def first_peaks(batches, layout, mn: np.ndarray, mx: np.ndarray, chunk_bytes: int):
    """llama.cpp Q4_0's peak per block: the value of largest magnitude among those its
    min / max `mn` / `mx` were taken over, the first one (in batch and element order) when -m
    and +m both occur. Reads again only the chunks of rows holding such a block."""
    peak = np.where(np.abs(mn) > np.abs(mx), mn, mx)
    ties = (np.abs(mn) == np.abs(mx)) & (mn != mx)
    if not ties.any():
        return peak
    found = np.zeros(peak.shape, dtype=bool)
    for ref in batches:
        row = 0
        for chunk in ref.chunks(chunk_bytes, layout.row_multiple):
            cells = slice(row, row + len(chunk))
            row += len(chunk)
            if not (ties[cells] & ~found[cells]).any():
                continue  # a mapped chunk not looked at is not read
            blocks = widen(np.asarray(chunk), ref.dtype).astype(FLOAT32, copy=False)
            blocks = blocks.reshape(blocks.shape[0], -1, layout.block_size)
            # the values the statistics saw: NaN, and under --nonfinite ignore ±inf, are not
            # a block's peak (their magnitude exceeds |max| or does not compare)
            magnitude = np.abs(blocks)
            seen = magnitude <= np.abs(mx[cells])[..., None]
            position = np.argmax(np.where(seen, magnitude, np.float32(-1)), axis=-1)
            first = np.take_along_axis(blocks, position[..., None], axis=-1)[..., 0]
            hit = ties[cells] & ~found[cells] & (np.abs(first) == np.abs(mx[cells]))
            peak[cells] = np.where(hit, first, peak[cells])
            found[cells] |= hit
    return peak


def _cast(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`values` in `dtype` (a float64 range in float32 arithmetic: values beyond float32 are
    already ±inf, and the rest round to finite float32s)."""
    with np.errstate(over="ignore"):
        return values.astype(dtype)


def _check_finite(encoding: Encoding, observed: MinMax, layout, where: str) -> None:
    """NonFiniteError unless every number of `encoding` is finite, naming the first cell
    that is not, its observed range and what overflowed."""
    arrays = {key: getattr(encoding, key) for key in ("scale", "offset", "min", "max")}
    bad = np.zeros(encoding.scale.shape, dtype=bool)
    for values in arrays.values():
        bad |= ~np.isfinite(values)
    if not bad.any():
        return
    index = int(np.flatnonzero(bad.reshape(-1))[0])
    cell = layout.cell_name(index)
    lo = float(np.asarray(observed.min).reshape(-1)[index])
    hi = float(np.asarray(observed.max).reshape(-1)[index])
    found = ", ".join(
        f"{key} {float(values.reshape(-1)[index])}"
        for key, values in arrays.items()
        if not np.isfinite(values.reshape(-1)[index])
    )
    raise RangeOverflowError(
        where,
        f"{cell + ': ' if cell else ''}range [{lo:.9g}, {hi:.9g}] overflows float32 "
        f"arithmetic: the encoding's {found}",
        " (--nonfinite keep encodes it as AIMET does)",
    )


@dataclasses.dataclass(frozen=True)
class BatchHistogram:
    """What a stats file keeps of one batch for the histogram analyzers: its finite range
    per cell (`finite`, and `all_finite`: whether every value of the cell was finite) and,
    once counted in the layout the batches before it give, its raw counts (`count`'s int64
    (cells, bins + 2); None before)."""

    finite: MinMax
    all_finite: np.ndarray
    counts: Optional[np.ndarray] = None


def _histogram_range(
    batches, stream, spec: Spec, dtype, num_steps: int, given: Optional[list] = None
):
    """Percentile / SQNR / TF-enhanced: per-cell histograms built batch by batch (two passes
    over each batch: its finite range, then the counts), then AIMET's range search.
    Returns (rmin, rmax, the histograms' range per cell). `given`: each batch's
    BatchHistogram with its counts (a stats file): then no batch is read.

    Under --nonfinite ignore a cell holds only its finite values: a batch where it has none
    adds nothing to it, and a cell without any finite value gets the min-max zero range, as
    min-max gives it. (AIMET's torch.histc raises for such a cell: so does "keep".)"""
    from qcalc.core import histogram

    layout = stream.layout
    planner = _Planner(batches, layout, spec, dtype)
    dtype = planner.dtype
    hist = None
    settled = searched = None
    # one batch: the percentile bins of most cells follow from their min / max, no counting
    shortcut = given is None and spec.analyzer == "percentile" and len(batches) == 1
    for number, batch in enumerate(batches):
        planner.where = batch.where
        if given is not None:
            finite, all_finite = given[number].finite, given[number].all_finite
        else:
            finite, all_finite = stream.finite_range(batch)
        cells = finite.min.size
        binning = planner.plan(hist, finite)
        describe = planner.describe
        if shortcut:
            clean = all_finite.reshape(cells)
            settled = histogram.settled_percentile_bins(
                binning,
                np.where(clean, binning.min, np.float32(np.nan)),  # the finite min / max,
                np.where(clean, binning.max, np.float32(np.nan)),  # as float32 counts them
                math.prod(batch.shape) // cells,
                spec.percentile,
            )
            if settled.settled.all():
                stream.progress.advance(batch.nbytes)  # the counting pass it saves
            else:  # count and search row by row (compiled)
                settled = stream.percentile_bins(batch, binning, spec.percentile, describe)
            if settled is not None:
                hist = histogram.uncounted(binning)
                continue
        elif given is None and len(batches) == 1 and layout.rows_are_cells:
            # SQNR / TF-enhanced chunk by chunk
            searched = stream.sqnr_rows(batch, binning, num_steps, spec.symmetric, describe)
            hist = histogram.uncounted(binning)
            continue
        counts = given[number].counts if given is not None else None
        if counts is None:
            counts = stream.counts(batch, binning, describe)
        hist = histogram.finish(binning, counts)
    shape = layout.encoding_shape
    if spec.analyzer == "percentile":
        rmin, rmax = histogram.percentile_range(
            hist, spec.percentile, num_steps, spec.symmetric, settled
        )
    elif searched is not None:
        rmin, rmax = searched
    else:
        rmin, rmax = histogram.sqnr_range(hist, num_steps, spec.symmetric)
    observed = MinMax(hist.min.reshape(shape), hist.max.reshape(shape))
    empty = ~hist.started
    if empty.any():  # no finite value (only under ignore): the min-max zero range
        zero_min, zero_max = grid.minmax_range(
            np.full(int(empty.sum()), np.inf, dtype),
            np.full(int(empty.sum()), -np.inf, dtype),
            num_steps,
            spec.symmetric,
            dtype,
        )
        rmin, rmax = rmin.copy(), rmax.copy()
        rmin[empty], rmax[empty] = zero_min, zero_max
        observed = MinMax(
            np.where(empty, np.inf, hist.min).reshape(shape),
            np.where(empty, -np.inf, hist.max).reshape(shape),
        )
    return rmin.reshape(shape), rmax.reshape(shape), observed


class _Planner:
    """How each batch of a tensor is binned (histogram.plan_batch with AIMET's dtypes, the
    float64 range check and --nonfinite ignore's rules), given the histogram before it."""

    def __init__(self, batches, layout, spec: Spec, dtype) -> None:
        self.layout, self.spec = layout, spec
        self.wide = dtype == FLOAT64
        self.dtype = FLOAT32 if self.wide else dtype  # AIMET's histograms are float32
        self.where = batches[0].where  # the batch being observed, in errors

    def describe(self, cell: int) -> str:
        name = self.layout.cell_name(cell)
        return f"{self.where}: {name}" if name else self.where

    def plan(self, hist, finite: MinMax):
        from qcalc.core import histogram

        cells = finite.min.size
        batch_min, batch_max = finite.min.reshape(cells), finite.max.reshape(cells)
        if self.wide:  # float64 arithmetic: finite values beyond float32 overflow the histogram
            _check_histogram_range(batch_min, batch_max, self.describe, self.spec.nonfinite)
        ignore = self.spec.nonfinite == "ignore"
        binning = histogram.plan_batch(
            hist,
            _cast(batch_min, self.dtype).astype(np.float32),
            _cast(batch_max, self.dtype).astype(np.float32),
            self.spec.bins,
            self.dtype,
            self.spec.growth_limit,
            empty_ok=ignore,
            describe=self.describe,
        )
        if ignore:  # no NaN / inf is counted: histc's collapsed-range failure cannot happen
            binning = dataclasses.replace(binning, strict=np.zeros_like(binning.strict))
        return binning


def _prepared(batches: list[TensorRef], spec: Spec, progress: Progress, chunk_bytes: int):
    """(layout, arithmetic dtype, stream) of a tensor's batches, as encode_batches makes them."""
    first = batches[0]
    layout = spec_layout(spec, first.shape, first.where)
    for batch in batches[1:]:
        _check_batch(first, batch, layout)
    dtype = arithmetic_dtype(first.dtype, spec.compute_dtype)
    # a float64 tensor in float32 arithmetic (the default): values beyond float32 are ±inf
    float32_inf = first.dtype.name == "float64" and dtype == FLOAT32
    return layout, dtype, _Stream(layout, spec, progress, chunk_bytes, float32_inf)


def histogram_ranges(
    batches: list[TensorRef], spec: Spec, progress: Progress, chunk_bytes: int
) -> list[BatchHistogram]:
    """Round 1 of a histogram analyzer's statistics in parts: each batch's finite range."""
    _, _, stream = _prepared(batches, spec, progress, chunk_bytes)
    return [BatchHistogram(*stream.finite_range(batch)) for batch in batches]


def histogram_counts(
    batches: list[TensorRef],
    spec: Spec,
    ranges: list[BatchHistogram],
    which: int,
    progress: Progress,
    chunk_bytes: int,
) -> np.ndarray:
    """Round 2: batch `which`'s raw counts in the layout AIMET gives it, planned from the
    finite ranges of the batches up to it (a layout follows from ranges alone: the batches
    before are replayed with zero counts)."""
    from qcalc.core import histogram

    layout, dtype, stream = _prepared(batches, spec, progress, chunk_bytes)
    planner = _Planner(batches, layout, spec, dtype)
    hist = None
    for number in range(which + 1):
        planner.where = batches[number].where
        binning = planner.plan(hist, ranges[number].finite)
        if number < which:
            hist = histogram.finish(binning, binning.zeros())
    return stream.counts(batches[which], binning, planner.describe)


@dataclasses.dataclass(frozen=True)
class CountedMinMax:
    """A batch's (or some of its rows') min-max statistics, which cells were all finite, and
    the NaN / inf counts (--nonfinite error) and float64 values beyond float32 seen."""

    stats: MinMax
    all_finite: np.ndarray
    nonfinite: NonFiniteCount
    beyond: int

    @staticmethod
    def joined(parts: list["CountedMinMax"], rows_are_cells: bool) -> "CountedMinMax":
        """The statistics of a batch from those of its consecutive row ranges, as one pass
        gives them: cells concatenated where rows are cells, merged otherwise."""
        nonfinite, beyond = NonFiniteCount(), 0
        for part in parts:
            nonfinite, beyond = nonfinite + part.nonfinite, beyond + part.beyond
        if rows_are_cells:
            stats = MinMax(
                np.concatenate([p.stats.min for p in parts]),
                np.concatenate([p.stats.max for p in parts]),
            )
            clean = np.concatenate([p.all_finite for p in parts])
        else:
            stats, clean = parts[0].stats, parts[0].all_finite
            for part in parts[1:]:
                stats, clean = stats.merge(part.stats), clean & part.all_finite
        return CountedMinMax(stats, clean, nonfinite, beyond)


def raise_nonfinite(ref: TensorRef, found: CountedMinMax) -> None:
    """NonFiniteError (--nonfinite error) when the batch `ref` holds NaN / inf values."""
    nonfinite, beyond = found.nonfinite, found.beyond
    if not nonfinite.total:
        return
    counted = (
        f", counting {beyond} float64 value{'s' if beyond != 1 else ''} beyond the "
        "float32 range as inf (float32 arithmetic; see --compute-dtype)"
        if beyond
        else ""
    )
    raise NonFiniteError(
        f"{ref.source}: tensor '{ref.name}' holds {nonfinite.nan} NaN, "
        f"{nonfinite.posinf} +inf and {nonfinite.neginf} -inf values{counted} "
        f"(--nonfinite ignore skips them, keep encodes them as AIMET does)"
    )


def rows_minmax(
    ref: TensorRef, rows: slice, spec: Spec, chunk_bytes: int, progress: Optional[Progress] = None
) -> CountedMinMax:
    """The min-max statistics of rows `rows` (along axis 0) of batch `ref`: what a worker
    computes of a large tensor (`CountedMinMax.joined` puts the rows back together)."""
    part = row_range(ref, rows)
    _, _, stream = _prepared([part], spec, progress or Progress(), chunk_bytes)
    return stream.counted_minmax(part)


def row_ranges(ref: TensorRef, spec: Spec, most_bytes: int, chunk_bytes: int) -> list[slice]:
    """Consecutive row ranges (along axis 0) of `ref` of about `most_bytes` each, each a whole
    number of the chunks the min-max pass reads it in (so that their statistics join to the
    very bits one pass gives, zero signs included)."""
    layout = spec_layout(spec, ref.shape, ref.where)
    if bf16_minmax_compiled(ref.dtype):  # as _Stream._minmax reads it
        chunk_bytes *= COMPILED_CHUNK_FACTOR
    rows = ref.shape[0]
    row_bytes = max(1, ref.nbytes // max(rows, 1))
    per_chunk = chunk_rows(row_bytes, chunk_bytes, layout.row_multiple)
    step = max(1, most_bytes // (per_chunk * row_bytes)) * per_chunk
    return [slice(start, min(start + step, rows)) for start in range(0, rows, step)]


def _check_histogram_range(batch_min, batch_max, describe, nonfinite: str) -> None:
    """float64 arithmetic (--compute-dtype input): a finite range beyond float32 cannot be
    binned by AIMET's float32 histograms (torch.histc raises): HistogramError under "keep",
    else NonFiniteError, as for any range that overflows float32."""
    bad = beyond_float32(batch_min) | beyond_float32(batch_max)
    if not bad.any():
        return
    cell = int(np.flatnonzero(bad)[0])
    where = describe(cell)
    span = f"range [{float(batch_min[cell]):.9g}, {float(batch_max[cell]):.9g}]"
    if nonfinite == "keep":
        raise HistogramError(
            f"{where}: {span} is beyond float32: AIMET's float32 histogram cannot bin it "
            "(torch.histc: range is not finite)"
        )
    raise RangeOverflowError(
        describe(cell),
        f"{span} overflows float32 arithmetic: AIMET's float32 histogram cannot bin it",
    )


def _check_batch(first: TensorRef, batch: TensorRef, layout) -> None:
    where = batch.where
    if batch.dtype.name != first.dtype.name:  # byte order does not matter
        raise SpecError(
            f"{where}: dtype {batch.dtype.name} differs from {first.dtype.name} "
            f"in {first.source}; batches of one tensor must share a dtype"
        )
    kept = [a for a in (layout.channel_axis, layout.block_axis) if a is not None]
    if kept and (
        len(batch.shape) != len(first.shape) or any(batch.shape[a] != first.shape[a] for a in kept)
    ):
        what = "channel axis" if layout.block_axis is None else "channel and block axes"
        raise SpecError(
            f"{where}: shape {list(batch.shape)} does not match {list(first.shape)} "
            f"in {first.source} along {what} {', '.join(map(str, kept))}"
        )


# Chunks are this many times larger where the compiled bf16 min-max reads them: it makes no
# widened copy to keep in cache, and 1 MB chunks spent as long in Python as in the kernel.
COMPILED_CHUNK_FACTOR = 8


class _Stream:
    """Streams one batch in chunks along axis 0 and reduces each chunk to its cells."""

    def __init__(
        self, layout, spec: Spec, progress: Progress, chunk_bytes: int, float32_inf: bool = False
    ) -> None:
        self.layout, self.spec, self.progress, self.chunk_bytes = (
            layout,
            spec,
            progress,
            chunk_bytes,
        )
        # a float64 tensor in float32 arithmetic: values beyond float32 are ±inf there
        self.float32_inf = float32_inf

    def minmax(self, ref: TensorRef, finite_only: bool = False) -> MinMax:
        """Per-cell min-max of one batch (keepdims shape); non-finite values handled per
        --nonfinite, or always left out with `finite_only` (a histogram's range). With
        `float32_inf`, float64 values beyond float32 are ±inf (dtypes.float32_view). Chunks
        are reduced on the run's threads and merged in order (qcalc.core.parallel)."""
        return self._minmax(ref, finite_only)[0]

    def finite_range(self, ref: TensorRef) -> tuple[MinMax, np.ndarray]:
        """`minmax(ref, finite_only=True)` and, per cell (same shape), whether every value
        of the cell was finite (then that range is the range of all its values)."""
        return self._minmax(ref, True)

    def _minmax(self, ref: TensorRef, finite_only: bool) -> tuple[MinMax, np.ndarray]:
        found = self.counted_minmax(ref, finite_only)
        raise_nonfinite(ref, found)
        return found.stats, found.all_finite

    def counted_minmax(self, ref: TensorRef, finite_only: bool = False) -> "CountedMinMax":
        """`minmax` without its NaN / inf error: the statistics with the counts it raises on
        (rows of a batch computed apart merge with `CountedMinMax.joined`)."""
        layout = self.layout
        parts: list[MinMax] = []
        total: Optional[MinMax] = None
        clean_parts: list[np.ndarray] = []  # per chunk: the cells whose values are all finite
        clean: Optional[np.ndarray] = None
        nonfinite = NonFiniteCount()
        beyond = 0
        reduce = functools.partial(self._reduce_chunk, dtype=ref.dtype, finite_only=finite_only)
        chunk_bytes = self.chunk_bytes
        if bf16_minmax_compiled(ref.dtype):  # no widened copy: per-chunk overhead matters more
            chunk_bytes *= COMPILED_CHUNK_FACTOR
        for stats, all_finite, count, changed, nbytes in parallel.ordered(
            reduce, ref.chunks(chunk_bytes, layout.row_multiple)
        ):
            nonfinite, beyond = nonfinite + count, beyond + changed
            if layout.rows_are_cells:
                parts.append(stats)
                clean_parts.append(all_finite)
            else:
                total = stats if total is None else total.merge(stats)
                clean = all_finite if clean is None else clean & all_finite
            if not finite_only:
                self.progress.advance(nbytes)
        if layout.rows_are_cells:
            stats = MinMax(
                np.concatenate([p.min for p in parts]), np.concatenate([p.max for p in parts])
            )
            return CountedMinMax(stats, np.concatenate(clean_parts), nonfinite, beyond)
        assert total is not None and clean is not None
        return CountedMinMax(total, clean, nonfinite, beyond)

    def _reduce_chunk(self, chunk, dtype, finite_only: bool):
        """One chunk's (MinMax, which cells were all finite, NonFiniteCount counted under
        --nonfinite error, values beyond float32 made ±inf, source bytes)."""
        layout = self.layout
        chunk = np.asarray(chunk)
        values = None
        nonfinite, beyond = NonFiniteCount(), 0
        stats = bf16_minmax(*layout.cell_view(chunk), dtype)  # bf16: no widening
        if stats is None:
            values = widen(chunk, dtype)
            stats = reduce_minmax(*layout.cell_view(values))
        if self.float32_inf and not _within_float32(stats):  # rare: NaN, or huge values
            values, changed = float32_view(widen(chunk, dtype) if values is None else values)
            if changed:
                beyond = changed
                stats = reduce_minmax(*layout.cell_view(values))
        all_finite = np.ones(stats.min.shape, dtype=bool)
        if not is_all_finite(stats):
            all_finite = np.isfinite(stats.min) & np.isfinite(stats.max)
            values = widen(chunk, dtype) if values is None else values
            finite, count = finite_minmax(*layout.cell_view(values), stats)
            if self.spec.nonfinite == "error":
                nonfinite = count
            elif finite_only or self.spec.nonfinite == "ignore":
                stats = finite
        return stats, all_finite, nonfinite, beyond, chunk.nbytes

    def _counted(self, chunk, dtype) -> np.ndarray:
        """A chunk's values as histograms count them (with the tensor's `dtype`: count()
        reads float16 / bfloat16 as they are, compiled). float64 becomes float32 here (beyond
        float32: ±inf, as in float32 models); under --nonfinite ignore NaN and inf become NaN
        (counted nowhere)."""
        values = np.asarray(chunk)
        if values.dtype.name == "float64":  # either byte order
            with np.errstate(over="ignore"):
                values = values.astype(FLOAT32)
        if self.spec.nonfinite == "ignore":
            values = widen(values, dtype)
            values = np.where(np.isfinite(values), values, np.float32(np.nan))
        return values

    def percentile_bins(self, ref: TensorRef, binning, percentile: float, describe=None):
        """AIMET's percentile bins of a histogram's only batch, counted and searched chunk by
        chunk (on the run's threads) by the compiled kernel when every chunk holds whole
        cells (rows): SettledBins for every cell, with no (cells, bins) count matrix. None
        when that does not apply (layout, no kernel; see histogram.searched_percentile_bins)."""
        from qcalc.core import histogram

        layout = self.layout
        row_length = math.prod(ref.shape) // max(binning.cells, 1)
        if not layout.rows_are_cells or not histogram.searches_percentiles(binning, row_length):
            return None
        imin = np.zeros(binning.cells, dtype=np.int64)
        imax = np.zeros(binning.cells, dtype=np.int64)

        def search(item):
            part, cells, named = self._chunk_cells(item, ref.dtype, describe)
            imin[part], imax[part] = histogram.searched_percentile_bins(
                cells, binning.rows(part), percentile, named, dtype=ref.dtype
            )
            return item[1].nbytes

        for nbytes in parallel.ordered(search, self._numbered(ref)):
            self.progress.advance(nbytes)
        return histogram.SettledBins(np.ones(binning.cells, dtype=bool), imin, imax)

    def sqnr_rows(self, ref: TensorRef, binning, num_steps: int, symmetric: bool, describe=None):
        """SQNR / TF-enhanced (rmin, rmax) of a histogram's only batch whose chunks hold whole
        cells (rows): each chunk's cells counted, finished and searched on their own, on the
        run's threads, so no (cells, bins) matrix of the whole tensor is ever held (cells are
        independent: the same numbers as one search of the whole histogram)."""
        from qcalc.core import histogram

        rmin = np.empty(binning.cells, dtype=FLOAT32)
        rmax = np.empty(binning.cells, dtype=FLOAT32)

        def search(item):
            part, cells, named = self._chunk_cells(item, ref.dtype, describe)
            rows = binning.rows(part)
            hist = histogram.counted_histogram(cells, rows, named, dtype=ref.dtype)
            rmin[part], rmax[part] = histogram.sqnr_range(
                hist, num_steps, symmetric, cells_of=(part.start, binning.cells)
            )
            return item[1].nbytes

        # compiled, a chunk costs more in Python than in C: fewer, larger ones
        factor = COMPILED_CHUNK_FACTOR if kernel("histc") and kernel("sqnr") else 1
        for nbytes in parallel.ordered(search, self._numbered(ref, factor)):
            self.progress.advance(nbytes)
        return rmin, rmax

    def counts(self, ref: TensorRef, binning, describe=None) -> np.ndarray:
        """Histogram counts of one batch, chunk by chunk on the run's threads (counts are
        additive: chunks of whole cells fill their own rows, other chunks' counts are summed
        in order); `describe` names a cell in errors (histogram.count)."""
        from qcalc.core import histogram

        layout = self.layout
        total = binning.zeros()
        local = threading.local()  # each thread's work arrays, reused chunk after chunk

        def count_chunk(item):
            part, cells, named = self._chunk_cells(item, ref.dtype, describe)
            workspace = local.__dict__.setdefault("workspace", {})
            if layout.rows_are_cells:  # this chunk's rows hold a contiguous run of cells
                histogram.count(
                    cells, binning.rows(part), total[part], workspace, named, dtype=ref.dtype
                )
                return None, item[1].nbytes
            counted = histogram.count(cells, binning, None, workspace, describe, dtype=ref.dtype)
            return counted, item[1].nbytes

        for counted, nbytes in parallel.ordered(count_chunk, self._numbered(ref)):
            if counted is not None:
                total += counted
            self.progress.advance(nbytes)
        return total

    def _chunk_cells(self, item, dtype, describe):
        """A `_numbered` (first cell, chunk) as the histogram code takes it: the chunk's
        slice of cells, its values as (cells, m) (`_counted`), and how errors name its cell
        k (None without `describe`)."""
        start, chunk = item
        cells = self.layout.cells(self._counted(chunk, dtype))
        named = None if describe is None else (lambda k: describe(start + k))
        return slice(start, start + cells.shape[0]), cells, named

    def _numbered(self, ref: TensorRef, factor: int = 1):
        """(first cell, chunk) for each chunk of `ref` (chunks `factor` times the size)."""
        layout = self.layout
        shape = layout.encoding_shape
        # cells per row of axis 0 (per `row_multiple` rows for blocks along axis 0)
        per_row = int(np.prod(shape, dtype=np.int64)) // shape[0] if layout.rows_are_cells else 0
        start = 0
        for chunk in ref.chunks(self.chunk_bytes * factor, layout.row_multiple):
            yield start, chunk
            if per_row:
                start += len(chunk) // layout.row_multiple * per_row


def _within_float32(stats: MinMax) -> bool:
    """Whether every min and max is below float32's overflow threshold (False with NaN)."""
    return bool(
        (np.abs(stats.min) < FLOAT32_OVERFLOW).all()
        and (np.abs(stats.max) < FLOAT32_OVERFLOW).all()
    )


def _describe_sources(batches: list[TensorRef]) -> str:
    sources = list(dict.fromkeys(batch.source for batch in batches))
    if len(sources) == 1:
        return sources[0]
    try:
        common = os.path.commonpath(sources)
    except ValueError:
        common = ""
    return common if common not in ("", ".", os.sep) else ", ".join(sources)
