"""Integer grids and AIMET 2.x encoding math, in numpy only.

Every rule here follows aimet-torch 2.42 (tests/golden/NOTES.md, sections 1-5), including
operation order and the dtype each step runs in, so results are bit-identical to AIMET.
"""

from __future__ import annotations

import functools

import numpy as np

from qcalc.core.dtypes import FLOAT32, FLOAT64, finfo, opmath_dtype
from qcalc.core.spec import centre_offset


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
    mn: np.ndarray, mx: np.ndarray, num_steps: int, symmetric: bool, dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """AIMET's MinMax analyzer: observed (min, max) per cell -> raw float32 (rmin, rmax).

    `dtype` is the tensor dtype AIMET would see; each step computes in its opmath dtype and
    rounds to `dtype` where AIMET's tensors have that dtype (NOTES.md section 2).
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
    # From here on AIMET's tensors are float32 (or float64): `adj` promotes them.
    if symmetric:
        npos, nneg = n // 2, -(-n // 2)
        extra = 1 if n == 3 else 0
        umax = mx0.astype(op, copy=False) + op.type(npos) * adj
        umin = mn0.astype(op, copy=False) - op.type(nneg) * adj
        delta = np.maximum(umax / op.type(npos + extra), -umin / op.type(nneg))
        rmin = op.type(-nneg) * delta
        rmax = op.type(npos) * delta
    else:
        rmax = mx0.astype(op, copy=False) + op.type(n) * adj
        rmin = mn0.astype(op, copy=False)
    info = finfo(dtype)
    rmax = np.minimum(rmax, op.type(info.max)).astype(dtype, copy=False)
    rmin = np.maximum(rmin, op.type(info.min)).astype(dtype, copy=False)
    return rmin.astype(FLOAT32, copy=False), rmax.astype(FLOAT32, copy=False)


@_quiet
def scale_offset(
    rmin: np.ndarray,
    rmax: np.ndarray,
    qmin: int,
    qmax: int,
    symmetric: bool,
    zero_symmetric_offset: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw float32 range -> (scale, offset), float32, AIMET's rules (NOTES.md section 3).

    With `zero_symmetric_offset` a symmetric grid keeps offset 0 whatever its signedness (the
    pre-2025 AIMET rule for unsigned symmetric grids); by default the offset centres the grid.
    """
    rmin = np.asarray(rmin, dtype=FLOAT32)
    rmax = np.asarray(rmax, dtype=FLOAT32)
    num_steps = qmax - qmin
    ms = np.float32(minimum_scale(num_steps))
    scale = np.maximum(np.abs((rmax - rmin) / np.float32(num_steps)), ms)
    if symmetric:
        centre = 0 if zero_symmetric_offset else centre_offset(qmin, qmax)
        offset = np.full(scale.shape, centre, dtype=FLOAT32)
    else:
        offset = round_half_even(rmin / scale) - np.float32(qmin)
        offset = np.clip(offset, np.float32(-qmax), np.float32(-qmin))
    return scale, offset


@_quiet
def effective_range(
    scale: np.ndarray, offset: np.ndarray, qmin: int, qmax: int
) -> tuple[np.ndarray, np.ndarray]:
    """The float range a grid covers: ``scale * (offset + qmin)`` to ``scale * (offset + qmax)``."""
    return scale * (offset + np.float32(qmin)), scale * (offset + np.float32(qmax))


@_quiet
def lpbq_scales(
    rmin: np.ndarray,
    rmax: np.ndarray,
    num_steps: int,
    bitwidth: int,
    decompressed_bitwidth: int,
    block_axis: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AIMET's LPBQ (NOTES.md section 10), float32: (block scales, per-channel scale,
    integer multipliers). Each block's raw scale becomes an integer multiple, 1 to
    2^(dbw - bw), of its channel's scale: the channel's largest raw block scale / 2^(dbw - bw).
    """
    levels = np.float32(2 ** (decompressed_bitwidth - bitwidth))
    raw = np.maximum((rmax - rmin) / np.float32(num_steps), np.float32(minimum_scale(num_steps)))
    per_channel = (np.max(raw, axis=block_axis, keepdims=True) / levels).astype(FLOAT32)
    multiplier = np.clip(round_half_even(raw / per_channel), np.float32(1), levels)
    scale = (multiplier * per_channel).astype(FLOAT32)
    per_block = np.clip(round_half_even(scale / per_channel), np.float32(1), levels)
    return scale, per_channel, per_block.astype(FLOAT32)


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
