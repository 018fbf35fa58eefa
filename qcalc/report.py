"""Encodings -> rows for machines (json, jsonl, csv) and a table for people."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any, Literal, Sequence, TextIO

import numpy as np

from qcalc.spec import Encoding

Format = Literal["table", "json", "jsonl", "csv"]
FORMATS: tuple[str, ...] = ("table", "json", "jsonl", "csv")

FIELDS = (
    "name", "source", "dtype", "shape", "bitwidth", "signed", "symmetric", "granularity",
    "axis", "qmin", "qmax", "encoding_shape", "min", "max", "scale", "offset",
)  # fmt: skip
PER_CELL = ("min", "max", "scale", "offset")
NONFINITE_NAMES = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def exact_float(value: float) -> Any:
    """A float32 value as the Python float that prints it exactly; NaN / inf as strings
    ("NaN", "Infinity", "-Infinity") so the output stays strict JSON."""
    value = float(value)
    return value if math.isfinite(value) else NONFINITE_NAMES[repr(value)]


def exact_offset(value: float) -> Any:
    """Offsets are integers on the grid; a NaN offset (from NaN data) stays a string."""
    value = float(value)
    return int(value) if math.isfinite(value) else NONFINITE_NAMES[repr(value)]


def encoding_record(enc: Encoding) -> dict[str, Any]:
    """One encoding as a JSON-ready dict with the documented keys, in order."""
    flat = lambda a: np.asarray(a).ravel()  # noqa: E731
    return {
        "name": enc.name,
        "source": enc.source,
        "dtype": enc.dtype,
        "shape": list(enc.shape),
        "bitwidth": enc.spec.bitwidth,
        "signed": enc.spec.is_signed,
        "symmetric": enc.spec.symmetric,
        "granularity": enc.granularity,
        "axis": enc.axis,
        "qmin": enc.qmin,
        "qmax": enc.qmax,
        "encoding_shape": list(enc.encoding_shape),
        "min": [exact_float(v) for v in flat(enc.min)],
        "max": [exact_float(v) for v in flat(enc.max)],
        "scale": [exact_float(v) for v in flat(enc.scale)],
        "offset": [exact_offset(v) for v in flat(enc.offset)],
    }


def write_json(encodings: Sequence[Encoding], out: TextIO) -> None:
    """One JSON array, one encoding per line (jq pretty-prints it when asked)."""
    rows = [json.dumps(encoding_record(e), allow_nan=False) for e in encodings]
    out.write("[\n" + ",\n".join(rows) + "\n]\n" if rows else "[]\n")


def write_jsonl(encodings: Sequence[Encoding], out: TextIO) -> None:
    for enc in encodings:
        out.write(json.dumps(encoding_record(enc), allow_nan=False) + "\n")


def write_csv(encodings: Sequence[Encoding], out: TextIO) -> None:
    """One row per tensor per channel; `channel` is the cell's index in C order."""
    columns = [*FIELDS[:12], "channel", *PER_CELL]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for enc in encodings:
        record = encoding_record(enc)
        fixed = [_csv_cell(record[key]) for key in FIELDS[:12]]
        for channel, cells in enumerate(zip(*(record[key] for key in PER_CELL))):
            writer.writerow([*fixed, channel, *(_csv_cell(v) for v in cells)])


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def render(encodings: Sequence[Encoding], fmt: str, out: TextIO) -> None:
    """Write `encodings` to `out` in one of FORMATS."""
    if fmt == "table":
        write_table(encodings, out)
    else:
        {"json": write_json, "jsonl": write_jsonl, "csv": write_csv}[fmt](encodings, out)


def to_text(encodings: Sequence[Encoding], fmt: str) -> str:
    buffer = io.StringIO()
    render(encodings, fmt, buffer)
    return buffer.getvalue()


# --- table -------------------------------------------------------------------------------


def _num(value: float) -> str:
    return f"{float(value):.4g}"


def _spread(values: np.ndarray, integer: bool = False) -> str:
    show = (lambda v: str(int(v)) if math.isfinite(v) else _num(v)) if integer else _num
    lo, hi = float(np.min(values)), float(np.max(values))
    if math.isnan(lo) or math.isnan(hi) or np.isnan(values).any():
        return "nan"
    return show(lo) if lo == hi else f"{show(lo)}…{show(hi)}"


def ellipsize_middle(text: str, width: int) -> str:
    """Shorten `text` to `width` characters by replacing its middle with '…'."""
    if len(text) <= width:
        return text
    keep = width - 1
    head = (keep + 1) // 2
    return text[:head] + "…" + text[len(text) - (keep - head) :]


def table_row(enc: Encoding) -> list[str]:
    """Cells of one table row; per-channel encodings summarise their spread."""
    shape = "×".join(str(s) for s in enc.shape) or "scalar"
    if enc.granularity == "per-tensor":
        return [
            enc.name, enc.dtype, shape, "tensor",
            _num(enc.min), _num(enc.max), _num(enc.scale), _spread(enc.offset, integer=True),
        ]  # fmt: skip
    channels = enc.scale.size
    return [
        enc.name, enc.dtype, shape, f"{channels} ch @{enc.axis}",
        _spread(np.min(enc.min, keepdims=True)), _spread(np.max(enc.max, keepdims=True)),
        _spread(enc.scale), _spread(enc.offset, integer=True),
    ]  # fmt: skip


def table_title(encodings: Sequence[Encoding]) -> str:
    if not encodings:
        return ""
    spec = encodings[0].spec
    kind = "strict symmetric" if spec.strict_symmetric else (
        "symmetric" if spec.symmetric else "asymmetric"
    )
    sign = "signed" if spec.is_signed else "unsigned"
    qmin, qmax = spec.int_range
    return f"{spec.bitwidth}-bit {kind} {sign}, grid [{qmin}, {qmax}], min-max"


def write_table(encodings: Sequence[Encoding], out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=out, width=_table_width(out), highlight=False, soft_wrap=False)
    headers = ["tensor", "dtype", "shape", "granularity", "min", "max", "scale", "offset"]
    rows = [table_row(enc) for enc in encodings]
    fixed = sum(max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers) if i)
    name_width = max(12, console.width - fixed - 3 * len(headers) - 1)
    table = Table(title=table_title(encodings), title_justify="left", box=None, pad_edge=False)
    for header in headers:
        numeric = header in ("min", "max", "scale", "offset")
        table.add_column(header, justify="right" if numeric else "left", no_wrap=True)
    for row in rows:
        table.add_row(ellipsize_middle(row[0], name_width), *row[1:])
    console.print(table)


def _table_width(out: TextIO) -> int:
    import shutil

    if hasattr(out, "isatty") and out.isatty():
        return shutil.get_terminal_size((100, 24)).columns
    return 100
