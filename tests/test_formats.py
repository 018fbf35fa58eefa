"""AIMET encodings JSON: every golden case's entry equals AIMET's `to_qnn_encoding_dict` output
for every version; whole files round-trip byte for byte; conversions keep the grid; every
malformed file fails with one exact line."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden_cases import CASES, as_float32, bits_equal
from qcalc import Spec, encode_array, grid
from qcalc.errors import ReadError
from qcalc.formats import (
    VERSIONS,
    EncodingFile,
    FormatError,
    convert,
    convert_file,
    diff,
    dumps,
    encoding_entry,
    file_dict,
    from_dict,
    loads,
    read,
    write,
)
from qcalc.spec import Encoding

LEGACY = ("0.6.1", "1.0.0")
MODERN = ("2.0.0", "2.1.0")


# --- golden encodings --------------------------------------------------------------------


def golden_encoding(case: dict, name: str | None = None) -> Encoding:
    """The case's AIMET encoding (expected scale / offset / min / max, grid shape, spec)."""
    config, expected = case["config"], case["expected"]
    shape = tuple(config["encoding_shape"])
    cells = lambda key: as_float32(expected[key]).reshape(shape)  # noqa: E731
    spec = Spec(
        bitwidth=config["bitwidth"],
        symmetric=config["symmetric"],
        signed=config["signed"],
        strict_symmetric=config["strict"],
        per_channel=config["granularity"] == "per-channel",
        axis=config["axis"] or 0,
    )
    return Encoding(
        name=name or case["id"],
        source=case["id"],
        dtype=case["tensor_dtype"],
        shape=tuple(case["input_shape"]),
        spec=spec,
        granularity=config["granularity"],
        axis=config["axis"],
        qmin=expected["qmin"],
        qmax=expected["qmax"],
        scale=cells("scale"),
        offset=cells("offset"),
        min=cells("min"),
        max=cells("max"),
        raw_min=cells("raw_min"),
        raw_max=cells("raw_max"),
    )


def is_grid_case(case: dict) -> bool:
    """Per-tensor / per-channel, any analyzer: the JSON depends only on the final encoding."""
    return case["config"]["granularity"] in ("per-tensor", "per-channel")


def is_finite_case(case: dict) -> bool:
    expected = case["expected"]
    return all(
        math.isfinite(float(v)) for key in ("scale", "offset", "min", "max") for v in expected[key]
    )


def entry_params():
    for case in CASES:
        for version in VERSIONS:
            if f"json_{version}" not in case["expected"]:
                continue
            marks = ()
            if not is_grid_case(case):
                marks = pytest.mark.xfail(reason="issue 4: per-block and LPBQ encodings", run=False)
            yield pytest.param(case, version, id=f"{case['id']}-{version}", marks=marks)


def as_json(value) -> str:
    """Key order, int / float types and NaN all count; NaN tokens compare equal as text."""
    return json.dumps(value)


@pytest.mark.parametrize("case, version", list(entry_params()))
def test_entry_equals_aimet(case, version):
    expected = case["expected"][f"json_{version}"]
    enc = golden_encoding(case)
    if isinstance(expected, dict) and "error" in expected:
        with pytest.raises(FormatError):
            encoding_entry(enc, version)
    else:
        assert as_json(encoding_entry(enc, version)) == as_json(expected)


GRID_CASES = [c for c in CASES if is_grid_case(c)]
FINITE_CASES = [c for c in GRID_CASES if is_finite_case(c)]
STRICT_CASES = [c for c in GRID_CASES if c["config"]["strict"]]


def test_the_golden_data_has_what_these_tests_rely_on():
    assert any(c["group"] == "pertensor-scalar-shape" for c in FINITE_CASES)
    assert any(c["config"]["encoding_shape"] == [1] for c in FINITE_CASES)
    assert len(STRICT_CASES) >= 4
    assert any(not is_finite_case(c) for c in GRID_CASES)


