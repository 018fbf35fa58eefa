"""Other toolchains' range -> scale / zero point rules and their quantizers (`--convention`),
in numpy with each toolchain's operation order and dtypes, so that every number equals what
the toolchain computes (tests/golden/conventions: cases made by the toolchains themselves).

Each rule takes the per-cell min and max (float32) and gives a `ToolchainGrid`: the numbers
as the toolchain stores them (its scale, its zero point: an integer, or a float for quanto's
shift and llama.cpp Q4_1's block minimum) and the multiplier its quantizer uses, beside the
scale and offset in qcalc's meaning, x^ = (q + offset) * scale, that records compare.
`levels` / `dequantize` are the toolchain's quantizer and dequantizer on those numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from qcalc.core.dtypes import FLOAT32, FLOAT64
from qcalc.core.spec import Spec
from qcalc.core.toolchains import llama_type

EPS32 = np.float32(np.finfo(np.float32).eps)
TINY32 = float(np.finfo(np.float32).tiny)
_F16 = np.float16


@dataclass(frozen=True, eq=False)
class ToolchainGrid:
    """A convention's numbers per cell (float32 arrays shaped like the encoding grid).

    `scale` / `offset`: qcalc's meaning (x^ = (q + offset) * scale; the offset is a float
    where the toolchain's zero point is not an integer step). `stored_scale` and
    `zero_point`: what the toolchain stores (llama.cpp: fp16 values; ModelOpt INT4: the
    multiplier 7 / amax). `multiplier`: what x is multiplied by before rounding, where the
    quantizer multiplies instead of dividing by the stored scale (llama.cpp's 1 / d from the
    unrounded d, ModelOpt INT4's 7 / amax); None where it divides.
    """

    scale: np.ndarray
    offset: np.ndarray
    stored_scale: np.ndarray
    zero_point: np.ndarray
    multiplier: Optional[np.ndarray] = None
    # llama.cpp Q4_1 subtracts each block's float32 minimum (not the fp16 one it stores)
    subtract: Optional[np.ndarray] = None
    # the zero point is a float (quanto's shift, Q4_1's block minimum), not an integer
    float_zero_point: bool = False

    def mapped(self, how: Callable[[np.ndarray], np.ndarray]) -> "ToolchainGrid":
        """The same numbers with `how` applied to every array (a reshape, a slice)."""
        return ToolchainGrid(
            **{
                f.name: how(value) if isinstance(value, np.ndarray) else value
                for f in dataclasses.fields(self)
                for value in [getattr(self, f.name)]
            }
        )


def _f32(values) -> np.ndarray:
    return np.asarray(values, dtype=FLOAT32)


def _pull_zero(mn: np.ndarray, mx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.minimum(mn, np.float32(0)), np.maximum(mx, np.float32(0))


def toolchain_grid(spec: Spec, mn: np.ndarray, mx: np.ndarray, peak=None) -> ToolchainGrid:
    """`spec.convention`'s grid of cells with observed minimum `mn` and maximum `mx`.
    `peak`: llama.cpp Q4_0's signed value of largest magnitude per cell (None: the one of
    `mn` / `mx` with the larger magnitude, `mx` on a tie)."""
    qmin, qmax = spec.int_range
    with np.errstate(all="ignore"):
        return _RULES[spec.convention](spec, _f32(mn), _f32(mx), qmin, qmax, peak)


def _integer(scale, zero_point, multiplier=None) -> ToolchainGrid:
    """A grid with an integer zero point: x^ = (q - zp) * scale."""
    scale, zero_point = _f32(scale), _f32(zero_point)
    return ToolchainGrid(scale, -zero_point, scale, zero_point, multiplier)


def _torch(spec, mn, mx, qmin, qmax, peak) -> ToolchainGrid:
    # observer.py UniformQuantizationObserverBase._calculate_qparams
    mn, mx = _pull_zero(mn, mx)
    if spec.symmetric:
        absmax = np.maximum(-mn, mx)
        scale = np.maximum(absmax / np.float32((qmax - qmin) / 2), EPS32)
        centre = 0 if qmin < 0 else (qmin + qmax) // 2  # quint8 with its range given
        return _integer(scale, np.full(scale.shape, centre, dtype=FLOAT32))
    scale = np.maximum((mx - mn) / np.float32(qmax - qmin), EPS32)
    zero_point = np.clip(np.float32(qmin) - np.rint(mn / scale), qmin, qmax)
    return _integer(scale, zero_point)


def _onnxruntime(spec, mn, mx, qmin, qmax, peak) -> ToolchainGrid:
    # quant_utils.py compute_scale_zp: the range, scale and zero point in float64, the scale
    # then float32
    mn, mx = _pull_zero(mn.astype(FLOAT64), mx.astype(FLOAT64))
    if spec.symmetric:
        absmax = np.maximum(np.abs(mn), np.abs(mx))
        mn, mx = -absmax, absmax
    scale64 = (mx - mn) / (FLOAT64.type(qmax) - FLOAT64.type(qmin))
    if spec.symmetric:
        zero_point = np.full(scale64.shape, np.rint((qmin + qmax) / 2.0))
    else:
        zero_point = np.rint(qmin - mn / scale64)
    tiny = scale64 < TINY32
    scale64 = np.where(tiny, 1.0, scale64)
    return _integer(scale64.astype(FLOAT32), np.where(tiny, 0.0, zero_point))


def _compressed_tensors(spec, mn, mx, qmin, qmax, peak) -> ToolchainGrid:
    # helpers.py calculate_qparams: the zero point from the scale as computed (0 / 0 is
    # NaN, which becomes the int8 zero point 0), then a zero scale becomes eps
    mn, mx = _pull_zero(mn, mx)
    if spec.symmetric:
        absmax = np.maximum(np.abs(mn), np.abs(mx))
        scale = absmax / np.float32((qmax - qmin) / 2)
        zero_point = np.zeros_like(scale)
    else:
        scale = (mx - mn) / np.float32(qmax - qmin)
        zero_point = np.rint(np.clip(np.float32(qmin) - mn / scale, qmin, qmax))
        zero_point = np.where(np.isnan(zero_point), np.float32(0), zero_point)
    return _integer(np.where(scale == 0, EPS32, scale), zero_point)


def _quanto(spec, mn, mx, qmin, qmax, peak) -> ToolchainGrid:
    if spec.bitwidth == 8:  # AbsmaxOptimizer: absmax / qint8.qmax, on the full int8 grid
        scale = np.maximum(np.abs(mn), np.abs(mx)) / np.float32(qmax)
        return _integer(scale, np.zeros_like(scale))
    # MaxOptimizer: (max - min) over the signed type's steps, a float shift of -min
    scale = (mx - mn) / np.float32(qmax - qmin)
    shift = -mn
    return ToolchainGrid(scale, -shift / scale, scale, shift, float_zero_point=True)


def _modelopt(spec, mn, mx, qmin, qmax, peak) -> ToolchainGrid:
    amax = np.maximum(np.abs(mn), np.abs(mx))
    if spec.bitwidth == 8:  # INT8QTensor: amax / 127
        return _integer(amax / np.float32(127.0), np.zeros_like(amax))
    # INT4QTensor stores 7 / amax, computed as torch computes a number over a tensor:
    # (1 / amax) * 7
    multiplier = (np.float32(1) / amax) * np.float32(7)
    zero = np.zeros_like(amax)
    return ToolchainGrid(np.float32(1) / multiplier, zero, multiplier, zero, multiplier)


def _llama_cpp(spec, mn, mx, qmin, qmax, peak) -> ToolchainGrid:
    kind = llama_type(spec)
    if kind == "Q4_1":  # d = (max - min) / 15, m = min, both stored fp16
        d = (mx - mn) / np.float32(15)
        stored, block_min = _fp16(d), _fp16(mn)
        return ToolchainGrid(
            stored, block_min / stored, stored, block_min, _inverse(d), mn, float_zero_point=True
        )
    if kind == "Q8_0":  # d = amax / 127
        d = np.maximum(np.abs(mn), np.abs(mx)) / np.float32(127)
        return _integer(_fp16(d), np.zeros_like(d), _inverse(d))
    if peak is None:  # Q4_0: d = (the value of largest magnitude) / -8, negative or not
        peak = np.where(np.abs(mn) > np.abs(mx), mn, mx)
    d = _f32(peak) / np.float32(-8)
    return _integer(_fp16(d), np.full(d.shape, 8, dtype=FLOAT32), _inverse(d))


def _fp16(values: np.ndarray) -> np.ndarray:
    """float32 values as stored in fp16 (round to nearest even), widened back exactly."""
    return values.astype(_F16).astype(FLOAT32)


def _inverse(d: np.ndarray) -> np.ndarray:
    """llama.cpp's 1 / d, 0 where d is 0."""
    return np.where(d == 0, np.float32(0), np.float32(1) / d).astype(FLOAT32)


