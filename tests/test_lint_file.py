"""`qcalc lint` on the encodings file alone (the rules with model=False), through the command
line: AIMET's and qcalc's own files are clean; each rule is shown on a real file (a golden
model's, or a golden case's entry) with one fault planted by editing its JSON, in every version
the rule applies to; malformed files are one error line (exit 2)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest
from helpers import assert_one_error_line
from typer.testing import CliRunner

from qcalc.cli import app
from qcalc.core.choices import VERSIONS
from qcalc.ops.lint import file_rules
from qcalc.ops.lint.report import load
from qcalc.ops.lint.rules import RULES

GOLDEN = Path(__file__).resolve().parent / "golden"
MODELS = GOLDEN / "models"
REPO = GOLDEN.parent.parent
AIMET_FILES = sorted(MODELS.glob("*/encodings_*.json"))
LEGACY = ("0.6.1", "1.0.0")
TWO = ("2.0.0", "2.1.0")
MIN_SCALE = 2.0**-23  # AIMET's minimum scale of 8- and 16-bit grids (NOTES.md section 1)

runner = CliRunner()


# --- helpers --------------------------------------------------------------------------------


def lint(path: Path, *args: str, env: Optional[dict] = None):
    return runner.invoke(app, ["lint", str(path), *args], env=env)


def findings(path: Path, *args: str) -> tuple[int, list[dict]]:
    """The exit code and the json records of `qcalc lint PATH --format json`."""
    result = lint(path, "--format", "json", *args)
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def planted(tmp_path: Path, version: str, edit: Callable[[dict], None]) -> Path:
    """AIMET's file of mlp-pc in `version` (per-channel weights, symmetric and asymmetric
    activations; int32 biases in 2.x), edited by `edit`, written to tmp_path."""
    doc = json.loads((MODELS / "mlp-pc" / f"encodings_{version}.json").read_text())
    edit(doc)
    path = tmp_path / f"planted_{version}.json"
    path.write_text(json.dumps(doc))
    return path


def entry(doc: dict, name: str):
    """The raw entry `name` in a file of any version (0.6.1: its list of channels)."""
    if doc["version"] == "0.6.1":
        return next(
            doc[s][name] for s in ("activation_encodings", "param_encodings") if name in doc[s]
        )
    sections = ("encodings",) if doc["version"] in TWO else ("activation_encodings",
                                                                "param_encodings")  # fmt: skip
    return next(e for s in sections for e in doc[s] if e["name"] == name)


def cells(doc: dict, name: str) -> list[dict]:
    """The objects of entry `name` that hold its fields: 0.6.1 channels, else the entry."""
    found = entry(doc, name)
    return found if isinstance(found, list) else [found]


@functools.lru_cache(maxsize=None)
def golden_case(case_id: str) -> dict:
    for line in (GOLDEN / "cases.jsonl").read_text().splitlines():
        case = json.loads(line)
        if case["id"] == case_id:
            return case
    raise KeyError(case_id)


def case_file(tmp_path: Path, case_id: str, version: str, edit=None) -> Path:
    """A file of `version` holding AIMET's entry of golden case `case_id` as the parameter
    "w" (edited by `edit`)."""
    value = json.loads(json.dumps(golden_case(case_id)["expected"][f"json_{version}"]))
    if edit is not None:
        edit(value)
    if version == "0.6.1":
        doc = {"version": version, "activation_encodings": {}, "param_encodings": {"w": value}}
    elif version == "1.0.0":
        doc = {"version": version, "activation_encodings": [],
               "param_encodings": [{"name": "w", **value}]}  # fmt: skip
    else:
        doc = {"version": version, "encodings": [{"name": "w", **value}]}
    path = tmp_path / f"{case_id}_{version}.json"
    path.write_text(json.dumps(doc))
    return path


def assert_finding(path: Path, rule: str, name: Optional[str], *args: str) -> dict:
    """`rule` found once for `name` with the rule's severity; the exit code 1 for an error, 0
    for a warning (the plant is the only error in the file); the finding."""
    code, records = findings(path, *args)
    mine = [r for r in records if r["rule"] == rule and r["name"] == name]
    assert len(mine) == 1, records
    assert mine[0]["severity"] == RULES[rule].severity
    error = RULES[rule].severity == "error"
    assert code == (1 if error else 0)
    assert [r for r in records if r["severity"] == "error"] == ([mine[0]] if error else [])
    return mine[0]


def drop(*fields: str, channels=None):
    """An edit deleting `fields` from entry `name`'s objects (0.6.1: `channels`, all when None)."""

    def edit_for(name: str):
        def edit(doc: dict) -> None:
            for i, cell in enumerate(cells(doc, name)):
                if channels is None or i in channels:
                    for field in fields:
                        del cell[field]

        return edit

    return edit_for


