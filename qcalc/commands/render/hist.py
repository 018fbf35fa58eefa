"""`qcalc hist`'s picture of a HistView, at most `view.width` columns wide::

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

Title lines (tensor, dtype, shape, channel; then the grid and analyzer as `encode`'s table
title), ROWS = 10 rows of bars with the largest count on the top row, the axis with the
markers, the labels, and the legend.

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
- **Colour** only on terminals (rich decides).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from qcalc.commands.render.encodings import table_title
from qcalc.commands.render.text import metric_cells, num, pack, spread
from qcalc.errors import printable
from qcalc.ops.hist import GUTTER, HistView, column_of

ROWS = 10  # bar rows
BLOCKS = "▁▂▃▄▅▆▇█"
AXIS, CLIPPED, LOW, HIGH, BOTH, ZERO = "─", "×", "[", "]", "|", "0"


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


def _info(label: str, parts: Sequence[str], width: int, sep: str = ", ") -> list[str]:
    """`parts` packed beside a right-aligned gutter label."""
    rows = pack(parts, width - GUTTER, sep)
    return [f"{label if i == 0 else '':>{GUTTER - 2}}  {row}" for i, row in enumerate(rows)]


def _count_label(count: int) -> str:
    return str(count) if count < 10**7 else num(count)


def lines(view: HistView) -> list[Any]:
    """The view as rich Text lines, none wider than `view.width`."""
    from rich.text import Text

    width = view.width
    n = len(view.counts)
    out = [Text(line, style="bold") for line in pack(printable(view.title).split(", "), width)]
    subtitle = table_title([view.encoding])
    out += [Text(line, style="italic") for line in pack(subtitle.split(", "), width)]

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
            (num(view.grid_min), column(view.grid_min)),
            (num(view.grid_max), column(view.grid_max)),
        )
        out.append(Text(f"{'grid':>{GUTTER - 2}}  " + grid))
    data = view.data
    labels = _labels(n, (num(data.min), column(data.min)), (num(data.max), column(data.max)))
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
        "log scale: bar height ∝ log(1 + count)",
        f"{n} bins of {num(bin_width)}",
        values,
    ]
    drawn = view.drawn  # the integer level 0.0 maps to (-offset), or its spread over cells
    zero_level = spread(-np.asarray(drawn.offset, dtype=np.float64) + 0.0, integer=True)
    scale = spread(np.asarray(drawn.scale)) if drawn.scale.size else num(math.nan)
    marks_parts = [
        "[ ] grid min / max",
        f"{ZERO} zero point (level {zero_level})",
        f"{CLIPPED} clipped",
        f"scale {scale}",
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
    m = view.metrics
    if m is None:
        return ["not computed"]
    sqnr, worst, max_err, clip, used = metric_cells(m)
    parts = [f"sqnr {sqnr} dB"]
    if view.worst and worst:
        parts.append(f"worst {view.worst}: {worst} dB")
    return parts + [
        f"mse {num(m.mse)}",
        f"max abs error {max_err}",
        f"clipped {clip}",
        f"grid used {'n/a' if m.grid_used_fraction is None else used}",
    ]


def print_view(view: HistView, out) -> None:
    """Print to `out` (colour only when it is a terminal), at `view.width` columns."""
    from rich.console import Console

    console = Console(file=out, width=view.width, highlight=False, soft_wrap=True)
    for line in lines(view):
        console.print(line, overflow="crop", no_wrap=True)
