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
from qcalc.core.grid import effective_range, record_zero
from qcalc.core.spec import Spec
from qcalc.core.toolchains import llama_type
from qcalc.core.trace import Trace, fmt, one, operand

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


def _pull_zero(mn: np.ndarray, mx: np.ndarray, trace=None) -> tuple[np.ndarray, np.ndarray]:
    mn0, mx0 = np.minimum(mn, mn.dtype.type(0)), np.maximum(mx, mx.dtype.type(0))
    if trace is not None:
        record_zero(trace, mn, mx, mn0, mx0, mn.dtype)
    return mn0, mx0


def _say(trace: Optional[Trace], rule: str, text, **values) -> None:
    """A step, its text made (a function of nothing) only when a trace is kept."""
    if trace is not None:
        trace.add(rule, text(), **{k: one(v) for k, v in values.items()})


def toolchain_grid(
    spec: Spec, mn: np.ndarray, mx: np.ndarray, peak=None, *, trace: Optional[Trace] = None
) -> ToolchainGrid:
    """`spec.convention`'s grid of cells with observed minimum `mn` and maximum `mx`.
    `peak`: llama.cpp Q4_0's signed value of largest magnitude per cell (None: the one of
    `mn` / `mx` with the larger magnitude, `mx` on a tie). With `trace` (one cell), every
    step is recorded, then the numbers in qcalc's meaning and the toolchain's quantizer."""
    qmin, qmax = spec.int_range
    with np.errstate(all="ignore"):
        numbers = _RULES[spec.convention](spec, _f32(mn), _f32(mx), qmin, qmax, peak, trace)
    if trace is not None:
        _record_meaning(trace, spec, numbers)
    return numbers


def _integer(scale, zero_point, multiplier=None) -> ToolchainGrid:
    """A grid with an integer zero point: x^ = (q - zp) * scale."""
    scale, zero_point = _f32(scale), _f32(zero_point) + np.float32(0)  # an integer: no -0
    return ToolchainGrid(scale, np.float32(0) - zero_point, scale, zero_point, multiplier)


def _torch(spec, mn, mx, qmin, qmax, peak, trace) -> ToolchainGrid:
    # observer.py UniformQuantizationObserverBase._calculate_qparams
    mn, mx = _pull_zero(mn, mx, trace)
    if spec.symmetric:
        absmax = np.maximum(-mn, mx)
        half = (qmax - qmin) / 2
        raw = absmax / np.float32(half)
        scale = np.maximum(raw, EPS32)
        _say(
            trace,
            "symmetric scale",
            lambda: (
                f"torch.ao divides the larger magnitude by half the grid's steps: max(-min, max) / "
                f"(({qmax} - {operand(qmin)}) / 2) = {fmt(absmax)} / {half:g} = {fmt(raw)}"
                + _floored(raw, scale, "float32 eps 2^-23")
            ),
            absmax=absmax,
            scale=scale,
        )
        centre = 0 if qmin < 0 else (qmin + qmax) // 2  # quint8 with its range given
        _say(
            trace,
            "zero point",
            lambda: (
                "A signed symmetric grid has zero point 0."
                if qmin < 0
                else "An unsigned symmetric grid with its quant range given: zero point "
                f"(qmin + qmax) // 2 = ({qmin} + {qmax}) // 2 = {centre} (128 only with "
                "torch's default range)."
            ),
            zero_point=centre,
        )
        return _integer(scale, np.full(scale.shape, centre, dtype=FLOAT32))
    raw = (mx - mn) / np.float32(qmax - qmin)
    scale = np.maximum(raw, EPS32)
    _say(
        trace,
        "scale",
        lambda: (
            f"scale = (max - min) / (qmax - qmin) = ({fmt(mx)} - {operand(mn)}) / {qmax - qmin} = "
            f"{fmt(raw)}" + _floored(raw, scale, "float32 eps 2^-23")
        ),
        scale=scale,
    )
    steps = np.rint(mn / scale)
    zero_point = np.clip(np.float32(qmin) - steps, qmin, qmax)
    _say(
        trace,
        "zero point",
        lambda: (
            f"zero point = clamp(qmin - round(min / scale), qmin, qmax) = {qmin} - "
            f"round({fmt(mn / scale)}) = {fmt(zero_point)} (halves to even)."
        ),
        zero_point=zero_point,
    )
    return _integer(scale, zero_point)