_RULES = {
    "torch": _torch,
    "onnxruntime": _onnxruntime,
    "compressed-tensors": _compressed_tensors,
    "quanto": _quanto,
    "modelopt": _modelopt,
    "llama.cpp": _llama_cpp,
}


def levels(spec: Spec, x: np.ndarray, grid: ToolchainGrid) -> np.ndarray:
    """The toolchain's integer levels of float32 `x` before its clamp (float32), with the
    grid's arrays broadcast against `x`. `quantize` clamps them to the grid."""
    scale, zp, mult = grid.stored_scale, grid.zero_point, grid.multiplier
    convention = spec.convention
    with np.errstate(all="ignore"):
        if convention == "llama.cpp":
            kind = llama_type(spec)
            if kind == "Q8_0":
                return _round_half_away(x * mult)
            if kind == "Q4_0":
                return np.trunc(x * mult + np.float32(8.5))
            return np.trunc((x - grid.subtract) * mult + np.float32(0.5))
        if convention == "modelopt" and mult is not None:
            return np.rint(x * mult)
        if convention == "quanto" and spec.bitwidth != 8:
            return np.rint((x + zp) / scale)
        if convention == "compressed-tensors":
            return np.rint(x / scale + zp)
        if convention == "torch":
            inverse = np.float32(1) / scale
            if spec.bitwidth == 8:  # quantize_per_tensor / _per_channel (FBGEMM)
                return np.rint(zp + x * inverse)
            return np.rint(x * inverse) + zp  # fake_quantize_*_affine: no 4-bit dtype
        return np.rint(x / scale) + zp


