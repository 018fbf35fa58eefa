"""Atomic file writes: a file is either its old self or completely new, never truncated."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from typing import IO, Iterator, Union

from qcalc.errors import WriteError
from qcalc.io.files import file_kind

PathLike = Union[str, "os.PathLike[str]"]


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", encoding: str = "utf-8") -> Iterator[IO]:
    """Open a temporary file beside `path` for writing; on a clean exit it is flushed,
    fsync'ed and renamed over `path`. On any exception (KeyboardInterrupt included) the
    temporary file is removed and an existing `path` is left untouched.

    >>> import tempfile, os
    >>> target = os.path.join(tempfile.mkdtemp(), "out.json")
    >>> with atomic_open(target) as f:
    ...     _ = f.write("{}\\n")
    >>> open(target).read()
    '{}\\n'
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes text ('w') or bytes ('wb'), not {mode!r}")
    path = os.fspath(path)
    _check_target(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        text = {"encoding": encoding, "newline": ""} if mode == "w" else {}
        f = os.fdopen(fd, mode, **text)
    except BaseException:
        os.close(fd)
        _remove(temp)
        raise
    try:
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temp, _final_mode(path))
        os.replace(temp, path)
    except BaseException:
        _remove(temp)
        raise
    _fsync_directory(directory)


def _check_target(path: str) -> None:
    """An existing `path` must be a regular file, not a symbolic link: the rename would
    replace a device node, a FIFO or the link itself with a new regular file."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:  # missing (the common case), or unreachable: the write says why
        return
    if stat.S_ISLNK(mode):
        raise WriteError(
            f"{path}: cannot write: is a symbolic link, which would be replaced by a file "
            "(write to the path it points to)"
        )
    if not stat.S_ISREG(mode):
        raise WriteError(
            f"{path}: cannot write: is {file_kind(mode)}, which would be replaced by a file"
        )


def write_atomic(path: PathLike, data: Union[str, bytes]) -> None:
    """Replace `path` with `data` (str as UTF-8) atomically; see `atomic_open`."""
    with atomic_open(path, "wb") as f:
        _write(f, data.encode("utf-8") if isinstance(data, str) else data)


def _write(f: IO[bytes], data: bytes) -> None:
    f.write(data)


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether `a` and `b` name the same file (links and `..` resolved). False when either
    does not exist, unless both spell the same resolved path."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return os.path.realpath(a) == os.path.realpath(b)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _final_mode(path: str) -> int:
    """Keep an existing file's permissions; a new file gets 0o666 minus the umask."""
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX); harmless where directories cannot be opened."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
