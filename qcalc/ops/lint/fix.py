"""`qcalc lint --fix`: the corrections the fixable rules allow, as a new file.

The fixed file starts from the entries the reader took, in file order (entries a file rule
flagged are read here; entries the reader refuses cannot be written and are left out, their
findings remaining). Then, in this order:

- unknown-name: the entries are dropped;
- legacy-symmetric-offset: the raw entry is rebuilt with offsets -2^(bw-1) (0.6.1: min / max
  from them) and read again;
- data-movement-mismatch: wrong copies are dropped and every missing or dropped copy is
  derived again as AIMET's export derives it (`ops.model.derived_activations`), until the
  movers agree;
- bias-scale, missing-bias (2.x): int32 biases get the product scale (`ops.model.product_bias`)
  or, for a missing bias without one, the statistical 32-bit encoding of its values.

The model rules run again on the result, so a finding of a fixable rule stays in `remaining`
exactly when the fixed file still has it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from qcalc.core.encoding import Encoding
from qcalc.errors import FormatError
from qcalc.ops import model
from qcalc.ops.lint import model_rules
from qcalc.ops.lint.report import LEGACY, Entry, Finding, Subject, read_entry
from qcalc.ops.lint.rules import RULES

_MODEL_FIXES = ("data-movement-mismatch", "bias-scale", "missing-bias")


@dataclass(frozen=True)
class Fixed:
    """The corrected file's contents, what changed (one line each), and the findings that
    still need a person."""

    file: object  # qcalc.io.formats.EncodingFile
    changes: list[str]
    remaining: list[Finding]


@dataclass
class _Draft:
    """The file being fixed: each entry's section kind and encoding, in file order."""

    kinds: dict[str, str]
    encodings: dict[str, Encoding]
    changes: list[str] = dataclasses.field(default_factory=list)
    centred: set[str] = dataclasses.field(default_factory=set)  # offsets rebuilt

    def put(self, enc: Encoding, kind: str, change: str) -> None:
        self.kinds.setdefault(enc.name, kind)
        self.encodings[enc.name] = enc
        self.changes.append(f"{enc.name}: {change}")


def fix(subject: Subject, findings: list[Finding]) -> Fixed:
    """Apply every fix the findings allow; entries the reader refused cannot be written and
    stay in `remaining`."""
    names = _names(findings)
    draft = _start(subject, names.get("legacy-symmetric-offset", set()))
    for name in names.get("unknown-name", ()):
        if draft.encodings.pop(name, None) is not None:
            draft.changes.append(f"{name}: dropped (not a name of the model)")
    still: set[tuple[str, str]] = set()
    if subject.graph is not None:
        m = model_rules.Model.of(subject.graph)
        _copy_through_movers(m, draft)
        _fix_biases(subject, m, draft)
        still = {(f.rule, f.name) for f in _model_fixables(subject, m, draft.encodings)}
    return Fixed(_file(subject, draft), draft.changes, _remaining(findings, draft, still))


