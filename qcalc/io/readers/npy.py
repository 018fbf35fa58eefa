"""`.npy` files: header parsed and validated here, data memory-mapped on load, never unpickled.

numpy's own header reader is not used: it reads a header of any declared length (4 GiB for a
version 2.0 file) before checking it, and accepts negative, boolean and overflowing
dimensions. Here the header is at most MAX_HEADER_BYTES, a Python literal (ast.literal_eval,
never pickle) holding exactly 'descr' (a dtype string; structured dtypes are refused),
'fortran_order' (a bool) and 'shape' (a tuple of at most MAX_RANK non-negative ints whose
non-zero dimensions span at most 2^63-1 bytes). Versions 1.0 and 2.0 are read; 3.0 differs
from 2.0 only for structured dtypes, which are refused anyway.

The file is opened again on load (only regular files, never blocking) and its header read
again: a file changed since it was opened is an error, not a different tensor.
"""

from __future__ import annotations

import ast
import functools
import os
import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from qcalc.core.tensor import Skipped, TensorRef
from qcalc.errors import ReadError, one_line
from qcalc.io.files import open_regular
from qcalc.io.readers._common import check_size, shown, skip_reason

# The longest header read: numpy's own limit (numpy.lib.format's _MAX_HEADER_SIZE); np.save
# writes 128 bytes for any ordinary array.
MAX_HEADER_BYTES = 10_000

MAGIC = b"\x93NUMPY"
_LENGTH_BYTES = {(1, 0): 2, (2, 0): 4}  # format version -> bytes of the header length
_KEYS = {"descr", "fortran_order", "shape"}


class NpyHeader(NamedTuple):
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool
    data_offset: int  # bytes from the start of the stream to the array data


def read_npy_header(read: Callable[[int], bytes], where: str) -> NpyHeader:
    """Read and check the header of an npy stream at its start; data is not read.

    `read(n)` returns at most n bytes (fewer only at the end of the stream). Dtype kinds and
    sizes are checked by `make_ref`.
    """
    magic = _read_exactly(read, 8, "magic string", where)
    if magic[:6] != MAGIC:
        raise _invalid(where, f"the magic string is not correct; expected {MAGIC!r}, got "
                       f"{shown(magic[:6])}")  # fmt: skip
    version = (magic[6], magic[7])
    if version not in _LENGTH_BYTES:
        raise ReadError(f"{where}: unsupported .npy format version {version[0]}.{version[1]}")
    length_bytes = _LENGTH_BYTES[version]
    header_len = int.from_bytes(
        _read_exactly(read, length_bytes, "array header length", where), "little"
    )
    if header_len > MAX_HEADER_BYTES:
        raise ReadError(
            f"{where}: .npy header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte limit"
        )
    text = _read_exactly(read, header_len, "array header", where).decode("latin1")
    parsed = _parse(text)
    if isinstance(parsed, str):
        raise (ReadError(f"{where}: {parsed[1:]}") if parsed[0] == "!" else _invalid(where, parsed))
    dtype, shape, fortran_order = parsed
    return NpyHeader(dtype, shape, fortran_order, 6 + 2 + length_bytes + header_len)