@pytest.mark.parametrize("version", LEGACY)
@pytest.mark.parametrize("case", STRICT_CASES, ids=lambda c: c["id"])
def test_strict_grids_point_at_2_0_0(case, version):
    with pytest.raises(FormatError) as error:
        encoding_entry(golden_encoding(case), version)
    qmin, qmax = case["expected"]["qmin"], case["expected"]["qmax"]
    assert str(error.value) == (
        f"tensor '{case['id']}': version {version} cannot carry the strict-symmetric grid "
        f"[{qmin}, {qmax}] (its field 'bw' is undefined; AIMET refuses it too); "
        f"write encoding version 2.0.0 or later"
    )


PER_CHANNEL_CASES = [c for c in GRID_CASES if c["config"]["granularity"] == "per-channel"]


@pytest.mark.parametrize("case", PER_CHANNEL_CASES, ids=lambda c: c["id"])
def test_param_entries_in_2x_files_have_the_positive_axis(case):
    enc = golden_encoding(case, "w")
    expected = case["expected"]["json_2.0.0"]
    ndim = len(case["config"]["encoding_shape"])
    assert expected["axis"] == case["config"]["axis"] - ndim  # the golden data: negative
    positive = {**expected, "axis": expected["axis"] + ndim}
    assert as_json(encoding_entry(enc, "2.0.0", param_axis=True)) == as_json(positive)
    if is_finite_case(case):
        files = {
            role: file_dict(EncodingFile(**{role: [enc]}), "2.0.0")["encodings"][0]
            for role in ("params", "activations")
        }
        assert as_json(files["params"]) == as_json({"name": "w", **positive})
        assert as_json(files["activations"]) == as_json({"name": "w", **expected})


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", [c for c in GRID_CASES if not is_finite_case(c)],
                         ids=lambda c: c["id"])  # fmt: skip
def test_files_never_hold_nan_or_infinity(case, version):
    enc = golden_encoding(case, "t")
    with pytest.raises(
        FormatError,
        match=r"^tensor 't': field '(scale|offset|min|max)' is "
        r"(NaN|infinite).*; encodings files never hold NaN",
    ):
        dumps(EncodingFile(params=[enc]), version)


def test_nan_message_counts_channels():
    enc = encode_array(np.ones((4, 3), dtype=np.float32), Spec(per_channel=True), name="w")
    scale = enc.scale.copy()
    scale[1:3] = np.nan
    bad = dataclasses.replace(enc, scale=scale)
    with pytest.raises(FormatError) as error:
        dumps(EncodingFile(params=[bad]), "1.0.0")
    assert str(error.value) == (
        "tensor 'w': field 'scale' is NaN in 2 of 4 channels; "
        "encodings files never hold NaN or infinity"
    )


def test_int32_overflow_is_refused():
    """AIMET raises for a 32-bit unsigned symmetric grid: its zero point 2^31 overflows int32."""
    enc = encode_array(np.array([-1.0, 1.0], dtype=np.float32),
                       Spec(bitwidth=32, symmetric=True, signed=False), name="t")  # fmt: skip
    assert int(enc.offset) == -(2**31)
    with pytest.raises(FormatError) as error:
        encoding_entry(enc, "2.0.0")
    assert str(error.value) == (
        "tensor 't': field 'y_zero_point' value 2147483648 does not fit int32, "
        "so AIMET cannot write it either"
    )


# --- whole files --------------------------------------------------------------------------


