"""Every set of allowed values, declared once: the Literal types that annotate settings (and
give the command line its choices) and their tuples for validation. No numpy here, so the
command line's option declarations import nothing heavy."""

from __future__ import annotations

from typing import Literal, get_args

Granularity = Literal["per-tensor", "per-channel", "per-block", "lpbq"]
Analyzer = Literal["minmax", "percentile", "sqnr", "tf-enhanced"]
SymmetricOffset = Literal["centered", "zero"]
ComputeDtype = Literal["float32", "input"]
NonFinite = Literal["error", "ignore", "keep"]
Kind = Literal["param", "activation"]  # a tensor's role: positional inputs / --activations
Version = Literal["0.6.1", "1.0.0", "2.0.0", "2.1.0"]  # AIMET encodings files
# Whose rules turn a range into scale and zero point (qcalc.core.toolchains)
Convention = Literal[
    "aimet", "torch", "onnxruntime", "compressed-tensors", "quanto", "modelopt", "llama.cpp"
]

VERSIONS: tuple[str, ...] = get_args(Version)
