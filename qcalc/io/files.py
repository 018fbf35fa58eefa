"""Opening input files: read-only, regular files only (a FIFO would block, a device never
ends), with one-line errors."""

from __future__ import annotations

import contextlib
import os
import stat
from typing import BinaryIO, Iterator, Union

from qcalc.errors import QcalcError, ReadError, os_errors

PathLike = Union[str, "os.PathLike[str]"]


def file_kind(mode: int) -> str:
    """What a stat mode says a file is, in words ("a FIFO", "a directory", ...)."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


@contextlib.contextmanager
def open_regular(
    path: PathLike, error: type[QcalcError] = ReadError, doing: str = "", pipes: bool = False
) -> Iterator[BinaryIO]:
    """`path` opened read-only as a binary file, when it is a regular file (symlinks
    followed), or with `pipes` a FIFO too (`<(cmd)`, /dev/stdin: for files read once, whole,
    by a reader that bounds what it reads); `error` "PATH: [DOING: ]is a FIFO (only regular
    files are read)" otherwise, and for any OSError. Opening never blocks."""
    with os_errors(path, error, doing):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        with os_errors(path, error, doing):
            mode = os.fstat(fd).st_mode
        if not (stat.S_ISREG(mode) or pipes and stat.S_ISFIFO(mode)):
            prefix = f"{os.fspath(path)}: " + (f"{doing}: " if doing else "")
            read = "regular files and pipes" if pipes else "regular files"
            raise error(f"{prefix}is {file_kind(mode)} (only {read} are read)")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        file = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with file, os_errors(path, error, doing):
        yield file