def sample_file() -> EncodingFile:
    """Computed encodings: per-channel and per-tensor parameters, per-tensor activations and one
    per-channel activation (axis 1 of an NCHW tensor)."""
    rng = np.random.default_rng(3)
    conv = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    linear = rng.normal(size=(5, 8)).astype(np.float32)
    bias = rng.normal(size=(5,)).astype(np.float32)
    act = (rng.normal(size=(2, 6, 4, 4)) + 0.5).astype(np.float32)
    weights = Spec(symmetric=True, per_channel=True)
    weights4 = Spec(bitwidth=4, symmetric=True, per_channel=True, axis=1)
    acts = Spec(bitwidth=16)
    return EncodingFile(
        params=[
            encode_array(conv, weights, "0.weight"),
            encode_array(linear, weights4, "2.weight"),
            encode_array(bias, Spec(symmetric=False), "2.bias"),
        ],
        activations=[
            encode_array(rng.normal(size=(2, 3, 8, 8)).astype(np.float32), acts, "input"),
            encode_array(np.maximum(act, 0), acts, "/relu/Relu_output_0"),
            encode_array(act, Spec(per_channel=True, axis=1), "/conv/Conv_output_0"),
        ],
    )  # fmt: skip


def test_file_layout_1_0_0():
    data = sample_file()
    text = dumps(data, "1.0.0")
    assert text.startswith('{\n    "producer": {\n        "package": "qcalc",\n')
    assert text.endswith("}\n")
    obj = json.loads(text)
    assert list(obj) == [
        "producer", "version", "activation_encodings", "param_encodings",
        "excluded_layers", "quantizer_args",
    ]  # fmt: skip
    import qcalc

    assert obj["producer"] == {"package": "qcalc", "version": qcalc.__version__}
    assert obj["version"] == "1.0.0"
    assert obj["excluded_layers"] == []
    assert list(obj["quantizer_args"].items()) == [
        ("quant_scheme", "min_max"), ("param_bitwidth", 8), ("activation_bitwidth", 16),
        ("dtype", "int"), ("is_symmetric", True), ("per_channel_quantization", True),
    ]  # fmt: skip
    assert [e["name"] for e in obj["param_encodings"]] == ["0.weight", "2.weight", "2.bias"]
    assert [list(e)[0] for e in obj["param_encodings"] + obj["activation_encodings"]] == [
        "name"
    ] * 6
    assert [e["enc_type"] for e in obj["param_encodings"]] == [
        "PER_CHANNEL", "PER_CHANNEL", "PER_TENSOR",
    ]  # fmt: skip


def test_file_layout_0_6_1():
    obj = json.loads(dumps(sample_file(), "0.6.1"))
    assert list(obj)[:4] == ["producer", "version", "activation_encodings", "param_encodings"]
    assert list(obj["param_encodings"]) == ["0.weight", "2.weight", "2.bias"]
    assert len(obj["param_encodings"]["0.weight"]) == 4
    assert obj["param_encodings"]["0.weight"][0]["is_symmetric"] == "True"


@pytest.mark.parametrize("version", MODERN)
def test_file_layout_2x(version):
    obj = json.loads(dumps(sample_file(), version))
    assert list(obj) == ["producer", "version", "encodings"]
    names = [e["name"] for e in obj["encodings"]]
    assert names == [
        "input", "/relu/Relu_output_0", "/conv/Conv_output_0", "0.weight", "2.weight", "2.bias",
    ]  # fmt: skip
    axes = {e["name"]: e.get("axis") for e in obj["encodings"]}
    assert axes == {
        "input": None, "/relu/Relu_output_0": None, "/conv/Conv_output_0": -3,
        "0.weight": 0, "2.weight": 1, "2.bias": None,
    }  # fmt: skip


def test_quantizer_args_without_parameters():
    acts = [encode_array(np.arange(4, dtype=np.float32), Spec(bitwidth=16), "a")]
    args = json.loads(dumps(EncodingFile(activations=acts), "1.0.0"))["quantizer_args"]
    assert (args["param_bitwidth"], args["activation_bitwidth"]) == (16, 16)
    assert args["per_channel_quantization"] is False


def test_duplicate_names_are_refused():
    enc = encode_array(np.arange(4, dtype=np.float32), name="x")
    with pytest.raises(FormatError, match=r"^tensor 'x' appears more than once$"):
        dumps(EncodingFile(params=[enc], activations=[enc]), "0.6.1")


