"""`qcalc ls`: every tensor in the inputs with its dtype, shape, size, file and statistics."""

from __future__ import annotations

import sys

from qcalc.commands.options import (
    Dask,
    Exclude,
    FormatOption,
    Include,
    Inputs,
    Jobs,
    checked_jobs,
    user_errors,
)

HELP = """\
List every tensor with its dtype, shape, size, file and statistics: elements, bytes, the \
file holding it (the shard, for a sharded checkpoint), min / max / mean / std over the finite \
values, NaN and inf counts. Integer and bool tensors (which encode skips) are listed too. \
Reads the data once. For an ONNX model: its parameters, each with the op that uses it, its \
role there and its channel axis (column "use").

Examples:

  qcalc ls sample_tensors/model_bf16.safetensors

  qcalc ls model.safetensors.index.json --include '*.mlp.*' --format csv

  qcalc ls sample_tensors/activations -f jsonl | jq -c 'select(.nan > 0)'

  qcalc ls sample_tensors/convnet/model.onnx
"""


def ls(
    inputs: Inputs,
    include: Include = None,
    exclude: Exclude = None,
    output_format: FormatOption = "table",
    jobs: Jobs = None,
    dask: Dask = None,
) -> None:
    from qcalc.commands.progress import TerminalProgress
    from qcalc.commands.render.inventory import render_inventory
    from qcalc.ops.inventory import inventory

    with user_errors():
        with TerminalProgress() as progress:
            infos = inventory(
                inputs, include=include or (), exclude=exclude or (), progress=progress,
                jobs=checked_jobs(jobs), dask=dask,
            )  # fmt: skip
        render_inventory(infos, output_format, sys.stdout)
        sys.stdout.flush()  # a closed pipe surfaces here, inside user_errors
