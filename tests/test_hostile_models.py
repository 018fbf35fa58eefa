"""Whole ONNX models whose graph structure or calibration dumps are hostile, through
`qcalc encode model.onnx --activations ... --recipe aimet-default-per-channel.toml -o out`:
cycles, ties looping through Reshape chains, Clips with odd bounds, layers with missing or
mismatched biases, initializers in several roles, dumps keyed by initializers or of another
shape per batch, odd names and op types; then a seeded random graph generator. Every run
exits 0 with an encodings file that reads back, or 2 with one "qcalc: error:" line (never an
internal error, a traceback or a hang). The reader itself is fuzzed in test_hostile_onnx.py.

A longer random run by hand: QCALC_MODEL_FUZZ_CASES=5000 pytest tests/test_hostile_models.py
-k random (QCALC_MODEL_FUZZ_SEED moves the seeds).
"""

from __future__ import annotations

import json
import os
import random
import traceback as tb
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pytest
from helpers import assert_one_error_line, deadline, onnx_file, runner
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file

from qcalc.cli import app
from qcalc.core.choices import VERSIONS
from qcalc.core.graph import Graph, Node
from qcalc.errors import QcalcError
from qcalc.io import formats
from qcalc.ops import model as rules

REPO = Path(__file__).resolve().parent.parent
RECIPE = str(REPO / "recipes" / "aimet-default-per-channel.toml")
RUN_VERSIONS = ("0.6.1", "1.0.0", "2.0.0")
rng0 = np.random.default_rng(0)


def node(op: str, inputs: Sequence[str], outputs: Sequence[str], name: str = "", **attrs):
    return helper.make_node(op, list(inputs), list(outputs), name=name, **attrs)


def normal(*shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng0.standard_normal(shape) * scale).astype(np.float32)


def dumps(folder: Path, *batches: dict[str, np.ndarray]) -> list[Path]:
    """One safetensors file per batch."""
    paths = []
    for i, tensors in enumerate(batches):
        path = folder / f"batch_{i}.safetensors"
        save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
        paths.append(path)
    return paths


def encode(
    folder: Path,
    model: Path,
    activations: Sequence[Path] = (),
    version: str = "2.0.0",
    extra: Sequence[str] = (),
    recipe: Optional[str] = RECIPE,
):
    """`qcalc encode` of the model, checked against the contract: exit 0 with a file that
    reads back (notes and warnings only on stderr), or exit 2 with one error line and no file.
    """
    out = folder / "out.encodings"
    if out.exists():
        out.unlink()
    args = ["encode", str(model)]
    if activations:
        args += ["--activations", *map(str, activations)]
    if recipe is not None:
        args += ["--recipe", recipe]
    args += ["-o", str(out), "--encoding-version", version, *extra]
    with deadline(60):
        result = runner.invoke(app, args)
    if result.exit_code not in (0, 2):
        pytest.fail(f"exit {result.exit_code}\n{result.stderr}{traceback_of(result)}", False)
    if result.exit_code == 2:
        assert_one_error_line(result)
        assert not out.exists()
        return result
    assert "Traceback" not in result.stderr
    for line in result.stderr.splitlines():
        assert line.startswith(("qcalc: note: ", "qcalc: warning: ")), result.stderr
    assert out.exists(), result.stderr
    read = formats.read(out)
    names = [enc.name for enc in (*read.params, *read.activations)]
    assert len(names) == len(set(names)), names
    return result


def traceback_of(result) -> str:
    """The traceback of an exception the command let through (QCALC_DEBUG=1 lets them)."""
    if result.exc_info is None or isinstance(result.exception, SystemExit):
        return ""
    return "".join(tb.format_exception(*result.exc_info))


def entries(folder: Path) -> dict:
    """The entries of the file `encode` wrote, by name (either section of 0.6.1 / 1.0.0)."""
    doc = json.loads((folder / "out.encodings").read_text())
    if doc["version"].startswith("2"):
        return {e["name"]: e for e in doc["encodings"]}
    found = {}
    for section in ("activation_encodings", "param_encodings"):
        items = doc[section]
        found.update(items if isinstance(items, dict) else {e["name"]: e for e in items})
    return found


def ok(result) -> None:
    assert result.exit_code == 0, result.stderr


# ------------------------------------------------------------------------------ 1. cycles


@pytest.mark.parametrize("version", RUN_VERSIONS)
def test_a_node_consuming_its_own_output(tmp_path, version):
    model = onnx_file(
        tmp_path / "m.onnx",
        [node("Relu", ["a"], ["a"], "self"), node("Reshape", ["r", "s"], ["r"], "rs"),
         node("Concat", ["a", "r", "x"], ["y"], "cat", axis=0)],
        {"s": np.array([-1], np.int64)},
    )  # fmt: skip
    batches = [{"x": normal(2, 3), "a": normal(2, 3), "y": normal(6, 3)} for _ in range(2)]
    ok(encode(tmp_path, model, dumps(tmp_path, *batches), version))


