"""`qcalc diff`: two encodings files compared tensor by tensor and channel by channel."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from qcalc.commands.options import ReadVersion, user_errors

HELP = """Compare two encodings files (any versions) tensor by tensor and channel by
channel: exit 0
when they agree within tolerance, 1 when they do not, 2 when a file cannot be read.

Examples:

  qcalc encode model.safetensors -o e.json && qcalc diff shipped.json e.json

  qcalc diff a.encodings b.encodings --rtol 1e-6 --format json
"""


def diff(
    a: Annotated[
        Path, typer.Argument(help="First encodings file.", metavar="A", show_default=False)
    ],
    b: Annotated[
        Path, typer.Argument(help="Second encodings file.", metavar="B", show_default=False)
    ],
    rtol: Annotated[
        float, typer.Option("--rtol", min=0.0, help="Relative tolerance: |a-b| <= atol + rtol*|b|.")
    ] = 0.0,
    atol: Annotated[float, typer.Option("--atol", min=0.0, help="Absolute tolerance.")] = 0.0,
    output_format: Annotated[
        Literal["table", "json"],
        typer.Option("--format", "-f", help="Output format on stdout."),
    ] = "table",
    encoding_version: ReadVersion = None,
) -> None:
    from qcalc.commands.render.diff import render_diff
    from qcalc.io import formats

    with user_errors():
        result = formats.diff(
            formats.read(a, encoding_version),
            formats.read(b, encoding_version),
            rtol=rtol,
            atol=atol,
        )
        render_diff(result, str(a), str(b), output_format, sys.stdout)
        sys.stdout.flush()
    raise typer.Exit(0 if result.equal else 1)
