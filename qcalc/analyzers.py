"""Calibration statistics, mergeable chunk by chunk and batch by batch (numpy only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


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
    def total(self) -> int:
        return self.nan + self.posinf + self.neginf


def _other_axes(ndim: int, keep_axis: Optional[int]) -> Optional[tuple[int, ...]]:
    if keep_axis is None:
        return None
    return tuple(i for i in range(ndim) if i != keep_axis)


def reduce_minmax(
    values: np.ndarray, keep_axis: Optional[int], finite_only: bool = False
) -> MinMax:
    """Min and max over every axis but `keep_axis` (all axes when None).

    With `finite_only`, NaN and +-inf are left out; a cell with no finite value gets
    min = +inf and max = -inf, which the zero clamp of the range math turns into [0, 0].
    """
    axes = _other_axes(values.ndim, keep_axis)
    if not finite_only:
        return MinMax(np.min(values, axis=axes), np.max(values, axis=axes))
    finite = np.isfinite(values)
    return MinMax(
        np.min(values, axis=axes, where=finite, initial=np.inf),
        np.max(values, axis=axes, where=finite, initial=-np.inf),
    )


def is_all_finite(stats: MinMax) -> bool:
    """True when min and max are finite everywhere, so the data held no NaN or inf."""
    return bool(np.isfinite(stats.min).all() and np.isfinite(stats.max).all())
