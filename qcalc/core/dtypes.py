"""Tensor dtypes: which are floating point, the dtype their arithmetic runs in, exact widening."""

from __future__ import annotations

import numpy as np

FLOAT32 = np.dtype(np.float32)
FLOAT64 = np.dtype(np.float64)
ML_FLOATS = ("bfloat16", "float8_e4m3fn", "float8_e5m2")  # ml_dtypes' types qcalc reads
# The smallest float64 magnitude that rounds to inf as a float32: float32's max plus half its
# last step, 2^128 - 2^103 (round to nearest even: that tie goes to inf). A float64 value is
# "beyond float32" from here on; below it, it rounds to a finite float32 (at most float32 max).
FLOAT32_OVERFLOW = 2.0**128 - 2.0**103


SHORT_NAMES = {
    "bfloat16": "bf16", "float16": "f16", "float32": "f32", "float64": "f64",
    "float8_e4m3fn": "f8e4m3", "float8_e5m2": "f8e5m2",
    "int8": "i8", "int16": "i16", "int32": "i32", "int64": "i64",
    "uint8": "u8", "uint16": "u16", "uint32": "u32", "uint64": "u64",
}  # fmt: skip


def short_dtype(name: str | None) -> str:
    """A dtype name in a few characters, as tables print it: "bf16", "f32", "i64" ("?" for
    None, the name itself when it has no short form)."""
    return "?" if name is None else SHORT_NAMES.get(name, name)


def is_float(dtype: np.dtype) -> bool:
    """numpy floats and the ml_dtypes floats (bfloat16, float8) qcalc encodes."""
    return np.dtype(dtype).kind == "f" or np.dtype(dtype).name in ML_FLOATS


def opmath_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype arithmetic on `dtype` values runs in, as torch's opmath: float64 for float64,
    float32 for every narrower float (exact widening for all of them)."""
    return FLOAT64 if np.dtype(dtype).name == "float64" else FLOAT32  # either byte order


def arithmetic_dtype(tensor_dtype: np.dtype, compute_dtype: str) -> np.dtype:
    """The dtype AIMET's range arithmetic runs in for a tensor of `tensor_dtype`: float32, or
    with compute_dtype "input" the dtype of a float16, bfloat16 or float64 tensor (float8
    tensors compute in float32: AIMET simulates no float8 model arithmetic)."""
    if compute_dtype == "input" and tensor_dtype.name in ("float16", "bfloat16", "float64"):
        return np.dtype(tensor_dtype).newbyteorder("=")
    return FLOAT32


def finfo(dtype: np.dtype):
    """np.finfo, or ml_dtypes.finfo for bfloat16 / float8 (unknown to numpy)."""
    if np.dtype(dtype).kind == "f":
        return np.finfo(dtype)
    import ml_dtypes

    return ml_dtypes.finfo(dtype)


def widen(values: np.ndarray) -> np.ndarray:
    """`values` converted exactly to their `opmath_dtype`; float32 / float64 pass through
    uncopied (bfloat16 by ml_dtypes' cast: exact, a bf16 is the top half of a float32)."""
    if values.dtype in (FLOAT32, FLOAT64):
        return values
    return values.astype(opmath_dtype(values.dtype))


def beyond_float32(values: np.ndarray) -> np.ndarray:
    """Where float64 `values` round to ±inf as float32 (NaN is not beyond)."""
    return np.abs(values) >= FLOAT32_OVERFLOW


def float32_view(values: np.ndarray) -> tuple[np.ndarray, int]:
    """float64 `values` as float32 arithmetic sees them, and how many changed: every value
    beyond float32 becomes ±inf (what a float32 model holds), every other value is kept as it
    is (its own float32 rounding is finite). A copy only when some value changes."""
    beyond = beyond_float32(values)
    count = int(np.count_nonzero(beyond))
    if not count:
        return values, 0
    return np.where(beyond, np.copysign(np.inf, values), values), count
