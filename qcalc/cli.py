"""The `qcalc` command: the Typer app and its commands (each in `qcalc.commands`)."""

from __future__ import annotations

import os
import signal
import sys
from typing import Annotated, Any

# qcalc does no linear algebra: without this, importing numpy starts an OpenBLAS thread pool
# per core, which costs more CPU than the whole run on small inputs. Set before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import typer  # noqa: E402
from typer.core import TyperGroup  # noqa: E402

from qcalc import __version__  # noqa: E402
from qcalc.commands import (  # noqa: E402
    check,
    compare,
    diff,
    encode,
    explain,
    hist,
    lint,
    ls,
    show,
    stats,
)
from qcalc.commands.options import Terminated, say  # noqa: E402

HELP = """\
Quantization encoding calculator: AIMET-exact min / max / scale / offset for tensors in
.npy, .npz and .safetensors files (single files, sharded checkpoints, directories) and ONNX
models.

Examples:

  qcalc encode sample_tensors/seed.npy

  qcalc encode model.safetensors --per-channel --symmetric -b 4 -f json

  qcalc encode activations/ --nonfinite ignore --format csv > act.csv

  qcalc encode model.safetensors --activations calib/ -o model.encodings

  qcalc encode model.safetensors --recipe recipes/w8a8.toml --metrics

  qcalc encode model.onnx --activations calib/ --recipe recipes/aimet-default-per-channel.toml \
-o model.encodings --encoding-version 2.0.0

  qcalc check model.safetensors --encodings model.encodings --min-sqnr 30

  qcalc ls model.safetensors.index.json

  qcalc explain sample_tensors/seed.npy --tensor seed

  qcalc compare sample_tensors/seed.npy --tensor seed --symmetric

  qcalc stats model.safetensors.index.json --part 3/8 -o part-3.qstats

  qcalc diff shipped.encodings model.encodings

  qcalc lint model.encodings --model model.onnx
"""


class _OneLineErrors(TyperGroup):
    """Usage errors (an unknown option, a bad choice, a missing argument) as one line on
    stderr and exit 2, like every other error: "qcalc: error: ... (see 'qcalc encode --help')".
    A command given no argument at all still prints its help (on stderr, exit 2). Ctrl-C and
    SIGTERM outside a command's body (which `user_errors` covers) are one line too."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        return super().parse_args(ctx, _spread_activations(self, ctx, args))

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except (typer.Abort, KeyboardInterrupt):  # outside a command: while parsing
            say("interrupted")
            sys.exit(130)
        except Terminated:
            say("terminated")
            sys.exit(143)
        except typer.TyperException as error:  # click's ClickException, UsageError, ...
            if type(error).__name__ == "NoArgsIsHelpError":  # `qcalc encode`: the help
                error.show()
                sys.exit(error.exit_code)
            context = getattr(error, "ctx", None)
            path = "qcalc" if context is None else context.command_path
            say(f"error: {error.format_message()} (see '{path} --help')")
            sys.exit(error.exit_code)
        sys.exit(code or 0)


# options that take every path up to the next option
GREEDY_NAMES = ("activations", "from_stats", "ranges")


def _spread_activations(group: TyperGroup, ctx: Any, args: list[str]) -> list[str]:
    """`--activations a b c` after the INPUTs takes every path up to the next option, as the
    option's help says (click options take one value each): each becomes `--activations a`.
    With no INPUT before it, it takes one value, so `--activations calib/ model.onnx` still
    reads model.onnx as the INPUT. `--from-stats a b c` (no INPUT) always takes them all."""
    command = group.get_command(ctx, args[0]) if args else None
    if command is None or not any(p.name in GREEDY_NAMES for p in command.params):
        return args
    takes_value = {
        flag
        for p in command.params
        if p.param_type_name == "option" and not p.is_flag and not p.count
        for flag in p.opts
    }
    spread, positional, greedy, value_next = [args[0]], False, None, False
    for i, token in enumerate(args[1:], 1):
        if token == "--":
            return spread + args[i:]
        if value_next:
            value_next = False
        elif token.startswith("-") and token != "-":
            greedy = None
            if token in ("--from-stats", "--ranges") or (token == "--activations" and positional):
                greedy = token
            value_next = token in takes_value
        elif greedy:
            spread.append(greedy)
        else:
            positional = True
        spread.append(token)
    return spread


app = typer.Typer(
    name="qcalc",
    cls=_OneLineErrors,
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from qcalc.core.kernels import KERNELS, built

        compiled = [name for name in KERNELS if built(name)]
        kernels = f"compiled kernels: {', '.join(compiled)}" if compiled else "numpy only"
        typer.echo(f"qcalc {__version__} ({kernels})")
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Quantization encoding calculator."""


for command, help_text, name in (
    (encode.encode, encode.HELP, "encode"),
    (check.check, check.HELP, "check"),
    (ls.ls, ls.HELP, "ls"),
    (hist.hist, hist.HELP, "hist"),
    (compare.compare, compare.HELP, "compare"),
    (explain.explain, explain.HELP, "explain"),
    (stats.stats, stats.HELP, "stats"),
    (show.show, show.SHOW_HELP, "show"),
    (show.convert, show.CONVERT_HELP, "convert"),
    (diff.diff, diff.HELP, "diff"),
    (lint.lint, lint.HELP, "lint"),
):
    app.command(name=name, help=help_text, no_args_is_help=True)(command)


def main() -> None:
    """Run the command line. SIGTERM raises `Terminated` wherever the program is, so an
    atomic write in progress removes its temporary file, as Ctrl-C does."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        app()
    except BrokenPipeError:  # `qcalc ... | head`: the reader left; not an error
        sys.stderr.close()
        sys.exit(0)


def _terminate(signum: int, frame: object) -> None:
    raise Terminated
