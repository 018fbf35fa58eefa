"""`qcalc lint`: what a converter will do with an encodings file, before anyone runs one."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from qcalc.commands.options import (
    EncodingsFile,
    note,
    optional,
    refuse_overwriting_inputs,
    user_errors,
)
from qcalc.ops.lint.rules import RULES


def _rule_lines() -> str:
    return "\b\n" + "\n".join(
        f"  {rule.id} ({rule.severity}{', model' if rule.model else ''}"
        f"{', fixable' if rule.fixable else ''})"
        for rule in RULES.values()
    )


HELP = f"""Check an AIMET encodings file (any version, AIMET's or hand-edited) for what the QNN / \
QAIRT converters will reject, rewrite or silently ignore; with --model, against the ONNX \
graph it is for. Exit 0: no error (warnings allowed); 1: at least one error; 2: a file \
cannot be read. The README's Lint section explains every rule and its source.

--fix -o FIXED writes a corrected copy (data-movement copies, missing int32 biases, \
symmetric offsets, names not in the graph dropped) and says what still needs a person; the \
exit code is then that of the fixed file.

Examples:

  qcalc lint model.encodings --model model.onnx

  qcalc lint model.encodings --target qnn --format jsonl | jq -r .rule

  qcalc lint model.encodings --model model.onnx --fix -o fixed.encodings

Rules (severity; model: needs --model; fixable: --fix repairs it):

{_rule_lines()}
"""


def lint(
    encodings: EncodingsFile,
    model: optional(Path, "--model", help="The ONNX model the file is for.") = None,
    target: optional(
        Literal["qnn", "qairt"],
        "--target",
        help="The converter: qnn (qnn-onnx-converter, 0.6.1 / 1.0.0) or qairt "
        "(qairt-converter). Default: the one the file's version is for.",
    ) = None,
    output_format: optional(
        Literal["table", "json", "jsonl"],
        "--format",
        "-f",
        help="Output format on stdout. Default: table, or nothing when --fix writes a file.",
    ) = None,
    fix: Annotated[
        bool, typer.Option("--fix", help="Write a corrected copy to -o (needs -o).")
    ] = False,
    output: optional(Path, "--output", "-o", help="Where --fix writes.") = None,
) -> None:
    from qcalc.commands.render.lint import render_findings
    from qcalc.errors import SpecError
    from qcalc.ops.lint import run as lint_ops

    with user_errors():
        if fix != (output is not None):
            raise SpecError("--fix and -o go together: --fix -o FIXED.encodings")
        if not fix:
            report = lint_ops.lint(encodings, model, target)
            render_findings(report, output_format or "table", sys.stdout)
            sys.stdout.flush()
            raise typer.Exit(report.exit_code)
        from qcalc.io import formats

        refuse_overwriting_inputs(output, [encodings, *([model] if model else [])])
        report, fixed = lint_ops.lint_and_fix(encodings, model, target)
        if output_format is not None:
            render_findings(report, output_format, sys.stdout)
        formats.write(output, fixed.file, report.version)
        for change in fixed.changes:
            note(f"fixed: {change}")
        left = [f for f in fixed.remaining if f.severity == "error"]
        changes = len(fixed.changes)
        note(
            f"wrote {output} ({changes} change{'s' if changes != 1 else ''}); "
            f"{len(left)} error{'s' if len(left) != 1 else ''} still need a person"
        )
        sys.stdout.flush()
    raise typer.Exit(1 if left else 0)
