"""The same encode locally (--jobs, every core) and on 1 and 2 workers of a local Dask cluster.

    python bench/bench_dask.py [--repeat 3] [--path FILE] [--flags "--per-channel --symmetric"]

Needs `pip install 'qcalc[dask]'` and a checkpoint (bench/out/ckpt.safetensors by default:
`python bench/make_checkpoint.py bench/out/ckpt.safetensors --size-gb 1.0`). The file is read
once to warm the page cache. A LocalCluster (worker processes, one thread each, loopback) is
started per worker count and kept for its rounds; each round runs `qcalc encode FILE FLAGS
--format json` as a fresh process: locally, then with `--dask ADDRESS` on 1 and on 2 workers,
alternating, and checks that the outputs are byte-identical. It prints the best and median of
each and the ratios of the bests to the local run.

On a machine with few cores a cluster cannot beat threads: the workers use the same cores and
the results travel between processes. What a cluster buys is more machines.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_CKPT = HERE / "out" / "ckpt.safetensors"


def qcalc_command() -> list[str]:
    script = Path(sys.executable).with_name("qcalc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "qcalc"]


def timed(command: list[str], out: Path) -> float:
    started = time.perf_counter()
    with open(out, "wb") as stdout:
        subprocess.run(command, stdout=stdout, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> int:
    from distributed import LocalCluster

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, default=DEFAULT_CKPT)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--flags", default="--per-channel --symmetric")
    args = parser.parse_args()
    if not args.path.exists():
        sys.exit(f"{args.path}: no checkpoint; make one with bench/make_checkpoint.py")
    with open(args.path, "rb") as f:  # warm the page cache
        while f.read(1 << 24):
            pass
    base = [*qcalc_command(), "encode", str(args.path), *shlex.split(args.flags), "-f", "json"]
    clusters = {
        n: LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=None)  # fmt: skip
        for n in (1, 2)
    }
    times: dict[str, list[float]] = {"local": [], "dask 1 worker": [], "dask 2 workers": []}
    with tempfile.TemporaryDirectory() as tmp:
        outputs = {name: Path(tmp) / f"{i}.json" for i, name in enumerate(times)}
        try:
            for _ in range(args.repeat):
                times["local"].append(timed(base, outputs["local"]))
                for n, name in ((1, "dask 1 worker"), (2, "dask 2 workers")):
                    command = [*base, "--dask", clusters[n].scheduler_address]
                    times[name].append(timed(command, outputs[name]))
                reference = outputs["local"].read_bytes()
                for name, path in outputs.items():
                    if path.read_bytes() != reference:
                        sys.exit(f"{name}: output differs from the local run")
        finally:
            for cluster in clusters.values():
                cluster.close()
    size = args.path.stat().st_size / 1e9
    print(f"{args.path} ({size:.2f} GB), flags: {args.flags}; outputs byte-identical")
    best_local = min(times["local"])
    for name, values in times.items():
        best = min(values)
        print(
            f"{name:15s} best {best:6.2f} s  median {statistics.median(values):6.2f} s  "
            f"best / local {best / best_local:5.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
