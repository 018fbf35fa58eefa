"""`qcalc stats`: part of a run's statistics into a file, for `encode --from-stats`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, List, Optional

import typer

from qcalc.commands.options import (
    Inputs,
    named_files,
    note,
    refuse_overwriting_inputs,
    report_skips,
    user_errors,
    with_spec,
)
from qcalc.core.spec import Spec

HELP = """\
Compute part K of N of the statistics `encode` would compute from INPUT... with the same \
flags, and write them to a stats file; `qcalc encode --from-stats` finishes the encodings \
from all N parts, byte for byte the output of one `qcalc encode` run.

Every part reads every input's header and takes its share of the tensors' batches (a \
contiguous run of about 1/N of the bytes): give every job the same INPUT... and flags and \
its own --part. The histogram analyzers (percentile, sqnr, tf-enhanced) take two rounds: \
the first parts hold each batch's range; `qcalc stats ... --ranges <all first parts>` \
then counts each batch in the layout AIMET gives it. Not for ONNX models, nor llama.cpp Q4_0.

Examples:

  qcalc stats sample_tensors/model_bf16.safetensors -o part-1.qstats --part 1/2 --per-channel

  qcalc stats model.safetensors.index.json --part 3/8 -o part-3.qstats -b 4 --symmetric

  qcalc stats calib/ --analyzer sqnr --part 2/4 --ranges round1-*.qstats -o part-2.qstats

  qcalc encode --from-stats part-*.qstats -o model.encodings
"""


@with_spec()
def stats(
    inputs: Inputs,
    spec: Spec,
    picked: dict,
    output: Annotated[
        Path,
        typer.Option("--output", "-o", help="The stats file to write.", show_default=False),
    ],
    part: Annotated[
        str,
        typer.Option("--part", help="Which part of how many this run computes.", metavar="K/N"),
    ] = "1/1",
    ranges: Annotated[
        Optional[List[Path]],
        typer.Option(
            "--ranges",
            help="Round 2 of a histogram analyzer: the round-1 parts (every one; it takes "
            "every path up to the next option); this part then counts its batches.",
            show_default=False,
        ),
    ] = None,
) -> None:
    from qcalc.commands.progress import TerminalProgress
    from qcalc.io.stats_file import write_stats
    from qcalc.ops.stats import collect_stats, parse_part

    with user_errors():
        which = parse_part(part)
        refuse_overwriting_inputs(output, named_files(picked, *inputs, *(ranges or ())))
        with TerminalProgress() as progress:
            result = collect_stats(
                inputs, spec, part=which, ranges=ranges or (), progress=progress, **picked,
            )  # fmt: skip
        write_stats(output, result.document, result.arrays)
        report_skips(result)
        units = len(result.document["statistics"])
        round_1 = result.document["contents"] == "ranges"
        note(
            f"wrote part {which[0]}/{which[1]}: {units} of {result.document['units']} "
            f"batch {'ranges (round 1: next, --ranges)' if round_1 else 'statistics'} to "
            f"{output}"
        )
        sys.stdout.flush()
