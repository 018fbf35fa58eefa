"""A derivation written down as it is computed: `Trace` collects the named steps that
`qcalc explain` prints (each rule's name, a sentence with the real numbers, the numbers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class Step:
    """One step of a derivation: the rule applied, what it did (a sentence with the
    numbers), and those numbers by name (Python floats / ints / bools / strings / lists)."""

    rule: str
    text: str
    values: dict[str, Any] = field(default_factory=dict)


@dataclass
class Trace:
    """The steps of one cell's derivation, in the order they were taken."""

    steps: list[Step] = field(default_factory=list)

    def add(self, rule: str, text: str, **values: Any) -> None:
        self.steps.append(Step(rule, text, values))


def add(trace: Optional[Trace], rule: str, text: str, **values: Any) -> None:
    """`trace.add(...)` when a trace is being kept; nothing otherwise."""
    if trace is not None:
        trace.add(rule, text, **values)
