"""Work arrays reused chunk after chunk.

Fresh multi-MB temporaries per chunk cost page faults that took longer than the arithmetic
on them (see qcalc.core.tensor.DEFAULT_CHUNK_BYTES), so the hot loops (histogram counting, the
metrics pass) keep theirs in a dict that lives as long as one tensor or batch.
"""

from __future__ import annotations

import numpy as np


def work_array(workspace: dict, key: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """An uninitialised array of `shape` and `dtype` from `workspace[key]`, grown as needed."""
    size = int(np.prod(shape, dtype=np.int64))
    buffer = workspace.get(key)
    if buffer is None or buffer.size < size or buffer.dtype != dtype:
        buffer = workspace[key] = np.empty(size, dtype)
    return buffer[:size].reshape(shape)
