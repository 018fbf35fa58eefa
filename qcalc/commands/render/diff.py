"""`qcalc diff` results: a table of what differs for people, one JSON object for scripts."""

from __future__ import annotations

import json
from typing import Any, TextIO

from qcalc.commands.render.text import cells_width, exact_float, num, print_table, table_width
from qcalc.errors import printable


def diff_record(result: Any, a: str, b: str) -> dict[str, Any]:
    """A DiffResult as a JSON-ready dict: verdict, tolerances, and every difference found."""
    return {
        "equal": result.equal,
        "a": a,
        "b": b,
        "rtol": result.rtol,
        "atol": result.atol,
        "only_in_a": list(result.only_in_a),
        "only_in_b": list(result.only_in_b),
        "settings": [
            {"tensor": c.tensor, "setting": c.setting, "a": c.a, "b": c.b} for c in result.settings
        ],
        "deltas": [
            {
                "tensor": d.tensor,
                "field": d.field,
                "worst_channel": d.channel,
                "a": exact_float(d.a),
                "b": exact_float(d.b),
                "abs_delta": exact_float(d.abs_delta),
                "channels": d.channels,
                "differing": d.differing,
                "beyond_tolerance": d.beyond,
            }
            for d in result.deltas
        ],
    }


def diff_rows(result: Any) -> list[list[str]]:
    """Table rows (tensor, differs in, A, B, |A - B|): every difference beyond tolerance."""
    rows = [[name, "presence", "present", "missing", ""] for name in result.only_in_a]
    rows += [[name, "presence", "missing", "present", ""] for name in result.only_in_b]
    rows += [[c.tensor, c.setting, str(c.a), str(c.b), ""] for c in result.settings]
    for d in result.deltas:
        if d.within_tolerance:
            continue
        where = f"{d.field} ch {d.channel}" if d.channels > 1 else d.field
        delta = num(d.abs_delta) + (f", {d.beyond}/{d.channels} ch" if d.channels > 1 else "")
        rows.append([d.tensor, where, f"{d.a:.9g}", f"{d.b:.9g}", delta])
    return rows


def render_diff(result: Any, a: str, b: str, fmt: str, out: TextIO) -> None:
    """Write a diff as a table of what differs (with a verdict line) or as one JSON object."""
    if fmt == "json":
        out.write(json.dumps(diff_record(result, a, b), allow_nan=False) + "\n")
        return
    tolerance = f"rtol {result.rtol:g}, atol {result.atol:g}"
    rows = diff_rows(result)
    if not rows:
        out.write(printable(f"equal within {tolerance}: {a} and {b}") + "\n")
        return
    headers = ("tensor", "differs in", "A", "B", "|A - B|")
    # Names are never shortened here: a diff that does not name the tensor is useless in CI.
    width = max(table_width(out), cells_width(headers, rows, range(len(headers))) - 2)
    out.write(f"A: {printable(a)}\nB: {printable(b)}\n")
    print_table(out, headers, rows, width, right=range(2, len(headers)))
    tensors = len({row[0] for row in rows})
    verb = "tensor differs" if tensors == 1 else "tensors differ"
    out.write(f"{tensors} {verb} beyond {tolerance}\n")
