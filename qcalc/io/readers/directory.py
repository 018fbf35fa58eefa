"""Directories, walked recursively in name order.

- A subdirectory (at any depth) that directly holds `.npy` files is ONE tensor, named by its
  path relative to the input directory with "/" (e.g. "block0/relu1"); each of those files,
  in name order, is one calibration batch: one TensorRef per file, all with that name.
- `.npy` files directly in the input directory are separate tensors named by file stem.
- `.npz`, `.safetensors` and `*.safetensors.index.json` files are read as if given directly;
  shards named by an index anywhere in the tree are read only through that index.
- Other files, and entries whose name starts with "." (e.g. `.cache`), are ignored.
"""

from __future__ import annotations

import os
from typing import Iterator, NamedTuple

from qcalc.core.tensor import Skipped, TensorRef
from qcalc.errors import ReadError, os_errors
from qcalc.io.readers._common import kind_of
from qcalc.io.readers.npy import read_npy
from qcalc.io.readers.npz import read_npz
from qcalc.io.readers.safetensors import read_safetensors
from qcalc.io.readers.shards import read_index


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
    units = list(_walk(root, (), set()))
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


def _walk(folder: str, rel: tuple[str, ...], visited: set[str]) -> Iterator[_Unit]:
    real = os.path.realpath(folder)
    if real in visited:  # a symlink loop
        return
    visited.add(real)
    with os_errors(folder):
        entries = sorted(
            (entry for entry in os.scandir(folder) if not entry.name.startswith(".")),
            key=lambda entry: entry.name,
        )
        is_dir = {entry.name: entry.is_dir() for entry in entries}
    npy_files = tuple(
        entry.path for entry in entries if not is_dir[entry.name] and kind_of(entry.name) == "npy"
    )
    batches_emitted = False
    for entry in entries:
        if is_dir[entry.name]:
            yield from _walk(entry.path, (*rel, entry.name), visited)
            continue
        kind = kind_of(entry.name)
        if kind is None:
            continue
        if kind != "npy":
            yield _Unit(kind, "", (entry.path,))
        elif not rel:  # top level: each file is its own tensor
            yield _Unit("npy", entry.name[: -len(".npy")], (entry.path,))
        elif not batches_emitted:  # all batches together, where the first one sorts
            batches_emitted = True
            yield _Unit("batches", "/".join(rel), npy_files)
