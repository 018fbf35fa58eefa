"""One tensor's calibration: its batches streamed chunk by chunk into statistics (min-max or
AIMET's histograms), then the range -> grid math, giving its Encoding."""

from __future__ import annotations

import os
from typing import Optional

import numpy as np

from qcalc.core import grid
from qcalc.core.dtypes import FLOAT32, FLOAT64, arithmetic_dtype, widen
from qcalc.core.encoding import Encoding
from qcalc.core.layout import layout_for
from qcalc.core.spec import Spec
from qcalc.core.stats import (
    MinMax,
    NonFiniteCount,
    finite_minmax,
    is_all_finite,
    reduce_minmax,
    short_rows_minmax,
)
from qcalc.core.tensor import Progress, TensorRef
from qcalc.errors import NonFiniteError, SpecError


def encode_batches(
    name: str, batches: list[TensorRef], spec: Spec, progress: Progress, chunk_bytes: int
) -> Encoding:
    """The Encoding of tensor `name` from its calibration `batches` (statistics merged in
    order), read in chunks of at most `chunk_bytes`; `progress` hears of every chunk."""
    first = batches[0]
    layout = layout_for(
        first.shape, spec.per_channel, spec.axis, first.where, spec.block_size, spec.block_axis
    )
    for batch in batches[1:]:
        _check_batch(first, batch, layout)
    dtype = arithmetic_dtype(first.dtype, spec.compute_dtype)
    qmin, qmax = spec.int_range
    stream = _Stream(layout, spec, progress, chunk_bytes)
    if spec.analyzer == "minmax":
        stats = stream.minmax(batches[0])
        for batch in batches[1:]:
            stats = stats.merge(stream.minmax(batch))
        rmin, rmax = grid.minmax_range(
            stats.min.astype(dtype).reshape(layout.encoding_shape),
            stats.max.astype(dtype).reshape(layout.encoding_shape),
            qmax - qmin,
            spec.symmetric,
            dtype,
        )
    else:
        rmin, rmax = _histogram_range(batches, stream, spec, dtype, qmax - qmin)

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


def _histogram_range(batches, stream, spec: Spec, dtype, num_steps: int):
    """Percentile / SQNR / TF-enhanced: per-cell histograms built batch by batch (two passes
    over each batch: its finite range, then the counts), then AIMET's range search."""
    from qcalc.core import histogram

    if dtype == FLOAT64:  # AIMET's histograms are float32 even for float64 models
        dtype = FLOAT32
    hist = None
    for batch in batches:
        finite = stream.minmax(batch, finite_only=True)
        cells = finite.min.size
        binning = histogram.plan_batch(
            hist,
            finite.min.reshape(cells).astype(dtype).astype(np.float32),
            finite.max.reshape(cells).astype(dtype).astype(np.float32),
            spec.bins,
            dtype,
            spec.growth_limit,
        )
        hist = histogram.finish(binning, stream.counts(batch, binning))
    shape = stream.layout.encoding_shape
    if spec.analyzer == "percentile":
        rmin, rmax = histogram.percentile_range(hist, spec.percentile, num_steps, spec.symmetric)
    else:
        rmin, rmax = histogram.sqnr_range(hist, num_steps, spec.symmetric)
    return rmin.reshape(shape), rmax.reshape(shape)


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


class _Stream:
    """Streams one batch in chunks along axis 0 and reduces each chunk to its cells."""

    def __init__(self, layout, spec: Spec, progress: Progress, chunk_bytes: int) -> None:
        self.layout, self.spec, self.progress, self.chunk_bytes = (
            layout,
            spec,
            progress,
            chunk_bytes,
        )

    def _chunks(self, ref: TensorRef):
        for chunk in ref.chunks(self.chunk_bytes, self.layout.row_multiple):
            yield chunk, widen(np.asarray(chunk))

    def minmax(self, ref: TensorRef, finite_only: bool = False) -> MinMax:
        """Per-cell min-max of one batch (keepdims shape); non-finite values handled per
        --nonfinite, or always left out with `finite_only` (a histogram's range)."""
        layout = self.layout
        parts: list[MinMax] = []
        total: Optional[MinMax] = None
        nonfinite = NonFiniteCount()
        for chunk in ref.chunks(self.chunk_bytes, layout.row_multiple):
            chunk = np.asarray(chunk)
            stats = short_rows_minmax(*layout.cell_view(chunk))  # bf16 blocks: no widening
            if stats is None:
                stats = reduce_minmax(*layout.cell_view(widen(chunk)))
            if not is_all_finite(stats):
                finite, count = finite_minmax(*layout.cell_view(widen(chunk)))
                if self.spec.nonfinite == "error":
                    nonfinite = nonfinite + count
                elif finite_only or self.spec.nonfinite == "ignore":
                    stats = finite
            if layout.rows_are_cells:
                parts.append(stats)
            else:
                total = stats if total is None else total.merge(stats)
            if not finite_only:
                self.progress.advance(chunk.nbytes)
        if nonfinite.total:
            raise NonFiniteError(
                f"{ref.source}: tensor '{ref.name}' holds {nonfinite.nan} NaN, "
                f"{nonfinite.posinf} +inf and {nonfinite.neginf} -inf values "
                f"(--nonfinite ignore skips them, keep encodes them as AIMET does)"
            )
        if layout.rows_are_cells:
            return MinMax(
                np.concatenate([p.min for p in parts]), np.concatenate([p.max for p in parts])
            )
        assert total is not None
        return total

    def counts(self, ref: TensorRef, binning) -> np.ndarray:
        """Histogram counts of one batch, chunk by chunk (counts are additive)."""
        from qcalc.core import histogram

        layout = self.layout
        total = binning.zeros()
        start = 0
        workspace: dict = {}  # count's work arrays, reused chunk after chunk
        for chunk, values in self._chunks(ref):
            if self.spec.nonfinite == "ignore":
                values = np.where(np.isfinite(values), values, np.float32(np.nan))
            cells = layout.cells(values)
            if layout.rows_are_cells:  # this chunk's rows hold a contiguous run of cells
                part = slice(start, start + cells.shape[0])
                histogram.count(cells, binning.rows(part), total[part], workspace)
                start += cells.shape[0]
            else:
                histogram.count(cells, binning, total, workspace)
            self.progress.advance(chunk.nbytes)
        return total


def _describe_sources(batches: list[TensorRef]) -> str:
    sources = list(dict.fromkeys(batch.source for batch in batches))
    if len(sources) == 1:
        return sources[0]
    try:
        common = os.path.commonpath(sources)
    except ValueError:
        common = ""
    return common if common not in ("", ".", os.sep) else ", ".join(sources)
