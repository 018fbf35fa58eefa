"""The `qcalc` command: parse flags, call the library, render. Errors become one line + exit code."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Annotated, Iterator, List, Literal, Optional

# qcalc does no linear algebra: without this, importing numpy starts an OpenBLAS thread pool
# per core, which costs more CPU than the whole run on small inputs. Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import typer  # noqa: E402

from qcalc import __version__  # noqa: E402
from qcalc.errors import QcalcError  # noqa: E402

HELP = """\
Quantization encoding calculator: AIMET-exact min / max / scale / offset for tensors in
.npy, .npz and .safetensors files (single files, sharded checkpoints, directories).

Examples:

  qcalc encode sample_tensors/seed.npy

  qcalc encode model.safetensors --per-channel --symmetric -b 4 --format json

  qcalc encode activations/ --nonfinite ignore --format csv > act.csv
"""

ENCODE_HELP = """\
Compute min-max encodings for every floating-point tensor in INPUT... .

Tensors with the same name in several inputs (or the .npy files of one subdirectory) are \
calibration batches of one tensor; their ranges merge in command-line order.

Examples:

  qcalc encode sample_tensors/seed.npy

  qcalc encode sample_tensors/model_bf16.safetensors --per-channel --symmetric -b 4

  qcalc encode sample_tensors/activations --format jsonl | jq .scale
"""

app = typer.Typer(
    name="qcalc",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"qcalc {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Quantization encoding calculator."""


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn library errors into one line on stderr and their exit code; no traceback."""
    try:
        yield
    except QcalcError as error:
        typer.echo(f"qcalc: error: {error}", err=True)
        raise typer.Exit(error.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("qcalc: interrupted", err=True)
        raise typer.Exit(130) from None
    except BrokenPipeError:  # `qcalc ... | head`: the reader left; not an error
        with contextlib.suppress(OSError, ValueError):  # the final flush must not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None


Inputs = Annotated[
    List[Path],
    typer.Argument(
        help="Files (.npy, .npz, .safetensors, *.safetensors.index.json) or directories.",
        show_default=False,
    ),
]
Bitwidth = Annotated[int, typer.Option("--bitwidth", "-b", help="Integer grid bits, 2..32.")]
Symmetric = Annotated[
    bool, typer.Option("--symmetric/--asymmetric", help="Symmetric grid (offset fixed).")
]
Signed = Annotated[
    Optional[bool],
    typer.Option(
        "--signed/--unsigned",
        help="Signed integer grid. Default: signed when symmetric, unsigned when asymmetric.",
        show_default=False,
    ),
]
Strict = Annotated[
    bool,
    typer.Option("--strict-symmetric", help="Symmetric signed grid without its lowest level."),
]
SymOffset = Annotated[
    Literal["centered", "zero"],
    typer.Option(
        "--symmetric-offset",
        help="Offset of symmetric unsigned grids: centered (AIMET 2.x) or zero (pre-2025 AIMET).",
    ),
]
PerChannel = Annotated[
    bool,
    typer.Option("--per-channel", help="One encoding per channel for tensors of rank >= 2."),
]
Axis = Annotated[int, typer.Option("--axis", help="Channel axis (negative counts from the end).")]
ComputeDtype = Annotated[
    Literal["float32", "input"],
    typer.Option(
        "--compute-dtype",
        help="Range arithmetic in float32, or in the tensor's dtype (AIMET on a bf16/f16 model).",
    ),
]
NonFinite = Annotated[
    Literal["error", "ignore", "keep"],
    typer.Option(
        "--nonfinite",
        help="NaN / inf values: fail, leave them out, or keep them as AIMET does.",
    ),
]
Include = Annotated[
    Optional[List[str]],
    typer.Option("--include", help="Only tensors whose name matches this glob (repeatable)."),
]
Exclude = Annotated[
    Optional[List[str]],
    typer.Option("--exclude", help="Skip tensors whose name matches this glob (repeatable)."),
]
OutputFormat = Annotated[
    Literal["table", "json", "jsonl", "csv"],
    typer.Option("--format", "-f", help="Output format on stdout."),
]


@app.command(help=ENCODE_HELP, no_args_is_help=True)
def encode(
    inputs: Inputs,
    bitwidth: Bitwidth = 8,
    symmetric: Symmetric = False,
    signed: Signed = None,
    strict_symmetric: Strict = False,
    symmetric_offset: SymOffset = "centered",
    per_channel: PerChannel = False,
    axis: Axis = 0,
    compute_dtype: ComputeDtype = "float32",
    nonfinite: NonFinite = "error",
    include: Include = None,
    exclude: Exclude = None,
    output_format: OutputFormat = "table",
) -> None:
    from qcalc.api import compute_encodings
    from qcalc.progress import TerminalProgress
    from qcalc.report import render
    from qcalc.spec import Spec

    with user_errors():
        spec = Spec(
            bitwidth=bitwidth,
            symmetric=symmetric,
            signed=signed,
            strict_symmetric=strict_symmetric,
            symmetric_offset=symmetric_offset,
            per_channel=per_channel,
            axis=axis,
            compute_dtype=compute_dtype,
            nonfinite=nonfinite,
        )
        progress = TerminalProgress()
        try:
            result = compute_encodings(
                inputs, spec, include=include or (), exclude=exclude or (), progress=progress
            )
        finally:
            progress.close()
        for skipped in result.skipped:
            typer.echo(
                f"qcalc: note: {skipped.source}: tensor '{skipped.name}': {skipped.reason}",
                err=True,
            )
        render(result.encodings, output_format, sys.stdout)
        sys.stdout.flush()  # a closed pipe surfaces here, inside user_errors


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except BrokenPipeError:  # `qcalc ... | head`: the reader left; not an error
        sys.stderr.close()
        sys.exit(0)
