"""`qcalc explain`'s output: the derivation as numbered sentences wrapped to the width, or as
JSON data (`Explanation.record()`, NaN / ±inf spelled as strings, offsets as integers)::

    seed, f32 4×4, sample_tensors/seed.npy
    f32, 8-bit asymmetric unsigned grid [0, 255], min-max
     1. integer grid: An 8-bit unsigned grid has the integer levels qmin = 0 to qmax =
        255: n = qmax - qmin = 255 steps.
     ...
    encoding: scale 0.013148538, offset -161, min -2.1169145, max 1.2359625

Numbers in the sentences are the shortest texts that read back to the computed values in
their dtype (float32 mostly); the JSON `values` hold them exactly.
"""

from __future__ import annotations

import json
import textwrap
from typing import Any, TextIO

import numpy as np

from qcalc.commands.render.encodings import exact_offset, table_title
from qcalc.commands.render.text import exact_float
from qcalc.core.dtypes import short_dtype
from qcalc.core.trace import fmt
from qcalc.errors import printable
from qcalc.ops.explain import Explanation


def title(found: Explanation) -> str:
    """ "w, f32 16×8, model.npz" and the cell: ", channel 3 of 16 along axis 0, block 1"."""
    shape = "×".join(map(str, found.shape)) or "scalar"
    text = f"{found.tensor}, {short_dtype(found.dtype)} {shape}, {found.source}"
    if found.cell is not None:
        cell = found.cell
        count = found.shape[cell["axis"]]
        text += f", channel {cell['channel']} of {count} along axis {cell['axis']}"
        if "block" in cell:
            text += f", block {cell['block']} along axis {cell['block_axis']}"
    return printable(text)


def lines(found: Explanation, width: int = 80) -> list[str]:
    """The text view, no line wider than `width` (a word longer than that stays whole)."""
    out = textwrap.wrap(title(found), width, break_on_hyphens=False, break_long_words=False)
    out += textwrap.wrap(
        table_title([found.encoding]), width, break_on_hyphens=False, break_long_words=False
    )
    digits = len(str(len(found.steps)))
    for number, step in enumerate(found.steps, 1):
        head = f"{number:>{digits}}. "
        out += textwrap.wrap(
            f"{step.rule}: {step.text}",
            width,
            initial_indent=head,
            subsequent_indent=" " * len(head),
            break_on_hyphens=False,
            break_long_words=False,
        )
    cell = found.cell_encoding
    parts = [f"{key} {fmt(_float32(cell[key]))}" for key in ("scale", "offset", "min", "max")]
    if "per_channel_scale" in cell:
        parts += [
            f"channel scale {fmt(_float32(cell['per_channel_scale']))}",
            f"multiplier {fmt(_float32(cell['per_block_int_scale']))}",
        ]
    out += textwrap.wrap(
        "encoding: " + ", ".join(parts), width, subsequent_indent="  ", break_on_hyphens=False
    )
    return out


def _float32(value: float) -> Any:
    return np.float32(value)


def record(found: Explanation) -> dict[str, Any]:
    """`found.record()` as strict JSON data."""
    data = _strict(found.record())
    encoding = dict(data["encoding"])
    encoding["offset"] = exact_offset(found.cell_encoding["offset"])
    data["encoding"] = encoding
    return data


def _strict(value: Any) -> Any:
    if isinstance(value, float):
        return exact_float(value)
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(item) for item in value]
    return value


def print_explanation(found: Explanation, fmt_name: str, out: TextIO, width: int = 80) -> None:
    """Write `found` to `out`: "text" (numbered steps) or "json" (one object)."""
    if fmt_name == "json":
        out.write(json.dumps(record(found), indent=2, allow_nan=False, ensure_ascii=False) + "\n")
        return
    out.write("\n".join(lines(found, width)) + "\n")