@pytest.mark.parametrize("version", RUN_VERSIONS)
def test_two_nodes_feeding_each_other(tmp_path, version):
    model = onnx_file(
        tmp_path / "m.onnx",
        [node("Relu", ["b"], ["a"], "ra"), node("Relu", ["a"], ["b"], "rb"),
         node("Clip", ["c", "lo"], ["d"], "clip1"), node("Clip", ["d", "lo"], ["c"], "clip2"),
         node("Conv", ["a", "w", "bias"], ["y"], "conv")],
        {"lo": np.float32(0), "w": normal(2, 3, 1, 1), "bias": normal(2)},
    )  # fmt: skip
    for keys in (["a"], ["a", "b"], ["c"], ["a", "y", "d"]):
        batch = {k: normal(2, 3) for k in keys}
        ok(encode(tmp_path, model, dumps(tmp_path, batch), version))


@pytest.mark.parametrize("op", ["Concat", "Relu"])
def test_a_tie_whose_inputs_loop_through_reshapes(tmp_path, op):
    """Concat / Relu outputs tie with the encoded tensor behind each input; here the
    Reshape chains behind them loop (r1 <- r2 <- r1) and one reaches the tie's own output."""
    shape = {"s": np.array([-1], np.int64)}
    nodes = [
        node("Reshape", ["r2", "s"], ["r1"], "a"),
        node("Reshape", ["r1", "s"], ["r2"], "b"),
        node("Transpose", ["t"], ["r3"], "c"),
        node("Flatten", ["y"], ["t"], "d"),
        node(op, ["r1", "r3", "x"] if op == "Concat" else ["r1"], ["y"], "tie"),
    ]
    model = onnx_file(tmp_path / "m.onnx", nodes, shape)
    for keys in (["y"], ["y", "x"], ["y", "r2", "t"], ["y", "r1", "x", "r3"]):
        batches = [{k: normal(4) for k in keys}, {k: normal(2, 2) for k in keys}]
        ok(encode(tmp_path, model, dumps(tmp_path, *batches)))


# ------------------------------------------------------------------------------ 2. Clip


@pytest.mark.parametrize("version", RUN_VERSIONS)
def test_clip_bounds(tmp_path, version):
    """Initializer bounds (which take the output's encoding), a missing lower bound, bounds
    shared by two Clips (two consumers: not copied), a Clip with no input at all."""
    nodes = [
        node("Clip", ["x", "lo", "hi"], ["c1"], "init_bounds"),
        node("Clip", ["c1", "", "hi2"], ["c2"], "no_min"),
        node("Clip", ["c2"], ["c3"], "no_bounds"),
        node("Clip", ["c3", "lo2", "hi2"], ["c4"], "shared_a"),
        node("Clip", ["c4", "lo2", "hi2"], ["c5"], "shared_b"),
        node("Clip", [], ["c6"], "nothing"),
        node("Clip", ["", "", ""], ["y"], "empty"),
    ]
    inits = {
        "lo": np.float32(-1), "hi": np.array([1.0], np.float32), "hi2": np.float32(0.5),
        "lo2": np.zeros((2, 2), np.float32),
    }  # fmt: skip
    model = onnx_file(tmp_path / "m.onnx", nodes, inits)
    for keys in (["c1"], ["x", "c5", "c6", "y"], ["c2", "c4"], [*inits]):
        ok(encode(tmp_path, model, dumps(tmp_path, {k: normal(3) for k in keys}), version))


# ---------------------------------------------------------------------- 3. layers and roles


@pytest.mark.parametrize("version", RUN_VERSIONS)
def test_conv_with_missing_or_empty_bias(tmp_path, version):
    nodes = [
        node("Conv", ["x", "w1", ""], ["c1"], "empty_bias"),
        node("Conv", ["c1", "w2"], ["c2"], "no_bias"),
        node("Conv", ["", "w3", "b3"], ["c3"], "no_input"),
        node("Conv", ["c3"], ["c4"], "no_weight"),
        node("Conv", ["c4", "", "b5"], ["y"], "bias_without_weight"),
    ]
    inits = {"w1": normal(2, 3, 1, 1), "w2": normal(2, 2, 1, 1), "w3": normal(4, 2, 1, 1),
             "b3": normal(4), "b5": normal(2)}  # fmt: skip
    model = onnx_file(tmp_path / "m.onnx", nodes, inits)
    batch = {k: normal(1, 2, 2, 2) for k in ("x", "c1", "c2", "c3", "c4", "y")}
    ok(encode(tmp_path, model, dumps(tmp_path, batch), version))
    ok(encode(tmp_path, model, (), version))


@pytest.mark.parametrize("trans_b", ["yes", "", 0.5, 0.0, [1, 0], -3, 2**40])
def test_gemm_trans_b_of_any_type(tmp_path, trans_b):
    nodes = [node("Gemm", ["x", "w", "b"], ["y"], "gemm", transB=trans_b)]
    model = onnx_file(tmp_path / "m.onnx", nodes, {"w": normal(4, 3), "b": normal(3)})
    batch = {"x": normal(2, 4), "y": normal(2, 3)}
    ok(encode(tmp_path, model, dumps(tmp_path, batch)))
    ok(encode(tmp_path, model, dumps(tmp_path, batch), extra=["--per-channel"], recipe=None))