@functools.lru_cache(maxsize=256)  # an archive's members often share a header
def _parse(text: str) -> tuple[np.dtype, tuple[int, ...], bool] | str:
    """(dtype, shape, fortran_order) from a header's text, else why not: "!reason" for a
    ReadError of its own, "reason" for "not a valid .npy file (reason)"."""
    try:
        fields = ast.literal_eval(text)
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        return f"cannot parse header {shown(text.strip())}"
    if not isinstance(fields, dict):
        return f"header is not a dictionary: {shown(fields)}"
    if fields.keys() != _KEYS:
        return f"header does not contain the correct keys: {shown(list(fields))}"
    shape = fields["shape"]
    if not (
        isinstance(shape, tuple)
        and all(isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 for dim in shape)
    ):
        return f"shape must be a tuple of non-negative integers, got {shown(shape)}"
    fortran_order = fields["fortran_order"]
    if not isinstance(fortran_order, bool):
        return f"fortran_order is not a valid bool: {shown(fortran_order)}"
    descr = fields["descr"]
    if isinstance(descr, (list, tuple)):  # np.save writes a list for structured dtypes only
        return f"!structured dtype {shown(descr)} is not supported"
    if not isinstance(descr, str):
        return f"descr is not a valid dtype descriptor: {shown(descr)}"
    try:
        with warnings.catch_warnings():  # deprecated aliases ('a5'): refused by kind anyway
            warnings.simplefilter("ignore")
            dtype = np.dtype(descr)
    except (TypeError, ValueError, OverflowError, KeyError, MemoryError, RecursionError):
        return f"descr is not a valid dtype descriptor: {shown(descr)}"
    return dtype, shape, fortran_order


def _read_exactly(read: Callable[[int], bytes], size: int, what: str, where: str) -> bytes:
    data = read(size)
    if len(data) != size:
        raise _invalid(where, f"EOF: reading {what}, expected {size} bytes got {len(data)}")
    return data


def _invalid(where: str, why: str) -> ReadError:
    return ReadError(f"{where}: not a valid .npy file ({why})")


def make_ref(
    name: str, source: str, header: NpyHeader, available: int, where: str, load: Callable
) -> TensorRef | Skipped:
    """Check dtype, then shape and size (`available` bytes after the header); TensorRef or
    Skipped."""
    reason = skip_reason(header.dtype, where)  # object/structured refused before sizes
    nbytes = check_size(header.shape, header.dtype.itemsize, header.dtype.name, where)
    if available < nbytes:
        raise ReadError(
            f"{where}: truncated: header declares shape {list(header.shape)} of "
            f"{header.dtype.name} ({nbytes} bytes) but only {max(available, 0)} bytes of data "
            "follow"
        )
    ref = TensorRef(name, source, header.dtype, header.shape, load)
    return ref if reason is None else Skipped(name, source, reason, ref)


def read_npy(path: str | os.PathLike[str], name: str | None = None) -> TensorRef | Skipped:
    """Open one `.npy` file; the tensor is named `name`, by default the file stem.

    >>> read_npy("relu1.npy")  # doctest: +SKIP
    TensorRef(name='relu1', source='relu1.npy', dtype=dtype('float32'), shape=(8, 64))
    """
    source = os.fspath(path)
    with open_regular(source) as fp:
        header = read_npy_header(fp.read, source)
        available = os.fstat(fp.fileno()).st_size - header.data_offset
    name = os.path.splitext(os.path.basename(source))[0] if name is None else name
    return make_ref(
        name, source, header, available, source, functools.partial(_load, source, header)
    )


def _load(source: str, header: NpyHeader) -> np.ndarray:
    order = "F" if header.fortran_order else "C"
    with open_regular(source) as fp:
        if read_npy_header(fp.read, source) != header:
            raise ReadError(f"{source}: the file changed since it was opened (its header differs)")
        nbytes = check_size(header.shape, header.dtype.itemsize, header.dtype.name, source)
        available = os.fstat(fp.fileno()).st_size - header.data_offset
        if available < nbytes:
            raise ReadError(
                f"{source}: the file changed since it was opened (now {available} bytes of "
                f"data, {nbytes} needed)"
            )
        if nbytes == 0:  # mmap cannot map zero bytes
            return np.empty(header.shape, header.dtype, order=order)
        try:
            return np.memmap(
                fp, dtype=header.dtype, mode="r", offset=header.data_offset, shape=header.shape,
                order=order,
            )  # fmt: skip
        except ValueError as exc:  # the file shrank between the check and the mapping
            raise ReadError(f"{source}: cannot map the data ({one_line(exc)})") from None
