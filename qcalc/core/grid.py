"""Integer grids and AIMET 2.x encoding math, in numpy only.

Every rule here follows aimet-torch 2.42 (tests/golden/NOTES.md, sections 1-5), including
operation order and the dtype each step runs in, so results are bit-identical to AIMET.
"""

from __future__ import annotations

import functools
from typing import Optional

import numpy as np

from qcalc.core.dtypes import FLOAT32, FLOAT64, finfo, opmath_dtype
from qcalc.core.spec import centre_offset
from qcalc.core.trace import Trace, add, fmt, one, operand


def _quiet(fn):
    """Overflow to inf and NaN propagation are AIMET's behaviour here, not accidents."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)

    return wrapper


def round_half_even(x: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, ties to even (AIMET's and torch's rounding)."""
    return np.rint(x)


def minimum_scale(num_steps: int) -> float:
    """Smallest scale AIMET allows for a grid of `num_steps` steps (a Python double)."""
    return min(float(np.finfo(np.float32).eps), 0.01 / num_steps)


@_quiet
def minmax_range(
    mn: np.ndarray,
    mx: np.ndarray,
    num_steps: int,
    symmetric: bool,
    dtype: np.dtype,
    *,
    trace: Optional[Trace] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """AIMET's MinMax analyzer: observed (min, max) per cell -> raw float32 (rmin, rmax).

    `dtype` is the tensor dtype AIMET would see; each step computes in its opmath dtype and
    rounds to `dtype` where AIMET's tensors have that dtype (NOTES.md section 2). With a
    `trace` (and one cell's min and max), each rule records its step.
    """
    dtype = np.dtype(dtype)
    op = opmath_dtype(dtype)
    n = num_steps
    mn = np.asarray(mn).astype(dtype, copy=False)
    mx = np.asarray(mx).astype(dtype, copy=False)
    mn0 = np.minimum(mn.astype(op, copy=False), op.type(0)).astype(dtype, copy=False)
    mx0 = np.maximum(mx.astype(op, copy=False), op.type(0)).astype(dtype, copy=False)
    span = (mx0.astype(op, copy=False) - mn0.astype(op, copy=False)).astype(dtype, copy=False)
    diff = (span.astype(op, copy=False) / op.type(n)).astype(dtype, copy=False)
    ms = np.float32(minimum_scale(n))
    adj = np.where(diff.astype(op, copy=False) < ms, ms, np.float32(0))
    if trace is not None:
        record_zero(trace, mn, mx, mn0, mx0, dtype)
        record_minimum_scale(trace, mn0, mx0, diff, n, ms, adj, symmetric)
    # From here on AIMET's tensors are float32 (or float64): `adj` promotes them.
    if symmetric:
        npos, nneg = n // 2, -(-n // 2)
        extra = 1 if n == 3 else 0
        umax = mx0.astype(op, copy=False) + op.type(npos) * adj
        umin = mn0.astype(op, copy=False) - op.type(nneg) * adj
        up, down = umax / op.type(npos + extra), -umin / op.type(nneg)
        delta = np.maximum(up, down)
        rmin = op.type(-nneg) * delta
        rmax = op.type(npos) * delta
        if trace is not None:
            record_delta(trace, umin, umax, up, down, delta, n, rmin, rmax)
    else:
        rmax = mx0.astype(op, copy=False) + op.type(n) * adj
        rmin = mn0.astype(op, copy=False)
        if trace is not None:
            record_asymmetric(trace, rmin, rmax, n, ms, one(adj) != 0)
    info = finfo(dtype)
    unclamped = (rmin, rmax)
    rmax = np.minimum(rmax, op.type(info.max)).astype(dtype, copy=False)
    rmin = np.maximum(rmin, op.type(info.min)).astype(dtype, copy=False)
    if trace is not None:
        record_dtype_range(trace, unclamped, (rmin, rmax), dtype, float(info.max))
    return rmin.astype(FLOAT32, copy=False), rmax.astype(FLOAT32, copy=False)


def _in(dtype: np.dtype) -> str:
    """ " in float16" where AIMET's tensors are not float32 (the steps say where they round)."""
    return "" if np.dtype(dtype) == FLOAT32 else f" (in {np.dtype(dtype).name})"


def record_zero(trace: Trace, mn, mx, mn0, mx0, dtype=FLOAT32) -> None:
    """The "zero in range" step: [min, max] stretched to hold 0 (min-max and percentile)."""
    changed = not (bits_equal(mn, mn0) and bits_equal(mx, mx0))
    add(
        trace, "zero in range",
        "Zero must be exactly representable, so the range is stretched to include it: "
        f"min({fmt(mn)}, 0) = {fmt(mn0)} and max({fmt(mx)}, 0) = {fmt(mx0)}{_in(dtype)}"
        + ("." if changed else " (already there)."),
        min=one(mn0), max=one(mx0), changed=changed,
    )  # fmt: skip


def record_minimum_scale(trace: Trace, mn0, mx0, step, n: int, ms, adj, symmetric: bool) -> None:
    """The "minimum scale" step: the grid step the range asks for, against AIMET's minimum
    (`adj` is the minimum where the range is widened, else 0)."""
    widened = bool(one(adj))
    asked = f"(max - min) / {n} = ({fmt(mx0)} - {operand(mn0)}) / {n} = {fmt(step)}"
    rule = f"the minimum scale min(2^-23, 0.01 / {n}) = {fmt(ms)}"
    if not widened:
        text = f"The step this range asks for, {asked}, is not below {rule}: no widening."
    elif symmetric:
        text = (
            f"The step this range asks for, {asked}, is below {rule}: the range is widened by "
            f"{n // 2} × {fmt(ms)} above and {-(-n // 2)} × {fmt(ms)} below."
        )
    else:
        text = (
            f"The step this range asks for, {asked}, is below {rule}: max is raised by "
            f"{n} × {fmt(ms)}."
        )
    add(
        trace, "minimum scale", text,
        step=one(step), minimum_scale=one(ms), num_steps=n, widened=widened,
    )  # fmt: skip


def record_asymmetric(trace: Trace, rmin, rmax, n: int, ms, widened: bool) -> None:
    """The "asymmetric range" step."""
    add(
        trace, "asymmetric range",
        f"An asymmetric grid spans the range itself: [{fmt(rmin)}, {fmt(rmax)}]"
        + (f" (max + {n} × {fmt(ms)})." if widened else "."),
        min=one(rmin), max=one(rmax),
    )  # fmt: skip


def record_delta(
    trace: Trace, umin, umax, up, down, delta, n: int, rmin, rmax, divisor: Optional[int] = None
) -> None:
    """The "symmetric delta" and "symmetric range" steps; the positive side is divided by
    `divisor` (default: min-max's, n // 2, or 2 on the 2-bit grid)."""
    npos, nneg = n // 2, -(-n // 2)
    if divisor is None:
        divisor = npos + (1 if n == 3 else 0)
    a, b = one(up), one(down)
    side = "the positive side (max)" if a > b else "the negative side (min)" if b > a else None
    side = side or ("both sides" if a == b else "NaN")
    two_bit = " (AIMET divides the 2-bit grid's positive side by 2)" if divisor != npos else ""
    add(
        trace, "symmetric delta",
        f"A symmetric grid has one step size delta on both sides of zero: delta = "
        f"max(max / {divisor}, -min / {nneg}) = max({fmt(umax)} / {divisor}, "
        f"{fmt(-np.asarray(umin))} / {nneg}) = max({fmt(up)}, {fmt(down)}) = {fmt(delta)}, "
        f"set by {side}{two_bit}.",
        delta=one(delta), positive=a, negative=b, side=side.split(" (")[0],
    )  # fmt: skip
    add(
        trace, "symmetric range",
        f"The range is [-{nneg} × delta, {npos} × delta] = [{fmt(rmin)}, {fmt(rmax)}].",
        min=one(rmin), max=one(rmax),
    )  # fmt: skip


def record_dtype_range(trace: Trace, before, after, dtype, largest: float) -> None:
    """The "tensor dtype" step, when clamping to the dtype's range or rounding to it changed
    the range (float16 / bfloat16 arithmetic, overflow)."""
    if bits_equal(before[0], after[0]) and bits_equal(before[1], after[1]):
        return
    add(
        trace, "tensor dtype",
        f"In the tensor's dtype {np.dtype(dtype).name} (clamped to ±{fmt(largest)}, rounded) "
        f"the range is [{fmt(after[0])}, {fmt(after[1])}].",
        min=one(after[0]), max=one(after[1]),
    )  # fmt: skip


def bits_equal(a, b) -> bool:
    """Whether two one-cell values are the same value of the same dtype, bit for bit."""
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.tobytes() == b.tobytes()


@_quiet
def scale_offset(
    rmin: np.ndarray,
    rmax: np.ndarray,
    qmin: int,
    qmax: int,
    symmetric: bool,
    zero_symmetric_offset: bool = False,
    *,
    trace: Optional[Trace] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw float32 range -> (scale, offset), float32, AIMET's rules (NOTES.md section 3).

    With `zero_symmetric_offset` a symmetric grid keeps offset 0 whatever its signedness (the
    pre-2025 AIMET rule for unsigned symmetric grids); by default the offset centres the grid.
    With a `trace` (one cell's range), the scale and offset rules record their steps.
    """
    rmin = np.asarray(rmin, dtype=FLOAT32)
    rmax = np.asarray(rmax, dtype=FLOAT32)
    num_steps = qmax - qmin
    ms = np.float32(minimum_scale(num_steps))
    step = (rmax - rmin) / np.float32(num_steps)
    scale = np.maximum(np.abs(step), ms)
    if trace is not None:
        record_scale(trace, rmin, rmax, num_steps, step, ms, scale)
    if symmetric:
        centre = 0 if zero_symmetric_offset else centre_offset(qmin, qmax)
        offset = np.full(scale.shape, centre, dtype=FLOAT32)
        if trace is not None:
            record_symmetric_offset(trace, qmin, qmax, centre, zero_symmetric_offset)
    else:
        quotient = rmin / scale
        rounded = round_half_even(quotient)
        offset = np.clip(rounded - np.float32(qmin), np.float32(-qmax), np.float32(-qmin))
        if trace is not None:
            record_offset(trace, rmin, scale, quotient, rounded, qmin, qmax, offset)
    return scale, offset


def record_scale(trace: Trace, rmin, rmax, n: int, step, ms, scale) -> None:
    """The "scale" step: |range| / steps, at least the minimum scale."""
    floor = "" if one(scale) == abs(one(step)) else f", raised to the minimum {fmt(ms)}"
    add(
        trace, "scale",
        f"The scale is the range over the grid's {n} steps: scale = |max - min| / {n} = "
        f"|{fmt(rmax)} - {operand(rmin)}| / {n} = {fmt(np.abs(step))}{floor}"
        + ("" if floor else f" (at least {fmt(ms)})") + ".",
        scale=one(scale), num_steps=n, minimum_scale=one(ms),
    )  # fmt: skip


def record_symmetric_offset(trace: Trace, qmin: int, qmax: int, centre: int, zero: bool) -> None:
    """The "symmetric offset" step: the fixed offset of a symmetric grid."""
    if zero and centre_offset(qmin, qmax) != 0:
        text = (
            "--symmetric-offset zero keeps the offset of this symmetric unsigned grid at 0 "
            f"(AIMET before 2025): levels {qmin}..{qmax} sit on [0, {qmax} × scale] and "
            "negative values clip to 0."
        )
    else:
        text = (
            f"A symmetric grid's offset is fixed at the grid's centre: offset = "
            f"-ceil(({qmin} + {qmax}) / 2) = {centre}."
        )
    add(trace, "symmetric offset", text, offset=centre)


def record_offset(trace: Trace, rmin, scale, quotient, rounded, qmin: int, qmax: int, offset):
    """The "offset" step: min / scale rounded half to even, shifted by qmin, clamped."""
    clamped = one(offset) != one(rounded) - qmin
    add(
        trace, "offset",
        f"The offset puts min on a level: offset = clamp(round(min / scale) - qmin, "
        f"-qmax, -qmin) = round({fmt(rmin)} / {fmt(scale)}) - {operand(np.int64(qmin))} = "
        f"round({fmt(quotient)}) - {operand(np.int64(qmin))} = {fmt(offset)}"
        + (f" (clamped to [{-qmax}, {-qmin}])" if clamped else "")
        + " (rounded half to even).",
        quotient=one(quotient), rounded=one(rounded), offset=one(offset), clamped=clamped,
    )  # fmt: skip


@_quiet
def effective_range(
    scale: np.ndarray, offset: np.ndarray, qmin: int, qmax: int, *, trace: Optional[Trace] = None
) -> tuple[np.ndarray, np.ndarray]:
    """The float range a grid covers: ``scale * (offset + qmin)`` to ``scale * (offset + qmax)``."""
    lo, hi = scale * (offset + np.float32(qmin)), scale * (offset + np.float32(qmax))
    if trace is not None:
        add(
            trace, "grid range",
            f"The grid's levels {qmin}..{qmax} cover [scale × (offset + qmin), scale × "
            f"(offset + qmax)] = [{fmt(scale)} × ({fmt(offset)} + {operand(np.int64(qmin))}), "
            f"{fmt(scale)} × ({fmt(offset)} + {qmax})] = [{fmt(lo)}, {fmt(hi)}]: the min and "
            "max reported.",
            min=one(lo), max=one(hi), qmin=qmin, qmax=qmax,
        )  # fmt: skip
    return lo, hi


@_quiet
def lpbq_scales(
    rmin: np.ndarray,
    rmax: np.ndarray,
    num_steps: int,
    bitwidth: int,
    decompressed_bitwidth: int,
    block_axis: int,
    *,
    trace: Optional[Trace] = None,
    block: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AIMET's LPBQ (NOTES.md section 10), float32: (block scales, per-channel scale,
    integer multipliers). Each block's raw scale becomes an integer multiple, 1 to
    2^(dbw - bw), of its channel's scale: the channel's largest raw block scale / 2^(dbw - bw).

    With a `trace`, the arrays hold one channel's blocks and the steps of block `block` (its
    index along `block_axis`) are recorded.
    """
    levels = np.float32(2 ** (decompressed_bitwidth - bitwidth))
    raw = np.maximum((rmax - rmin) / np.float32(num_steps), np.float32(minimum_scale(num_steps)))
    largest = np.max(raw, axis=block_axis, keepdims=True)
    per_channel = (largest / levels).astype(FLOAT32)
    quotient = raw / per_channel
    multiplier = np.clip(round_half_even(quotient), np.float32(1), levels)
    scale = (multiplier * per_channel).astype(FLOAT32)
    per_block = np.clip(round_half_even(scale / per_channel), np.float32(1), levels)
    if trace is not None:
        _record_lpbq(trace, block, block_axis, num_steps, bitwidth, decompressed_bitwidth,
                     raw, per_channel, quotient, multiplier, scale)  # fmt: skip
    return scale, per_channel, per_block.astype(FLOAT32)


def _record_lpbq(trace, block, axis, n, bw, dbw, raw, per_channel, quotient, multiplier, scale):
    def of_block(values):
        return np.take(values, [block], axis=axis)

    raws = np.asarray(raw).reshape(-1)
    top = int(np.argmax(raws))
    levels = 2 ** (dbw - bw)
    add(
        trace, "block raw scale",
        f"Block {block}'s raw scale is its range over {n} steps, at least the minimum scale: "
        f"{fmt(of_block(raw))}.",
        raw_scale=one(of_block(raw)),
    )  # fmt: skip
    add(
        trace, "channel scale",
        f"The channel's float scale is its largest raw block scale, {fmt(raws[top])} (block "
        f"{top} of {raws.size}), over 2^({dbw} - {bw}) = {levels}: {fmt(per_channel)}.",
        per_channel_scale=one(per_channel), largest_block=top, blocks=int(raws.size),
    )  # fmt: skip
    add(
        trace, "block multiplier",
        f"Block {block}'s integer multiplier is clamp(round(raw scale / channel scale), 1, "
        f"{levels}) = round({fmt(of_block(raw))} / {fmt(per_channel)}) = "
        f"round({fmt(of_block(quotient))}) = {fmt(of_block(multiplier))}.",
        multiplier=one(of_block(multiplier)), quotient=one(of_block(quotient)),
    )  # fmt: skip
    add(
        trace, "block scale",
        f"Block {block}'s scale is multiplier × channel scale = {fmt(of_block(multiplier))} × "
        f"{fmt(per_channel)} = {fmt(of_block(scale))}; LPBQ grids are symmetric signed: "
        "offset 0.",
        scale=one(of_block(scale)), offset=0,
    )  # fmt: skip


def _represents(dtype: np.dtype, values: list[int]) -> bool:
    return all(float(np.asarray(v, dtype=FLOAT64).astype(dtype)) == v for v in values)


def internal_dtype(dtype: np.dtype, qmin: int, qmax: int) -> np.dtype:
    """The dtype AIMET's quantizer computes in: the input dtype when it is numerically stable
    for the grid (levels near both ends exact and eps <= 0.25 / steps), else float32, else
    float64 (NOTES.md section 4)."""
    levels = [qmin, qmin + 1, qmax - 1, qmax]
    for candidate in (np.dtype(dtype), FLOAT32, FLOAT64):
        eps = float(finfo(candidate).eps)
        if _represents(candidate, levels) and eps <= 0.25 / (qmax - qmin):
            return candidate
    return FLOAT64


def _prepare(x, scale, offset, qmin, qmax, clamp: bool = True):
    x = np.asarray(x)
    work = internal_dtype(x.dtype, qmin, qmax)
    op = opmath_dtype(work)

    def step(value):  # one tensor op in `work`: computed in opmath, rounded to `work`
        return np.asarray(value).astype(work)

    xs = step(x)
    s = step(scale)
    o = step(offset)
    q = step(round_half_even(step(xs.astype(op) / s.astype(op))).astype(op) - o.astype(op))
    if clamp:
        q = step(np.clip(q.astype(op), op.type(qmin), op.type(qmax)))
    return x.dtype, work, op, step, q, s, o


@_quiet
def unclamped_levels(x: np.ndarray, scale, offset, qmin: int, qmax: int) -> np.ndarray:
    """``round(x / scale) - offset`` before the clamp to [qmin, qmax], in the (float) dtype
    `quantize` computes in for this grid: off-grid values are the elements it clips."""
    return _prepare(x, scale, offset, qmin, qmax, clamp=False)[4]


@_quiet
def quantize(x: np.ndarray, scale, offset, qmin: int, qmax: int) -> np.ndarray:
    """Integer grid values ``clamp(round(x / scale) - offset, qmin, qmax)`` in x's dtype.

    Raises ValueError when x's dtype cannot hold the grid (e.g. float16 with 16 bits), as
    AIMET's Quantize does.
    """
    x = np.asarray(x)
    if not _represents(x.dtype, [qmin, qmax]):
        raise ValueError(
            f"{x.dtype} is unable to represent quantized output of range [{qmin}, {qmax}]"
        )
    in_dtype, _, _, _, q, _, _ = _prepare(x, scale, offset, qmin, qmax)
    return q.astype(in_dtype)


@_quiet
def quantize_dequantize(x: np.ndarray, scale, offset, qmin: int, qmax: int) -> np.ndarray:
    """Fake-quantize: ``(clamp(round(x / scale) - offset, qmin, qmax) + offset) * scale``.

    Matches AIMET's QuantizeDequantize module call (its autograd path), in x's dtype.
    """
    in_dtype, _, op, step, q, s, o = _prepare(x, scale, offset, qmin, qmax)
    out = step(step(q.astype(op) + o.astype(op)).astype(op) * s.astype(op))
    return out.astype(in_dtype)
