"""The ONNX reader against hostile files: every bad model, bad initializer and bad external
data file is a one-line ReadError naming the model file (at open or on load), never another
exception; then truncation and byte-mutation fuzzing, and the command line."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from helpers import check_cli, deadline, error, onnx_file, read_all, runner, write
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import set_external_data

from qcalc.cli import app
from qcalc.errors import QcalcError, ReadError
from qcalc.io.readers import read_model
from qcalc.io.readers._common import MAX_RANK, shown
from qcalc.io.readers.onnx import MAX_MODEL_BYTES

MATMUL = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")


def tensor(name="w", elem=TensorProto.FLOAT, dims=(2, 3), raw: bytes | None = None):
    """A TensorProto with exactly the fields given (helper.make_tensor checks sizes)."""
    proto = TensorProto(name=name, data_type=elem)
    proto.dims.extend(dims)
    if raw is not None:
        proto.raw_data = raw
    return proto


def model_with(tmp_path: Path, *tensors: TensorProto, node=MATMUL, name="m.onnx") -> Path:
    return onnx_file(tmp_path / name, [node], list(tensors))


def external(tmp_path: Path, **entries: str) -> Path:
    """A model whose weight w (2 x 3 float32) is in external data described by `entries`."""
    proto = tensor()
    proto.data_location = TensorProto.EXTERNAL
    for key, value in entries.items():
        proto.external_data.add(key=key, value=value)
    return model_with(tmp_path, proto)


def small_model(folder: Path) -> Path:
    """Conv (raw float32, a typed float16 bias), a Gemm (transB), LayerNorm with external
    data, a Reshape with an int64 shape, a Mul with an int constant: every path of the reader."""
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], name="conv", kernel_shape=[1, 1]),
        helper.make_node("Reshape", ["c", "shape"], ["r"], name="reshape"),
        helper.make_node("Gemm", ["r", "gw", "gb"], ["g"], name="gemm", transB=1, alpha=1.0),
        helper.make_node("LayerNormalization", ["g", "ls", "lb"], ["l"], name="ln", axis=-1),
        helper.make_node("Mul", ["l", "k"], ["y"], name="mul"),
    ]
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((2, 3, 1, 1)).astype(np.float32), "cw"),
        helper.make_tensor("cb", TensorProto.FLOAT16, [2], np.ones(2, np.float16)),
        numpy_helper.from_array(np.array([1, -1], np.int64), "shape"),
        numpy_helper.from_array(rng.standard_normal((3, 4)).astype(np.float32), "gw"),
        numpy_helper.from_array(np.zeros(3, np.float32), "gb"),
        numpy_helper.from_array(np.ones(3, np.float32), "ls"),
        numpy_helper.from_array(np.zeros(3, np.float32), "lb"),
        numpy_helper.from_array(np.array([2], np.int32), "k"),
    ]
    offset = 0
    for proto in inits[5:7]:  # the LayerNorm's parameters in external data
        raw = proto.raw_data
        set_external_data(proto, "w.bin", offset, len(raw))
        proto.ClearField("raw_data")
        with open(folder / "w.bin", "ab") as fp:
            fp.write(raw)
        offset += len(raw)
    return onnx_file(folder / "m.onnx", nodes, inits)


def test_the_small_model_reads(tmp_path):
    path = small_model(tmp_path)
    items = read_all(path)
    assert [item.name for item in items] == ["cw", "cb", "gw", "gb", "ls", "lb", "k"]
    assert isinstance(items[4].load(), np.memmap)


# ------------------------------------------------------------------------- 1. not a model


def test_empty_file(tmp_path):
    path = write(tmp_path / "m.onnx", b"")
    assert error(path) == f"{path}: not an ONNX model (no graph)"


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes(tmp_path, seed):
    content = np.random.default_rng(seed).bytes(1000)
    path = write(tmp_path / "m.onnx", content)
    assert error(path).startswith(f"{path}: not an ONNX model (")


def test_text_file(tmp_path):
    path = write(tmp_path / "m.onnx", b"ir_version: 8\ngraph { node { op_type: 'Relu' } }\n")
    assert error(path).startswith(f"{path}: not an ONNX model (")


def test_every_prefix_of_a_model(tmp_path):
    content = small_model(tmp_path).read_bytes()
    assert len(content) < 2000
    for length in range(len(content)):
        path = write(tmp_path / f"cut{length}.onnx", content[:length])
        try:
            with deadline(20):
                read_all(path)
        except ReadError as exc:
            message = str(exc)
            assert message.isprintable() and str(path) in message, (length, message)


def test_larger_than_protobuf_parses(tmp_path):
    path = tmp_path / "big.onnx"
    with open(path, "wb") as fp:  # sparse: no disk used
        fp.truncate(MAX_MODEL_BYTES + 1)
    assert error(path) == (
        f"{path}: file is {MAX_MODEL_BYTES + 1} bytes, more than the {MAX_MODEL_BYTES} protobuf "
        "can parse (larger models keep their weights in external data files)"
    )


def test_node_without_op_type(tmp_path):
    path = onnx_file(tmp_path / "m.onnx", [helper.make_node("", ["x"], ["y"], name="n\n")])
    assert error(path) == f"{path}: node 0 ('n\\n'): no op_type"


def test_duplicate_and_unnamed_initializers(tmp_path):
    path = model_with(tmp_path, tensor(raw=bytes(24)), tensor(raw=bytes(24)))
    assert error(path) == f"{path}: two initializers are named 'w'"
    path = model_with(tmp_path, tensor(name="", raw=bytes(24)))
    assert error(path) == f"{path}: initializer 0 has no name"


def test_names_that_are_not_utf8(tmp_path):
    path = model_with(
        tmp_path,
        tensor(name="wXYZ", raw=bytes(24)),
        node=helper.make_node("MatMul", ["x", "wXYZ"], ["y"], name="mmXYZ"),
    )
    content = path.read_bytes()
    write(path, content.replace(b"mmXYZ", b"mm\xff\xfeZ"))
    assert error(path) == f"{path}: node 0: name b'mm\\xff\\xfeZ' is not valid UTF-8"
    write(path, content.replace(b"wXYZ", b"w\xc3(Z"))
    assert error(path) == f"{path}: initializer 0: name b'w\\xc3(Z' is not valid UTF-8"


def test_string_attribute_not_utf8(tmp_path):
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="c", auto_pad="NOTSETXX")
    path = model_with(tmp_path, tensor(dims=(1, 1, 1, 1), raw=bytes(4)), node=node)
    write(path, path.read_bytes().replace(b"NOTSETXX", b"NOTSET\xff\xff"))
    assert error(path) == (
        f"{path}: node 0 ('c'): attribute 'auto_pad': b'NOTSET\\xff\\xff' is not valid UTF-8"
    )


def test_gemm_trans_b_of_another_type(tmp_path):
    node = helper.make_node("Gemm", ["x", "w"], ["y"], transB="yes")
    path = model_with(tmp_path, tensor(raw=bytes(24)), node=node)
    [ref] = read_model(path).tensors
    assert ref.param.axis == 0


# --------------------------------------------------------------------- 2. bad initializers


BAD_TENSORS = {
    "raw-too-short": (
        tensor(raw=bytes(20)),
        "raw_data holds 20 bytes, dims [2, 3] of FLOAT need 24",
    ),
    "raw-too-long": (
        tensor(raw=bytes(28)),
        "raw_data holds 28 bytes, dims [2, 3] of FLOAT need 24",
    ),
    "no-data": (tensor(), "float_data holds 0 values, dims [2, 3] need 6"),
    "typed-too-few": (
        helper.make_tensor("w", TensorProto.FLOAT, [5], [1.0] * 5),
        "float_data holds 5 values, dims [2, 3] need 6",
    ),
    "negative-dim": (
        tensor(dims=(2, -3), raw=bytes(24)),
        "dims must be non-negative integers, got [2, -3]",
    ),
    "huge-dims": (
        tensor(dims=(2**40, 2**40), raw=bytes(24)),
        "shape [1099511627776, 1099511627776] of FLOAT spans more than 2^63-1 bytes (its "
        "non-zero dimensions times the item size must fit in 64 bits)",
    ),
    "zero-times-huge": (
        tensor(dims=(0, 2**62), raw=b""),
        "shape [0, 4611686018427387904] of FLOAT spans more than 2^63-1 bytes (its non-zero "
        "dimensions times the item size must fit in 64 bits)",
    ),
    "rank-33": (
        tensor(dims=(1,) * (MAX_RANK + 1), raw=bytes(4)),
        f"shape has {MAX_RANK + 1} dimensions, more than the {MAX_RANK} qcalc reads",
    ),
    "undefined-type": (tensor(elem=0, raw=bytes(24)), "unknown data_type 0"),
}


@pytest.mark.parametrize("case", BAD_TENSORS)
def test_bad_initializers(tmp_path, case):
    proto, message = BAD_TENSORS[case]
    fixed = TensorProto()
    fixed.CopyFrom(proto)
    fixed.dims[:] = [2, 3] if case == "typed-too-few" else fixed.dims
    path = model_with(tmp_path, fixed)
    assert error(path) == f"{path}: tensor 'w': {message}"


def test_raw_data_length_checked_on_load(tmp_path):
    path = model_with(tmp_path, tensor(raw=bytes(20)))
    [ref] = read_model(path).tensors  # opens: the data is only checked when read
    with pytest.raises(ReadError, match="raw_data holds 20 bytes"):
        ref.load()


def test_tensor_names_with_control_characters_stay_on_one_line(tmp_path):
    name = "w\n\x1b[2J" + "x" * 500
    node = helper.make_node("MatMul", ["x", name], ["y"])
    path = model_with(tmp_path, tensor(name=name, raw=bytes(4)), node=node)
    message = error(path)
    assert message.startswith(f"{path}: tensor 'w\\n\\x1b[2Jxxx")
    assert message.endswith("xxx': raw_data holds 4 bytes, dims [2, 3] of FLOAT need 24")
    assert "x...x" in message and len(message) < 300


# ----------------------------------------------------------------------- 3. external data


EXTERNAL_ERRORS = {
    "missing-file": (
        dict(location="gone.bin"),
        "{data}: external data of tensor 'w' in {model}: no such file or directory",
    ),
    "too-short": (
        dict(location="w.bin", offset="8", length="24"),
        "{model}: tensor 'w': external data 'w.bin': the file is 30 bytes, too short for 24 "
        "bytes at offset 8",
    ),
    "length-not-the-size": (
        dict(location="w.bin", length="20"),
        "{model}: tensor 'w': external data 'w.bin': length 20 is not the tensor's 24 bytes",
    ),
    "no-length-file-longer": (
        dict(location="w.bin"),
        "{model}: tensor 'w': external data 'w.bin': no length, and the 30 bytes from offset 0 "
        "to the end of the file are not the tensor's 24",
    ),
    "absolute": (
        dict(location="/etc/passwd"),
        "{model}: tensor 'w': external data '/etc/passwd': not a relative path inside the "
        "model's directory",
    ),
    "dot-dot": (
        dict(location="../w.bin"),
        "{model}: tensor 'w': external data '../w.bin': not a relative path inside the model's "
        "directory",
    ),
    "dot-dot-inside": (
        dict(location="sub/../../w.bin"),
        "{model}: tensor 'w': external data 'sub/../../w.bin': not a relative path inside the "
        "model's directory",
    ),
    "control-characters": (
        dict(location="w\n.bin"),
        "{model}: tensor 'w': external data 'w\\n.bin': the location has control characters",
    ),
    "no-location": (dict(offset="0"), "{model}: tensor 'w': external data without a location"),
    "bad-offset": (
        dict(location="w.bin", offset="-4"),
        "{model}: tensor 'w': external data 'w.bin': offset '-4' is not a non-negative integer",
    ),
    "huge-offset": (
        dict(location="w.bin", offset="9" * 5000),
        "{model}: tensor 'w': external data 'w.bin': offset "
        + shown("9" * 5000)
        + " is not a non-negative integer",
    ),
    "offset-past-the-end": (
        dict(location="w.bin", offset=str(2**64), length="24"),
        "{model}: tensor 'w': external data 'w.bin': the file is 30 bytes, too short for 24 "
        f"bytes at offset {2**64}",
    ),
    "directory": (
        dict(location="sub"),
        "{folder}/sub: external data of tensor 'w' in {model}: is a directory (only regular "
        "files are read)",
    ),
    "itself-a-directory": (
        dict(location="."),
        "{folder}/.: external data of tensor 'w' in {model}: is a directory (only regular "
        "files are read)",
    ),
}


@pytest.mark.parametrize("case", EXTERNAL_ERRORS)
def test_external_data_errors(tmp_path, case):
    entries, message = EXTERNAL_ERRORS[case]
    write(tmp_path / "w.bin", bytes(30))
    (tmp_path / "sub").mkdir()
    path = external(tmp_path, **entries)
    expected = message.format(model=path, folder=tmp_path, data=tmp_path / "gone.bin")
    assert error(path) == expected


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_external_data_fifo_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "w.bin")
    path = external(tmp_path, location="w.bin")
    assert error(path) == (
        f"{tmp_path / 'w.bin'}: external data of tensor 'w' in {path}: is a FIFO (only regular "
        "files are read)"
    )


def test_external_data_removed_after_open(tmp_path):
    write(tmp_path / "w.bin", bytes(24))
    path = external(tmp_path, location="w.bin", offset="0", length="24")
    [ref] = read_model(path).tensors
    (tmp_path / "w.bin").unlink()
    with pytest.raises(ReadError) as info:
        ref.load()
    assert str(info.value) == (
        f"{tmp_path / 'w.bin'}: external data of tensor 'w' in {path}: no such file or directory"
    )


def test_external_data_through_a_symlink_is_read(tmp_path):
    write(tmp_path / "elsewhere" / "blob", np.arange(6, dtype=np.float32).tobytes())
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "w.bin").symlink_to(tmp_path / "elsewhere" / "blob")
    path = external(tmp_path / "model", location="w.bin", offset="0", length="24")
    np.testing.assert_array_equal(read_model(path).tensors[0].load(), np.arange(6).reshape(2, 3))


# ------------------------------------------------------------- 4. the model file itself


def test_model_path_is_a_directory(tmp_path):
    folder = tmp_path / "m.onnx"
    folder.mkdir()
    with pytest.raises(ReadError) as info:
        read_model(folder)
    assert str(info.value) == f"{folder}: is a directory (only regular files are read)"
    assert error(folder) == f"{folder}: no .npy, .npz or .safetensors files"  # open_input


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_model_path_is_a_fifo(tmp_path):
    fifo = tmp_path / "m.onnx"
    os.mkfifo(fifo)
    assert error(fifo) == f"{fifo}: is a FIFO (only regular files are read)"


def test_missing_model(tmp_path):
    assert error(tmp_path / "m.onnx") == f"{tmp_path / 'm.onnx'}: no such file or directory"


# ----------------------------------------------------------------------------- 5. fuzzing


def test_byte_mutations(tmp_path):
    """200 seeded mutations of a valid model (1 to 8 bytes replaced): each reads in full or is
    a one-line ReadError naming the model; nothing else."""
    original = small_model(tmp_path).read_bytes()
    rng = np.random.default_rng(20261202)
    outcomes = {"reads": 0, "error": 0}
    for case in range(200):
        content = np.frombuffer(original, np.uint8).copy()
        where = rng.integers(0, len(content), size=rng.integers(1, 9))
        content[where] = rng.integers(0, 256, size=len(where), dtype=np.uint8)
        path = write(tmp_path / f"case{case}.onnx", content.tobytes())
        try:
            with deadline(20):
                read_all(path)
            outcomes["reads"] += 1
        except QcalcError as exc:
            assert isinstance(exc, ReadError), (case, exc)
            message = str(exc)
            assert message.isprintable() and str(path) in message, (case, message)
            assert len(message) < 1200, (case, message)
            outcomes["error"] += 1
    assert outcomes["reads"] > 0 and outcomes["error"] > 0, outcomes


# -------------------------------------------------------------------------- 6. the CLI


@pytest.mark.parametrize("command", ["ls", "encode"])
def test_cli_bad_model_is_one_error_line(tmp_path, command):
    path = write(tmp_path / "bad.onnx", b"\x08\x07\x12\xff\xff")
    result = runner.invoke(app, [command, str(path)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"qcalc: error: {path}: not an ONNX model (Error parsing message with type "
        "'onnx.ModelProto': Wire format was corrupt)"
    ]


def test_cli_hostile_models(tmp_path):
    write(tmp_path / "w.bin", bytes(30))
    cases = [
        write(tmp_path / "empty.onnx", b""),
        model_with(tmp_path, tensor(raw=bytes(20)), name="short.onnx"),
        model_with(
            tmp_path,
            tensor(name="a\nb", raw=bytes(24)),
            name="names.onnx",
            node=helper.make_node("MatMul", ["x", "a\nb"], ["y"]),
        ),
        external(tmp_path, location="../w.bin"),
    ]
    for path in cases:
        check_cli(path)
