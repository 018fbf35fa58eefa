"""Min-max statistics, mergeable chunk by chunk and batch by batch, and non-finite values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from qcalc.core.dtypes import BFLOAT16, widen
from qcalc.core.kernels import kernel


@dataclass(frozen=True)
class MinMax:
    """Running min and max per encoding cell (0-d for a whole tensor, 1-d per channel)."""

    min: np.ndarray
    max: np.ndarray

    def merge(self, other: "MinMax") -> "MinMax":
        """Fold in another batch, as AIMET does: NaN in either side propagates."""
        return MinMax(np.minimum(self.min, other.min), np.maximum(self.max, other.max))


@dataclass(frozen=True)
class NonFiniteCount:
    """How many NaN, +inf and -inf values a tensor holds."""

    nan: int = 0
    posinf: int = 0
    neginf: int = 0

    @classmethod
    def of(cls, values: np.ndarray) -> "NonFiniteCount":
        """The counts of `values` (one pass per kind: call it when there are some)."""
        return cls(
            int(np.count_nonzero(np.isnan(values))),
            int(np.count_nonzero(np.isposinf(values))),
            int(np.count_nonzero(np.isneginf(values))),
        )

    def __add__(self, other: "NonFiniteCount") -> "NonFiniteCount":
        return NonFiniteCount(
            self.nan + other.nan, self.posinf + other.posinf, self.neginf + other.neginf
        )

    @property
    def inf(self) -> int:
        return self.posinf + self.neginf

    @property
    def total(self) -> int:
        return self.nan + self.posinf + self.neginf


def reduce_minmax(values: np.ndarray, axes: Optional[tuple[int, ...]]) -> MinMax:
    """Min and max over `axes` (all axes when None), keeping the reduced axes as size 1.
    NaN propagates; see `finite_minmax` to leave NaN and inf out."""
    if _last_axis_only(values, axes):
        return _reduce_last_axis(values)
    return MinMax(
        np.min(values, axis=axes, keepdims=True), np.max(values, axis=axes, keepdims=True)
    )


def finite_minmax(
    values: np.ndarray, axes: Optional[tuple[int, ...]], stats: Optional[MinMax] = None
) -> tuple[MinMax, NonFiniteCount]:
    """Min and max over `axes` of the finite values only (keepdims), and how many NaN and
    ±inf values there were: the one place qcalc tells finite values from the rest.

    Non-finite values are found for free: they make a plain min or max non-finite, so the
    masks and counts are only computed when `stats` (the plain `reduce_minmax` of `values`,
    computed here when not given) shows one. A cell without any finite value gets min = +inf
    and max = -inf, which the zero clamp of the range math turns into [0, 0].
    """
    stats = reduce_minmax(values, axes) if stats is None else stats
    if is_all_finite(stats):
        return stats, NonFiniteCount()
    finite = np.isfinite(values)
    finite_stats = MinMax(
        np.min(values, axis=axes, where=finite, initial=np.inf, keepdims=True),
        np.max(values, axis=axes, where=finite, initial=-np.inf, keepdims=True),
    )
    return finite_stats, NonFiniteCount.of(values)


def _last_axis_only(values: np.ndarray, axes: Optional[tuple[int, ...]]) -> bool:
    return (
        axes == (values.ndim - 1,)
        and values.ndim >= 2
        and values.size > 0
        and values.flags.c_contiguous
    )


def _reduce_last_axis(values: np.ndarray) -> MinMax:
    """Min and max over the last axis of a C-contiguous array. `reduceat` over the flat data
    runs one tight loop per row instead of numpy's per-row reduction set-up, which dominates
    for short rows (blocks of 32..256 elements: 1.3-1.5x faster, measured)."""
    flat = values.reshape(-1)
    starts = np.arange(0, flat.size, values.shape[-1])
    shape = values.shape[:-1] + (1,)
    return MinMax(
        np.minimum.reduceat(flat, starts).reshape(shape),
        np.maximum.reduceat(flat, starts).reshape(shape),
    )


# bfloat16 bit patterns as int16 keys that sort like the values (see _bf16_keys)
BF16_POS_INF_KEY = 0x7F80
BF16_NEG_INF_KEY = -0x7F81


def bf16_minmax(
    values: np.ndarray, axes: Optional[tuple[int, ...]], dtype=None
) -> Optional[MinMax]:
    """Min and max of C-contiguous bfloat16 data over its last axis (or over everything,
    `axes` None), as float32 (keepdims), without widening it: the reduction runs on int16
    keys that order like the values, which halves the bytes numpy reads (or, compiled, in
    one pass over the bits: qcalc.core._minmax, the same results). None when the input does
    not qualify (the caller reduces the widened values instead). `dtype`: the tensor's
    (bfloat16 bit patterns come as uint16), else `values.dtype`.

    Any NaN in a row gives NaN min and max, as np.min / np.max do. A row holding both zeros
    gives -0.0 as its min and +0.0 as its max.
    """
    name = (values.dtype if dtype is None else dtype).name
    if name != "bfloat16" or values.ndim == 0 or values.size == 0:
        return None
    if axes is None and values.flags.c_contiguous:
        rows = values.reshape(1, -1)
    elif _last_axis_only(values, axes):
        rows = values
    else:
        return None
    cols = rows.shape[-1]
    bits = rows.view(np.int16).reshape(-1)
    shape = (1,) * values.ndim if axes is None else values.shape[:-1] + (1,)
    compiled = kernel("minmax")
    if compiled is not None:
        mn, mx = np.empty(bits.size // cols, np.float32), np.empty(bits.size // cols, np.float32)
        compiled.bf16_rows(bits, cols, mn, mx)
        return MinMax(mn.reshape(shape), mx.reshape(shape))
    keys = np.right_shift(bits, 15)  # -1 for negative values, else 0: one array, in place
    np.right_shift(keys.view(np.uint16), 1, out=keys.view(np.uint16))  # 0x7FFF or 0
    np.bitwise_xor(keys, bits, out=keys)  # = _bf16_keys(bits)
    starts = np.arange(0, keys.size, cols)
    low, high = np.minimum.reduceat(keys, starts), np.maximum.reduceat(keys, starts)
    nan = (high > BF16_POS_INF_KEY) | (low < BF16_NEG_INF_KEY)
    mn = widen(_bf16_keys(low), BFLOAT16)
    mx = widen(_bf16_keys(high), BFLOAT16)
    if nan.any():
        mn[nan] = mx[nan] = np.nan
    return MinMax(mn.reshape(shape), mx.reshape(shape))


def bf16_minmax_compiled(dtype) -> bool:
    """Whether `bf16_minmax` of a tensor of `dtype` runs compiled (qcalc.core._minmax)."""
    return dtype.name == "bfloat16" and kernel("minmax") is not None


def _bf16_keys(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bits (int16) <-> keys whose int16 order is the float order: negative values
    get their magnitude bits flipped. Its own inverse. Order: -NaN < -inf < ... < -0 < +0 <
    ... < +inf < NaN."""
    return bits ^ ((bits >> 15) & np.int16(0x7FFF))


def is_all_finite(stats: MinMax) -> bool:
    """True when min and max are finite everywhere, so the data held no NaN or inf."""
    return bool(np.isfinite(stats.min).all() and np.isfinite(stats.max).all())
