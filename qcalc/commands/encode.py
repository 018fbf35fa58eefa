"""`qcalc encode`: compute encodings and print them or write an AIMET encodings file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from qcalc.commands.options import (
    Format,
    named_files,
    note,
    optional,
    refuse_overwriting_inputs,
    report_skips,
    user_errors,
    with_spec,
)
from qcalc.core.choices import Version
from qcalc.core.spec import Spec
from qcalc.errors import SpecError

# the selection options a --from-stats run takes from its parts instead
STATS_REFUSED = ("activations", "recipe", "include", "exclude", "activation_bitwidth", "dask")

HELP = """\
Compute encodings (min, max, scale, offset) for every floating-point tensor in INPUT... .

Tensors with the same name in several inputs (or the .npy files of one subdirectory) are \
calibration batches of one tensor; their statistics merge in command-line order.

An ONNX model as INPUT gives its parameters, each per channel on the axis its op implies; with \
--activations dumps keyed by its tensor names and an aimet-default recipe, -o writes the whole \
file AIMET's QuantSim export writes (int32 biases, derived encodings).

Examples:

  qcalc encode sample_tensors/seed.npy

  qcalc encode sample_tensors/model_bf16.safetensors --per-channel -b 4

  qcalc encode sample_tensors/activations --analyzer percentile --format jsonl

  qcalc encode sample_tensors/model_f32.safetensors --symmetric -b 4 --include fc.weight \
--block-size 64 --lpbq

  qcalc encode sample_tensors/model_bf16.safetensors --recipe recipes/w8a8.toml --metrics

  qcalc encode sample_tensors/convnet/model.onnx --activations sample_tensors/convnet/calib \
--recipe recipes/aimet-default-per-channel.toml

With --from-stats PART... (no INPUT), the encodings are finished from the statistics files \
`qcalc stats --part K/N` wrote, byte for byte those of one run (see `qcalc stats --help`).
"""


@with_spec()
def encode(
    inputs: Annotated[
        Optional[List[Path]],
        typer.Argument(
            help="Files (.npy, .npz, .safetensors, *.safetensors.index.json, .onnx) or "
            "directories (none with --from-stats).",
            metavar="[INPUT]...",
            show_default=False,
        ),
    ] = None,
    *,
    spec: Spec,
    picked: dict,
    output_format: optional(
        Format,
        "--format",
        "-f",
        help="Output format on stdout. Default: table, or nothing when -o writes a file.",
    ) = None,  # fmt: skip
    output: optional(
        Path, "--output", "-o", help="Write an AIMET encodings JSON file here."
    ) = None,
    encoding_version: Annotated[
        Version,
        typer.Option("--encoding-version", help="Version of the encodings file written by -o."),
    ] = "1.0.0",
    from_stats: Annotated[
        Optional[List[Path]],
        typer.Option(
            "--from-stats",
            help="Finish the encodings from the stats files of `qcalc stats` (every part of "
            "one run, any order; it takes every path up to the next option) instead of reading "
            "INPUTs; the parts carry their flags.",
            show_default=False,
        ),
    ] = None,
    metrics: Annotated[
        bool,
        typer.Option(
            "--metrics",
            help="Add quantization error columns: SQNR (dB), MSE, max abs error, clipped and "
            "grid-used fractions, worst channel / block. Reads the data once more.",
        ),
    ] = False,
) -> None:
    from qcalc.commands.progress import TerminalProgress
    from qcalc.commands.render.encodings import render_encodings
    from qcalc.ops.encode import compute_encodings

    with user_errors():
        if bool(inputs) == bool(from_stats):
            raise SpecError("give INPUT... or --from-stats PART..., one of them")
        if from_stats and (spec != Spec() or metrics or any(picked[k] for k in STATS_REFUSED)):
            raise SpecError(
                "--from-stats finishes the run its parts describe: no INPUT flags, "
                "--activations, --recipe, --include / --exclude, --metrics or --dask with it"
            )
        if output is not None:
            if spec.convention != "aimet":
                raise SpecError(
                    f"-o writes AIMET's encodings; --convention {spec.convention} prints its "
                    "records (--format json)"
                )
            given = named_files(picked, *(inputs or ()), *(from_stats or ()))
            refuse_overwriting_inputs(output, given)
        with TerminalProgress() as progress:
            if from_stats:
                from qcalc.ops.stats import encode_from_stats

                result = encode_from_stats(from_stats, progress=progress, jobs=picked["jobs"])
            else:
                result = compute_encodings(
                    inputs, spec, **picked, metrics=metrics, progress=progress
                )
        if output is not None:  # written before the notes: an error is the only line
            from qcalc.io import formats

            refuse_overwriting_inputs(output, [Path(f) for f in result.files])
            data = result.encodings_file(encoding_version)
            formats.write(output, data, encoding_version)
        report_skips(result)
        if output is not None:
            note(
                f"wrote {len(data.params)} parameter and {len(data.activations)} "
                f"activation encodings to {output} (version {encoding_version})"
            )
        if output_format is not None or output is None:
            render_encodings(
                [*result.encodings, *result.activations], output_format or "table", sys.stdout
            )
        sys.stdout.flush()  # a closed pipe surfaces here, inside user_errors