def test_matmul_add_of_two_initializers_or_the_same_output_twice(tmp_path):
    nodes = [
        node("MatMul", ["x", "w"], ["m"], "mm"),
        node("Add", ["m", "m"], ["a"], "twice"),
        node("Add", ["b1", "b2"], ["c"], "constants"),
        node("MatMul", ["a", "onnx::MatMul_1"], ["m2"], "mm2"),
        node("Add", ["m2", "m2"], ["y"], "twice2"),
        node("MatMul", ["w3", "c"], ["m3"], "weight_first"),
        node("Add", ["b1", "m3"], ["z"], "bias_first"),
    ]
    inits = {"w": normal(3, 3), "onnx::MatMul_1": normal(3, 3), "b1": normal(3),
             "b2": normal(3), "w3": normal(3, 3)}  # fmt: skip
    model = onnx_file(tmp_path / "m.onnx", nodes, inits)
    for keys in (["x", "a", "y"], ["x", "m", "c", "z"], ["x"]):
        ok(encode(tmp_path, model, dumps(tmp_path, {k: normal(2, 3) for k in keys})))
        assert "b1" not in entries(tmp_path) and "b2" not in entries(tmp_path)


@pytest.mark.parametrize("version", RUN_VERSIONS)
@pytest.mark.parametrize("bias_shape", [(5,), (3,), (1,), (), (4, 1), (2, 2), (8,)])
def test_bias_of_another_length_than_the_weights_channels(tmp_path, version, bias_shape):
    """A Conv / Gemm / MatMul + Add bias whose element count is not the weight's channel
    count (and a bias of rank 0 or 2) keeps its statistical int32 encoding: input scale x
    weight scale has no channel per element."""
    bias = normal(*bias_shape) * 10
    nodes = [
        node("Conv", ["x", "cw", "cb"], ["c"], "conv"),
        node("Flatten", ["c"], ["f"], "flat"),
        node("Gemm", ["f", "gw", "gb"], ["g"], "gemm", transB=1),
        node("MatMul", ["g", "onnx::MatMul_7"], ["m"], "mm"),
        node("Add", ["m", "mb"], ["y"], "add"),
    ]
    inits = {"cw": normal(4, 3, 1, 1), "cb": bias, "gw": normal(4, 4), "gb": bias + 1,
             "onnx::MatMul_7": normal(4, 4), "mb": bias - 1}  # fmt: skip
    model = onnx_file(tmp_path / "m.onnx", nodes, inits)
    for keys in (["x"], ["x", "c", "f", "g", "y"]):
        batch = {k: normal(1, 3, 2, 2) for k in keys}
        ok(encode(tmp_path, model, dumps(tmp_path, batch), version))
        found = entries(tmp_path)
        for name in ("cb", "gb", "mb"):
            assert (name in found) == version.startswith("2"), (name, found)
            if name in found:
                assert found[name]["output_dtype"] == "int32"
                if len(bias_shape) < 2:  # statistical: per element (the weights are per
                    # channel), never the 4-channel product scale
                    count = int(np.prod(bias_shape))
                    scale = found[name]["y_scale"]
                    assert np.size(scale) == count and np.ndim(scale) == (count > 1), scale
    ok(encode(tmp_path, model, dumps(tmp_path, batch), version, ["--metrics"]))


def test_a_bias_scale_whose_int32_grid_overflows_float32(tmp_path):
    """An input near float32's largest value: input scale x weight scale times 2^32 - 1
    overflows float32, which no encodings file can hold (2.0.0 names the bias; 1.0.0 has no
    bias entry)."""
    nodes = [node("Conv", ["x", "w", "b"], ["y"], "conv")]
    model = onnx_file(tmp_path / "m.onnx", nodes, {"w": normal(3, 2, 1, 1), "b": normal(3)})
    x = normal(2, 2, 1, 1)
    x[0, 0] = 1e37
    batch = dumps(tmp_path, {"x": x})
    line = assert_one_error_line(encode(tmp_path, model, batch, "2.0.0"))
    assert "out.encodings: tensor 'b': field 'scale' value" in line, line
    assert "steps of it overflow float32" in line, line
    ok(encode(tmp_path, model, batch, "1.0.0"))


def test_initializers_in_several_roles(tmp_path):
    """One initializer as a weight, a bias, a Clip bound, a Reshape shape and an Add
    operand; a weight that is its own bias; a bias whose weight is a graph input."""
    nodes = [
        node("Conv", ["x", "w", "w"], ["c1"], "own_bias"),
        node("Conv", ["c1", "v", "w"], ["c2"], "w_as_bias"),
        node("Gemm", ["c2", "x", "v"], ["c3"], "v_as_bias"),
        node("Clip", ["c3", "v", "w"], ["c4"], "bounds"),
        node("Reshape", ["c4", "w"], ["c5"], "shape"),
        node("Add", ["c5", "v"], ["c6"], "operand"),
        node("LayerNormalization", ["c6", "w", "v"], ["c7"], "ln"),
        node("BatchNormalization", ["c7", "v", "w", "v", "w"], ["y"], "bn"),
    ]
    inits = {"w": normal(2, 2, 1, 1), "v": normal(2, 2, 1, 1)}
    model = onnx_file(tmp_path / "m.onnx", nodes, inits)
    for keys in (["x", "c1", "c2", "c3"], ["x", "y", "c6"], ["c4", "c5"]):
        ok(encode(tmp_path, model, dumps(tmp_path, {k: normal(2, 2, 1, 1) for k in keys})))
    ok(encode(tmp_path, model, (), extra=["--per-channel"], recipe=None))


