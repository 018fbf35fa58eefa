"""AIMET encodings JSON: every golden case's entry equals AIMET's `to_qnn_encoding_dict` output
for every version; whole files round-trip byte for byte; conversions keep the grid; every
malformed file fails with one exact line."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golden_cases import (
    BLOCK_CASES,
    CASES,
    FINITE_CASES,
    GRID_CASES,
    LEGACY,
    bits_equal,
    golden_encoding,
    golden_file,
    is_finite_case,
)
from helpers import sample_file
from qcalc import Spec, encode_array
from qcalc.core import grid
from qcalc.core.spec import integer_range
from qcalc.errors import ReadError
from qcalc.io.formats import (
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
from qcalc.core.encoding import Encoding

MODERN = ("2.0.0", "2.1.0")


# --- golden encodings --------------------------------------------------------------------


def entry_params():
    for case in CASES:
        for version in VERSIONS:
            if f"json_{version}" not in case["expected"]:
                continue
            yield pytest.param(case, version, id=f"{case['id']}-{version}")


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


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("bitwidth", [8, 32])
def test_scales_whose_grid_overflows_float32_are_never_written(version, bitwidth):
    """A finite scale whose 2^B - 1 steps overflow float32 (an int32 bias's input scale x
    weight scale can be one) is refused as the reader refuses it, not written unreadable."""
    largest = np.float32(np.finfo(np.float32).max / (2**bitwidth - 1))

    def bias(scale) -> Encoding:
        return Encoding.on_grid(
            "b", "m.onnx", Spec(bitwidth=bitwidth, symmetric=True), "per-tensor",
            np.array(scale, np.float32), np.array(0, np.float32), dtype="float32",
            shape=(3,), axis=None,
        )  # fmt: skip

    with np.errstate(over="ignore"):
        too_large = bias(largest * np.float32(1.01))
    with pytest.raises(FormatError, match=r"^tensor 'b': field 'scale' value .*: the grid's "
                       rf"{2**bitwidth - 1} steps of it overflow float32"):  # fmt: skip
        dumps(EncodingFile(params=[too_large]), version)
    read = loads(dumps(EncodingFile(params=[bias(largest / 2)]), version))
    assert [enc.name for enc in (*read.params, *read.activations)] == ["b"]


def test_a_32_bit_offset_rounded_off_the_grid_is_never_written():
    """float32 cannot hold the offset -(2^32 - 1) of data all below zero on the unsigned 32-bit
    grid: it rounds to -2^32, off the grid. 1.0.0 / 2.x refuse it as AIMET does (int32); 0.6.1,
    whose offsets have no int32 limit, refuses it too instead of writing a file no reader
    takes."""
    enc = encode_array(np.array([-2.0, -1.0], dtype=np.float32), Spec(bitwidth=32), name="t")
    assert float(enc.offset) == -(2.0**32)
    with pytest.raises(FormatError) as error:
        dumps(EncodingFile(activations=[enc]), "0.6.1")
    assert str(error.value) == (
        "tensor 't': field 'offset' value -4294967296 is off the 32-bit grid (-4294967295 to 0, "
        "unsigned convention): its float32 offset rounded past the grid's end, and no reader "
        "takes it"
    )
    for version in ("1.0.0", "2.0.0"):
        with pytest.raises(FormatError, match="does not fit int32"):
            dumps(EncodingFile(activations=[enc]), version)


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


@pytest.mark.parametrize(
    "analyzer, scheme",
    # AIMET writes QuantScheme.<member>.name: min_max (= post_training_tf),
    # post_training_percentile, post_training_tf_enhanced; plain SQNR has no member
    [("minmax", "min_max"), ("percentile", "post_training_percentile"),
     ("tf-enhanced", "post_training_tf_enhanced"), ("sqnr", "sqnr")],
)  # fmt: skip
def test_quantizer_args_name_the_analyzer(analyzer, scheme):
    weight = encode_array(np.linspace(-1, 1, 64, dtype=np.float32), Spec(analyzer=analyzer), "w")
    args = json.loads(dumps(EncodingFile(params=[weight]), "1.0.0"))["quantizer_args"]
    assert args["quant_scheme"] == scheme


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
    qmin, qmax = integer_range(bitwidth, signed)
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


# --- per-block and LPBQ ------------------------------------------------------------------

LPBQ_CASES = [c for c in BLOCK_CASES if c["config"]["granularity"] == "lpbq"]
BLOCK_VERSIONS = ("1.0.0", "2.0.0", "2.1.0")  # the versions whose files hold blocks


def test_the_golden_data_has_the_blocks_these_tests_rely_on():
    assert len(LPBQ_CASES) >= 4 and len(BLOCK_CASES) - len(LPBQ_CASES) >= 4
    assert all(is_finite_case(c) for c in BLOCK_CASES)
    for case in BLOCK_CASES:
        config = case["config"]
        shape = config["encoding_shape"]
        assert (config["axis"], config["block_axis"] % 2, len(shape)) == (0, 1, 2)
        assert all("error" not in case["expected"][f"json_{v}"] for v in VERSIONS)


def block_file(role: str = "params", cases=BLOCK_CASES) -> EncodingFile:
    return EncodingFile(**{role: [golden_encoding(c) for c in cases]})


def _positive_axes(entry: dict, ndim: int) -> dict:
    """What QuantSim's writer gives parameters: AIMET's negative axes made positive."""
    entry = {**entry, "axis": entry["axis"] + ndim}
    if isinstance(entry.get("y_scale"), dict):
        entry["y_scale"] = {**entry["y_scale"], "axis": entry["y_scale"]["axis"] + ndim}
    return entry


@pytest.mark.parametrize("version", MODERN)
@pytest.mark.parametrize("case", BLOCK_CASES, ids=lambda c: c["id"])
def test_block_param_entries_in_2x_files_have_positive_axes(case, version):
    enc = golden_encoding(case, "w")
    expected = case["expected"][f"json_{version}"]
    assert expected["axis"] == -1  # the golden data: the block axis, negative
    positive = _positive_axes(expected, 2)
    assert as_json(encoding_entry(enc, version, param_axis=True)) == as_json(positive)
    files = {
        role: file_dict(EncodingFile(**{role: [enc]}), version)["encodings"][0]
        for role in ("params", "activations")
    }
    assert as_json(files["params"]) == as_json({"name": "w", **positive})
    assert as_json(files["activations"]) == as_json({"name": "w", **expected})


@pytest.mark.parametrize("case", [BLOCK_CASES[0], LPBQ_CASES[0]], ids=lambda c: c["id"])
def test_0_6_1_files_refuse_blocks(case):
    """AIMET's 0.6.1 entry is a list of cells (test_entry_equals_aimet), which any reader takes
    for channels: a 0.6.1 file would silently lose the blocks."""
    enc = golden_encoding(case, "w")
    with pytest.raises(FormatError) as error:
        dumps(EncodingFile(params=[enc]), "0.6.1")
    kind, fields = (
        ("LPBQ", "'block_size' or 'per_block_int_scale'") if enc.granularity == "lpbq"
        else ("per-block", "'block_size'")
    )  # fmt: skip
    assert str(error.value) == (
        f"tensor 'w': version 0.6.1 cannot carry the {kind} encoding (it has no field "
        f"{fields}; its {enc.scale.size} cells would read back as channels); write encoding "
        f"version 1.0.0 or later"
    )


@pytest.mark.parametrize("version", BLOCK_VERSIONS)
@pytest.mark.parametrize("role", ["params", "activations"])
def test_block_files_round_trip_byte_identical(role, version, tmp_path):
    data = block_file(role)
    path = tmp_path / "model.encodings"
    write(path, data, version)
    first = path.read_bytes()
    again = read(path)
    assert len(getattr(again, role)) == len(BLOCK_CASES)  # the axis sign keeps the role in 2.x
    write(path, again, version)
    assert path.read_bytes() == first
    assert diff(data, again).equal


@pytest.mark.parametrize("version", BLOCK_VERSIONS)
def test_read_gives_the_written_block_grid(version):
    data = block_file()
    back = {e.name: e for e in loads(dumps(data, version)).encodings}
    for original in data.encodings:
        enc = back[original.name]
        assert enc.granularity == original.granularity
        assert enc.block_size == original.block_size
        assert enc.qmax - enc.qmin == original.qmax - original.qmin
        assert bits_equal(enc.scale.ravel(), original.scale.ravel())
        assert np.array_equal(
            enc.offset.ravel() + enc.qmax, original.offset.ravel() + original.qmax
        )
        lo, hi = grid.effective_range(enc.scale, enc.offset, enc.qmin, enc.qmax)
        assert bits_equal(enc.min, lo) and bits_equal(enc.max, hi)
        if enc.granularity == "lpbq":
            assert (enc.qmin, enc.spec.bitwidth) == (original.qmin, original.spec.bitwidth)
            assert enc.spec.symmetric and enc.spec.lpbq and np.all(enc.offset == 0)
            assert bits_equal(enc.per_channel_scale, original.per_channel_scale)
            assert bits_equal(enc.per_block_int_scale, original.per_block_int_scale)
            assert enc.decompressed_bitwidth == original.decompressed_bitwidth == 8
        if version == "1.0.0" and enc.granularity == "per-block":
            # 1.0.0 records neither the grid's shape nor its axes
            assert enc.scale.shape == (original.scale.size,)
            assert enc.axis is None and enc.block_axis is None
        else:
            # 2.x nests the grid; 1.0.0 LPBQ has C scales: channel axis 0, block axis 1
            assert enc.scale.shape == original.scale.shape
            assert (enc.axis, enc.block_axis) == (original.axis, original.block_axis)
            assert enc.spec.block_axis == original.block_axis


@pytest.mark.parametrize("target", BLOCK_VERSIONS)
@pytest.mark.parametrize("source", BLOCK_VERSIONS)
def test_convert_lpbq_is_lossless(source, target):
    data = convert(block_file(cases=LPBQ_CASES), source)
    there = convert(data, target)
    assert diff(data, there).equal and diff(block_file(cases=LPBQ_CASES), there).equal
    assert dumps(convert(there, source), source) == dumps(data, source)


@pytest.mark.parametrize("target", MODERN)
@pytest.mark.parametrize("source", MODERN)
def test_convert_per_block_between_2x_is_lossless(source, target):
    data = convert(block_file(), source)
    there = convert(data, target)
    assert diff(data, there).equal
    assert dumps(convert(there, source), source) == dumps(data, source)


@pytest.mark.parametrize("modern", MODERN)
def test_per_block_grids_from_1_0_0_cannot_go_to_2x(modern):
    """1.0.0 keeps every cell (diff finds the files equal) but not the grid's shape."""
    data = convert(block_file(cases=BLOCK_CASES[:1]), modern)
    legacy = convert(data, "1.0.0")
    assert diff(data, legacy).equal
    with pytest.raises(FormatError) as error:
        convert(legacy, modern)
    assert str(error.value) == (
        f"tensor '{BLOCK_CASES[0]['id']}': field 'axis' is unknown (1.0.0 files record the 64 "
        f"cells of a per-block grid but not its shape or block axis), and version {modern} "
        f"needs it"
    )


