"""Lint rules against the model's graph (`rules.rule_list(model=True)`)."""

from __future__ import annotations

from qcalc.ops.lint.report import Finding, Subject


def check(subject: Subject) -> list[Finding]:
    """Every finding against `subject.graph`, using `subject.encodings` (the entries the
    reader took) and `subject.tensors` (the model's parameter values)."""
    return []
