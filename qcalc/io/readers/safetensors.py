"""`.safetensors` files: header parsed and validated here, tensor data memory-mapped on load.

The `safetensors` package is not imported (start-up time), nor is `ml_dtypes`: BF16 and FP8
tensors are read as their bit patterns (`dtypes.StoredFloat`). An invalid `__metadata__` (not
an object of string values) is a ReadError, as in the reference implementation.

Bounds, checked before any data is touched: the header is at most MAX_HEADER_BYTES of UTF-8
JSON (duplicate keys, integers longer than 20 characters and nesting beyond the parser's
recursion limit refused); each shape at most MAX_RANK non-negative dimensions whose non-zero
product times the item size fits in 64 bits; data offsets inside the data region, each
tensor's span exactly shape x item size, no two tensors overlapping. The file is opened
again on load (regular files only) and must still have the size it had.
"""

from __future__ import annotations

import functools
import os
from typing import Any, NamedTuple, Optional

import numpy as np

from qcalc.core.dtypes import DType
from qcalc.core.tensor import Skipped, TensorRef
from qcalc.errors import ReadError
from qcalc.io.files import open_regular
from qcalc.io.readers._common import (
    FLOAT_ITEMSIZE,
    check_size,
    float_dtype,
    map_region,
    parse_json,
    shown,
)

# The reference implementation's limit on the JSON header.
MAX_HEADER_BYTES = 100_000_000

_FLOAT_DTYPES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
}  # fmt: skip
_SKIPPED_DTYPES = {
    "BOOL": "?", "U8": "u1", "I8": "i1", "U16": "<u2", "I16": "<i2", "U32": "<u4", "I32": "<i4",
    "U64": "<u8", "I64": "<i8",
}  # fmt: skip
_ITEMSIZE = {name: FLOAT_ITEMSIZE[dtype] for name, dtype in _FLOAT_DTYPES.items()}
_ITEMSIZE.update({name: np.dtype(code).itemsize for name, code in _SKIPPED_DTYPES.items()})


class _Entry(NamedTuple):
    begin: int
    end: int
    name: str
    dtype: str
    shape: tuple[int, ...]


def read_safetensors(path: str | os.PathLike[str]) -> list[TensorRef | Skipped]:
    """Open a `.safetensors` file: one entry per tensor, in data-offset order, named by key.

    Only the header is read; every size and offset is checked before any data is touched.

    >>> [(r.name, r.dtype.name) for r in read_safetensors("model.safetensors")]  # doctest: +SKIP
    [('embed.weight', 'bfloat16'), ('lm_head.weight', 'bfloat16')]
    """
    return read_safetensors_metadata(path)[0]


def read_safetensors_metadata(
    path: str | os.PathLike[str],
) -> tuple[list[TensorRef | Skipped], Optional[dict[str, str]]]:
    """`read_safetensors` and the header's `__metadata__` (None when it has none)."""
    source = os.fspath(path)
    with open_regular(source) as fp:
        size = os.fstat(fp.fileno()).st_size
        if size < 8:
            raise ReadError(
                f"{source}: file is {size} bytes, too short for a safetensors header (at least 8)"
            )
        header_len = int.from_bytes(fp.read(8), "little")
        if header_len > size - 8:
            raise ReadError(
                f"{source}: header length {header_len} exceeds the {size - 8} bytes that follow "
                "the length prefix (truncated or not a safetensors file)"
            )
        if header_len > MAX_HEADER_BYTES:
            raise ReadError(
                f"{source}: header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte limit"
            )
        raw = fp.read(header_len)
    header, metadata = _parse_header(raw, source)
    data_start = 8 + header_len
    entries = _validate(header, size - data_start, source)

    items: list[TensorRef | Skipped] = []
    for entry in entries:
        skipped = entry.dtype in _SKIPPED_DTYPES
        if skipped:
            dtype = np.dtype(_SKIPPED_DTYPES[entry.dtype])
        else:
            dtype = float_dtype(_FLOAT_DTYPES[entry.dtype])
        load = functools.partial(_load, source, dtype, entry.shape, data_start + entry.begin, size)
        ref = TensorRef(entry.name, source, dtype, entry.shape, load)
        if skipped:  # still readable through Skipped.ref (qcalc ls)
            kind = "bool" if entry.dtype == "BOOL" else "integer"
            reason = f"{kind} tensor ({entry.dtype}), not encoded"
            items.append(Skipped(entry.name, source, reason, ref))
        else:
            items.append(ref)
    return items, metadata


def _parse_header(raw: bytes, source: str) -> tuple[dict[str, Any], Optional[dict[str, str]]]:
    header = parse_json(raw, source, "header")
    if not isinstance(header, dict):
        raise ReadError(f"{source}: header is a JSON {type(header).__name__}, expected an object")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise ReadError(f"{source}: __metadata__ must be an object of string values")
    return header, metadata


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate(header: dict[str, Any], data_size: int, source: str) -> list[_Entry]:
    entries = []
    for name, info in header.items():
        where = f"{source}: tensor {shown(name)}"
        if not isinstance(info, dict):
            raise ReadError(f"{where}: entry is not an object with dtype, shape and data_offsets")
        dtype = info.get("dtype")
        shape = info.get("shape")
        offsets = info.get("data_offsets")
        if not isinstance(dtype, str):
            raise ReadError(f"{where}: dtype must be a string, got {shown(dtype)}")
        if not (isinstance(shape, list) and all(_is_int(d) and d >= 0 for d in shape)):
            raise ReadError(
                f"{where}: shape must be a list of non-negative integers, got {shown(shape)}"
            )
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_int, offsets))):
            raise ReadError(
                f"{where}: data_offsets must be [begin, end] integers, got {shown(offsets)}"
            )
        if dtype not in _ITEMSIZE:
            raise ReadError(
                f"{where}: unsupported dtype {shown(dtype)} (expected F64, F32, F16, BF16, "
                "F8_E4M3, F8_E5M2; integer and BOOL tensors are skipped)"
            )
        expected = check_size(shape, _ITEMSIZE[dtype], dtype, where)
        begin, end = offsets
        if not 0 <= begin <= end <= data_size:
            raise ReadError(
                f"{where}: data_offsets {shown(offsets)} outside the {data_size}-byte data region"
            )
        if end - begin != expected:
            raise ReadError(
                f"{where}: data_offsets [{begin}, {end}] do not match shape {shape} of {dtype} "
                f"({expected} bytes)"
            )
        entries.append(_Entry(begin, end, name, dtype, tuple(shape)))

    entries.sort(key=lambda e: (e.begin, e.end, e.name))
    reach: _Entry | None = None  # the entry that ends furthest so far
    for entry in entries:
        if reach is not None and entry.begin < reach.end and entry.begin < entry.end:
            raise ReadError(
                f"{source}: tensors {shown(reach.name)} [{reach.begin}, {reach.end}] and "
                f"{shown(entry.name)} [{entry.begin}, {entry.end}] overlap"
            )
        if reach is None or entry.end > reach.end:
            reach = entry
    return entries


def _load(source: str, dtype: DType, shape: tuple[int, ...], offset: int, size: int) -> np.ndarray:
    """The tensor's data at `offset` (from the start of the file) in a file of `size` bytes."""
    return map_region(source, source, dtype, shape, offset, size)
