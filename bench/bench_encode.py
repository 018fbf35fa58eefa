"""Throughput of `qcalc encode --per-channel --symmetric` against a bare-numpy min/max pass.

    python bench/bench_encode.py [--size-gb 1.0] [--repeat 3] [--keep]

Uses bench/out/ckpt.safetensors if it exists (bench/out/ is git-ignored), else writes a
synthetic bfloat16 checkpoint of --size-gb with make_checkpoint.py into a temp dir (into
bench/out/ with --keep, so later runs reuse it). The file is read once to warm the page cache,
so every timing measures compute, not disk. Then, in this one process and alternating so that
drift hits all alike, each round times:

- qcalc: the CLI in-process, `qcalc encode PATH --per-channel --symmetric --format json`,
  through typer's CliRunner (JSON rendering included; parsing and checking the JSON, which
  follows, is not timed); the exit code must be 0 and the JSON must list every tensor.
- qcalc library: `qcalc.ops.encode.compute_encodings([PATH], Spec(symmetric=True, per_channel=True))`,
  the same computation without the CLI and JSON rendering (shows where the CLI's time goes).
- numpy (chunked): the header parsed with struct + json, each tensor np.memmap'ed as
  ml_dtypes.bfloat16, and for each 2-D weight `chunk.astype(np.float32)` then `.min(axis=1)`
  and `.max(axis=1)` over row chunks of ~32 MB of float32; 1-D tensors: `.min()`, `.max()`.
- numpy (whole): the same without chunking (one float32 copy of each tensor at once); skipped
  when the largest tensor's float32 copy would not fit comfortably in available memory.

Reports the best (minimum) time of --repeat rounds for each as GB/s of checkpoint bytes and the
ratio qcalc time / numpy chunked time (target: <= 1.5). The first round also checks that qcalc's
per-channel scales agree with the baseline's min/max (symmetric 8-bit: scale =
max(max(M, 0) / 127, -min(m, 0) / 128)).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import ml_dtypes
import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_CKPT = HERE / "out" / "ckpt.safetensors"
BASELINE_CHUNK_BYTES = 32 << 20  # float32 bytes per row chunk
BF16 = np.dtype(ml_dtypes.bfloat16)

Stats = dict[str, tuple[np.ndarray, np.ndarray]]


def read_header(path: Path) -> tuple[int, dict]:
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    header.pop("__metadata__", None)
    return 8 + length, header


def tensor_views(path: Path) -> list[tuple[str, np.ndarray]]:
    """Every tensor of a bf16 checkpoint as a read-only memmap, in file order."""
    start, header = read_header(path)
    views = []
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        assert info["dtype"] == "BF16", f"{name}: baseline handles BF16 only"
        shape = tuple(info["shape"])
        offset = start + info["data_offsets"][0]
        views.append((name, np.memmap(path, mode="r", dtype=BF16, offset=offset, shape=shape)))
    return views


def numpy_chunked(path: Path) -> Stats:
    out: Stats = {}
    for name, a in tensor_views(path):
        if a.ndim == 2:
            rows = max(1, BASELINE_CHUNK_BYTES // (a.shape[1] * 4))
            mins, maxs = [], []
            for s in range(0, a.shape[0], rows):
                chunk = a[s : s + rows].astype(np.float32)
                mins.append(chunk.min(axis=1))
                maxs.append(chunk.max(axis=1))
            out[name] = (np.concatenate(mins), np.concatenate(maxs))
        else:
            f = a.astype(np.float32)
            out[name] = (f.min(), f.max())
    return out


def numpy_whole(path: Path) -> Stats:
    out: Stats = {}
    for name, a in tensor_views(path):
        f = a.astype(np.float32)
        out[name] = (f.min(axis=1), f.max(axis=1)) if f.ndim == 2 else (f.min(), f.max())
    return out


def invoke_qcalc(path: Path):
    """The timed part: the CLI run in-process, its stdout captured by typer's CliRunner."""
    import typer.testing

    from qcalc.cli import app

    args = ["encode", str(path), "--per-channel", "--symmetric", "--format", "json"]
    return typer.testing.CliRunner().invoke(app, args)


def parse_qcalc(result, expected_tensors: int) -> list[dict]:
    """Untimed: exit code 0 and one JSON record per tensor."""
    if result.exit_code != 0:
        raise SystemExit(f"qcalc failed (exit {result.exit_code}): {result.output[-2000:]}")
    records = json.loads(result.stdout)
    if len(records) != expected_tensors:
        raise SystemExit(f"qcalc returned {len(records)} encodings, expected {expected_tensors}")
    return records


