"""`qcalc lint` output: findings as a table grouped by rule, or one record per finding."""

from __future__ import annotations

from typing import TextIO

from qcalc.commands.render.text import print_table, table_width, write_records
from qcalc.errors import printable
from qcalc.ops.lint.report import LintReport


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
        rows.append([label, printable(finding.name or "(file)"), printable(finding.message)])
    print_table(
        out, ("rule", "tensor", "problem"), rows, width, wrap=[2],
        title=[f"{head}: {', '.join(counts)}"],
    )  # fmt: skip
