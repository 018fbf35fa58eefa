"""Readers against hostile files: regressions for the defects a fuzzing campaign found, then
property-based fuzzing of every format through the library and (for a sample) the CLI.

The contract: a bad input is a ReadError whose message is one line naming the file; never
another exception, a hang or unbounded memory; a file that reads is consistent (every chunk of
every tensor reads, and adds up to the shape its header declares).

Fuzzing: QCALC_FUZZ_EXAMPLES=N raises every property test's example count and draws new
random examples (the default run is derandomized and small, a few seconds).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import struct
import time
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import check_cli, check_contract, error, read_all, runner, write
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save, save_file

from qcalc.cli import app
from qcalc.errors import ReadError
from qcalc.io.readers import open_input
from qcalc.io.readers._common import MAX_RANK
from qcalc.io.readers.npz import MAX_RATIO

LONG_RUN = int(os.environ.get("QCALC_FUZZ_EXAMPLES", "0"))


def fuzz_settings(examples: int):
    return settings(
        max_examples=LONG_RUN or examples,
        derandomize=not LONG_RUN,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )  # fmt: skip


# ------------------------------------------------------------------------------- builders


def npy_of(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def npy_raw(header: str, data: bytes = b"", version=(1, 0), length: int | None = None) -> bytes:
    text = header.encode("latin1")
    size = 2 if version == (1, 0) else 4
    length = len(text) if length is None else length
    return b"\x93NUMPY" + bytes(version) + length.to_bytes(size, "little") + text + data


def npy_header(shape: str, descr: str = "'<f4'", fortran: str = "False") -> str:
    return f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}"


def st_raw(header, data: bytes = b"", length: int | None = None) -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    length = len(text) if length is None else length
    return length.to_bytes(8, "little") + text + data


def zip_of(members, method=zipfile.ZIP_STORED) -> bytes:
    """A zip of (name, bytes) members, duplicates allowed."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name"
        with zipfile.ZipFile(buffer, "w", method) as archive:
            for name, content in members:
                archive.writestr(name, content)
    return buffer.getvalue()


# ------------------------------------------------------------ 1. sizes and shapes trusted


SHAPE_ERRORS = {
    "5000-digit-dim": (
        npy_raw(npy_header("(" + "9" * 5000 + ",)")),
        "not a valid .npy file (cannot parse header \"{'descr': '<f4', 'fortran_order': "
        'Fal...999999999999999999999999999999999,), }")',
    ),
    "product-past-int64": (
        npy_raw(npy_header("(4294967296, 4294967296)")),
        "shape [4294967296, 4294967296] of float32 spans more than 2^63-1 bytes (its non-zero "
        "dimensions times the item size must fit in 64 bits)",
    ),
    "negative-dim": (
        npy_raw(npy_header("(-1, 2)")),
        "not a valid .npy file (shape must be a tuple of non-negative integers, got (-1, 2))",
    ),
    "bool-dim": (
        npy_raw(npy_header("(True, 2)")),
        "not a valid .npy file (shape must be a tuple of non-negative integers, got (True, 2))",
    ),
    "rank-64": (
        npy_raw(npy_header("(" + "1, " * 64 + ")"), bytes(4)),
        f"shape has 64 dimensions, more than the {MAX_RANK} qcalc reads",
    ),
    "rank-33": (
        npy_raw(npy_header("(" + "1, " * 33 + ")"), bytes(4)),
        "shape has 33 dimensions, more than the 32 qcalc reads",
    ),
    "zero-by-2^63": (
        npy_raw(npy_header(f"(0, {2**63})")),
        "shape [0, 9223372036854775808] of float32 spans more than 2^63-1 bytes (its non-zero "
        "dimensions times the item size must fit in 64 bits)",
    ),
    "v2-header-length-2^32-1": (
        b"\x93NUMPY\x02\x00" + (2**32 - 1).to_bytes(4, "little") + b"{",
        ".npy header length 4294967295 exceeds the 10000-byte limit",
    ),
    "descr-with-newline": (
        npy_raw(npy_header("(2,)", descr="'<f4\\nboom'")),
        "not a valid .npy file (descr is not a valid dtype descriptor: '<f4\\nboom')",
    ),
}


@pytest.mark.parametrize("content, message", SHAPE_ERRORS.values(), ids=SHAPE_ERRORS.keys())
def test_npy_shapes_and_sizes_are_bounded(tmp_path, content, message):
    path = write(tmp_path / "t.npy", content)
    assert error(path) == f"{path}: {message}"


