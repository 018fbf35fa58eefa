"""Start-up time of the smallest useful command: `qcalc encode sample_tensors/seed.npy`.

    python bench/bench_startup.py [--repeat 20] [--top 15]

Runs the installed console script (`qcalc` next to sys.executable; `python -m qcalc` when
there is none) as a subprocess --repeat times after one untimed warm-up run, and prints the
median and minimum wall time (target: median <= 0.35 s) and CPU time. Then runs the same
command once under `python -X importtime`, prints the --top slowest top-level imports
(cumulative time) and the packages whose modules took longest (self time summed per package),
and fails (exit 1) if safetensors or ml_dtypes was imported: a .npy input needs neither.
Last, `encode sample_tensors/model_bf16.safetensors` against its float32 twin
`model_f32.safetensors`, alternated, --repeat runs each (target: the bf16 median within
0.05 s of the float32 one), and fails if the bf16 run imported ml_dtypes or safetensors
(bfloat16 is read as bit patterns).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_tensors" / "seed.npy"
BF16 = REPO / "sample_tensors" / "model_bf16.safetensors"
F32 = REPO / "sample_tensors" / "model_f32.safetensors"
TARGET_SECONDS = 0.35
BF16_TARGET_SECONDS = 0.05  # bf16 median minus float32 median
FORBIDDEN = ("safetensors", "ml_dtypes")

# The console script's code path, under -X importtime in a fresh interpreter.
IMPORTTIME_CODE = """\
import sys
from qcalc.cli import main
sys.argv = ["qcalc", "encode", sys.argv[1]]
try:
    main()
except SystemExit as exit:
    if exit.code:
        raise
"""


def command() -> list[str]:
    script = Path(sys.executable).parent / ("qcalc.exe" if os.name == "nt" else "qcalc")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "qcalc"]


def run_once(cmd: list[str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run of `cmd`."""
    before = _children_cpu()
    started = time.perf_counter()
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {done.returncode}): {done.stderr}")
    return seconds, _children_cpu() - before


def _children_cpu() -> float:
    try:
        import resource
    except ImportError:  # Windows
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def import_times(sample: Path = SAMPLE) -> dict[str, tuple[int, int]]:
    """{module: (self us, cumulative us)} from `python -X importtime` running the command."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", IMPORTTIME_CODE, str(sample)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"-X importtime run failed: {done.stderr[-2000:]}")
    modules: dict[str, tuple[int, int]] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, cumulative_us, name = line[len("import time:") :].split("|")
        modules[name.rstrip()] = (int(self_us), int(cumulative_us))
    return modules


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--top", type=int, default=15, help="slowest top-level imports to list")
    args = parser.parse_args(argv)

    cmd = [*command(), "encode", str(SAMPLE)]
    print(f"command: {' '.join(cmd)}")
    run_once(cmd)  # warm-up: .pyc files and the page cache
    runs = [run_once(cmd) for _ in range(args.repeat)]
    times, cpu = [wall for wall, _ in runs], [used for _, used in runs]
    median = statistics.median(times)
    print(
        f"wall time over {args.repeat} runs: median {median:.3f} s, min {min(times):.3f} s, "
        f"max {max(times):.3f} s (target: median <= {TARGET_SECONDS} s: "
        f"{'OK' if median <= TARGET_SECONDS else 'over target'})"
    )
    print(
        f"CPU time (user + sys): median {statistics.median(cpu):.3f} s, min {min(cpu):.3f} s "
        "(less sensitive than wall time to other load on the machine)"
    )
    python = [sys.executable, "-c", "pass"]
    bare = min(run_once(python)[0] for _ in range(5))
    print(f"bare interpreter (python -c pass): min {bare:.3f} s")

    modules = import_times()
    top_level = {name.strip(): t for name, t in modules.items() if not name.startswith("  ")}
    total = sum(cumulative for _, cumulative in top_level.values())
    print(f"\nimports: {len(modules)} modules, {total / 1e6:.3f} s in top-level imports; slowest:")
    ranked = sorted(top_level.items(), key=lambda item: -item[1][1])
    for name, (_, cumulative) in ranked[: args.top]:
        print(f"  {cumulative / 1e3:8.1f} ms  {name}")

    by_package: dict[str, int] = {}
    for name, (self_us, _) in modules.items():
        package = name.strip().split(".")[0]
        by_package[package] = by_package.get(package, 0) + self_us
    print("by package (self time of all its modules):")
    for package, self_us in sorted(by_package.items(), key=lambda item: -item[1])[: args.top]:
        print(f"  {self_us / 1e3:8.1f} ms  {package}")

    loaded = set(by_package)
    bad = [name for name in FORBIDDEN if name in loaded]
    if bad:
        culprits = [n.strip() for n in modules if n.strip().split(".")[0] in bad]
        raise SystemExit(f"imported for a .npy input: {', '.join(culprits[:5])}")
    print(f"not imported: {', '.join(FORBIDDEN)} (OK)")
    bf16_versus_float32(args.repeat)


def bf16_versus_float32(repeat: int) -> None:
    """The bf16 sample checkpoint against its float32 twin, alternated run by run."""
    print(f"\nbf16 vs float32: encode {BF16.name} / {F32.name}, {repeat} runs each")
    times: dict[Path, list[float]] = {BF16: [], F32: []}
    for path in times:
        run_once([*command(), "encode", str(path)])  # warm-up
    for _ in range(repeat):
        for path, seen in times.items():
            seen.append(run_once([*command(), "encode", str(path)])[0])
    bf16, f32 = statistics.median(times[BF16]), statistics.median(times[F32])
    verdict = "OK" if bf16 - f32 <= BF16_TARGET_SECONDS else "over target"
    print(
        f"median bf16 {bf16:.3f} s, float32 {f32:.3f} s: {bf16 - f32:+.3f} s "
        f"(target: <= +{BF16_TARGET_SECONDS} s: {verdict})"
    )
    packages = {name.strip().split(".")[0] for name in import_times(BF16)}
    bad = [name for name in FORBIDDEN if name in packages]
    if bad:
        raise SystemExit(f"imported for a bf16 .safetensors input: {', '.join(bad)}")
    print(f"not imported for bf16: {', '.join(FORBIDDEN)} (OK)")


if __name__ == "__main__":
    main()
