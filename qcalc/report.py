"""Encodings -> rows for machines (json, jsonl, csv) and a table for people."""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
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
BLOCK_FIELDS = ("block_size", "block_axis")  # appended for per-block and LPBQ encodings
LPBQ_FIELDS = ("per_channel_scale", "per_block_int_scale", "decompressed_bitwidth")  # and LPBQ
NONFINITE_NAMES = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
METRIC_FIELDS = (
    "sqnr_db", "mse", "max_abs_error", "clipped_fraction", "grid_used_fraction",
    "worst_sqnr_db", "worst_index",
)  # fmt: skip  # appended to every record with --metrics


def exact_float(value: float) -> Any:
    """A float32 value as the Python float that prints it exactly; NaN / inf as strings
    ("NaN", "Infinity", "-Infinity") so the output stays strict JSON."""
    value = float(value)
    return value if math.isfinite(value) else NONFINITE_NAMES[repr(value)]


def exact_offset(value: float) -> Any:
    """Offsets are integers on the grid; a NaN offset (from NaN data) stays a string."""
    value = float(value)
    return int(value) if math.isfinite(value) else NONFINITE_NAMES[repr(value)]


def _floats(values: Any) -> list[Any]:
    """Per-cell floats for JSON: `tolist()` (exact, C speed) unless a NaN / inf needs a name."""
    flat = np.asarray(values).ravel()
    if np.isfinite(flat).all():
        return flat.astype(np.float64).tolist()
    return [exact_float(v) for v in flat]


def _offsets(values: Any) -> list[Any]:
    flat = np.asarray(values).ravel()
    if np.isfinite(flat).all():
        return flat.astype(np.int64).tolist()
    return [exact_offset(v) for v in flat]


def encoding_record(enc: Encoding) -> dict[str, Any]:
    """One encoding as a JSON-ready dict with the documented keys, in order.

    Per-block and LPBQ encodings add BLOCK_FIELDS; LPBQ ones also LPBQ_FIELDS: the per-channel
    scales (one per channel, C order) and the integer multipliers (one per cell, like `scale`).
    """
    record = {
        "name": enc.name,
        "source": enc.source,
        "dtype": enc.dtype,
        "shape": None if enc.shape is None else list(enc.shape),
        "bitwidth": enc.spec.bitwidth,
        "signed": enc.spec.is_signed,
        "symmetric": enc.spec.symmetric,
        "granularity": enc.granularity,
        "axis": enc.axis,
        "qmin": enc.qmin,
        "qmax": enc.qmax,
        "encoding_shape": list(enc.encoding_shape),
        "min": _floats(enc.min),
        "max": _floats(enc.max),
        "scale": _floats(enc.scale),
        "offset": _offsets(enc.offset),
    }
    if enc.granularity in ("per-block", "lpbq"):
        record["block_size"] = enc.block_size
        record["block_axis"] = enc.block_axis
    if enc.granularity == "lpbq":
        record["per_channel_scale"] = _floats(_or_empty(enc.per_channel_scale))
        record["per_block_int_scale"] = _offsets(_or_empty(enc.per_block_int_scale))
        record["decompressed_bitwidth"] = enc.decompressed_bitwidth
    if enc.metrics is not None:
        record.update(metrics_record(enc.metrics))
    return record


def metrics_record(metrics: Any) -> dict[str, Any]:
    """A qcalc.metrics.Metrics as JSON-ready METRIC_FIELDS (infinite SQNR as "Infinity")."""
    return {
        key: exact_float(value) if isinstance(value, float) else value
        for key, value in metrics.record().items()
    }


def _or_empty(values: Any) -> np.ndarray:
    return np.zeros(0, dtype=np.float32) if values is None else np.asarray(values)


def write_records(records: Sequence[dict[str, Any]], fmt: str, out: TextIO) -> None:
    """Strict JSON records: `json` writes one array with a record per line (jq pretty-prints
    it when asked), `jsonl` a record per line. Every command's machine output goes here."""
    rows = [json.dumps(record, allow_nan=False) for record in records]
    if fmt == "jsonl":
        out.writelines(row + "\n" for row in rows)
    else:
        out.write("[\n" + ",\n".join(rows) + "\n]\n" if rows else "[]\n")


def write_json(encodings: Sequence[Encoding], out: TextIO) -> None:
    write_records([encoding_record(e) for e in encodings], "json", out)


def write_jsonl(encodings: Sequence[Encoding], out: TextIO) -> None:
    write_records([encoding_record(e) for e in encodings], "jsonl", out)


