"""Lazily read tensors: what every reader yields, streamed in chunks, and progress events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Optional

import numpy as np

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

    `load` returns the whole array in its stored dtype, memory-mapped where the format allows;
    nothing is read until `chunks` is iterated.
    """

    name: str
    source: str
    dtype: np.dtype
    shape: tuple[int, ...]
    load: Callable[[], np.ndarray] = field(repr=False, compare=False)
    # What the tensor is to the model that holds it (ONNX initializers); None elsewhere.
    param: Optional[ParamRole] = field(default=None, compare=False)

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
        array = self.load()
        if array.ndim == 0 or array.size == 0:
            yield array
            return
        row_bytes = max(1, array.nbytes // array.shape[0])
        rows = max(1, max_bytes // (row_bytes * row_multiple)) * row_multiple
        for start in range(0, array.shape[0], rows):
            yield array[start : start + rows]


def array_ref(array: np.ndarray, name: str) -> TensorRef:
    """An in-memory array as a TensorRef (source ARRAY_SOURCE)."""
    return TensorRef(name, ARRAY_SOURCE, array.dtype, array.shape, lambda: array)


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
    """Receives progress events; this base class ignores them (the CLI draws a bar)."""

    def start(self, tensors: int, total_bytes: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def tensor_done(self) -> None:
        pass