def transposed(enc: Encoding) -> Encoding:
    """The same LPBQ grid for the transposed tensor: channel axis 1, block axis 0."""
    t = lambda a: None if a is None else np.ascontiguousarray(a.T)  # noqa: E731
    fields = ("scale", "offset", "min", "max", "raw_min", "raw_max", "per_channel_scale",
              "per_block_int_scale")  # fmt: skip
    return dataclasses.replace(
        enc, axis=1, block_axis=0, shape=enc.shape[::-1], **{f: t(getattr(enc, f)) for f in fields}
    )


@pytest.mark.parametrize("version", MODERN)
def test_lpbq_blocked_before_its_channels(version):
    enc = transposed(golden_encoding(LPBQ_CASES[0], "w"))
    entry = encoding_entry(enc, version)
    assert entry["axis"] == -2
    if version == "2.1.0":
        assert entry["y_scale"]["axis"] == -1
    else:
        assert np.shape(entry["per_channel_float_scale"]) == (1, 8)
    back = loads(dumps(EncodingFile(params=[enc]), version)).params[0]
    assert (back.axis, back.block_axis, back.scale.shape) == (1, 0, enc.scale.shape)
    assert diff([enc], [back]).equal
    with pytest.raises(FormatError) as error:
        dumps(EncodingFile(params=[enc]), "1.0.0")
    assert str(error.value) == (
        "tensor 'w': version 1.0.0 records no axes, and its field 'per_block_int_scale' reads "
        "channel by channel, but this grid's block axis 0 comes before its channel axis 1; "
        "write encoding version 2.0.0 or later"
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_reads_aimet_block_entries(version):
    """Files assembled from AIMET's own per-block and LPBQ entries."""
    entries = {c["id"]: c["expected"][f"json_{version}"] for c in BLOCK_CASES}
    if version == "0.6.1":
        obj = {"version": version, "activation_encodings": {}, "param_encodings": entries}
    elif version == "1.0.0":
        obj = {"version": version, "activation_encodings": [],
               "param_encodings": [{"name": n, **e} for n, e in entries.items()]}  # fmt: skip
    else:
        obj = {"version": version, "encodings": [{"name": n, **e} for n, e in entries.items()]}
    data = from_dict(obj, source="aimet.json")
    expected = [golden_encoding(c) for c in BLOCK_CASES]
    result = diff(expected, data)
    if version == "0.6.1":
        # AIMET writes the cells as channels: only the granularity is lost
        assert not result.deltas and not result.only_in_a and not result.only_in_b
        assert {(c.setting, c.b) for c in result.settings} == {("granularity", "per-channel")}
    else:
        assert result.equal
    if version in MODERN:
        # AIMET's negative axes read as activations, nested grids in their shape
        assert len(data.activations) == len(BLOCK_CASES)
        assert [e.scale.shape for e in data.encodings] == [e.scale.shape for e in expected]


def test_2x_reads_either_lpbq_form():
    """The 2.0.0 form in a 2.1.0 file and the other way round (AIMET's loader takes both)."""
    a = from_dict(file_2_1_0(lpbq_2_0_0())).params[0]
    b = from_dict(file_2_0_0(lpbq_2_1_0())).params[0]
    assert diff([a], [b]).equal
    assert (a.axis, a.block_axis, a.block_size, a.decompressed_bitwidth) == (0, 1, 16, 8)
    assert a.per_block_int_scale.dtype == a.per_channel_scale.dtype == np.float32
    assert bits_equal(a.scale, np.float32([[0.5, 8.0, 1.0], [0.75, 4.0, 1.0]]))
    assert (a.qmin, a.qmax, a.spec.bitwidth, a.spec.decompressed_bitwidth) == (-8, 7, 4, 8)


def test_2x_reads_the_decompressed_bitwidth_from_the_multipliers():
    enc = from_dict(file_2_0_0(lpbq_2_0_0(per_block_int_scale=[[1, 5, 2], [3, 9, 4]]))).params[0]
    assert enc.decompressed_bitwidth == 4 + 4  # 9 needs 4 more bits
    one = from_dict(file_2_0_0(lpbq_2_0_0(per_block_int_scale=[[1, 1, 1], [1, 1, 1]]))).params[0]
    assert one.decompressed_bitwidth == 4


def test_1_0_0_block_entries_read():
    block = from_dict(file_1_0_0(block_1_0_0())).params[0]
    assert (block.granularity, block.block_size, block.block_axis, block.axis) == (
        "per-block", 16, None, None,
    )  # fmt: skip
    assert (block.qmin, block.qmax, block.scale.shape) == (-8, 7, (6,))
    lpbq = from_dict(file_1_0_0(lpbq_1_0_0())).params[0]
    assert (lpbq.granularity, lpbq.scale.shape) == ("lpbq", (2, 3))
    assert (lpbq.axis, lpbq.block_axis) == (0, 1)
    assert (lpbq.spec.bitwidth, lpbq.decompressed_bitwidth) == (4, 8)
    assert bits_equal(lpbq.scale, np.float32([[0.5, 8.0, 1.0], [0.75, 4.0, 1.0]]))
    assert diff([lpbq], from_dict(file_2_0_0(lpbq_2_0_0())).params).equal


def test_block_grids_in_a_2x_file_keep_their_role_and_shape():
    obj = file_2_0_0(
        block_2_0_0(name="w"),
        block_2_0_0(name="act", axis=-1),
        lpbq_2_0_0(name="w4", axis=1),
    )
    data = from_dict(obj)
    assert [e.name for e in data.params] == ["w", "w4"]
    assert [e.name for e in data.activations] == ["act"]
    for enc in data.encodings:
        assert (enc.scale.shape, enc.axis, enc.block_axis) == ((2, 3), 0, 1)
    assert as_json(file_dict(data, "2.0.0")["encodings"]) == as_json(
        [block_2_0_0(name="act", axis=-1), block_2_0_0(name="w"), lpbq_2_0_0(name="w4")]
    )


@st.composite
def block_encodings(draw):
    """Per-block or LPBQ grids of 1-4 channels and 1-4 blocks, blocked along either axis."""
    lpbq = draw(st.booleans())
    bitwidth = draw(st.integers(2, 8))
    channels, blocks = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    block_axis = draw(st.sampled_from([0, 1]))
    shape = (channels, blocks) if block_axis == 1 else (blocks, channels)
    channel_shape = tuple(1 if i == block_axis else n for i, n in enumerate(shape))
    positive = st.floats(2.0**-20, 2.0**20, width=32)
    size = int(np.prod(shape))
    extra: dict = {}
    if lpbq:
        signed = symmetric = True
        decompressed = draw(st.integers(bitwidth, 12))
        qmin, qmax = integer_range(bitwidth, True)
        pcs = np.array(draw(st.lists(positive, min_size=channels, max_size=channels)), np.float32)
        pcs = pcs.reshape(channel_shape)
        ints = st.integers(1, 2 ** (decompressed - bitwidth))
        mult = np.array(draw(st.lists(ints, min_size=size, max_size=size)), np.float32)
        mult = mult.reshape(shape)
        scale = (mult * pcs).astype(np.float32)
        offset = np.zeros(shape, np.float32)
        extra = dict(per_channel_scale=pcs, per_block_int_scale=mult,
                     decompressed_bitwidth=decompressed)  # fmt: skip
    else:
        signed, symmetric = draw(st.booleans()), draw(st.booleans())
        qmin, qmax = integer_range(bitwidth, signed)
        scale = np.array(draw(st.lists(positive, min_size=size, max_size=size)), np.float32)
        scale = scale.reshape(shape)
        if symmetric:
            offset = np.full(shape, -round((qmin + qmax) / 2), np.float32)
        else:
            ints = st.integers(-qmax, -qmin)
            offset = np.array(draw(st.lists(ints, min_size=size, max_size=size)), np.float32)
            offset = offset.reshape(shape)
    block_size = draw(st.integers(1, 64))
    lo, hi = grid.effective_range(scale, offset, qmin, qmax)
    spec = Spec(bitwidth=bitwidth, signed=signed, symmetric=symmetric, per_channel=True,
                axis=1 - block_axis, block_size=block_size, block_axis=block_axis, lpbq=lpbq,
                decompressed_bitwidth=extra.get("decompressed_bitwidth", 8))  # fmt: skip
    return Encoding(
        "t", "<test>", "float32", None, spec, "lpbq" if lpbq else "per-block", 1 - block_axis,
        qmin, qmax, scale, offset, lo, hi, lo, hi, block_size=block_size, block_axis=block_axis,
        **extra,
    )  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(
    enc=block_encodings(),
    version=st.sampled_from(BLOCK_VERSIONS),
    role=st.sampled_from(["params", "activations"]),
)
def test_block_round_trip_property(enc, version, role):
    data = EncodingFile(**{role: [enc]})
    if version == "1.0.0" and enc.granularity == "lpbq" and enc.block_axis < enc.axis:
        with pytest.raises(FormatError, match="block axis 0 comes before its channel axis 1"):
            dumps(data, version)
        return
    text = dumps(data, version)
    back = loads(text)
    assert dumps(back, version) == text
    assert diff(data, back).equal
    if version in MODERN:
        assert (back.encodings[0].axis, back.encodings[0].block_axis) == (enc.axis, enc.block_axis)


def test_lpbq_multipliers_must_be_whole():
    enc = golden_encoding(LPBQ_CASES[0], "w")
    bad = enc.per_block_int_scale.copy()
    bad[0, 1] = 2.5
    with pytest.raises(FormatError) as error:
        encoding_entry(dataclasses.replace(enc, per_block_int_scale=bad), "2.0.0")
    assert str(error.value) == (
        "tensor 'w': field 'per_block_int_scale' value 2.5 is not an integer of at least 1"
    )
    with pytest.raises(FormatError, match=r"^tensor 'w': field 'per_channel_scale' is missing"):
        encoding_entry(dataclasses.replace(enc, per_channel_scale=None), "1.0.0")


# --- per-block and LPBQ in reports -------------------------------------------------------


def test_block_records_carry_every_cell():
    from qcalc.commands.render.encodings import FIELDS, encoding_record
    from helpers import rendered

    block, lpbq = golden_encoding(BLOCK_CASES[0]), golden_encoding(LPBQ_CASES[0])
    record = encoding_record(block)
    assert list(record) == [*FIELDS, "block_size", "block_axis"]
    assert (record["granularity"], record["axis"], record["block_size"], record["block_axis"]) == (
        "per-block", 0, 16, 1,
    )  # fmt: skip
    assert len(record["scale"]) == block.scale.size == 64
    record = encoding_record(lpbq)
    assert list(record)[len(FIELDS):] == [
        "block_size", "block_axis", "per_channel_scale", "per_block_int_scale",
        "decompressed_bitwidth",
    ]  # fmt: skip
    assert record["per_channel_scale"] == lpbq.per_channel_scale.ravel().tolist()
    assert record["per_block_int_scale"] == LPBQ_CASES[0]["expected"]["per_block_int_scale"]
    assert record["decompressed_bitwidth"] == 8
    rows = list(csv.DictReader(io.StringIO(rendered([block, lpbq], "csv"))))
    assert len(rows) == block.scale.size + lpbq.scale.size
    assert rows[0]["block_size"] == "16" and rows[0]["per_block_int_scale"] == ""
    cell = rows[64 + 9]  # channel 1, block 1 of the 8 x 8 grid
    assert int(cell["per_block_int_scale"]) == int(lpbq.per_block_int_scale[1, 1])
    assert np.float32(float(cell["per_channel_scale"])) == lpbq.per_channel_scale[1, 0]
    assert np.float32(float(cell["scale"])) == lpbq.scale[1, 1]


def test_block_table_rows():
    from qcalc.commands.render.encodings import table_row, table_title

    block, lpbq = golden_encoding(BLOCK_CASES[0]), golden_encoding(LPBQ_CASES[1])
    assert table_row(block)[3] == "8×8 blk" and table_row(lpbq)[3] == "8×4 lpbq"
    assert "…" in table_row(lpbq)[6]  # the spread of the block scales
    assert table_title([lpbq]).endswith("blocks of 32 along axis 1, LPBQ decompressed to 8 bits")


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
    c = {"min": -1.0, "max": 0.5, "scale": 0.5, "offset": -2, "bitwidth": 2, "dtype": "int",
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
        W + "field 'enc_type' is 'PER_ROW', expected 'PER_TENSOR', 'PER_CHANNEL', 'PER_BLOCK' "
        "or 'LPBQ'",
    ),
    "vector": (
        file_1_0_0(entry_1_0_0(enc_type="VECTOR")),
        W + "field 'enc_type' is 'VECTOR'; vector encodings are not supported",
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
        file_0_6_1([cell(), cell(bitwidth=4, max=6.5)]),
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
        W + "field 'block_size' is an array, expected an integer",
    ),
    "2.0.0-encodings": (
        {"version": "2.1.0", "encodings": {}},
        "field 'encodings' is an object, expected an array",
    ),
}


