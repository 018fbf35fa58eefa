"""The `qcalc` command: parse flags, call the library, render; errors become one line + exit code.
"""

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

  qcalc encode model.safetensors --per-channel --symmetric -b 4 -f json

  qcalc encode activations/ --nonfinite ignore --format csv > act.csv

  qcalc encode model.safetensors --activations calib/ -o model.encodings

  qcalc encode model.safetensors --recipe recipes/w8a8.toml --metrics

  qcalc check model.safetensors --encodings model.encodings --min-sqnr 30

  qcalc ls model.safetensors.index.json

  qcalc diff shipped.encodings model.encodings
"""

ENCODE_HELP = """\
Compute encodings (min, max, scale, offset) for every floating-point tensor in INPUT... .

Tensors with the same name in several inputs (or the .npy files of one subdirectory) are \
calibration batches of one tensor; their statistics merge in command-line order.

Examples:

  qcalc encode sample_tensors/seed.npy

  qcalc encode sample_tensors/model_bf16.safetensors --per-channel -b 4

  qcalc encode sample_tensors/activations --analyzer percentile --format jsonl

  qcalc encode sample_tensors/model_f32.safetensors --symmetric -b 4 --include fc.weight \
--block-size 64 --lpbq

  qcalc encode sample_tensors/model_bf16.safetensors --recipe recipes/w8a8.toml --metrics
"""

app = typer.Typer(
    name="qcalc",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
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
        metavar="INPUT...",
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
    Optional[Literal["table", "json", "jsonl", "csv"]],
    typer.Option(
        "--format",
        "-f",
        help="Output format on stdout. Default: table, or nothing when -o writes a file.",
        show_default=False,
    ),
]
AnalyzerOption = Annotated[
    Literal["minmax", "percentile", "sqnr", "tf-enhanced"],
    typer.Option("--analyzer", help="Calibration method (AIMET's encoding analyzers)."),
]
Percentile = Annotated[
    float, typer.Option("--percentile", help="Percentile for --analyzer percentile, 50..100.")
]
NumBins = Annotated[
    Optional[int],
    typer.Option(
        "--num-bins",
        help="Histogram bins (default 2048; 512 for tf-enhanced).",
        show_default=False,
    ),
]
BlockSize = Annotated[
    Optional[int],
    typer.Option(
        "--block-size",
        help="Per-block encodings: B consecutive elements along --block-axis, per channel "
        "along --axis.",
        show_default=False,
    ),
]
BlockAxis = Annotated[int, typer.Option("--block-axis", help="Axis the blocks run along.")]
Lpbq = Annotated[
    bool,
    typer.Option(
        "--lpbq",
        help="Low-power block quantization: block scales as integer multiples of a "
        "per-channel scale (needs --block-size, --symmetric).",
    ),
]
DecompressedBitwidth = Annotated[
    int, typer.Option("--decompressed-bitwidth", help="LPBQ decompressed bitwidth.")
]
Activations = Annotated[
    Optional[List[Path]],
    typer.Option(
        "--activations",
        help="Calibration dumps (file or directory, repeatable) for activation_encodings.",
        show_default=False,
    ),
]
Output = Annotated[
    Optional[Path],
    typer.Option(
        "--output", "-o", help="Write an AIMET encodings JSON file here.", show_default=False
    ),
]
EncodingVersion = Annotated[
    Literal["0.6.1", "1.0.0", "2.0.0", "2.1.0"],
    typer.Option("--encoding-version", help="Version of the encodings file written by -o."),
]
ReadVersion = Annotated[
    Optional[Literal["0.6.1", "1.0.0", "2.0.0", "2.1.0"]],
    typer.Option(
        "--encoding-version",
        help="Read the file as this version instead of detecting it.",
        show_default=False,
    ),
]
RecipeOption = Annotated[
    Optional[Path],
    typer.Option(
        "--recipe",
        help="TOML rules that adjust the flags per tensor or skip tensors (see recipes/).",
        show_default=False,
    ),
]
MetricsOption = Annotated[
    bool,
    typer.Option(
        "--metrics",
        help="Add quantization error columns: SQNR (dB), MSE, max abs error, clipped and "
        "grid-used fractions, worst channel / block. Reads the data once more.",
    ),
]
EncodingsFile = Annotated[
    Path,
    typer.Argument(
        help="An AIMET encodings JSON file (0.6.1, 1.0.0, 2.0.0, 2.1.0).", metavar="ENCODINGS"
    ),
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
    output_format: OutputFormat = None,
    activations: Activations = None,
    output: Output = None,
    encoding_version: EncodingVersion = "1.0.0",
    analyzer: AnalyzerOption = "minmax",
    percentile: Percentile = 99.99,
    num_bins: NumBins = None,
    block_size: BlockSize = None,
    block_axis: BlockAxis = -1,
    lpbq: Lpbq = False,
    decompressed_bitwidth: DecompressedBitwidth = 8,
    recipe: RecipeOption = None,
    metrics: MetricsOption = False,
) -> None:
    from qcalc.api import compute_encodings
    from qcalc.progress import TerminalProgress
    from qcalc.report import render

    with user_errors():
        spec = _spec(locals())
        rules = _load_recipe(recipe)
        if output is not None:
            _refuse_overwriting_inputs(output, [*inputs, *(activations or [])])
        with TerminalProgress() as progress:
            result = compute_encodings(
                inputs,
                spec,
                activations=activations or (),
                include=include or (),
                exclude=exclude or (),
                recipe=rules,
                metrics=metrics,
                progress=progress,
            )
        _report_skips(result)
        if output is not None:
            from qcalc import formats

            _refuse_overwriting_inputs(output, [Path(f) for f in result.files])
            data = formats.EncodingFile(params=result.encodings, activations=result.activations)
            _write_encodings(output, data, encoding_version)
            _note(
                f"wrote {len(result.encodings)} parameter and {len(result.activations)} "
                f"activation encodings to {output} (version {encoding_version})"
            )
        if output_format is not None or output is None:
            render([*result.encodings, *result.activations], output_format or "table", sys.stdout)
        sys.stdout.flush()  # a closed pipe surfaces here, inside user_errors


CHECK_HELP = """\
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


