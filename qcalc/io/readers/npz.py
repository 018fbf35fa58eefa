"""`.npz` archives: one tensor per member, headers read at open, data loaded per member.

Zip members cannot be memory-mapped (they may be compressed and are not page-aligned), so a
member's data is read into memory, one member at a time, when its `load()` is called.
"""

from __future__ import annotations

import functools
import os
import zipfile
import zlib

import numpy as np

from qcalc.core.tensor import Skipped, TensorRef
from qcalc.errors import ReadError, one_line, os_errors
from qcalc.io.readers.npy import make_ref, read_npy_header

# What zipfile raises for a damaged or unsupported archive (NotImplementedError: compression).
_ZIP_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, zlib.error)


def read_npz(path: str | os.PathLike[str]) -> list[TensorRef | Skipped]:
    """Open a `.npz` archive: one entry per member, in archive order, named by its key.

    >>> [ref.name for ref in read_npz("acts.npz")]  # doctest: +SKIP
    ['relu1', 'relu2']
    """
    source = os.fspath(path)
    items: list[TensorRef | Skipped] = []
    with os_errors(source):
        try:
            with zipfile.ZipFile(source) as archive:
                for info in archive.infolist():
                    if info.is_dir():
                        continue
                    items.append(_read_member(archive, info, source))
        except _ZIP_ERRORS as exc:
            raise ReadError(f"{source}: not a valid .npz file ({one_line(exc)})") from None
    return items


def _read_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str
) -> TensorRef | Skipped:
    name = info.filename[: -len(".npy")] if info.filename.endswith(".npy") else info.filename
    where = f"{source}: tensor {name!r}"
    with archive.open(info) as member:
        header = read_npy_header(member, where)
    available = info.file_size - header.data_offset
    load = functools.partial(_load, source, info.filename)
    return make_ref(name, source, header, available, where, load)


def _load(source: str, member: str) -> np.ndarray:
    try:
        with os_errors(source), np.load(source, allow_pickle=False) as archive:
            return archive[member]
    except (ValueError, *_ZIP_ERRORS) as exc:
        raise ReadError(f"{source}: member {member!r}: {one_line(exc)}") from None
