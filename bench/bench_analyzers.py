"""Cost of the histogram analyzers and of per-block encodings, relative to min-max, and the
peak memory of each.

    python bench/bench_analyzers.py [--path bench/out/ckpt.safetensors] [--repeat 2]
        [--only minmax,per-block,percentile,sqnr,tf-enhanced] [--block-size 128] [--per-tensor]
        [--jobs N]

Runs `qcalc.compute_encodings([PATH], Spec(symmetric=True, per_channel=True, analyzer=A),
jobs=N)` as a fresh Python process per run (the computation, not the rendering of 211k
channels' JSON, which costs the same for every analyzer; per-block JSON is 20 times larger)
on the same checkpoint (the synthetic bf16 LLM checkpoint of make_checkpoint.py; written by
bench_encode.py --keep), plus per-block min-max (blocks of --block-size along the last
axis), and prints each run's best wall time, its ratio to the per-channel min-max run and
the largest peak RSS of its runs (the child's ru_maxrss). The page cache is warmed first, so
these are compute costs; rounds alternate between the runs. `--jobs` is passed on (default:
qcalc's, every core).
Targets (issue 13): percentile <= 3x, sqnr <= 6x, tf-enhanced <= 6x min-max (issue 4:
per-block <= 1.5x); peak RSS <= 200 MB for every run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = {"per-block": 1.5, "percentile": 3.0, "sqnr": 6.0, "tf-enhanced": 6.0}
RSS_TARGET_MB = 200


def library_call(path: Path, jobs, **spec) -> list[str]:
    """A fresh Python process that computes the encodings of `path` with `spec`."""
    code = (
        "import sys; from qcalc import Spec, compute_encodings; "
        f"compute_encodings([sys.argv[1]], Spec(**{spec!r}), jobs={jobs!r})"
    )
    return [sys.executable, "-c", code, str(path)]


def run(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one fresh process."""
    started = time.perf_counter()
    with open(os.devnull, "w") as sink:
        process = subprocess.Popen(command, stdout=sink)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return seconds, usage.ru_maxrss / 1024  # kB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, default=HERE / "out" / "ckpt.safetensors")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--only", default="minmax,per-block,percentile,sqnr,tf-enhanced")
    parser.add_argument("--jobs", type=int, help="passed to qcalc as --jobs")
    parser.add_argument(
        "--per-tensor",
        action="store_true",
        help="min-max and the analyzers per tensor (how activations are calibrated)",
    )
    args = parser.parse_args()
    if not args.path.exists():
        sys.exit(f"{args.path}: missing; create it with `python bench/bench_encode.py --keep`")
    with open(args.path, "rb") as f:  # warm the page cache
        while f.read(64 << 20):
            pass
    size_gb = args.path.stat().st_size / 1e9
    kind = {"symmetric": True, "per_channel": not args.per_tensor}
    runs = {
        "minmax": library_call(args.path, args.jobs, **kind),
        "per-block": library_call(
            args.path, args.jobs, symmetric=True, block_size=args.block_size, block_axis=-1
        ),
    }
    for analyzer in ("percentile", "sqnr", "tf-enhanced"):
        runs[analyzer] = library_call(args.path, args.jobs, **kind, analyzer=analyzer)
    wanted = ["minmax"] + [n for n in args.only.split(",") if n != "minmax"]
    print(f"{args.path} ({size_gb:.3f} GB), fresh processes, best of {args.repeat}:")
    best = {name: float("inf") for name in wanted}
    peak = {name: 0.0 for name in wanted}
    for _ in range(args.repeat):  # rounds alternate between the runs
        for name in wanted:
            seconds, rss = run(runs[name])
            best[name], peak[name] = min(best[name], seconds), max(peak[name], rss)
    reference = best["minmax"]
    for name in wanted:
        ratio = best[name] / reference
        target = TARGETS.get(name)
        verdict = (
            ""
            if target is None
            else f" (target <= {target}: {'OK' if ratio <= target else 'missed'})"
        )
        print(
            f"  {name:12s} {best[name]:8.2f} s  {size_gb / best[name]:6.2f} GB/s  x{ratio:.2f}"
            f"{verdict}  peak RSS {peak[name]:.0f} MB"
            + ("" if peak[name] <= RSS_TARGET_MB else f" (over {RSS_TARGET_MB} MB)")
        )


if __name__ == "__main__":
    main()