@app.command(help=CHECK_HELP, no_args_is_help=True)
def check(
    inputs: Inputs,
    bitwidth: Bitwidth = 8,
    symmetric: Symmetric = False,
    signed: Signed = None,
    strict_symmetric: Strict = False,
    symmetric_offset: SymOffset = "centered",
    per_channel: PerChannel = False,
    axis: Axis = 0,
    compute_dtype: ComputeDtype = "float32",
    include: Include = None,
    exclude: Exclude = None,
    activations: Activations = None,
    analyzer: AnalyzerOption = "minmax",
    percentile: Percentile = 99.99,
    num_bins: NumBins = None,
    block_size: BlockSize = None,
    block_axis: BlockAxis = -1,
    lpbq: Lpbq = False,
    decompressed_bitwidth: DecompressedBitwidth = 8,
    recipe: RecipeOption = None,
    encodings: Annotated[
        Optional[Path],
        typer.Option(
            "--encodings",
            help="Check these shipped AIMET encodings instead of computing them.",
            show_default=False,
        ),
    ] = None,
    min_sqnr: Annotated[
        Optional[float],
        typer.Option("--min-sqnr", help="Fail below this SQNR (dB).", show_default=False),
    ] = None,
    max_clip: Annotated[
        Optional[float],
        typer.Option(
            "--max-clip",
            help="Fail above this fraction of clipped elements (the clamp moved them).",
            show_default=False,
        ),
    ] = None,
    max_abs_error: Annotated[
        Optional[float],
        typer.Option(
            "--max-abs-error", help="Fail above this absolute error.", show_default=False
        ),
    ] = None,
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
    from qcalc.check import Thresholds
    from qcalc.check import check as run_check
    from qcalc.check_report import render_check
    from qcalc.progress import TerminalProgress

    with user_errors():
        spec = _spec(locals())
        thresholds = Thresholds(min_sqnr, max_clip, max_abs_error, allow_nonfinite)
        rules = _load_recipe(recipe)
        with TerminalProgress() as progress:
            report = run_check(
                inputs,
                spec,
                thresholds,
                activations=activations or (),
                include=include or (),
                exclude=exclude or (),
                recipe=rules,
                encodings=encodings,
                progress=progress,
            )
        _report_skips(report)
        for result in report.results:
            for warning in result.warnings:
                _warn(f"tensor '{result.name}': {warning}")
        render_check(report, thresholds, output_format, sys.stdout, show_all)
        sys.stdout.flush()
    raise typer.Exit(0 if report.passed else 1)


LS_HELP = """\
List every tensor with its dtype, shape, size, file and statistics: elements, bytes, the \
file holding it (the shard, for a sharded checkpoint), min / max / mean / std over the finite \
values, NaN and inf counts. Integer and bool tensors (which encode skips) are listed too. \
Reads the data once.

Examples:

  qcalc ls sample_tensors/model_bf16.safetensors

  qcalc ls model.safetensors.index.json --include '*.mlp.*' --format csv

  qcalc ls sample_tensors/activations -f jsonl | jq -c 'select(.nan > 0)'
"""


@app.command(name="ls", help=LS_HELP, no_args_is_help=True)
def ls(
    inputs: Inputs,
    include: Include = None,
    exclude: Exclude = None,
    output_format: Annotated[
        Literal["table", "json", "jsonl", "csv"],
        typer.Option("--format", "-f", help="Output format on stdout."),
    ] = "table",
) -> None:
    from qcalc.inventory import inventory
    from qcalc.inventory_report import render_inventory
    from qcalc.progress import TerminalProgress

    with user_errors():
        with TerminalProgress() as progress:
            infos = inventory(
                inputs, include=include or (), exclude=exclude or (), progress=progress
            )
        render_inventory(infos, output_format, sys.stdout)
        sys.stdout.flush()  # a closed pipe surfaces here, inside user_errors


HIST_HELP = """\
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


@app.command(help=HIST_HELP, no_args_is_help=True)
def hist(
    inputs: Inputs,
    tensor: Annotated[
        str,
        typer.Option("--tensor", "-t", help="The tensor to draw (exact name).", show_default=False),
    ],
    channel: Annotated[
        Optional[int],
        typer.Option(
            "--channel",
            help="Draw only this channel: the slice K along --axis (negative counts from the "
            "end).",
            show_default=False,
            metavar="K",
        ),
    ] = None,
    bitwidth: Bitwidth = 8,
    symmetric: Symmetric = False,
    signed: Signed = None,
    strict_symmetric: Strict = False,
    symmetric_offset: SymOffset = "centered",
    per_channel: PerChannel = False,
    axis: Axis = 0,
    compute_dtype: ComputeDtype = "float32",
    activations: Activations = None,
    analyzer: AnalyzerOption = "minmax",
    percentile: Percentile = 99.99,
    num_bins: NumBins = None,
    block_size: BlockSize = None,
    block_axis: BlockAxis = -1,
    lpbq: Lpbq = False,
    decompressed_bitwidth: DecompressedBitwidth = 8,
    recipe: RecipeOption = None,
) -> None:
    from qcalc.hist_view import hist as build_hist
    from qcalc.hist_view import print_view
    from qcalc.progress import TerminalProgress
    from qcalc.report import _table_width

    with user_errors():
        spec = _spec(locals())
        rules = _load_recipe(recipe)
        with TerminalProgress() as progress:
            view = build_hist(
                inputs,
                spec,
                tensor,
                channel=channel,
                activations=activations or (),
                recipe=rules,
                width=_table_width(sys.stdout),
                progress=progress,
            )
        print_view(view, sys.stdout)
        sys.stdout.flush()  # a closed pipe surfaces here, inside user_errors


SHOW_HELP = """Print the encodings an AIMET encodings JSON file holds, like `encode` prints its own.

Examples:

  qcalc show model.encodings

  qcalc show model.encodings --format jsonl | jq -c '{name, scale}'
"""


@app.command(help=SHOW_HELP, no_args_is_help=True)
def show(
    encodings: EncodingsFile,
    output_format: Annotated[
        Literal["table", "json", "jsonl", "csv"],
        typer.Option("--format", "-f", help="Output format on stdout."),
    ] = "table",
    encoding_version: ReadVersion = None,
) -> None:
    from qcalc import formats
    from qcalc.report import render

    with user_errors():
        data = formats.read(encodings, encoding_version)
        render(list(data.encodings), output_format, sys.stdout)
        sys.stdout.flush()


CONVERT_HELP = """Rewrite an encodings file in another version, losslessly; a field the target
version cannot
carry is an error and nothing is written.

Examples:

  qcalc convert model.encodings --to 2.0.0 -o model-v2.encodings
"""


@app.command(help=CONVERT_HELP, no_args_is_help=True)
def convert(
    encodings: EncodingsFile,
    to: Annotated[
        Literal["0.6.1", "1.0.0", "2.0.0", "2.1.0"],
        typer.Option("--to", help="Version to write.", show_default=False),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="File to write.", show_default=False)
    ],
    encoding_version: ReadVersion = None,
) -> None:
    from qcalc import formats

    with user_errors():
        _refuse_overwriting_inputs(output, [encodings])
        data = formats.read(encodings, encoding_version)
        _write_encodings(output, data, to)
        _note(f"wrote {len(data.encodings)} encodings to {output} (version {to})")


DIFF_HELP = """Compare two encodings files (any versions) tensor by tensor and channel by
channel: exit 0
when they agree within tolerance, 1 when they do not, 2 when a file cannot be read.

Examples:

  qcalc encode model.safetensors -o e.json && qcalc diff shipped.json e.json

  qcalc diff a.encodings b.encodings --rtol 1e-6 --format json
"""


@app.command(help=DIFF_HELP, no_args_is_help=True)
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
    from qcalc import formats
    from qcalc.report import render_diff

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


def _note(message: str) -> None:
    typer.echo(f"qcalc: note: {message}", err=True)


def _warn(message: str) -> None:
    typer.echo(f"qcalc: warning: {message}", err=True)


def _spec(flags: dict):
    """The Spec of a command's quantization flags, which are named as Spec's fields (pass the
    command's `locals()`; other arguments are ignored)."""
    import dataclasses

    from qcalc.spec import Spec

    names = {field.name for field in dataclasses.fields(Spec)}
    return Spec(**{name: value for name, value in flags.items() if name in names})


def _load_recipe(path: Optional[Path]):
    if path is None:
        return None
    from qcalc.recipe import Recipe

    return Recipe.load(path)


def _report_skips(result) -> None:
    """Notes for tensors not encoded, warnings for recipe rules that matched nothing."""
    for skipped in result.skipped:
        _note(f"{skipped.source}: tensor '{skipped.name}': {skipped.reason}")
    if result.recipe_skipped:
        count = len(result.recipe_skipped)
        _note(f"recipe skipped {count} tensor{'s' if count != 1 else ''}")
    for rule in result.unmatched_rules:
        _warn(f"recipe {rule.label} matched no tensor")


def _refuse_overwriting_inputs(output: Path, inputs: List[Path]) -> None:
    from qcalc.atomic import same_file
    from qcalc.errors import SpecError

    for path in inputs:
        if same_file(output, path):
            raise SpecError(f"{output}: is one of the inputs; refusing to overwrite it")


def _write_encodings(output: Path, data, version: str) -> None:
    from qcalc import formats
    from qcalc.errors import WriteError

    try:
        formats.write(output, data, version)
    except OSError as error:
        raise WriteError(f"{output}: cannot write: {error.strerror or error}") from None
    except formats.FormatError as error:
        raise formats.FormatError(f"{output}: {error}") from None


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except BrokenPipeError:  # `qcalc ... | head`: the reader left; not an error
        sys.stderr.close()
        sys.exit(0)
