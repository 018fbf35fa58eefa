"""Lazily read tensors: what every reader yields, streamed in chunks, and progress events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Optional

import numpy as np

from qcalc.core.dtypes import STORED_FLOATS, DType, as_stored, to_numpy

if TYPE_CHECKING:  # only models' tensors carry one; plain tensor runs never import graphs
    from qcalc.core.graph import ParamRole

# Chunks are slices along axis 0 holding at most this many bytes of source data (at least one
# row), so memory stays bounded however large a tensor is. Small on purpose: a chunk's float32
# copy (2 MB for bf16) stays in cache between widening and reducing and is reused by malloc,
# where 32 MB chunks (a fresh 64 MB mmap per chunk, page-faulted) ran 2.3x slower (bench/).
DEFAULT_CHUNK_BYTES = 1024 * 1024
ARRAY_SOURCE = "<array>"  # the source of an in-memory array


@dataclass(frozen=True)
class TensorRef:
    """One tensor (or one calibration batch of a tensor) in an input file.

    `read` returns the whole array as stored, memory-mapped where the format allows:
    bfloat16 / float8 tensors (`dtype` a `StoredFloat`) as their bit patterns (uint16 /
    uint8), which `dtypes.widen(array, dtype)` turns into float32 without ml_dtypes. `load`
    returns it in its dtype (an ml_dtypes array for those: ml_dtypes is imported then).
    Nothing is read until `chunks` (slices of `read`) is iterated. A TensorRef made with an
    ml_dtypes dtype (an array a user passed) holds its StoredFloat and reads the array's bits.
    """

    name: str
    source: str
    dtype: DType
    shape: tuple[int, ...]
    read: Callable[[], np.ndarray] = field(repr=False, compare=False)
    # What the tensor is to the model that holds it (ONNX initializers); None elsewhere.
    param: Optional[ParamRole] = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.dtype, np.dtype) and self.dtype.name in STORED_FLOATS:
            read = self.read  # an ml_dtypes dtype: its arrays are read as their bit patterns
            object.__setattr__(self, "dtype", STORED_FLOATS[self.dtype.name])
            if read is not None:
                object.__setattr__(self, "read", lambda: as_stored(read()))

    def load(self) -> np.ndarray:
        """The whole array in the tensor's dtype (ml_dtypes' for bfloat16 / float8)."""
        return to_numpy(self.read(), self.dtype)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    @property
    def where(self) -> str:
        """How errors name the tensor: its file and name (just the name for an array)."""
        tensor = f"tensor '{self.name}'"
        return tensor if self.source == ARRAY_SOURCE else f"{self.source}: {tensor}"

    def chunks(
        self, max_bytes: int = DEFAULT_CHUNK_BYTES, row_multiple: int = 1
    ) -> Iterator[np.ndarray]:
        """Yield consecutive slices along axis 0 of at most `max_bytes` (at least
        `row_multiple` rows, and always a multiple of it: whole blocks)."""
        array = self.read()
        if array.ndim == 0 or array.size == 0:
            yield array
            return
        row_bytes = max(1, array.nbytes // array.shape[0])
        rows = chunk_rows(row_bytes, max_bytes, row_multiple)
        release = _mapped_pages(array)
        for start in range(0, array.shape[0], rows):
            yield array[start : start + rows]
            if release is not None:  # the pages read RELEASE_LAG_BYTES ago, if mapped
                release((start + rows) * row_bytes - RELEASE_LAG_BYTES)


def chunk_rows(row_bytes: int, max_bytes: int, row_multiple: int = 1) -> int:
    """Rows in each chunk `TensorRef.chunks` yields: a multiple of `row_multiple`, at most
    `max_bytes` when that holds one."""
    return max(1, max_bytes // (row_bytes * row_multiple)) * row_multiple


# Memory-mapped tensors give their pages back this far behind the chunk being read, so that
# a process's resident size does not grow with the tensor (the pages stay in the page cache;
# a chunk still being reduced on another thread that touches a released page reads it again
# from there: the data cannot change, only the time).
RELEASE_LAG_BYTES = 32 << 20


def _mapped_pages(array: np.ndarray):
    """For a C-contiguous np.memmap over a file: `release(upto)`, which unmaps the pages of
    the first `upto` bytes of the array from the process (madvise DONTNEED); else None."""
    mapping = getattr(array, "_mmap", None)
    if mapping is None or not array.flags.c_contiguous or not hasattr(mapping, "madvise"):
        return None
    import mmap

    base = array.offset % mmap.ALLOCATIONGRANULARITY  # the array's start in the mapping
    done = 0

    def release(upto: int) -> None:
        nonlocal done
        end = (base + upto) // mmap.PAGESIZE * mmap.PAGESIZE
        if end - done >= RELEASE_LAG_BYTES // 4:  # in a few large calls
            mapping.madvise(mmap.MADV_DONTNEED, done, end - done)
            done = end

    return release


def array_ref(array: np.ndarray, name: str, dtype: Optional[DType] = None) -> TensorRef:
    """An in-memory array as a TensorRef (source ARRAY_SOURCE); `dtype` the tensor's when
    `array` holds the bit patterns of a StoredFloat."""
    return TensorRef(name, ARRAY_SOURCE, dtype or array.dtype, array.shape, lambda: array)


@dataclass(frozen=True)
class Skipped:
    """A tensor a reader found but will not encode (integer or bool data), with the reason.

    `ref` reads it all the same, for callers that list every tensor (`qcalc ls`).
    """

    name: str
    source: str
    reason: str
    ref: TensorRef | None = field(default=None, repr=False, compare=False)


class Progress:
    """Receives progress events; this base class ignores them (the CLI draws a bar). With
    --jobs above 1 the events come from several threads: a subclass that keeps state must
    lock it (commands/progress.py does)."""

    def start(self, tensors: int, total_bytes: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def tensor_done(self) -> None:
        pass


def row_range(ref: TensorRef, rows: slice) -> TensorRef:
    """Rows `rows` (along axis 0) of `ref`, lazily: a view of the data, read in chunks like
    the tensor, with its name and source (errors name the tensor)."""
    count = len(range(*rows.indices(ref.shape[0])))
    return TensorRef(
        ref.name, ref.source, ref.dtype, (count, *ref.shape[1:]), lambda: ref.read()[rows]
    )
