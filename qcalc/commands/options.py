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

from qcalc.core.choices import Analyzer, ComputeDtype, NonFinite, SymmetricOffset, Version
from qcalc.core.spec import Spec
from qcalc.errors import QcalcError

Format = Literal["table", "json", "jsonl", "csv"]

# The quantization options: one per Spec field, named as the field. A new Spec field needs
# its option here, and every command that takes quantization options has it.
QUANTIZATION: dict[str, Any] = {
    "bitwidth": Annotated[int, typer.Option("--bitwidth", "-b", help="Integer grid bits, 2..32.")],
    "symmetric": Annotated[
        bool, typer.Option("--symmetric/--asymmetric", help="Symmetric grid (offset fixed).")
    ],
    "signed": Annotated[
        Optional[bool],
        typer.Option(
            "--signed/--unsigned",
            help="Signed integer grid. Default: signed when symmetric, unsigned when asymmetric.",
            show_default=False,
        ),
    ],
    "strict_symmetric": Annotated[
        bool,
        typer.Option("--strict-symmetric", help="Symmetric signed grid without its lowest level."),
    ],
    "symmetric_offset": Annotated[
        SymmetricOffset,
        typer.Option(
            "--symmetric-offset",
            help="Offset of symmetric unsigned grids: centered (AIMET 2.x) or zero (pre-2025 "
            "AIMET).",
        ),
    ],
    "per_channel": Annotated[
        bool,
        typer.Option("--per-channel", help="One encoding per channel for tensors of rank >= 2."),
    ],
    "axis": Annotated[int, typer.Option("--axis", help="Channel axis (negative counts from the end).")],
    "compute_dtype": Annotated[
        ComputeDtype,
        typer.Option(
            "--compute-dtype",
            help="Range arithmetic in float32, or in the tensor's dtype (AIMET on a bf16/f16 "
            "model).",
        ),
    ],
    "nonfinite": Annotated[
        NonFinite,
        typer.Option(
            "--nonfinite", help="NaN / inf values: fail, leave them out, or keep them as AIMET does."
        ),
    ],
    "analyzer": Annotated[
        Analyzer, typer.Option("--analyzer", help="Calibration method (AIMET's encoding analyzers).")
    ],
    "percentile": Annotated[
        float, typer.Option("--percentile", help="Percentile for --analyzer percentile, 50..100.")
    ],
    "num_bins": Annotated[
        Optional[int],
        typer.Option(
            "--num-bins", help="Histogram bins (default 2048; 512 for tf-enhanced).", show_default=False
        ),
    ],
    "block_size": Annotated[
        Optional[int],
        typer.Option(
            "--block-size",
            help="Per-block encodings: B consecutive elements along --block-axis, per channel "
            "along --axis.",
            show_default=False,
        ),
    ],
    "block_axis": Annotated[int, typer.Option("--block-axis", help="Axis the blocks run along.")],
    "lpbq": Annotated[
        bool,
        typer.Option(
            "--lpbq",
            help="Low-power block quantization: block scales as integer multiples of a "
            "per-channel scale (needs --block-size, --symmetric).",
        ),
    ],
    "decompressed_bitwidth": Annotated[
        int, typer.Option("--decompressed-bitwidth", help="LPBQ decompressed bitwidth.")
    ],
}
# `check` and `hist` count NaN / inf instead of failing on them: no --nonfinite there.
COUNTS_NONFINITE = tuple(name for name in QUANTIZATION if name != "nonfinite")


def with_spec(*names: str) -> Callable[[Callable], Callable]:
    """Give a command the quantization options `names` (all by default); it receives them as
    one `spec: Spec` argument. A name that is not a Spec field is an error here, at import."""
    names = names or tuple(QUANTIZATION)
    defaults = {field.name: field.default for field in dataclasses.fields(Spec)}
    unknown = [name for name in names if name not in defaults or name not in QUANTIZATION]
    if unknown:
        raise TypeError(f"not quantization options: {unknown}")

    def decorate(command: Callable) -> Callable:
        hints = typing.get_type_hints(command, include_extras=True)
        own = [
            parameter.replace(annotation=hints[parameter.name])
            for parameter in inspect.signature(command).parameters.values()
            if parameter.name != "spec"
        ]
        added = [
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, default=defaults[name],
                annotation=QUANTIZATION[name],
            )
            for name in names
        ]  # fmt: skip

        @functools.wraps(command)
        def run(**arguments: Any) -> Any:
            flags = {name: arguments.pop(name) for name in names}
            with user_errors():
                spec = Spec(**flags)
            return command(spec=spec, **arguments)

        parameters = [*own, *added]
        run.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in parameters}
        return run

    return decorate


Inputs = Annotated[
    List[Path],
    typer.Argument(
        help="Files (.npy, .npz, .safetensors, *.safetensors.index.json) or directories.",
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
        help="Calibration dumps (file or directory, repeatable) for activation_encodings.",
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


def note(message: str) -> None:
    typer.echo(f"qcalc: note: {message}", err=True)


def warn(message: str) -> None:
    typer.echo(f"qcalc: warning: {message}", err=True)


def load_recipe(path: Optional[Path]):
    """The --recipe file's Recipe, or None."""
    if path is None:
        return None
    from qcalc.io.recipe import Recipe

    return Recipe.load(path)


def report_skips(result) -> None:
    """Notes for tensors not encoded, warnings for recipe rules that matched nothing."""
    for skipped in result.skipped:
        note(f"{skipped.source}: tensor '{skipped.name}': {skipped.reason}")
    if result.recipe_skipped:
        count = len(result.recipe_skipped)
        note(f"recipe skipped {count} tensor{'s' if count != 1 else ''}")
    for rule in result.unmatched_rules:
        warn(f"recipe {rule.label} matched no tensor")


def refuse_overwriting_inputs(output: Path, inputs: List[Path]) -> None:
    """SpecError when `output` is one of `inputs` (links resolved)."""
    from qcalc.errors import SpecError
    from qcalc.io.atomic import same_file

    for path in inputs:
        if same_file(output, path):
            raise SpecError(f"{output}: is one of the inputs; refusing to overwrite it")
