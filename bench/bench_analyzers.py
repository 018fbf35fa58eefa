"""Cost of the histogram analyzers and of per-block encodings, relative to min-max.

    python bench/bench_analyzers.py [--path bench/out/ckpt.safetensors] [--repeat 2]
        [--only minmax,per-block,percentile,sqnr,tf-enhanced] [--block-size 128] [--per-tensor]

Runs `qcalc.ops.encode.compute_encodings` in this one process on the same checkpoint (the synthetic
bf16 LLM checkpoint of make_checkpoint.py; written by bench_encode.py --keep), per channel
along axis 0, symmetric 8-bit, with each analyzer, plus per-block min-max (blocks of
--block-size along the last axis), and prints each run's best time and its ratio to the
per-channel min-max run. The page cache is warmed first, so these are compute costs; rounds
alternate between the runs.
Targets (issue 4): percentile <= 3x, sqnr <= 6x, per-block <= 1.5x min-max.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from qcalc import Spec, compute_encodings  # noqa: E402

TARGETS = {"per-block": 1.5, "percentile": 3.0, "sqnr": 6.0}


def run(path: Path, spec: Spec, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        compute_encodings([path], spec)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, default=HERE / "out" / "ckpt.safetensors")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--only", default="minmax,per-block,percentile,sqnr,tf-enhanced")
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
    per_channel = not args.per_tensor
    base = Spec(symmetric=True, per_channel=per_channel)
    runs = {
        "minmax": base,
        "per-block": Spec(symmetric=True, block_size=args.block_size, block_axis=-1),
        "percentile": Spec(symmetric=True, per_channel=per_channel, analyzer="percentile"),
        "sqnr": Spec(symmetric=True, per_channel=per_channel, analyzer="sqnr"),
        "tf-enhanced": Spec(symmetric=True, per_channel=per_channel, analyzer="tf-enhanced"),
    }
    wanted = ["minmax"] + [n for n in args.only.split(",") if n != "minmax"]
    print(f"{args.path} ({size_gb:.3f} GB), best of {args.repeat}:")
    # Rounds alternate between the runs, so that a busy moment on the machine does not land on
    # one of them only; sqnr and tf-enhanced (minutes each) run in the first round only.
    best = {name: float("inf") for name in wanted}
    for round_ in range(args.repeat):
        for name in wanted:
            if round_ and name in ("sqnr", "tf-enhanced"):
                continue
            best[name] = min(best[name], run(args.path, runs[name], 1))
    reference = best["minmax"]
    for name in wanted:
        seconds = best[name]
        ratio = seconds / reference
        target = TARGETS.get(name)
        verdict = (
            ""
            if target is None
            else f" (target <= {target}: {'OK' if ratio <= target else 'missed'})"
        )
        print(
            f"  {name:12s} {seconds:8.2f} s  {size_gb / seconds:6.2f} GB/s  x{ratio:.2f}{verdict}"
        )


if __name__ == "__main__":
    main()