def test_unknown_version_is_refused():
    with pytest.raises(FormatError) as error:
        dumps(sample_file(), "3.0.0")
    assert str(error.value) == (
        "unknown encoding version '3.0.0' (choose from 0.6.1, 1.0.0, 2.0.0, 2.1.0)"
    )


# --- round trips -------------------------------------------------------------------------


def golden_file(version: str) -> EncodingFile:
    """Every finite golden encoding a version can hold: per-channel ones as parameters,
    per-tensor ones as activations (names are the case ids)."""
    cases = [c for c in FINITE_CASES if not (version in LEGACY and c["config"]["strict"])]
    encs = [golden_encoding(c) for c in cases]
    return EncodingFile(
        params=[e for e in encs if e.granularity == "per-channel"],
        activations=[e for e in encs if e.granularity == "per-tensor"],
    )


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("make", [sample_file, golden_file], ids=["computed", "golden"])
def test_write_read_write_is_byte_identical(make, version, tmp_path):
    data = make(version) if make is golden_file else make()
    path = tmp_path / "model.encodings"
    write(path, data, version)
    first = path.read_bytes()
    again = read(path)
    assert again.version == version
    write(path, again, version)
    assert path.read_bytes() == first
    assert diff(data, again).equal


@pytest.mark.parametrize("version", VERSIONS)
def test_read_gives_the_written_grid(version):
    """Scale bit for bit, offset + qmax exactly (the same for the signed and unsigned forms of
    a grid, and for a strict grid read back as a full signed one); signedness survives in 2.x."""
    data = golden_file(version)
    back = loads(dumps(data, version))
    originals = {e.name: e for e in data.encodings}
    for enc in back.encodings:
        original = originals[enc.name]
        assert bits_equal(enc.scale, original.scale)
        assert enc.scale.size == original.scale.size
        assert np.array_equal(
            enc.offset.ravel() + enc.qmax, original.offset.ravel() + original.qmax
        )
        assert enc.dtype is None and enc.shape is None
        assert bits_equal(
            enc.min, grid.effective_range(enc.scale, enc.offset, enc.qmin, enc.qmax)[0]
        )
        assert bits_equal(enc.raw_max, enc.max)
        if version in LEGACY:
            # No sign field: symmetric grids centred at -2^(b-1) read as signed (offset 0),
            # everything else as unsigned.
            centred = original.spec.symmetric and np.all(
                original.offset.ravel() + original.qmin == -(2 ** (original.spec.bitwidth - 1))
            )
            expected_qmin = -(2 ** (original.spec.bitwidth - 1)) if centred else 0
            assert (enc.qmin, enc.spec.is_signed) == (expected_qmin, bool(centred))
            assert enc.spec.symmetric == original.spec.symmetric
            assert enc.axis is None
        elif not original.spec.strict_symmetric:
            assert (enc.qmin, enc.qmax) == (original.qmin, original.qmax)
            assert np.array_equal(enc.offset.ravel(), original.offset.ravel())  # -0.0 reads as 0


@pytest.mark.parametrize("case", [c for c in FINITE_CASES if c["config"]["symmetric"]],
                         ids=lambda c: c["id"])  # fmt: skip
def test_2x_infers_symmetry_from_centred_zero_points(case):
    enc = loads(dumps(EncodingFile(params=[golden_encoding(case)]), "2.0.0")).encodings[0]
    assert enc.spec.symmetric


def test_2x_reads_asymmetric_grids_as_asymmetric_unless_the_zero_point_is_centred():
    for case in FINITE_CASES:
        if case["config"]["symmetric"]:
            continue
        enc = loads(dumps(EncodingFile(params=[golden_encoding(case)]), "2.0.0")).encodings[0]
        centred = all(float(o) == -(case["expected"]["qmin"] + case["expected"]["qmax"] + 1) // 2
                      for o in case["expected"]["offset"])  # fmt: skip
        assert enc.spec.symmetric == centred, case["id"]