def block_1_0_0(**changes):
    """Two channels of three 16-long blocks, 4-bit symmetric."""
    entry = {
        "name": "conv1.weight", "dtype": "INT", "bw": 4, "is_sym": True,
        "scale": [0.5, 0.25, 0.125, 1.0, 0.5, 0.25], "offset": [-8] * 6,
        "enc_type": "PER_BLOCK", "block_size": 16,
    }  # fmt: skip
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


def lpbq_1_0_0(**changes):
    """Two channels of three blocks, 4-bit LPBQ decompressed to 8 bits."""
    entry = {
        "name": "conv1.weight", "dtype": "INT", "bw": 8, "is_sym": True, "scale": [0.5, 0.25],
        "offset": [-128, -128], "enc_type": "LPBQ", "block_size": 16, "compressed_bw": 4,
        "per_block_int_scale": [1, 16, 2, 3, 16, 4],
    }  # fmt: skip
    entry.update(changes)
    return {k: v for k, v in entry.items() if v is not None}


def block_2_0_0(**changes):
    entry = {"name": "conv1.weight", "output_dtype": "int4",
             "y_scale": [[0.5, 0.25, 0.125], [1.0, 0.5, 0.25]], "axis": 1, "block_size": 16}
    entry.update(changes)  # fmt: skip
    return {k: v for k, v in entry.items() if v is not None}


