"""Tensor dtypes: exact, cheap widening of stored values to the dtype statistics run in."""

from __future__ import annotations

import numpy as np

FLOAT32 = np.dtype(np.float32)
FLOAT64 = np.dtype(np.float64)


def stat_dtype(dtype: np.dtype) -> np.dtype:
    """float64 for float64 tensors, float32 for everything narrower (exact for all of them)."""
    return FLOAT64 if np.dtype(dtype).name == "float64" else FLOAT32  # either byte order


def widen(values: np.ndarray) -> np.ndarray:
    """`values` converted exactly to `stat_dtype`; float32/float64 pass through uncopied.

    bfloat16 -> float32 by ml_dtypes' cast (exact: a bf16 is the top half of a float32); one
    pass, faster than the uint16 -> uint32 shift it replaced (two passes).
    """
    dtype = values.dtype
    if dtype in (FLOAT32, FLOAT64):
        return values
    return values.astype(stat_dtype(dtype))