def test_2x_reads_strict_grids_as_full_signed_grids():
    case = STRICT_CASES[0]
    enc = loads(dumps(EncodingFile(params=[golden_encoding(case)]), "2.0.0")).encodings[0]
    qmax = case["expected"]["qmax"]
    assert (enc.qmin, enc.qmax) == (-qmax - 1, qmax)
    assert enc.spec.symmetric and not enc.spec.strict_symmetric
    assert diff([golden_encoding(case)], [enc]).settings[0].setting == "strict"
    assert diff(
        EncodingFile(params=[golden_encoding(case)]),
        loads(dumps(EncodingFile(params=[golden_encoding(case)]), "2.0.0")),
    ).equal


@st.composite
def encodings(draw):
    bitwidth = draw(st.integers(2, 16))
    signed = draw(st.booleans())
    symmetric = draw(st.booleans())
    channels = draw(st.integers(1, 5))
    qmin, qmax = grid.integer_range(bitwidth, signed)
    positive = st.floats(2.0**-20, 2.0**20, width=32)
    scale = np.array(draw(st.lists(positive, min_size=channels, max_size=channels)), np.float32)
    if symmetric:
        offset = np.full(channels, -round((qmin + qmax) / 2), np.float32)
    else:
        ints = st.integers(-qmax, -qmin)
        offset = np.array(draw(st.lists(ints, min_size=channels, max_size=channels)), np.float32)
    shape = (channels, 1) if channels > 1 else ()
    scale, offset = scale.reshape(shape), offset.reshape(shape)
    lo, hi = grid.effective_range(scale, offset, qmin, qmax)
    spec = Spec(bitwidth=bitwidth, signed=signed, symmetric=symmetric, per_channel=channels > 1)
    return Encoding(
        "t", "<test>", "float32", None, spec, "per-channel" if channels > 1 else "per-tensor",
        0 if channels > 1 else None, qmin, qmax, scale, offset, lo, hi, lo, hi,
    )  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    enc=encodings(),
    version=st.sampled_from(VERSIONS),
    role=st.sampled_from(["params", "activations"]),
)
def test_round_trip_property(enc, version, role):
    data = EncodingFile(**{role: [enc]})
    text = dumps(data, version)
    back = loads(text)
    assert dumps(back, version) == text
    assert diff(data, back).equal


# --- convert -----------------------------------------------------------------------------


@pytest.mark.parametrize("target", VERSIONS)
@pytest.mark.parametrize("source", VERSIONS)
def test_convert_keeps_the_grid(source, target):
    data = convert(golden_file("0.6.1"), source)
    there = convert(data, target)
    back = convert(there, source)
    assert there.version == target and back.version == source
    assert diff(data, there).equal
    assert diff(there, back).equal
    changes = diff(golden_file("0.6.1"), back)
    assert not (changes.only_in_a or changes.only_in_b or changes.deltas)
    if source in LEGACY and target in MODERN:
        # 2.x records no symmetry: an asymmetric grid whose zero point is the centre comes back
        # symmetric. Nothing else changes.
        assert changes.settings and all(
            (c.setting, c.a, c.b) == ("symmetric", False, True) for c in changes.settings
        )
    else:
        assert changes.equal
    holds_all = (source, target) in {("0.6.1", "1.0.0"), ("2.0.0", "2.1.0"), ("2.1.0", "2.0.0")}
    if holds_all or source == target:
        assert dumps(back, source) == dumps(data, source)


@pytest.mark.parametrize("legacy", LEGACY)
@pytest.mark.parametrize("modern", MODERN)
def test_a_per_channel_activation_from_a_legacy_file_cannot_go_to_2x(legacy, modern):
    data = convert(sample_file(), legacy)
    assert data.activations[2].granularity == "per-channel" and data.activations[2].axis is None
    with pytest.raises(FormatError) as error:
        convert(data, modern)
    assert str(error.value) == (
        "tensor '/conv/Conv_output_0': field 'axis' is unknown (0.6.1 and 1.0.0 files do not "
        f"record it), and version {modern} needs it for a per-channel activation"
    )


