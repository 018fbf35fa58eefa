"""`qcalc hist`: one tensor's (or one channel's) value distribution drawn in the terminal, with
the encoding's range, its zero point and the clipped tails marked, and its quantization error.

Layout at width W (no line wider; W is the terminal's width, else COLUMNS, else 80, and at
least MIN_WIDTH = 40). Title lines (tensor, dtype, shape, channel; then the grid and analyzer
as `encode`'s table title), ROWS = 10 rows of bars with the largest count on the top row, the
axis with the markers, the labels, and the legend::

    t, f32 8×8
    f32, 8-bit asymmetric unsigned grid [0, 255], percentile 90
          4 ┤                ██ █ ██ █ ██ █
            │                ██▅█▅██▅█▅██▅█▅▅
            ...
            │█  █           █████████████████                       █       █      █
          0 └××××××××××××××××[──────0──────]××××××××××××××××××××××××××××××××××××××××
       grid                  -0.863    0.926
       data  -3                                                                    6
      count  log scale: bar height ∝ log(1 + count); 71 bins of 0.127; 64 values
      marks  [ ] grid min / max, 0 zero point (level 123), × clipped, scale 0.00701
    metrics  sqnr 2.4 dB, mse 1.33, max abs error 5.07, clipped 20.3%, grid used 25%
       note  (only when needed: markers spanning several cells, a non-finite grid)

Decisions:

- **Bins**: one per plot column, W - GUTTER of them (71 at 80 columns), equal width over the
  plot range: the union of the finite data's range and the encoding's [min, max] (so both
  markers are always on the axis, and unused grid range shows as empty columns). Counting is
  `np.histogram`'s, per chunk on the values widened exactly to float64 (float64 edges whatever
  the stored dtype), summed over chunks: exactly `np.histogram` of the whole array.
- **Streaming**: `TensorRef.chunks` over every batch, twice (the finite range, then the
  counts); memory is one chunk. `--channel K` slices each batch lazily (a view of the
  memory-mapped data, the channel axis dropped) before chunking. Per-block metrics of one
  channel keep the axis (the grid must fit), so they hold one channel row at a time when the
  channel axis is 0.
- **Heights** are log-scaled: ``round(log1p(count) / log1p(largest) * ROWS * 8)`` eighths of a
  row, drawn with ▁▂▃▄▅▆▇█; a bin with any value gets at least one eighth, so single
  outliers stay visible. Non-finite values are counted (the `count` line) and not drawn.
- **Markers** sit in the column whose bin a value equal to the marker would be counted in:
  ``[`` at the grid's min, ``]`` at its max (``|`` when both fall in one column), ``0`` where
  0.0 falls (the float the zero point, integer level -offset, maps to; a bracket wins a
  shared column, as with all-positive asymmetric data, where min is 0). Columns left of
  ``[`` and right of ``]`` are the clipped tails: ``×`` on the axis and red bars on colour
  terminals (the bracket columns themselves may hold some clipped values). Below the axis,
  the grid's min / max labels start at ``[`` / end at ``]``, and the data's at their columns.
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
- **--tensor** is an exact name (passed to `compute_encodings` as a `glob.escape`d include
  pattern, so `w[0]` is not a glob); a parameter wins over an activation of the same name.
  An unknown name is a FilterError listing the first NAMES_SHOWN names and the count; an
  integer tensor's says why it is not drawn; a recipe skipping the tensor is an error too.
- **Errors** (exit 2): unknown tensor, --channel on a rank-0/1 tensor, channel or axis out of
  range (checked against every batch before anything is computed), nothing finite to draw.
- **Colour** only on terminals (rich decides); `to_text` is the plain rendering.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import textwrap
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from qcalc.api import PathLike, compute_encodings, gather, tensor_spec
from qcalc.dtypes import FLOAT64
from qcalc.errors import FilterError, NonFiniteError, SpecError
from qcalc.readers.base import DEFAULT_CHUNK_BYTES, TensorRef
from qcalc.spec import Encoding, Spec

ROWS = 10  # bar rows
GUTTER = 9  # left of the plot: 7-character labels, a space, the axis character
MIN_WIDTH = 40
BLOCKS = "▁▂▃▄▅▆▇█"
AXIS, CLIPPED, LOW, HIGH, BOTH, ZERO = "─", "×", "[", "]", "|", "0"
NAMES_SHOWN = 5  # tensor names listed when --tensor names none


# --- the streaming histogram ----------------------------------------------------------------


@dataclass(frozen=True)
class FiniteRange:
    """The finite values' range of some batches, and how many values were (not) finite."""

    min: float
    max: float
    finite: int
    nan: int
    posinf: int
    neginf: int


