"""diff: semantic comparison of encodings across file versions, with numpy.isclose tolerance."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from qcalc import Spec, encode_array
from golden_cases import BLOCK_CASES, CASES, FINITE_CASES, golden_encoding, golden_file
from helpers import sample_file
from qcalc.io.formats import VERSIONS, EncodingFile, FormatError, convert, diff, from_dict


def scaled(enc, factor, channel=None):
    scale = enc.scale.copy()
    if channel is None:
        scale *= np.float32(factor)
    else:
        scale.reshape(-1)[channel] *= np.float32(factor)
    return dataclasses.replace(enc, scale=scale)


def test_equal_to_itself():
    data = sample_file()
    result = diff(data, data)
    assert result.equal
    assert (result.only_in_a, result.only_in_b, result.settings, result.deltas) == ((), (), (), ())


def test_order_does_not_matter():
    data = sample_file()
    shuffled = EncodingFile(params=data.params[::-1], activations=data.activations[::-1])
    assert diff(data, shuffled).equal
    assert diff(list(data.encodings), list(reversed(data.encodings))).equal


def test_params_and_activations_are_one_namespace():
    data = sample_file()
    swapped = EncodingFile(params=data.activations, activations=data.params)
    assert diff(data, swapped).equal


def test_truncated_file():
    data = sample_file()
    shorter = EncodingFile(params=data.params[:1], activations=data.activations)
    result = diff(data, shorter)
    assert not result.equal
    assert result.only_in_a == ("2.weight", "2.bias") and result.only_in_b == ()
    assert diff(shorter, data).only_in_b == ("2.weight", "2.bias")


def test_perturbed_scale_beyond_and_within_tolerance():
    enc = golden_encoding(next(c for c in FINITE_CASES if c["id"] == "sweep-pc0-b8-asym-u"))
    bumped = scaled(enc, 1.001, channel=5)
    result = diff([enc], [bumped])
    assert not result.equal
    (delta,) = result.deltas
    a, b = float(enc.scale.reshape(-1)[5]), float(bumped.scale.reshape(-1)[5])
    assert (delta.tensor, delta.field, delta.channel) == (enc.name, "scale", 5)
    assert (delta.a, delta.b, delta.abs_delta) == (a, b, abs(a - b))
    assert (delta.differing, delta.beyond, delta.channels) == (1, 1, 16)
    assert not delta.within_tolerance
    assert diff([enc], [bumped], rtol=1e-3).equal  # |a - b| <= 1e-3 * |b|
    assert not diff([enc], [bumped], rtol=5e-4).equal
    assert diff([enc], [bumped], atol=abs(a - b)).equal
    assert not diff([enc], [bumped], atol=abs(a - b) / 2).equal
    within = diff([enc], [bumped], rtol=1e-3)
    assert within.deltas[0].within_tolerance and within.deltas[0].beyond == 0


def test_worst_channel_is_the_one_furthest_beyond_tolerance():
    enc = encode_array(
        np.arange(12, dtype=np.float32).reshape(4, 3) - 5, Spec(per_channel=True), "w"
    )
    other = scaled(scaled(enc, 1.01, channel=1), 1.05, channel=3)
    (delta,) = diff([enc], [other]).deltas
    assert (delta.channel, delta.differing) == (3, 2)


def test_perturbed_offset():
    enc = encode_array(np.array([-1.0, 3.0], dtype=np.float32), name="x")
    moved = dataclasses.replace(enc, offset=enc.offset + np.float32(1))
    (delta,) = diff([enc], [moved]).deltas
    assert (delta.field, delta.a, delta.b, delta.abs_delta) == (
        "offset", float(enc.offset), float(enc.offset) + 1, 1.0,
    )  # fmt: skip
    assert diff([enc], [moved], atol=1).equal


def test_nan_equals_nan_but_not_a_number():
    enc = encode_array(np.array([-1.0, 3.0], dtype=np.float32), name="x")
    nan = dataclasses.replace(enc, scale=np.float32(np.nan) * enc.scale)
    assert diff([nan], [nan]).equal
    result = diff([enc], [nan], rtol=1.0, atol=1.0)
    assert not result.equal and result.deltas[0].beyond == 1
    inf = dataclasses.replace(enc, scale=np.float32(np.inf) * enc.scale)
    assert diff([inf], [inf]).equal
    assert not diff([enc], [inf], rtol=1e9).equal


@pytest.mark.parametrize(
    "spec_a, spec_b, setting",
    [
        (Spec(bitwidth=8), Spec(bitwidth=4), "bitwidth"),
        (Spec(symmetric=False), Spec(symmetric=True, signed=False), "symmetric"),
        (Spec(per_channel=False), Spec(per_channel=True), "granularity"),
        (Spec(symmetric=True), Spec(symmetric=True, strict_symmetric=True), "strict"),
    ],
    ids=["bitwidth", "symmetry", "granularity", "strict"],
)
def test_changed_setting(spec_a, spec_b, setting):
    x = np.linspace(-1, 3, 24, dtype=np.float32).reshape(4, 6)
    result = diff([encode_array(x, spec_a, "x")], [encode_array(x, spec_b, "x")])
    assert not result.equal
    assert setting in [c.setting for c in result.settings]
    change = next(c for c in result.settings if c.setting == setting)
    assert change.tensor == "x" and change.a != change.b


def test_changed_channel_count_and_axis():
    x = np.linspace(-1, 3, 24, dtype=np.float32).reshape(4, 6)
    rows = encode_array(x, Spec(per_channel=True, axis=0), "x")
    cols = encode_array(x, Spec(per_channel=True, axis=1), "x")
    result = diff([rows], [cols])
    assert [(c.setting, c.a, c.b) for c in result.settings] == [("channels", 4, 6), ("axis", 0, 1)]
    assert result.deltas == ()  # channel-wise numbers of different grids are not compared
    square = np.linspace(-1, 3, 16, dtype=np.float32).reshape(4, 4)
    result = diff([encode_array(square, Spec(per_channel=True, axis=0), "x")],
                  [encode_array(square, Spec(per_channel=True, axis=1), "x")])  # fmt: skip
    assert ("axis", 0, 1) in [(c.setting, c.a, c.b) for c in result.settings]


def test_one_cell_grids_are_per_tensor():
    """AIMET's shape (1,) quantizer and QuantSim's shape () one are the same encoding."""
    case = next(c for c in FINITE_CASES if c["config"]["encoding_shape"] == [1])
    enc = golden_encoding(case)
    scalar = dataclasses.replace(
        enc, **{k: getattr(enc, k).reshape(()) for k in ("scale", "offset", "min", "max")}
    )
    assert diff([enc], [scalar]).equal


@pytest.mark.parametrize("b", VERSIONS)
@pytest.mark.parametrize("a", VERSIONS)
def test_files_of_the_same_encodings_are_equal_across_versions(a, b):
    data = golden_file("0.6.1")
    assert diff(convert(data, a), convert(data, b)).equal


@pytest.mark.parametrize("version", VERSIONS)
def test_signed_and_unsigned_forms_of_a_grid_are_equal(version):
    signed = next(c for c in FINITE_CASES if c["id"] == "sweep-pc0-b8-asym-s")
    enc = golden_encoding(signed)
    unsigned = dataclasses.replace(enc, qmin=0, qmax=255, offset=enc.offset - np.float32(128),
                                   spec=dataclasses.replace(enc.spec, signed=False))  # fmt: skip
    assert diff([enc], [unsigned]).equal
    assert diff(convert(EncodingFile(params=[enc]), version), [unsigned]).equal


def test_symmetry_is_inferred_on_both_sides_when_one_is_a_2x_file():
    """2.x has no symmetry field: an asymmetric grid whose zero point is the centre equals it."""
    case = next(c for c in FINITE_CASES if c["id"] == "dist-halfway-pt-b8-asym-u")
    enc = golden_encoding(case)
    assert int(enc.offset.reshape(-1)[0]) == -128 and not enc.spec.symmetric
    two = convert(EncodingFile(activations=[enc]), "2.0.0")
    assert two.encodings[0].spec.symmetric
    assert diff([enc], two).equal
    assert not diff([enc], list(two.encodings)).equal  # without the file, the flags differ


def test_duplicate_names_are_refused():
    enc = encode_array(np.arange(3, dtype=np.float32), name="x")
    with pytest.raises(FormatError, match=r"^tensor 'x' appears more than once in B$"):
        diff([enc], [enc, enc])


def test_negative_tolerance_is_refused():
    with pytest.raises(ValueError):
        diff([], [], rtol=-1)


# --- per-block and LPBQ ------------------------------------------------------------------


def block_case(kind: str, block_size: int):
    return next(
        c for c in CASES
        if c["config"]["granularity"] == kind and c["config"]["block_size"] == block_size
    )  # fmt: skip


def test_a_perturbed_block_is_reported_by_its_cell():
    enc = golden_encoding(block_case("per-block", 32))
    bumped = scaled(enc, 1.01, channel=9)  # cell 9 of the 8 x 4 grid: channel 2, block 1
    (delta,) = diff([enc], [bumped]).deltas
    assert (delta.field, delta.channel, delta.channels, delta.differing) == ("scale", 9, 32, 1)
    assert delta.a == float(enc.scale[2, 1])


@pytest.mark.parametrize("version", ["1.0.0", "2.0.0", "2.1.0"])
def test_block_files_equal_their_encodings(version):
    data = EncodingFile(params=[golden_encoding(c) for c in BLOCK_CASES])
    assert diff(data, convert(data, version)).equal
    assert diff(convert(data, version), data).equal


def test_block_settings():
    block = golden_encoding(block_case("per-block", 32))
    lpbq = golden_encoding(block_case("lpbq", 32))
    other_size = dataclasses.replace(block, block_size=64)
    assert [(c.setting, c.a, c.b) for c in diff([block], [other_size]).settings] == [
        ("block_size", 32, 64)
    ]
    changes = diff([block], [dataclasses.replace(block, granularity="lpbq")]).settings
    assert [(c.setting, c.a, c.b) for c in changes] == [("granularity", "per-block", "lpbq")]
    finer = golden_encoding(block_case("per-block", 16))
    result = diff([block], [dataclasses.replace(finer, name=block.name)])
    assert [c.setting for c in result.settings][-2:] == ["cells", "block_size"]
    assert result.deltas == ()  # cells of different grids are not compared
    per_channel = next(c for c in FINITE_CASES if c["config"]["granularity"] == "per-channel")
    flat = golden_encoding(per_channel)
    changes = diff([dataclasses.replace(flat, name=block.name)], [block]).settings
    assert ("granularity", "per-channel", "per-block") in [(c.setting, c.a, c.b) for c in changes]
    assert diff([lpbq], [lpbq]).equal


def test_block_axes_and_channels():
    block = golden_encoding(block_case("per-block", 32))
    cells = ("scale", "offset", "min", "max", "raw_min", "raw_max")
    t = lambda a: np.ascontiguousarray(a.T)  # noqa: E731
    turned = dataclasses.replace(
        block, axis=1, block_axis=0, **{f: t(getattr(block, f)) for f in cells}
    )  # the transposed tensor's grid: still 8 channels of 4 blocks
    changes = [(c.setting, c.a, c.b) for c in diff([block], [turned]).settings]
    assert changes == [("axis", 0, 1), ("block_axis", 1, 0)]
    regrouped = dataclasses.replace(block, **{f: getattr(block, f).reshape(4, 8) for f in cells})
    changes = [(c.setting, c.a, c.b) for c in diff([block], [regrouped]).settings]
    assert changes == [("channels", 8, 4)]  # 4 channels of 8 blocks: the same 32 cells


def test_decompressed_bitwidth():
    """1.0.0 records it; 2.x does not, so against a 2.x file both sides count as what the
    multipliers need."""
    lpbq = golden_encoding(block_case("lpbq", 32))
    wider = dataclasses.replace(lpbq, decompressed_bitwidth=10)
    assert [(c.setting, c.a, c.b) for c in diff([lpbq], [wider]).settings] == [
        ("decompressed_bitwidth", 8, 10)
    ]
    assert not diff([wider], convert(EncodingFile(params=[lpbq]), "1.0.0")).equal
    assert diff([wider], convert(EncodingFile(params=[lpbq]), "2.0.0")).equal


def test_lpbq_per_channel_scales_are_compared():
    lpbq = golden_encoding(block_case("lpbq", 32))
    pcs = lpbq.per_channel_scale * np.float32(2)
    half = lpbq.per_block_int_scale / np.float32(2)  # the same block scales, other factors
    other = dataclasses.replace(lpbq, per_channel_scale=pcs, per_block_int_scale=half)
    result = diff([lpbq], [other])
    assert [(d.field, d.differing, d.channels) for d in result.deltas] == [
        ("per_channel_scale", 8, 8)
    ]
    assert not result.equal and diff([lpbq], [other], rtol=1).equal


def test_aimet_0_6_1_block_entries_read_as_channels():
    case = block_case("per-block", 32)
    obj = {"version": "0.6.1", "activation_encodings": {},
           "param_encodings": {"w": case["expected"]["json_0.6.1"]}}  # fmt: skip
    result = diff([golden_encoding(case, "w")], from_dict(obj))
    assert [(c.setting, c.a, c.b) for c in result.settings] == [
        ("granularity", "per-block", "per-channel")
    ]
    assert result.deltas == ()