def test_convert_legacy_per_channel_params_to_2x_uses_axis_0():
    data = convert(sample_file(), "1.0.0")
    assert data.params[0].axis is None and data.params[0].scale.shape == (4,)
    entries = file_dict(EncodingFile(params=data.params), "2.0.0")["encodings"]
    assert [e.get("axis") for e in entries] == [0, 0, None]


@pytest.mark.parametrize("version", LEGACY)
def test_convert_strict_to_legacy_names_the_field(version):
    data = EncodingFile(params=[golden_encoding(STRICT_CASES[0], "w")])
    with pytest.raises(FormatError, match=r"field 'bw' is undefined.*2\.0\.0 or later$"):
        convert(data, version)


def test_convert_file(tmp_path):
    source, target = tmp_path / "a.encodings", tmp_path / "b.encodings"
    write(source, sample_file(), "2.1.0")
    data = convert_file(source, target, "1.0.0")
    assert data.version == "2.1.0"
    assert read(target).version == "1.0.0"
    assert diff(read(source), read(target)).equal


# --- reading AIMET's own entries ---------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_reads_aimet_entries(version):
    """Files assembled from the golden entries exactly as AIMET returned them."""
    cases = [c for c in FINITE_CASES if not c["config"]["strict"]]
    entries = {c["id"]: c["expected"][f"json_{version}"] for c in cases}
    if version == "0.6.1":
        obj = {"version": version, "activation_encodings": {}, "param_encodings": entries}
    elif version == "1.0.0":
        obj = {"version": version, "activation_encodings": [],
               "param_encodings": [{"name": n, **e} for n, e in entries.items()]}  # fmt: skip
    else:
        obj = {"version": version, "encodings": [{"name": n, **e} for n, e in entries.items()]}
    data = from_dict(obj, source="aimet.json")
    expected = [golden_encoding(c) for c in cases]
    assert diff(expected, data).equal
    for enc in data.encodings:
        assert enc.source == "aimet.json"


# --- malformed files ---------------------------------------------------------------------


def entry_1_0_0(**changes):
    entry = {
        "name": "conv1.weight", "dtype": "INT", "bw": 8, "is_sym": True,
        "scale": [0.5, 0.25, 0.125, 1.0], "offset": [-128] * 4, "enc_type": "PER_CHANNEL",
    }  # fmt: skip
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


def file_1_0_0(*entries):
    return {"version": "1.0.0", "activation_encodings": [], "param_encodings": list(entries)}


def entry_2_0_0(**changes):
    entry = {"name": "conv1.weight", "output_dtype": "int8", "y_scale": [0.5, 0.25], "axis": 0}
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


def file_2_0_0(*entries):
    return {"version": "2.0.0", "encodings": list(entries)}


def file_0_6_1(cells):
    return {"version": "0.6.1", "activation_encodings": {}, "param_encodings": {"fc.weight": cells}}


def cell(**changes):
    c = {"min": -1.0, "max": 1.0, "scale": 0.5, "offset": -2, "bitwidth": 2, "dtype": "int",
         "is_symmetric": "True"}  # fmt: skip
    c.update(changes)
    return {k: v for k, v in c.items() if v is not None}


