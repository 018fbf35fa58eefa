"""Shared text output for every command: strict-JSON records, csv cells, numbers for people,
tensor names that fit a column, lines packed to a width, and the one table builder."""

from __future__ import annotations

import json
import math
import os
import shutil
import textwrap
from typing import Any, Iterable, Sequence, TextIO

import numpy as np

from qcalc.errors import printable

NONFINITE_NAMES = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


TABLE_WIDTH = 80  # when stdout is not a terminal and COLUMNS is unset


NAME_MIN = 20  # below this, the shape (then dtype) column makes room for the tensor name


# with metrics: SQNR and the worst channel's / block's (dB), max |error|, clipped
# elements, integer levels used (json / jsonl / csv also carry the MSE)
METRIC_HEADERS = ["sqnr", "worst", "max err", "clip", "used"]


def exact_float(value: float) -> Any:
    """A float32 value as the Python float that prints it exactly; NaN / inf as strings
    ("NaN", "Infinity", "-Infinity") so the output stays strict JSON."""
    value = float(value)
    return value if math.isfinite(value) else NONFINITE_NAMES[repr(value)]


def strict_json(record: dict[str, Any]) -> dict[str, Any]:
    """`record` with every float made strict-JSON safe by `exact_float`."""
    return {
        key: exact_float(value) if isinstance(value, float) else value
        for key, value in record.items()
    }


class NumberList(list):
    """A list of finite floats (or of integers) made from a numpy array, which it keeps:
    `write_records` writes it from the array, each distinct value's text made once."""

    def __init__(self, array: np.ndarray) -> None:
        super().__init__(array.tolist())
        self.array = array


def write_records(records: Sequence[dict[str, Any]], fmt: str, out: TextIO) -> None:
    """Strict JSON records: `json` writes one array with a record per line (jq pretty-prints
    it when asked), `jsonl` a record per line. Every command's machine output goes here."""
    rows = [_record_json(record) for record in records]
    if fmt == "jsonl":
        out.writelines(row + "\n" for row in rows)
    else:
        out.write("[\n" + ",\n".join(rows) + "\n]\n" if rows else "[]\n")


def _record_json(record: dict[str, Any]) -> str:
    """`json.dumps(record, allow_nan=False)`, character for character, with NumberLists
    written by `_numbers_json`."""
    if not any(isinstance(value, NumberList) for value in record.values()):
        return json.dumps(record, allow_nan=False)
    items = (
        json.dumps(key) + ": " + (
            _numbers_json(value.array) if isinstance(value, NumberList)
            else json.dumps(value, allow_nan=False)
        )
        for key, value in record.items()
    )  # fmt: skip
    return "{" + ", ".join(items) + "}"


def _numbers_json(array: np.ndarray) -> str:
    """What json.dumps writes for `array.tolist()` (finite floats: their repr; integers), with
    each distinct value formatted once: per-channel scales of bf16 weights repeat a lot, and
    float repr is most of the time of a big json output. Distinct by bit pattern (-0.0)."""
    if array.size == 0:
        return "[]"
    bits = array.view(np.int64) if array.dtype == np.float64 else array
    distinct, where = np.unique(bits, return_inverse=True)
    values = distinct.view(array.dtype).tolist()
    texts = np.array([repr(value) for value in values], dtype=object)
    return "[" + ", ".join(texts[where].tolist()) + "]"


