"""`.npz` archives: one tensor per member, headers read at open, data loaded per member.

The archive is opened once: `zipfile` parses the central directory, then every member's local
header is checked here (signature, name, compression method, encryption) and its data is
decompressed by this module, never by numpy: a member is read by seeking to its data, so
loading member after member costs no re-parse of the archive (10 000 members open and load
in linear time).

Refused, each with a message naming the file and the member:

- a file that does not start with a zip header (a polyglot .npy + .zip, prepended data);
- a central directory or local header that is damaged, or disagrees with the other (names,
  method), member data running past the file or into the central directory, members
  overlapping each other (the trick of non-recursive zip bombs);
- member names that are not valid UTF-8 (when the archive says they are), and two members
  holding the same tensor (`w` twice, or `w` and `w.npy`);
- encrypted members, and compression methods other than stored, deflate and bzip2 (numpy
  writes stored or deflate);
- a compressed member declaring more than MAX_RATIO times its compressed size (and more than
  RATIO_FREE_BYTES): deflate never exceeds 1032:1, so only a zip bomb does;
- data that decompresses to more or fewer bytes than declared, or fails its CRC-32 (checked on
  load, when the whole member is read).

Zip members cannot be memory-mapped (they may be compressed and are not page-aligned), so a
member's data is read into memory, one member at a time, when its `load()` is called:
memory is bounded by the largest member (a member larger than the machine's physical memory
is an error), and decompression never produces more than a member's declared size (it runs
in steps of at most STEP_BYTES of output).
"""

from __future__ import annotations

import bz2
import functools
import os
import struct
import zipfile
import zlib
from typing import BinaryIO, NamedTuple

import numpy as np

from qcalc.core.tensor import Skipped, TensorRef
from qcalc.errors import ReadError, one_line
from qcalc.io.files import open_regular
from qcalc.io.readers._common import check_size, shown
from qcalc.io.readers.npy import make_ref, read_npy_header

# A compressed member may declare at most this many times its compressed size: the most
# deflate can reach (258-byte matches coded in 2 bits). bzip2 goes beyond only for data of
# absurd regularity, which is what a zip bomb is.
MAX_RATIO = 1032
# Members declaring at most this many bytes are accepted at any ratio (little memory).
RATIO_FREE_BYTES = 1 << 20
# Decompression runs in steps of at most this many bytes in and out.
STEP_BYTES = 1 << 20
# At open only the npy header of each member is read: a small first read.
_HEADER_STEP = 4096

_METHODS = {
    zipfile.ZIP_STORED: "stored",
    zipfile.ZIP_DEFLATED: "deflate",
    zipfile.ZIP_BZIP2: "bzip2",
}
_OTHER_METHODS = {zipfile.ZIP_LZMA: "lzma", 9: "deflate64", 93: "zstandard"}
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")  # as zipfile.structFileHeader
_LOCAL_SIGNATURE = b"PK\x03\x04"
_EMPTY_SIGNATURE = b"PK\x05\x06"  # an archive without members starts with its end record
# What zipfile raises for a damaged or unsupported central directory.
_ZIP_ERRORS = (
    zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, ValueError,
    struct.error, OverflowError, IndexError, KeyError,
)  # fmt: skip


class _Member(NamedTuple):
    filename: str  # as the archive names it
    name: str  # the tensor: filename without ".npy"
    raw_name: bytes  # the name's bytes, as in the local header
    header_offset: int
    method: int
    data_start: int
    compressed: int
    size: int
    crc: int

    @property
    def where(self) -> str:
        return f"member {shown(self.filename)}"


def read_npz(path: str | os.PathLike[str]) -> list[TensorRef | Skipped]:
    """Open a `.npz` archive: one entry per member, in archive order, named by its key.

    >>> [ref.name for ref in read_npz("acts.npz")]  # doctest: +SKIP
    ['relu1', 'relu2']
    """
    source = os.fspath(path)
    with open_regular(source) as fp:
        size = os.fstat(fp.fileno()).st_size
        signature = fp.read(4)
        if len(signature) < 4:
            raise _invalid(source, f"file is {size} bytes, too short for a zip archive")
        if signature not in (_LOCAL_SIGNATURE, _EMPTY_SIGNATURE):
            raise _invalid(source, f"it starts with {shown(signature)}, not a zip header")
        infos, start_dir = _central_directory(fp, size, source)
        members = [_member(fp, info, size, source) for info in infos if not info.is_dir()]
        _check_layout(members, start_dir, source)
        return [_read_member(fp, member, source) for member in members]


def _invalid(source: str, why: str) -> ReadError:
    return ReadError(f"{source}: not a valid .npz file ({why})")


class _Clamped:
    """A file as zipfile needs it, where read(n) never asks for more than the file holds
    (zipfile reads sizes taken from the archive, and a buffered read allocates n bytes first)."""

    def __init__(self, fp: BinaryIO, size: int) -> None:
        self._fp, self._size = fp, size

    def read(self, n: int | None = -1) -> bytes:
        left = max(0, self._size - self._fp.tell())
        return self._fp.read(left if n is None or n < 0 else min(n, left))

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fp.seek(offset, whence)

    def tell(self) -> int:
        return self._fp.tell()