W = "tensor 'conv1.weight': "  # the tensor most malformed files below name
F = "tensor 'fc.weight': "
MALFORMED = {
    "bad-json": (
        '{"version": "1.0.0",',
        "not valid JSON: Expecting property name enclosed in double quotes (line 1, column 21)",
    ),
    "not-an-object": ([], "top level is an array, expected an object"),
    "no-version": ({"encodings": []}, "field 'version' is missing"),
    "version-type": ({"version": 2}, "field 'version' is an integer, expected a string"),
    "unknown-version": (
        {"version": "3.0.0"},
        "field 'version' is '3.0.0', expected one of 0.6.1, 1.0.0, 2.0.0, 2.1.0",
    ),
    "duplicate-key": (
        '{"version": "2.0.0", "version": "1.0.0"}',
        "key 'version' appears twice in one JSON object",
    ),
    "no-section": (
        {"version": "1.0.0", "param_encodings": []},
        "field 'activation_encodings' is missing",
    ),
    "section-type": (
        {"version": "0.6.1", "activation_encodings": [], "param_encodings": {}},
        "field 'activation_encodings' is an array, expected an object",
    ),
    "missing-field": (file_1_0_0(entry_1_0_0(bw=None)), W + "field 'bw' is missing"),
    "wrong-type": (
        file_1_0_0(entry_1_0_0(bw="8")),
        W + "field 'bw' is a string, expected an integer",
    ),
    "length-mismatch": (
        file_1_0_0(entry_1_0_0(offset=[-128] * 3)),
        W + "field 'offset' has 3 values but 'scale' has 4",
    ),
    "item-type": (
        file_1_0_0(entry_1_0_0(scale=[0.5, "0.25", 0.125, 1.0])),
        W + "field 'scale' item 1 is a string, expected a number",
    ),
    "offset-float": (
        file_1_0_0(entry_1_0_0(offset=[-128.0] * 4)),
        W + "field 'offset' item 0 is a number, expected an integer",
    ),
    "empty-scale": (file_1_0_0(entry_1_0_0(scale=[], offset=[])), W + "field 'scale' is empty"),
    "bw-range": (file_1_0_0(entry_1_0_0(bw=64)), W + "field 'bw' is 64, expected 2 to 32"),
    "is-sym-type": (
        file_1_0_0(entry_1_0_0(is_sym="True")),
        W + "field 'is_sym' is a string, expected a boolean",
    ),
    "per-tensor-length": (
        file_1_0_0(entry_1_0_0(enc_type="PER_TENSOR")),
        W + "field 'scale' has 4 values but 'enc_type' is PER_TENSOR",
    ),
    "enc-type": (
        file_1_0_0(entry_1_0_0(enc_type="PER_ROW")),
        W + "field 'enc_type' is 'PER_ROW', expected 'PER_TENSOR' or 'PER_CHANNEL'",
    ),
    "per-block": (
        file_1_0_0(entry_1_0_0(enc_type="PER_BLOCK")),
        W + "field 'enc_type' is 'PER_BLOCK'; per-block, LPBQ and vector encodings are not "
        "supported yet",
    ),
    "float-1.0.0": (
        file_1_0_0({"name": "x", "dtype": "FLOAT", "bw": 16, "enc_type": "PER_TENSOR"}),
        "tensor 'x': field 'dtype' is 'FLOAT'; qcalc reads integer encodings only",
    ),
    "no-name": (
        file_1_0_0(entry_1_0_0(name=None)),
        "field 'param_encodings' item 0: field 'name' is missing",
    ),
    "entry-type": (
        file_1_0_0([1, 2]),
        "field 'param_encodings' item 0 is an array, expected an object",
    ),
    "duplicate-tensor": (
        file_1_0_0(entry_1_0_0(), entry_1_0_0()),
        "tensor 'conv1.weight' appears more than once",
    ),
    "0.6.1-cell-field": (
        file_0_6_1([cell(), cell(offset=-1.5)]),
        F + "channel 1: field 'offset' is a number, expected an integer",
    ),
    "0.6.1-mixed-bitwidth": (
        file_0_6_1([cell(), cell(bitwidth=4)]),
        F + "field 'bitwidth' is 4 in channel 1 but 2 in channel 0",
    ),
    "0.6.1-is-symmetric": (
        file_0_6_1([cell(is_symmetric="yes")]),
        F + 'field \'is_symmetric\' is "yes", expected "True" or "False"',
    ),
    "0.6.1-float": (
        file_0_6_1([{"bitwidth": 16, "dtype": "float"}]),
        F + "field 'dtype' is 'float'; qcalc reads integer encodings only",
    ),
    "0.6.1-not-a-list": (file_0_6_1(cell()), F + "is an object, expected an array of encodings"),
    "0.6.1-empty": (file_0_6_1([]), F + "has no encodings"),
    "2.0.0-no-axis": (file_2_0_0(entry_2_0_0(axis=None)), W + "field 'axis' is missing"),
    "2.0.0-zero-points": (
        file_2_0_0(entry_2_0_0(y_zero_point=[0, 0, 0])),
        W + "field 'y_zero_point' has 3 values but 'y_scale' has 2",
    ),
    "2.0.0-dtype": (
        file_2_0_0(entry_2_0_0(output_dtype="q8")),
        W + "field 'output_dtype' is 'q8', expected int<bits> or uint<bits>",
    ),
    "2.0.0-bits": (
        file_2_0_0(entry_2_0_0(output_dtype="int64")),
        W + "field 'output_dtype' is 'int64', expected 2 to 32 bits",
    ),
    "2.0.0-float": (
        file_2_0_0({"name": "x", "output_dtype": "float16"}),
        "tensor 'x': field 'output_dtype' is 'float16'; qcalc reads integer encodings only",
    ),
    "2.0.0-scale-type": (
        file_2_0_0(entry_2_0_0(y_scale="0.5")),
        W + "field 'y_scale' is a string, expected a number",
    ),
    "2.0.0-no-scale": (file_2_0_0(entry_2_0_0(y_scale=None)), W + "field 'y_scale' is missing"),
    "2.0.0-block": (
        file_2_0_0(entry_2_0_0(block_size=[1, 32])),
        W + "field 'block_size' is present; per-block and LPBQ encodings are not supported yet",
    ),
    "2.0.0-encodings": (
        {"version": "2.1.0", "encodings": {}},
        "field 'encodings' is an object, expected an array",
    ),
}


