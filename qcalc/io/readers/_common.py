"""Helpers shared by the readers: which dtypes are encoded, skipped or refused; file kinds."""

from __future__ import annotations

import numpy as np

from qcalc.errors import ReadError, one_line


def skip_reason(dtype: np.dtype, where: str) -> str | None:
    """None for an encodable numpy dtype, a Skipped reason for integer/bool, else ReadError.

    Encodable: float16, float32, float64 (either byte order). `where` prefixes error messages
    ("<path>" or "<path>: tensor 'name'").
    """
    if dtype.hasobject:
        raise ReadError(f"{where}: object arrays are refused (loading them would need pickle)")
    if dtype.names is not None or dtype.subdtype is not None:
        raise ReadError(f"{where}: structured dtype {one_line(dtype.descr)} is not supported")
    if dtype.kind == "f" and dtype.itemsize in (2, 4, 8):
        return None
    if dtype.kind in "iu":
        return f"integer tensor ({dtype.name}), not encoded"
    if dtype.kind == "b":
        return f"bool tensor ({dtype.name}), not encoded"
    raise ReadError(
        f"{where}: unsupported dtype {dtype.str} ({dtype.name}); "
        "expected float16, float32 or float64"
    )


INDEX_SUFFIX = ".safetensors.index.json"


def kind_of(filename: str) -> str | None:
    """'npy', 'npz', 'safetensors' or 'index' by file name (case-insensitive); None otherwise."""
    lower = filename.lower()
    if lower.endswith(INDEX_SUFFIX):
        return "index"
    for kind in ("npy", "npz", "safetensors"):
        if lower.endswith("." + kind):
            return kind
    return None
