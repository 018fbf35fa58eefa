"""A derivation written down as it is computed: `Trace` collects the named steps that
`qcalc explain` prints (each rule's name, a sentence with the real numbers, the numbers)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np


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


def one(x: Any) -> Any:
    """The single value of a one-cell array (or a scalar) as a plain Python number, exactly:
    a float for floating types (a float32 is held exactly by a float), an int for integers.
    Traced functions are called with one cell's values."""
    array = np.asarray(x)
    if array.size != 1:
        raise ValueError(f"a trace records one cell, got {array.size} values")
    item = array.reshape(-1)[0]
    if array.dtype.kind in "iub":
        return bool(item) if array.dtype.kind == "b" else int(item)
    return float(item)


def fmt(x: Any) -> str:
    """A number as the steps print it: the shortest text that reads back to the same value
    in its own dtype (float32 -> '0.013148538', float64 -> repr); integral floats without
    '.0' (offsets, levels: '-161'), except -0.0."""
    array = np.asarray(x)
    if array.dtype.kind in "iu":
        return str(int(array.reshape(-1)[0]))
    item = array.reshape(-1)[0]
    value = float(item)
    if math.isfinite(value) and value == int(value) and abs(value) < 2**53:
        if value == 0 and math.copysign(1, value) < 0:
            return "-0"
        return str(int(value))
    if array.dtype == np.float64:
        return repr(value)
    return str(item)  # numpy's shortest text for the item's own dtype (float32, float16, ...)


def operand(x: Any) -> str:
    """A number as the right operand of a minus sign: negative ones in parentheses."""
    text = fmt(x)
    return f"({text})" if text.startswith("-") else text
