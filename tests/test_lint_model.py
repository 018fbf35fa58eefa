"""`qcalc lint --model`: the rules against the ONNX graph and `--fix`, through the command line.

(a) AIMET's own exports (tests/golden/models, every version, against the `model.onnx` AIMET
wrote) and qcalc's files for the same models (against `float_model.onnx`) lint without an
error; (b) each model rule catches a fault planted in one of those files by editing its JSON;
(c) `--fix -o` repairs each fixable fault, and the fixed file lints clean of that rule.
Expected values come from the planted fault or are computed here from the JSON (float32
products of scales), never from qcalc's output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from onnx import load as onnx_load
from onnx import numpy_helper
from typer.testing import CliRunner

from qcalc.cli import app
from qcalc.core.choices import VERSIONS
from qcalc.io.formats import read
from qcalc.ops.lint import report
from qcalc.ops.lint.fix import fix
from qcalc.ops.lint.report import Finding
from qcalc.ops.lint.rules import default_target

REPO = Path(__file__).resolve().parent.parent
MODELS = Path(__file__).resolve().parent / "golden" / "models"
FOLDERS = sorted(path for path in MODELS.iterdir() if path.is_dir())
DUMPS = [f"activations_batch_{i}.safetensors" for i in range(3)]

runner = CliRunner()


def lint(path: Path, model: Path, *extra: str) -> tuple[int, list[dict]]:
    """Exit code and findings (json) of `qcalc lint path --model model`."""
    result = runner.invoke(app, ["lint", str(path), "--model", str(model), "-f", "json", *extra])
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def pairs(findings: list[dict]) -> set[tuple[str, str]]:
    return {(f["rule"], f["name"]) for f in findings}


def aimet(folder: str, version: str = "2.0.0") -> dict:
    return json.loads((MODELS / folder / f"encodings_{version}.json").read_text())


def entries(doc: dict) -> dict[str, dict]:
    """A 2.x file's entries by name (the dicts inside `doc`, to edit in place)."""
    return {entry["name"]: entry for entry in doc["encodings"]}


def without(doc: dict, *names: str) -> dict:
    doc["encodings"] = [entry for entry in doc["encodings"] if entry["name"] not in names]
    return doc


def planted(tmp_path: Path, doc: dict, name: str = "planted.encodings") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc))
    return path


def fixed(tmp_path: Path, path: Path, model: Path, *extra: str):
    """`--fix -o fixed.encodings`: the run's result, the fixed file's entries by name."""
    out = tmp_path / "fixed.encodings"
    result = runner.invoke(
        app, ["lint", str(path), "--model", str(model), "--fix", "-o", str(out), *extra]
    )
    assert result.exit_code in (0, 1), result.output
    return result, out


def f32(value) -> np.ndarray:
    return np.asarray(value, dtype=np.float32)


def allowed_warnings(findings: list[dict], aimet_doc: dict, model: Path) -> set:
    """The findings a clean file may not have: all but unencoded-tensor warnings on
    initializers AIMET's own file leaves float too (mlp's W, a Parameter used in
    torch.matmul) and the file-level qnn-bias-bitwidth warning (AIMET's 0.6.1 / 1.0.0 exports
    carry no bias: qnn-onnx-converter then needs --bias_bitwidth 32)."""
    names = {entry["name"] for entry in aimet_doc["encodings"]}
    graph = {init.name for init in onnx_load(str(model)).graph.initializer}
    return {
        (f["rule"], f["name"])
        for f in findings
        if f["rule"] != "qnn-bias-bitwidth"
        and (f["rule"] != "unencoded-tensor" or f["name"] in names or f["name"] not in graph)
    }