@pytest.mark.parametrize("version", RUN_VERSIONS)
@pytest.mark.parametrize("rank", [0, 1])
def test_weights_of_rank_0_or_1_per_channel(tmp_path, version, rank):
    shape = () if rank == 0 else (3,)
    nodes = [
        node("Conv", ["x", "cw", "cb"], ["c"], "conv"),
        node("ConvTranspose", ["c", "tw", "tb"], ["t"], "deconv"),
        node("Gemm", ["t", "gw", "gb"], ["g"], "gemm", transB=0),
        node("MatMul", ["g", "onnx::MatMul_3"], ["m"], "mm"),
        node("Add", ["m", "mb"], ["y"], "add"),
    ]
    inits = {
        name: normal(*shape)
        for name in ("cw", "cb", "tw", "tb", "gw", "gb", "onnx::MatMul_3", "mb")
    }  # fmt: skip
    model = onnx_file(tmp_path / "m.onnx", nodes, inits)
    batch = {k: normal(2, 3) for k in ("x", "c", "t", "g", "y")}
    ok(encode(tmp_path, model, dumps(tmp_path, batch), version))
    for extra in (["--per-channel"], ["--per-channel", "--axis", "0"], ["--block-size", "1"]):
        encode(tmp_path, model, dumps(tmp_path, batch), version, extra, recipe=None)
        encode(tmp_path, model, dumps(tmp_path, batch), version, extra)


# -------------------------------------------------------------------------------- 4. dumps


@pytest.mark.parametrize("version", RUN_VERSIONS)
def test_activation_dumps_named_like_initializers(tmp_path, version):
    """A dump of a parameter the model encodes would be a second entry of that name: an
    error naming it; a dump of an initializer the model does not encode is an activation."""
    nodes = [
        node("Conv", ["x", "0.weight", "0.bias"], ["c"], "conv"),
        node("Relu", ["c"], ["r"], "relu"),
        node("Reshape", ["r", "shape"], ["y"], "reshape"),
        node("Mul", ["y", "k"], ["z"], "mul"),
    ]
    inits = {"0.weight": normal(2, 3, 1, 1), "0.bias": normal(2),
             "shape": np.array([-1], np.int64), "k": normal(1)}  # fmt: skip
    model = onnx_file(tmp_path / "m.onnx", nodes, inits)
    for keys, clash in ((["0.weight"], "'0.weight' (Conv weight)"),
                        (["x", "0.bias", "r"], "'0.bias' (Conv bias)"),
                        (["x", "0.weight", "y", "0.bias"], "2 activation name(s)")):  # fmt: skip
        batch = {k: normal(2, 3, 1, 1) for k in keys}
        line = assert_one_error_line(encode(tmp_path, model, dumps(tmp_path, batch), version))
        assert "m.onnx: " in line and "are parameters of the graph" in line and clash in line
    for keys in (["shape"], ["k", "z"], ["x", "k"]):  # not encoded from the model
        ok(encode(tmp_path, model, dumps(tmp_path, {key: normal(3) for key in keys}), version))
        assert set(keys) <= set(entries(tmp_path))


def test_dumps_of_another_rank_or_shape_per_batch(tmp_path):
    nodes = [
        node("Conv", ["x", "w", "b"], ["c"], "conv"),
        node("Concat", ["c", "x"], ["y"], "cat", axis=1),
    ]
    model = onnx_file(tmp_path / "m.onnx", nodes, {"w": normal(2, 3, 1, 1), "b": normal(2)})
    shapes = [(), (1,), (2, 3), (1, 2, 3, 4, 5), (7,)]
    batches = [{k: normal(*shape) for k in ("x", "c", "y")} for shape in shapes]
    ok(encode(tmp_path, model, dumps(tmp_path, *batches)))
    batches[2]["x"] = np.zeros((2, 3), np.float16)  # another dtype in one batch
    line = assert_one_error_line(encode(tmp_path, model, dumps(tmp_path, *batches)))
    assert "batch_2.safetensors: tensor 'x': dtype float16 differs from float32" in line, line
    ok(encode(tmp_path, model, dumps(tmp_path, *batches[:2], {"y": np.ones(0, np.float32)})))


