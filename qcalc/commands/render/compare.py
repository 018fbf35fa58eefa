"""`qcalc compare`'s output: one row per convention (table), or one record each (json,
jsonl, csv)."""

from __future__ import annotations

import math
import textwrap
from typing import Any, TextIO

import numpy as np

from qcalc.commands.render.encodings import analyzer_label, encoding_record
from qcalc.commands.render.text import (
    METRIC_HEADERS,
    csv_cell,
    metric_cells,
    print_table,
    spread,
    strict_json,
    table_width,
    write_records,
)
from qcalc.core.dtypes import short_dtype
from qcalc.ops.compare import Comparison, ConventionRow

HEADERS = ["convention", "scale", "zero point", "grid", "sqnr", "max err", "clip"]
# the record keys, in order; the metric keys follow
RECORD_FIELDS = (
    "convention", "toolchain", "source", "offered", "reason", "tensor", "channel", "qmin",
    "qmax", "scale", "offset", "zero_point", "stored_scale",
)  # fmt: skip


def comparison_records(comparison: Comparison) -> list[dict[str, Any]]:
    """One JSON-ready record per convention (RECORD_FIELDS, then the metrics). AIMET's
    zero point is its offset negated, and its stored scale its scale."""
    records = []
    channel = None if comparison.channel is None else comparison.channel[1]
    for row in comparison.rows:
        record: dict[str, Any] = {
            "convention": row.convention,
            "toolchain": row.toolchain,
            "source": row.source,
            "offered": row.encoding is not None,
            "reason": row.refused or None,
            "tensor": comparison.tensor,
            "channel": channel,
        }
        if row.encoding is not None:
            full = encoding_record(row.encoding)
            for key in ("qmin", "qmax", "scale", "offset"):
                record[key] = full[key]
            aimet = row.encoding.toolchain is None
            negated = [-v if isinstance(v, (int, float)) else v for v in full["offset"]]
            record["zero_point"] = negated if aimet else full["zero_point"]
            record["stored_scale"] = full["scale"] if aimet else full["stored_scale"]
            record.update(strict_json(row.metrics.record()))
        records.append(record)
    return records


def _exact(values: np.ndarray) -> str:
    """One number as float32 writes it in full (the digits that tell conventions apart), a
    spread of several as tables show it."""
    values = np.asarray(values, dtype=np.float32).ravel()
    if values.size != 1:
        return spread(values)
    value = float(values[0])
    if math.isfinite(value) and value == round(value):
        return str(int(value))
    return str(values[0])


def _cells(row: ConventionRow) -> list[str]:
    enc = row.encoding
    points = 0 - enc.offset if enc.toolchain is None else enc.toolchain.zero_point  # no -0
    stored = enc.scale if enc.toolchain is None else enc.toolchain.stored_scale
    metrics = dict(zip(METRIC_HEADERS, metric_cells(row.metrics)))
    return [
        row.convention, _exact(stored), _exact(points), f"[{enc.qmin}, {enc.qmax}]",
        metrics["sqnr"], metrics["max err"], metrics["clip"],
    ]  # fmt: skip


def title(comparison: Comparison) -> str:
    shape = "×".join(map(str, comparison.shape)) or "scalar"
    text = f"{comparison.tensor}, {short_dtype(comparison.dtype)} {shape}"
    if comparison.channel is not None:
        axis, k, count = comparison.channel
        text += f", channel {k} of {count} along axis {axis}"
    offered = next((row.encoding for row in comparison.rows if row.encoding is not None), None)
    if offered is not None:
        spec = offered.spec
        kind = "symmetric" if spec.symmetric else "asymmetric"
        text += f", {spec.bitwidth}-bit {kind}, {offered.granularity}, {analyzer_label(spec)}"
    return text


def write_table(comparison: Comparison, out: TextIO, width: int | None = None) -> None:
    """The table, then a line per convention that does not offer the flags."""
    width = width or table_width(out)
    rows = [_cells(row) for row in comparison.rows if row.encoding is not None]
    print_table(
        out,
        HEADERS if rows else [],
        rows,
        width,
        right=[1, 2, 4, 5, 6],
        title=textwrap.wrap(title(comparison), width),
    )
    for row in comparison.rows:
        if row.encoding is None:
            out.write(
                "\n".join(textwrap.wrap(f"{row.convention}: {_reason(row)}", width,
                                        subsequent_indent="  ")) + "\n"
            )  # fmt: skip
    if rows:
        out.write("scale, zero point: as each toolchain stores them; sqnr in dB\n")


def _reason(row: ConventionRow) -> str:
    """Why a convention has no row, without repeating its name."""
    return row.refused.removeprefix(f"convention {row.convention} ")


def render_comparison(comparison: Comparison, fmt: str, out: TextIO) -> None:
    """`comparison` as a table, json, jsonl or csv (one row per convention; per-cell lists
    as JSON text in csv cells)."""
    if fmt == "table":
        write_table(comparison, out)
        return
    records = comparison_records(comparison)
    if fmt != "csv":
        write_records(records, fmt, out)
        return
    import csv

    columns = list(dict.fromkeys(key for record in records for key in record))
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for record in records:
        writer.writerow([csv_cell(record.get(key)) for key in columns])
