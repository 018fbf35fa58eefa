"""`qcalc compare`: one tensor under every toolchain's convention, side by side."""

from __future__ import annotations

import sys

from qcalc.commands.options import (
    ONE_TENSOR,
    QUANTIZATION,
    FormatOption,
    Inputs,
    channel_option,
    tensor_option,
    user_errors,
    with_spec,
)
from qcalc.core.spec import Spec

HELP = """\
Encode one tensor (or one channel) under every toolchain's convention — AIMET, torch.ao, \
ONNX Runtime, compressed-tensors, quanto, ModelOpt, llama.cpp — with the same flags, and \
show each one's scale and zero point (as that toolchain stores them), integer grid, SQNR, \
max abs error and clipped fraction side by side. A convention that does not offer the \
flags says why instead.

Every row is what `qcalc encode --convention C --metrics` computes with these flags; \
--signed / --unsigned left out means each toolchain's own default.

Examples:

  qcalc compare sample_tensors/seed.npy --tensor seed --symmetric

  qcalc compare model.safetensors -t fc.weight --per-channel --channel 3 -b 4

  qcalc compare model.safetensors -t fc.weight -b 4 --symmetric --block-size 32 -f json
"""


@with_spec(
    *(name for name in QUANTIZATION if name != "convention"),
    select=ONE_TENSOR,
)
def compare(
    inputs: Inputs,
    spec: Spec,
    picked: dict,
    tensor: tensor_option("compare"),
    channel: channel_option(
        "Compare only this channel: the slice K along --axis (negative counts from the end)."
    ) = None,
    output_format: FormatOption = "table",
) -> None:
    from qcalc.commands.progress import TerminalProgress
    from qcalc.commands.render.compare import render_comparison
    from qcalc.ops.compare import compare as build_comparison

    with user_errors():
        with TerminalProgress() as progress:
            comparison = build_comparison(
                inputs, spec, tensor, channel=channel, **picked, progress=progress
            )
        render_comparison(comparison, output_format, sys.stdout)
        sys.stdout.flush()  # a closed pipe surfaces here, inside user_errors