# --- (a) clean files ---------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_aimet_exports_lint_clean(folder, version):
    model = folder / "model.onnx"
    code, findings = lint(folder / f"encodings_{version}.json", model)
    assert code == 0, findings
    assert all(f["severity"] == "warning" for f in findings)
    assert not allowed_warnings(findings, aimet(folder.name), model), findings


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("folder", FOLDERS, ids=lambda p: p.name)
def test_qcalc_files_lint_clean(folder, version, tmp_path):
    per_channel = json.loads((folder / "meta.json").read_text())["config_file"].endswith(
        "default_config_per_channel.json"
    )
    recipe = REPO / "recipes" / f"aimet-default{'-per-channel' if per_channel else ''}.toml"
    out = tmp_path / "model.encodings"
    model = folder / "float_model.onnx"
    result = runner.invoke(
        app,
        ["encode", str(model), "--activations", *(str(folder / d) for d in DUMPS),
         "--recipe", str(recipe), "-o", str(out), "--encoding-version", version],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    code, findings = lint(out, model)
    assert code == 0, findings
    assert not allowed_warnings(findings, aimet(folder.name), model), findings


def test_the_target_follows_the_version():
    assert default_target("1.0.0") == "qnn" and default_target("2.1.0") == "qairt"


# --- (b) one planted fault per rule --------------------------------------------------------


def test_unknown_name_suggests_the_closest(tmp_path):
    doc = aimet("convnet-pc")
    entries(doc)["/2/Conv_output_0"]["name"] = "/2/Conv_output_O"
    code, findings = lint(planted(tmp_path, doc), MODELS / "convnet-pc" / "model.onnx")
    assert code == 1
    (found,) = [f for f in findings if f["rule"] == "unknown-name"]
    assert found["name"] == "/2/Conv_output_O" and found["severity"] == "error"
    assert "closest: '/2/Conv_output_0'" in found["message"]


def test_unknown_name_legacy_params_must_be_initializers(tmp_path):
    """In 1.0.0 a parameter entry names an initializer: an activation's name is unknown."""
    doc = aimet("convnet-pc", "1.0.0")
    doc["param_encodings"][0]["name"] = "/0/Conv_output_0"
    code, findings = lint(planted(tmp_path, doc), MODELS / "convnet-pc" / "model.onnx")
    assert code == 1
    assert ("unknown-name", "/0/Conv_output_0") in pairs(findings)
    (unknown,) = [f for f in findings if f["rule"] == "unknown-name"]
    assert "is not an initializer of the model" in unknown["message"]


def test_unencoded_tensor(tmp_path):
    doc = without(aimet("mlp-pc"), "/act/Gelu_output_0")
    code, findings = lint(planted(tmp_path, doc), MODELS / "mlp-pc" / "model.onnx")
    assert code == 0
    assert ("unencoded-tensor", "/act/Gelu_output_0") in pairs(findings)
    assert all(f["severity"] == "warning" for f in findings)


def test_unencoded_tensor_ignores_what_the_converter_fuses(tmp_path):
    """convnet: the Conv output feeding only a Relu; mlp: the MatMul before the bias Add;
    dwbn: the Conv output into the folded BatchNorm and on to the Clip. None of them is
    encoded in AIMET's files, and none is reported (test_aimet_exports_lint_clean); without
    the activations every other activation is."""
    folder = MODELS / "dwbn-pc"
    doc = aimet("dwbn-pc")
    weights = {"0.weight", "0.bias", "3.weight", "3.bias", "6.weight_0"}
    doc["encodings"] = [entry for entry in doc["encodings"] if entry["name"] in weights]
    code, findings = lint(planted(tmp_path, doc), folder / "model.onnx")
    assert code == 0
    unencoded = {f["name"] for f in findings if f["rule"] == "unencoded-tensor"}
    assert unencoded == {
        "input", "/2/Clip_output_0", "/3/Conv_output_0", "/4/GlobalAveragePool_output_0",
        "/5/Flatten_output_0", "output",
    }  # fmt: skip


def test_missing_bias(tmp_path):
    doc = without(aimet("convnet-pc"), "2.bias")
    code, findings = lint(planted(tmp_path, doc), MODELS / "convnet-pc" / "model.onnx")
    assert code == 0
    assert pairs(findings) == {("missing-bias", "2.bias")}


def test_missing_bias_is_for_qairt_files_only(tmp_path):
    """AIMET's 0.6.1 / 1.0.0 files carry no bias: no missing-bias for qnn (the file rule
    qnn-bias-bitwidth says what the converter needs instead)."""
    code, findings = lint(MODELS / "convnet-pc" / "encodings_1.0.0.json",
                          MODELS / "convnet-pc" / "model.onnx")  # fmt: skip
    assert code == 0 and pairs(findings) == {("qnn-bias-bitwidth", None)}


def test_data_movement_mismatch_down_a_chain(tmp_path):
    """movers: Conv -> Reshape -> Transpose -> Concat. A Reshape output with another scale
    differs from the Conv output, and the Transpose output (still the Conv's) from it."""
    doc = aimet("movers-pc")
    entries(doc)["/Reshape_output_0"]["y_scale"] *= 2
    code, findings = lint(planted(tmp_path, doc), MODELS / "movers-pc" / "model.onnx")
    assert code == 1
    assert pairs(findings) == {
        ("data-movement-mismatch", "/Reshape_output_0"),
        ("data-movement-mismatch", "/Transpose_output_0"),
    }
    assert all(f["severity"] == "error" for f in findings)


def test_data_movement_missing_copy(tmp_path):
    doc = without(aimet("convnet-pc"), "/3/Flatten_output_0")
    code, findings = lint(planted(tmp_path, doc), MODELS / "convnet-pc" / "model.onnx")
    assert code == 1
    (found,) = findings
    assert (found["rule"], found["name"]) == ("data-movement-mismatch", "/3/Flatten_output_0")
    assert "'/2/Conv_output_0'" in found["message"] and "Flatten" in found["message"]


def test_data_movement_clip_input_equals_its_output(tmp_path):
    """dwbn: the BatchNorm output (fused into the Conv, feeding the Clip) and the Clip bounds
    take the Clip output's encoding."""
    doc = aimet("dwbn-pc")
    entries(doc)["/1/BatchNormalization_output_0"]["y_zero_point"] = 3
    entries(doc)["/2/Constant_1_output_0"]["y_scale"] /= 2
    code, findings = lint(planted(tmp_path, doc), MODELS / "dwbn-pc" / "model.onnx")
    assert code == 1
    assert pairs(findings) == {
        ("data-movement-mismatch", "/1/BatchNormalization_output_0"),
        ("data-movement-mismatch", "/2/Constant_1_output_0"),
    }


def test_data_movement_concat_is_tied(tmp_path):
    doc = aimet("movers-pc")
    entries(doc)["/module_cat/Concat_output_0"]["y_zero_point"] += 1
    code, findings = lint(planted(tmp_path, doc), MODELS / "movers-pc" / "model.onnx")
    assert code == 1
    assert ("data-movement-mismatch", "/module_cat/Concat_output_0") in pairs(findings)


@pytest.mark.parametrize(
    "folder, change",
    [("mlp-pc", {"y_scale": 2 / 255}), ("deconv-pc", {"y_zero_point": 128})],
    ids=["softmax-above-1", "sigmoid-below-0"],
)
def test_probability_range(folder, change, tmp_path):
    doc = aimet(folder)
    entries(doc)["output"].update(change)
    code, findings = lint(planted(tmp_path, doc), MODELS / folder / "model.onnx")
    assert code == 1
    assert ("probability-range", "output") in pairs(findings)


def test_probability_range_allows_one_step(tmp_path):
    """[0, 1] on 255 steps, or one step more: clean."""
    doc = aimet("mlp-pc")
    entries(doc)["output"].update({"y_scale": 1 / 254, "y_zero_point": 0})
    code, findings = lint(planted(tmp_path, doc), MODELS / "mlp-pc" / "model.onnx")
    assert code == 0 and "probability-range" not in {f["rule"] for f in findings}


def _one_ulp_up(value: float) -> float:
    return float(np.nextafter(np.float32(value), np.float32(np.inf)))


@pytest.mark.parametrize("folder", ["convnet-pc", "convnet-pt"])
def test_bias_scale_one_ulp(folder, tmp_path):
    doc = aimet(folder)
    bias = entries(doc)["4.bias"]
    if isinstance(bias["y_scale"], list):
        bias["y_scale"][3] = _one_ulp_up(bias["y_scale"][3])
    else:
        bias["y_scale"] = _one_ulp_up(bias["y_scale"])
    code, findings = lint(planted(tmp_path, doc), MODELS / folder / "model.onnx")
    assert code == 1
    assert pairs(findings) == {("bias-scale", "4.bias")}
    assert "'/3/Flatten_output_0'" in findings[0]["message"]


def test_bias_overflow(tmp_path):
    """0.bias channel 0 at a scale 2^33 times smaller than |b0|: 2^33 steps, outside int32;
    the model's bias values are read from model.onnx here."""
    folder = MODELS / "convnet-pc"
    values = {t.name: numpy_helper.to_array(t) for t in onnx_load(str(folder / "model.onnx"))
              .graph.initializer}["0.bias"]  # fmt: skip
    doc = aimet("convnet-pc")
    doc_bias = entries(doc)["0.bias"]
    doc_bias["y_scale"][0] = float(np.float32(abs(float(values[0])) / 2**33))
    code, findings = lint(planted(tmp_path, doc), folder / "model.onnx")
    assert code == 1
    assert ("bias-overflow", "0.bias") in pairs(findings)
    (found,) = [f for f in findings if f["rule"] == "bias-overflow"]
    assert found["message"].startswith(f"1 of {values.size} values fall outside int32")


def test_mixed_precision_op(tmp_path):
    """Gelu's input is encoded, its output no longer."""
    doc = without(aimet("mlp-pc"), "/act/Gelu_output_0")
    code, findings = lint(planted(tmp_path, doc), MODELS / "mlp-pc" / "model.onnx")
    assert code == 0
    assert ("mixed-precision-op", "/act/Gelu") in pairs(findings)
    (found,) = [f for f in findings if f["rule"] == "mixed-precision-op"]
    assert found["severity"] == "warning"
    assert "'/fc1/Add_output_0' encoded but '/act/Gelu_output_0' not" in found["message"]


# --- (c) --fix -------------------------------------------------------------------------------


def test_fix_drops_unknown_names(tmp_path):
    doc = aimet("convnet-pc")
    entries(doc)["output"]["name"] = "outptu"
    model = MODELS / "convnet-pc" / "model.onnx"
    result, out = fixed(tmp_path, planted(tmp_path, doc), model)
    assert result.exit_code == 0, result.output
    assert "fixed: outptu: dropped" in result.stderr
    assert "outptu" not in entries(json.loads(out.read_text()))
    code, findings = lint(out, model)
    assert code == 0 and "unknown-name" not in {f["rule"] for f in findings}


def test_fix_copies_through_a_chain_of_movers(tmp_path):
    """A wrong Reshape output and a missing Transpose output: both become the Conv output's
    encoding, as in AIMET's file."""
    doc = without(aimet("movers-pc"), "/Transpose_output_0")
    entries(doc)["/Reshape_output_0"]["y_scale"] *= 2
    model = MODELS / "movers-pc" / "model.onnx"
    result, out = fixed(tmp_path, planted(tmp_path, doc), model)
    assert result.exit_code == 0, result.output
    found = entries(json.loads(out.read_text()))
    conv = entries(aimet("movers-pc"))["/conv/Conv_output_0"]
    for name in ("/Reshape_output_0", "/Transpose_output_0"):
        assert {k: v for k, v in found[name].items() if k != "name"} == {
            k: v for k, v in conv.items() if k != "name"
        }
    code, findings = lint(out, model)
    assert code == 0 and not findings


def test_fix_clip_input_and_missing_flatten(tmp_path):
    doc = without(aimet("dwbn-pc"), "/5/Flatten_output_0")
    entries(doc)["/1/BatchNormalization_output_0"]["y_scale"] *= 3
    model = MODELS / "dwbn-pc" / "model.onnx"
    result, out = fixed(tmp_path, planted(tmp_path, doc), model)
    assert result.exit_code == 0, result.output
    found, original = entries(json.loads(out.read_text())), entries(aimet("dwbn-pc"))
    assert (
        found["/1/BatchNormalization_output_0"]["y_scale"]
        == original["/2/Clip_output_0"]["y_scale"]
    )
    assert (
        found["/5/Flatten_output_0"]["y_scale"]
        == original["/4/GlobalAveragePool_output_0"]["y_scale"]
    )
    assert lint(out, model) == (0, [])


@pytest.mark.parametrize("folder", ["convnet-pc", "convnet-pt"])
def test_fix_bias_scale_is_the_float32_product(folder, tmp_path):
    doc = aimet(folder)
    items = entries(doc)
    bias = items["4.bias"]
    scale = bias["y_scale"]
    bias["y_scale"] = [_one_ulp_up(s) for s in scale] if isinstance(scale, list) else 1e-3
    model = MODELS / folder / "model.onnx"
    result, out = fixed(tmp_path, planted(tmp_path, doc), model)
    assert result.exit_code == 0, result.output
    product = f32(items["/3/Flatten_output_0"]["y_scale"]) * f32(items["4.weight"]["y_scale"])
    written = entries(json.loads(out.read_text()))["4.bias"]
    assert written["y_scale"] == f32(product).tolist()
    assert ("axis" in written) == isinstance(scale, list)
    code, findings = lint(out, model)
    assert code == 0 and not findings


def test_fix_adds_missing_biases(tmp_path):
    """convnet-pc without 0.bias (input x 0.weight) and 2.bias (/1/Relu_output_0 x
    2.weight): both come back with the product scale, per channel on axis 0."""
    original = entries(aimet("convnet-pc"))
    doc = without(aimet("convnet-pc"), "0.bias", "2.bias")
    model = MODELS / "convnet-pc" / "model.onnx"
    result, out = fixed(tmp_path, planted(tmp_path, doc), model)
    assert result.exit_code == 0, result.output
    found = entries(json.loads(out.read_text()))
    for bias, x, w in (("0.bias", "input", "0.weight"), ("2.bias", "/1/Relu_output_0",
                                                          "2.weight")):  # fmt: skip
        product = f32(original[x]["y_scale"]) * f32(original[w]["y_scale"])
        assert found[bias] == {"name": bias, "output_dtype": "int32",
                               "y_scale": f32(product).tolist(), "axis": 0}  # fmt: skip
    assert lint(out, model) == (0, [])


def test_fix_adds_a_statistical_bias_without_an_input_scale(tmp_path):
    """No encoding for the layer's input: AIMET's statistical 32-bit encoding, per element
    as the weight is per channel, symmetric (no zero point)."""
    doc = without(aimet("convnet-pc"), "0.bias", "input")
    model = MODELS / "convnet-pc" / "model.onnx"
    result, out = fixed(tmp_path, planted(tmp_path, doc), model)
    assert result.exit_code == 0, result.output
    bias = entries(json.loads(out.read_text()))["0.bias"]
    assert bias["output_dtype"] == "int32" and bias["axis"] == 0 and len(bias["y_scale"]) == 8
    assert "y_zero_point" not in bias
    code, findings = lint(out, model)
    assert {f["rule"] for f in findings} == {"unencoded-tensor"}  # the input, not the bias


@pytest.mark.parametrize("version", ["0.6.1", "1.0.0"])
def test_fix_centres_legacy_symmetric_offsets(version, tmp_path):
    """A symmetric weight whose offsets are not -2^(bw-1) is rebuilt with them (0.6.1:
    min = scale x -128, max = scale x 127 in float32) and read back as the signed grid."""
    doc = aimet("convnet-pc", version)
    if version == "0.6.1":
        cells = doc["param_encodings"]["0.weight"]
        scales = [cell["scale"] for cell in cells]
        for cell in cells:
            cell["offset"] = -100
    else:
        entry = doc["param_encodings"][0]
        scales = entry["scale"]
        entry["offset"] = [-100] * len(scales)
    path = planted(tmp_path, doc)
    subject = report.load(path, MODELS / "convnet-pc" / "model.onnx")
    from qcalc.ops.lint.run import findings_of

    findings = findings_of(subject)
    result = fix(subject, [*findings, Finding("legacy-symmetric-offset", "0.weight", "planted")])
    assert "0.weight: symmetric offsets set to the grid centre" in result.changes
    assert "legacy-symmetric-offset" not in {f.rule for f in result.remaining}
    out = tmp_path / "fixed.encodings"
    from qcalc.io.formats import write

    write(out, result.file, version)
    written = json.loads(out.read_text())
    weight = (
        written["param_encodings"]["0.weight"] if version == "0.6.1"
        else next(e for e in written["param_encodings"] if e["name"] == "0.weight")
    )  # fmt: skip
    if version == "0.6.1":
        assert [cell["offset"] for cell in weight] == [-128] * len(scales)
        assert [cell["min"] for cell in weight] == (f32(scales) * f32(-128)).tolist()
        assert [cell["max"] for cell in weight] == (f32(scales) * f32(127)).tolist()
    else:
        assert weight["offset"] == [-128] * len(scales) and weight["is_sym"] is True
    enc = next(e for e in read(out).params if e.name == "0.weight")
    assert (enc.qmin, enc.qmax) == (-128, 127) and not np.any(enc.offset)
    code, findings = lint(out, MODELS / "convnet-pc" / "model.onnx")
    assert code == 0 and pairs(findings) == {("qnn-bias-bitwidth", None)}  # a file rule
    assert written["quantizer_args"] == doc["quantizer_args"]
    # the file rules find the planted offsets, and --fix through the CLI gives the same file
    assert ("legacy-symmetric-offset", "0.weight") in pairs(
        lint(path, MODELS / "convnet-pc" / "model.onnx")[1]
    )
    (tmp_path / "cli").mkdir()
    cli, cli_out = fixed(tmp_path / "cli", path, MODELS / "convnet-pc" / "model.onnx")
    assert cli.exit_code == 0, cli.output
    assert json.loads(cli_out.read_text()) == written


def test_fix_leaves_what_it_cannot_repair(tmp_path):
    """A probability range is not fixable: it stays, and the exit code is 1."""
    doc = aimet("mlp-pc")
    entries(doc)["output"]["y_scale"] = 2 / 255
    result, out = fixed(tmp_path, planted(tmp_path, doc), MODELS / "mlp-pc" / "model.onnx")
    assert result.exit_code == 1
    assert "1 error still need a person" in result.stderr
    assert ("probability-range", "output") in pairs(lint(out, MODELS / "mlp-pc" /
                                                         "model.onnx")[1])  # fmt: skip


def test_fix_refuses_to_overwrite_its_input(tmp_path):
    path = planted(tmp_path, aimet("convnet-pc"))
    before = path.read_text()
    result = runner.invoke(app, ["lint", str(path), "--model", str(MODELS / "convnet-pc" /
                                 "model.onnx"), "--fix", "-o", str(path)])  # fmt: skip
    assert result.exit_code == 2
    assert "refusing to overwrite it" in result.stderr
    assert path.read_text() == before


def test_fix_writes_atomically(tmp_path, monkeypatch):
    """A failing rename leaves an existing output as it was, and no temporary file."""
    doc = without(aimet("convnet-pc"), "/3/Flatten_output_0")
    path = planted(tmp_path, doc)
    out = tmp_path / "fixed.encodings"
    out.write_text("old\n")

    def failing(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing)
    result = runner.invoke(app, ["lint", str(path), "--model", str(MODELS / "convnet-pc" /
                                 "model.onnx"), "--fix", "-o", str(out)])  # fmt: skip
    assert result.exit_code == 2
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fixed.encodings", path.name]


def _by_name(doc: dict, version: str) -> dict[str, dict]:
    if version.startswith("2"):
        return entries(doc)
    return {e["name"]: e for key in ("activation_encodings", "param_encodings")
            for e in doc[key]}  # fmt: skip


@pytest.mark.parametrize("version", ["1.0.0", "2.0.0"])
def test_fix_restores_aimets_file(version, tmp_path):
    """Several faults at once: the fixed file is AIMET's entry for entry (but the renamed
    entry, dropped), and relinting it finds nothing of what --fix repaired."""
    doc = aimet("movers-pc", version)
    items = _by_name(doc, version)
    if version == "2.0.0":
        items["/Reshape_output_0"]["y_scale"] *= 2
        items["fc.bias"]["y_scale"] = [_one_ulp_up(s) for s in items["fc.bias"]["y_scale"]]
        doc = without(doc, "/Transpose_output_0", "conv.bias")
    else:
        items["/Reshape_output_0"]["scale"] = [s * 2 for s in items["/Reshape_output_0"]["scale"]]
        doc["activation_encodings"].remove(items["/Transpose_output_0"])
    items["output"]["name"] = "outptu"
    model = MODELS / "movers-pc" / "model.onnx"
    path = planted(tmp_path, doc)
    before = pairs(lint(path, model)[1])
    result, out = fixed(tmp_path, path, model)
    assert result.exit_code == 0, result.output
    expected = _by_name(aimet("movers-pc", version), version)
    del expected["output"]
    assert _by_name(json.loads(out.read_text()), version) == expected
    after = pairs(lint(out, model)[1]) - {("qnn-bias-bitwidth", None)}  # file rule, 1.0.0
    assert after == {("unencoded-tensor", "output")}
    assert {rule for rule, _ in before} >= {"unknown-name", "data-movement-mismatch"}
