"""`qcalc hist`: one tensor's value distribution drawn with its grid and its error."""

from __future__ import annotations

import sys

from qcalc.commands.options import (
    COUNTS_NONFINITE,
    ONE_TENSOR,
    Inputs,
    channel_option,
    tensor_option,
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


@with_spec(*COUNTS_NONFINITE, select=ONE_TENSOR)
def hist(
    inputs: Inputs,
    spec: Spec,
    picked: dict,
    tensor: tensor_option("draw"),
    channel: channel_option(
        "Draw only this channel: the slice K along --axis (negative counts from the end)."
    ) = None,
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
