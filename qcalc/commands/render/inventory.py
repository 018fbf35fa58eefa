"""`qcalc ls` output: TensorInfo rows as json / jsonl / csv for machines and a table for people.

Machine formats carry every key of `TensorInfo.record()` for every tensor, with encode's
conventions: strict JSON (a non-finite float would be the string "NaN" / "Infinity"), null
(json) or an empty cell (csv) for a statistic without a value, shapes as JSON lists in csv.
"""

from __future__ import annotations

import csv
import math
import os
from typing import Any, Optional, Sequence, TextIO

from qcalc.commands.render.text import (
    NAME_MIN,
    cells_width,
    csv_cell,
    ellipsize_middle,
    exact_float,
    num,
    pack,
    print_table,
    shorten_names,
    table_width,
    write_records,
)
from qcalc.core.dtypes import short_dtype
from qcalc.errors import printable
from qcalc.ops.inventory import TensorInfo

FIELDS = (
    "name", "dtype", "shape", "elements", "bytes", "file", "min", "max", "mean", "std", "nan",
    "inf", "op", "role", "axis",
)  # fmt: skip
STATS = ("min", "max", "mean", "std")
FILE_MIN = 12  # the file column is not shortened below this while shape or size can go


def inventory_record(info: TensorInfo) -> dict[str, Any]:
    """`info.record()` made strict-JSON safe (a non-finite float becomes a string)."""
    record = info.record()
    for key in STATS:
        value = record[key]
        if isinstance(value, float) and not math.isfinite(value):
            record[key] = exact_float(value)
    return record


