"""Whole ONNX models through the command line: for every folder of tests/golden/models
(AIMET 2.42 QuantSim exports, rules in its README.md), `qcalc encode float_model.onnx
--activations <the three dumps> --recipe <the config's recipe>` writes AIMET's file entry for
entry and bit for bit, in every version. Names follow the user's graph: AIMET's
`<module>.weight_0` is the graph's `onnx::MatMul_<n>` (meta.json's aimet_to_float_model_names).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from onnx import helper

from helpers import assert_one_error_line, onnx_file
from qcalc.cli import app
from qcalc.core.choices import VERSIONS
from qcalc.core.spec import Spec
from qcalc.ops.encode import encode_array

REPO = Path(__file__).resolve().parent.parent
MODELS = Path(__file__).resolve().parent / "golden" / "models"
FOLDERS = sorted(path for path in MODELS.iterdir() if path.is_dir())
DUMPS = [f"activations_batch_{i}.safetensors" for i in range(3)]
ANALYZERS = {"min_max": "minmax", "post_training_tf_enhanced": "tf-enhanced"}

runner = CliRunner()


def meta(folder: Path) -> dict:
    return json.loads((folder / "meta.json").read_text())


def flags(folder: Path) -> list[str]:
    """The command line that states the folder's QuantSim settings: the config's recipe,
    default_param_bw, default_output_bw and quant_scheme."""
    info = meta(folder)
    per_channel = info["config_file"].endswith("default_config_per_channel.json")
    recipe = "aimet-default-per-channel.toml" if per_channel else "aimet-default.toml"
    scheme = info["quant_scheme"].split()[0].removeprefix("QuantScheme.")
    return [
        "--recipe", str(REPO / "recipes" / recipe),
        "-b", str(info["default_param_bw"]),
        "--activation-bitwidth", str(info["default_output_bw"]),
        "--analyzer", ANALYZERS[scheme],
    ]  # fmt: skip


def encode(folder: Path, out: Path, version: str, *extra: str, dumps=DUMPS):
    activations = ["--activations", *(str(folder / d) for d in dumps)] if dumps else []
    return runner.invoke(
        app,
        ["encode", str(folder / "float_model.onnx"), *activations, *flags(folder), *extra,
         "-o", str(out), "--encoding-version", version],
    )  # fmt: skip


def entries(doc: dict, version: str, names: dict[str, str]) -> dict:
    """Every entry by (section, graph name), without its name; 2.x has one section."""
    if version.startswith("2"):
        return {("", names.get(e["name"], e["name"])): _unnamed(e) for e in doc["encodings"]}
    found = {}
    for section in ("activation_encodings", "param_encodings"):
        items = doc[section]
        pairs = items.items() if isinstance(items, dict) else ((e["name"], e) for e in items)
        for name, entry in pairs:
            found[(section, names.get(name, name))] = _unnamed(entry)
    return found


def _unnamed(entry):
    return {k: v for k, v in entry.items() if k != "name"} if isinstance(entry, dict) else entry


def aimet(folder: Path, version: str) -> dict:
    return json.loads((folder / f"encodings_{version}.json").read_text())


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_model_file_equals_aimets(folder, version, tmp_path, compiled):
    out = tmp_path / "model.encodings"
    result = encode(folder, out, version)
    assert result.exit_code == 0, result.output
    ours, theirs = json.loads(out.read_text()), aimet(folder, version)
    names = meta(folder)["aimet_to_float_model_names"]
    assert entries(ours, version, {}) == entries(theirs, version, names)
    if version in ("0.6.1", "1.0.0"):
        assert ours["quantizer_args"] == theirs["quantizer_args"]
        assert ours["excluded_layers"] == theirs["excluded_layers"]


@pytest.mark.parametrize("version", ["1.0.0", "2.0.0"])
@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_weights_only_writes_the_weight_entries(folder, version, tmp_path):
    """No dumps: no activation and no int32 bias entry (their scales need the activations);
    every weight entry is AIMET's."""
    out = tmp_path / "weights.encodings"
    result = encode(folder, out, version, dumps=())
    assert result.exit_code == 0, result.output
    names = meta(folder)["aimet_to_float_model_names"]
    initializers = set(meta(folder)["float_model_initializers"])
    expected = {
        key: entry
        for key, entry in entries(aimet(folder, version), version, names).items()
        if key[1] in initializers
        and not (isinstance(entry, dict) and entry.get("output_dtype") == "int32")
    }
    assert entries(json.loads(out.read_text()), version, {}) == expected
    if any(e.get("output_dtype") == "int32" for e in aimet(folder, "2.0.0")["encodings"]):
        assert "int32 bias encoding(s) left out" in result.stderr