def check_agreement(records: list[dict], stats: Stats) -> None:
    """qcalc's per-channel symmetric 8-bit scales against the baseline's min and max."""
    for rec in records:
        lo, hi = stats[rec["name"]]
        lo = np.minimum(np.asarray(lo, np.float32), np.float32(0))
        hi = np.maximum(np.asarray(hi, np.float32), np.float32(0))
        expected = np.maximum(hi / np.float32(127), -lo / np.float32(128)).ravel()
        scale = np.asarray(rec["scale"], np.float32)
        if scale.shape != expected.shape or not np.allclose(scale, expected, rtol=1e-6, atol=0):
            raise SystemExit(f"{rec['name']}: qcalc scales disagree with the numpy baseline")


def warm(path: Path) -> float:
    started = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.read(64 << 20):
            pass
    return time.perf_counter() - started


def available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gb", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="write the checkpoint to bench/out/")
    parser.add_argument("--path", type=Path, help="benchmark this bf16 checkpoint instead")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="qcalc-bench-") as tmp:
        path = args.path or DEFAULT_CKPT
        if not path.exists():
            sys.path.insert(0, str(HERE))
            from make_checkpoint import write_checkpoint

            path = DEFAULT_CKPT if args.keep else Path(tmp) / "ckpt.safetensors"
            path.parent.mkdir(parents=True, exist_ok=True)
            print(f"writing {path} ({args.size_gb} GB) ...", flush=True)
            write_checkpoint(str(path), args.size_gb)
        else:
            print(f"reusing {path} (--size-gb does not apply; delete it to regenerate)", flush=True)
        bench(path, args.repeat)


def bench(path: Path, repeat: int) -> None:
    size = path.stat().st_size
    views = tensor_views(path)
    largest_f32 = max(a.size for _, a in views) * 4
    del views
    print(f"checkpoint: {size / 1e9:.3f} GB, {len(read_header(path)[1])} tensors")
    print(f"warm-up read: {warm(path):.2f} s")
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, "
        f"ml_dtypes {ml_dtypes.__version__}, {os.cpu_count()} CPUs"
    )
    whole = available_bytes() > 4 * largest_f32
    n_tensors = len(read_header(path)[1])

    from qcalc import Spec, compute_encodings

    spec = Spec(symmetric=True, per_channel=True)
    times: dict[str, list[float]] = {
        "qcalc": [], "qcalc library": [], "numpy chunked": [], "numpy whole": []
    }  # fmt: skip
    for round_ in range(repeat):
        started = time.perf_counter()
        result = invoke_qcalc(path)
        times["qcalc"].append(time.perf_counter() - started)
        records = parse_qcalc(result, n_tensors)
        times["qcalc library"].append(timed(lambda: compute_encodings([path], spec)))
        stats: Stats = {}
        times["numpy chunked"].append(timed(lambda: stats.update(numpy_chunked(path))))
        if whole:
            times["numpy whole"].append(timed(lambda: numpy_whole(path)))
        if round_ == 0:
            check_agreement(records, stats)
        line = ", ".join(f"{k} {v[-1]:.3f} s" for k, v in times.items() if v)
        print(f"round {round_ + 1}/{repeat}: {line}", flush=True)

    print(f"\nbest of {repeat} (GB = 10^9 bytes of checkpoint):")
    best = {k: min(v) for k, v in times.items() if v}
    for k, t in best.items():
        print(f"  {k:<14} {t:7.3f} s  {size / 1e9 / t:6.2f} GB/s")
    print("  (qcalc: the CLI with JSON output; qcalc library: compute_encodings only)")
    if not whole:
        print("  numpy whole    skipped (not enough available memory)")
    ratio = best["qcalc"] / best["numpy chunked"]
    verdict = "OK" if ratio <= 1.5 else "over target"
    print(f"ratio qcalc / numpy chunked: {ratio:.2f} (target <= 1.5: {verdict})")
    if whole:
        print(f"ratio qcalc / numpy whole:   {best['qcalc'] / best['numpy whole']:.2f}")
    library = best["qcalc library"] / best["numpy chunked"]
    print(f"ratio qcalc library / numpy chunked: {library:.2f}")


if __name__ == "__main__":
    main()