def test_npy_largest_rank_and_empty_tensors_read(tmp_path):
    path = write(tmp_path / "t.npy", npy_raw(npy_header("(" + "1, " * 32 + ")"), bytes(4)))
    [ref] = read_all(path)
    assert ref.shape == (1,) * 32
    path = write(tmp_path / "e.npy", npy_raw(npy_header(f"(0, {2**61 - 1})")))
    [ref] = read_all(path)
    assert ref.shape == (0, 2**61 - 1) and ref.nbytes == 0


ST_SHAPE_ERRORS = {
    "5000-digit-dim": (
        b'{"w": {"dtype": "F32", "shape": [' + b"9" * 5000 + b'], "data_offsets": [0, 0]}}',
        "header holds an integer of 5000 characters (at most 20: every valid value fits in "
        "64 bits)",
    ),
    "product-past-int64": (
        {"w": {"dtype": "F32", "shape": [2**32, 2**32], "data_offsets": [0, 0]}},
        "tensor 'w': shape [4294967296, 4294967296] of F32 spans more than 2^63-1 bytes (its "
        "non-zero dimensions times the item size must fit in 64 bits)",
    ),
    "rank-10000": (
        {"w": {"dtype": "F32", "shape": [1] * 10_000, "data_offsets": [0, 4]}},
        "tensor 'w': shape has 10000 dimensions, more than the 32 qcalc reads",
    ),
    "zero-by-2^63": (
        {"w": {"dtype": "F32", "shape": [0, 2**63], "data_offsets": [0, 0]}},
        "tensor 'w': shape [0, 9223372036854775808] of F32 spans more than 2^63-1 bytes (its "
        "non-zero dimensions times the item size must fit in 64 bits)",
    ),
    "nested-100000-deep": (
        b"[" * 100_000 + b"]" * 100_000,
        "header is not valid JSON (nested deeper than the parser's limit of",
    ),
    "name-with-newline": (
        {"a\nb": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}},
        "tensor 'a\\nb': data_offsets [0, 4] do not match shape [2] of F32 (8 bytes)",
    ),
    "long-name": (
        {"x" * 5000: {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}},
        f"tensor '{'x' * 37}...{'x' * 38}': data_offsets [0, 4] do not match shape [2] of F32 "
        "(8 bytes)",
    ),
}


@pytest.mark.parametrize("header, message", ST_SHAPE_ERRORS.values(), ids=ST_SHAPE_ERRORS.keys())
def test_safetensors_shapes_sizes_and_nesting_are_bounded(tmp_path, header, message):
    path = write(tmp_path / "m.safetensors", st_raw(header, bytes(4)))
    assert error(path).startswith(f"{path}: {message}")


# ------------------------------------------------------------------------------ 2. nesting


