"""`qcalc hist`: one tensor's (or one channel's) value distribution, counted for drawing, with
the encoding's range and its quantization error (`qcalc.commands.render.hist` draws it).

Decisions:

- **Bins**: one per plot column, W - GUTTER of them (71 at 80 columns; W is the terminal's
  width, else COLUMNS, else 80, and at least MIN_WIDTH = 40), equal width over the plot
  range: the union of the finite data's range and the encoding's [min, max] (so both
  markers are always on the axis, and unused grid range shows as empty columns). Counting is
  `np.histogram`'s, per chunk on the values widened exactly to float64 (float64 edges whatever
  the stored dtype), summed over chunks: exactly `np.histogram` of the whole array.
- **Streaming**: `TensorRef.chunks` over every batch, twice (the finite range, then the
  counts); memory is one chunk. `--channel K` slices each batch lazily (a view of the
  memory-mapped data, the channel axis dropped) before chunking. Per-block metrics of one
  channel keep the axis (the grid must fit), so they hold one channel row at a time when the
  channel axis is 0.
- **Per-channel / per-block grids without --channel**: the whole tensor is drawn, and the
  markers span every cell (lowest min, highest max); they are not drawn per channel or per
  block, a note says so. The metrics are the tensor's own (per-cell clipping included), with
  the worst channel / block named.
- **--channel K** (negative counts from the end) is the slice K along the encoding's channel
  axis (`--axis`, after a recipe): drawn with cell K's min / max / offset, and with that
  slice's metrics (under a per-tensor encoding built from cell K; under channel K's blocks
  for per-block and LPBQ grids; under the tensor's own grid when it is per tensor).
- **Non-finite values**: as `qcalc check`, the encoding is computed over the finite values
  (`--nonfinite ignore`) so NaN / inf are counted and shown instead of stopping the run; a
  tensor or channel without any finite value is an error.
- **--tensor** is an exact name; a parameter wins over an activation of the same name.
  An unknown name is a FilterError listing the first NAMES_SHOWN names and the count; an
  integer tensor's says why it is not drawn; a recipe skipping the tensor is an error too.
- **Errors** (exit 2): unknown tensor, --channel on a rank-0/1 tensor, channel or axis out of
  range (checked against every batch before anything is computed), nothing finite to draw.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from qcalc.core import parallel
from qcalc.core.dtypes import (
    FLOAT32,
    FLOAT64,
    arithmetic_dtype,
    short_dtype,
)
from qcalc.core.encoding import Encoding, Metrics
from qcalc.core.spec import Spec
from qcalc.core.tensor import DEFAULT_CHUNK_BYTES, Progress, TensorRef
from qcalc.errors import NonFiniteError
from qcalc.ops.encode import PathLike, encode_tensor
from qcalc.ops.pick import (  # noqa: F401 (channel_ref, FiniteRange: part of this module's API)
    FiniteRange,
    cell_encoding,
    channel_encoding,
    channel_ref,
    checked_channel,
    finite_range,
    float64_chunks,
    picked_tensor,
)

GUTTER = 9  # left of the plot: 7-character labels, a space, the axis character
MIN_WIDTH = 40


# --- the streaming histogram ----------------------------------------------------------------


def value_histogram(
    batches: Sequence[TensorRef],
    bins: int,
    value_range: tuple[float, float],
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    float32_inf: bool = False,
) -> np.ndarray:
    """int64 counts of the values of `batches` in `bins` equal bins over `value_range`
    (inclusive at both ends; values outside it and non-finite values are not counted), read
    chunk by chunk: equal to ``np.histogram(all values as float64, bins, value_range)``
    (computed on halved values when the range's width overflows float64, see `_binned`).
    `value_range` must hold `bins` distinct bins (`plot_range` gives one that does)."""
    counts = np.zeros(bins, dtype=np.int64)
    lo, hi = float(value_range[0]), float(value_range[1])
    for values in float64_chunks(batches, chunk_bytes, float32_inf):
        values = values[np.isfinite(values)] if values.size else values
        if values.size:
            counts += _binned(values, bins, lo, hi)
    return counts


def _binned(values: np.ndarray, bins: int, lo: float, hi: float) -> np.ndarray:
    """np.histogram's counts of `values` over [lo, hi]; when hi - lo overflows float64
    (a range near ±float64 max), of the values and the range halved (exact scaling: the
    bins are the same)."""
    if math.isfinite(hi - lo):
        return np.histogram(values, bins=bins, range=(lo, hi))[0]
    values = values[(values >= lo) & (values <= hi)]
    return np.histogram(values * 0.5, bins=bins, range=(lo * 0.5, hi * 0.5))[0]


def plot_range(lo: float, hi: float, bins: int) -> tuple[float, float]:
    """[lo, hi] (finite, lo <= hi) widened, if need be, so that `bins` equal float64 bins
    fit in it: a single value gets a unit-wide range around it (wider for values so large
    that ±0.5 vanishes), a range of a few float64 steps the same around its middle."""
    middle = lo / 2 + hi / 2
    half = max(0.5, abs(middle) * 2.0**-20)
    if hi - lo > 2.0**-20 * max(abs(lo), abs(hi)) and hi - lo > 2.0**-1000:
        return lo, hi  # at least 2^-20 of the magnitude and far from the subnormals
    return middle - half, middle + half


def column_of(value: float, lo: float, hi: float, bins: int) -> Optional[int]:
    """The bin `value` is counted in by `value_histogram` over (lo, hi), None outside."""
    if not (math.isfinite(value) and lo <= value <= hi):
        return None
    counts = _binned(np.array([value], dtype=FLOAT64), bins, lo, hi)
    return int(np.argmax(counts))


# --- the view -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistView:
    """Everything the picture shows: counts over [lo, hi], the grid drawn, the metrics."""

    tensor: str
    shape: tuple[int, ...]
    channel: Optional[tuple[int, int, int]]  # (axis, channel, channel count) with --channel
    encoding: Encoding  # the tensor's
    drawn: Encoding  # the grid drawn: the tensor's, or the channel's cell(s)
    counts: np.ndarray
    lo: float
    hi: float
    data: FiniteRange
    grid_min: Optional[float]  # None: not drawn (a non-finite encoding)
    grid_max: Optional[float]
    metrics: Optional[Metrics]
    worst: str = ""  # "ch 7", "ch 3 block 2": where the worst cell's SQNR is
    notes: list[str] = field(default_factory=list)
    width: int = 80

    @property
    def title(self) -> str:
        """ "t, f32 8×8" and, with --channel, ", channel K of C along axis A"."""
        shape = "×".join(map(str, self.shape)) or "scalar"
        title = f"{self.tensor}, {short_dtype(self.encoding.dtype)} {shape}"
        if self.channel is not None:
            axis, k, count = self.channel
            title += f", channel {k} of {count} along axis {axis}"
        return title


def plot_columns(width: int) -> int:
    """Bins (= plot columns) at a terminal width."""
    return max(MIN_WIDTH, width) - GUTTER


def hist(
    paths: Sequence[PathLike],
    spec: Spec,
    tensor: str,
    *,
    channel: Optional[int] = None,
    activations: Sequence[PathLike] = (),
    recipe=None,
    width: int = 80,
    progress=None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    activation_bitwidth: Optional[int] = None,
    graph_axis: bool = True,
    jobs: Optional[int] = None,
) -> HistView:
    """The view of tensor `tensor` (exact name) in `paths` / `activations` under the
    encoding `qcalc encode` computes with `spec` and `recipe`; of its slice `channel` along
    the channel axis when given; `jobs` threads compute the encoding. Raises FilterError (no
    such tensor), SpecError (bad --channel) or NonFiniteError (nothing finite to draw)."""
    from qcalc.core.metrics import tensor_metrics

    if spec.nonfinite == "error":  # count NaN / inf and draw the rest, as `check` does
        spec = dataclasses.replace(spec, nonfinite="ignore")
    batches, resolved = picked_tensor(
        paths, activations, spec, recipe, tensor, activation_bitwidth, graph_axis
    )
    picked = None
    if channel is not None:
        picked = checked_channel(batches, resolved.axis, channel, tensor)
    progress = progress or Progress()
    progress.start(1, (2 if channel is None else 1) * sum(ref.nbytes for ref in batches))
    with parallel.using(jobs):  # the encoding's passes; the drawing's are one thread's
        encoding = encode_tensor(tensor, batches, resolved, channel is None, progress, chunk_bytes)
    width = max(MIN_WIDTH, width)

    notes: list[str] = []
    cells = int(encoding.scale.size)
    if picked is None:
        refs, drawn, metrics = batches, encoding, encoding.metrics
        if cells > 1:
            kind_of = "channel" if encoding.granularity == "per-channel" else "block"
            notes.append(
                f"[ ] span all {cells} {kind_of} grids (lowest min, highest max): the markers "
                f"are not drawn per {kind_of}; --channel K draws one channel"
            )
    else:
        axis, k, count = picked
        refs = [channel_ref(ref, axis, k) for ref in batches]
        if encoding.granularity == "per-tensor":  # the slice under the tensor's grid
            drawn = encoding
            metrics = tensor_metrics(refs, encoding, chunk_bytes=chunk_bytes)
            notes.append("the grid is per tensor: the slice is drawn under the tensor's grid")
        elif encoding.block_size is None:  # per channel: cell k as a per-tensor encoding
            drawn = cell_encoding(encoding, axis, k, refs[0].shape)
            metrics = tensor_metrics(refs, drawn, chunk_bytes=chunk_bytes)
        else:  # per block: channel k's blocks (the grid keeps the channel axis)
            drawn = channel_encoding(encoding, axis, k)
            kept = [channel_ref(ref, axis, k, keepdims=True) for ref in batches]
            metrics = tensor_metrics(kept, drawn, chunk_bytes=chunk_bytes)
            blocks = int(drawn.scale.size)
            if blocks > 1:
                notes.append(
                    f"[ ] span channel {k}'s {blocks} block grids (lowest min, highest max): "
                    f"the markers are not drawn per block"
                )

    float32_inf = arithmetic_dtype(batches[0].dtype, resolved.compute_dtype) == FLOAT32
    data = finite_range(refs, chunk_bytes, float32_inf)
    if not data.finite:
        where = f"{encoding.source}: tensor '{tensor}'" + (
            "" if picked is None else f" channel {picked[1]}"
        )
        raise NonFiniteError(
            f"{where}: no finite value to draw ({data.nan} NaN, {data.posinf} +inf, "
            f"{data.neginf} -inf)"
        )
    grid_min, grid_max = _envelope(drawn.min, np.nanmin), _envelope(drawn.max, np.nanmax)
    if grid_min is None or grid_max is None:
        grid_min = grid_max = None
        notes.append("the encoding is not finite: its markers are not drawn")
    lo, hi = data.min, data.max
    if grid_min is not None and grid_max is not None:
        lo, hi = min(lo, grid_min), max(hi, grid_max)
    # one value and no grid: a unit-wide plot around it (and any range too narrow for bins)
    lo, hi = plot_range(lo, hi, plot_columns(width))
    counts = value_histogram(refs, plot_columns(width), (lo, hi), chunk_bytes, float32_inf)

    return HistView(
        tensor=tensor,
        shape=tuple(batches[0].shape),
        channel=picked,
        encoding=encoding,
        drawn=drawn,
        counts=counts,
        lo=lo,
        hi=hi,
        data=data,
        grid_min=grid_min,
        grid_max=grid_max,
        metrics=metrics,
        worst=_worst(drawn, metrics),
        notes=notes,
        width=width,
    )


def _envelope(values: np.ndarray, reduce) -> Optional[float]:
    values = np.asarray(values, dtype=FLOAT64)
    if values.size == 0 or not np.isfinite(values).all():
        return None
    return float(reduce(values))


def _worst(encoding: Encoding, metrics) -> str:
    """Where the worst cell is: "ch 7", "block 3", "ch 2 block 5"; "" for one cell."""
    if metrics is None or metrics.worst_index is None or encoding.scale.size <= 1:
        return ""
    index = np.unravel_index(metrics.worst_index, encoding.encoding_shape)
    if encoding.block_axis is None:
        return f"ch {int(index[encoding.axis])}" if encoding.axis is not None else ""
    block = f"block {int(index[encoding.block_axis])}"
    if encoding.axis is None or encoding.encoding_shape[encoding.axis] == 1:
        return block
    return f"ch {int(index[encoding.axis])} {block}"
