"""Tensor dtypes: exact, cheap widening of stored values to the dtype statistics run in."""

from __future__ import annotations

import numpy as np

FLOAT32 = np.dtype(np.float32)
FLOAT64 = np.dtype(np.float64)


def stat_dtype(dtype: np.dtype) -> np.dtype:
    """float64 for float64 tensors, float32 for everything narrower (exact for all of them)."""
    return FLOAT64 if np.dtype(dtype).name == "float64" else FLOAT32  # either byte order


def widen(values: np.ndarray) -> np.ndarray:
    """`values` converted exactly to `stat_dtype`; float32/float64 pass through uncopied."""
    dtype = values.dtype
    if dtype in (FLOAT32, FLOAT64):
        return values
    if dtype.name == "bfloat16":
        # bfloat16 is the top half of a float32: a shift is exact and far faster than a cast.
        bits = values.view(np.uint16).astype(np.uint32)
        bits <<= 16
        return bits.view(np.float32)
    return values.astype(stat_dtype(dtype))