def test_tied_tensors_of_different_dtypes(tmp_path):
    """A Concat's output and its inputs share one quantizer: dumps of different dtypes cannot
    be calibrated together, an error naming both tensors."""
    nodes = [node("Concat", ["x", "z"], ["y"], "cat", axis=0), node("Relu", ["y"], ["r"], "r")]
    model = onnx_file(tmp_path / "m.onnx", nodes, {}, inputs=("x", "z"))
    batch = {"x": np.ones(3, np.float16), "y": normal(2, 2), "r": np.arange(4.0)}
    line = assert_one_error_line(encode(tmp_path, model, dumps(tmp_path, batch)))
    assert "tensor 'y': dtype float32 differs from float16 of 'x'" in line, line
    assert "share one quantizer" in line, line
    batch["x"] = batch["x"].astype(np.float32)  # r too is tied (a Relu of y)
    assert "tensor 'r': dtype float64" in assert_one_error_line(
        encode(tmp_path, model, dumps(tmp_path, batch))
    )
    batch["r"] = batch["r"].astype(np.float32)
    ok(encode(tmp_path, model, dumps(tmp_path, batch)))
    assert len({entry["y_scale"] for entry in entries(tmp_path).values()}) == 1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_dumps_are_the_nonfinite_error(tmp_path, bad):
    nodes = [node("Conv", ["x", "w", "b"], ["c"], "conv"), node("Relu", ["c"], ["y"], "r")]
    model = onnx_file(tmp_path / "m.onnx", nodes, {"w": normal(2, 3, 1, 1), "b": normal(2)})
    x = normal(2, 3)
    x[1, 1] = bad
    for keys in (["x"], ["c", "x"], ["y", "x"]):
        batch = {k: (x if k == "x" else normal(2, 3)) for k in keys}
        result = encode(tmp_path, model, dumps(tmp_path, batch))
        line = assert_one_error_line(result)
        assert "'x'" in line and ("NaN" in line or "inf" in line), line
        ok(encode(tmp_path, model, dumps(tmp_path, batch), extra=["--nonfinite", "ignore"]))


def test_nonfinite_weights_are_the_nonfinite_error(tmp_path):
    weight = normal(2, 3, 1, 1)
    weight[0, 0, 0, 0] = np.nan
    nodes = [node("Conv", ["x", "w", "b"], ["y"], "conv")]
    model = onnx_file(tmp_path / "m.onnx", nodes, {"w": weight, "b": normal(2)})
    batch = {"x": normal(2, 3), "y": normal(2, 2)}
    line = assert_one_error_line(encode(tmp_path, model, dumps(tmp_path, batch)))
    assert "'w'" in line and "NaN" in line, line
    ok(encode(tmp_path, model, dumps(tmp_path, batch), extra=["--nonfinite", "ignore"]))


def test_a_nan_bias_under_each_nonfinite_mode(tmp_path):
    """The weight's overflow protection reads the bias: under ignore its NaN is skipped there
    too (it used to make the weight's scale NaN); keep propagates it as AIMET does, and a NaN
    scale is never written; error names the bias."""
    bias = normal(3)
    bias[1] = np.nan
    nodes = [node("Conv", ["x", "w", "b"], ["y"], "conv")]
    model = onnx_file(tmp_path / "m.onnx", nodes, {"w": normal(3, 2, 1, 1), "b": bias})
    batch = dumps(tmp_path, {"x": normal(2, 2), "y": normal(2, 3)})
    ok(encode(tmp_path, model, batch, extra=["--nonfinite", "ignore"]))
    assert len(entries(tmp_path)["w"]["y_scale"]) == 3
    line = assert_one_error_line(encode(tmp_path, model, batch, extra=["--nonfinite", "keep"]))
    assert "tensor 'w': field 'scale' is NaN in 1 of 3 channels" in line, line
    line = assert_one_error_line(encode(tmp_path, model, batch))
    assert "m.onnx: tensor 'b' holds 1 NaN" in line, line


def test_activations_fed_by_nothing(tmp_path):
    """Dumps of a tensor no node produces and no graph input declares, of a node output no
    one consumes, of a graph output nothing produces."""
    nodes = [
        node("Conv", ["ghost", "w", "b"], ["c"], "conv"),
        node("Relu", ["c"], ["unused"], "relu"),
        node("Concat", ["ghost2", "c"], ["cat"], "cat", axis=0),
    ]
    inits = {"w": normal(2, 3, 1, 1), "b": normal(2)}
    model = onnx_file(tmp_path / "m.onnx", nodes, inits, inputs=(), outputs=("dangling",))
    for keys in (["ghost"], ["ghost", "unused", "dangling"], ["cat", "ghost2", "c"]):
        ok(encode(tmp_path, model, dumps(tmp_path, {k: normal(2, 3) for k in keys})))


# ----------------------------------------------------------------------- 5. names and ops


def test_duplicate_output_names_and_empty_node_names(tmp_path):
    nodes = [
        node("Conv", ["x", "w", "b"], ["y"], ""),
        node("Relu", ["x"], ["y"], ""),
        node("MatMul", ["y", "onnx::MatMul_2"], ["y"], ""),
        node("Add", ["y", "mb"], ["y", "y"], ""),
        node("Split", ["y"], ["s", "s", ""], ""),
        node("Concat", ["s", "s"], ["s"], ""),
    ]
    inits = {"w": normal(2, 3, 1, 1), "b": normal(2), "onnx::MatMul_2": normal(2, 2),
             "mb": normal(2)}  # fmt: skip
    model = onnx_file(tmp_path / "m.onnx", nodes, inits, outputs=("y", "y", "s"))
    for keys in (["x"], ["x", "y"], ["x", "s"], ["y", "s"]):
        for version in VERSIONS:
            ok(encode(tmp_path, model, dumps(tmp_path, {k: normal(2, 2) for k in keys}), version))


