"""`qcalc show` and `qcalc convert`: an encodings file printed, or rewritten in another version."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from qcalc.commands.options import (
    EncodingsFile,
    FormatOption,
    ReadVersion,
    note,
    refuse_overwriting_inputs,
    user_errors,
)
from qcalc.core.choices import Version

SHOW_HELP = """Print the encodings an AIMET encodings JSON file holds, like `encode` prints its own.

Examples:

  qcalc show model.encodings

  qcalc show model.encodings --format jsonl | jq -c '{name, scale}'
"""


def show(
    encodings: EncodingsFile,
    output_format: FormatOption = "table",
    encoding_version: ReadVersion = None,
) -> None:
    from qcalc.commands.render.encodings import render_encodings
    from qcalc.io import formats

    with user_errors():
        data = formats.read(encodings, encoding_version)
        render_encodings(list(data.encodings), output_format, sys.stdout)
        sys.stdout.flush()


CONVERT_HELP = """Rewrite an encodings file in another version. Every tensor keeps its grid
(bitwidth, scale, offset, symmetry, granularity); what the target version has no field for
is dropped (the README's Deployment section lists what), and what it cannot hold at all is
an error, with nothing written.

Examples:

  qcalc convert model.encodings --to 2.0.0 -o model-v2.encodings
"""


def convert(
    encodings: EncodingsFile,
    to: Annotated[Version, typer.Option("--to", help="Version to write.", show_default=False)],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="File to write.", show_default=False)
    ],
    encoding_version: ReadVersion = None,
) -> None:
    from qcalc.io import formats

    with user_errors():
        refuse_overwriting_inputs(output, [encodings])
        data = formats.convert_file(encodings, output, to, source_version=encoding_version)
        note(f"wrote {len(data.encodings)} encodings to {output} (version {to})")
