"""Cost of `qcalc encode --metrics` relative to the same `qcalc encode` without it.

    python bench/bench_metrics.py [--path bench/out/ckpt.safetensors] [--repeat 3]

Runs the CLI in this one process through typer's CliRunner (as bench_encode.py does), on the
synthetic bf16 checkpoint of make_checkpoint.py: `encode FILE --per-channel --symmetric
--format json`, then the same with `--metrics` (one more pass over the data: fake-quantize
every element and sum the errors). Rounds alternate between the two; the page cache is warmed
first, so these are compute costs. Prints the best time of each and the ratio.
Target (issue 5): --metrics <= 2.5x plain encode.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

TARGET = 2.5


def invoke(path: Path, metrics: bool):
    import typer.testing

    from qcalc.cli import app

    args = ["encode", str(path), "--per-channel", "--symmetric", "--format", "json"]
    return typer.testing.CliRunner().invoke(app, args + (["--metrics"] if metrics else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, default=HERE / "out" / "ckpt.safetensors")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not args.path.exists():
        sys.exit(f"{args.path}: missing; create it with `python bench/bench_encode.py --keep`")
    with open(args.path, "rb") as f:  # warm the page cache
        while f.read(64 << 20):
            pass
    best = {False: float("inf"), True: float("inf")}
    for round_ in range(args.repeat):
        for metrics in (False, True):
            start = time.perf_counter()
            result = invoke(args.path, metrics)
            seconds = time.perf_counter() - start
            if result.exit_code != 0:
                sys.exit(f"qcalc failed: {result.output}")
            best[metrics] = min(best[metrics], seconds)
            if round_ == 0 and metrics:  # the records carry the metrics
                records = json.loads(result.stdout)
                assert all("sqnr_db" in record for record in records)
    size_gb = args.path.stat().st_size / 1e9
    ratio = best[True] / best[False]
    verdict = "OK" if ratio <= TARGET else "missed"
    print(f"{args.path} ({size_gb:.3f} GB), best of {args.repeat}:")
    print(f"  encode            {best[False]:6.2f} s  {size_gb / best[False]:5.2f} GB/s")
    print(f"  encode --metrics  {best[True]:6.2f} s  {size_gb / best[True]:5.2f} GB/s")
    print(f"  ratio x{ratio:.2f} (target <= {TARGET}: {verdict})")


if __name__ == "__main__":
    main()
