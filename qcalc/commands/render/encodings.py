"""Encodings for people (a table) and machines (json, jsonl, csv): `encode`'s and `show`'s
output, and the grid title `hist` prints."""

from __future__ import annotations

import csv
import math
import textwrap
from typing import Any, Sequence, TextIO

import numpy as np

from qcalc.commands.render.text import (
    METRIC_HEADERS,
    NAME_MIN,
    NONFINITE_NAMES,
    NumberList,
    cells_width,
    csv_cell,
    exact_float,
    metric_cells,
    num,
    print_table,
    shorten_names,
    spread,
    strict_json,
    table_width,
    write_records,
)
from qcalc.core.dtypes import short_dtype
from qcalc.core.encoding import METRIC_FIELDS, Encoding
from qcalc.core.toolchains import llama_type

FIELDS = (
    "name", "source", "dtype", "shape", "bitwidth", "signed", "symmetric", "granularity",
    "axis", "qmin", "qmax", "encoding_shape", "min", "max", "scale", "offset",
)  # fmt: skip
PER_CELL = ("min", "max", "scale", "offset")
BLOCK_FIELDS = ("block_size", "block_axis")  # appended for per-block and LPBQ encodings
LPBQ_FIELDS = ("per_channel_scale", "per_block_int_scale", "decompressed_bitwidth")  # and LPBQ
TOOLCHAIN_FIELDS = ("convention", "zero_point", "stored_scale")  # after "offset", --convention


def exact_offset(value: float) -> Any:
    """Offsets are integers on the grid; a NaN offset (from NaN data) stays a string."""
    value = float(value)
    return int(value) if math.isfinite(value) else NONFINITE_NAMES[repr(value)]


def _floats(values: Any) -> list[Any]:
    """Per-cell floats for JSON: exact, at C speed, unless a NaN / inf needs a name."""
    flat = np.asarray(values).ravel()
    if np.isfinite(flat).all():
        return NumberList(flat.astype(np.float64))
    return [exact_float(v) for v in flat]


def _offsets(values: Any) -> list[Any]:
    """Integer offsets as integers; a convention's fractional offsets (quanto's shift,
    llama.cpp Q4_1's block minimum over the scale) as floats."""
    flat = np.asarray(values).ravel()
    if not _integers(flat):
        return _floats(flat)
    if np.isfinite(flat).all():
        return NumberList(flat.astype(np.int64))
    return [exact_offset(v) for v in flat]


def _integers(values: np.ndarray) -> bool:
    """Whether every finite value is a whole number."""
    finite = values[np.isfinite(values)]
    return bool(np.array_equal(finite, np.round(finite)))


