"""Helpers shared by the readers: which dtypes are encoded, skipped or refused; the float dtypes
by name (bfloat16 / float8 as StoredFloats, read as bit patterns: no ml_dtypes); file kinds;
the bounds every reader holds shapes to; JSON headers parsed with bounds; values shown in messages.

Every message names the file (and the tensor or member) and stays on one line: values taken
from a file (names, shapes, descriptors) are shown through `shown`, which escapes control
characters (repr) and cuts long values short.
"""

from __future__ import annotations

import functools
import json
import reprlib
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from qcalc.core.dtypes import STORED_FLOATS, DType, storage_dtype
from qcalc.errors import ReadError, one_line

# At most this many dimensions per tensor: numpy allows 64, real checkpoints use at most 8, and
# every per-dimension loop downstream stays short.
MAX_RANK = 32

# A shape's non-zero dimensions times the item size must fit in a signed 64-bit integer
# (numpy's own rule: every product of dimensions must be an index), whatever a zero dimension
# says: a 0 x 2^63 shape is refused, not read as an empty tensor.
MAX_BYTES = 2**63 - 1

# JSON integers (safetensors headers, shard indexes) of more than this many characters (sign
# included) are refused while parsing: every valid value fits in 64 bits (19 digits), and
# Python would otherwise build a 4300-digit integer before any check.
MAX_JSON_INT_CHARS = 20


# The float dtypes qcalc reads, by name, and their item sizes.
FLOAT_ITEMSIZE = {
    "float64": 8, "float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3fn": 1, "float8_e5m2": 1,
}  # fmt: skip


@functools.cache
def float_dtype(name: str) -> DType:
    """The dtype of a float qcalc reads, by name (a FLOAT_ITEMSIZE key): numpy's little-endian
    float16 / float32 / float64, or the StoredFloat bfloat16 / float8_e4m3fn / float8_e5m2
    (read as little-endian bit patterns: `stored_dtype`)."""
    if name not in FLOAT_ITEMSIZE:
        raise ValueError(f"not a float dtype qcalc reads: {name!r}")
    if name in STORED_FLOATS:
        return STORED_FLOATS[name]
    return np.dtype(name).newbyteorder("<")


def stored_dtype(dtype: DType) -> np.dtype:
    """The little-endian numpy dtype a file holds values of `dtype` in (a StoredFloat's bit
    patterns: uint16 / uint8)."""
    return storage_dtype(dtype).newbyteorder("<")


