"""What each toolchain convention offers (`--convention`): its grids, its default signedness
and the flag combinations it supports, with the source file of its formula. No numpy here:
`Spec` checks a convention's flags when it is built (qcalc.core.conventions does the math).

Conventions other than AIMET take the per-cell min / max of the data (--analyzer minmax) and
compute in float32 with the toolchain's own operation order; they have no strict-symmetric,
zero-offset, LPBQ or input-dtype variants (those are AIMET's). Their blocks run along the
last axis of a rank-2 tensor (llama.cpp's rows, quanto's groups, ModelOpt's and
compressed-tensors' blocks / groups), checked per tensor when it is encoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from qcalc.core.spec import Spec


@dataclass(frozen=True)
class Toolchain:
    """One convention: the toolchain (package) it follows, the source file of its formula,
    and a phrase naming what it supports (for messages and the help)."""

    name: str
    package: str
    source: str
    supports: str


TOOLCHAINS = {
    t.name: t
    for t in (
        Toolchain(
            "aimet", "aimet-torch 2.42", "aimet_torch/v2/quantization/encoding_analyzer.py",
            "every flag",
        ),
        Toolchain(
            "torch", "torch.ao 2.13", "torch/ao/quantization/observer.py",
            "-b 2..8, symmetric or not, signed or not, per tensor or per channel",
        ),
        Toolchain(
            "onnxruntime", "onnxruntime 1.32",
            "onnxruntime/python/tools/quantization/quant_utils.py",
            "-b 4 or 8, symmetric or not, signed or not, per tensor or per channel",
        ),
        Toolchain(
            "compressed-tensors", "compressed-tensors 0.20",
            "compressed_tensors/quantization/utils/helpers.py",
            "-b 2..8 signed grids, symmetric or not, per tensor, per channel (axis 0) or in "
            "groups (--block-size along the last axis)",
        ),
        Toolchain(
            "quanto", "optimum-quanto 0.2.7",
            "optimum/quanto/tensor/optimizers/{absmax,max}_optimizer.py",
            "qint8 (-b 8 --symmetric, per tensor or per channel) and qint2 / qint4 (-b 2 or 4 "
            "--asymmetric, per channel or in groups along the last axis)",
        ),
        Toolchain(
            "modelopt", "nvidia-modelopt 0.47",
            "modelopt/torch/quantization/qtensor/{int8,int4}_tensor.py",
            "INT8 (-b 8 --symmetric, per tensor or per channel) and INT4 blocks (-b 4 "
            "--symmetric --block-size B)",
        ),
        Toolchain(
            "llama.cpp", "gguf-py 0.19 (ggml-quants.c)", "gguf-py/gguf/quants.py",
            "Q8_0 (-b 8 --symmetric --block-size 32), Q4_0 (-b 4 --symmetric --block-size 32) "
            "and Q4_1 (-b 4 --block-size 32)",
        ),
    )
}  # fmt: skip


def default_signed(convention: str, symmetric: bool, bitwidth: int) -> bool:
    """The grid's signedness when --signed / --unsigned is not given: AIMET's rule (signed
    iff symmetric) unless the toolchain fixes it."""
    if convention == "compressed-tensors":
        return True
    if convention == "quanto":
        return bitwidth == 8
    if convention == "llama.cpp":
        return bitwidth == 8
    if convention == "modelopt":
        return True
    return symmetric


def integer_grid(convention: str, bitwidth: int, signed: bool, symmetric: bool) -> tuple[int, int]:
    """(qmin, qmax) of a convention's grid (strict-symmetric grids are AIMET's alone)."""
    if convention == "onnxruntime" and symmetric and signed and bitwidth == 8:
        return -127, 127  # get_qmin_qmax_for_qType: symmetric INT8 drops -128
    if signed:
        return -(2 ** (bitwidth - 1)), 2 ** (bitwidth - 1) - 1
    return 0, 2**bitwidth - 1


def llama_type(spec: "Spec") -> str:
    """The ggml block type a llama.cpp spec describes."""
    if spec.bitwidth == 8:
        return "Q8_0"
    return "Q4_0" if spec.symmetric else "Q4_1"


def needs_peaks(spec: "Spec") -> bool:
    """Whether the convention needs, beyond each block's min and max, its first value of
    largest magnitude (llama.cpp Q4_0's scale is that value over -8)."""
    return spec.convention == "llama.cpp" and llama_type(spec) == "Q4_0"


def unsupported(spec: "Spec") -> Optional[str]:
    """Why `spec`'s convention cannot compute it (a phrase for a one-line error), or None."""
    convention = spec.convention
    if convention == "aimet":
        return None
    aimet_only = [
        (spec.analyzer != "minmax", f"--analyzer {spec.analyzer}"),
        (spec.strict_symmetric, "--strict-symmetric"),
        (spec.symmetric_offset != "centered", f"--symmetric-offset {spec.symmetric_offset}"),
        (spec.compute_dtype != "float32", f"--compute-dtype {spec.compute_dtype}"),
        (spec.lpbq, "--lpbq"),
    ]
    for refused, flag in aimet_only:
        if refused:
            return f"{flag} is AIMET's; convention {convention} takes min-max ranges in float32"
    if not _offered(spec):
        return f"convention {convention} offers {TOOLCHAINS[convention].supports}"
    return None


def _offered(spec: "Spec") -> bool:
    bits, symmetric, signed = spec.bitwidth, spec.symmetric, spec.is_signed
    blocks = spec.block_size is not None
    channel = spec.per_channel or blocks
    convention = spec.convention
    if convention == "torch":
        return bits <= 8 and not blocks
    if convention == "onnxruntime":
        return bits in (4, 8) and not blocks
    if convention == "compressed-tensors":
        return bits <= 8 and signed and (not channel or spec.axis == 0)
    if convention == "quanto":
        if bits == 8:
            return symmetric and signed and not blocks and spec.axis in (0, -1)
        return bits in (2, 4) and not symmetric and not signed and channel and spec.axis in (0, -1)
    if convention == "modelopt":
        if bits == 8:
            return symmetric and signed and not blocks
        return bits == 4 and symmetric and signed and blocks
    if convention == "llama.cpp":
        if spec.block_size != 32:
            return False
        if bits == 8:
            return symmetric and signed
        return bits == 4 and not signed
    return False


def shape_refused(spec: "Spec", shape: tuple[int, ...]) -> Optional[str]:
    """Why `spec`'s convention cannot encode a tensor of `shape` (a phrase), or None: other
    toolchains' blocks run along the last axis of a matrix with channels on axis 0."""
    if spec.convention == "aimet" or spec.block_size is None:
        return None
    rank = len(shape)
    if rank == 2 and spec.axis in (0, -2) and spec.block_axis in (1, -1):
        return None
    if rank != 2:
        return f"shape {list(shape)} is not a matrix: {spec.convention} blocks run along its rows"
    return (
        f"convention {spec.convention} takes blocks along the rows of a matrix (--axis 0 "
        f"--block-axis -1), not --axis {spec.axis} --block-axis {spec.block_axis}"
    )