def write_csv(encodings: Sequence[Encoding], out: TextIO) -> None:
    """One row per tensor per channel; `channel` is the cell's index in C order. With
    metrics, METRIC_FIELDS (the tensor's) follow the tensor columns.

    With per-block or LPBQ encodings the columns go on: block_size, block_axis, and with LPBQ
    ones per_channel_scale (the cell's channel's), per_block_int_scale (the cell's) and
    decompressed_bitwidth; empty for encodings without them.
    """
    grans = {enc.granularity for enc in encodings}
    extra = [*BLOCK_FIELDS] if grans & {"per-block", "lpbq"} else []
    if "lpbq" in grans:
        extra += LPBQ_FIELDS
    metrics = [*METRIC_FIELDS] if any(enc.metrics is not None for enc in encodings) else []
    columns = [*FIELDS[:12], *metrics, "channel", *PER_CELL, *extra]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for enc in encodings:
        record = encoding_record(enc)
        fixed = [_csv_cell(record.get(key)) for key in (*FIELDS[:12], *metrics)]
        cells = [record[key] for key in PER_CELL] + _csv_block_columns(enc, record, extra)
        for channel, values in enumerate(zip(*cells)):
            writer.writerow([*fixed, channel, *(_csv_cell(v) for v in values)])


def _csv_block_columns(enc: Encoding, record: dict[str, Any], extra: list[str]) -> list[list]:
    """Per-cell values of the block columns: the cell's multiplier, its channel's scale, and
    the encoding's block settings repeated."""
    count = len(record["scale"])
    columns = []
    for key in extra:
        if key == "per_channel_scale" and enc.per_channel_scale is not None:
            columns.append(_floats(np.broadcast_to(enc.per_channel_scale, np.shape(enc.scale))))
        elif key == "per_block_int_scale" and key in record:
            columns.append(record[key])
        else:
            columns.append([record.get(key)] * count)
    return columns


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

TABLE_WIDTH = 80  # when stdout is not a terminal and COLUMNS is unset
NAME_MIN = 20  # below this, the shape (then dtype) column makes room for the tensor name
SHORT_DTYPES = {
    "bfloat16": "bf16", "float16": "f16", "float32": "f32", "float64": "f64",
    "float8_e4m3fn": "f8e4m3", "float8_e5m2": "f8e5m2",
}  # fmt: skip
HEADERS = ("tensor", "dtype", "shape", "per", "min", "max", "scale", "offset")
# with --metrics: SQNR and the worst channel's / block's (dB), max |error|, clipped
# elements, integer levels used (json / jsonl / csv also carry the MSE)
METRIC_HEADERS = ["sqnr", "worst", "max err", "clip", "used"]


def _num(value: float) -> str:
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


