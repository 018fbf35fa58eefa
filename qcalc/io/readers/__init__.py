"""Input readers: turn a path into lazy tensor references, reading headers only."""

from __future__ import annotations

import os
import stat

from qcalc.core.tensor import Skipped, TensorRef
from qcalc.errors import ReadError, os_errors
from qcalc.io.readers._common import kind_of, shown
from qcalc.io.readers.directory import read_directory
from qcalc.io.readers.npy import read_npy
from qcalc.io.readers.npz import read_npz
from qcalc.io.readers.safetensors import read_safetensors
from qcalc.io.readers.shards import read_index

__all__ = [
    "OnnxModel",
    "Skipped",
    "TensorRef",
    "is_model",
    "open_input",
    "read_directory",
    "read_index",
    "read_model",
    "read_npy",
    "read_npz",
    "read_safetensors",
]


def open_input(path: str | os.PathLike[str]) -> list[TensorRef | Skipped]:
    """Every tensor in a `.npy`, `.npz`, `.safetensors`, shard index or directory, in order,
    or every parameter of an `.onnx` model (`read_model`: needs the onnx package).

    Only headers are read; tensor data is read when `TensorRef.load()` / `chunks()` is called.
    Integer and bool tensors come back as `Skipped`; anything unreadable raises `ReadError`,
    at open or on load, with a one-line message naming the file, the tensor and the problem.
    Only regular files are opened (read-only, never blocking), nothing is unpickled, and every
    size read from a file is bounded before it is used (each reader's docstring has its bounds).

    >>> [(ref.name, ref.shape) for ref in open_input("model.safetensors")]  # doctest: +SKIP
    [('fc.bias', (10,)), ('fc.weight', (10, 64))]
    """
    source = os.fspath(path)
    if "\0" in source:  # os.stat would raise ValueError
        raise ReadError(f"{shown(source)}: a path cannot contain a NUL byte")
    with os_errors(source):
        mode = os.stat(source).st_mode
    if stat.S_ISDIR(mode):
        return read_directory(source)
    kind = kind_of(os.path.basename(source))
    if kind == "npy":
        return [read_npy(source)]
    if kind == "npz":
        return read_npz(source)
    if kind == "safetensors":
        return read_safetensors(source)
    if kind == "index":
        return read_index(source)
    if kind == "onnx":
        return read_model(source).tensors
    raise ReadError(
        f"{source}: unknown file type "
        "(expected .npy, .npz, .safetensors, .safetensors.index.json, .onnx or a directory)"
    )


def is_model(path: str | os.PathLike[str]) -> bool:
    """Whether `path` names an ONNX model (by its suffix, as `open_input` tells file kinds;
    a directory never is)."""
    source = os.fspath(path)
    return kind_of(os.path.basename(source)) == "onnx" and not os.path.isdir(source)


def read_model(path: str | os.PathLike[str]):
    """An ONNX model's graph and parameters (`qcalc.io.readers.onnx.read_model`), imported
    when a model is read: start-up stays free of it."""
    from qcalc.io.readers.onnx import read_model as read

    return read(path)


def __getattr__(name: str):
    if name == "OnnxModel":
        from qcalc.io.readers.onnx import OnnxModel

        return OnnxModel
    raise AttributeError(name)