def test_index_nested_100000_deep(tmp_path):
    path = write(
        tmp_path / "model.safetensors.index.json",
        b'{"weight_map": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    )
    assert error(path).startswith(
        f"{path}: index is not valid JSON (nested deeper than the parser's limit of"
    )


def test_directory_1500_levels_deep(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    # Built and removed through directory descriptors: by path, each step would resolve the
    # whole path again (quadratic), and os.makedirs / shutil.rmtree recurse.
    fds = [os.open(root, os.O_RDONLY)]
    try:
        for _ in range(1500):
            os.mkdir("a", dir_fd=fds[-1])
            fds.append(os.open("a", os.O_RDONLY, dir_fd=fds[-1]))
        fd = os.open("x.npy", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fds[-1])
        os.write(fd, npy_of(np.ones(1, np.float32)))
        os.close(fd)
        assert error(root) == (
            f"{root}{'/a' * 65}: more than 64 directory levels below {root} (the most a "
            "directory input is walked)"
        )
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink("x.npy", dir_fd=fds[-1])
        while len(fds) > 1:
            os.close(fds.pop())
            os.rmdir("a", dir_fd=fds[-1])
        os.close(fds.pop())


def test_directory_64_levels_deep_reads(tmp_path):
    deep = tmp_path.joinpath(*["a"] * 64)
    deep.mkdir(parents=True)
    np.save(deep / "x.npy", np.ones(1, np.float32))
    assert [ref.name for ref in read_all(tmp_path)] == ["/".join(["a"] * 64)]


@pytest.mark.parametrize("target", ["root", "ancestor", "sibling"])
def test_directory_symlinks_to_directories_are_refused(tmp_path, target):
    root = tmp_path / "d"
    (root / "acts").mkdir(parents=True)
    np.save(root / "acts" / "0.npy", np.ones(1, np.float32))
    pointing = {"root": Path("/"), "ancestor": root, "sibling": root / "acts"}[target]
    (root / "link").symlink_to(pointing)
    assert error(root) == (
        f"{root}/link: symbolic link to a directory ({str(pointing)!r}), not followed inside "
        "an input directory (give its target as an input of its own)"
    )


def test_directory_symlinks_to_files_are_followed(tmp_path):
    # A Hugging Face cache snapshot: every file a link into ../blobs.
    blobs, snapshot = tmp_path / "blobs", tmp_path / "snapshots" / "abc"
    blobs.mkdir()
    snapshot.mkdir(parents=True)
    save_file({"w": np.ones(2, np.float32)}, str(blobs / "1234"))
    (snapshot / "model.safetensors").symlink_to(blobs / "1234")
    assert [ref.name for ref in read_all(snapshot)] == ["w"]


# ---------------------------------------------------------------------------------- 3. zip


def npz_of(**arrays) -> bytes:
    return zip_of([(f"{name}.npy", npy_of(array)) for name, array in arrays.items()])


def central_directory(content: bytes) -> int:
    return content.rindex(b"PK\x01\x02")


def test_npz_corrupt_central_directory(tmp_path):
    good = npz_of(a=np.ones(3, np.float32), b=np.zeros(2, np.float32))
    bad = bytearray(good)
    bad[central_directory(good) : central_directory(good) + 4] = b"XXXX"
    path = write(tmp_path / "cd.npz", bytes(bad))
    assert error(path) == (
        f"{path}: not a valid .npz file (Bad magic number for central directory)"
    )
    bad = bytearray(good)
    bad[central_directory(good) + 42] ^= 0x40  # the last member's local header offset
    path = write(tmp_path / "offset.npz", bytes(bad))
    assert error(path).startswith(f"{path}: member 'b.npy': bad local header signature")


def test_npz_corrupt_local_header(tmp_path):
    good = npz_of(a=np.ones(3, np.float32), b=np.zeros(2, np.float32))
    bad = bytearray(good)
    bad[good.index(b"PK\x03\x04", 10) + 26] = 0x7F  # member b's name length
    path = write(tmp_path / "local.npz", bytes(bad))
    assert error(path).startswith(f"{path}: member 'b.npy': the local header names it b\"b.npy")
    assert error(path).endswith("(central directory and local header differ)")


def test_npz_member_name_not_utf8(tmp_path):
    content = bytearray(zip_of([("ab.npy", npy_of(np.ones(2, np.float32)))]))
    content = bytearray(content.replace(b"ab.npy", b"a\xff.npy"))
    content[central_directory(content) + 9] |= 0x08  # flag bit 11: names are UTF-8
    content[7] |= 0x08
    path = write(tmp_path / "utf8.npz", bytes(content))
    assert error(path) == (
        f"{path}: not a valid .npz file (member name b'a\\xff.npy' is not valid UTF-8 (byte 1))"
    )


def test_npz_polyglot_npy_and_zip(tmp_path):
    content = npy_of(np.ones(2, np.float32)) + npz_of(a=np.zeros(2, np.float32))
    path = write(tmp_path / "poly.npz", content)
    assert error(path) == (
        f"{path}: not a valid .npz file (it starts with b'\\x93NUM', not a zip header)"
    )
    # Read as .npy, the same bytes are one tensor: its data, the zip after it trailing.
    [ref] = read_all(write(tmp_path / "poly.npy", content))
    assert ref.load().tolist() == [1, 1]


@pytest.mark.parametrize("names", [("w.npy", "w.npy"), ("w", "w.npy")], ids=["same", "suffix"])
def test_npz_duplicate_members(tmp_path, names):
    members = [(names[0], npy_of(np.ones(2, np.float32))), (names[1], npy_of(np.zeros(2)))]
    path = write(tmp_path / "dup.npz", zip_of(members))
    assert error(path) == (
        f"{path}: tensor 'w' is stored twice (members {names[0]!r} and {names[1]!r})"
    )


def test_npz_overlapping_members(tmp_path):
    # A member whose data covers the next member's local header and data: the trick of
    # non-recursive zip bombs (many entries sharing one compressed kernel).
    content = bytearray(npz_of(a=np.ones(2, np.float32), b=np.ones(2, np.float32)))
    first = central_directory(content)
    first = content.index(b"PK\x01\x02", first - 200)  # a's central directory entry
    stretch = content.index(b"PK\x03\x04", 4)  # where b's local header starts
    size = stretch - 30 - len("a.npy") + 100
    for at in (first + 20, 18):  # sizes in a's central directory entry and local header
        struct.pack_into("<LL", content, at, size, size)
    path = write(tmp_path / "overlap.npz", bytes(content))
    assert error(path) == f"{path}: not a valid .npz file (members 'a.npy' and 'b.npy' overlap)"


def test_npz_10000_members_open_and_load_in_linear_time(tmp_path, monkeypatch):
    member = npy_of(np.ones(2, np.float32))
    path = write(tmp_path / "many.npz", zip_of((f"t{i}.npy", member) for i in range(10_000)))
    archives = []
    real = zipfile.ZipFile
    monkeypatch.setattr(zipfile, "ZipFile", lambda *a, **k: archives.append(a) or real(*a, **k))
    start = time.perf_counter()
    items = open_input(path)
    for ref in items[::20]:  # each load seeks to its member: no archive parsed again
        assert [chunk.tolist() for chunk in ref.chunks()] == [[1.0, 1.0]]
    elapsed = time.perf_counter() - start
    assert len(items) == 10_000 and items[-1].name == "t9999"
    assert len(archives) == 1  # the central directory is parsed once, not once per member
    assert elapsed < 20  # ~1.5 s on the 2-core CI machine; minutes when it was quadratic


def bz2_member(raw: bytes) -> bytearray:
    return bytearray(zip_of([("big.npy", raw)], zipfile.ZIP_BZIP2))


def test_npz_bzip2_bomb_refused_before_decompressing(tmp_path):
    content = bz2_member(npy_of(np.zeros(1 << 20, np.float32)))  # 4 MiB in ~250 bytes
    path = write(tmp_path / "bomb.npz", bytes(content))
    message = error(path)
    assert message.startswith(f"{path}: member 'big.npy': declares 4194432 bytes from ")
    assert message.endswith(
        f"compressed bytes, more than {MAX_RATIO} times (deflate's limit; a zip bomb?)"
    )


def test_npz_member_decompressing_past_its_declared_size(tmp_path):
    # The central directory declares a 512 KiB member (under the ratio-free size) whose bzip2
    # stream holds 16 MiB: decompression stops at the declared size, then fails.
    raw = npy_of(np.zeros(1 << 17, np.float32))
    content = bz2_member(raw + bytes(16 << 20))
    for at in (central_directory(content) + 16, 14):  # central directory, local header
        struct.pack_into("<L", content, at, zlib.crc32(raw))  # CRC-32
        struct.pack_into("<L", content, at + 8, len(raw))  # uncompressed size
    path = write(tmp_path / "liar.npz", bytes(content))
    [ref] = open_input(path)
    with pytest.raises(ReadError) as info:
        ref.load()
    assert str(info.value) == (
        f"{path}: member 'big.npy': decompresses to more than the {len(raw)} bytes declared"
    )


def test_npz_compressed_zeros_within_deflates_limit_read(tmp_path):
    path = tmp_path / "zeros.npz"
    np.savez_compressed(path, z=np.zeros(1 << 21, np.float32))  # 8 MiB at ~1028:1
    [ref] = read_all(path)
    assert ref.shape == (1 << 21,)


def test_npz_member_larger_than_memory(tmp_path, monkeypatch):
    path = tmp_path / "big.npz"
    np.savez_compressed(path, z=np.zeros(1024, np.float32))
    [ref] = open_input(path)  # opening reads the header only
    monkeypatch.setattr("qcalc.io.readers.npz._physical_memory", lambda: 4000)
    with pytest.raises(ReadError) as info:
        ref.load()
    assert str(info.value) == (
        f"{path}: member 'z.npy': its 4096 bytes of data exceed this machine's 4000 bytes of "
        "memory (.npz members are read into memory; .npy and .safetensors files are "
        "memory-mapped)"
    )


def test_npz_unsupported_compression(tmp_path):
    path = write(tmp_path / "x.npz", zip_of([("a.npy", npy_of(np.ones(2)))], zipfile.ZIP_LZMA))
    assert error(path) == (
        f"{path}: member 'a.npy': compression method 14 (lzma) is not supported (stored, "
        "deflate or bzip2; numpy writes stored or deflate)"
    )


# ------------------------------------------------------------------ 4. special files, paths


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name", ["x.npy", "x.npz", "x.safetensors", "m.safetensors.index.json"])
def test_fifo_input_refused_without_blocking(tmp_path, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    assert error(fifo) == f"{fifo}: is a FIFO (only regular files are read)"
    np.save(tmp_path / "ok.npy", np.ones(1, np.float32))
    assert error(tmp_path) == f"{fifo}: is a FIFO (only regular files are read)"


def test_device_named_like_a_tensor_refused(tmp_path):
    link = tmp_path / "zero.npy"
    link.symlink_to("/dev/zero")
    assert error(link) == f"{link}: is a character device (only regular files are read)"


def make_shards(folder: Path, weight_map: dict, shards: dict | None = None) -> Path:
    shards = shards or {"a.safetensors": {"w": np.ones(2, np.float32)}}
    folder.mkdir(parents=True, exist_ok=True)
    for name, tensors in shards.items():
        save_file(tensors, str(folder / name))
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": weight_map}))
    return index


@pytest.mark.parametrize(
    "shard",
    ["../elsewhere.safetensors", "/abs/elsewhere.safetensors", "sub/../../x.safetensors", ".."],
)
def test_index_shard_outside_its_folder(tmp_path, shard):
    save_file({"w": np.ones(2, np.float32)}, str(tmp_path / "elsewhere.safetensors"))
    index = make_shards(tmp_path / "ckpt", {"w": shard})
    assert error(index) == (
        f"{index}: shard {shard!r} (of tensor 'w') is not a file name inside the index's folder"
    )


def test_index_shard_name_with_control_characters(tmp_path):
    index = make_shards(tmp_path, {"w": "a\n.safetensors"})
    assert error(index) == (
        f"{index}: shard 'a\\n.safetensors' (of tensor 'w') has control characters in its name"
    )


def test_index_tensor_in_two_shards(tmp_path):
    shards = {
        "a.safetensors": {"w": np.ones(2, np.float32)},
        "b.safetensors": {"w": np.zeros(2, np.float32), "v": np.ones(1, np.float32)},
    }
    index = make_shards(tmp_path, {"w": "a.safetensors", "v": "b.safetensors"}, shards)
    assert error(index) == (
        f"{index}: tensor 'w' is in two shards, 'a.safetensors' and 'b.safetensors'"
    )


def test_index_one_shard_under_two_spellings_is_read_once(tmp_path):
    shards = {"a.safetensors": {"w": np.ones(2, np.float32), "v": np.ones(1, np.float32)}}
    index = make_shards(tmp_path, {"w": "a.safetensors", "v": "./a.safetensors"}, shards)
    assert sorted(item.name for item in read_all(index)) == ["v", "w"]


def test_index_duplicate_keys_and_size_bound(tmp_path):
    path = write(
        tmp_path / "model.safetensors.index.json",
        b'{"weight_map": {"w": "a.safetensors", "w": "b.safetensors"}}',
    )
    assert error(path) == f"{path}: index has duplicate key 'w'"


# ------------------------------------------------------------------------------- 5. names


def test_member_and_tensor_names_with_control_characters_stay_on_one_line(tmp_path):
    members = [("a\nb.npy", b"\x93NUMPY\x01\x00\x09\x00{'a':")]
    path = write(tmp_path / "n.npz", zip_of(members))
    assert error(path) == (
        f"{path}: tensor 'a\\nb': not a valid .npy file (EOF: reading array header, expected 9 "
        "bytes got 5)"
    )
    header = {"\x1b[31mred\r": {"dtype": "X", "shape": [1], "data_offsets": [0, 4]}}
    path = write(tmp_path / "m.safetensors", st_raw(header, bytes(4)))
    assert error(path).startswith(f"{path}: tensor '\\x1b[31mred\\r': unsupported dtype 'X'")


# ============================================================================== fuzzing

_examples = itertools.count()


def example_dir(tmp_path: Path) -> Path:
    folder = tmp_path / f"ex{next(_examples)}"
    folder.mkdir()
    return folder


MUTATIONS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=6)
CUTS = st.one_of(st.none(), st.integers(0, 1 << 20))
SPLATS = st.lists(
    st.tuples(st.integers(0, 1 << 20), st.sampled_from([b"\xff" * 4, b"\0" * 4, b"\x7f\xff"])),
    max_size=2,
)


@st.composite
def mutated(draw, content: bytes) -> bytes:
    """`content` intact, or with a few bytes changed, a few runs overwritten, or cut short."""
    data = bytearray(content)
    how = draw(st.sampled_from(["intact", "bytes", "runs", "cut", "all"]))
    if data and how in ("bytes", "all"):
        for at, value in draw(MUTATIONS):
            data[at % len(data)] = value
    if data and how in ("runs", "all"):
        for at, run in draw(SPLATS):
            at %= len(data)
            data[at : at + len(run)] = run
    if how in ("cut", "all"):
        del data[draw(st.integers(0, 1 << 20)) % (len(data) + 1) :]
    return bytes(data)


NPY_DTYPES = [
    "<f2", "<f4", "<f8", ">f4", ">f2", "<i8", "|i1", "<u2", "|b1", "<c8", "<U2", "|S3", "|V4",
    "<M8[s]", "<f16",
]  # fmt: skip
SMALL_SHAPES = st.lists(st.integers(0, 4), max_size=3).map(tuple)


@st.composite
def arrays(draw, dtypes=tuple(NPY_DTYPES)) -> np.ndarray:
    """Small arrays of any bits (NaN, inf, denormals) in one of `dtypes`, C or Fortran order."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    shape = draw(SMALL_SHAPES)
    count = int(np.prod(shape))
    raw = draw(st.binary(min_size=count * dtype.itemsize, max_size=count * dtype.itemsize))
    array = np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)
    return np.asfortranarray(array) if draw(st.booleans()) else array


EXTREME_DIMS = st.sampled_from(
    ["-1", "True", "2.0", "None", "'2'", "(2,)", str(2**31), str(2**32), str(2**62),
     str(2**63 - 1), str(2**63), str(2**64), "9" * 30, "9" * 5000, "0x" + "f" * 300]
)  # fmt: skip
DIM_TEXT = st.one_of(st.integers(0, 5).map(str), EXTREME_DIMS)
SHAPE_TEXT = st.one_of(
    st.lists(DIM_TEXT, max_size=6).map(lambda dims: "(" + "".join(d + ", " for d in dims) + ")"),
    st.integers(0, 70).map(lambda rank: "(" + "1, " * rank + ")"),
    st.sampled_from(["[2, 3]", "2", "()", "(" * 300 + ")" * 300, "-" * 3000 + "1"]),
)
DESCRS = st.sampled_from(
    ["'<f4'", "'>f8'", "'<f2'", "'|b1'", "'<i8'", "'|O'", "'<U3'", "'|V0'", "'|S0'", "'<f16'",
     "'<c8'", "'<M8[D]'", "'(2,)<f4'", "'<f4,<f4'", "'zz'", "''", "[('a', '<f4')]",
     "[('a', '|O')]", "('<f4', (2,))", "3", "None", "'a5'", "'V9999999999999'", "'f' * 3"]
)  # fmt: skip
HEADER_TEXT = st.one_of(
    st.builds(npy_header, SHAPE_TEXT, DESCRS, st.sampled_from(["False", "True", "1", "None"])),
    st.text(st.characters(max_codepoint=255), max_size=120),
    st.sampled_from(["{}", "{'descr': '<f4'}", "[1, 2]", "{'descr': '<f4', 'fortran_order': "
                     "False, 'shape': (2,), 'extra': 1}"]),
)  # fmt: skip


@st.composite
def npy_files(draw) -> bytes:
    if draw(st.booleans()):
        return draw(mutated(npy_of(draw(arrays()))))
    header = draw(HEADER_TEXT)
    version = draw(st.sampled_from([(1, 0), (2, 0), (3, 0), (0, 0), (255, 255)]))
    length = draw(st.one_of(st.none(), st.sampled_from([0, 1, 9_999, 10_001, 65_535, 2**32 - 1])))
    text = header.encode("latin1")
    size = 2 if version == (1, 0) else 4
    length = min(len(text) if length is None else length, 256**size - 1)
    data = draw(st.binary(max_size=64))
    return b"\x93NUMPY" + bytes(version) + length.to_bytes(size, "little") + text + data


@fuzz_settings(100)
@given(content=npy_files())
def test_fuzz_npy(tmp_path, content):
    folder = example_dir(tmp_path)
    path = write(folder / "t.npy", content)
    check_contract(path, folder)


NAMES = st.one_of(
    st.sampled_from(["w", "a.b", "x" * 200, "", "__metadata__"]),
    st.text(st.characters(max_codepoint=0x2FF), max_size=8),
)
ST_DTYPES = st.sampled_from(
    ["F32", "F16", "F64", "BF16", "F8_E4M3", "F8_E5M2", "I64", "U8", "BOOL", "C64", "f32", 3, None]
)
ST_DIMS = st.one_of(
    st.integers(0, 4),
    st.sampled_from([-1, True, 2.5, "2", None, 2**31, 2**32, 2**62, 2**63 - 1, 2**63, 2**64]),
)


@st.composite
def safetensors_files(draw) -> bytes:
    kind = draw(st.sampled_from(["valid", "consistent", "wild", "raw"]))
    if kind == "valid":
        tensors = {}
        for name in draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), max_size=3, unique=True)):
            tensors[name] = draw(arrays(("<f4", "<f2", "<f8", "<i4", "|u1")))
        return draw(mutated(save({k: np.ascontiguousarray(v) for k, v in tensors.items()})))
    if kind == "raw":
        body = draw(
            st.one_of(
                st.binary(max_size=80),
                st.integers(0, 3000).map(lambda n: b"[" * n + b"]" * n),
                st.integers(0, 3000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
            )
        )
        length = draw(st.one_of(st.none(), st.sampled_from([0, 2, 2**31, 2**63, 2**64 - 1])))
        return st_raw(body, draw(st.binary(max_size=16)), length)
    header: dict = {}
    offset = 0
    for name in draw(st.lists(NAMES, max_size=4)):
        dtype = draw(ST_DTYPES)
        if kind == "consistent":
            shape = draw(st.lists(st.integers(0, 3), max_size=3))
            size = int(np.prod(shape)) * {"F64": 8, "F32": 4, "I64": 8}.get(dtype, 2)
            offsets = [offset, offset + size]
            offset += size
        else:
            shape = draw(st.one_of(st.lists(ST_DIMS, max_size=5), st.integers(30, 40).map(
                lambda n: [1] * n), st.just("2")))  # fmt: skip
            offsets = draw(st.one_of(
                st.lists(st.one_of(st.integers(-2, 40), st.sampled_from([2**63, 2**64, 1.5])),
                         max_size=3),
                st.just(None),
            ))  # fmt: skip
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": offsets}
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.sampled_from([{"format": "pt"}, {"n": 3}, "x", None]))
    data = bytes(offset) if kind == "consistent" else draw(st.binary(max_size=64))
    return draw(mutated(st_raw(header, data))) if draw(st.booleans()) else st_raw(header, data)


@fuzz_settings(100)
@given(content=safetensors_files())
def test_fuzz_safetensors(tmp_path, content):
    folder = example_dir(tmp_path)
    path = write(folder / "m.safetensors", content)
    check_contract(path, folder)


MEMBER_NAMES = st.one_of(
    st.sampled_from(["a.npy", "a", "b.npy", "dir/", "dir/c.npy", "a\nb.npy", "\x1b.npy"]),
    st.text(st.characters(max_codepoint=0x2FF, exclude_characters="\0"), min_size=1, max_size=6),
)
METHODS = st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2])


@st.composite
def npz_files(draw) -> bytes:
    members = []
    for name in draw(st.lists(MEMBER_NAMES, max_size=4)):
        content = draw(st.one_of(
            arrays().map(npy_of),
            npy_files(),
            st.binary(max_size=40),
            st.sampled_from([npy_of(np.zeros(300_000, np.float32))]),
        ))  # fmt: skip
        members.append((name, content, draw(METHODS)))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, content, method in members:
                if name.endswith("/"):
                    archive.mkdir(name)
                else:
                    archive.writestr(name, content, compress_type=method)
    return draw(mutated(buffer.getvalue())) if draw(st.booleans()) else buffer.getvalue()


@fuzz_settings(100)
@given(content=npz_files())
def test_fuzz_npz(tmp_path, content):
    folder = example_dir(tmp_path)
    path = write(folder / "a.npz", content)
    check_contract(path, folder)


SHARD_NAMES = st.sampled_from(
    ["s1.safetensors", "s2.safetensors", "./s1.safetensors", "sub/s3.safetensors",
     "../s1.safetensors", "/etc/passwd", "missing.safetensors", "s1\n.safetensors", "", ".",
     "sub", "sub/"]
)  # fmt: skip


@st.composite
def shard_folders(draw) -> tuple[dict[str, bytes], bytes]:
    """Files of a checkpoint folder (relative path -> bytes) and its index."""
    files = {}
    for shard in ["s1.safetensors", "s2.safetensors", "sub/s3.safetensors"]:
        names = draw(st.lists(st.sampled_from(["w", "v", "u"]), max_size=2, unique=True))
        tensors = {name: np.ones(2, np.float32) for name in names}
        content = save(tensors) if tensors else st_raw({})
        files[shard] = draw(mutated(content)) if draw(st.integers(0, 4)) == 0 else content
    if draw(st.booleans()):
        weight_map = draw(st.dictionaries(st.sampled_from(["w", "v", "u", "x"]), SHARD_NAMES))
        index = json.dumps({"metadata": {}, "weight_map": weight_map}).encode()
    else:
        index = draw(st.one_of(
            st.binary(max_size=40),
            st.integers(0, 3000).map(lambda n: b'{"weight_map": ' + b"[" * n + b"]" * n + b"}"),
            st.sampled_from([b'{"weight_map": {"w": 3}}', b"[]", b'{"weight_map": {"w": "s1'
                             b'.safetensors", "w": "s2.safetensors"}}']),
        ))  # fmt: skip
    return files, index


@fuzz_settings(60)
@given(folder_content=shard_folders())
def test_fuzz_shard_index(tmp_path, folder_content):
    files, index = folder_content
    folder = example_dir(tmp_path)
    for name, content in files.items():
        write(folder / name, content)
    path = write(folder / "model.safetensors.index.json", index)
    check_contract(path, folder)


ENTRY_KINDS = st.sampled_from(
    ["npy", "bad-npy", "npz", "safetensors", "dir", "hidden", "txt", "fifo", "link-up",
     "link-file", "link-root", "dangling"]
)  # fmt: skip


@st.composite
def trees(draw, depth: int = 0) -> list:
    entries = []
    for index, kind in enumerate(draw(st.lists(ENTRY_KINDS, max_size=4))):
        if kind == "dir" and depth < 3:
            entries.append((f"d{index}", kind, draw(trees(depth + 1))))
        else:
            entries.append((f"e{index}", kind, None))
    return entries


def build_tree(folder: Path, entries: list) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, kind, children in entries:
        path = folder / name
        if kind == "dir":
            build_tree(path, children or [])
        elif kind == "npy":
            np.save(path.with_suffix(".npy"), np.ones(2, np.float32))
        elif kind == "bad-npy":
            write(path.with_suffix(".npy"), b"\x93NUMPY\x01\x00\xff\xff{")
        elif kind == "npz":
            np.savez(path.with_suffix(".npz"), **{name: np.ones(1, np.float32)})
        elif kind == "safetensors":
            save_file({name: np.ones(1, np.float32)}, str(path.with_suffix(".safetensors")))
        elif kind == "hidden":
            np.save(folder / f".{name}.npy", np.ones(1, np.float32))
        elif kind == "txt":
            write(path.with_suffix(".txt"), b"x")
        elif kind == "fifo" and hasattr(os, "mkfifo"):
            os.mkfifo(path.with_suffix(".npy"))
        elif kind == "link-up":
            path.symlink_to("..")
        elif kind == "link-root":
            path.symlink_to("/")
        elif kind == "link-file":
            target = folder / f"{name}-target.bin"
            np.save(target.with_suffix(".npy"), np.ones(1, np.float32))
            (folder / f"{name}.npy").symlink_to(target.with_suffix(".npy"))
        elif kind == "dangling":
            (folder / f"{name}.npy").symlink_to(folder / "nowhere")


@fuzz_settings(60)
@given(tree=trees())
def test_fuzz_directories(tmp_path, tree):
    folder = example_dir(tmp_path)
    build_tree(folder / "root", tree)
    check_contract(folder / "root", folder)


# --------------------------------------------------------------------------- through the CLI


@st.composite
def any_input(draw) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["t.npy", "a.npz", "m.safetensors"]))
    files = {"t.npy": npy_files(), "a.npz": npz_files(), "m.safetensors": safetensors_files()}
    return kind, draw(files[kind])


@fuzz_settings(30)
@given(case=any_input(), command=st.sampled_from(["ls", "encode"]))
def test_fuzz_through_the_cli(tmp_path, case, command):
    name, content = case
    folder = example_dir(tmp_path)
    path = write(folder / name, content)
    check_cli(path, command)


def test_cli_hostile_samples_are_one_line_errors(tmp_path):
    cases = {
        "t.npy": npy_raw(npy_header(f"(0, {2**63})")),
        "m.safetensors": st_raw({"a\nb": {"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}}),
        "a.npz": npz_of(a=np.ones(2, np.float32))[:-30],
        "model.safetensors.index.json": b'{"weight_map": {"w": "../x.safetensors"}}',
    }
    for name, content in cases.items():
        check_cli(write(tmp_path / name, content))
    if not hasattr(os, "mkfifo"):
        return
    fifo = tmp_path / "f.npy"
    os.mkfifo(fifo)
    check_cli(fifo)
    result = runner.invoke(app, ["ls", str(fifo)])
    assert result.stderr == f"qcalc: error: {fifo}: is a FIFO (only regular files are read)\n"