@pytest.mark.parametrize(
    "op", ["Conv\n", "Con v", "Relu\x1b[2J", "é✓", "Gemm.", "::MatMul", "x" * 5000, "\u202e"]
)
def test_op_types_with_odd_characters(tmp_path, op):
    nodes = [node(op, ["x", "w", "b"], ["c"], "n"), node("Relu", ["c"], ["y"], "r")]
    model = onnx_file(tmp_path / "m.onnx", nodes, {"w": normal(2, 3), "b": normal(2)})
    result = encode(tmp_path, model, dumps(tmp_path, {"x": normal(2, 3), "c": normal(2)}))
    ok(result)
    assert all(line.isprintable() for line in result.stderr.splitlines()), result.stderr
    ok(encode(tmp_path, model, (), extra=["--per-channel"], recipe=None))


@pytest.mark.parametrize("version", VERSIONS)
def test_a_model_without_nodes(tmp_path, version):
    model = onnx_file(tmp_path / "m.onnx", [], {"w": normal(2, 3)}, inputs=("x",), outputs=())
    encode(tmp_path, model, dumps(tmp_path, {"x": normal(2)}), version)
    encode(tmp_path, model, (), version)
    encode(tmp_path, model, (), version, recipe=None)
    empty = onnx_file(tmp_path / "e.onnx", [], {}, inputs=(), outputs=())
    encode(tmp_path, empty, (), version)
    line = assert_one_error_line(encode(tmp_path, empty, dumps(tmp_path, {"x": normal(2)})))
    assert "not tensors of the graph" in line


# ------------------------------------------------------------------------- 6. large graphs


def chain_graph(links: int, op: str, layer: Optional[str] = None) -> Graph:
    """x -> op -> op -> ... (`links` nodes), a `layer` node (Conv, Concat ...) at every link."""
    nodes, previous = [], "x"
    for i in range(links):
        nodes.append(Node(op, f"n{i}", (previous, "s"), (f"r{i}",)))
        if layer is not None:
            nodes.append(Node(layer, f"l{i}", (f"r{i}", f"w{i}", f"b{i}"), (f"c{i}",)))
        previous = f"r{i}"
    return Graph("m.onnx", tuple(nodes), ("x",), (), ())


def test_long_chains_are_walked_once():
    """A tie or a bias at every link of a chain of 20000 Reshapes: each chain is walked once
    (walking it again for every tie or bias took minutes), ties merged with path compression."""
    links = 20000
    with deadline(20):
        graph = chain_graph(links, "Reshape", "Concat")
        ties = rules.tied_groups(graph, ["x", *(f"c{i}" for i in range(links))])
        assert [len(group) for group in ties] == [links + 1]
        relus = Graph("m.onnx", tuple(
            Node("Relu", f"n{i}", (f"r{i - 1}" if i else "x",), (f"r{i}",)) for i in range(links)
        ), ("x",), (), ())  # fmt: skip
        ties = rules.tied_groups(relus, ["x", *(f"r{i}" for i in range(links))])
        assert [len(group) for group in ties] == [links + 1]
        known: dict[str, bool] = {}
        for i in reversed(range(links)):
            assert rules._reaches(graph, f"r{i}", {"x"}, known)
        assert not rules._reaches(chain_graph(links, "MaxPool"), f"r{links - 1}", {"x"}, {})


def test_hints_for_unknown_names_are_bounded():
    """Unknown activation names against a graph of 100000 long, similar names: the closest
    names come from a bounded search, and the message shows every name cut to 120 chars."""
    rnd = random.Random(0)
    ab = str.maketrans("01", "ab")
    names = [format(rnd.getrandbits(120), "0120b").translate(ab) for _ in range(100000)]
    graph = Graph("m.onnx", tuple(Node("Relu", "", (n,), ()) for n in names), (), (), ())
    others = [format(rnd.getrandbits(121), "0121b").translate(ab) for _ in range(5)]
    unknown = [names[7][:-1] + "c", "z" * 5000, *others]
    with deadline(20), pytest.raises(QcalcError) as error:
        rules.check_activation_names(graph, unknown)
    message = str(error.value)
    assert message.startswith("m.onnx: 7 activation name(s) are not tensors of the graph: ")
    assert f"(closest: '{names[7][:80]}" in message and message.endswith(" and 2 more")
    assert "(5,000 characters)" in message and len(message) < 2000, message


# -------------------------------------------------------------- 7. random graphs, seeded

