"""The ONNX reader: graphs, parameter roles, dtypes and values, external data, the golden
models, and start-up (onnx is imported only when a model is read)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import pytest
from helpers import onnx_file
from onnx import TensorProto, helper
from safetensors.numpy import load_file

from qcalc.core.graph import ParamRole
from qcalc.errors import ReadError
from qcalc.io.readers import Skipped, TensorRef, open_input, read_model
from qcalc.io.readers._common import kind_of
from qcalc.io.readers.onnx import _TYPES, _UNREAD

REPO = Path(__file__).resolve().parent.parent
MODELS = Path(__file__).resolve().parent / "golden" / "models"


def value(name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, None)


def rng_array(shape, dtype=np.float32, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def by_name(items) -> dict:
    return {item.name: item for item in items}


def roles(path) -> dict[str, ParamRole]:
    return {ref.name: ref.param for ref in read_model(path).tensors}


# ------------------------------------------------------------------------- the graph


def test_graph_nodes_inputs_outputs_initializers(tmp_path):
    then = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["t"], name="inner")], "then", [], [value("t")]
    )
    nodes = [
        helper.make_node(
            "Conv", ["x", "w", "b"], ["c"], name="conv", group=1, kernel_shape=[3, 3],
            auto_pad="NOTSET", alpha=0.5, scales=[1.5, 2.0], modes=["a", "bé"],
        ),
        helper.make_node("If", ["cond"], ["y"], name="if", then_branch=then, else_branch=then),
    ]  # fmt: skip
    inits = {"z_unused": np.ones(2, np.float32), "w": rng_array((4, 3, 3, 3)), "b": rng_array(4)}
    path = onnx_file(tmp_path / "m.onnx", nodes, inits, inputs=("x", "w", "cond"))
    graph = read_model(path).graph
    assert graph.source == str(path)
    assert graph.inputs == ("x", "cond")  # "w" is an initializer
    assert graph.outputs == ("y",)
    assert graph.initializers == ("z_unused", "w", "b")  # file order
    conv, branch = graph.nodes  # the If's subgraph nodes are not read
    assert (conv.op, conv.name, conv.inputs, conv.outputs) == (
        "Conv",
        "conv",
        ("x", "w", "b"),
        ("c",),
    )
    assert conv.attributes == {
        "group": 1, "kernel_shape": (3, 3), "auto_pad": "NOTSET", "alpha": 0.5,
        "scales": (1.5, 2.0), "modes": ("a", "bé"),
    }  # fmt: skip
    assert (branch.op, branch.attributes) == ("If", {})  # graph attributes left out
    assert [t.name for t in read_model(path).tensors] == ["w", "b"]  # z_unused: not consumed


def test_omitted_optional_inputs_stay_empty(tmp_path):
    node = helper.make_node("Clip", ["x", "", "hi"], ["y"])
    path = onnx_file(tmp_path / "m.onnx", [node], {"hi": np.array(6, np.float32)})
    model = read_model(path)
    assert model.graph.nodes[0].inputs == ("x", "", "hi")
    [hi] = model.tensors
    assert (hi.name, hi.shape, hi.param.role) == ("hi", (), "other")
    assert hi.load() == 6


# ------------------------------------------------------------------------ roles and axes


def test_conv_weight_and_bias(tmp_path):
    w, b = rng_array((8, 3, 3, 3)), rng_array(8, seed=1)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv0")
    path = onnx_file(tmp_path / "m.onnx", [node], {"w": w, "b": b})
    tensors = by_name(read_model(path).tensors)
    assert tensors["w"].param == ParamRole(
        "Conv", "conv0", "weight", 0, layer_input="x", layer_output="y", bias="b"
    )
    assert tensors["b"].param == ParamRole(
        "Conv", "conv0", "bias", layer_input="x", weight="w", layer_output="y"
    )
    for name, array in (("w", w), ("b", b)):
        ref = tensors[name]
        assert (ref.source, ref.dtype, ref.shape) == (str(path), np.dtype("<f4"), array.shape)
        np.testing.assert_array_equal(ref.load(), array)


def test_conv_transpose_weight_axis_1(tmp_path):
    node = helper.make_node("ConvTranspose", ["x", "w", "b"], ["y"], name="deconv")
    path = onnx_file(tmp_path / "m.onnx", [node], {"w": rng_array((4, 6, 2, 2)), "b": rng_array(6)})
    found = roles(path)
    assert (found["w"].role, found["w"].axis) == ("weight", 1)
    assert (found["b"].role, found["b"].weight) == ("bias", "w")


@pytest.mark.parametrize("trans_b, axis", [(0, 1), (1, 0)], ids=["transB=0", "transB=1"])
def test_gemm_weight_axis_follows_transB(tmp_path, trans_b, axis):
    shape = (5, 8) if trans_b else (8, 5)
    node = helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="fc", transB=trans_b)
    path = onnx_file(tmp_path / "m.onnx", [node], {"w": rng_array(shape), "c": rng_array(5)})
    found = roles(path)
    assert (found["w"].op, found["w"].role, found["w"].axis) == ("Gemm", "weight", axis)
    assert (found["c"].role, found["c"].weight, found["c"].layer_input) == ("bias", "w", "x")


@pytest.mark.parametrize("order", [("h", "b"), ("b", "h")], ids=["h+b", "b+h"])
def test_matmul_add_is_a_linear_layer(tmp_path, order):
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
        helper.make_node("Add", list(order), ["y"], name="add"),
    ]
    path = onnx_file(tmp_path / "m.onnx", nodes, {"w": rng_array((16, 32)), "b": rng_array(32)})
    found = roles(path)
    assert found["w"] == ParamRole(
        "MatMul", "mm", "weight", -1, layer_input="x", layer_output="y", bias="b"
    )
    assert found["b"] == ParamRole(
        "Add", "add", "bias", layer_input="x", weight="w", layer_output="y"
    )


def test_layer_norm_scale_and_bias(tmp_path):
    node = helper.make_node("LayerNormalization", ["x", "s", "b"], ["y"], name="ln", axis=-1)
    path = onnx_file(tmp_path / "m.onnx", [node], {"s": rng_array(16), "b": rng_array(16, seed=2)})
    found = roles(path)
    assert (found["s"].role, found["s"].axis, found["b"].role) == ("weight", None, "bias")


def test_batch_norm_parameters(tmp_path):
    names = ["scale", "bias", "mean", "var"]
    node = helper.make_node("BatchNormalization", ["x", *names], ["y"], name="bn")
    path = onnx_file(
        tmp_path / "m.onnx", [node], {n: rng_array(8, seed=i) for i, n in enumerate(names)}
    )
    assert [(n, p.role) for n, p in roles(path).items()] == [
        ("scale", "weight"), ("bias", "bias"), ("mean", "other"), ("var", "other"),
    ]  # fmt: skip


def test_shape_initializers_are_not_parameters(tmp_path):
    nodes = [
        helper.make_node("Reshape", ["x", "shape"], ["r"]),
        helper.make_node("Mul", ["r", "k"], ["y"], name="mul"),
    ]
    inits = {"shape": np.array([2, -1], np.int64), "k": np.array([0.5], np.float32)}
    path = onnx_file(tmp_path / "m.onnx", nodes, inits)
    model = read_model(path)
    assert model.graph.initializers == ("shape", "k")
    [k] = model.tensors  # the int64 shape is no parameter
    assert k.param == ParamRole("Mul", "mul", "other", known=True)
    np.testing.assert_array_equal(k.load(), [0.5])


def test_unknown_op_parameter_is_per_tensor(tmp_path):
    node = helper.make_node("Einsum", ["x", "w"], ["y"], name="e", equation="ij,jk->ik")
    path = onnx_file(tmp_path / "m.onnx", [node], {"w": rng_array((3, 3))})
    assert roles(path)["w"] == ParamRole("Einsum", "e", "other", known=False)


def test_integer_parameter_is_skipped_but_readable(tmp_path):
    node = helper.make_node("Add", ["x", "n"], ["y"], name="add")
    path = onnx_file(tmp_path / "m.onnx", [node], {"n": np.arange(6, dtype=np.int64).reshape(2, 3)})
    [item] = read_model(path).tensors
    assert isinstance(item, Skipped)
    assert (item.name, item.source) == ("n", str(path))
    assert item.reason == "integer tensor (int64), not encoded"
    assert item.ref.param.role == "other"
    np.testing.assert_array_equal(item.ref.load(), np.arange(6).reshape(2, 3))


def test_bool_parameter_is_skipped(tmp_path):
    node = helper.make_node("Where", ["m", "x", "x"], ["y"])
    path = onnx_file(tmp_path / "m.onnx", [node], {"m": np.array([True, False])})
    [item] = read_model(path).tensors
    assert item.reason == "bool tensor (bool), not encoded"
    np.testing.assert_array_equal(item.ref.load(), [True, False])


@pytest.mark.parametrize(
    "elem, reason",
    [(TensorProto.STRING, "string tensor (STRING), not encoded"),
     (TensorProto.INT4, "integer tensor (INT4), not encoded"),
     (TensorProto.FLOAT8E4M3FNUZ, "unsupported float tensor (FLOAT8E4M3FNUZ), not encoded")],
    ids=["string", "int4", "fp8-fnuz"],
)  # fmt: skip
def test_unread_types_are_skipped_without_ref(tmp_path, elem, reason):
    vals = [b"a", b"b"] if elem == TensorProto.STRING else [1, 2]
    tensor = helper.make_tensor("t", elem, [2], vals)
    path = onnx_file(tmp_path / "m.onnx", [helper.make_node("Add", ["x", "t"], ["y"])], [tensor])
    [item] = read_model(path).tensors
    assert (item.name, item.reason, item.ref) == ("t", reason, None)


def test_type_codes_are_onnx_own():
    for code, (name, _, field) in _TYPES.items():
        assert TensorProto.DataType.Name(code) == name
        assert field in TensorProto.DESCRIPTOR.fields_by_name
    for code, reason in _UNREAD.items():
        assert f"({TensorProto.DataType.Name(code)})" in reason
    known = set(_TYPES) | set(_UNREAD) | {0}  # UNDEFINED
    assert known == set(TensorProto.DataType.values())


# ------------------------------------------------------------------------ dtypes and values


def bits(array: np.ndarray) -> np.ndarray:
    return array.view(f"u{array.dtype.itemsize}")


DTYPES = {
    "float32": (TensorProto.FLOAT, np.dtype(np.float32)),
    "float16": (TensorProto.FLOAT16, np.dtype(np.float16)),
    "float64": (TensorProto.DOUBLE, np.dtype(np.float64)),
    "bfloat16": (TensorProto.BFLOAT16, np.dtype(ml_dtypes.bfloat16)),
    "float8_e4m3fn": (TensorProto.FLOAT8E4M3FN, np.dtype(ml_dtypes.float8_e4m3fn)),
    "float8_e5m2": (TensorProto.FLOAT8E5M2, np.dtype(ml_dtypes.float8_e5m2)),
}


def edge_values(dtype: np.dtype) -> np.ndarray:
    """(2, 3, 4) values of `dtype`: random ones, zeros of both signs, the extremes."""
    finfo = ml_dtypes.finfo(dtype)
    values = rng_array(24, np.float32).astype(dtype)
    values[:6] = np.array([0.0, -0.0, finfo.max, finfo.min, finfo.tiny, finfo.smallest_subnormal])
    return values.reshape(2, 3, 4)


def empty_tensor(name: str, elem: int, dims) -> TensorProto:
    tensor = TensorProto(name=name, data_type=elem)
    tensor.dims.extend(dims)
    return tensor


def typed_tensor(name: str, elem: int, array: np.ndarray) -> TensorProto:
    """`array` in the typed field of its type (no raw_data): bit patterns for 16- and 8-bit."""
    tensor = empty_tensor(name, elem, array.shape)
    if elem == TensorProto.FLOAT:
        tensor.float_data.extend(array.ravel().tolist())
    elif elem == TensorProto.DOUBLE:
        tensor.double_data.extend(array.ravel().tolist())
    else:
        tensor.int32_data.extend(bits(array).ravel().astype(np.int32).tolist())
    return tensor


@pytest.mark.parametrize("storage", ["raw", "typed"])
@pytest.mark.parametrize("name", DTYPES)
def test_float_values_round_trip(tmp_path, name, storage):
    elem, dtype = DTYPES[name]
    array = edge_values(dtype)
    if storage == "raw":
        tensor = helper.make_tensor("w", elem, array.shape, array.tobytes(), raw=True)
    else:
        tensor = typed_tensor("w", elem, array)
    assert tensor.HasField("raw_data") == (storage == "raw")
    path = onnx_file(tmp_path / "m.onnx", [helper.make_node("MatMul", ["x", "w"], ["y"])], [tensor])
    [ref] = read_model(path).tensors
    assert isinstance(ref, TensorRef)
    assert (ref.dtype, ref.shape) == (dtype, (2, 3, 4))
    loaded = ref.load()
    assert loaded.dtype == dtype and loaded.shape == (2, 3, 4)
    np.testing.assert_array_equal(bits(loaded), bits(array))  # bit-exact, -0.0 included


def test_raw_data_is_viewed_not_copied(tmp_path):
    path = onnx_file(
        tmp_path / "m.onnx",
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        {"w": rng_array((64, 64))},
    )
    loaded = read_model(path).tensors[0].load()
    while isinstance(loaded.base, np.ndarray):  # frombuffer(...).reshape(...)
        loaded = loaded.base
    assert isinstance(loaded.base, bytes)
    assert not loaded.flags.writeable


@pytest.mark.parametrize(
    "elem, dtype, field, values",
    [(TensorProto.INT8, "int8", "int32_data", [-128, 0, 127]),
     (TensorProto.UINT16, "uint16", "int32_data", [0, 1, 65535]),
     (TensorProto.INT32, "int32", "int32_data", [-(2**31), 0, 2**31 - 1]),
     (TensorProto.INT64, "int64", "int64_data", [-(2**63), 0, 2**63 - 1]),
     (TensorProto.UINT32, "uint32", "uint64_data", [0, 1, 2**32 - 1]),
     (TensorProto.UINT64, "uint64", "uint64_data", [0, 1, 2**64 - 1]),
     (TensorProto.BOOL, "bool", "int32_data", [1, 0, 1])],
    ids=lambda v: v if isinstance(v, str) else None,
)  # fmt: skip
def test_integer_typed_fields(tmp_path, elem, dtype, field, values):
    tensor = empty_tensor("n", elem, [3])
    getattr(tensor, field).extend(values)
    path = onnx_file(tmp_path / "m.onnx", [helper.make_node("Add", ["x", "n"], ["y"])], [tensor])
    [item] = read_model(path).tensors
    loaded = item.ref.load()
    assert loaded.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(loaded, np.array(values, dtype))


def test_empty_and_scalar_tensors(tmp_path):
    inits = {"e": np.zeros((0, 4), np.float32), "s": np.array(2.5, np.float32)}
    nodes = [helper.make_node("Add", ["x", "e"], ["a"]), helper.make_node("Mul", ["a", "s"], ["y"])]
    tensors = by_name(read_model(onnx_file(tmp_path / "m.onnx", nodes, inits)).tensors)
    assert tensors["e"].load().shape == (0, 4)
    assert tensors["s"].load().shape == () and tensors["s"].load() == 2.5


def test_names_from_the_file_are_kept(tmp_path):
    name = "w\n\x1b[31m" + "é" * 300
    path = onnx_file(
        tmp_path / "m.onnx",
        [helper.make_node("MatMul", ["x", name], ["y"])],
        {name: rng_array((2, 2))},
    )
    assert [ref.name for ref in open_input(path)] == [name]


# ---------------------------------------------------------------------------- external data


def test_external_data_is_memory_mapped(tmp_path):
    w, b = rng_array((32, 16, 3, 3)), rng_array(32, seed=1)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"])
    path = onnx_file(
        tmp_path / "m.onnx", [node], {"w": w, "b": b}, save_as_external_data=True,
        all_tensors_to_one_file=True, location="w.bin", size_threshold=0,
    )  # fmt: skip
    assert (tmp_path / "w.bin").stat().st_size == w.nbytes + b.nbytes
    model = onnx.load(str(path), load_external_data=False)
    assert all(t.data_location == TensorProto.EXTERNAL for t in model.graph.initializer)
    tensors = by_name(read_model(path).tensors)
    for name, array in (("w", w), ("b", b)):
        loaded = tensors[name].load()
        assert isinstance(loaded, np.memmap) and not loaded.flags.writeable
        np.testing.assert_array_equal(loaded, array)


def test_external_data_in_a_subfolder(tmp_path):
    w = rng_array((4, 4))
    (tmp_path / "data").mkdir()
    onnx_file(
        tmp_path / "m.onnx",
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        {"w": w},
        save_as_external_data=True,
        location="data/w.bin",
        size_threshold=0,
    )
    np.testing.assert_array_equal(read_model(tmp_path / "m.onnx").tensors[0].load(), w)


def test_external_data_is_checked_again_on_load(tmp_path):
    path = onnx_file(
        tmp_path / "m.onnx",
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        {"w": rng_array((4, 4))},
        save_as_external_data=True,
        location="w.bin",
        size_threshold=0,
    )
    [ref] = read_model(path).tensors
    with open(tmp_path / "w.bin", "ab") as fp:
        fp.write(b"0000")
    with pytest.raises(ReadError) as info:
        ref.load()
    assert str(info.value) == (
        f"{path}: tensor 'w': external data 'w.bin': the file changed since it was "
        "opened (64 bytes then, 68 now)"
    )


# ------------------------------------------------------------------------------ open_input


@pytest.mark.parametrize("name", ["m.onnx", "M.ONNX", "m.Onnx"])
def test_open_input_routes_onnx_files(tmp_path, name):
    assert kind_of(name) == "onnx"
    path = onnx_file(
        tmp_path / name, [helper.make_node("MatMul", ["x", "w"], ["y"])], {"w": rng_array((2, 3))}
    )
    [ref] = open_input(path)
    assert (ref.name, ref.shape, ref.param.role) == ("w", (2, 3), "weight")


def test_directories_leave_onnx_models_out(tmp_path):
    onnx_file(
        tmp_path / "m.onnx",
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        {"w": rng_array((2, 3))},
    )
    np.save(tmp_path / "a.npy", np.ones(3, np.float32))
    assert [item.name for item in open_input(tmp_path)] == ["a"]


GOLDEN = sorted(p.name for p in MODELS.iterdir() if p.is_dir())


def test_golden_convnet_through_open_input():
    path = MODELS / "convnet-pc" / "float_model.onnx"
    items = open_input(path)
    assert [(ref.name, ref.shape, ref.param.role, ref.param.axis) for ref in items] == [
        ("0.weight", (8, 3, 3, 3), "weight", 0), ("0.bias", (8,), "bias", None),
        ("2.weight", (8, 8, 3, 3), "weight", 0), ("2.bias", (8,), "bias", None),
        ("4.weight", (10, 128), "weight", 0), ("4.bias", (10,), "bias", None),
    ]  # fmt: skip
    assert all(ref.source == str(path) for ref in items)


@pytest.mark.parametrize("folder", GOLDEN)
def test_golden_float_models_match_their_weights(folder):
    """Every parameter of each float_model.onnx equals its value in weights.safetensors (the
    onnx.numpy_helper reading the golden data was made with)."""
    weights = load_file(str(MODELS / folder / "weights.safetensors"))
    model = read_model(MODELS / folder / "float_model.onnx")
    assert len(model.graph.nodes) > 0
    assert set(model.graph.initializers) == set(weights)
    assert model.tensors
    for ref in model.tensors:
        np.testing.assert_array_equal(ref.load(), weights[ref.name])


# ------------------------------------------------------------------------------- start-up


def run_python(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_readers_and_help_do_not_import_onnx():
    code = (
        "import sys, qcalc.io.readers, qcalc.cli\n"
        "sys.argv = ['qcalc', '--help']\n"
        "try:\n    qcalc.cli.main()\nexcept SystemExit:\n    pass\n"
        "print('\\nonnx loaded:', 'onnx' in sys.modules)"
    )
    out = run_python(code)
    assert "Usage" in out and out.endswith("onnx loaded: False")


def test_reading_a_model_imports_onnx(tmp_path):
    path = onnx_file(tmp_path / "m.onnx", [helper.make_node("Relu", ["x"], ["y"])])
    code = f"import sys, qcalc.io.readers as r; r.open_input({str(path)!r}); "
    code += "print('onnx' in sys.modules)"
    assert run_python(code) == "True"


def test_missing_onnx_package(tmp_path):
    path = onnx_file(tmp_path / "m.onnx", [helper.make_node("Relu", ["x"], ["y"])])
    code = (
        "import sys; sys.modules['onnx'] = None\n"  # import onnx -> ImportError
        "from qcalc.io.readers import open_input\n"
        "from qcalc.errors import ReadError\n"
        f"try:\n    open_input({str(path)!r})\nexcept ReadError as exc:\n    print(exc)"
    )
    assert run_python(code) == (
        f"{path}: reading ONNX models needs the onnx package: pip install 'qcalc[onnx]'"
    )