def _onnxruntime(spec, mn, mx, qmin, qmax, peak, trace) -> ToolchainGrid:
    # quant_utils.py compute_scale_zp: the range, scale and zero point in float64, the scale
    # then float32
    mn, mx = _pull_zero(mn.astype(FLOAT64), mx.astype(FLOAT64), trace)
    if spec.symmetric:
        absmax = np.maximum(np.abs(mn), np.abs(mx))
        mn, mx = -absmax, absmax
        _say(
            trace,
            "symmetric range",
            lambda: (
                f"A symmetric range is ±max(|min|, |max|) = [{fmt(mn)}, {fmt(mx)}]"
                + (" on ONNX Runtime's narrowed int8 grid [-127, 127]." if qmin == -127 else ".")
            ),
            min=mn,
            max=mx,
        )
    scale64 = (mx - mn) / (FLOAT64.type(qmax) - FLOAT64.type(qmin))
    if spec.symmetric:
        zero_point = np.full(scale64.shape, np.rint((qmin + qmax) / 2.0))
        zp_text = f"round((qmin + qmax) / 2) = round({(qmin + qmax) / 2:g})"
    else:
        zero_point = np.rint(qmin - mn / scale64)
        zp_text = f"round(qmin - min / scale) = round({qmin} - {operand(mn)} / {fmt(scale64)})"
    tiny = scale64 < TINY32
    scale32 = np.where(tiny, 1.0, scale64).astype(FLOAT32)
    zero_point = np.where(tiny, 0.0, zero_point)
    _say(
        trace,
        "scale",
        lambda: (
            f"In float64: scale = (max - min) / (qmax - qmin) = ({fmt(mx)} - {operand(mn)}) / "
            f"{qmax - qmin} = {fmt(scale64)}, "
            + (
                "below float32's smallest normal: scale 1.0 and zero point 0."
                if one(tiny)
                else f"stored as float32 {fmt(scale32)}."
            )
        ),
        scale=scale32,
    )
    if trace is not None and not one(tiny):
        _say(
            trace,
            "zero point",
            lambda: f"zero point = {zp_text} = {fmt(zero_point)} (numpy: halves to even).",
            zero_point=zero_point,
        )
    return _integer(scale32, zero_point)


def _compressed_tensors(spec, mn, mx, qmin, qmax, peak, trace) -> ToolchainGrid:
    # helpers.py calculate_qparams: the zero point from the scale as computed (0 / 0 is
    # NaN, which becomes the int8 zero point 0), then a zero scale becomes eps
    mn, mx = _pull_zero(mn, mx, trace)
    if spec.symmetric:
        absmax = np.maximum(np.abs(mn), np.abs(mx))
        half = (qmax - qmin) / 2
        scale = absmax / np.float32(half)
        zero_point = np.zeros_like(scale)
        _say(
            trace,
            "symmetric scale",
            lambda: (
                f"scale = max(|min|, |max|) / ((qmax - qmin) / 2) = {fmt(absmax)} / {half:g} = "
                f"{fmt(scale)}; zero point 0."
            ),
            scale=scale,
        )
    else:
        scale = (mx - mn) / np.float32(qmax - qmin)
        raw = np.float32(qmin) - mn / scale
        zero_point = np.rint(np.clip(raw, qmin, qmax))
        zero_point = np.where(np.isnan(zero_point), np.float32(0), zero_point)
        _say(
            trace,
            "scale",
            lambda: (
                f"scale = (max - min) / (qmax - qmin) = ({fmt(mx)} - {operand(mn)}) / "
                f"{qmax - qmin} = {fmt(scale)}."
            ),
            scale=scale,
        )
        _say(
            trace,
            "zero point",
            lambda: (
                "zero point = round(clamp(qmin - min / scale, qmin, qmax)) = "
                f"round(clamp({fmt(raw)})) = {fmt(zero_point)} (halves to even; 0 / 0 gives 0)."
            ),
            zero_point=zero_point,
        )
    floored = np.where(scale == 0, EPS32, scale)
    if trace is not None and one(scale) == 0:
        _say(trace, "zero scale", lambda: "A zero scale becomes float32 eps 2^-23.", scale=floored)
    return _integer(floored, zero_point)