OPS = [
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Relu", "Clip", "Concat", "Reshape",
    "Transpose", "Flatten", "MaxPool", "LayerNormalization", "BatchNormalization", "Mul",
    "Einsum",
]  # fmt: skip
# How many inputs each op usually takes (the generator also drops and adds some).
ARITY = {
    "Conv": 3, "ConvTranspose": 3, "Gemm": 3, "MatMul": 2, "Add": 2, "Relu": 1, "Clip": 3,
    "Concat": 3, "Reshape": 2, "Transpose": 1, "Flatten": 1, "MaxPool": 1,
    "LayerNormalization": 3, "BatchNormalization": 5, "Mul": 2, "Einsum": 2,
}  # fmt: skip
ODD_NAMES = ["0.weight", "onnx::MatMul_1", "a\nb", "é✓", "/x/Conv_output_0", " ", "x.bias"]
ATTRIBUTE_VALUES = [0, 1, -1, 2, 0.5, "yes", "", [1, 0], [0.5], ["a"]]
CASES = int(os.environ.get("QCALC_MODEL_FUZZ_CASES", "100"))
FIRST_SEED = int(os.environ.get("QCALC_MODEL_FUZZ_SEED", "0"))


def random_dtype(rnd: random.Random):
    return rnd.choice([np.float32] * 8 + [np.float16, np.float64])


def random_array(rnd: random.Random, dtype=None, shape=None) -> np.ndarray:
    """Small, of rank 0 to 4 unless `shape` is given, now and then all zeros or with an
    extreme (finite) value."""
    if shape is None:
        shape = tuple(rnd.choice([1, 2, 3, 4]) for _ in range(rnd.choice([0, 1, 1, 2, 2, 4])))
    gen = np.random.default_rng(rnd.getrandbits(32))
    values = gen.standard_normal(shape) * rnd.choice([1e-3, 1.0, 1.0, 100.0])
    dtype = dtype or random_dtype(rnd)
    values = values.astype(dtype)
    if values.size and rnd.random() < 0.1:  # extremes, still finite in the dtype
        info = np.finfo(dtype)
        values.flat[0] = rnd.choice([0.0, info.max / 4, -info.tiny, info.eps])
    if rnd.random() < 0.05:
        values = np.zeros(shape, dtype)
    return values


def layer_shape(op: str, position: int, channels: int, fan_in: int, trans_b: bool):
    """The shape a layer's parameter at `position` has in a well-formed model (None: any)."""
    if position == 1:
        weights = {
            "Conv": (channels, fan_in, 1, 1), "ConvTranspose": (fan_in, channels, 1, 1),
            "Gemm": (channels, fan_in) if trans_b else (fan_in, channels),
            "MatMul": (fan_in, channels),
        }  # fmt: skip
        if op in weights:
            return weights[op]
    if (op in ("Conv", "ConvTranspose", "Gemm") and position == 2) or (
        op in ("LayerNormalization", "BatchNormalization") and position >= 1
    ):
        return (channels,)
    return None


def random_model(rnd: random.Random, folder: Path):
    """A small random graph: nodes of OPS wired among the tensors so far (forward references,
    self-loops, empty names and duplicate outputs included), float initializers of random
    shapes or of the shapes the layer expects (some shared, some integer), linear layers as
    MatMul + Add, random attributes. Returns the model, its tensor names, its initializers."""
    tensors = ["x"] if rnd.random() < 0.9 else []
    if rnd.random() < 0.2:
        tensors.append("x2")
    graph_inputs = list(tensors)
    inits: dict[str, np.ndarray] = {}
    nodes = []
    count = rnd.randint(0 if rnd.random() < 0.03 else 1, 8)
    future = [f"t{i}" for i in range(count)]

    def new_initializer(shape=None, name=None) -> str:
        if name is None:
            name = rnd.choice(ODD_NAMES) if rnd.random() < 0.15 else f"p{len(inits)}"
        if rnd.random() < 0.05:
            inits[name] = np.array(rnd.sample([-1, 1, 2, 3, 4], rnd.randint(1, 3)), np.int64)
        else:
            inits[name] = random_array(rnd, shape=shape if rnd.random() < 0.7 else None)
        return name

    def pick_input(op: str, position: int, shape) -> str:
        roll = rnd.random()
        if roll < 0.05:
            return ""
        if roll < 0.08 and future:
            return rnd.choice(future)  # a forward reference: maybe a cycle
        if (roll < 0.45 and position > 0) or not tensors or roll > 0.97:
            if inits and rnd.random() < 0.2:
                return rnd.choice(list(inits))  # shared initializer
            linear = op == "MatMul" and position == 1 and rnd.random() < 0.5
            return new_initializer(shape, f"onnx::MatMul_{len(inits)}" if linear else None)
        return rnd.choice(tensors)

    for i in range(count):
        op = rnd.choice(OPS)
        arity = max(0, ARITY[op] + rnd.choice([0, 0, 0, 0, -1, -2, 1]))
        attrs = {}
        if op == "Gemm" or rnd.random() < 0.1:
            attrs["transB"] = rnd.choice(ATTRIBUTE_VALUES)
        if rnd.random() < 0.1:
            attrs[rnd.choice(["axis", "transA", "kernel_shape", "equation"])] = rnd.choice(
                ATTRIBUTE_VALUES
            )
        channels, fan_in = rnd.randint(1, 4), rnd.randint(1, 3)
        inputs = [
            pick_input(op, position, layer_shape(op, position, channels, fan_in,
                                                 bool(attrs.get("transB"))))
            for position in range(arity)
        ]  # fmt: skip
        outputs = [f"t{i}"]
        roll = rnd.random()
        if roll < 0.05:
            outputs = [rnd.choice(inputs or ["t0"])]  # consumes its own output
        elif roll < 0.1 and tensors:
            outputs = [rnd.choice(tensors)]  # a duplicate output name
        elif roll < 0.13:
            outputs = ["", f"t{i}"] if rnd.random() < 0.5 else [f"t{i}", f"t{i}b"]
        elif roll < 0.15:
            outputs = []
        name = rnd.choice(["", f"n{i}", f"n{i}", "dup", "a\nb"])
        nodes.append(helper.make_node(op, inputs, outputs, name=name, **attrs))
        tensors += [name for name in outputs if name]
        if op == "MatMul" and outputs and outputs[0] and rnd.random() < 0.6:  # + its bias
            bias = new_initializer((channels,) if rnd.random() < 0.9 else None)
            pair = [outputs[0], bias] if rnd.random() < 0.7 else [bias, outputs[0]]
            nodes.append(helper.make_node("Add", pair, [f"t{i}a"], name=f"add{i}"))
            tensors.append(f"t{i}a")
    protos = []
    for name, value in inits.items():
        proto = numpy_helper.from_array(value, name)
        if rnd.random() < 0.03:
            with np.errstate(over="ignore"):  # large values: bfloat16 inf, a nonfinite error
                proto = helper.make_tensor(name, TensorProto.BFLOAT16, value.shape, value.ravel())
        protos.append(proto)
    outputs = rnd.sample(tensors, min(len(tensors), rnd.randint(0, 2)))
    if rnd.random() < 0.1:
        outputs.append("nowhere")
    model = onnx_file(folder / "m.onnx", nodes, protos, inputs=graph_inputs, outputs=outputs)
    names = sorted(
        {*graph_inputs, *outputs, *inits, *(n for nd in nodes for n in (*nd.input, *nd.output))}
        - {""}
    )
    return model, names, sorted(inits)