def _central_directory(fp: BinaryIO, size: int, source: str) -> tuple[list[zipfile.ZipInfo], int]:
    try:
        with zipfile.ZipFile(_Clamped(fp, size)) as archive:  # type: ignore[arg-type]
            return archive.infolist(), archive.start_dir
    except UnicodeDecodeError as exc:
        raise _invalid(
            source, f"member name {shown(exc.object[:60])} is not valid UTF-8 (byte {exc.start})"
        ) from None
    except _ZIP_ERRORS as exc:
        raise _invalid(source, one_line(exc) or type(exc).__name__) from None


def _member(fp: BinaryIO, info: zipfile.ZipInfo, size: int, source: str) -> _Member:
    filename = info.filename
    name = filename.removesuffix(".npy")
    where = f"{source}: member {shown(filename)}"
    if info.flag_bits & 0x1:
        raise ReadError(f"{where}: encrypted members are not supported")
    if info.compress_type not in _METHODS:
        method = _OTHER_METHODS.get(info.compress_type, "unknown")
        raise ReadError(
            f"{where}: compression method {info.compress_type} ({method}) is not supported "
            "(stored, deflate or bzip2; numpy writes stored or deflate)"
        )
    raw_name = info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
    data_start = _data_start(fp, info.header_offset, raw_name, info.compress_type, size, where)
    compressed, declared = info.compress_size, info.file_size
    if data_start + compressed > size:
        raise ReadError(
            f"{where}: its {compressed} bytes of data run past the end of the file "
            f"({size} bytes; truncated?)"
        )
    if info.compress_type == zipfile.ZIP_STORED and declared != compressed:
        raise ReadError(
            f"{where}: a stored member declares {declared} bytes but holds {compressed}"
        )
    if declared > max(RATIO_FREE_BYTES, MAX_RATIO * compressed):
        raise ReadError(
            f"{where}: declares {declared} bytes from {compressed} compressed bytes, more than "
            f"{MAX_RATIO} times (deflate's limit; a zip bomb?)"
        )
    return _Member(
        filename, name, raw_name, info.header_offset, info.compress_type, data_start,
        compressed, declared, info.CRC,
    )  # fmt: skip


def _data_start(fp: BinaryIO, offset: int, raw_name: bytes, method: int, size: int, where: str):
    """Where a member's data begins, after its local header, which must match the central
    directory's entry."""
    if not 0 <= offset <= size - _LOCAL_HEADER.size:
        raise ReadError(f"{where}: local header offset {offset} is outside the file")
    fp.seek(offset)
    fields = _LOCAL_HEADER.unpack(fp.read(_LOCAL_HEADER.size))
    signature, flags, local_method = fields[0], fields[3], fields[4]
    name_len, extra_len = fields[10], fields[11]
    if signature != _LOCAL_SIGNATURE:
        raise ReadError(f"{where}: bad local header signature {shown(signature)} at {offset}")
    local_name = fp.read(name_len)
    if local_name != raw_name:
        raise ReadError(
            f"{where}: the local header names it {shown(local_name)} (central directory and "
            "local header differ)"
        )
    if local_method != method:
        raise ReadError(
            f"{where}: compression method {local_method} in the local header, {method} in the "
            "central directory"
        )
    if flags & 0x1:
        raise ReadError(f"{where}: encrypted members are not supported")
    return offset + _LOCAL_HEADER.size + name_len + extra_len


def _check_layout(members: list[_Member], start_dir: int, source: str) -> None:
    """No two members hold the same tensor; no member's bytes overlap another's or the
    central directory."""
    seen: dict[str, _Member] = {}
    for member in members:
        first = seen.setdefault(member.name, member)
        if first is not member:
            raise ReadError(
                f"{source}: tensor {shown(member.name)} is stored twice (members "
                f"{shown(first.filename)} and {shown(member.filename)})"
            )
    previous: _Member | None = None
    for member in sorted(members, key=lambda m: m.header_offset):
        if (
            previous is not None
            and member.header_offset < previous.data_start + previous.compressed
        ):
            raise _invalid(
                source, f"members {shown(previous.filename)} and {shown(member.filename)} overlap"
            )
        previous = member
    if previous is not None and previous.data_start + previous.compressed > start_dir:
        raise _invalid(source, f"{previous.where} overlaps the central directory")


def _read_member(fp: BinaryIO, member: _Member, source: str) -> TensorRef | Skipped:
    where = f"{source}: tensor {shown(member.name)}"
    stream = _Stream(fp, member, f"{source}: {member.where}", _HEADER_STEP)
    header = read_npy_header(stream.read, where)
    available = member.size - header.data_offset
    load = functools.partial(_load, source, member, header)
    return make_ref(member.name, source, header, available, where, load)


