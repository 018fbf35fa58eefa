"""`qcalc check` results: a table of failures for people, json / jsonl records for CI."""

from __future__ import annotations

import textwrap
from typing import Any, Sequence, TextIO

from qcalc.commands.render.encodings import convention_label
from qcalc.commands.render.text import (
    NAME_MIN,
    cells_width,
    metric_cells,
    print_table,
    shorten_names,
    strict_json,
    table_width,
    write_records,
)

HEADERS = ("tensor", "sqnr", "worst", "max err", "clip", "failures")


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
        write_records([strict_json(result.record()) for result in report.results], fmt, out)
        return
    shown = report.results if show_all else report.failed
    verdict = f"{summary(report)} ({thresholds_label(thresholds)}{_conventions(report)})"
    out.writelines(line + "\n" for line in textwrap.wrap(verdict, table_width(out)))
    if shown:
        _write_table(shown, out)


def _conventions(report: Any) -> str:
    """ ", torch convention" when the encodings follow another toolchain's rules."""
    named = {
        convention_label(result.encoding.spec)
        for result in report.results
        if result.encoding is not None and result.encoding.spec.convention != "aimet"
    }
    if not named:
        return ""
    return f", {named.pop()} convention" if len(named) == 1 else ", conventions per tensor"


def _row(result: Any) -> list[str]:
    sqnr, worst, max_err, clip, _ = metric_cells(result.metrics)
    verdict = "; ".join(result.failures) if result.failures else "ok"
    if result.warnings:
        verdict += " (warning: " + "; ".join(result.warnings) + ")"
    return [result.name, sqnr, worst, max_err, clip, verdict]


def _write_table(results: Sequence[Any], out: TextIO) -> None:
    rows = [_row(result) for result in results]
    width = table_width(out)
    failures = max(len(HEADERS[5]), *(len(r[5]) for r in rows))
    # the failure text is what CI needs: the name gives way first, down to NAME_MIN; then
    # the failure text wraps within the width
    name_width = max(NAME_MIN, width - cells_width(HEADERS, rows, range(1, 5)) - failures - 2)
    longest = max(len(r[0]) for r in rows)
    name_width = min(name_width, max(longest, len(HEADERS[0])))
    names = shorten_names([row[0] for row in rows], name_width)
    rows = [[name, *row[1:]] for name, row in zip(names, rows)]
    print_table(out, HEADERS, rows, width, right=range(1, 5), wrap=[5])
