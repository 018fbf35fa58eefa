"""`qcalc lint` output: findings as a table grouped by rule, or one record per finding."""

from __future__ import annotations

from typing import TextIO

from qcalc.commands.render.text import (
    NAME_MIN,
    cells_width,
    print_table,
    shorten_names,
    table_width,
    write_records,
)
from qcalc.errors import printable
from qcalc.ops.lint.report import LintReport

HEADERS = ("rule", "tensor", "problem")
PROBLEM_MIN = 30  # columns the problem text keeps before tensor names are shortened


def render_findings(report: LintReport, fmt: str, out: TextIO) -> None:
    """json / jsonl: a record per finding (rule, severity, name, message); table: a title
    with the counts, then the findings grouped by rule."""
    if fmt in ("json", "jsonl"):
        write_records([f.record() for f in report.findings], fmt, out)
        return
    width = table_width(out)
    against = f" against {report.model}" if report.model else ""
    head = f"{report.path}: {report.version} for {report.target}{against}"
    if not report.findings:
        print_table(out, (), [], width, title=[f"{head}: no problems in {report.entries} entries"])
        return
    counts = [f"{report.errors} error{'s' if report.errors != 1 else ''}"]
    if report.warnings:
        counts.append(f"{report.warnings} warning{'s' if report.warnings != 1 else ''}")
    rows, previous = [], None
    for finding in report.findings:
        label = f"{finding.rule} ({finding.severity})" if finding.rule != previous else ""
        previous = finding.rule
        rows.append([label, finding.name or "(file)", printable(finding.message)])
    # the rule's label stays whole (findings are grouped under it); long tensor names give
    # way, down to NAME_MIN, to PROBLEM_MIN columns of problem text, which wraps
    room = width - cells_width(HEADERS, rows, [0]) - PROBLEM_MIN - 2
    longest = max(len(HEADERS[1]), *(len(printable(row[1])) for row in rows))
    names = shorten_names([row[1] for row in rows], min(longest, max(NAME_MIN, room)))
    rows = [[row[0], name, row[2]] for row, name in zip(rows, names)]
    print_table(
        out, HEADERS, rows, width, wrap=[2],
        title=[f"{head}: {', '.join(counts)}"],
    )  # fmt: skip