def finite_range(
    batches: Sequence[TensorRef], chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> FiniteRange:
    """Stream `batches` once: min / max of the finite values (NaN, NaN when none is finite)
    and the counts of finite, NaN, +inf and -inf values."""
    lo, hi = math.inf, -math.inf
    finite = nan = posinf = neginf = 0
    for values in _chunks64(batches, chunk_bytes):
        if values.size == 0:
            continue
        cmin, cmax = float(values.min()), float(values.max())
        if math.isfinite(cmin) and math.isfinite(cmax):  # the common case: one cheap pass
            finite += values.size
        else:
            ok = np.isfinite(values)
            nan += int(np.count_nonzero(np.isnan(values)))
            posinf += int(np.count_nonzero(values == np.inf))
            neginf += int(np.count_nonzero(values == -np.inf))
            values = values[ok]
            finite += values.size
            if values.size == 0:
                continue
            cmin, cmax = float(values.min()), float(values.max())
        lo, hi = min(lo, cmin), max(hi, cmax)
    if not finite:
        lo = hi = math.nan
    return FiniteRange(lo, hi, finite, nan, posinf, neginf)


def value_histogram(
    batches: Sequence[TensorRef],
    bins: int,
    value_range: tuple[float, float],
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> np.ndarray:
    """int64 counts of the values of `batches` in `bins` equal bins over `value_range`
    (inclusive at both ends; values outside it and non-finite values are not counted), read
    chunk by chunk: equal to ``np.histogram(all values as float64, bins, value_range)``."""
    counts = np.zeros(bins, dtype=np.int64)
    lo, hi = float(value_range[0]), float(value_range[1])
    for values in _chunks64(batches, chunk_bytes):
        values = values[np.isfinite(values)] if values.size else values
        if values.size:
            counts += np.histogram(values, bins=bins, range=(lo, hi))[0]
    return counts


def _chunks64(batches: Sequence[TensorRef], chunk_bytes: int):
    """Each chunk of each batch, flattened and widened exactly to float64."""
    for ref in batches:
        for chunk in ref.chunks(chunk_bytes):
            yield np.asarray(chunk).astype(FLOAT64).ravel()


def column_of(value: float, lo: float, hi: float, bins: int) -> Optional[int]:
    """The bin `value` is counted in by `value_histogram` over (lo, hi), None outside."""
    if not (math.isfinite(value) and lo <= value <= hi):
        return None
    counts = np.histogram(np.array([value], dtype=FLOAT64), bins=bins, range=(lo, hi))[0]
    return int(np.argmax(counts))


def channel_ref(ref: TensorRef, axis: int, channel: int, keepdims: bool = False) -> TensorRef:
    """`ref` sliced at `channel` along `axis` (both normalised), lazily: a view of the data,
    read in chunks like the tensor. `keepdims` keeps the axis (length 1)."""
    index = (slice(None),) * axis + (slice(channel, channel + 1) if keepdims else channel,)
    shape = tuple(ref.shape)
    shape = shape[:axis] + ((1,) if keepdims else ()) + shape[axis + 1 :]
    return TensorRef(ref.name, ref.source, ref.dtype, shape, lambda: ref.load()[index])


# --- the view -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistView:
    """Everything `render` draws: counts over [lo, hi], the markers' values, the text parts."""

    title: str
    subtitle: str
    counts: np.ndarray
    lo: float
    hi: float
    data: FiniteRange
    grid_min: Optional[float]  # None: not drawn (a non-finite encoding)
    grid_max: Optional[float]
    zero_level: str  # the integer level 0.0 maps to (-offset), or the spread over cells
    scale: str
    metrics: Any  # qcalc.metrics.Metrics
    worst: str = ""  # "ch 7", "ch 3 block 2": where the worst cell's SQNR is
    notes: list[str] = field(default_factory=list)
    width: int = 80


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
) -> HistView:
    """The view of tensor `tensor` (exact name) in `paths` / `activations` under the
    encoding `qcalc encode` computes with `spec` and `recipe`; of its slice `channel` along
    the channel axis when given. Raises FilterError (no such tensor), SpecError (bad
    --channel) or NonFiniteError (nothing finite to draw)."""
    from qcalc.metrics import tensor_metrics

    if spec.nonfinite == "error":  # count NaN / inf and draw the rest, as `check` does
        spec = dataclasses.replace(spec, nonfinite="ignore")
    kind, batches = _find(gather(paths, activations), tensor)
    resolved = tensor_spec(tensor, kind, spec, recipe)
    if resolved is None:
        raise FilterError(f"tensor '{tensor}': skipped by a --recipe rule; nothing to draw")
    picked = None
    if channel is not None:
        picked = _channel(batches, resolved.axis, channel, tensor)
    result = compute_encodings(
        paths,
        spec,
        activations=activations,
        include=[glob.escape(tensor)],
        recipe=recipe,
        metrics=channel is None,
        progress=progress,
        chunk_bytes=chunk_bytes,
    )
    found = result.encodings if kind == "param" else result.activations
    encoding = next(enc for enc in found if enc.name == tensor)
    width = max(MIN_WIDTH, width)

    notes: list[str] = []
    cells = int(encoding.scale.size)
    shape = "×".join(map(str, batches[0].shape)) or "scalar"
    from qcalc.report import SHORT_DTYPES, table_title

    dtype = SHORT_DTYPES.get(encoding.dtype or "", encoding.dtype)
    title = f"{tensor}, {dtype} {shape}"
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
        title += f", channel {k} of {count} along axis {axis}"
        refs = [channel_ref(ref, axis, k) for ref in batches]
        if encoding.granularity == "per-tensor":  # the slice under the tensor's grid
            drawn = encoding
            metrics = tensor_metrics(refs, encoding, chunk_bytes=chunk_bytes)
            notes.append("the grid is per tensor: the slice is drawn under the tensor's grid")
        elif encoding.block_size is None:  # per channel: cell k as a per-tensor encoding
            drawn = _cell_encoding(encoding, axis, k, refs[0].shape)
            metrics = tensor_metrics(refs, drawn, chunk_bytes=chunk_bytes)
        else:  # per block: channel k's blocks (the grid keeps the channel axis)
            drawn = _channel_encoding(encoding, axis, k)
            kept = [channel_ref(ref, axis, k, keepdims=True) for ref in batches]
            metrics = tensor_metrics(kept, drawn, chunk_bytes=chunk_bytes)
            blocks = int(drawn.scale.size)
            if blocks > 1:
                notes.append(
                    f"[ ] span channel {k}'s {blocks} block grids (lowest min, highest max): "
                    f"the markers are not drawn per block"
                )

    data = finite_range(refs, chunk_bytes)
    if not data.finite:
        where = f"tensor '{tensor}'" + ("" if picked is None else f" channel {picked[1]}")
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
    if not hi > lo:  # one value and no grid: a unit-wide plot around it
        lo, hi = lo - 0.5, hi + 0.5
    counts = value_histogram(refs, plot_columns(width), (lo, hi), chunk_bytes)

    from qcalc.report import _num, _spread

    levels = -np.asarray(drawn.offset, dtype=FLOAT64)
    return HistView(
        title=title,
        subtitle=table_title([encoding]),
        counts=counts,
        lo=lo,
        hi=hi,
        data=data,
        grid_min=grid_min,
        grid_max=grid_max,
        zero_level=_spread(levels + 0.0, integer=True),
        scale=_spread(np.asarray(drawn.scale)) if drawn.scale.size else _num(math.nan),
        metrics=metrics,
        worst=_worst(drawn, metrics),
        notes=notes,
        width=width,
    )


def _find(found, tensor: str) -> tuple[str, list[TensorRef]]:
    """(kind, batches) of the tensor named exactly `tensor`; parameters first."""
    for kind in ("param", "activation"):
        if tensor in found.groups[kind]:
            return kind, found.groups[kind][tensor]
    for skipped in found.skipped:
        if skipped.name == tensor:
            raise FilterError(f"tensor '{tensor}': {skipped.reason}; nothing to draw")
    names = list(dict.fromkeys(name for group in found.groups.values() for name in group))
    if not names:
        raise FilterError(f"tensor '{tensor}' not found: the inputs hold no float tensor")
    shown = ", ".join(names[:NAMES_SHOWN]) + (", …" if len(names) > NAMES_SHOWN else "")
    count = f"{len(names)} tensor{'s' if len(names) != 1 else ''}"
    raise FilterError(f"tensor '{tensor}' not found; the inputs hold {count}: {shown}")


def _channel(
    batches: list[TensorRef], axis: int, channel: int, tensor: str
) -> tuple[int, int, int]:
    """(axis, channel, channel count), normalised and checked against every batch."""
    shape = tuple(batches[0].shape)
    rank = len(shape)
    if rank < 2:
        raise SpecError(
            f"tensor '{tensor}': --channel needs a tensor of rank >= 2, not shape {list(shape)}"
        )
    if not -rank <= axis < rank:
        raise SpecError(
            f"tensor '{tensor}': axis {axis} is out of range for shape {list(shape)} (rank {rank})"
        )
    axis %= rank
    count = min(ref.shape[axis] if len(ref.shape) > axis else 0 for ref in batches)
    if not -count <= channel < count:
        raise SpecError(
            f"tensor '{tensor}': channel {channel} is out of range: {count} channels along "
            f"axis {axis} (0..{count - 1})"
        )
    return axis, channel % count, count


_CELL_FIELDS = ("scale", "offset", "min", "max", "raw_min", "raw_max")


def _cell_encoding(encoding: Encoding, axis: int, k: int, shape) -> Encoding:
    """Per-channel cell k as a per-tensor encoding (0-d arrays) of the channel slice."""
    arrays = {
        name: np.take(getattr(encoding, name), k, axis=axis).reshape(()) for name in _CELL_FIELDS
    }
    return dataclasses.replace(
        encoding, granularity="per-tensor", axis=None, shape=tuple(shape), metrics=None, **arrays
    )


def _channel_encoding(encoding: Encoding, axis: int, k: int) -> Encoding:
    """Channel k's blocks of a per-block / LPBQ encoding, the channel axis kept (length 1)."""
    arrays = {name: np.take(getattr(encoding, name), [k], axis=axis) for name in _CELL_FIELDS}
    for name in ("per_channel_scale", "per_block_int_scale"):
        values = getattr(encoding, name)
        if values is not None and np.ndim(values) > axis:
            arrays[name] = np.take(values, [k], axis=axis)
    shape = None
    if encoding.shape is not None:
        shape = encoding.shape[:axis] + (1,) + encoding.shape[axis + 1 :]
    return dataclasses.replace(encoding, shape=shape, metrics=None, **arrays)


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


# --- rendering ------------------------------------------------------------------------------


def heights(counts: np.ndarray, rows: int = ROWS) -> np.ndarray:
    """Bar heights in eighths of a row: log1p(count) scaled so the largest count fills
    `rows` rows; at least one eighth for any non-zero count."""
    counts = np.asarray(counts, dtype=np.int64)
    largest = int(counts.max()) if counts.size else 0
    if largest == 0:
        return np.zeros(counts.shape, dtype=np.int64)
    scaled = np.rint(np.log1p(counts) / math.log1p(largest) * rows * 8).astype(np.int64)
    return np.where(counts > 0, np.maximum(scaled, 1), 0)


def axis_marks(view: HistView) -> list[str]:
    """One character per plot column: ─, × (clipped tail), [, ], | and 0."""
    n = len(view.counts)
    marks = [AXIS] * n
    zero = column_of(0.0, view.lo, view.hi, n)
    if view.grid_min is not None and view.grid_max is not None:
        low = column_of(view.grid_min, view.lo, view.hi, n)
        high = column_of(view.grid_max, view.lo, view.hi, n)
        assert low is not None and high is not None  # the plot range holds the grid's
        for column in [*range(low), *range(high + 1, n)]:
            marks[column] = CLIPPED
        if zero is not None:
            marks[zero] = ZERO
        marks[low], marks[high] = LOW, HIGH
        if low == high:
            marks[low] = BOTH
    elif zero is not None:
        marks[zero] = ZERO
    return marks


def _labels(n: int, left: tuple[str, int], right: tuple[str, int]) -> str:
    """A line of `n` characters: `left`'s text starting at its column, `right`'s ending at
    its column, each moved inwards to fit; joined by two spaces when they would touch."""
    (ltext, lcol), (rtext, rcol) = left, right
    lstart = max(0, min(lcol, n - len(ltext)))
    rstart = max(0, min(rcol - len(rtext) + 1, n - len(rtext)))
    if ltext == rtext and lcol == rcol:
        return (" " * lstart + ltext)[:n].rstrip()
    if rstart < lstart + len(ltext) + 1:
        both = f"{ltext}  {rtext}"
        return (" " * max(0, min(lstart, n - len(both))) + both)[:n].rstrip()
    return (" " * lstart + ltext + " " * (rstart - lstart - len(ltext)) + rtext).rstrip()


def _pack(parts: Sequence[str], room: int, sep: str = ", ") -> list[str]:
    """`parts` joined by `sep` into lines of at most `room` characters, broken between parts
    (the separator's non-blank end stays at the end of the line); a part too long for a line
    on its own is wrapped at its spaces."""
    tail = sep.rstrip()
    rows: list[str] = []
    for i, part in enumerate(parts):
        more = len(tail) if i < len(parts) - 1 else 0  # room for a separator after it
        if rows and len(rows[-1]) + len(sep) + len(part) + more <= room:
            rows[-1] += sep + part
            continue
        if rows:
            rows[-1] += tail
        rows += textwrap.wrap(part, room - more, break_on_hyphens=False) or [""]
    return rows or [""]


def _info(label: str, parts: Sequence[str], width: int, sep: str = ", ") -> list[str]:
    """`parts` packed beside a right-aligned gutter label."""
    rows = _pack(parts, width - GUTTER, sep)
    return [f"{label if i == 0 else '':>{GUTTER - 2}}  {row}" for i, row in enumerate(rows)]


def _count_label(count: int) -> str:
    if count < 10**7:
        return str(count)
    from qcalc.report import _num

    return _num(count)


def lines(view: HistView) -> list[Any]:
    """The view as rich Text lines, none wider than `view.width`."""
    from rich.text import Text

    from qcalc.report import _num

    width = view.width
    n = len(view.counts)
    out = [Text(line, style="bold") for line in _pack(view.title.split(", "), width)]
    out += [Text(line, style="italic") for line in _pack(view.subtitle.split(", "), width)]

    marks = axis_marks(view)
    clipped = [mark == CLIPPED for mark in marks]
    high = heights(view.counts)
    top = _count_label(int(view.counts.max()))
    for row in range(ROWS - 1, -1, -1):
        gutter = f"{top:>{GUTTER - 2}} ┤" if row == ROWS - 1 else " " * (GUTTER - 1) + "│"
        glyphs = []
        for column in range(n):
            eighths = int(high[column]) - row * 8
            glyphs.append(" " if eighths <= 0 else BLOCKS[min(eighths, 8) - 1])
        styles = ["red" if clip else "cyan" for clip in clipped]
        line = _styled(gutter, glyphs, styles)
        line.rstrip()
        out.append(line)
    styles = [{CLIPPED: "red", AXIS: "dim"}.get(mark, "bold") for mark in marks]
    out.append(_styled(f"{'0':>{GUTTER - 2}} └", marks, styles))

    def column(value: float) -> int:
        found = column_of(value, view.lo, view.hi, n)
        return 0 if found is None else found

    if view.grid_min is not None and view.grid_max is not None:
        grid = _labels(
            n,
            (_num(view.grid_min), column(view.grid_min)),
            (_num(view.grid_max), column(view.grid_max)),
        )
        out.append(Text(f"{'grid':>{GUTTER - 2}}  " + grid))
    data = view.data
    labels = _labels(n, (_num(data.min), column(data.min)), (_num(data.max), column(data.max)))
    out.append(Text(f"{'data':>{GUTTER - 2}}  " + labels))

    values = f"{data.finite} value{'s' if data.finite != 1 else ''}"
    nonfinite = [
        f"{count} {name}"
        for count, name in ((data.nan, "NaN"), (data.posinf, "+inf"), (data.neginf, "-inf"))
        if count
    ]
    if nonfinite:
        values += f" ({', '.join(nonfinite)} not drawn)"
    bin_width = (view.hi - view.lo) / n
    count_parts = [
        "log scale: bar height ∝ log(1 + count)", f"{n} bins of {_num(bin_width)}", values
    ]
    marks_parts = [
        "[ ] grid min / max",
        f"{ZERO} zero point (level {view.zero_level})",
        f"{CLIPPED} clipped",
        f"scale {view.scale}",
    ]
    out += [Text(line) for line in _info("count", count_parts, width, "; ")]
    out += [Text(line) for line in _info("marks", marks_parts, width)]
    out += [Text(line) for line in _info("metrics", _metric_parts(view), width)]
    for note in view.notes:
        out += [Text(line, style="dim") for line in _info("note", [note], width)]
    return out


def _styled(prefix: str, glyphs: Sequence[str], styles: Sequence[str]) -> Any:
    """A rich Text: `prefix`, then `glyphs` with one style each (runs merged)."""
    from rich.text import Text

    line = Text(prefix)
    start = 0
    for end in range(1, len(glyphs) + 1):
        if end == len(glyphs) or styles[end] != styles[start]:
            line.append("".join(glyphs[start:end]), style=styles[start])
            start = end
    return line


def _metric_parts(view: HistView) -> list[str]:
    from qcalc.report import _num, metric_cells

    m = view.metrics
    if m is None:
        return ["not computed"]
    sqnr, worst, max_err, clip, used = metric_cells(m)
    parts = [f"sqnr {sqnr} dB"]
    if view.worst and worst:
        parts.append(f"worst {view.worst}: {worst} dB")
    return parts + [
        f"mse {_num(m.mse)}",
        f"max abs error {max_err}",
        f"clipped {clip}",
        f"grid used {'n/a' if m.grid_used_fraction is None else used}",
    ]


def render(view: HistView) -> Any:
    """The view as one rich renderable (a Group of lines)."""
    from rich.console import Group

    return Group(*lines(view))


def to_text(view: HistView) -> str:
    """The view as plain text (no colour), one line per row, a newline at the end."""
    return "".join(line.plain.rstrip() + "\n" for line in lines(view))


def print_view(view: HistView, out) -> None:
    """Print to `out` (colour only when it is a terminal), at `view.width` columns."""
    from rich.console import Console

    console = Console(file=out, width=view.width, highlight=False, soft_wrap=True)
    for line in lines(view):
        console.print(line, overflow="crop", no_wrap=True)
