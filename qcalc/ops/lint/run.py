"""Running the lint: every rule that applies, in rule order, and `--fix`."""

from __future__ import annotations

from typing import Optional

from qcalc.ops.lint import file_rules, model_rules
from qcalc.ops.lint.fix import Fixed, fix
from qcalc.ops.lint.report import Finding, LintReport, PathLike, Subject, load
from qcalc.ops.lint.rules import RULES


def findings_of(subject: Subject) -> list[Finding]:
    """Every finding of every rule that applies to `subject`, in rule order, then file order."""
    findings = file_rules.check(subject)
    if subject.graph is not None:
        findings += model_rules.check(subject)
    order = {rule: i for i, rule in enumerate(RULES)}
    return sorted(findings, key=lambda f: order[f.rule])


def lint(
    path: PathLike, model: Optional[PathLike] = None, target: Optional[str] = None
) -> LintReport:
    """Every finding of every rule on the encodings file `path` (and against the ONNX
    `model` when given) for `target` ("qnn" or "qairt"; default: the converter the file's
    version is for)."""
    return _report(load(path, model, target))


def lint_and_fix(
    path: PathLike, model: Optional[PathLike] = None, target: Optional[str] = None
) -> tuple[LintReport, Fixed]:
    """The report on `path` and the corrected file (`fix.Fixed`), for `--fix`."""
    subject = load(path, model, target)
    report = _report(subject)
    return report, fix(subject, report.findings)


def _report(subject: Subject) -> LintReport:
    return LintReport(
        subject.path, subject.version, subject.target, subject.model, findings_of(subject),
        len(subject.entries),
    )  # fmt: skip