def _spread(values: np.ndarray, integer: bool = False) -> str:
    show = (lambda v: str(int(v)) if math.isfinite(v) else _num(v)) if integer else _num
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
    and lose their middle instead, then (still equal) just lose their middle."""
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


def table_row(enc: Encoding) -> list[str]:
    """Cells of one table row (see HEADERS); per-channel encodings show their channel count,
    per-block and LPBQ ones their grid (channels × blocks, e.g. "8×4 blk", "8×4 lpbq"), the
    overall min / max and the spread of scale and offset."""
    shape = "?" if enc.shape is None else "×".join(str(s) for s in enc.shape) or "scalar"
    dtype = SHORT_DTYPES.get(enc.dtype, enc.dtype or "?")
    per = "tensor" if enc.granularity == "per-tensor" else f"{enc.scale.size} ch"
    if enc.granularity in ("per-block", "lpbq"):
        cells = [n for n in np.shape(enc.scale) if n != 1] or [1]
        kind = "blk" if enc.granularity == "per-block" else "lpbq"
        per = f"{'×'.join(map(str, cells))} {kind}"
    return [
        enc.name, dtype, shape, per, _num(np.min(enc.min)), _num(np.max(enc.max)),
        _spread(enc.scale), _spread(enc.offset, integer=True),
    ]  # fmt: skip


def grid_label(spec) -> str:
    """A grid in a few characters, as QNN names its dtype: "int8 sym", "uint16", "int4 strict"."""
    label = f"{'int' if spec.is_signed else 'uint'}{spec.bitwidth}"
    if spec.strict_symmetric:
        return f"{label} strict"
    return f"{label} sym" if spec.symmetric else label


def metric_cells(metrics: Any) -> list[str]:
    """Table cells for METRIC_HEADERS: SQNR and worst cell in dB, errors, percentages."""
    if metrics is None:
        return [""] * len(METRIC_HEADERS)

    def percent(value: float | None) -> str:
        if value is None:
            return "?"
        return "0%" if value == 0 else f"{_num(100 * value)}%"

    def db(value: float | None) -> str:
        return "" if value is None else (f"{value:.1f}" if math.isfinite(value) else str(value))

    return [
        db(metrics.sqnr_db), db(metrics.worst_sqnr_db), _num(metrics.max_abs_error),
        percent(metrics.clipped_fraction), percent(metrics.grid_used_fraction),
    ]  # fmt: skip


def _grid_key(spec) -> tuple:
    return (spec.bitwidth, spec.is_signed, spec.symmetric, spec.strict_symmetric)


def analyzer_label(spec) -> str:
    """How tables name the calibration method, e.g. "min-max" or "percentile 99.9"."""
    if spec.analyzer == "percentile":
        return f"percentile {spec.percentile:g}"
    return {"minmax": "min-max"}.get(spec.analyzer, spec.analyzer)


def table_title(encodings: Sequence[Encoding]) -> str:
    if not encodings:
        return ""
    spec = encodings[0].spec
    kind = "strict symmetric" if spec.strict_symmetric else (
        "symmetric" if spec.symmetric else "asymmetric"
    )
    sign = "signed" if spec.is_signed else "unsigned"
    qmin, qmax = spec.int_range
    if len({_grid_key(enc.spec) for enc in encodings}) == 1:
        parts = [f"{spec.bitwidth}-bit {kind} {sign} grid [{qmin}, {qmax}]"]
    else:
        parts = ["grids per tensor"]
    analyzers = {analyzer_label(enc.spec) for enc in encodings}
    if any(enc.dtype is not None for enc in encodings):  # files do not record the analyzer
        parts.append(analyzers.pop() if len(analyzers) == 1 else "analyzers per tensor")
    dtypes = {enc.dtype for enc in encodings}
    if len(dtypes) == 1 and None not in dtypes:
        parts.insert(0, SHORT_DTYPES.get(enc_dtype := dtypes.pop(), enc_dtype))
    axes = {enc.axis for enc in encodings if enc.granularity == "per-channel"}
    if axes:
        known = len(axes) == 1 and None not in axes
        parts.append(f"per-channel, axis {axes.pop()}" if known else "per-channel")
    blocks = {
        (enc.block_size, enc.block_axis) for enc in encodings
        if enc.granularity in ("per-block", "lpbq")
    }  # fmt: skip
    if len(blocks) == 1:
        size, axis = blocks.pop()
        parts.append(f"blocks of {size}" + (f" along axis {axis}" if axis is not None else ""))
    elif blocks:
        parts.append("per-block")
    lpbq = {enc.decompressed_bitwidth for enc in encodings if enc.granularity == "lpbq"}
    if len(lpbq) == 1 and None not in lpbq:
        parts.append(f"LPBQ decompressed to {lpbq.pop()} bits")
    elif lpbq:
        parts.append("LPBQ")
    return ", ".join(parts)


def table_columns(
    rows: Sequence[Sequence[str]],
    width: int,
    headers: Sequence[str] = HEADERS,
    droppable: Sequence[int] = (2, 1),
) -> tuple[list[int], int]:
    """Indices of the columns to show and the width left for the tensor name.

    A column whose value the title already states (one dtype; no per-channel row) is left
    out; when the name would still get fewer than NAME_MIN characters, the `droppable`
    columns (shape, then dtype) make room in turn.
    """
    dtypes = {row[1] for row in rows}
    shown = [i for i in range(len(headers)) if not (i == 1 and len(dtypes) <= 1)]
    if all(row[3] == "tensor" for row in rows):
        shown.remove(3)
    longest = max((len(row[0]) for row in rows), default=0)

    def name_room() -> int:
        cells = [max([len(headers[i])] + [len(row[i]) for row in rows]) for i in shown[1:]]
        return width - sum(cells) - 2 * len(cells)

    for column in droppable:
        if name_room() >= min(NAME_MIN, longest) or column not in shown:
            continue
        shown.remove(column)
    return shown, max(len(headers[0]), name_room())


def write_table(encodings: Sequence[Encoding], out: TextIO, width: int | None = None) -> None:
    """A table for people, at most `width` columns wide (default: the terminal's width)."""
    from rich.console import Console
    from rich.table import Table

    width = width or _table_width(out)
    console = Console(file=out, width=width, highlight=False, soft_wrap=False)
    rows = [table_row(enc) for enc in encodings]
    headers = list(HEADERS)
    if any(enc.metrics is not None for enc in encodings):
        # the quality view: the error columns replace the range and grid columns, which
        # json / jsonl / csv still carry, so that the table stays readable at 80 columns
        headers = headers[:4] + METRIC_HEADERS
        rows = [row[:4] + metric_cells(enc.metrics) for row, enc in zip(rows, encodings)]
    if len({_grid_key(enc.spec) for enc in encodings}) > 1:  # a recipe: say which grid
        headers.insert(4, "grid")
        rows = [row[:4] + [grid_label(enc.spec)] + row[4:] for row, enc in zip(rows, encodings)]
    shown, name_width = table_columns(rows, width, headers)
    table = Table(box=None, pad_edge=False)
    for i in shown:
        numeric = headers[i] in PER_CELL or headers[i] in METRIC_HEADERS
        table.add_column(headers[i], justify="right" if numeric else "left", no_wrap=True)
    names = shorten_names([row[0] for row in rows], name_width)
    for name, row in zip(names, rows):
        table.add_row(*(name if i == 0 else row[i] for i in shown))
    for line in textwrap.wrap(table_title(encodings), width):
        console.print(line, style="italic")
    console.print(table)


def _table_width(out: TextIO) -> int:
    import os
    import shutil

    if hasattr(out, "isatty") and out.isatty():
        return shutil.get_terminal_size((TABLE_WIDTH, 24)).columns
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else TABLE_WIDTH


# --- diff --------------------------------------------------------------------------------


def diff_record(result: Any, a: str, b: str) -> dict[str, Any]:
    """A DiffResult as a JSON-ready dict: verdict, tolerances, and every difference found."""
    return {
        "equal": result.equal,
        "a": a,
        "b": b,
        "rtol": result.rtol,
        "atol": result.atol,
        "only_in_a": list(result.only_in_a),
        "only_in_b": list(result.only_in_b),
        "settings": [
            {"tensor": c.tensor, "setting": c.setting, "a": c.a, "b": c.b} for c in result.settings
        ],
        "deltas": [
            {
                "tensor": d.tensor,
                "field": d.field,
                "worst_channel": d.channel,
                "a": exact_float(d.a),
                "b": exact_float(d.b),
                "abs_delta": exact_float(d.abs_delta),
                "channels": d.channels,
                "differing": d.differing,
                "beyond_tolerance": d.beyond,
            }
            for d in result.deltas
        ],
    }


def diff_rows(result: Any) -> list[list[str]]:
    """Table rows (tensor, differs in, A, B, |A - B|): every difference beyond tolerance."""
    rows = [[name, "presence", "present", "missing", ""] for name in result.only_in_a]
    rows += [[name, "presence", "missing", "present", ""] for name in result.only_in_b]
    rows += [[c.tensor, c.setting, str(c.a), str(c.b), ""] for c in result.settings]
    for d in result.deltas:
        if d.within_tolerance:
            continue
        where = f"{d.field} ch {d.channel}" if d.channels > 1 else d.field
        delta = _num(d.abs_delta) + (f", {d.beyond}/{d.channels} ch" if d.channels > 1 else "")
        rows.append([d.tensor, where, f"{d.a:.9g}", f"{d.b:.9g}", delta])
    return rows


def render_diff(result: Any, a: str, b: str, fmt: str, out: TextIO) -> None:
    """Write a diff as a table of what differs (with a verdict line) or as one JSON object."""
    if fmt == "json":
        out.write(json.dumps(diff_record(result, a, b), allow_nan=False) + "\n")
        return
    tolerance = f"rtol {result.rtol:g}, atol {result.atol:g}"
    rows = diff_rows(result)
    if not rows:
        out.write(f"equal within {tolerance}: {a} and {b}\n")
        return
    from rich.console import Console
    from rich.table import Table

    headers = ("tensor", "differs in", "A", "B", "|A - B|")
    needed = sum(max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers))
    # Names are never shortened here: a diff that does not name the tensor is useless in CI.
    width = max(_table_width(out), needed + 2 * (len(headers) - 1))
    console = Console(file=out, width=width, highlight=False, soft_wrap=False)
    table = Table(box=None, pad_edge=False)
    for i, header in enumerate(headers):
        table.add_column(header, justify="right" if i >= 2 else "left", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    out.write(f"A: {a}\nB: {b}\n")
    console.print(table)
    tensors = len({row[0] for row in rows})
    verb = "tensor differs" if tensors == 1 else "tensors differ"
    out.write(f"{tensors} {verb} beyond {tolerance}\n")