def csv_cell(value: Any) -> str:
    """A csv cell: '' for None, true / false, lists as JSON, else str()."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def num(value: float) -> str:
    """Three significant digits, the shorter of fixed and exponent form: 0.0145, 4.56e-4."""
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    fixed, scientific = f"{value:.3g}", f"{value:.2e}"
    return min(_short_exponent(fixed), _short_exponent(scientific), key=len)


def _short_exponent(text: str) -> str:
    mantissa, e, exponent = text.partition("e")
    if not e:
        return text
    mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
    return f"{mantissa}e{int(exponent)}"


def spread(values: np.ndarray, integer: bool = False) -> str:
    show = (lambda v: str(int(v)) if math.isfinite(v) else num(v)) if integer else num
    lo, hi = float(np.min(values)), float(np.max(values))
    if math.isnan(lo) or math.isnan(hi) or np.isnan(values).any():
        return "nan"
    return show(lo) if lo == hi else f"{show(lo)}…{show(hi)}"


def shorten_name(name: str, width: int) -> str:
    """A tensor name in at most `width` characters that still says which tensor it is.

    Dotted components are abbreviated to their first character from the left, keeping
    numbers (layer indices) and the last component whole, until the name fits:
    ``model.layers.0.self_attn.q_proj.weight`` -> ``m.l.0.s.q_proj.weight`` ->
    ``m.l.0.s.q.weight``. Only if that is still too long is the middle cut out.
    """
    if len(name) <= width:
        return name
    parts = name.split(".")
    for i in range(len(parts) - 1):
        if parts[i] and not parts[i].isdigit():
            parts[i] = parts[i][0]
            shorter = ".".join(parts)
            if len(shorter) <= width:
                return shorter
    return ellipsize_middle(".".join(parts), width)


def shorten_names(names: Sequence[str], width: int) -> list[str]:
    """`shorten_name` for a table column, without making two names print alike where it
    can help it: names that abbreviation makes equal keep their last two components whole
    and lose their middle instead, then (still equal) just lose their middle. Names are
    made `printable` first, so what is shortened is what will be shown."""
    names = [printable(name) for name in names]
    fallbacks = (
        lambda name: shorten_name(name, width),
        lambda name: ellipsize_middle(_abbreviate_all_but(name, 2), width),
        lambda name: ellipsize_middle(name, width),
    )
    shown = {name: fallbacks[0](name) for name in names}
    for fallback in fallbacks[1:]:
        printed: dict[str, set[str]] = {}
        for name, short in shown.items():
            printed.setdefault(short, set()).add(name)
        alike = [name for group in printed.values() if len(group) > 1 for name in group]
        if not alike:
            break
        for name in alike:
            shown[name] = fallback(name)
    return [shown[name] for name in names]


def _abbreviate_all_but(name: str, keep: int) -> str:
    parts = name.split(".")
    return ".".join(
        part[0] if i < len(parts) - keep and part and not part.isdigit() else part
        for i, part in enumerate(parts)
    )


def ellipsize_middle(text: str, width: int) -> str:
    """Shorten `text` to `width` characters by replacing its middle with '…'."""
    if len(text) <= width:
        return text
    keep = width - 1
    head = (keep + 1) // 2
    return text[:head] + "…" + text[len(text) - (keep - head) :]


def metric_cells(metrics: Any) -> list[str]:
    """Table cells for METRIC_HEADERS: SQNR and worst cell in dB, errors, percentages."""
    if metrics is None:
        return [""] * len(METRIC_HEADERS)

    def percent(value: float | None) -> str:
        if value is None:
            return "?"
        return "0%" if value == 0 else f"{num(100 * value)}%"

    def db(value: float | None) -> str:
        return "" if value is None else (f"{value:.1f}" if math.isfinite(value) else str(value))

    return [
        db(metrics.sqnr_db), db(metrics.worst_sqnr_db), num(metrics.max_abs_error),
        percent(metrics.clipped_fraction), percent(metrics.grid_used_fraction),
    ]  # fmt: skip


def table_width(out: TextIO) -> int:
    """The terminal's width on a terminal; else COLUMNS, else TABLE_WIDTH."""
    if hasattr(out, "isatty") and out.isatty():
        return shutil.get_terminal_size((TABLE_WIDTH, 24)).columns
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else TABLE_WIDTH


def pack(parts: Sequence[str], room: int, sep: str = ", ") -> list[str]:
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
        rows += textwrap.wrap(part, max(1, room - more), break_on_hyphens=False) or [""]
    return rows or [""]


def cells_width(
    headers: Sequence[str], rows: Sequence[Sequence[str]], columns: Iterable[int]
) -> int:
    """Width of `columns` (header or longest cell each) and the two-space gap after each."""
    return sum(max([len(headers[i]), *(len(row[i]) for row in rows)]) + 2 for i in columns)


def print_table(
    out: TextIO,
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    width: int,
    *,
    right: Iterable[int] = (),
    wrap: Iterable[int] = (),
    title: Sequence[str] = (),
) -> None:
    """Every command's table: `title` lines (italic on a terminal), then `rows` under
    `headers` (none: the title alone) without a box, columns two spaces apart, at most
    `width` wide; the columns in `right` are right-justified and only those in `wrap` may
    wrap. Control characters in any cell or title are escaped (`printable`): a tensor name
    cannot drive the terminal. No line ends in blanks."""
    from rich.console import Console
    from rich.table import Table

    right, wrap = set(right), set(wrap)
    console = Console(file=out, width=width, highlight=False, soft_wrap=False)
    table = Table(box=None, pad_edge=False)
    for i, header in enumerate(headers):
        table.add_column(header, justify="right" if i in right else "left", no_wrap=i not in wrap)
    for row in rows:
        table.add_row(*map(printable, row))
    with console.capture() as capture:
        for line in title:
            console.print(printable(line), style="italic")
        if headers:
            console.print(table)
    out.write("".join(line.rstrip() + "\n" for line in capture.get().splitlines()))
