"""`qcalc check`: the CI gate: every tensor's quantization error held against thresholds."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from qcalc.commands.options import (
    COUNTS_NONFINITE,
    Inputs,
    optional,
    report_skips,
    user_errors,
    warn,
    with_spec,
)
from qcalc.core.spec import Spec

HELP = """\
Check how well every tensor quantizes, for CI: exit 0 when all pass, 1 when any fails, \
2 on bad input.

Encodings are computed with the quantization flags (and --recipe), or taken from \
--encodings, matched by tensor name (a tensor in one and not the other fails). A tensor \
fails a threshold it does not meet, and fails when it holds NaN or inf values (counted; \
--allow-nonfinite only warns). The table lists the failures (--all: every tensor); \
json / jsonl give one record per tensor with name, passed, failures and the metrics.

Examples:

  qcalc check sample_tensors/model_bf16.safetensors --per-channel --symmetric --min-sqnr 30

  qcalc check model.safetensors --encodings shipped.encodings --min-sqnr 25 || exit 1

  qcalc check model.safetensors --recipe recipes/w8a8.toml --max-clip 0.001 -f jsonl
"""


@with_spec(*COUNTS_NONFINITE)
def check(
    inputs: Inputs,
    spec: Spec,
    picked: dict,
    encodings: optional(
        Path, "--encodings", help="Check these shipped AIMET encodings instead of computing them."
    ) = None,
    min_sqnr: optional(float, "--min-sqnr", help="Fail below this SQNR (dB).") = None,
    max_clip: optional(
        float,
        "--max-clip",
        help="Fail above this fraction of clipped elements (the clamp moved them).",
    ) = None,  # fmt: skip
    max_abs_error: optional(
        float, "--max-abs-error", help="Fail above this absolute error."
    ) = None,
    allow_nonfinite: Annotated[
        bool, typer.Option("--allow-nonfinite", help="NaN / inf values warn instead of failing.")
    ] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="List every tensor in the table, not only failures.")
    ] = False,
    output_format: Annotated[
        Literal["table", "json", "jsonl"],
        typer.Option("--format", "-f", help="Output format on stdout."),
    ] = "table",
) -> None:
    from qcalc.commands.progress import TerminalProgress
    from qcalc.commands.render.check import render_check
    from qcalc.ops.check import Thresholds
    from qcalc.ops.check import check as run_check

    with user_errors():
        thresholds = Thresholds(min_sqnr, max_clip, max_abs_error, allow_nonfinite)
        with TerminalProgress() as progress:
            report = run_check(
                inputs, spec, thresholds, **picked, encodings=encodings, progress=progress
            )
        report_skips(report)
        for result in report.results:
            for warning in result.warnings:
                warn(f"tensor '{result.name}': {warning}")
        render_check(report, thresholds, output_format, sys.stdout, show_all)
        sys.stdout.flush()
    raise typer.Exit(0 if report.passed else 1)
