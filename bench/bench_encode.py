"""Throughput of `qcalc encode --per-channel --symmetric --format json` against the floor.

    python bench/bench_encode.py [--size-gb 1.0] [--repeat 5] [--keep] [--path FILE]

Uses bench/out/ckpt.safetensors if it exists (bench/out/ is git-ignored), else writes a
synthetic bfloat16 checkpoint of --size-gb with make_checkpoint.py into a temp dir (into
bench/out/ with --keep, so later runs reuse it). The file is read once to warm the page cache,
so every timing measures compute, not disk. Then each round runs, as fresh processes and
alternating so that drift on this shared machine hits all alike:

- floor: `python bench/floor_minmax.py FILE` — numpy only, the tensors memory-mapped as
  uint16, widened to float32 with a bit shift in ~32 MB row chunks, each row's min and max,
  one thread (see floor_minmax.py);
- qcalc: the installed CLI, `qcalc encode FILE --per-channel --symmetric --format json`
  (every core: the default --jobs), stdout to a file;
- qcalc --jobs 1: the same on one thread.

It prints the best and median of --repeat rounds for each, and the ratios of the bests
qcalc / floor (target <= 0.6, goal 0.35; issue 13) and qcalc --jobs 1 / floor. The first
round checks qcalc's per-channel scales against the floor's min/max (symmetric 8-bit:
scale = max(max(M, 0) / 127, -min(m, 0) / 128)).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_CKPT = HERE / "out" / "ckpt.safetensors"
TARGET, GOAL = 0.6, 0.35
sys.path.insert(0, str(HERE))

from floor_minmax import floor, read_header  # noqa: E402


def qcalc_command() -> list[str]:
    script = Path(sys.executable).with_name("qcalc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "qcalc"]


def run(command: list[str], stdout) -> float:
    started = time.perf_counter()
    subprocess.run(command, stdout=stdout, check=True)
    return time.perf_counter() - started


def check_agreement(records: list[dict], stats) -> None:
    """qcalc's per-channel symmetric 8-bit scales against the floor's min and max."""
    if len(records) != len(stats):
        raise SystemExit(f"qcalc returned {len(records)} encodings, the floor {len(stats)}")
    for rec in records:
        lo, hi = stats[rec["name"]]
        lo = np.minimum(np.asarray(lo, np.float32), np.float32(0))
        hi = np.maximum(np.asarray(hi, np.float32), np.float32(0))
        expected = np.maximum(hi / np.float32(127), -lo / np.float32(128)).ravel()
        scale = np.asarray(rec["scale"], np.float32)
        if scale.shape != expected.shape or not np.allclose(scale, expected, rtol=1e-6, atol=0):
            raise SystemExit(f"{rec['name']}: qcalc scales disagree with the floor")


def warm(path: Path) -> float:
    started = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.read(64 << 20):
            pass
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="write the checkpoint to bench/out/")
    parser.add_argument("--path", type=Path, help="benchmark this bf16 checkpoint instead")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="qcalc-bench-") as tmp:
        path = args.path or DEFAULT_CKPT
        if not path.exists():
            from make_checkpoint import write_checkpoint

            path = DEFAULT_CKPT if args.keep else Path(tmp) / "ckpt.safetensors"
            path.parent.mkdir(parents=True, exist_ok=True)
            print(f"writing {path} ({args.size_gb} GB) ...", flush=True)
            write_checkpoint(str(path), args.size_gb)
        else:
            print(f"reusing {path} (--size-gb does not apply; delete it to regenerate)", flush=True)
        bench(path, args.repeat, Path(tmp))


def bench(path: Path, repeat: int, tmp: Path) -> None:
    size = path.stat().st_size
    print(f"checkpoint: {size / 1e9:.3f} GB, {len(read_header(str(path))[1])} tensors")
    print(f"warm-up read: {warm(path):.2f} s")
    from qcalc.core import kernels

    built = [name for name in ("minmax", "histc", "sqnr") if kernels.built(name)]
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} CPUs, "
        f"compiled kernels: {', '.join(built) or 'none'}"
    )
    qcalc = [*qcalc_command(), "encode", str(path), "--per-channel", "--symmetric", "-f", "json"]
    runs = {
        "floor": [sys.executable, str(HERE / "floor_minmax.py"), str(path)],
        "qcalc": qcalc,
        "qcalc --jobs 1": [*qcalc, "--jobs", "1"],
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    output = tmp / "out.json"
    for round_ in range(repeat):
        for name, command in runs.items():
            with open(output, "w") as out:
                times[name].append(run(command, out))
            if round_ == 0 and name == "qcalc":
                check_agreement(json.loads(output.read_text()), floor(str(path)))
        line = ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items())
        print(f"round {round_ + 1}/{repeat}: {line}", flush=True)

    print(f"\nfresh processes, best / median of {repeat} (GB = 10^9 bytes of checkpoint):")
    best = {k: min(v) for k, v in times.items()}
    for k, v in times.items():
        print(f"  {k:<15} {best[k]:7.3f} s / {statistics.median(v):7.3f} s  "
              f"{size / 1e9 / best[k]:6.2f} GB/s")  # fmt: skip
    ratio = best["qcalc"] / best["floor"]
    verdict = "OK" if ratio <= TARGET else "over target"
    print(f"ratio qcalc / floor: {ratio:.2f} (target <= {TARGET}, goal {GOAL}: {verdict})")
    print(f"ratio qcalc --jobs 1 / floor: {best['qcalc --jobs 1'] / best['floor']:.2f}")


if __name__ == "__main__":
    main()
