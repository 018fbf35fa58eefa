"""`.npy` files: header validated at open, data memory-mapped on load, never unpickled."""

from __future__ import annotations

import functools
import math
import os
from typing import BinaryIO, Callable, NamedTuple

import numpy as np
from numpy.lib import format as npformat

from qcalc.core.tensor import Skipped, TensorRef
from qcalc.errors import ReadError, one_line, os_errors
from qcalc.io.readers._common import skip_reason


class NpyHeader(NamedTuple):
    dtype: np.dtype
    shape: tuple[int, ...]
    fortran_order: bool
    data_offset: int  # bytes from the start of the stream to the array data

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def read_npy_header(fp: BinaryIO, where: str) -> NpyHeader:
    """Read and check the header of an npy stream positioned at its start; data is not read."""
    try:
        version = npformat.read_magic(fp)
        if version == (1, 0):
            shape, fortran_order, dtype = npformat.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran_order, dtype = npformat.read_array_header_2_0(fp)
        else:
            raise ReadError(f"{where}: unsupported .npy format version {version[0]}.{version[1]}")
    except (ValueError, SyntaxError, TypeError) as exc:
        raise ReadError(f"{where}: not a valid .npy file ({one_line(exc)})") from None
    return NpyHeader(dtype, tuple(shape), bool(fortran_order), fp.tell())


def make_ref(
    name: str, source: str, header: NpyHeader, available: int, where: str, load: Callable
) -> TensorRef | Skipped:
    """Check dtype, then size (`available` bytes after the header); TensorRef or Skipped."""
    reason = skip_reason(header.dtype, where)  # object/structured refused before sizes
    if available < header.nbytes:
        raise ReadError(
            f"{where}: truncated: header declares shape {list(header.shape)} of "
            f"{header.dtype.name} ({header.nbytes} bytes) but only {available} bytes of data follow"
        )
    ref = TensorRef(name, source, header.dtype, header.shape, load)
    return ref if reason is None else Skipped(name, source, reason, ref)


def read_npy(path: str | os.PathLike[str], name: str | None = None) -> TensorRef | Skipped:
    """Open one `.npy` file; the tensor is named `name`, by default the file stem.

    >>> read_npy("relu1.npy")  # doctest: +SKIP
    TensorRef(name='relu1', source='relu1.npy', dtype=dtype('float32'), shape=(8, 64))
    """
    source = os.fspath(path)
    with os_errors(source), open(source, "rb") as fp:
        header = read_npy_header(fp, source)
        available = os.fstat(fp.fileno()).st_size - header.data_offset
    name = os.path.splitext(os.path.basename(source))[0] if name is None else name
    return make_ref(name, source, header, available, source, functools.partial(_load, source))


def _load(source: str) -> np.ndarray:
    with os_errors(source):
        return np.load(source, mmap_mode="r", allow_pickle=False)
