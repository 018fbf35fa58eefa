"""What the commands share: option declarations (the quantization options once, as `Spec`
fields), the one place errors become a line on stderr and an exit code, and notes."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import os
import sys
import typing
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator, List, Literal, Optional

import typer

from qcalc.core.choices import Version
from qcalc.core.spec import Spec
from qcalc.errors import QcalcError, SpecError, printable

Format = Literal["table", "json", "jsonl", "csv"]
FormatOption = Annotated[Format, typer.Option("--format", "-f", help="Output format on stdout.")]

# The quantization options: one per Spec field, named as the field, with the field's type
# and default; here only their flags and help. A new Spec field needs one line here.
QUANTIZATION: dict[str, tuple[tuple[str, ...], str]] = {
    "bitwidth": (("--bitwidth", "-b"), "Integer grid bits, 2..32."),
    "symmetric": (("--symmetric/--asymmetric",), "Symmetric grid (offset fixed)."),
    "signed": (
        ("--signed/--unsigned",),
        "Signed integer grid. Default: signed when symmetric, unsigned when asymmetric.",
    ),
    "strict_symmetric": (
        ("--strict-symmetric",),
        "Symmetric signed grid without its lowest level.",
    ),
    "symmetric_offset": (
        ("--symmetric-offset",),
        "Offset of symmetric unsigned grids: centered (AIMET 2.x) or zero (pre-2025 AIMET).",
    ),
    "per_channel": (("--per-channel",), "One encoding per channel for tensors of rank >= 2."),
    "axis": (("--axis",), "Channel axis (negative counts from the end)."),
    "compute_dtype": (
        ("--compute-dtype",),
        "Range arithmetic in float32, or in the tensor's dtype (AIMET on a bf16/f16 model).",
    ),
    "nonfinite": (
        ("--nonfinite",),
        "NaN / inf values: fail, leave them out, or keep them as AIMET does.",
    ),
    "analyzer": (("--analyzer",), "Calibration method (AIMET's encoding analyzers)."),
    "percentile": (("--percentile",), "Percentile for --analyzer percentile, 50..100."),
    "num_bins": (("--num-bins",), "Histogram bins (default 2048; 512 for tf-enhanced)."),
    "block_size": (
        ("--block-size",),
        "Per-block encodings: B consecutive elements along --block-axis, per channel along --axis.",
    ),
    "block_axis": (("--block-axis",), "Axis the blocks run along."),
    "lpbq": (
        ("--lpbq",),
        "Low-power block quantization: block scales as integer multiples of a per-channel "
        "scale (needs --block-size, --symmetric).",
    ),
    "decompressed_bitwidth": (("--decompressed-bitwidth",), "LPBQ decompressed bitwidth."),
    "convention": (
        ("--convention",),
        "Whose rules make scale and zero point: AIMET's, or another toolchain's (min-max "
        "ranges; README: 'Other toolchains').",
    ),
}
# `check` and `hist` count NaN / inf instead of failing on them: no --nonfinite there.
COUNTS_NONFINITE = tuple(name for name in QUANTIZATION if name != "nonfinite")


def optional(kind: Any, *flags: str, help: str) -> Any:
    """An option that is None unless given (no default shown in the help)."""
    return Annotated[Optional[kind], typer.Option(*flags, help=help, show_default=False)]


Inputs = Annotated[
    List[Path],
    typer.Argument(
        help="Files (.npy, .npz, .safetensors, *.safetensors.index.json, .onnx) or directories.",
        metavar="INPUT...",
        show_default=False,
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
Activations = Annotated[
    Optional[List[Path]],
    typer.Option(
        "--activations",
        help="Calibration dumps (files or directories) for activation_encodings; after the "
        "INPUTs it takes every path up to the next option.",
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
ActivationBitwidth = Annotated[
    Optional[int],
    typer.Option(
        "--activation-bitwidth",
        help="Bitwidth of activations (default: the same as -b); recipe rules still win.",
        show_default=False,
    ),
]
Jobs = Annotated[
    Optional[int],
    typer.Option(
        "--jobs",
        "-j",
        help="Threads that read and reduce the data (default: every core this process may "
        "use). Results are the same for any number.",
        show_default=False,
    ),
]
Dask = Annotated[
    Optional[str],
    typer.Option(
        "--dask",
        help="Compute the tensors on the workers of this Dask scheduler (tcp://host:8786; "
        "needs pip install 'qcalc[dask]'); they read the inputs by the same paths.",
        metavar="ADDRESS",
        show_default=False,
    ),
]
# The options that pick a command's tensors and their per-tensor settings, and how many
# threads (or which cluster) do the work.
SELECTION: dict[str, Any] = {
    "include": Include,
    "exclude": Exclude,
    "activations": Activations,
    "activation_bitwidth": ActivationBitwidth,
    "recipe": RecipeOption,
    "jobs": Jobs,
    "dask": Dask,
}


# The selection options of the commands that look at one tensor (hist, explain, compare)
ONE_TENSOR = ("activations", "activation_bitwidth", "recipe", "jobs")


def tensor_option(verb: str) -> Any:
    """--tensor / -t: the one tensor a command looks at, by exact name."""
    return Annotated[
        str,
        typer.Option(
            "--tensor", "-t", help=f"The tensor to {verb} (exact name).", show_default=False
        ),
    ]


def channel_option(help: str) -> Any:
    """--channel K: one channel of that tensor (None: the whole tensor)."""
    return Annotated[
        Optional[int], typer.Option("--channel", help=help, show_default=False, metavar="K")
    ]


CONTEXT = "qcalc_context"  # the parameter through which typer passes a command its context


def with_spec(
    *names: str, select: tuple[str, ...] = tuple(SELECTION)
) -> Callable[[Callable], Callable]:
    """Give a command the quantization options `names` (all by default) and the selection
    options `select`. It receives them as `spec: Spec` and `picked`, the keyword arguments
    of `selection`. A name that is not a Spec field or a selection option fails here."""
    names = names or tuple(QUANTIZATION)
    fields = {field.name: field for field in dataclasses.fields(Spec)}
    types = typing.get_type_hints(Spec)
    unknown = [n for n in names if n not in QUANTIZATION] + [
        n for n in select if n not in SELECTION
    ]
    if unknown:
        raise TypeError(f"unknown options: {unknown}")

    def quantization(name: str) -> inspect.Parameter:
        flags, help_text = QUANTIZATION[name]
        default = fields[name].default
        option = typer.Option(*flags, help=help_text, show_default=default is not None)
        kind = inspect.Parameter.KEYWORD_ONLY
        return inspect.Parameter(
            name, kind, default=default, annotation=Annotated[types[name], option]
        )

    def decorate(command: Callable) -> Callable:
        hints = typing.get_type_hints(command, include_extras=True)
        own = [
            parameter.replace(annotation=hints[parameter.name])
            for parameter in inspect.signature(command).parameters.values()
            if parameter.name not in ("spec", "picked")
        ]
        kind = inspect.Parameter.KEYWORD_ONLY
        added = [inspect.Parameter(n, kind, default=None, annotation=SELECTION[n]) for n in select]
        added += [quantization(name) for name in names]

        @functools.wraps(command)
        def run(**arguments: Any) -> Any:
            context = arguments.pop(CONTEXT, None)
            flags = {name: arguments.pop(name) for name in names}
            chosen = {name: arguments.pop(name) for name in select}
            with user_errors():
                spec = Spec(**flags)
                picked = selection(**chosen)
                if "axis" in names:  # a model's channel axes apply unless --axis is given
                    picked["graph_axis"] = not _given(context, "axis")
            return command(spec=spec, picked=picked, **arguments)

        context = inspect.Parameter(CONTEXT, kind, default=None, annotation=typer.Context)
        parameters = [*own, *added, context]
        run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run

    return decorate


EncodingsFile = Annotated[
    Path,
    typer.Argument(
        help="An AIMET encodings JSON file (0.6.1, 1.0.0, 2.0.0, 2.1.0).", metavar="ENCODINGS"
    ),
]
ReadVersion = Annotated[
    Optional[Version],
    typer.Option(
        "--encoding-version",
        help="Read the file as this version instead of detecting it.",
        show_default=False,
    ),
]


INTERNAL_ERROR = 3  # exit code of a bug: an exception qcalc did not expect


class Terminated(BaseException):
    """SIGTERM, raised where the program is so that open atomic writes clean up."""


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn library errors into one line on stderr and their exit code; no traceback. An
    exception qcalc did not expect is a bug: one line, exit INTERNAL_ERROR (with
    QCALC_DEBUG=1 it propagates, traceback and all)."""
    try:
        yield
    except QcalcError as error:
        say(f"error: {error}")
        raise typer.Exit(error.exit_code) from None
    except KeyboardInterrupt:
        say("interrupted")
        raise typer.Exit(130) from None
    except Terminated:
        say("terminated")
        raise typer.Exit(143) from None
    except BrokenPipeError:  # `qcalc ... | head`: the reader left; not an error
        with contextlib.suppress(OSError, ValueError):  # the final flush must not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as error:
        if os.environ.get("QCALC_DEBUG") == "1":
            raise
        say(
            f"internal error: {type(error).__name__}: {error} (a bug in qcalc: please report "
            "this line and the command to its issue tracker; QCALC_DEBUG=1 shows the traceback)"
        )
        raise typer.Exit(INTERNAL_ERROR) from None