def _names(findings: list[Finding]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for finding in findings:
        if finding.name is not None:
            found.setdefault(finding.rule, set()).add(finding.name)
    return found


def _remaining(
    findings: list[Finding], draft: _Draft, still: set[tuple[str, str]]
) -> list[Finding]:
    """The findings the fix did not remove: every one of a rule --fix cannot repair, those of
    the model rules it can that the fixed file still has, and unknown names / symmetric
    offsets it could not drop or rebuild."""

    def fixed(f: Finding) -> bool:
        if not RULES[f.rule].fixable:
            return False
        if f.rule in _MODEL_FIXES:
            return (f.rule, f.name) not in still
        if f.rule == "unknown-name":
            return f.name not in draft.encodings
        return f.name in draft.centred

    return [f for f in findings if not fixed(f)]


# --- the entries -------------------------------------------------------------------------


def _start(subject: Subject, centred: set[str]) -> _Draft:
    """The entries the reader took (others read here when a file rule kept them from it;
    those in `centred` rebuilt with centred symmetric offsets), in file order."""
    draft = _Draft({}, {})
    for entry in subject.entries:
        if not entry.name or entry.name in draft.kinds:
            continue
        kind = _kind(subject, entry)
        draft.kinds[entry.name] = kind
        if entry.name in centred:
            enc = _read(subject, _centred(entry, subject.version))
            if enc is not None:
                draft.put(enc, kind, "symmetric offsets set to the grid centre")
                draft.centred.add(entry.name)
            continue
        enc = subject.encodings.get(entry.name) or _read(subject, entry)
        if enc is not None:
            draft.encodings[entry.name] = enc
    return draft


def _kind(subject: Subject, entry: Entry) -> str:
    """The section an entry is written to: its own in 0.6.1 / 1.0.0; in 2.x the role its
    axis gives (positive: a parameter), else whether the model has it as an initializer."""
    if entry.kind is not None:
        return entry.kind
    axis = entry.value.get("axis") if isinstance(entry.value, dict) else None
    if isinstance(axis, int) and not isinstance(axis, bool):
        return "param" if axis >= 0 else "activation"
    graph = subject.graph
    return "param" if graph is not None and entry.name in graph.initializers else "activation"


def _read(subject: Subject, entry: Optional[Entry]) -> Optional[Encoding]:
    """`entry` read alone by qcalc's reader, or None when it refuses it."""
    if entry is None:
        return None
    try:
        return read_entry(subject, entry)
    except FormatError:
        return None


def _centred(entry: Entry, version: str) -> Optional[Entry]:
    """A 0.6.1 / 1.0.0 entry with every offset at -2^(bw-1) (0.6.1: min and max recomputed
    from it, as float32 products); None when the entry is not shaped for that."""
    value = entry.value
    try:
        if version == "1.0.0":
            centre = -(2 ** (_bitwidth(value["bw"]) - 1))
            value = {**value, "offset": [centre] * len(value["offset"])}
        elif version == "0.6.1":
            value = [_centred_cell(cell) for cell in value]
        else:
            return None
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    return dataclasses.replace(entry, value=value)


def _centred_cell(cell: dict) -> dict:
    bitwidth = _bitwidth(cell["bitwidth"])
    centre = -(2 ** (bitwidth - 1))
    low, high = np.float32(centre), np.float32(centre + 2**bitwidth - 1)
    with np.errstate(all="ignore"):  # a scale beyond float32: the reader refuses the entry
        scale = np.float32(cell["scale"])
        return {**cell, "offset": centre, "min": float(scale * low), "max": float(scale * high)}


def _bitwidth(value: Any) -> int:
    """A raw bitwidth the reader could take (else ValueError: the entry is left as it is)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 32:
        raise ValueError(value)
    return value


def _file(subject: Subject, draft: _Draft) -> object:
    from qcalc.io.formats import EncodingFile

    def of(kind: str) -> list[Encoding]:
        return [enc for name, enc in draft.encodings.items() if draft.kinds[name] == kind]

    legacy = subject.version in LEGACY
    args = subject.raw.get("quantizer_args") if legacy else None
    excluded = subject.raw.get("excluded_layers", []) if legacy else []
    return EncodingFile(
        params=of("param"), activations=of("activation"), version=subject.version,
        quantizer_args=args if _flat_json(args) else None,
        excluded_layers=excluded if _strings(excluded) else [],
    )  # fmt: skip


def _flat_json(value: Any) -> bool:
    """A JSON object of strings, booleans and finite numbers (what AIMET writes there)."""
    return isinstance(value, dict) and all(
        isinstance(v, (str, bool, int)) or isinstance(v, float) and math.isfinite(v)
        for v in value.values()
    )


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


# --- the model fixes ---------------------------------------------------------------------


def _model_fixables(subject: Subject, m: model_rules.Model, encodings: dict) -> list[Finding]:
    missing = model_rules.missing_copies(m, encodings)
    return [
        *model_rules.mismatches(m, encodings),
        *(Finding("data-movement-mismatch", enc.name, "") for enc in missing),
        *model_rules.bias_scales(m, encodings),
        *model_rules.missing_biases(subject, m, encodings),
    ]


def _copy_through_movers(m: model_rules.Model, draft: _Draft) -> None:
    """Drop the copies that differ from their reference and derive them again with the
    missing ones, until nothing changes (a chain of movers takes a round per link)."""
    for _ in range(len(m.graph.nodes) + 1):
        encodings = draft.encodings
        wrong = {f.name for f in model_rules.mismatches(m, encodings)}
        targets = wrong | {enc.name for enc in model_rules.missing_copies(m, encodings)}
        trial = {name: enc for name, enc in encodings.items() if name not in wrong}
        derived = model.derived_activations(m.graph, trial, m.params(trial))
        new = [enc for enc in derived if enc.name in targets]
        if not new:
            return
        for enc in new:
            source = "replaced by" if enc.name in wrong else "added as"
            draft.put(enc, "activation", f"{source} the copy AIMET's export derives across movers")


def _fix_biases(subject: Subject, m: model_rules.Model, draft: _Draft) -> None:
    """Wrong int32 bias scales set to the product; missing 2.x biases derived."""
    for bias, expected in list(model_rules.expected_biases(m, draft.encodings)):
        if model_rules.scale_problem(bias, expected):
            draft.put(expected, "param", "int32 scale set to float32(input scale x weight scale)")
    observed = model_rules.observed_tensors(m, draft.encodings)
    for finding in model_rules.missing_biases(subject, m, draft.encodings):
        ref = subject.tensors.get(finding.name or "")
        if ref is None:
            continue
        role = m.roles[ref.name]
        base = model.statistical_bias(None, ref, None)
        product = model.product_bias(
            m.graph, base, role, draft.encodings, draft.encodings, observed
        )
        if product is not None:
            draft.put(product, "param", "int32 entry added (input scale x weight scale)")
            continue
        enc = model.statistical_bias(base, ref, draft.encodings.get(role.weight or ""))
        draft.put(enc, "param", "int32 entry added (statistical: no input scale reaches it)")