def write_csv(infos: Sequence[TensorInfo], out: TextIO) -> None:
    """One row per tensor, columns FIELDS; floats in repr form (exact), None as ''."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(FIELDS)
    for info in infos:
        record = inventory_record(info)
        writer.writerow(csv_cell(record[key]) for key in FIELDS)


def render_inventory(
    infos: Sequence[TensorInfo], fmt: str, out: TextIO, width: Optional[int] = None
) -> None:
    """Write `infos` to `out` as table, json, jsonl or csv."""
    if fmt == "table":
        write_table(infos, out, width)
    elif fmt == "csv":
        write_csv(infos, out)
    else:
        write_records([inventory_record(info) for info in infos], fmt, out)


# --- table -------------------------------------------------------------------------------

HEADERS = (
    "tensor", "dtype", "shape", "size", "min", "max", "mean", "std", "nan", "inf", "file", "use",
)  # fmt: skip
NUMERIC = {"size", "min", "max", "mean", "std", "nan", "inf"}


def size_text(nbytes: int) -> str:
    """Bytes in decimal units, three significant digits: 512 B, 9.22 kB, 1.01 GB."""
    value = float(nbytes)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 999.5 or unit == "TB":
            return f"{nbytes} B" if unit == "B" else f"{num(value)} {unit}"
        value /= 1000
    raise AssertionError  # unreachable


def _stat(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) and len(str(value)) <= 7:  # integer tensors: exact
        return str(value)
    return num(value)


def file_labels(files: Sequence[str]) -> tuple[dict[str, str], str]:
    """Short labels for the file column, and where the title says the files are.

    Labels are paths relative to the files' common directory, without the prefix and suffix
    all of them share (cut at a separator, so numbers stay whole): shards
    `ckpt/model-00001-of-00002.safetensors`, `ckpt/model-00002-of-00002.safetensors` become
    `00001`, `00002`, and the title says "in ckpt/model-*-of-00002.safetensors".
    """
    unique = list(dict.fromkeys(files))
    try:
        common = os.path.commonpath(unique) if len(unique) > 1 else ""
    except ValueError:  # absolute and relative paths mixed
        common = ""
    if common in unique:  # the same file under two spellings: no common directory
        common = ""
    rel = [os.path.relpath(f, common) if common else f for f in unique]
    prefix = _cut_at_separator(os.path.commonprefix(rel))
    suffix = _cut_at_separator(os.path.commonprefix([r[::-1] for r in rel]))[::-1]
    shortest = min((len(r) for r in rel), default=0)
    if len(prefix) + len(suffix) >= shortest:  # every label must keep a character
        prefix = suffix = ""
    labels = {f: r[len(prefix) : len(r) - len(suffix)] for f, r in zip(unique, rel)}
    if len(unique) <= 1:
        return labels, ""
    if prefix or suffix:
        return labels, "in " + os.path.join(common, f"{prefix}*{suffix}")
    return labels, f"in {len(unique)} files" + (f" under {common}" if common else "")


def _cut_at_separator(text: str) -> str:
    """`text` up to and including its last non-alphanumeric character ('' if it has none)."""
    for i in range(len(text) - 1, -1, -1):
        if not text[i].isalnum():
            return text[: i + 1]
    return ""


def table_rows(infos: Sequence[TensorInfo], labels: dict[str, str]) -> list[list[str]]:
    """Cells of every row, one per HEADERS entry."""
    rows = []
    for info in infos:
        shape = "×".join(str(s) for s in info.shape) or "scalar"
        rows.append(
            [
                info.name, short_dtype(info.dtype), shape, size_text(info.nbytes),
                _stat(info.min), _stat(info.max), _stat(info.mean), _stat(info.std),
                str(info.nan_count), str(info.inf_count), labels.get(info.file, info.file),
                _use(info),
            ]
        )  # fmt: skip
    return rows


def _use(info: TensorInfo) -> str:
    """What an ONNX parameter is to its consumer: "Conv weight ax0", "Add bias"."""
    if info.op is None:
        return ""
    axis = "" if info.axis is None or info.role != "weight" else f" ax{info.axis}"
    return f"{info.op} {info.role}{axis}"


def table_title(infos: Sequence[TensorInfo], where: str = "") -> list[str]:
    """The title's parts, e.g. "bf16", "10 tensors", "22,851 elements", "45.7 kB",
    "no NaN or inf"; `where` (from `file_labels`) follows the tensor count."""
    dtypes = {info.dtype for info in infos}
    parts = [short_dtype(d) for d in dtypes] if len(dtypes) == 1 else []
    parts.append(f"{len(infos)} tensor{'' if len(infos) == 1 else 's'} {where}".rstrip())
    parts.append(f"{sum(info.elements for info in infos):,} elements")
    parts.append(size_text(sum(info.nbytes for info in infos)))
    nan, inf = sum(i.nan_count for i in infos), sum(i.inf_count for i in infos)
    if nan or inf:
        parts += [f"{nan} NaN" if nan else "", f"{inf} inf" if inf else ""]
    else:
        parts.append("no NaN or inf")
    return [part for part in parts if part]


def columns_and_widths(rows: Sequence[Sequence[str]], width: int) -> tuple[list[int], int, int]:
    """Indices of the columns to show, and the widths left for tensor names and file labels.

    Columns the title already states are left out: dtype when there is one, nan / inf when
    all are 0, file when there is one. Size (which shape and dtype tell) makes room rather
    than a name be shortened; shape only when names would get fewer than NAME_MIN characters
    (file labels fewer than FILE_MIN).
    """
    column = lambda i: [row[i] for row in rows]  # noqa: E731
    shown = list(range(len(HEADERS)))
    for i, redundant in (
        (1, len(set(column(1))) <= 1),
        (8, all(cell == "0" for cell in column(8))),
        (9, all(cell == "0" for cell in column(9))),
        (10, len(set(column(10))) <= 1),
        (11, all(cell == "" for cell in column(11))),
    ):
        if redundant:
            shown.remove(i)
    longest_name = max((len(row[0]) for row in rows), default=0)
    longest_file = max((len(row[10]) for row in rows), default=0) if 10 in shown else 0
    need = min(NAME_MIN, longest_name) + min(FILE_MIN, longest_file)

    def room() -> int:  # for the name and file columns together
        fixed = [i for i in shown if i not in (0, 10)]
        return width - cells_width(HEADERS, rows, fixed) - 2 * (10 in shown)

    if room() < longest_name + min(FILE_MIN, longest_file):
        shown.remove(3)  # size, which shape and dtype tell, rather than shorten a name
    if room() < need:
        shown.remove(2)  # shape
    left = room()
    file_width = 0
    if 10 in shown:
        file_width = min(longest_file, max(min(FILE_MIN, longest_file), left - longest_name))
        file_width = max(len(HEADERS[10]), file_width)
    return shown, max(len(HEADERS[0]), left - file_width), file_width


def _file_cell(label: str, width: int) -> str:
    return ellipsize_middle(printable(label), width)


def write_table(infos: Sequence[TensorInfo], out: TextIO, width: Optional[int] = None) -> None:
    """A table for people, at most `width` columns wide (default: the terminal's width)."""
    width = width or table_width(out)
    labels, where = file_labels([info.file for info in infos])
    title = pack(table_title(infos, where), width)
    if not infos:
        print_table(out, (), [], width, title=title)
        return
    rows = table_rows(infos, labels)
    shown, name_width, file_width = columns_and_widths(rows, width)
    names = shorten_names([row[0] for row in rows], name_width)
    cells = [
        [name, *(_file_cell(row[i], file_width) if i == 10 else row[i] for i in shown[1:])]
        for name, row in zip(names, rows)
    ]
    right = [k for k, i in enumerate(shown) if HEADERS[i] in NUMERIC]
    print_table(out, [HEADERS[i] for i in shown], cells, width, right=right, title=title)
