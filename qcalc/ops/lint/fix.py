"""`qcalc lint --fix`: the corrections the fixable rules allow, as a new file."""

from __future__ import annotations

from dataclasses import dataclass

from qcalc.ops.lint.report import Finding, Subject


@dataclass(frozen=True)
class Fixed:
    """The corrected file's contents, what changed (one line each), and the findings that
    still need a person."""

    file: object  # qcalc.io.formats.EncodingFile
    changes: list[str]
    remaining: list[Finding]


def fix(subject: Subject, findings: list[Finding]) -> Fixed:
    """Apply every fix the findings allow; entries the reader refused cannot be written and
    stay in `remaining`."""
    raise NotImplementedError