class _Shown(reprlib.Repr):
    """reprlib with bounds that keep any value read from a file short in a message."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxstring = 80
        self.maxother = 80
        self.maxlong = 40
        self.maxlist = self.maxtuple = MAX_RANK
        self.maxdict = 6
        self.maxset = self.maxfrozenset = 6

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 256:  # repr would be slow, or refused beyond 4300 digits
            return f"<{'-' if x < 0 else ''}{x.bit_length()}-bit integer>"
        return super().repr_int(x, level)

    def repr_bytes(self, x: bytes, level: int) -> str:
        text = repr(x[: self.maxstring])
        return text if len(x) <= self.maxstring else text[:-1] + "...'"


_SHOWN = _Shown()


def shown(value: object) -> str:
    """`value` for an error message: its repr, bounded in length and depth, on one line."""
    if type(value) is str and len(value) <= _SHOWN.maxstring and value.isprintable():
        return repr(value)  # the common case, fast
    try:
        return one_line(_SHOWN.repr(value))
    except Exception:  # noqa: BLE001 - a repr that fails: say what it was, not the repr's own error
        return f"<{type(value).__name__}>"


def skip_reason(dtype: np.dtype, where: str) -> str | None:
    """None for an encodable numpy dtype, a Skipped reason for integer/bool, else ReadError.

    Encodable: float16, float32, float64 (either byte order). `where` prefixes error messages
    ("<path>" or "<path>: tensor 'name'").
    """
    if dtype.hasobject:
        raise ReadError(f"{where}: object arrays are refused (loading them would need pickle)")
    if dtype.names is not None or dtype.subdtype is not None:
        raise ReadError(f"{where}: structured dtype {shown(dtype.descr)} is not supported")
    if dtype.kind == "f" and dtype.itemsize in (2, 4, 8):
        return None
    if dtype.kind in "iu" and dtype.itemsize in (1, 2, 4, 8):
        return f"integer tensor ({dtype.name}), not encoded"
    if dtype.kind == "b" and dtype.itemsize == 1:
        return f"bool tensor ({dtype.name}), not encoded"
    raise ReadError(
        f"{where}: unsupported dtype {dtype.str} ({dtype.name}); "
        "expected float16, float32 or float64"
    )


def check_size(shape: Sequence[int], itemsize: int, dtype_name: str, where: str) -> int:
    """The bytes a shape of non-negative ints holds; ReadError beyond MAX_RANK dimensions or
    when its non-zero dimensions span more than MAX_BYTES."""
    if len(shape) > MAX_RANK:
        raise ReadError(
            f"{where}: shape has {len(shape)} dimensions, more than the {MAX_RANK} qcalc reads"
        )
    span = itemsize
    for dim in shape:
        span *= dim or 1
        if span > MAX_BYTES:
            raise ReadError(
                f"{where}: shape {shown(list(shape))} of {dtype_name} spans more than 2^63-1 "
                "bytes (its non-zero dimensions times the item size must fit in 64 bits)"
            )
    return 0 if 0 in shape else span


def parse_json(raw: bytes, where: str, what: str) -> Any:
    """JSON text -> Python values, or ReadError "WHERE: WHAT is not valid JSON (why)".

    Duplicate keys in any object, integers longer than MAX_JSON_INT_CHARS and nesting beyond
    the parser's recursion limit are refused as invalid JSON.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReadError(f"{where}: {what} is not valid UTF-8 (byte {exc.start})") from None
    try:
        return json.loads(
            text,
            object_pairs_hook=functools.partial(_no_duplicates, where, what),
            parse_int=functools.partial(_bounded_int, where, what),
        )
    except json.JSONDecodeError as exc:
        raise ReadError(
            f"{where}: {what} is not valid JSON ({exc.msg} at character {exc.pos})"
        ) from None
    except RecursionError:
        raise ReadError(
            f"{where}: {what} is not valid JSON (nested deeper than the parser's limit of "
            f"{sys.getrecursionlimit()} levels)"
        ) from None


def _bounded_int(where: str, what: str, text: str) -> int:
    if len(text) > MAX_JSON_INT_CHARS:
        raise ReadError(
            f"{where}: {what} holds an integer of {len(text)} characters "
            f"(at most {MAX_JSON_INT_CHARS}: every valid value fits in 64 bits)"
        )
    return int(text)


def _no_duplicates(where: str, what: str, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ReadError(f"{where}: {what} has duplicate key {shown(key)}")
            seen.add(key)
    return result


INDEX_SUFFIX = ".safetensors.index.json"


def kind_of(filename: str) -> str | None:
    """'npy', 'npz', 'safetensors', 'index' or 'onnx' by file name (case-insensitive); None
    otherwise."""
    lower = filename.lower()
    if lower.endswith(INDEX_SUFFIX):
        return "index"
    for kind in ("npy", "npz", "safetensors", "onnx"):
        if lower.endswith("." + kind):
            return kind
    return None


def map_region(
    path: str,
    where: str,
    dtype: DType,
    shape: tuple[int, ...],
    offset: int,
    size: int,
    doing: str = "",
) -> np.ndarray:
    """The array of `shape` at byte `offset` of the regular file `path`, memory-mapped
    read-only (a StoredFloat's bit patterns for bfloat16 / float8); the file must still have
    the `size` it had when its header was checked (ReadError naming `where` otherwise)."""
    import math
    import os

    from qcalc.io.files import open_regular

    dtype = stored_dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    with open_regular(path, doing=doing) as fp:
        now = os.fstat(fp.fileno()).st_size
        if now != size:
            raise ReadError(
                f"{where}: the file changed since it was opened ({size} bytes then, {now} now)"
            )
        if nbytes == 0:  # mmap cannot map zero bytes
            return np.empty(shape, dtype)
        if not shape:
            fp.seek(offset)
            return np.frombuffer(fp.read(nbytes), dtype).reshape(())
        try:
            return np.memmap(fp, mode="r", dtype=dtype, offset=offset, shape=shape)
        except (ValueError, OSError) as exc:  # the file shrank between the check and the map
            raise ReadError(f"{where}: cannot map the data ({one_line(exc)})") from None