def lpbq_2_0_0(**changes):
    entry = {"name": "conv1.weight", "axis": 1, "block_size": 16,
             "per_block_int_scale": [[1, 16, 2], [3, 16, 4]],
             "per_channel_float_scale": [[0.5], [0.25]], "output_dtype": "int4"}
    entry.update(changes)  # fmt: skip
    return {k: v for k, v in entry.items() if v is not None}


def lpbq_2_1_0(y_scale=None, **changes):
    meta = {"x": [[1, 16, 2], [3, 16, 4]], "x_scale": [0.5, 0.25], "axis": 0}
    meta.update(y_scale or {})
    entry = {"name": "conv1.weight", "output_dtype": "int4",
             "y_scale": {k: v for k, v in meta.items() if v is not None},
             "axis": 1, "block_size": 16}
    entry.update(changes)  # fmt: skip
    return {k: v for k, v in entry.items() if v is not None}


def file_2_1_0(*entries):
    return {"version": "2.1.0", "encodings": list(entries)}


MALFORMED_BLOCKS = {
    "block-no-size": (
        file_1_0_0(block_1_0_0(block_size=None)),
        W + "field 'block_size' is missing",
    ),
    "block-size-zero": (
        file_1_0_0(block_1_0_0(block_size=0)),
        W + "field 'block_size' is 0, expected at least 1",
    ),
    "lpbq-int-scale-length": (
        file_1_0_0(lpbq_1_0_0(per_block_int_scale=[1, 16, 2, 3, 16])),
        W + "field 'per_block_int_scale' has 5 values, not a multiple of the 2 channels in "
        "'scale'",
    ),
    "lpbq-int-scale-high": (
        file_1_0_0(lpbq_1_0_0(per_block_int_scale=[1, 17, 2, 3, 16, 4])),
        W + "field 'per_block_int_scale' item 1 is 17, expected 1 to 16",
    ),
    "lpbq-int-scale-zero": (
        file_1_0_0(lpbq_1_0_0(per_block_int_scale=[1, 16, 2, 0, 16, 4])),
        W + "field 'per_block_int_scale' item 3 is 0, expected 1 to 16",
    ),
    "lpbq-int-scale-float": (
        file_1_0_0(lpbq_1_0_0(per_block_int_scale=[1.0, 16, 2, 3, 16, 4])),
        W + "field 'per_block_int_scale' item 0 is a number, expected an integer",
    ),
    "lpbq-no-int-scale": (
        file_1_0_0(lpbq_1_0_0(per_block_int_scale=None)),
        W + "field 'per_block_int_scale' is missing",
    ),
    "lpbq-offset": (
        file_1_0_0(lpbq_1_0_0(offset=[-128, 0])),
        W + "field 'offset' item 1 is 0, expected -128 (LPBQ grids are symmetric)",
    ),
    "lpbq-compressed-bw": (
        file_1_0_0(lpbq_1_0_0(compressed_bw=9)),
        W + "field 'compressed_bw' is 9, more than 'bw' 8",
    ),
    "lpbq-no-compressed-bw": (
        file_1_0_0(lpbq_1_0_0(compressed_bw=None)),
        W + "field 'compressed_bw' is missing",
    ),
    "lpbq-asymmetric": (
        file_1_0_0(lpbq_1_0_0(is_sym=False)),
        W + "field 'is_sym' is false, but LPBQ grids are symmetric",
    ),
    "2.0.0-block-ragged": (
        file_2_0_0(block_2_0_0(y_scale=[[0.5, 0.25, 0.125], [1.0]])),
        W + "field 'y_scale' is not rectangular: item 1 is an array of 1, expected an array of 3",
    ),
    "2.0.0-block-mixed-depth": (
        file_2_0_0(block_2_0_0(y_scale=[[0.5, 0.25, 0.125], 1.0])),
        W + "field 'y_scale' is not rectangular: item 1 is a number, expected an array of 3",
    ),
    "2.0.0-block-item": (
        file_2_0_0(block_2_0_0(y_scale=[[0.5, 0.25, 0.125], [1.0, "0.5", 0.25]])),
        W + "field 'y_scale' item [1, 1] is a string, expected a number",
    ),
    "2.0.0-block-empty": (
        file_2_0_0(block_2_0_0(y_scale=[[], []])),
        W + "field 'y_scale' holds an empty array",
    ),
    "2.0.0-block-axis": (
        file_2_0_0(block_2_0_0(axis=2)),
        W + "field 'axis' is 2, expected -2 to 1 (the rank of 'y_scale')",
    ),
    "2.0.0-block-no-axis": (file_2_0_0(block_2_0_0(axis=None)), W + "field 'axis' is missing"),
    "2.0.0-block-zero-points": (
        file_2_0_0(block_2_0_0(y_zero_point=[[0, 0, 0]])),
        W + "field 'y_zero_point' has shape [1, 3] but 'y_scale' has shape [2, 3]",
    ),
    "2.0.0-block-two-channel-axes": (
        file_2_0_0(block_2_0_0(y_scale=[[[0.5, 1.0]] * 3] * 2)),
        W + "field 'y_scale' has shape [2, 3, 2]: axes 0, 2 besides the block axis 1 have more "
        "than one cell (one channel axis expected)",
    ),
    "2.0.0-lpbq-channel-shape": (
        file_2_0_0(lpbq_2_0_0(per_channel_float_scale=[[0.5], [0.25], [1.0]])),
        W + "field 'per_channel_float_scale' has shape [3, 1], expected [2, 1] "
        "('per_block_int_scale' has shape [2, 3], block axis 1)",
    ),
    "2.0.0-lpbq-no-channel-scale": (
        file_2_0_0(lpbq_2_0_0(per_channel_float_scale=None)),
        W + "field 'per_channel_float_scale' is missing",
    ),
    "2.0.0-lpbq-unsigned": (
        file_2_0_0(lpbq_2_0_0(output_dtype="uint4")),
        W + "field 'output_dtype' is 'uint4', but LPBQ grids are signed (int<bits>)",
    ),
    "2.0.0-lpbq-zero-point": (
        file_2_0_0(lpbq_2_0_0(y_zero_point=[[0, 0, 0], [0, 1, 0]])),
        W + "field 'y_zero_point' is not 0; LPBQ grids have zero offsets",
    ),
    "2.0.0-lpbq-int-scale": (
        file_2_0_0(lpbq_2_0_0(per_block_int_scale=[[1, 16, 2], [3, 0, 4]])),
        W + "field 'per_block_int_scale' item [1, 1] is 0, expected 1 to 268435456",
    ),
    "2.0.0-lpbq-with-y-scale": (
        file_2_0_0(lpbq_2_0_0(y_scale=[0.5, 0.25])),
        W + "field 'y_scale' is present along with 'per_block_int_scale'",
    ),
    "2.1.0-lpbq-x-scale-length": (
        file_2_1_0(lpbq_2_1_0({"x_scale": [0.5]})),
        W + "field 'y_scale.x_scale' has 1 values but 'y_scale.x' has 2 channels (shape [2, 3], "
        "channel axis 0)",
    ),
    "2.1.0-lpbq-channel-axis": (
        file_2_1_0(lpbq_2_1_0({"axis": -1})),
        W + "field 'y_scale.axis' is -1, the same axis as the block axis 'axis' (1)",
    ),
    "2.1.0-lpbq-no-channel-axis": (
        file_2_1_0(lpbq_2_1_0({"axis": None})),
        W + "field 'y_scale.axis' is missing",
    ),
    "2.1.0-lpbq-x-item": (
        file_2_1_0(lpbq_2_1_0({"x": [[1, 16, 2.5], [3, 16, 4]]})),
        W + "field 'y_scale.x' item [0, 2] is a number, expected an integer",
    ),
    "2.1.0-lpbq-both-forms": (
        file_2_1_0(lpbq_2_1_0(per_block_int_scale=[[1, 16, 2], [3, 16, 4]])),
        W + "field 'per_block_int_scale' is present along with a 'y_scale' object",
    ),
}
MALFORMED.update(MALFORMED_BLOCKS)


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
    assert str(error.value) == "absent.json: cannot read: no such file or directory"


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