def _quanto(spec, mn, mx, qmin, qmax, peak, trace) -> ToolchainGrid:
    if spec.bitwidth == 8:  # AbsmaxOptimizer: absmax / qint8.qmax, on the full int8 grid
        absmax = np.maximum(np.abs(mn), np.abs(mx))
        scale = absmax / np.float32(qmax)
        _say(
            trace,
            "symmetric scale",
            lambda: (
                f"quanto's absmax optimizer: scale = max(|min|, |max|) / {qmax} = {fmt(absmax)} / "
                f"{qmax} = {fmt(scale)}, on the full grid [{qmin}, {qmax}]; zero point 0."
            ),
            scale=scale,
        )
        return _integer(scale, np.zeros_like(scale))
    # MaxOptimizer: (max - min) over the signed type's steps, a float shift of -min
    scale = (mx - mn) / np.float32(qmax - qmin)
    shift = -mn
    _say(
        trace,
        "affine scale and shift",
        lambda: (
            f"quanto's max optimizer (min not pulled to 0): scale = (max - min) / {qmax - qmin} = "
            f"({fmt(mx)} - {operand(mn)}) / {qmax - qmin} = {fmt(scale)}, and a float shift = "
            f"-min = {fmt(shift)} stored as the zero point."
        ),
        scale=scale,
        shift=shift,
    )
    return ToolchainGrid(scale, -shift / scale, scale, shift, float_zero_point=True)


def _modelopt(spec, mn, mx, qmin, qmax, peak, trace) -> ToolchainGrid:
    amax = np.maximum(np.abs(mn), np.abs(mx))
    if spec.bitwidth == 8:  # INT8QTensor: amax / 127
        scale = amax / np.float32(127.0)
        _say(
            trace,
            "symmetric scale",
            lambda: (
                f"ModelOpt INT8: scale = amax / 127 = {fmt(amax)} / 127 = {fmt(scale)}; zero "
                "point 0."
            ),
            scale=scale,
        )
        return _integer(scale, np.zeros_like(amax))
    # INT4QTensor stores 7 / amax, computed as torch computes a number over a tensor:
    # (1 / amax) * 7
    multiplier = (np.float32(1) / amax) * np.float32(7)
    zero = np.zeros_like(amax)
    _say(
        trace,
        "multiplier",
        lambda: (
            f"ModelOpt INT4 stores the multiplier 7 / amax, computed (1 / amax) × 7 = (1 / "
            f"{fmt(amax)}) × 7 = {fmt(multiplier)}; x is multiplied by it and rounded."
        ),
        multiplier=multiplier,
    )
    return ToolchainGrid(np.float32(1) / multiplier, zero, multiplier, zero, multiplier)


def _llama_cpp(spec, mn, mx, qmin, qmax, peak, trace) -> ToolchainGrid:
    kind = llama_type(spec)
    if kind == "Q4_1":  # d = (max - min) / 15, m = min, both stored fp16
        d = (mx - mn) / np.float32(15)
        stored, block_min = _fp16(d), _fp16(mn)
        _say(
            trace,
            "Q4_1 scale and minimum",
            lambda: (
                "Q4_1 (min not pulled to 0): d = (max - min) / 15 = "
                f"({fmt(mx)} - {operand(mn)}) / 15 = {fmt(d)}, m = min; both stored as fp16: "
                f"d = {fmt(stored.astype(_F16))}, m = "
                f"{fmt(block_min.astype(_F16))}; x is quantized with 1 / d of the float32 d and "
                "the float32 min."
            ),
            d=stored,
            m=block_min,
        )
        return ToolchainGrid(
            stored, block_min / stored, stored, block_min, _inverse(d), mn, float_zero_point=True
        )
    if kind == "Q8_0":  # d = amax / 127
        amax = np.maximum(np.abs(mn), np.abs(mx))
        d = amax / np.float32(127)
        _say(
            trace,
            "Q8_0 scale",
            lambda: (
                f"Q8_0: d = amax / 127 = {fmt(amax)} / 127 = {fmt(d)}, stored as fp16 "
                f"{fmt(_fp16(d).astype(_F16))}; x is quantized with 1 / d of the float32 d = "
                f"{fmt(_inverse(d))}."
            ),
            d=_fp16(d),
        )
        return _integer(_fp16(d), np.zeros_like(d), _inverse(d))
    if peak is None:  # Q4_0: d = (the value of largest magnitude) / -8, negative or not
        peak = np.where(np.abs(mn) > np.abs(mx), mn, mx)
    d = _f32(peak) / np.float32(-8)
    _say(
        trace,
        "Q4_0 scale",
        lambda: (
            f"Q4_0: d = (the value of largest magnitude) / -8 = {fmt(_f32(peak))} / -8 = {fmt(d)}"
            + (" (negative: that value is positive)" if one(d) < 0 else "")
            + f", stored as fp16 {fmt(_fp16(d).astype(_F16))}; zero point 8 (q - 8 in [-8, 7]); x "
            f"is quantized with 1 / d of the float32 d = {fmt(_inverse(d))}."
        ),
        d=_fp16(d),
    )
    return _integer(_fp16(d), np.full(d.shape, 8, dtype=FLOAT32), _inverse(d))