def test_tied_concat_calibrates_on_both_tensors(tmp_path):
    """movers: the Concat's output quantizer is the Conv's (README section 3). With the
    Concat dump scaled x3 (so the two tensors differ), both entries are the min-max of all six
    observations together, and the Reshape / Transpose copies between them follow."""
    folder = MODELS / "movers-pc"
    dumps = []
    observed = []
    for i, name in enumerate(DUMPS):
        tensors = load_file(folder / name)
        tensors["/module_cat/Concat_output_0"] = tensors["/module_cat/Concat_output_0"] * 3
        observed += [tensors["/conv/Conv_output_0"], tensors["/module_cat/Concat_output_0"]]
        save_file(tensors, tmp_path / name)
        dumps.append(tmp_path / name)
    (tmp_path / "float_model.onnx").write_bytes((folder / "float_model.onnx").read_bytes())
    (tmp_path / "meta.json").write_bytes((folder / "meta.json").read_bytes())
    out = tmp_path / "out.encodings"
    result = encode(tmp_path, out, "2.0.0")
    assert result.exit_code == 0, result.output
    found = {e["name"]: e for e in json.loads(out.read_text())["encodings"]}
    union = np.concatenate([a.ravel() for a in observed])
    expected = encode_array(union, Spec(bitwidth=8))  # min-max: the order does not matter
    for name in ("/conv/Conv_output_0", "/module_cat/Concat_output_0", "/Reshape_output_0",
                 "/Transpose_output_0"):  # fmt: skip
        assert found[name]["y_scale"] == float(expected.scale), name
        assert found[name]["y_zero_point"] == -int(expected.offset), name


def test_axis_flag_overrides_the_graph(tmp_path):
    """ConvTranspose weights [I, O, kh, kw] are per channel on axis 1 (6 channels) unless
    --axis says otherwise."""
    model = MODELS / "deconv-pc" / "float_model.onnx"
    args = ["encode", str(model), "--per-channel", "--symmetric", "--include", "2.weight"]
    graph = runner.invoke(app, [*args, "-f", "json"])
    forced = runner.invoke(app, [*args, "--axis", "0", "-f", "json"])
    assert graph.exit_code == 0 and forced.exit_code == 0, graph.output + forced.output
    assert len(json.loads(graph.stdout)[0]["scale"]) == 6
    assert len(json.loads(forced.stdout)[0]["scale"]) == 4


def test_activations_take_every_path_up_to_the_next_option(tmp_path):
    folder = MODELS / "convnet-pc"
    dumps = [str(folder / d) for d in DUMPS]
    model = str(folder / "float_model.onnx")
    spread = runner.invoke(app, ["encode", model, "--activations", *dumps, "-f", "json"])
    repeated = runner.invoke(
        app, ["encode", model, *(x for d in dumps for x in ("--activations", d)), "-f", "json"]
    )
    assert spread.exit_code == 0, spread.output
    assert spread.stdout == repeated.stdout
    # before the INPUT, --activations takes one path: the model is still the INPUT
    first = runner.invoke(app, ["encode", "--activations", dumps[0], model, "-f", "json"])
    assert first.exit_code == 0, first.output
    # 6 parameters, the 4 dumped activations and the Flatten output AIMET derives
    assert len(json.loads(first.stdout)) == 6 + 4 + 1


def test_activation_names_must_be_graph_tensors(tmp_path):
    folder = MODELS / "convnet-pc"
    tensors = load_file(folder / DUMPS[0])
    tensors["/2/Conv_output_O"] = tensors.pop("/2/Conv_output_0")
    save_file(tensors, tmp_path / "dump.safetensors")
    result = runner.invoke(
        app, ["encode", str(folder / "float_model.onnx"), "--activations",
              str(tmp_path / "dump.safetensors"), "-o", str(tmp_path / "out.encodings")],
    )  # fmt: skip
    line = assert_one_error_line(result)
    assert "1 activation name(s) are not tensors of the graph" in line
    assert "'/2/Conv_output_O' (closest: '/2/Conv_output_0'" in line
    assert not (tmp_path / "out.encodings").exists()


def test_one_model_per_run_and_models_are_not_dumps(tmp_path):
    model = str(MODELS / "convnet-pc" / "float_model.onnx")
    other = str(MODELS / "mlp-pc" / "float_model.onnx")
    assert "one ONNX model per run" in assert_one_error_line(
        runner.invoke(app, ["encode", model, other])
    )
    assert "--activations takes calibration dumps" in assert_one_error_line(
        runner.invoke(app, ["encode", model, "--activations", other])
    )


