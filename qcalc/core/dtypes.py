"""Tensor dtypes: which are floating point, the dtype their arithmetic runs in, exact widening."""

from __future__ import annotations

import numpy as np

FLOAT32 = np.dtype(np.float32)
FLOAT64 = np.dtype(np.float64)
ML_FLOATS = ("bfloat16", "float8_e4m3fn", "float8_e5m2")  # ml_dtypes' types qcalc reads


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
