"""Lint reports: the file is read raw (a missing field is a finding, not a read error), each
entry is then read on its own by qcalc's reader, and the rules of `rules.RULES` run on both;
with a model, the rules against its graph too."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional, Union

from qcalc.core.choices import VERSIONS
from qcalc.core.encoding import Encoding
from qcalc.core.graph import Graph
from qcalc.core.tensor import TensorRef
from qcalc.errors import FormatError, ReadError, SpecError
from qcalc.ops.lint.rules import RULES, TARGETS, default_target

PathLike = Union[str, "os.PathLike[str]"]
LEGACY = ("0.6.1", "1.0.0")


@dataclass(frozen=True)
class Finding:
    """One problem: the rule's id, the tensor (None for the whole file) and what is wrong."""

    rule: str
    name: Optional[str]
    message: str

    @property
    def severity(self) -> str:
        return RULES[self.rule].severity

    def record(self) -> dict[str, Any]:
        """The machine record: rule, severity, name, message."""
        return {
            "rule": self.rule, "severity": self.severity, "name": self.name,
            "message": self.message,
        }  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """One raw entry: its name, its section's kind ("param" / "activation" in 0.6.1 /
    1.0.0, None in 2.x), its position in the section and its JSON value (a dict, or in 0.6.1
    the list of per-channel dicts)."""

    name: str
    kind: Optional[str]
    index: int
    value: Any


@dataclass
class Subject:
    """What the rules look at: the file (raw and read), the target, and the model."""

    path: str
    version: str
    target: str
    raw: dict
    entries: list[Entry]
    encodings: dict[str, Encoding] = field(default_factory=dict)  # entries the reader took
    graph: Optional[Graph] = None
    tensors: dict[str, TensorRef] = field(default_factory=dict)  # the model's parameters
    model: Optional[str] = None


@dataclass(frozen=True)
class LintReport:
    """Findings in rule order, then file order; exit code 1 when any is an error."""

    path: str
    version: str
    target: str
    model: Optional[str]
    findings: list[Finding]
    entries: int

    @property
    def errors(self) -> int:
        return sum(f.severity == "error" for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.severity == "warning" for f in self.findings)

    @property
    def exit_code(self) -> int:
        return 1 if self.errors else 0


def load(path: PathLike, model: Optional[PathLike] = None, target: Optional[str] = None) -> Subject:
    """Read the file raw and `model` (an ONNX file) for the rules. A file that is not a JSON
    object of a known version with the sections it needs is a FormatError (exit 2): there is
    nothing to lint."""
    from qcalc.io.formats.aimet_read import parse_json
    from qcalc.io.text import read_utf8

    source = os.fspath(path)
    raw = parse_json(read_utf8(source, ReadError, FormatError), source)
    if not isinstance(raw, dict):
        raise FormatError(f"{source}: top level is not a JSON object")
    version = raw.get("version")
    if version not in VERSIONS:
        raise FormatError(
            f"{source}: field 'version' is {version!r}, expected one of {', '.join(VERSIONS)}"
        )
    if target is not None and target not in TARGETS:
        raise SpecError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    subject = Subject(
        source, version, target or default_target(version), raw, _entries(raw, version, source)
    )
    if model is not None:
        from qcalc.io.readers import read_model

        found = read_model(model)
        subject.graph = found.graph
        subject.tensors = {t.name: t for t in found.tensors if isinstance(t, TensorRef)}
        subject.model = os.fspath(model)
    return subject


def read_entry(subject: Subject, entry: Entry) -> Encoding:
    """`entry` read on its own by qcalc's reader (FormatError when it refuses it)."""
    from qcalc.io.formats.aimet_read import from_dict

    (encoding,) = from_dict(_alone(subject.version, entry), source=subject.path).encodings
    return encoding


def _alone(version: str, entry: Entry) -> dict:
    """A file of `version` holding `entry` alone, in its section."""
    if version not in LEGACY:
        return {"version": version, "encodings": [entry.value]}
    empty = {} if version == "0.6.1" else []
    sections = {"activation_encodings": empty, "param_encodings": empty}
    key = "activation_encodings" if entry.kind == "activation" else "param_encodings"
    sections[key] = {entry.name: entry.value} if version == "0.6.1" else [entry.value]
    return {"version": version, **sections}


def _entries(raw: dict, version: str, source: str) -> list[Entry]:
    if version in LEGACY:
        sections = [("activation", "activation_encodings"), ("param", "param_encodings")]
    else:
        sections = [(None, "encodings")]
    entries = []
    for kind, key in sections:
        value = raw.get(key, [] if version != "0.6.1" else {})
        if version == "0.6.1":
            if not isinstance(value, dict):
                raise FormatError(f"{source}: field '{key}' must be an object of tensor entries")
            entries += [Entry(n, kind, i, v) for i, (n, v) in enumerate(value.items())]
            continue
        if not isinstance(value, list):
            raise FormatError(f"{source}: field '{key}' must be a list of entries")
        for i, item in enumerate(value):
            name = item.get("name") if isinstance(item, dict) else None
            entries.append(Entry(name if isinstance(name, str) else "", kind, i, item))
    return entries