def say(message: str) -> None:
    """One line on stderr, "qcalc: MESSAGE", control characters escaped."""
    typer.echo(f"qcalc: {printable(message)}", err=True)


def note(message: str) -> None:
    say(f"note: {message}")


def warn(message: str) -> None:
    say(f"warning: {message}")


def load_recipe(path: Optional[Path]):
    """The --recipe file's Recipe, or None."""
    if path is None:
        return None
    from qcalc.io.recipe import Recipe

    return Recipe.load(path)


def selection(**options: Any) -> dict[str, Any]:
    """The library's keyword arguments for the SELECTION options given: lists for --include,
    --exclude and --activations (empty when not given), the --recipe file loaded, the
    activation bitwidth checked as Spec checks bitwidths, --jobs checked."""
    picked = {}
    for name, value in options.items():
        if name == "recipe":
            picked[name] = load_recipe(value)
        elif name == "jobs":
            picked[name] = checked_jobs(value)
        elif name == "dask":
            picked[name] = value
        elif name == "activation_bitwidth":
            if value is not None:
                Spec(bitwidth=value)  # the same bounds, the same message
            picked[name] = value
        else:
            picked[name] = value or ()
    return picked


def checked_jobs(jobs: Optional[int]) -> Optional[int]:
    """--jobs as given (None: every core), refused below 1."""
    if jobs is not None and jobs < 1:
        raise SpecError(f"--jobs must be at least 1, not {jobs}")
    return jobs