def quantize(spec: Spec, x: np.ndarray, grid: ToolchainGrid) -> np.ndarray:
    """The toolchain's integers of `x` on its grid (float32 holding integers). A NaN level
    (0 / 0 on a zero scale) stores the integer 0, as the toolchains' float -> integer casts
    give it on x86: the level 0, or -8 for ModelOpt INT4 (which stores q + 8)."""
    qmin, qmax = spec.int_range
    q = np.clip(levels(spec, x, grid), np.float32(qmin), np.float32(qmax))
    stores_zero = qmin if spec.convention == "modelopt" and grid.multiplier is not None else 0
    return np.where(np.isnan(q), np.float32(stores_zero), q)


def dequantize(spec: Spec, q: np.ndarray, grid: ToolchainGrid) -> np.ndarray:
    """The toolchain's x^ of integers `q` (float32)."""
    scale, zp = grid.stored_scale, grid.zero_point
    with np.errstate(all="ignore"):
        if spec.convention == "llama.cpp" and llama_type(spec) == "Q4_1":
            return q * scale + zp
        if spec.convention == "quanto" and spec.bitwidth != 8:
            return q * scale - zp
        if spec.convention == "modelopt" and grid.multiplier is not None:
            return q / scale
        return (q - zp) * scale


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """gguf's np_roundf: halves away from zero."""
    a = np.abs(x)
    floored = np.floor(a)
    return np.copysign(floored + np.floor(np.float32(2) * (a - floored)), x)