def random_dumps(
    rnd: random.Random, folder: Path, names: list[str], initializers: list[str]
) -> list[Path]:
    """1-3 batches keyed by a random subset of the graph's tensor names (now and then an
    initializer's or a name not in the graph; a shape per batch, now and then NaN, another
    dtype in one batch or an empty tensor)."""
    names = [name for name in names if name not in initializers]
    if initializers and rnd.random() < 0.05:
        names.append(rnd.choice(initializers))
    if rnd.random() < 0.03:
        names.append("not_in_graph")
    if not names or rnd.random() < 0.1:
        return []
    keys = rnd.sample(names, rnd.randint(1, min(len(names), 5)))
    dtypes = {key: random_dtype(rnd) for key in keys}
    batches = []
    for _ in range(rnd.randint(1, 3)):
        batch = {}
        for key in keys:
            if rnd.random() < 0.1:
                continue
            value = random_array(rnd, dtypes[key] if rnd.random() < 0.995 else None)
            if rnd.random() < 0.01 and value.size:
                value.flat[-1] = rnd.choice([np.nan, np.inf])
            if rnd.random() < 0.02:
                value = np.zeros((0, 2), np.float32)
            batch[key] = value
        batches.append(batch)
    return dumps(folder, *[batch for batch in batches if batch])


EXTRA_FLAGS = [
    ["--per-channel"], ["-b", "4"], ["--activation-bitwidth", "16"], ["-b", "32"],
    ["--analyzer", "tf-enhanced"], ["--analyzer", "percentile"], ["--analyzer", "sqnr"],
    ["--metrics"], ["--nonfinite", "ignore"], ["--nonfinite", "keep"], ["--axis", "1"],
    ["--axis", "-1"], ["--axis", "5"], ["--symmetric"], ["--block-size", "2"],
    ["--block-size", "2", "--lpbq", "--symmetric"], ["-b", "16"], ["--activation-bitwidth", "32"],
    ["--strict-symmetric", "--symmetric"], ["--symmetric-offset", "zero"],
    ["--compute-dtype", "input"], ["--exclude", "x"], ["--include", "t*"], ["--unsigned"],
    ["--block-size", "1", "--block-axis", "0"],
]  # fmt: skip


def random_case(seed: int, folder: Path):
    rnd = random.Random(seed)
    model, names, initializers = random_model(rnd, folder)
    activations = random_dumps(rnd, folder, names, initializers)
    version = rnd.choice(VERSIONS)
    extra = [flag for flags in rnd.sample(EXTRA_FLAGS, rnd.choice([0, 0, 0, 1, 1, 2]))
             for flag in flags]  # fmt: skip
    recipe = RECIPE if rnd.random() < 0.85 else None
    return encode(folder, model, activations, version, extra, recipe)


@pytest.mark.parametrize("seed", range(FIRST_SEED, FIRST_SEED + CASES))
def test_random_graphs(tmp_path, seed):
    random_case(seed, tmp_path)