@pytest.mark.parametrize("content, message", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_file_message(content, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = content if isinstance(content, str) else json.dumps(content)
    (tmp_path / "shipped.json").write_text(text)
    with pytest.raises(FormatError) as error:
        read("shipped.json")
    assert str(error.value) == f"shipped.json: {message}"
    assert "\n" not in str(error.value)


def test_missing_file_is_a_read_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ReadError) as error:
        read("absent.json")
    assert str(error.value) == "absent.json: cannot read: No such file or directory"


def test_binary_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.bin").write_bytes(b"\x93NUMPY\xff")
    with pytest.raises(FormatError, match=r"^x\.bin: not UTF-8 text \(byte 0\)$"):
        read("x.bin")


def test_forced_version_reads_a_file_without_one():
    obj = file_1_0_0(entry_1_0_0())
    del obj["version"]
    data = from_dict(obj, "1.0.0")
    assert data.version == "1.0.0" and data.params[0].scale.shape == (4,)
    with pytest.raises(FormatError, match="unknown encoding version '9'"):
        from_dict(obj, "9")


def test_legacy_metadata_is_kept():
    obj = file_1_0_0(entry_1_0_0())
    obj["excluded_layers"] = ["fc"]
    obj["quantizer_args"] = {"quant_scheme": "tf_enhanced", "param_bitwidth": 8}
    back = json.loads(dumps(from_dict(obj), "0.6.1"))
    assert back["excluded_layers"] == ["fc"]
    assert back["quantizer_args"] == obj["quantizer_args"]


def test_2x_roles_follow_the_axis_sign():
    obj = file_2_0_0(
        {"name": "in", "output_dtype": "uint8", "y_scale": 0.1},
        entry_2_0_0(name="w", axis=0),
        {"name": "b", "output_dtype": "int8", "y_scale": 0.1},
        entry_2_0_0(name="act", axis=-3),
    )
    data = from_dict(obj)
    assert [e.name for e in data.params] == ["w", "b"]
    assert [e.name for e in data.activations] == ["in", "act"]
    act = data.activations[1]
    assert (act.scale.shape, act.axis) == ((2, 1, 1), 0)
    assert file_dict(data, "2.0.0")["encodings"][1]["axis"] == -3