def _conv_model(tmp_path: Path, weight: np.ndarray, bias: np.ndarray) -> Path:
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv")
    return onnx_file(tmp_path / "conv.onnx", [node], {"w": weight, "b": bias})


def test_bias_overflow_is_warned_and_protected(tmp_path):
    """A bias far beyond int32 steps of input scale x weight scale: without an observed
    output AIMET leaves the weight alone and the bias overflows (a warning naming it); with
    one, the weight scale grows to at least |bias| / ((2^31 - 2^15) x input scale)."""
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((4, 3, 1, 1)) * 1e-3).astype(np.float32)
    bias = np.array([1e4, -1e4, 1.0, 0.0], np.float32)
    model = _conv_model(tmp_path, weight, bias)
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    save_file({"x": x}, tmp_path / "in.safetensors")
    save_file({"x": x, "y": x[:, :1] * 5}, tmp_path / "both.safetensors")
    recipe = str(REPO / "recipes" / "aimet-default-per-channel.toml")
    base = ["encode", str(model), "--recipe", recipe, "--encoding-version", "2.0.0"]
    alone = runner.invoke(app, [*base, "--activations", str(tmp_path / "in.safetensors"),
                                "-o", str(tmp_path / "a.encodings")])  # fmt: skip
    assert alone.exit_code == 0, alone.output
    assert "warning: bias 'b': 2 of 4 values fall outside int32" in alone.stderr
    both = runner.invoke(app, [*base, "--activations", str(tmp_path / "both.safetensors"),
                               "-o", str(tmp_path / "b.encodings")])  # fmt: skip
    assert both.exit_code == 0, both.output
    assert "outside int32" not in both.stderr
    found = {e["name"]: e for e in json.loads((tmp_path / "b.encodings").read_text())["encodings"]}
    input_scale = np.float32(found["x"]["y_scale"])
    weight_scale = np.array(found["w"]["y_scale"], np.float64)
    needed = np.abs(bias.astype(np.float64)) / ((2**31 - 2**15) * np.float64(input_scale))
    assert np.all(weight_scale >= needed * (1 - 1e-7))
    assert weight_scale[0] > np.abs(weight[0]).max() / 127  # grown, not min-max
    # the bias scale is the product of the two, per channel (README section 1)
    product = (input_scale * weight_scale.astype(np.float32)).astype(np.float32)
    assert found["b"]["y_scale"] == product.tolist()


def test_unknown_ops_encode_their_parameters_per_tensor(tmp_path):
    node = helper.make_node("Einsum", ["x", "w"], ["y"], name="e", equation="ij,jk->ik")
    model = onnx_file(tmp_path / "e.onnx", [node], {"w": np.ones((3, 4), np.float32)})
    result = runner.invoke(app, ["encode", str(model), "--per-channel", "-f", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["granularity"] == "per-tensor"
    assert "op Einsum: qcalc does not know its parameters' channel axis" in result.stderr


def test_statistical_bias_fallback_is_per_element(tmp_path):
    """MaxPool -> Conv with only the model input dumped: the MaxPool output is a derived copy,
    so AIMET derives no product scale for the Conv bias; with a per-channel weight its
    statistical int32 encoding is per element: |b| / 2^31 (2|b| / (2^32 - 1) in float32)."""
    rng = np.random.default_rng(1)
    bias = np.array([0.5, -0.25, 0.125], np.float32)
    nodes = [
        helper.make_node("MaxPool", ["x"], ["p"], name="pool", kernel_shape=[2, 2]),
        helper.make_node("Conv", ["p", "w", "b"], ["y"], name="conv"),
    ]
    weight = rng.standard_normal((3, 2, 1, 1)).astype(np.float32)
    model = onnx_file(tmp_path / "m.onnx", nodes, {"w": weight, "b": bias})
    save_file(
        {"x": rng.standard_normal((1, 2, 4, 4)).astype(np.float32)}, tmp_path / "x.safetensors"
    )
    out = tmp_path / "out.encodings"
    result = runner.invoke(
        app,
        ["encode", str(model), "--activations", str(tmp_path / "x.safetensors"), "--recipe",
         str(REPO / "recipes" / "aimet-default-per-channel.toml"), "-o", str(out),
         "--encoding-version", "2.0.0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    found = {e["name"]: e for e in json.loads(out.read_text())["encodings"]}
    expected = np.float32(2) * np.abs(bias) / np.float32(2**32 - 1)
    assert found["b"] == {"name": "b", "output_dtype": "int32",
                          "y_scale": expected.tolist(), "axis": 0}  # fmt: skip
