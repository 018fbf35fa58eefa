"""Lint rules on the encodings file alone (`rules.rule_list(model=False)`), and the reading of
each entry by qcalc's own reader, which gives the model rules their Encodings."""

from __future__ import annotations

from qcalc.errors import FormatError
from qcalc.ops.lint.report import LEGACY, Entry, Finding, Subject


def check(subject: Subject) -> list[Finding]:
    """Every file-level finding; fills `subject.encodings` with the entries the reader takes."""
    findings = _schema(subject)
    flagged = {f.name for f in findings}
    findings += read_entries(subject, skip=flagged)
    return findings


def _schema(subject: Subject) -> list[Finding]:
    """Rules on the raw entries (missing-field, unpaired-field, legacy-symmetric-offset,
    channel-not-symmetric, block-fields, mixed-channels, scale-range, dead-channel,
    qnn-bias-bitwidth, wrong-target)."""
    return []


def read_entries(subject: Subject, skip: set = frozenset()) -> list[Finding]:
    """Each entry read on its own by qcalc's reader: the ones it takes go to
    `subject.encodings`; the others are `invalid-entry` findings with the reader's reason
    (entries in `skip` already have a finding). Names seen twice are `duplicate-name`."""
    from qcalc.io.formats.aimet_read import from_dict

    findings = []
    seen: set[str] = set()
    for entry in subject.entries:
        if not entry.name:
            findings.append(
                Finding("invalid-entry", None, _position(subject, entry) + "has no name")
            )
            continue
        if entry.name in seen:
            findings.append(Finding("duplicate-name", entry.name, "appears more than once"))
            continue
        seen.add(entry.name)
        if entry.name in skip:
            continue
        try:
            (encoding,) = from_dict(_alone(subject.version, entry), source=subject.path).encodings
        except FormatError as error:
            reason = str(error).removeprefix(f"{subject.path}: ")
            findings.append(Finding("invalid-entry", entry.name, reason))
            continue
        subject.encodings[entry.name] = encoding
    return findings


def _alone(version: str, entry: Entry) -> dict:
    """A file of `version` holding `entry` alone, in its section."""
    if version not in LEGACY:
        return {"version": version, "encodings": [entry.value]}
    empty = {} if version == "0.6.1" else []
    sections = {"activation_encodings": empty, "param_encodings": empty}
    key = "activation_encodings" if entry.kind == "activation" else "param_encodings"
    sections[key] = {entry.name: entry.value} if version == "0.6.1" else [entry.value]
    return {"version": version, **sections}


def _position(subject: Subject, entry: Entry) -> str:
    section = "encodings" if entry.kind is None else f"{entry.kind}_encodings"
    return f"entry {entry.index} of '{section}' "
