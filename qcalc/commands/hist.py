"""`qcalc hist`: one tensor's value distribution drawn with its grid and its error."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from qcalc.commands.options import (
    COUNTS_NONFINITE,
    Inputs,
    user_errors,
    with_spec,
)
from qcalc.core.spec import Spec

HELP = """\
Draw one tensor's value distribution (log-scaled counts) with the encoding's [min, max], \
its zero point and the clipped tails marked, and its quantization error (SQNR, MSE, max abs \
error, clipped and grid-used fractions).

The encoding is the one `encode` computes with the same flags (NaN / inf values are counted \
and left out, as in `check`). With --channel K, the slice K along --axis is drawn with its \
channel's grid and metrics; without it, per-channel and per-block grids are drawn as the span \
of all their cells.

Examples:

  qcalc hist sample_tensors/model_bf16.safetensors --tensor fc.weight

  qcalc hist model.safetensors -t fc.weight --per-channel --channel 3

  qcalc hist model.safetensors -t fc.weight --analyzer percentile -b 4
"""


@with_spec(*COUNTS_NONFINITE, select=("activations", "activation_bitwidth", "recipe", "jobs"))
def hist(
    inputs: Inputs,
    spec: Spec,
    picked: dict,
    tensor: Annotated[
        str,
        typer.Option("--tensor", "-t", help="The tensor to draw (exact name).", show_default=False),
    ],
    channel: Annotated[
        Optional[int],
        typer.Option(
            "--channel",
            help="Draw only this channel: the slice K along --axis (negative counts from the end).",
            show_default=False,
            metavar="K",
        ),
    ] = None,
) -> None:
    from qcalc.commands.progress import TerminalProgress
    from qcalc.commands.render.hist import print_view
    from qcalc.commands.render.text import table_width
    from qcalc.ops.hist import hist as build_hist

    with user_errors():
        with TerminalProgress() as progress:
            view = build_hist(
                inputs, spec, tensor, channel=channel, **picked,
                width=table_width(sys.stdout), progress=progress,
            )  # fmt: skip
        print_view(view, sys.stdout)
        sys.stdout.flush()  # a closed pipe surfaces here, inside user_errors
