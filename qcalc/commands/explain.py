"""`qcalc explain`: how one tensor's (channel's, block's) encoding is derived, step by step."""

from __future__ import annotations

import sys
from typing import Annotated, Literal, Optional

import typer

from qcalc.commands.options import (
    ONE_TENSOR,
    Inputs,
    channel_option,
    tensor_option,
    user_errors,
    with_spec,
)
from qcalc.core.spec import Spec

HELP = """\
Explain one encoding: the derivation of a tensor's scale, offset, min and max as `encode` \
computes them with the same flags, step by step, each with its rule's name, the formula \
and the real numbers (observed range, zero pulled in, the minimum-scale widening, the \
symmetric delta and the side that set it, scale, offset and its rounding, the grid's min / \
max; for percentile, sqnr and tf-enhanced also the histogram, the percentile positions or \
the winning candidate and its noise). Under --convention, the toolchain's own steps: \
its scale and zero point, how it stores them and how its quantizer rounds.

A per-channel grid needs --channel K, a per-block or LPBQ grid --channel K and --block J \
(J along --block-axis): each channel or block has its own derivation, and none is picked \
for you. The result is checked against `encode`'s, bit for bit. --format json gives the \
steps as data ({"rule", "text", "values"}) with the final encoding.

Examples:

  qcalc explain sample_tensors/seed.npy --tensor seed

  qcalc explain sample_tensors/seed.npy -t seed --symmetric --unsigned --symmetric-offset zero

  qcalc explain model.safetensors -t fc.weight --per-channel --channel 3 --analyzer sqnr

  qcalc explain model.safetensors -t fc.weight --convention llama.cpp -b 4 --symmetric \
--block-size 32 --channel 0 --block 5

  qcalc explain model.safetensors -t fc.weight --symmetric -b 4 --block-size 64 --lpbq \
--channel 0 --block 2 --format json
"""

ExplainFormat = Literal["text", "json"]


@with_spec(select=ONE_TENSOR)
def explain(
    inputs: Inputs,
    spec: Spec,
    picked: dict,
    tensor: tensor_option("explain"),
    channel: channel_option(
        "The channel to explain: index K along --axis (negative counts from the end); "
        "required for per-channel and per-block grids."
    ) = None,
    block: Annotated[
        Optional[int],
        typer.Option(
            "--block",
            help="The block of --channel to explain: index J along --block-axis (negative "
            "counts from the end); required for per-block and LPBQ grids.",
            show_default=False,
            metavar="J",
        ),
    ] = None,
    output_format: Annotated[
        ExplainFormat, typer.Option("--format", "-f", help="Output format on stdout.")
    ] = "text",
) -> None:
    from qcalc.commands.progress import TerminalProgress
    from qcalc.commands.render.explain import print_explanation
    from qcalc.commands.render.text import table_width
    from qcalc.ops.explain import explain as build_explanation

    with user_errors():
        with TerminalProgress() as progress:
            found = build_explanation(
                inputs, spec, tensor, channel=channel, block=block, **picked,
                progress=progress,
            )  # fmt: skip
        print_explanation(found, output_format, sys.stdout, table_width(sys.stdout))
        sys.stdout.flush()  # a closed pipe surfaces here, inside user_errors
