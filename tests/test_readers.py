"""Readers: every format and dtype, header validation, directories, laziness, chunking."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

from qcalc.errors import ReadError
from qcalc.io.readers import Skipped, TensorRef, open_input

REPO = Path(__file__).resolve().parents[1]

FLOAT_DTYPES = {
    "float16": np.float16,
    "float32": np.float32,
    "float64": np.float64,
    "float32-big-endian": np.dtype(">f4"),
}
INT_DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]

# Safetensors dtype name -> numpy dtype, for the encodable ones.
ST_FLOATS = {
    "F64": np.dtype(np.float64),
    "F32": np.dtype(np.float32),
    "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
}
ST_SKIPPED = {
    "I8": np.int8, "U8": np.uint8, "I16": np.int16, "U16": np.uint16,
    "I32": np.int32, "U32": np.uint32, "I64": np.int64, "U64": np.uint64, "BOOL": np.bool_,
}  # fmt: skip


def edge_values(dtype: np.dtype) -> np.ndarray:
    """0, -0, ±1, ±eps, ±tiny, ±max, nan and (where the type has it) inf, in `dtype`."""
    info = ml_dtypes.finfo(dtype)
    values = [0.0, -0.0, 1.0, -1.0, float(info.eps), float(info.smallest_normal), float(info.max)]
    values += [-v for v in values[4:]] + [float("nan")]
    if dtype != np.dtype(ml_dtypes.float8_e4m3fn):  # e4m3fn has no inf
        values += [float("inf"), float("-inf")]
    return np.array(values, dtype=np.float64).astype(dtype)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def st_bytes(header: dict, data: bytes = b"", header_len: int | None = None) -> bytes:
    """Hand-made safetensors bytes: u64 length, JSON header, data."""
    text = json.dumps(header).encode()
    length = len(text) if header_len is None else header_len
    return length.to_bytes(8, "little") + text + data


def write(path: Path, content: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return str(path)


def refs(items: list) -> list[TensorRef]:
    return [item for item in items if isinstance(item, TensorRef)]


def names(items: list) -> list[str]:
    return [item.name for item in items]


def read_error(path) -> str:
    with pytest.raises(ReadError) as info:
        open_input(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


# --------------------------------------------------------------------------------------- npy


@pytest.mark.parametrize("dtype", FLOAT_DTYPES.values(), ids=FLOAT_DTYPES.keys())
@pytest.mark.parametrize("fortran", [False, True], ids=["C-order", "F-order"])
def test_npy_float_round_trip(tmp_path, dtype, fortran):
    array = np.arange(24, dtype=np.float64).reshape(2, 3, 4).astype(dtype) / 7
    if fortran:
        array = np.asfortranarray(array)
    path = tmp_path / "relu1.npy"
    np.save(path, array)
    [ref] = open_input(path)
    assert ref == TensorRef("relu1", str(path), array.dtype, (2, 3, 4), None)
    loaded = ref.load()
    assert isinstance(loaded, np.memmap)
    assert loaded.dtype == array.dtype and np.array_equal(loaded, array)


@pytest.mark.parametrize("dtype", INT_DTYPES + [np.bool_], ids=lambda d: np.dtype(d).name)
def test_npy_int_and_bool_skipped(tmp_path, dtype):
    path = tmp_path / "ids.npy"
    np.save(path, np.ones(4, dtype=dtype))
    kind = "bool" if dtype is np.bool_ else "integer"
    assert open_input(path) == [
        Skipped("ids", str(path), f"{kind} tensor ({np.dtype(dtype).name}), not encoded")
    ]


def test_npy_object_array_refused_without_unpickling(tmp_path, monkeypatch):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([1, "x", None], dtype=object), allow_pickle=True)
    monkeypatch.setattr("pickle.load", lambda *a, **k: pytest.fail("unpickled"))
    monkeypatch.setattr("pickle.loads", lambda *a, **k: pytest.fail("unpickled"))
    assert "object arrays are refused" in read_error(path)


@pytest.mark.parametrize(
    "array, words",
    [
        (np.zeros(3, dtype=[("a", "<f4"), ("b", "<i4")]), "structured dtype"),
        (np.zeros(3, dtype=np.complex64), "unsupported dtype <c8 (complex64)"),
        (np.zeros(3, dtype=ml_dtypes.bfloat16), "unsupported dtype |V2"),
        (np.array(["ab"]), "unsupported dtype <U2"),
    ],
    ids=["structured", "complex", "bfloat16-as-void", "unicode"],
)
def test_npy_unsupported_dtypes(tmp_path, array, words):
    path = tmp_path / "t.npy"
    np.save(path, array)
    assert words in read_error(path)


def test_npy_truncated_data(tmp_path):
    path = tmp_path / "t.npy"
    np.save(path, np.zeros((4, 4), np.float32))
    path.write_bytes(path.read_bytes()[:-10])
    assert read_error(path) == (
        f"{path}: truncated: header declares shape [4, 4] of float32 (64 bytes) "
        "but only 54 bytes of data follow"
    )


NPY_GARBAGE = {
    "empty": (b"", "not a valid .npy file (EOF: reading magic string, expected 8 bytes got 0)"),
    "short-magic": (b"\x93NUM", "not a valid .npy file (EOF: reading magic string"),
    "garbage": (b"garbage garbage", "not a valid .npy file (the magic string is not correct"),
    "cut-header": (b"\x93NUMPY\x01\x00\x10\x00{'descr'", "not a valid .npy file (EOF: reading"),
    "bad-descr": (
        b"\x93NUMPY\x01\x00\x39\x00{'descr': 'zz', 'fortran_order': False, 'shape': (2,), }\n",
        "not a valid .npy file (descr is not a valid dtype descriptor: 'zz')",
    ),
    "unknown-version": (b"\x93NUMPY\x07\x00", "unsupported .npy format version 7.0"),
}


@pytest.mark.parametrize("content, message", NPY_GARBAGE.values(), ids=NPY_GARBAGE.keys())
def test_npy_garbage(tmp_path, content, message):
    path = write(tmp_path / "bad.npy", content)
    assert read_error(path).startswith(f"{path}: {message}")


def test_npy_trailing_bytes_are_tolerated(tmp_path):
    path = tmp_path / "t.npy"
    np.save(path, np.ones(3, np.float32))
    path.write_bytes(path.read_bytes() + b"extra")
    assert np.array_equal(open_input(path)[0].load(), np.ones(3, np.float32))


@pytest.mark.parametrize("shape", [(), (0,), (3, 0)], ids=["0-d", "empty", "empty-2d"])
def test_npy_scalar_and_empty(tmp_path, shape):
    array = np.full(shape, 2.5, np.float32)
    path = tmp_path / "t.npy"
    np.save(path, array)
    [ref] = open_input(path)
    assert ref.shape == shape and same_bits(np.asarray(ref.load()), array)
    [chunk] = ref.chunks()
    assert same_bits(np.asarray(chunk), array)


# --------------------------------------------------------------------------------------- npz


@pytest.mark.parametrize("compressed", [False, True], ids=["stored", "compressed"])
def test_npz_members(tmp_path, compressed):
    path = tmp_path / "acts.npz"
    arrays = {
        "relu2": np.arange(6, dtype=np.float16).reshape(2, 3),
        "relu1": np.linspace(-1, 1, 10, dtype=np.float32),
        "ids": np.arange(3),
        "mask": np.array([True]),
        "scalar": np.float64(1.5),
        "empty": np.zeros((0, 2), np.float32),
    }
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    items = open_input(path)
    assert names(items) == list(arrays)  # archive order
    assert items[2] == Skipped("ids", str(path), "integer tensor (int64), not encoded")
    assert items[3] == Skipped("mask", str(path), "bool tensor (bool), not encoded")
    for ref in refs(items):
        assert ref.source == str(path)
        assert (ref.dtype, ref.shape) == (arrays[ref.name].dtype, arrays[ref.name].shape)
        assert same_bits(ref.load(), arrays[ref.name])


def test_npz_object_member_refused(tmp_path):
    path = tmp_path / "acts.npz"
    np.savez(path, good=np.ones(2, np.float32), bad=np.array([{"a": 1}], dtype=object))
    assert read_error(path) == (
        f"{path}: tensor 'bad': object arrays are refused (loading them would need pickle)"
    )


@pytest.mark.parametrize("cut", [10, 200], ids=["cut-early", "cut-late"])
def test_npz_truncated_archive(tmp_path, cut):
    path = tmp_path / "acts.npz"
    np.savez(path, a=np.ones(100, np.float32))
    path.write_bytes(path.read_bytes()[:-cut])
    assert "not a valid .npz file" in read_error(path)


def test_npz_garbage_and_bad_members(tmp_path):
    assert "not a valid .npz file" in read_error(write(tmp_path / "g.npz", b"PK\x03\x04 nonsense"))

    path = tmp_path / "m.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", b"hello")
    assert read_error(path).startswith(f"{path}: tensor 'notes.txt': not a valid .npy file")

    # A member whose npy header promises more data than it holds.
    full = tmp_path / "full.npy"
    np.save(full, np.ones(8, np.float32))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("w.npy", full.read_bytes()[:-4])
    assert read_error(path) == (
        f"{path}: tensor 'w': truncated: header declares shape [8] of float32 "
        "(32 bytes) but only 28 bytes of data follow"
    )


def test_npz_data_read_only_on_load(tmp_path):
    # Member data damaged after its npy header: opening reads headers only, loading checks
    # the whole member (CRC-32).
    path = tmp_path / "acts.npz"
    np.savez(path, a=np.ones(3, np.float32))
    content = bytearray(path.read_bytes())
    at = content.index(np.ones(3, np.float32).tobytes())
    content[at] ^= 0xFF
    path.write_bytes(bytes(content))
    [ref] = open_input(path)
    with pytest.raises(ReadError) as info:
        ref.load()
    assert str(info.value) == f"{path}: member 'a.npy': CRC-32 mismatch (corrupt data)"


# ------------------------------------------------------------------------------- safetensors


@pytest.mark.parametrize("st_dtype", ST_FLOATS, ids=str)
def test_safetensors_floats_exact_round_trip(tmp_path, st_dtype):
    dtype = ST_FLOATS[st_dtype]
    values = edge_values(dtype)
    tensors = {"edges": values, "matrix": np.arange(12).reshape(3, 4).astype(dtype)}
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path))
    items = open_input(path)
    assert sorted(names(items)) == ["edges", "matrix"]
    for ref in items:
        assert (ref.dtype, ref.shape, ref.source) == (dtype, tensors[ref.name].shape, str(path))
        loaded = ref.load()
        assert isinstance(loaded, np.memmap)
        assert same_bits(loaded, tensors[ref.name])  # bit-exact, NaN payloads included


@pytest.mark.parametrize("st_dtype", ST_SKIPPED, ids=str)
def test_safetensors_int_and_bool_skipped(tmp_path, st_dtype):
    path = tmp_path / "model.safetensors"
    save_file({"t": np.ones(3, ST_SKIPPED[st_dtype]), "w": np.ones(2, np.float32)}, str(path))
    items = open_input(path)
    kind = "bool" if st_dtype == "BOOL" else "integer"
    assert Skipped("t", str(path), f"{kind} tensor ({st_dtype}), not encoded") in items
    assert [ref.name for ref in refs(items)] == ["w"]


def test_safetensors_data_offset_order_and_metadata(tmp_path):
    a = np.array([1, 2], np.float32).tobytes()
    b = np.array([3], np.float32).tobytes()
    header = {
        "__metadata__": {"format": "pt"},
        "z_first": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "a_second": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
    }
    header = dict(reversed(header.items()))  # key order differs from offset order
    path = write(tmp_path / "m.safetensors", st_bytes(header, a + b))
    items = open_input(path)
    assert names(items) == ["z_first", "a_second"]
    assert items[0].load().tolist() == [1, 2] and items[1].load().tolist() == [3]


@pytest.mark.parametrize("shape", [[], [0], [4, 0]], ids=["0-d", "empty", "empty-2d"])
@pytest.mark.parametrize("st_dtype", ["F32", "BF16"])
def test_safetensors_scalar_and_empty(tmp_path, shape, st_dtype):
    dtype = ST_FLOATS[st_dtype]
    array = np.full(shape, 1.5, dtype)
    path = tmp_path / "m.safetensors"
    save_file({"t": array}, str(path))
    [ref] = open_input(path)
    assert ref.shape == tuple(shape) and same_bits(ref.load(), array)
    assert sum(chunk.size for chunk in ref.chunks()) == array.size


def test_safetensors_empty_tensor_at_end_of_file(tmp_path):
    # The empty tensor's offset is the file size: nothing to map, nothing to read.
    header = {
        "w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
        "e": {"dtype": "F16", "shape": [0], "data_offsets": [4, 4]},
    }
    path = write(tmp_path / "m.safetensors", st_bytes(header, b"\0\0\x80?"))
    items = open_input(path)
    assert names(items) == ["w", "e"] and items[1].load().shape == (0,)


def _valid_entry(**override):
    return {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], **override}


HEADER_ERRORS = {
    "wrong-size": (
        {"w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 10]}},
        16,
        "tensor 'w': data_offsets [0, 10] do not match shape [2, 3] of BF16 (12 bytes)",
    ),
    "past-end": (
        {"w": _valid_entry(data_offsets=[4, 12])},
        8,
        "tensor 'w': data_offsets [4, 12] outside the 8-byte data region",
    ),
    "begin-after-end": (
        {"w": _valid_entry(data_offsets=[8, 0])},
        8,
        "tensor 'w': data_offsets [8, 0] outside the 8-byte data region",
    ),
    "negative-offset": (
        {"w": _valid_entry(data_offsets=[-8, 0])},
        8,
        "tensor 'w': data_offsets [-8, 0] outside the 8-byte data region",
    ),
    "overlap": (
        {"a": _valid_entry(), "b": _valid_entry(data_offsets=[4, 12])},
        12,
        "tensors 'a' [0, 8] and 'b' [4, 12] overlap",
    ),
    "overlap-nested": (
        {
            "a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
            "b": _valid_entry(data_offsets=[4, 12]),
        },
        16,
        "tensors 'a' [0, 16] and 'b' [4, 12] overlap",
    ),
    "unknown-dtype": (
        {"w": _valid_entry(dtype="C64")},
        8,
        "tensor 'w': unsupported dtype 'C64' (expected F64, F32, F16, BF16, F8_E4M3, F8_E5M2; "
        "integer and BOOL tensors are skipped)",
    ),
    "dtype-not-string": (
        {"w": _valid_entry(dtype=4)},
        8,
        "tensor 'w': dtype must be a string, got 4",
    ),
    "missing-dtype": (
        {"w": {"shape": [2], "data_offsets": [0, 8]}},
        8,
        "tensor 'w': dtype must be a string, got None",
    ),
    "negative-dim": (
        {"w": _valid_entry(shape=[-2])},
        8,
        "tensor 'w': shape must be a list of non-negative integers, got [-2]",
    ),
    "float-dim": (
        {"w": _valid_entry(shape=[2.0])},
        8,
        "tensor 'w': shape must be a list of non-negative integers, got [2.0]",
    ),
    "shape-not-list": (
        {"w": _valid_entry(shape=2)},
        8,
        "tensor 'w': shape must be a list of non-negative integers, got 2",
    ),
    "offsets-three": (
        {"w": _valid_entry(data_offsets=[0, 4, 8])},
        8,
        "tensor 'w': data_offsets must be [begin, end] integers, got [0, 4, 8]",
    ),
    "offsets-bool": (
        {"w": _valid_entry(data_offsets=[False, 8])},
        8,
        "tensor 'w': data_offsets must be [begin, end] integers, got [False, 8]",
    ),
    "entry-not-object": (
        {"w": [1, 2]},
        0,
        "tensor 'w': entry is not an object with dtype, shape and data_offsets",
    ),
    "metadata-not-strings": (
        {"__metadata__": {"epoch": 3}, "w": _valid_entry()},
        8,
        "__metadata__ must be an object of string values",
    ),
    "metadata-not-object": (
        {"__metadata__": "hi", "w": _valid_entry()},
        8,
        "__metadata__ must be an object of string values",
    ),
}


@pytest.mark.parametrize(
    "header, data_size, message", HEADER_ERRORS.values(), ids=HEADER_ERRORS.keys()
)
def test_safetensors_header_validation(tmp_path, header, data_size, message):
    path = write(tmp_path / "model.safetensors", st_bytes(header, bytes(data_size)))
    assert read_error(path) == f"{path}: {message}"


RAW_ERRORS = {
    "empty-file": (b"", "file is 0 bytes, too short for a safetensors header (at least 8)"),
    "short-file": (b"\x05\0\0", "file is 3 bytes, too short for a safetensors header (at least 8)"),
    "length-past-end": (
        (100).to_bytes(8, "little") + b"{}",
        "header length 100 exceeds the 2 bytes that follow the length prefix "
        "(truncated or not a safetensors file)",
    ),
    "garbage": (
        b"this is not a safetensors file",
        f"header length {int.from_bytes(b'this is ', 'little')} exceeds the 22 bytes that "
        "follow the length prefix (truncated or not a safetensors file)",
    ),
    "not-utf8": ((2).to_bytes(8, "little") + b"\xff\xfe", "header is not valid UTF-8 (byte 0)"),
    "not-json": (
        (5).to_bytes(8, "little") + b"{nope",
        "header is not valid JSON "
        "(Expecting property name enclosed in double quotes at character 1)",
    ),
    "json-list": ((2).to_bytes(8, "little") + b"[]", "header is a JSON list, expected an object"),
}


@pytest.mark.parametrize("content, message", RAW_ERRORS.values(), ids=RAW_ERRORS.keys())
def test_safetensors_raw_errors(tmp_path, content, message):
    path = write(tmp_path / "model.safetensors", content)
    assert read_error(path).startswith(f"{path}: {message}")


def test_safetensors_duplicate_key(tmp_path):
    text = b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "w": {}}'
    path = write(tmp_path / "m.safetensors", len(text).to_bytes(8, "little") + text + bytes(4))
    assert read_error(path) == f"{path}: header has duplicate key 'w'"


def test_safetensors_absurd_header_length(tmp_path):
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as fp:
        fp.write((200_000_000).to_bytes(8, "little"))
        fp.truncate(200_000_100)  # sparse: no real disk use
    assert read_error(path) == (
        f"{path}: header length 200000000 exceeds the 100000000-byte limit"
    )


def test_safetensors_truncated_data(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"w": np.ones((4, 4), np.float32)}, str(path))
    path.write_bytes(path.read_bytes()[:-1])
    assert "data_offsets [0, 64] outside the 63-byte data region" in read_error(path)


def test_safetensors_open_is_header_only_and_fast(tmp_path, monkeypatch):
    gib = 1 << 30
    header = {"big": {"dtype": "BF16", "shape": [gib // 2], "data_offsets": [0, gib]}}
    path = tmp_path / "big.safetensors"
    with open(path, "wb") as fp:
        fp.write(st_bytes(header))
        fp.truncate(fp.tell() + gib)  # sparse 1 GiB of data
    monkeypatch.setattr(np, "memmap", lambda *a, **k: pytest.fail("data touched at open"))
    monkeypatch.setattr(np, "fromfile", lambda *a, **k: pytest.fail("data touched at open"))
    start = time.perf_counter()
    [ref] = open_input(path)
    assert time.perf_counter() - start < 0.25  # milliseconds in practice; slack for slow CI
    assert ref.nbytes == gib


# ------------------------------------------------------------------------------------ chunks


@pytest.mark.parametrize("fmt", ["npy", "safetensors"])
def test_chunks_bounded_and_concatenate_back(tmp_path, fmt):
    array = np.random.default_rng(0).standard_normal((100, 7)).astype(np.float32)
    if fmt == "npy":
        path = tmp_path / "t.npy"
        np.save(path, array)
    else:
        path = tmp_path / "t.safetensors"
        save_file({"t": array}, str(path))
    [ref] = open_input(path)
    chunks = list(ref.chunks(max_bytes=300))
    assert len(chunks) > 1
    assert all(chunk.nbytes <= 300 for chunk in chunks)
    assert same_bits(np.concatenate(chunks), array)


# ------------------------------------------------------------------------------ shard index


def make_sharded(folder: Path, shards: dict[str, dict[str, np.ndarray]], weight_map=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for shard, tensors in shards.items():
        save_file(tensors, str(folder / shard))
    if weight_map is None:
        weight_map = {name: shard for shard, tensors in shards.items() for name in tensors}
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    return index


SHARDS = {
    "model-00002-of-00002.safetensors": {"lm_head.weight": np.ones((2, 2), ml_dtypes.bfloat16)},
    "model-00001-of-00002.safetensors": {
        "embed.weight": np.arange(4, dtype=np.float32),
        "embed.ids": np.arange(2),
    },
}


def test_index_reads_shards_in_order(tmp_path):
    index = make_sharded(tmp_path, SHARDS)
    items = open_input(index)
    assert names(items) == ["embed.ids", "embed.weight", "lm_head.weight"]
    assert [Path(item.source).name for item in items] == [
        "model-00001-of-00002.safetensors"
    ] * 2 + ["model-00002-of-00002.safetensors"]
    assert items[0].source == os.path.join(str(tmp_path), "model-00001-of-00002.safetensors")
    assert isinstance(items[0], Skipped)
    assert same_bits(items[2].load(), np.ones((2, 2), ml_dtypes.bfloat16))


def test_index_includes_tensors_missing_from_weight_map(tmp_path):
    index = make_sharded(
        tmp_path, SHARDS, weight_map={"lm_head.weight": "model-00002-of-00002.safetensors"}
    )
    assert names(open_input(index)) == ["lm_head.weight"]  # shard 1 is not named at all
    index = make_sharded(
        tmp_path,
        SHARDS,
        weight_map={
            "lm_head.weight": "model-00002-of-00002.safetensors",
            "embed.weight": "model-00001-of-00002.safetensors",
        },
    )
    assert names(open_input(index)) == ["embed.ids", "embed.weight", "lm_head.weight"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "index is not valid JSON (Expecting property name enclosed in double"),
        ('{"metadata": {}}', "no 'weight_map' object (not a safetensors shard index)"),
        ("[1]", "no 'weight_map' object (not a safetensors shard index)"),
        ('{"weight_map": ["a"]}', "'weight_map' must map tensor names to shard file names"),
        ('{"weight_map": {"a": 3}}', "'weight_map' must map tensor names to shard file names"),
    ],
    ids=["bad-json", "no-weight-map", "not-object", "weight-map-list", "shard-not-string"],
)
def test_index_malformed(tmp_path, content, message):
    path = write(tmp_path / "model.safetensors.index.json", content.encode())
    assert read_error(path).startswith(f"{path}: {message}")


def test_index_missing_shard(tmp_path):
    index = make_sharded(tmp_path, SHARDS)
    (tmp_path / "model-00002-of-00002.safetensors").unlink()
    assert read_error(index).startswith(
        f"{index}: shard 'model-00002-of-00002.safetensors' does not exist"
    )


def test_index_tensor_absent_from_shard(tmp_path):
    weight_map = {
        "embed.weight": "model-00001-of-00002.safetensors",
        "ghost": "model-00001-of-00002.safetensors",
        "lm_head.weight": "model-00002-of-00002.safetensors",
    }
    index = make_sharded(tmp_path, SHARDS, weight_map)
    assert read_error(index) == (
        f"{index}: tensor 'ghost' listed in weight_map is not in shard "
        "'model-00001-of-00002.safetensors'"
    )


def test_index_bad_shard_reports_the_shard(tmp_path):
    index = make_sharded(tmp_path, SHARDS)
    shard = tmp_path / "model-00001-of-00002.safetensors"
    shard.write_bytes(b"xx")
    with pytest.raises(ReadError, match=r"^.*model-00001-of-00002\.safetensors: file is 2 bytes"):
        open_input(index)


# ------------------------------------------------------------------------------ directories


def test_directory_batches_nested_and_top_level(tmp_path):
    root = tmp_path / "calib"
    batches = {
        "relu1": [np.full(3, i, np.float32) for i in range(3)],
        "block0/relu2": [np.full((2, 2), i, np.float16) for i in range(2)],
    }
    for name, arrays in batches.items():
        (root / name).mkdir(parents=True)
        for i, array in enumerate(arrays):
            np.save(root / name / f"batch{i:03d}.npy", array)
    np.save(root / "weights.npy", np.ones(5, np.float32))
    np.save(root / "aux.npy", np.arange(3))
    items = open_input(root)
    assert names(items) == [
        "aux", "block0/relu2", "block0/relu2", "relu1", "relu1", "relu1", "weights"
    ]  # fmt: skip
    assert items[0] == Skipped("aux", str(root / "aux.npy"), "integer tensor (int64), not encoded")
    assert [item.source for item in items[1:6]] == [
        os.path.join(str(root), "block0", "relu2", "batch000.npy"),
        os.path.join(str(root), "block0", "relu2", "batch001.npy"),
        os.path.join(str(root), "relu1", "batch000.npy"),
        os.path.join(str(root), "relu1", "batch001.npy"),
        os.path.join(str(root), "relu1", "batch002.npy"),
    ]
    assert [item.load().tolist() for item in items[3:6]] == [[0] * 3, [1] * 3, [2] * 3]


def test_directory_batches_grouped_and_sorted(tmp_path):
    folder = tmp_path / "acts" / "conv"
    folder.mkdir(parents=True)
    for name in ["b.npy", "a.npy", "c.npy"]:
        np.save(folder / name, np.ones(1, np.float32))
    np.savez(folder / "ab.npz", extra=np.ones(1, np.float32))
    items = open_input(tmp_path / "acts")
    assert names(items) == ["conv", "conv", "conv", "extra"]
    assert [Path(item.source).name for item in items] == ["a.npy", "b.npy", "c.npy", "ab.npz"]


def test_directory_source_keeps_the_given_relative_path(tmp_path, monkeypatch):
    (tmp_path / "d" / "x").mkdir(parents=True)
    np.save(tmp_path / "d" / "x" / "0.npy", np.ones(1, np.float32))
    monkeypatch.chdir(tmp_path)
    [ref] = open_input("d")
    assert (ref.name, ref.source) == ("x", os.path.join("d", "x", "0.npy"))


def test_directory_index_shards_read_once(tmp_path):
    root = tmp_path / "ckpt"
    make_sharded(root, SHARDS)
    (root / "config.json").write_text("{}")
    (root / "README.md").write_text("hi")
    (root / "tokenizer.model").write_bytes(b"\0\1")
    save_file({"loose": np.ones(1, np.float32)}, str(root / "extra.safetensors"))
    items = open_input(root)
    assert names(items) == ["loose", "embed.ids", "embed.weight", "lm_head.weight"]


def test_directory_index_naming_shards_in_subdirectory(tmp_path):
    root = tmp_path / "ckpt"
    (root / "shards").mkdir(parents=True)
    save_file({"w": np.ones(1, np.float32)}, str(root / "shards" / "s1.safetensors"))
    save_file({"v": np.ones(1, np.float32)}, str(root / "a_first.safetensors"))
    index = {"weight_map": {"w": "shards/s1.safetensors"}}
    (root / "model.safetensors.index.json").write_text(json.dumps(index))
    assert names(open_input(root)) == ["v", "w"]  # shards/s1 only through the index


def test_directory_ignores_hidden_and_other_files(tmp_path):
    (tmp_path / ".cache").mkdir()
    np.save(tmp_path / ".cache" / "junk.npy", np.ones(1, np.float32))
    np.save(tmp_path / ".hidden.npy", np.ones(1, np.float32))
    (tmp_path / "notes.txt").write_text("x")
    np.save(tmp_path / "w.npy", np.ones(1, np.float32))
    assert names(open_input(tmp_path)) == ["w"]


@pytest.mark.parametrize(
    "content", [{}, {"README.md": b"hi", "sub/config.json": b"{}"}], ids=["empty", "no-tensors"]
)
def test_directory_without_tensors(tmp_path, content):
    root = tmp_path / "d"
    root.mkdir()
    for name, data in content.items():
        write(root / name, data)
    assert read_error(root) == f"{root}: no .npy, .npz or .safetensors files"


def test_directory_bad_file_fails_the_whole_read(tmp_path):
    np.save(tmp_path / "good.npy", np.ones(1, np.float32))
    bad = write(tmp_path / "sub" / "bad.safetensors", b"1234")
    with pytest.raises(ReadError, match=f"^{bad}: file is 4 bytes"):
        open_input(tmp_path)


def test_directory_symlink_loop(tmp_path):
    (tmp_path / "a").mkdir()
    np.save(tmp_path / "a" / "0.npy", np.ones(1, np.float32))
    (tmp_path / "a" / "loop").symlink_to(tmp_path)
    assert read_error(tmp_path) == (
        f"{tmp_path}/a/loop: symbolic link to a directory ({str(tmp_path)!r}), not followed "
        "inside an input directory (give its target as an input of its own)"
    )


# ------------------------------------------------------------------------------ open_input


def test_missing_path(tmp_path):
    path = tmp_path / "nope.npy"
    assert read_error(path) == f"{path}: no such file or directory"


@pytest.mark.parametrize("name", ["model.bin", "weights.pt", "noext", "x.json"])
def test_unknown_file_type(tmp_path, name):
    path = write(tmp_path / name, b"whatever")
    assert read_error(path) == (
        f"{path}: unknown file type "
        "(expected .npy, .npz, .safetensors, .safetensors.index.json, .onnx or a directory)"
    )


def test_os_errors_are_one_line(tmp_path):
    path = tmp_path / "t.npy"
    np.save(path, np.ones(1, np.float32))
    assert read_error(f"{path}/") == f"{path}/: Not a directory"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a non-root POSIX user")
def test_permission_denied(tmp_path):
    path = tmp_path / "t.npy"
    np.save(path, np.ones(1, np.float32))
    path.chmod(0)
    assert read_error(path) == f"{path}: Permission denied"


@pytest.mark.parametrize("module", ["npy", "npz", "safetensors", "shards"])
def test_permission_error_is_one_line(tmp_path, monkeypatch, module):
    def denied(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", path)

    suffix = {"shards": ".safetensors.index.json"}.get(module, "." + module)
    path = write(tmp_path / f"t{suffix}", b"")
    monkeypatch.setattr("qcalc.io.files.os.open", denied)  # every reader opens through it
    assert read_error(path) == f"{path}: Permission denied"


def test_path_objects_and_strings_agree(tmp_path):
    path = tmp_path / "t.npy"
    np.save(path, np.ones(1, np.float32))
    assert open_input(path) == open_input(str(path))


def _python(code: str) -> subprocess.CompletedProcess:
    """`code` run by a fresh interpreter in the repository (so imports start from nothing)."""
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )


def test_import_and_npy_open_do_not_import_heavy_modules(tmp_path):
    path = tmp_path / "t.npy"
    np.save(path, np.ones(3, np.float32))
    code = (
        "import sys, qcalc.io.readers as r; "
        f"[ref] = r.open_input({str(path)!r}); ref.load(); "
        "print(sorted(m for m in ('ml_dtypes', 'safetensors') if m in sys.modules))"
    )
    assert _python(code).stdout.strip() == "[]"


def test_float_safetensors_does_not_import_ml_dtypes(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({"w": np.ones(2, np.float32)}, str(path))
    code = (
        "import sys, qcalc.io.readers as r; "
        f"r.open_input({str(path)!r})[0].load(); "
        "print(sorted(m for m in ('ml_dtypes', 'safetensors') if m in sys.modules))"
    )
    assert _python(code).stdout.strip() == "[]"


def test_tensor_runs_do_not_import_the_model_code(tmp_path):
    """`qcalc encode x.npy` starts without the graph, the whole-model rules or the ONNX
    reader (the start-up budget of bench/bench_startup.py)."""
    path = tmp_path / "t.npy"
    np.save(path, np.ones(3, np.float32))
    code = (
        "import sys; from qcalc.__main__ import main; "
        f"sys.argv = ['qcalc', 'encode', {str(path)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = ('qcalc.core.graph', 'qcalc.ops.model', 'qcalc.io.readers.onnx', 'onnx')\n"
        "print(sorted(m for m in heavy if m in sys.modules), file=sys.stderr)"
    )
    assert _python(code).stderr.strip().splitlines()[-1] == "[]"