def encoding_record(enc: Encoding) -> dict[str, Any]:
    """One encoding as a JSON-ready dict with the documented keys, in order.

    Per-block and LPBQ encodings add BLOCK_FIELDS; LPBQ ones also LPBQ_FIELDS: the per-channel
    scales (one per channel, C order) and the integer multipliers (one per cell, like `scale`).
    Another toolchain's encodings add TOOLCHAIN_FIELDS: the convention, and its zero point
    and scale as it stores them (one per cell).
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
    if enc.toolchain is not None:
        record["convention"] = enc.spec.convention
        points = enc.toolchain.zero_point
        record["zero_point"] = (
            _floats(points) if enc.toolchain.float_zero_point else _offsets(points)
        )
        record["stored_scale"] = _floats(enc.toolchain.stored_scale)
    if enc.granularity in ("per-block", "lpbq"):
        record["block_size"] = enc.block_size
        record["block_axis"] = enc.block_axis
    if enc.granularity == "lpbq":
        record["per_channel_scale"] = _floats(_or_empty(enc.per_channel_scale))
        record["per_block_int_scale"] = _offsets(_or_empty(enc.per_block_int_scale))
        record["decompressed_bitwidth"] = enc.decompressed_bitwidth
    if enc.metrics is not None:
        record.update(strict_json(enc.metrics.record()))
    return record


def _or_empty(values: Any) -> np.ndarray:
    return np.zeros(0, dtype=np.float32) if values is None else np.asarray(values)


def write_csv(encodings: Sequence[Encoding], out: TextIO) -> None:
    """One row per tensor per channel; `channel` is the cell's index in C order. With
    metrics, METRIC_FIELDS (the tensor's) follow the tensor columns.

    With per-block or LPBQ encodings the columns go on: block_size, block_axis, and with LPBQ
    ones per_channel_scale (the cell's channel's), per_block_int_scale (the cell's) and
    decompressed_bitwidth; then, under another toolchain's convention, convention,
    zero_point and stored_scale (the cell's); empty for encodings without them.
    """
    grans = {enc.granularity for enc in encodings}
    extra = [*BLOCK_FIELDS] if grans & {"per-block", "lpbq"} else []
    if "lpbq" in grans:
        extra += LPBQ_FIELDS
    if any(enc.toolchain is not None for enc in encodings):
        extra += TOOLCHAIN_FIELDS
    metrics = [*METRIC_FIELDS] if any(enc.metrics is not None for enc in encodings) else []
    columns = [*FIELDS[:12], *metrics, "channel", *PER_CELL, *extra]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for enc in encodings:
        record = encoding_record(enc)
        fixed = [csv_cell(record.get(key)) for key in (*FIELDS[:12], *metrics)]
        cells = [record[key] for key in PER_CELL] + _csv_block_columns(enc, record, extra)
        for channel, values in enumerate(zip(*cells)):
            writer.writerow([*fixed, channel, *(csv_cell(v) for v in values)])


def _csv_block_columns(enc: Encoding, record: dict[str, Any], extra: list[str]) -> list[list]:
    """Per-cell values of the block columns: the cell's multiplier, its channel's scale, and
    the encoding's block settings repeated."""
    count = len(record["scale"])
    columns = []
    for key in extra:
        if key == "per_channel_scale" and enc.per_channel_scale is not None:
            columns.append(_floats(np.broadcast_to(enc.per_channel_scale, np.shape(enc.scale))))
        elif key in ("per_block_int_scale", "zero_point", "stored_scale") and key in record:
            columns.append(record[key])
        else:
            columns.append([record.get(key)] * count)
    return columns


def render_encodings(encodings: Sequence[Encoding], fmt: str, out: TextIO) -> None:
    """Write `encodings` to `out` as a table, json, jsonl or csv."""
    if fmt == "table":
        write_table(encodings, out)
    elif fmt == "csv":
        write_csv(encodings, out)
    else:
        write_records([encoding_record(e) for e in encodings], fmt, out)


HEADERS = ("tensor", "dtype", "shape", "per", "min", "max", "scale", "offset")


def table_row(enc: Encoding) -> list[str]:
    """Cells of one table row (see HEADERS); per-channel encodings show their channel count,
    per-block and LPBQ ones their grid (channels × blocks, e.g. "8×4 blk", "8×4 lpbq"), the
    overall min / max and the spread of scale and offset."""
    shape = "?" if enc.shape is None else "×".join(str(s) for s in enc.shape) or "scalar"
    dtype = short_dtype(enc.dtype)
    per = "tensor" if enc.granularity == "per-tensor" else f"{enc.scale.size} ch"
    if enc.granularity in ("per-block", "lpbq"):
        cells = [n for n in np.shape(enc.scale) if n != 1] or [1]
        kind = "blk" if enc.granularity == "per-block" else "lpbq"
        per = f"{'×'.join(map(str, cells))} {kind}"
    return [
        enc.name, dtype, shape, per, num(np.min(enc.min)), num(np.max(enc.max)),
        spread(enc.scale), spread(enc.offset, integer=_integers(enc.offset)),
    ]  # fmt: skip


def grid_label(spec) -> str:
    """A grid in a few characters, as QNN names its dtype: "int8 sym", "uint16", "int4 strict"."""
    label = f"{'int' if spec.is_signed else 'uint'}{spec.bitwidth}"
    if spec.strict_symmetric:
        return f"{label} strict"
    return f"{label} sym" if spec.symmetric else label


def _grid_key(spec) -> tuple:
    return (spec.bitwidth, spec.is_signed, spec.symmetric, spec.strict_symmetric, spec.int_range)


def analyzer_label(spec) -> str:
    """How tables name the calibration method, e.g. "min-max" or "percentile 99.9"."""
    if spec.analyzer == "percentile":
        return f"percentile {spec.percentile:g}"
    return {"minmax": "min-max"}.get(spec.analyzer, spec.analyzer)


def table_title(encodings: Sequence[Encoding]) -> str:
    if not encodings:
        return ""
    spec = encodings[0].spec
    kind = (
        "strict symmetric"
        if spec.strict_symmetric
        else ("symmetric" if spec.symmetric else "asymmetric")
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
        parts.insert(0, short_dtype(dtypes.pop()))
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
    conventions = {convention_label(enc.spec) for enc in encodings}
    if conventions != {"aimet"}:  # AIMET's tables stay as they were
        named = conventions.pop() if len(conventions) == 1 else "conventions per tensor"
        parts.insert(0, f"{named} convention")
    return ", ".join(parts)


def convention_label(spec) -> str:
    """The convention as titles name it: "torch", "llama.cpp Q4_0"."""
    if spec.convention == "llama.cpp":
        return f"llama.cpp {llama_type(spec)}"
    return spec.convention


def columns_to_show(
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
        return width - cells_width(headers, rows, shown[1:])

    for column in droppable:
        if name_room() >= min(NAME_MIN, longest) or column not in shown:
            continue
        shown.remove(column)
    return shown, max(len(headers[0]), name_room())


def write_table(encodings: Sequence[Encoding], out: TextIO, width: int | None = None) -> None:
    """A table for people, at most `width` columns wide (default: the terminal's width)."""
    width = width or table_width(out)
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
    shown, name_width = columns_to_show(rows, width, headers)
    names = shorten_names([row[0] for row in rows], name_width)
    print_table(
        out,
        [headers[i] for i in shown],
        [[name, *(row[i] for i in shown[1:])] for name, row in zip(names, rows)],
        width,
        right=[k for k, i in enumerate(shown) if headers[i] in PER_CELL + tuple(METRIC_HEADERS)],
        title=textwrap.wrap(table_title(encodings), width),
    )