class _Stream:
    """A member's uncompressed bytes in order: never more than its declared size, reading at
    most `step` compressed bytes at a time; keeps the CRC-32 of what it returned."""

    def __init__(self, fp: BinaryIO, member: _Member, where: str, step: int) -> None:
        fp.seek(member.data_start)
        self._fp, self._member, self._where, self._step = fp, member, where, step
        self._compressed_left = member.compressed
        self.left = member.size  # uncompressed bytes still to come
        self.crc = 0
        self._tail = b""  # compressed input zlib has not consumed yet
        self._decompressor: object = None
        if member.method == zipfile.ZIP_DEFLATED:
            self._decompressor = zlib.decompressobj(-15)
        elif member.method == zipfile.ZIP_BZIP2:
            self._decompressor = bz2.BZ2Decompressor()

    def read(self, n: int) -> bytes:
        """Up to n bytes: fewer only at the declared end, or where the data stops short."""
        n = min(n, self.left)
        parts = []
        got = 0
        while got < n:
            part = self._next(n - got)
            if not part:
                break
            parts.append(part)
            got += len(part)
        data = b"".join(parts)
        self.left -= len(data)
        self.crc = zlib.crc32(data, self.crc)
        return data

    def finish(self) -> None:
        """Read what is left (in bounded steps), then check the size, the end of the
        compressed stream and the CRC-32."""
        size = self._member.size
        while self.left and self.read(min(self.left, STEP_BYTES)):
            pass
        if self.left:
            raise ReadError(
                f"{self._where}: its data stops {self.left} bytes short of the {size} declared "
                "(truncated or corrupt)"
            )
        if self._next(1):
            raise ReadError(f"{self._where}: decompresses to more than the {size} bytes declared")
        if self._decompressor is not None and not self._decompressor.eof:  # type: ignore
            raise ReadError(f"{self._where}: its compressed data does not end (truncated)")
        if self.crc != self._member.crc:
            raise ReadError(f"{self._where}: CRC-32 mismatch (corrupt data)")

    def _input(self, limit: int) -> bytes:
        data = self._fp.read(min(limit, self._compressed_left))
        self._compressed_left -= len(data)
        return data

    def _next(self, limit: int) -> bytes:
        """Some bytes (at most `limit`); b"" at the end of the data."""
        decompressor = self._decompressor
        try:
            if decompressor is None:
                return self._input(min(limit, self._step))
            if isinstance(decompressor, bz2.BZ2Decompressor):
                while not decompressor.eof:
                    data = self._input(self._step) if decompressor.needs_input else b""
                    if decompressor.needs_input and not data:
                        return b""
                    out = decompressor.decompress(data, limit)
                    if out or not (data or decompressor.needs_input):
                        return out
                return b""
            while not decompressor.eof:  # type: ignore[attr-defined]
                data = self._tail or self._input(self._step)
                out = decompressor.decompress(data, limit)  # type: ignore[attr-defined]
                self._tail = decompressor.unconsumed_tail  # type: ignore[attr-defined]
                if out or not data:
                    return out
            return b""
        except (zlib.error, OSError, EOFError, ValueError) as exc:
            raise ReadError(f"{self._where}: corrupt compressed data ({one_line(exc)})") from None


def _load(source: str, member: _Member, header) -> np.ndarray:
    where = f"{source}: {member.where}"
    with open_regular(source) as fp:
        size = os.fstat(fp.fileno()).st_size
        start = _data_start(fp, member.header_offset, member.raw_name, member.method, size, where)
        if start != member.data_start or start + member.compressed > size:
            raise ReadError(f"{where}: the file changed since it was opened")
        stream = _Stream(fp, member, where, STEP_BYTES)
        if read_npy_header(stream.read, where) != header:
            raise ReadError(f"{where}: the file changed since it was opened (its header differs)")
        nbytes = check_size(header.shape, header.dtype.itemsize, header.dtype.name, where)
        data = _allocate(nbytes, where)
        done = 0
        while done < nbytes:
            part = stream.read(min(nbytes - done, STEP_BYTES))
            if not part:
                break
            data[done : done + len(part)] = np.frombuffer(part, np.uint8)
            done += len(part)
        if done < nbytes:
            raise ReadError(
                f"{where}: its data stops {nbytes - done} bytes short of the {nbytes} its "
                "header declares (truncated or corrupt)"
            )
        stream.finish()
    array = data.view(header.dtype) if nbytes else np.empty(0, header.dtype)
    return array.reshape(header.shape, order="F" if header.fortran_order else "C")


def _allocate(nbytes: int, where: str) -> np.ndarray:
    """Room for a member's data; ReadError beyond the machine's physical memory (a member of
    zeros may declare up to MAX_RATIO times the file's size) or when allocation fails."""
    memory = _physical_memory()
    if memory is not None and nbytes > memory:
        raise ReadError(
            f"{where}: its {nbytes} bytes of data exceed this machine's {memory} bytes of memory "
            "(.npz members are read into memory; .npy and .safetensors files are memory-mapped)"
        )
    try:
        return np.empty(nbytes, np.uint8)
    except MemoryError:
        raise ReadError(f"{where}: cannot allocate {nbytes} bytes for its data") from None


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