def _given(context: Any, option: str) -> bool:
    """Whether the running command's `option` was given on the command line (not its
    default)."""
    source = context.get_parameter_source(option) if context is not None else None
    return source is not None and source.name != "DEFAULT"


def report_skips(result) -> None:
    """Notes for tensors not encoded, warnings for recipe rules that matched nothing."""
    for skipped in result.skipped:
        note(f"{skipped.source}: tensor '{skipped.name}': {skipped.reason}")
    if result.recipe_skipped:
        count = len(result.recipe_skipped)
        note(f"recipe skipped {count} tensor{'s' if count != 1 else ''}")
    for rule in result.unmatched_rules:
        warn(f"recipe {rule.label} matched no tensor")
    for text in getattr(result, "notes", ()):
        note(text)
    for text in getattr(result, "warnings", ()):
        warn(text)


def named_files(picked: dict[str, Any], *paths: Path) -> List[Path]:
    """Every file a run names before it reads anything: `paths`, the --activations and the
    --recipe file (what -o must not replace)."""
    recipe = [] if picked.get("recipe") is None else [Path(picked["recipe"].path)]
    return [*paths, *picked.get("activations", ()), *recipe]


def refuse_overwriting_inputs(output: Path, inputs: List[Path]) -> None:
    """SpecError when `output` is one of `inputs` (links resolved)."""
    from qcalc.errors import SpecError
    from qcalc.io.atomic import same_file

    for path in inputs:
        if same_file(output, path):
            raise SpecError(f"{output}: is one of the inputs; refusing to overwrite it")
