"""Directories, walked in name order, depth first.

- A subdirectory (at any depth) that directly holds `.npy` files is ONE tensor, named by its
  path relative to the input directory with "/" (e.g. "block0/relu1"); each of those files,
  in name order, is one calibration batch: one TensorRef per file, all with that name.
- `.npy` files directly in the input directory are separate tensors named by file stem.
- `.npz`, `.safetensors` and `*.safetensors.index.json` files are read as if given directly;
  shards named by an index anywhere in the tree are read only through that index.
- Other files (`.onnx` models too: give a model as an input of its own), and entries whose
  name starts with "." (e.g. `.cache`), are ignored.

The walk stays inside the tree:

- A symbolic link to a directory is an error naming it: following it could leave the tree
  (a link to `/` would walk the whole filesystem), loop (a link to an ancestor), or read the
  same files twice under two names. Give its target as an input of its own instead.
- Symbolic links to files are followed wherever they lead (a Hugging Face cache snapshot links
  every file into `blobs/`); like every input, the file they reach must be a regular file: a
  FIFO, a device or a socket with a tensor suffix is an error, never opened for reading.
- At most MAX_DEPTH directory levels below the input directory are walked; deeper is an
  error. The walk keeps its own stack (no recursion).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from qcalc.core.tensor import Skipped, TensorRef
from qcalc.errors import ReadError, os_errors
from qcalc.io.readers._common import kind_of, shown
from qcalc.io.readers.npy import read_npy
from qcalc.io.readers.npz import read_npz
from qcalc.io.readers.safetensors import read_safetensors
from qcalc.io.readers.shards import read_index

# Directory levels walked below the input directory: dumps named by module path nest 5-10 deep.
MAX_DEPTH = 64


class _Unit(NamedTuple):
    kind: str  # 'npy', 'batches', 'npz', 'safetensors' or 'index'
    name: str  # tensor name for 'npy' and 'batches'
    paths: tuple[str, ...]


def read_directory(path: str | os.PathLike[str]) -> list[TensorRef | Skipped]:
    """Open every tensor under a directory (rules in the module docstring).

    >>> [ref.name for ref in read_directory("calib")]  # doctest: +SKIP
    ['block0/relu1', 'block0/relu1', 'block0/relu2', 'block0/relu2']
    """
    root = os.fspath(path)
    units = list(_walk(root))
    indexes = {unit.paths[0]: read_index(unit.paths[0]) for unit in units if unit.kind == "index"}
    # Shards are read through their index only; comparing normalized paths finds them.
    through_index = {os.path.normpath(item.source) for items in indexes.values() for item in items}

    result: list[TensorRef | Skipped] = []
    for unit in units:
        if unit.kind == "index":
            result.extend(indexes[unit.paths[0]])
        elif unit.kind == "safetensors":
            if os.path.normpath(unit.paths[0]) not in through_index:
                result.extend(read_safetensors(unit.paths[0]))
        elif unit.kind == "npz":
            result.extend(read_npz(unit.paths[0]))
        else:  # 'npy' or 'batches'
            result.extend(read_npy(batch, unit.name) for batch in unit.paths)
    if not result:
        raise ReadError(f"{root}: no .npy, .npz or .safetensors files")
    return result


@dataclass
class _Folder:
    rel: tuple[str, ...]  # path below the input directory
    entries: Iterator[tuple[str, str, bool]]  # (name, path, is a directory), in name order
    npy_files: tuple[str, ...]
    batches_emitted: bool = False


def _walk(root: str) -> Iterator[_Unit]:
    stack = [_list(root, ())]
    while stack:
        folder = stack[-1]
        entry = next(folder.entries, None)
        if entry is None:
            stack.pop()
            continue
        name, path, is_dir = entry
        if is_dir:
            if len(folder.rel) >= MAX_DEPTH:
                raise ReadError(
                    f"{path}: more than {MAX_DEPTH} directory levels below {root} "
                    "(the most a directory input is walked)"
                )
            stack.append(_list(path, (*folder.rel, name)))
            continue
        kind = kind_of(name)
        if kind is None or kind == "onnx":
            continue
        if kind != "npy":
            yield _Unit(kind, "", (path,))
        elif not folder.rel:  # top level: each file is its own tensor
            yield _Unit("npy", name[: -len(".npy")], (path,))
        elif not folder.batches_emitted:  # all batches together, where the first one sorts
            folder.batches_emitted = True
            yield _Unit("batches", "/".join(folder.rel), folder.npy_files)


def _list(folder: str, rel: tuple[str, ...]) -> _Folder:
    """A folder's visible entries in name order; ReadError for a symbolic link to a directory."""
    entries = []
    with os_errors(folder), os.scandir(folder) as scan:
        for entry in scan:
            if entry.name.startswith("."):
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            if not is_dir and entry.is_symlink() and entry.is_dir():
                raise ReadError(
                    f"{entry.path}: symbolic link to a directory "
                    f"({shown(os.readlink(entry.path))}), not followed inside an input "
                    "directory (give its target as an input of its own)"
                )
            entries.append((entry.name, entry.path, is_dir))
    entries.sort()
    npy_files = tuple(
        path for name, path, is_dir in entries if not is_dir and kind_of(name) == "npy"
    )
    return _Folder(rel, iter(entries), npy_files)