def _floored(raw, scale, floor: str) -> str:
    return "." if one(raw) == one(scale) else f", raised to {floor} = {fmt(scale)}."


def _quantizer(spec: Spec, numbers: ToolchainGrid) -> str:
    """How the convention's quantizer turns x into q and back (the "quantizer" step);
    clamp(...) clamps to [qmin, qmax]."""
    convention, bits = spec.convention, spec.bitwidth
    even = "halves to even"
    if convention == "torch":
        if bits == 8:
            return f"q = clamp(round(zp + x × (1 / scale))) ({even}, quantize_per_tensor)"
        return f"q = clamp(round(x × (1 / scale)) + zp) ({even}, fake_quantize_per_*_affine)"
    if convention == "onnxruntime":
        return f"q = clamp(round(x / scale) + zp) ({even}, quantize_nparray)"
    if convention == "compressed-tensors":
        return f"q = round(clamp(x / scale + zp)) ({even})"
    if convention == "quanto":
        if bits == 8:
            return f"q = clamp(round(x / scale)) ({even}); x^ = q × scale"
        return f"q = clamp(round((x + shift) / scale)) ({even}); x^ = q × scale - shift"
    if convention == "modelopt":
        if numbers.multiplier is None:
            return f"q = clamp(round(x / scale)) ({even}); x^ = q × scale"
        return f"q = clamp(round(x × multiplier)) ({even}); x^ = q / multiplier"
    kind = llama_type(spec)
    if kind == "Q8_0":
        return "q = round(x × (1 / d)), halves away from zero; x^ = d × q"
    if kind == "Q4_0":
        return "q = trunc(x × (1 / d) + 8.5) in [0, 15]; x^ = d × (q - 8)"
    return "q = trunc((x - min) × (1 / d) + 0.5) in [0, 15]; x^ = d × q + m"


def _record_meaning(trace: Trace, spec: Spec, numbers: ToolchainGrid) -> None:
    """The numbers in qcalc's meaning and the toolchain's quantizer (one cell)."""
    scale, offset = numbers.scale, numbers.offset
    how = (
        f"offset = -zero point = {fmt(offset)}"
        if not numbers.float_zero_point
        else f"offset = {'-shift' if spec.convention == 'quanto' else 'm'} / scale = "
        f"{fmt(offset)} (not an integer level)"
    )
    trace.add(
        "qcalc's meaning",
        f"In qcalc's terms, x^ = (q + offset) × scale: scale = {fmt(scale)}, {how}.",
        scale=one(scale),
        offset=one(offset),
    )
    how = _quantizer(spec, numbers)
    if "x^" not in how:
        how += "; x^ = (q - zp) × scale"
    trace.add("quantizer", f"{spec.convention} quantizes {how}.")


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


def covered_range(
    scale: np.ndarray, offset: np.ndarray, qmin: int, qmax: int, *, trace: Optional[Trace] = None
) -> tuple[np.ndarray, np.ndarray]:
    """The float range a convention's grid covers, low end first: AIMET's effective range,
    its ends swapped where the scale is negative (llama.cpp Q4_0)."""
    lo, hi = effective_range(scale, offset, qmin, qmax)
    backwards = scale < 0
    lo, hi = np.where(backwards, hi, lo), np.where(backwards, lo, hi)
    _say(
        trace,
        "grid range",
        lambda: (
            f"The levels {qmin}..{qmax} cover [scale × (offset + qmin), scale × (offset + qmax)] = "
            f"[{fmt(lo)}, {fmt(hi)}]"
            + (" (ends swapped: the scale is negative)." if one(backwards) else ".")
        ),
        min=lo,
        max=hi,
    )
    return lo, hi


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


def quantize_dequantize(spec: Spec, x: np.ndarray, grid: ToolchainGrid) -> np.ndarray:
    """`x` through the toolchain's quantizer and back (float32)."""
    return dequantize(spec, quantize(spec, x, grid), grid)


def _round_half_away(x: np.ndarray) -> np.ndarray:
    """gguf's np_roundf: halves away from zero."""
    a = np.abs(x)
    floored = np.floor(a)
    return np.copysign(floored + np.floor(np.float32(2) * (a - floored)), x)