# --- clean files ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", AIMET_FILES, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_aimet_files_have_no_error(path):
    """AIMET's exports lint clean for their converter; the legacy ones carry no bias entry
    (the per-channel config quantizes no bias and 0.6.1 / 1.0.0 exports hold no int32 bias),
    hence the one warning telling qnn-onnx-converter to keep biases at 32 bits."""
    code, records = findings(path)
    assert code == 0
    if path.stem.endswith(LEGACY):
        assert [(r["rule"], r["severity"], r["name"]) for r in records] == [
            ("qnn-bias-bitwidth", "warning", None)
        ]
    else:
        assert records == []


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("folder", sorted(p.name for p in MODELS.iterdir() if p.is_dir()))
def test_qcalc_outputs_have_no_error(tmp_path, folder, version):
    out = tmp_path / "out.encodings"
    model = MODELS / folder
    dumps = [str(model / f"activations_batch_{i}.safetensors") for i in range(3)]
    result = runner.invoke(
        app,
        ["encode", str(model / "float_model.onnx"), "--activations", *dumps,
         "--recipe", str(REPO / "recipes" / "aimet-default-per-channel.toml"),
         "-o", str(out), "--encoding-version", version],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    code, records = findings(out)
    assert code == 0
    assert [r for r in records if r["severity"] == "error"] == []
    assert {r["rule"] for r in records} <= {"qnn-bias-bitwidth"}


@pytest.mark.parametrize("version", ("1.0.0", *TWO))
@pytest.mark.parametrize("flags", (["--block-size", "16"], ["--block-size", "16", "--lpbq"]))
def test_qcalc_block_and_lpbq_outputs_are_clean(tmp_path, version, flags):
    weight = tmp_path / "w.npy"
    np.save(weight, np.random.default_rng(0).normal(size=(8, 64)).astype(np.float32))
    out = tmp_path / "out.encodings"
    result = runner.invoke(
        app,
        ["encode", str(weight), "--symmetric", "-b", "4", *flags, "-o", str(out),
         "--encoding-version", version],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    code, records = findings(out, "--target", "qairt")
    assert (code, records) == (0, [])


@pytest.mark.parametrize("version", ("1.0.0", *TWO))
@pytest.mark.parametrize("case_id", ("block-B16-b8-sym-s", "lpbq-B16-b4-d8-heavy"))
def test_aimet_block_and_lpbq_entries_are_clean(tmp_path, case_id, version):
    code, records = findings(case_file(tmp_path, case_id, version), "--target", "qairt")
    assert (code, records) == (0, [])


# --- missing-field / unpaired-field -------------------------------------------------------


@pytest.mark.parametrize(
    "version, name, fields",
    [
        ("0.6.1", "fc1.weight_0", ("min", "max")),
        ("0.6.1", "input", ("bitwidth",)),
        ("0.6.1", "input", ("is_symmetric",)),
        ("1.0.0", "input", ("bw",)),
        ("1.0.0", "fc1.weight_0", ("enc_type", "is_sym")),
        ("1.0.0", "input", ("scale", "offset")),
        ("2.0.0", "output", ("y_scale",)),  # 'output' has no y_zero_point
        ("2.1.0", "input", ("output_dtype",)),
    ],
)
def test_missing_field(tmp_path, version, name, fields):
    path = planted(tmp_path, version, drop(*fields)(name))
    message = assert_finding(path, "missing-field", name)["message"]
    assert all(f"'{field}'" in message for field in fields)


def test_missing_dtype_says_what_the_converter_does(tmp_path):
    path = planted(tmp_path, "1.0.0", drop("dtype")("input"))
    assert "fixed-point" in assert_finding(path, "missing-field", "input")["message"]


def test_missing_field_names_the_channels(tmp_path):
    path = planted(tmp_path, "0.6.1", drop("scale", "offset", channels={3, 5})("fc1.weight_0"))
    message = assert_finding(path, "missing-field", "fc1.weight_0")["message"]
    assert "channels 3, 5 (2 of 32)" in message


@pytest.mark.parametrize(
    "version, name, field, partner",
    [
        ("0.6.1", "fc1.weight_0", "max", "min"),
        ("0.6.1", "input", "offset", "scale"),
        ("1.0.0", "input", "offset", "scale"),
        ("1.0.0", "fc1.weight_0", "scale", "offset"),
        ("2.0.0", "input", "y_scale", "y_zero_point"),  # 'input' has a y_zero_point
        ("2.1.0", "input", "y_scale", "y_zero_point"),
    ],
)
def test_unpaired_field(tmp_path, version, name, field, partner):
    path = planted(tmp_path, version, drop(field)(name))
    message = assert_finding(path, "unpaired-field", name)["message"]
    assert f"'{field}' is missing but '{partner}' is present" in message


def test_unpaired_lengths_1_0_0(tmp_path):
    def edit(doc):
        entry(doc, "fc1.weight_0")["offset"].pop()

    message = assert_finding(planted(tmp_path, "1.0.0", edit), "unpaired-field", "fc1.weight_0")[
        "message"
    ]
    assert "'offset' has 31 values but 'scale' has 32" in message


@pytest.mark.parametrize("version", TWO)
def test_unpaired_lengths_2(tmp_path, version):
    def edit(doc):
        entry(doc, "fc1.weight_0")["y_zero_point"] = [0] * 31

    path = planted(tmp_path, version, edit)
    message = assert_finding(path, "unpaired-field", "fc1.weight_0")["message"]
    assert "'y_zero_point' has 31 values but 'y_scale' has 32" in message


# --- legacy-symmetric-offset / channel-not-symmetric ---------------------------------------


def set_offsets(name: str, value: int):
    def edit(doc):
        for cell in cells(doc, name):
            cell["offset"] = value if doc["version"] == "0.6.1" else [value] * len(cell["offset"])

    return edit


@pytest.mark.parametrize("version", LEGACY)
@pytest.mark.parametrize(
    "name, offset",
    [("fc1.weight_0", 0), ("/fc1/Add_output_0", -127)],  # a weight, a symmetric activation
)
def test_legacy_symmetric_offset(tmp_path, version, name, offset):
    path = planted(tmp_path, version, set_offsets(name, offset))
    message = assert_finding(path, "legacy-symmetric-offset", name)["message"]
    assert "'offset'" in message and f" is {offset}" in message and "not -128" in message
    assert RULES["legacy-symmetric-offset"].fixable


@pytest.mark.parametrize("version", LEGACY)
def test_channel_not_symmetric_legacy(tmp_path, version):
    """Symmetry off on a per-channel weight; its offsets -128 stay a valid asymmetric grid."""

    def edit(doc):
        for cell in cells(doc, "fc1.weight_0"):
            if version == "0.6.1":
                cell["is_symmetric"] = "False"
            else:
                cell["is_sym"] = False

    path = planted(tmp_path, version, edit)
    message = assert_finding(path, "channel-not-symmetric", "fc1.weight_0")["message"]
    assert "false" in message


@pytest.mark.parametrize("version", TWO)
def test_channel_not_symmetric_2(tmp_path, version):
    def edit(doc):
        entry(doc, "fc1.weight_0")["y_zero_point"] = [0] * 31 + [3]

    path = planted(tmp_path, version, edit)
    message = assert_finding(path, "channel-not-symmetric", "fc1.weight_0")["message"]
    assert "'y_zero_point' is 3 in channel 31, not 0" in message


@pytest.mark.parametrize("version", TWO)
def test_symmetric_unsigned_channels_are_fine(tmp_path, version):
    """uint8 channels centred at 128 are symmetric."""

    def edit(doc):
        weight = entry(doc, "fc1.weight_0")
        weight["output_dtype"], weight["y_zero_point"] = "uint8", [128] * 32

    assert findings(planted(tmp_path, version, edit)) == (0, [])


@pytest.mark.parametrize("version", ("1.0.0", *TWO))
def test_channel_not_symmetric_blocks(tmp_path, version):
    """AIMET's own asymmetric per-block export: QNN takes no asymmetric blocks."""
    path = case_file(tmp_path, "block-B16-b8-asym-u", version)
    assert_finding(path, "channel-not-symmetric", "w", "--target", "qairt")


def test_channel_not_symmetric_lpbq_1_0_0(tmp_path):
    path = case_file(tmp_path, "lpbq-B16-b4-d8-heavy", "1.0.0", lambda e: e.update(is_sym=False))
    assert_finding(path, "channel-not-symmetric", "w")


@pytest.mark.parametrize("version", TWO)
def test_channel_not_symmetric_lpbq_2(tmp_path, version):
    path = case_file(tmp_path, "lpbq-B16-b4-d8-heavy", version, lambda e: e.update(y_zero_point=1))
    assert_finding(path, "channel-not-symmetric", "w")


# --- block-fields ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "case_id, version, field",
    [
        ("block-B16-b8-sym-s", "1.0.0", "block_size"),
        ("lpbq-B16-b4-d8-heavy", "1.0.0", "block_size"),
        ("lpbq-B16-b4-d8-heavy", "1.0.0", "compressed_bw"),
        ("lpbq-B16-b4-d8-heavy", "1.0.0", "per_block_int_scale"),
        ("block-B16-b8-sym-s", "2.0.0", "axis"),
        ("block-B16-b8-sym-s", "2.1.0", "block_size"),
        ("lpbq-B16-b4-d8-heavy", "2.0.0", "per_channel_float_scale"),
        ("lpbq-B16-b4-d8-heavy", "2.1.0", "block_size"),
    ],
)
def test_block_fields_missing(tmp_path, case_id, version, field):
    path = case_file(tmp_path, case_id, version, lambda e: e.pop(field))
    assert f"'{field}'" in assert_finding(path, "block-fields", "w")["message"]


@pytest.mark.parametrize("multiplier", [0, 17])
def test_block_fields_multiplier_range_1_0_0(tmp_path, multiplier):
    """bw 8, compressed_bw 4: multipliers 1 .. 2^(8-4) = 16."""

    def edit(e):
        e["per_block_int_scale"][5] = multiplier

    path = case_file(tmp_path, "lpbq-B16-b4-d8-heavy", "1.0.0", edit)
    message = assert_finding(path, "block-fields", "w")["message"]
    assert f"is {multiplier} in item 5, outside 1 .. 16" in message


def test_block_fields_multiplier_range_2(tmp_path):
    def edit(e):
        e["per_block_int_scale"][1][2] = 0

    path = case_file(tmp_path, "lpbq-B16-b4-d8-heavy", "2.0.0", edit)
    assert "is 0 in item [1, 2]" in assert_finding(path, "block-fields", "w")["message"]


# --- mixed-channels ----------------------------------------------------------------------------


@pytest.mark.parametrize("field, value", [("bitwidth", 16), ("is_symmetric", "False")])
def test_mixed_channels(tmp_path, field, value):
    def edit(doc):
        cells(doc, "fc1.weight_0")[2][field] = value

    message = assert_finding(planted(tmp_path, "0.6.1", edit), "mixed-channels", "fc1.weight_0")[
        "message"
    ]
    assert f"'{field}'" in message and "channel 2" in message


# --- scale-range / dead-channel ----------------------------------------------------------------


def set_scale(name: str, value: float, channel: Optional[int] = None):
    """Scale of `name` (of `channel` when per channel) set to `value`; 0.6.1 min / max
    follow, as scale x offset and scale x (offset + 255)."""

    def edit(doc):
        found = cells(doc, name)
        if doc["version"] == "0.6.1":
            cell = found[channel or 0]
            cell["scale"] = value
            cell["min"], cell["max"] = value * cell["offset"], value * (cell["offset"] + 255)
        elif doc["version"] == "1.0.0":
            found[0]["scale"][channel or 0] = value
        elif channel is None:
            found[0]["y_scale"] = value
        else:
            found[0]["y_scale"][channel] = value

    return edit


@pytest.mark.parametrize(
    "version, name, channel, value, why",
    [
        ("0.6.1", "input", None, 0.0, "not > 0"),
        ("0.6.1", "fc1.weight_0", 7, 1e11, "outside 1e-10 .. 1e+10"),
        ("1.0.0", "fc1.weight_0", 5, 1e11, "outside 1e-10 .. 1e+10"),
        ("1.0.0", "input", None, 5e-11, "outside 1e-10 .. 1e+10"),
        ("2.0.0", "input", None, float("nan"), "not a finite number"),
        ("2.0.0", "fc1.weight_0", 3, float("inf"), "not a finite number"),
        ("2.1.0", "output", None, -0.5, "not > 0"),
    ],
)
def test_scale_range(tmp_path, version, name, channel, value, why):
    path = planted(tmp_path, version, set_scale(name, value, channel))
    message = assert_finding(path, "scale-range", name)["message"]
    assert why in message
    if channel is not None:
        assert f" in channel {channel}:" in message


@pytest.mark.parametrize("version", VERSIONS)
def test_dead_channel(tmp_path, version):
    """A weight channel at 2^-23 (an all-zero channel): a warning, the entry still read."""
    path = planted(tmp_path, version, set_scale("fc1.weight_0", MIN_SCALE, 4))
    message = assert_finding(path, "dead-channel", "fc1.weight_0")["message"]
    assert f"is {MIN_SCALE!r} in channel 4:" in message
    subject = load(path)
    file_rules.check(subject)
    assert "fc1.weight_0" in subject.encodings


@pytest.mark.parametrize("version", TWO)
def test_dead_int32_bias(tmp_path, version):
    """An int32 bias of zeros gets the 32-bit minimum scale, 0.01 / (2^32 - 1) in float32:
    below 1e-10, a dead channel and not a scale out of range."""
    floor = float(np.float32(0.01 / (2**32 - 1)))
    path = planted(tmp_path, version, set_scale("ln.bias", floor))
    assert f"is {floor!r}" in assert_finding(path, "dead-channel", "ln.bias")["message"]


@pytest.mark.parametrize("version", ("1.0.0", *TWO))
def test_dead_lpbq_channel(tmp_path, version):
    """AIMET's LPBQ export of a weight with an all-zero row: that channel is dead; the
    all-zero block in a live row is not (its scale is the channel's scale, not the minimum)."""
    case = golden_case("lpbq-B32-b4-d8-zeroblock")
    rows = np.load(GOLDEN / case["input"]).reshape(case["input_shape"])
    (dead,) = np.flatnonzero(~rows.any(axis=1))
    path = case_file(tmp_path, "lpbq-B32-b4-d8-zeroblock", version)
    message = assert_finding(path, "dead-channel", "w", "--target", "qairt")["message"]
    assert f" in channel {dead}:" in message and "1 channel held" in message


# --- qnn-bias-bitwidth / wrong-target ------------------------------------------------------


@pytest.mark.parametrize("version", LEGACY)
def test_qnn_bias_bitwidth(tmp_path, version):
    path = planted(tmp_path, version, lambda doc: None)
    message = assert_finding(path, "qnn-bias-bitwidth", None)["message"]
    assert "--bias_bitwidth 32" in message


@pytest.mark.parametrize("version", LEGACY)
def test_a_bias_entry_silences_qnn_bias_bitwidth(tmp_path, version):
    """An entry named like a bias (the weight renamed)."""

    def edit(doc):
        params = doc["param_encodings"]
        if version == "0.6.1":
            params["fc1.bias"] = params.pop("fc1.weight_0")
        else:
            entry(doc, "fc1.weight_0")["name"] = "fc1.bias"

    assert findings(planted(tmp_path, version, edit)) == (0, [])


def test_a_32_bit_entry_silences_qnn_bias_bitwidth(tmp_path):
    def edit(doc):
        doc["param_encodings"].append(
            {"name": "b", "dtype": "INT", "bw": 32, "is_sym": True, "scale": [1e-6],
             "offset": [-(2**31)], "enc_type": "PER_TENSOR"}
        )  # fmt: skip

    assert findings(planted(tmp_path, "1.0.0", edit)) == (0, [])


@pytest.mark.parametrize("version", TWO)
def test_wrong_target(tmp_path, version):
    path = planted(tmp_path, version, lambda doc: None)
    finding = assert_finding(path, "wrong-target", None, "--target", "qnn")
    assert findings(path, "--target", "qnn") == (1, [finding])  # no qnn-bias-bitwidth


@pytest.mark.parametrize("version", VERSIONS)
def test_qairt_takes_every_version(tmp_path, version):
    assert findings(planted(tmp_path, version, lambda doc: None), "--target", "qairt") == (0, [])


# --- entries the rules leave to the reader -------------------------------------------------


@pytest.mark.parametrize(
    "version, section, item, says",
    [
        ("1.0.0", "param_encodings", "oops", "is a string, expected an object"),
        ("2.0.0", "encodings", 5, "is a number, expected an object"),
        ("2.1.0", "encodings", [1], "is an array, expected an object"),
    ],
)
def test_entry_not_an_object(tmp_path, version, section, item, says):
    path = planted(tmp_path, version, lambda doc: doc[section].append(item))
    message = assert_finding(path, "invalid-entry", None)["message"]
    assert message.startswith(f"entry {len(json.loads(path.read_text())[section]) - 1} of")
    assert says in message


def test_entry_not_an_array_0_6_1(tmp_path):
    def edit(doc):
        doc["param_encodings"]["fc1.weight_0"] = {"scale": 1.0}

    assert_finding(planted(tmp_path, "0.6.1", edit), "invalid-entry", "fc1.weight_0")


@pytest.mark.parametrize(
    "version, name, field, value",
    [
        ("0.6.1", "fc1.weight_0", "bitwidth", "8"),
        ("0.6.1", "input", "scale", "0.1"),
        ("1.0.0", "fc1.weight_0", "bw", "8"),
        ("1.0.0", "fc1.weight_0", "scale", [[0.1]]),
        ("1.0.0", "input", "offset", [-131.0]),
        ("2.0.0", "fc1.weight_0", "y_scale", [[0.1], [0.2, 0.3]]),
        ("2.1.0", "input", "output_dtype", 8),
        ("2.1.0", "fc1.weight_0", "y_zero_point", ["0"] * 32),
    ],
)
def test_bad_types_are_the_readers(tmp_path, version, name, field, value):
    """A value of the wrong type: no rule crashes on it, the reader names the field."""

    def edit(doc):
        for cell in cells(doc, name):
            cell[field] = value

    path = planted(tmp_path, version, edit)
    assert f"'{field}'" in assert_finding(path, "invalid-entry", name)["message"]
    code, records = findings(path)
    assert [r["rule"] for r in records if r["name"] == name] == ["invalid-entry"]


@pytest.mark.parametrize(
    "version, value",
    [
        ("0.6.1", [{"bitwidth": 16, "dtype": "float"}]),
        ("1.0.0", {"name": "h", "dtype": "FLOAT", "bw": 16, "enc_type": "PER_TENSOR"}),
        ("2.0.0", {"name": "h", "output_dtype": "float16"}),
    ],
)
def test_float_entries_are_fine(tmp_path, version, value):
    """Float encodings (AIMET's float16 tensors) have no scale or offset to check."""

    def edit(doc):
        if version == "0.6.1":
            doc["activation_encodings"]["h"] = value
        else:
            doc["activation_encodings" if version == "1.0.0" else "encodings"].append(value)

    assert findings(planted(tmp_path, version, edit), "--target", "qairt") == (0, [])


# --- malformed files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, phrase",
    [
        ("{", "not valid JSON"),
        ("[]", "not a JSON object"),
        ('{"version": "3.0.0", "encodings": []}', "'version'"),
        ('{"version": "0.6.1", "activation_encodings": [], "param_encodings": {}}',
         "'activation_encodings'"),
        ('{"version": "1.0.0", "activation_encodings": [], "param_encodings": {}}',
         "'param_encodings'"),
        ('{"version": "2.0.0", "encodings": {}}', "'encodings'"),
    ],
)  # fmt: skip
def test_malformed_files(tmp_path, text, phrase):
    path = tmp_path / "bad.encodings"
    path.write_text(text)
    assert_one_error_line(lint(path), None, str(path), phrase)


# --- the table -------------------------------------------------------------------------------


def test_table_at_80_columns(tmp_path):
    """Findings grouped under their rule (one label per rule, in rule order), every line
    within 80 columns, long tensor names included."""
    long_name = "model.layers.31.self_attn.q_proj.weight." + "x" * 60

    def edit(doc):
        set_offsets("fc1.weight_0", 0)(doc)
        set_offsets("fc2.weight_0", 0)(doc)
        set_scale("input", MIN_SCALE)(doc)
        entry(doc, "ln.weight")["name"] = long_name
        del entry(doc, long_name)["bw"]

    result = lint(planted(tmp_path, "1.0.0", edit), env={"COLUMNS": "80"})
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    header = next(i for i, line in enumerate(lines) if line.startswith("rule "))
    assert " ".join(lines[:header]).endswith("3 errors, 2 warnings")
    labels = [line.split()[0] for line in lines[header + 1 :] if line[:1].strip()]
    assert labels == [
        "missing-field", "legacy-symmetric-offset", "dead-channel", "qnn-bias-bitwidth"
    ]  # fmt: skip
    rows = lines[header + 1 :]
    assert sum("fc1.weight_0" in r or "fc2.weight_0" in r for r in rows) == 2
