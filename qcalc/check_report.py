"""`qcalc check` results -> a table of failures for people, json / jsonl records for CI."""

from __future__ import annotations

import io
import textwrap
from typing import Any, Sequence, TextIO

from qcalc.report import _table_width, exact_float, metric_cells, shorten_names, write_records

HEADERS = ("tensor", "sqnr", "worst", "max err", "clip", "failures")
NAME_MIN = 20


def check_record(result: Any) -> dict[str, Any]:
    """One tensor's verdict as strict JSON (infinite SQNR as "Infinity")."""
    return {
        key: exact_float(value) if isinstance(value, float) else value
        for key, value in result.record().items()
    }


def thresholds_label(thresholds: Any) -> str:
    """The limits in force, e.g. "sqnr >= 30 dB, clip <= 0.001"; NaN / inf always count."""
    parts = []
    if thresholds.min_sqnr is not None:
        parts.append(f"sqnr >= {thresholds.min_sqnr:g} dB")
    if thresholds.max_clip is not None:
        parts.append(f"clip <= {thresholds.max_clip:g}")
    if thresholds.max_abs_error is not None:
        parts.append(f"max abs error <= {thresholds.max_abs_error:g}")
    parts.append("NaN / inf " + ("allowed" if thresholds.allow_nonfinite else "fail"))
    return ", ".join(parts)


def summary(report: Any) -> str:
    total, failed = len(report.results), len(report.failed)
    noun = "tensor" if total == 1 else "tensors"
    if not failed:
        return f"passed: all {total} {noun}"
    return f"FAILED: {failed} of {total} {noun}"


def render_check(
    report: Any, thresholds: Any, fmt: str, out: TextIO, show_all: bool = False
) -> None:
    """json: one array of records; jsonl: a record per line (every tensor, always);
    table: the failing tensors (every tensor with `show_all`) and a verdict line."""
    if fmt in ("json", "jsonl"):
        write_records([check_record(result) for result in report.results], fmt, out)
        return
    shown = report.results if show_all else report.failed
    verdict = f"{summary(report)} ({thresholds_label(thresholds)})"
    out.writelines(line + "\n" for line in textwrap.wrap(verdict, _table_width(out)))
    if shown:
        _write_table(shown, out)


def _row(result: Any) -> list[str]:
    sqnr, worst, max_err, clip, _ = metric_cells(result.metrics)
    verdict = "; ".join(result.failures) if result.failures else "ok"
    if result.warnings:
        verdict += " (warning: " + "; ".join(result.warnings) + ")"
    return [result.name, sqnr, worst, max_err, clip, verdict]


def _write_table(results: Sequence[Any], out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    rows = [_row(result) for result in results]
    width = _table_width(out)
    numbers = sum(max(len(HEADERS[i]), *(len(r[i]) for r in rows)) + 2 for i in range(1, 5))
    failures = max(len(HEADERS[5]), *(len(r[5]) for r in rows))
    # the failure text is what CI needs: the name gives way first, down to NAME_MIN; then
    # the failure text wraps within the width
    name_width = max(NAME_MIN, width - numbers - failures - 2)
    longest = max(len(r[0]) for r in rows)
    name_width = min(name_width, max(longest, len(HEADERS[0])))
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, highlight=False)
    table = Table(box=None, pad_edge=False)
    for i, header in enumerate(HEADERS):
        table.add_column(header, justify="right" if 1 <= i <= 4 else "left", no_wrap=i < 5)
    for name, row in zip(shorten_names([row[0] for row in rows], name_width), rows):
        table.add_row(name, *row[1:])
    console.print(table)
    out.writelines(line.rstrip() + "\n" for line in buffer.getvalue().splitlines())
