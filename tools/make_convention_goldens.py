"""Make tests/golden/conventions/ from the REAL toolchains (not run by the tests).

Creates a throwaway virtual environment, installs torch (CPU), onnxruntime, compressed-tensors,
optimum-quanto, gguf (llama.cpp's own numpy quantizers) and, if it installs without a GPU,
nvidia-modelopt, then runs tools/convention_goldens_inner.py inside it. That script calls each
toolchain's own functions and writes one JSON file per convention plus the input .npy files.

    python tools/make_convention_goldens.py                 # fresh venv in a temp dir, removed after
    python tools/make_convention_goldens.py --venv DIR      # reuse / keep a venv at DIR

torch is pinned to 2.13.0: on this machine pip takes that CPU wheel from local disk; a plain
`torch` or a newer range would pull a multi-GB CUDA build (see the machine notes).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "golden" / "conventions"
INNER = Path(__file__).resolve().parent / "convention_goldens_inner.py"
REQUIRED = [
    "torch==2.13.0",
    "numpy",
    "onnx",
    "onnxruntime",
    "compressed-tensors",
    "optimum-quanto",
    "gguf",
]
OPTIONAL = ["nvidia-modelopt"]  # skipped (with a note) when it does not install without a GPU
OPTIONAL_TIMEOUT = 300


def pip(python: Path, *args: str, timeout: float | None = None) -> bool:
    try:
        return (
            subprocess.run([str(python), "-m", "pip", "install", *args], timeout=timeout).returncode
            == 0
        )
    except subprocess.TimeoutExpired:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, help="use (or create) this venv and keep it")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    tmp = None
    venv = args.venv
    if venv is None:
        tmp = Path(tempfile.mkdtemp(prefix="qcalc-conventions-"))
        venv = tmp / "venv"
    try:
        python = venv / "bin" / "python"
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        # torch first and alone, so nothing later resolves it to a CUDA build.
        if not pip(python, "torch==2.13.0") or not pip(python, *REQUIRED):
            print("required toolchains failed to install", file=sys.stderr)
            return 1
        for extra in OPTIONAL:
            if not pip(python, extra, timeout=OPTIONAL_TIMEOUT):
                print(
                    f"NOTE: {extra} did not install without a GPU / in time; its cases are skipped",
                    file=sys.stderr,
                )
        args.out.mkdir(parents=True, exist_ok=True)
        seed = ROOT / "sample_tensors" / "seed.npy"
        return subprocess.run([str(python), str(INNER), str(args.out), str(seed)]).returncode
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
