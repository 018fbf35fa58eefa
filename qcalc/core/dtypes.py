"""Tensor dtypes: which are floating point, the dtype their arithmetic runs in, exact widening.

numpy has float16, float32 and float64; bfloat16 and float8 (e4m3fn, e5m2), the dtypes of
most LLM checkpoints, are `StoredFloat`s here: a tensor of one is held as its bit patterns
(uint16 / uint8 arrays) and the format is carried by name beside them. Widening them to
float32 is plain bit arithmetic (bf16: the top half of a float32; float8: a 256-entry table),
so reading them never imports ml_dtypes (0.6-1.8 s at start-up). ml_dtypes is imported only
to hand out their values in an ml_dtypes array (`to_numpy`, `TensorRef.load`) and for
arithmetic in bfloat16 itself (`--compute-dtype input`, `arithmetic_dtype`). Arrays a user
passes with an ml_dtypes dtype are viewed as their bit patterns (`as_stored`), by dtype name:
nothing is imported for them either.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Union

import numpy as np

FLOAT32 = np.dtype(np.float32)
FLOAT64 = np.dtype(np.float64)
ML_FLOATS = ("bfloat16", "float8_e4m3fn", "float8_e5m2")  # ml_dtypes' types qcalc reads
# The smallest float64 magnitude that rounds to inf as a float32: float32's max plus half its
# last step, 2^128 - 2^103 (round to nearest even: that tie goes to inf). A float64 value is
# "beyond float32" from here on; below it, it rounds to a finite float32 (at most float32 max).
FLOAT32_OVERFLOW = 2.0**128 - 2.0**103


@dataclass(frozen=True, eq=False)
class StoredFloat:
    """A float format numpy lacks (bfloat16, float8), its tensors held as bit patterns in
    `storage` (native-order unsigned integers of `itemsize` bytes). Quacks like the few
    np.dtype attributes qcalc reads (`name`, `itemsize`, `kind`, `str()`), and equals the
    ml_dtypes dtype of the same name (`TensorRef.dtype == np.dtype(ml_dtypes.bfloat16)`; their
    hashes differ: do not mix the two as keys of one dict or set)."""

    name: str  # ml_dtypes' name: "bfloat16", "float8_e4m3fn", "float8_e5m2"
    itemsize: int
    kind = "f"

    @property
    def storage(self) -> np.dtype:
        return np.dtype(f"u{self.itemsize}")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (StoredFloat, np.dtype)):
            return other.name == self.name
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.name)

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"StoredFloat({self.name!r})"


BFLOAT16 = StoredFloat("bfloat16", 2)
FLOAT8_E4M3FN = StoredFloat("float8_e4m3fn", 1)
FLOAT8_E5M2 = StoredFloat("float8_e5m2", 1)
STORED_FLOATS = {f.name: f for f in (BFLOAT16, FLOAT8_E4M3FN, FLOAT8_E5M2)}

DType = Union[np.dtype, StoredFloat]  # what TensorRef.dtype holds


@dataclass(frozen=True)
class FloatInfo:
    """The few finfo numbers qcalc needs of a StoredFloat (equal to ml_dtypes.finfo's)."""

    bits: int
    eps: float
    max: float
    tiny: float  # smallest normal
    smallest_subnormal: float

    @property
    def min(self) -> float:
        return -self.max

    @property
    def smallest_normal(self) -> float:
        return self.tiny


_FINFO = {
    "bfloat16": FloatInfo(16, 2.0**-7, (2 - 2.0**-7) * 2.0**127, 2.0**-126, 2.0**-133),
    "float8_e4m3fn": FloatInfo(8, 2.0**-3, 448.0, 2.0**-6, 2.0**-9),
    "float8_e5m2": FloatInfo(8, 2.0**-2, 57344.0, 2.0**-14, 2.0**-16),
}


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


def _name(dtype) -> str:
    return dtype.name if isinstance(dtype, (np.dtype, StoredFloat)) else np.dtype(dtype).name


def stored_float(dtype) -> StoredFloat | None:
    """The StoredFloat of `dtype` (a StoredFloat, or an ml_dtypes dtype by its name); None for
    numpy's own dtypes."""
    return STORED_FLOATS.get(_name(dtype))


def as_stored(array: np.ndarray) -> np.ndarray:
    """`array` with an ml_dtypes bfloat16 / float8 dtype viewed as its bit patterns (no copy,
    nothing imported); any other array as it is."""
    fmt = STORED_FLOATS.get(array.dtype.name)
    return array if fmt is None else array.view(fmt.storage)


def storage_dtype(dtype: DType) -> np.dtype:
    """The numpy dtype a tensor of `dtype` is held in: its bit patterns' for a StoredFloat."""
    return dtype.storage if isinstance(dtype, StoredFloat) else dtype


def numpy_dtype(dtype: DType) -> np.dtype:
    """`dtype` as a numpy dtype: ml_dtypes' for a StoredFloat (imports ml_dtypes)."""
    if not isinstance(dtype, StoredFloat):
        return np.dtype(dtype)
    import ml_dtypes

    return np.dtype(getattr(ml_dtypes, dtype.name))


def to_numpy(values: np.ndarray, dtype: DType) -> np.ndarray:
    """Stored `values` of a tensor of `dtype` as a numpy array of that dtype: bit patterns
    viewed as ml_dtypes' type (imports ml_dtypes), other arrays as they are."""
    fmt = stored_float(dtype)
    if fmt is None or values.dtype.name == fmt.name:
        return values
    return values.view(numpy_dtype(fmt))


def is_float(dtype) -> bool:
    """numpy floats, StoredFloats and the ml_dtypes floats (bfloat16, float8) qcalc encodes."""
    if isinstance(dtype, StoredFloat):
        return True
    dtype = np.dtype(dtype)
    return dtype.kind == "f" or dtype.name in ML_FLOATS


def opmath_dtype(dtype) -> np.dtype:
    """The dtype arithmetic on `dtype` values runs in, as torch's opmath: float64 for float64,
    float32 for every narrower float (exact widening for all of them)."""
    return FLOAT64 if _name(dtype) == "float64" else FLOAT32  # either byte order


def arithmetic_dtype(tensor_dtype: DType, compute_dtype: str) -> np.dtype:
    """The dtype AIMET's range arithmetic runs in for a tensor of `tensor_dtype`: float32, or
    with compute_dtype "input" the dtype of a float16, bfloat16 or float64 tensor (float8
    tensors compute in float32: AIMET simulates no float8 model arithmetic). bfloat16
    arithmetic is ml_dtypes' (imported then: the one computation that needs it)."""
    if compute_dtype == "input" and tensor_dtype.name in ("float16", "bfloat16", "float64"):
        return numpy_dtype(tensor_dtype).newbyteorder("=")
    return FLOAT32


def finfo(dtype):
    """np.finfo, or the FloatInfo of bfloat16 / float8 (unknown to numpy; no ml_dtypes)."""
    info = _FINFO.get(_name(dtype))
    return np.finfo(dtype) if info is None else info


@functools.cache
def _float8_table(name: str) -> np.ndarray:
    """The float32 value of each of the 256 bit patterns of float8 `name`, from its bits:
    e4m3fn (bias 7, no inf, S.1111.111 NaN) or e5m2 (bias 15, IEEE-like inf and NaN). NaN
    is the quiet float32 NaN of the same sign, as ml_dtypes widens it."""
    bits = np.arange(256, dtype=np.int64)
    mant_bits, bias = (3, 7) if name == "float8_e4m3fn" else (2, 15)
    exponent = (bits >> mant_bits) & ((1 << (7 - mant_bits)) - 1)
    mantissa = bits & ((1 << mant_bits) - 1)
    normal = exponent > 0
    significand = np.where(normal, mantissa + (1 << mant_bits), mantissa).astype(np.float64)
    power = np.where(normal, exponent, 1) - bias - mant_bits
    values = np.ldexp(significand, power)  # exact: at most 4 significant bits
    values = np.where(bits & 0x80, -values, values).astype(np.float32)
    top = (1 << (7 - mant_bits)) - 1
    if name == "float8_e4m3fn":
        nan = (bits & 0x7F) == 0x7F
    else:
        nan = (exponent == top) & (mantissa != 0)
        values[(exponent == top) & (mantissa == 0)] = np.float32(np.inf)
        values[0xFC] = np.float32(-np.inf)
    table = values.view(np.uint32)
    table[nan] = np.where(bits[nan] & 0x80, 0xFFC00000, 0x7FC00000)
    table.setflags(write=False)
    return table.view(np.float32)


def widen(values: np.ndarray, dtype: DType | None = None) -> np.ndarray:
    """`values` (stored values of a tensor of `dtype`, by default their own dtype) converted
    exactly to their `opmath_dtype`; float32 / float64 pass through uncopied. bfloat16 bits
    become the top half of a float32, float8 bits index a table of their float32 values."""
    if values.dtype in (FLOAT32, FLOAT64):
        return values
    fmt = stored_float(values.dtype if dtype is None else dtype)
    if fmt is None:
        return values.astype(opmath_dtype(values.dtype))
    bits = values if values.dtype.kind == "u" else values.view(fmt.storage)
    out = np.empty(bits.shape, FLOAT32)  # `out` keeps 0-d arrays arrays
    if fmt is BFLOAT16:
        np.left_shift(bits, 16, out=out.view(np.uint32), dtype=np.uint32)
    else:
        np.take(_float8_table(fmt.name), bits, out=out, mode="clip")  # clip: no bounds check
    return out


def decoded(values: np.ndarray, dtype: DType) -> np.ndarray:
    """Stored `values` of a tensor of `dtype` as numbers numpy computes with: a StoredFloat's
    bit patterns widened to float32, any other array as it is."""
    return values if stored_float(dtype) is None else widen(values, dtype)


def round_to_bfloat16(values: np.ndarray) -> np.ndarray:
    """float32 `values` rounded to bfloat16 (to nearest, ties to even; beyond bfloat16's max to
    ±inf), held as float32: ml_dtypes' float32 -> bfloat16 cast, in bit arithmetic. NaN stays
    NaN (the quiet NaN of its sign, as ml_dtypes makes it)."""
    bits = np.asarray(values, dtype=FLOAT32).view(np.uint32)
    odd = (bits >> np.uint32(16)) & np.uint32(1)
    rounded = (bits + (np.uint32(0x7FFF) + odd)) & np.uint32(0xFFFF0000)
    nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    if nan.any():
        rounded = np.where(nan, (bits & np.uint32(0x80000000)) | np.uint32(0x7FC00000), rounded)
    return rounded.view(FLOAT32)


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
