"""qcalc.ops.explain and `qcalc explain`: the derivation of one cell's encoding, step by step.

Expected numbers come from AIMET's golden cases (tests/golden), from hand calculations in
the comments, or from the invariant that explain's final encoding is `encode`'s, bit for bit,
for every analyzer and granularity."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from golden_cases import CASES, as_float32, bits_equal, cli_args, link_batches
from qcalc.cli import app
from qcalc.core import grid, histogram
from qcalc.core.spec import Spec
from qcalc.core.trace import Trace
from qcalc.ops.encode import compute_encodings, gather
from qcalc.ops.explain import explain

runner = CliRunner()
SEED = "sample_tensors/seed.npy"
MODEL = "sample_tensors/model_bf16.safetensors"
SEED_CASES = {case["id"]: case for case in CASES if case["group"] == "seed"}


def run(*args: str):
    return runner.invoke(app, ["explain", *args])


def steps_of(found) -> dict:
    """rule -> values of its (last) step."""
    return {step.rule: step.values for step in found.steps}


def f32(value) -> float:
    return float(np.float32(value))


# --- the seed tensor against AIMET's numbers (golden cases seed-1 .. seed-4) -----------------


def test_seed_default_flags_is_golden_seed_1():
    """AIMET asymmetric unsigned 8-bit: seed-1."""
    expected = SEED_CASES["seed-1"]["expected"]
    found = explain([SEED], Spec(), "seed")
    values = steps_of(found)
    # the observed range is AIMET's raw range: min < 0 < max, no widening
    assert values["observed range"]["min"] == expected["raw_min"][0]
    assert values["observed range"]["max"] == expected["raw_max"][0]
    assert values["zero in range"]["changed"] is False
    assert values["minimum scale"]["widened"] is False
    # scale = (1.2376579 - (-2.1152194)) / 255 = 3.3528773 / 255 = 0.013148538
    assert values["scale"]["scale"] == expected["scale"][0]
    # -2.1152194 / 0.013148538 = -160.871 -> round -161 -> minus qmin 0 -> -161
    assert round(values["offset"]["quotient"], 3) == -160.871
    assert values["offset"]["offset"] == expected["offset"][0] == -161
    # the grid: 0.013148538 × (-161 + 0) = -2.1169145, 0.013148538 × 94 = 1.2359625
    assert values["grid range"]["min"] == expected["min"][0]
    assert values["grid range"]["max"] == expected["max"][0]
    cell = found.cell_encoding
    assert (cell["qmin"], cell["qmax"]) == (expected["qmin"], expected["qmax"]) == (0, 255)
    assert [cell[key] for key in ("scale", "offset", "min", "max")] == [
        expected[key][0] for key in ("scale", "offset", "min", "max")
    ]
    rules = [step.rule for step in found.steps]
    assert rules == [
        "integer grid", "observed range", "zero in range", "minimum scale",
        "asymmetric range", "scale", "offset", "grid range",
    ]  # fmt: skip


@pytest.mark.parametrize("case_id", ["seed-3", "seed-4"])
def test_seed_symmetric_delta_is_set_by_the_negative_side(case_id):
    """delta = max(1.2376579 / 127, 2.1152194 / 128) = max(0.0097453, 0.0165252): |min| wins,
    so the range is [-128 delta, 127 delta] = AIMET's raw range."""
    case = SEED_CASES[case_id]
    expected = case["expected"]
    found = explain([SEED], Spec(symmetric=True, signed=case["config"]["signed"]), "seed")
    delta = steps_of(found)["symmetric delta"]
    assert delta["side"] == "the negative side"
    assert delta["negative"] > delta["positive"]
    assert delta["delta"] == f32(np.float32(expected["raw_min"][0]) / np.float32(-128))
    assert steps_of(found)["symmetric range"]["min"] == expected["raw_min"][0]
    assert steps_of(found)["symmetric range"]["max"] == expected["raw_max"][0]
    for key in ("scale", "offset", "min", "max"):
        assert found.cell_encoding[key] == expected[key][0], key


def test_classic_worked_example_offset_zero():
    """The pre-2025 example (--symmetric --unsigned --symmetric-offset zero): seed-4's scale,
    offset 0, the grid [0, 255 × scale] = [0, 255 × 0.016525151] = [0, 4.2139134]."""
    expected = SEED_CASES["seed-4"]["expected"]
    spec = Spec(symmetric=True, signed=False, symmetric_offset="zero")
    found = explain([SEED], spec, "seed")
    cell = found.cell_encoding
    assert cell["scale"] == expected["scale"][0]
    assert cell["offset"] == 0
    assert cell["min"] == 0.0
    assert cell["max"] == f32(np.float32(255) * np.float32(expected["scale"][0]))
    assert round(cell["max"], 6) == 4.213913
    assert "symmetric offset" in steps_of(found)
    assert "AIMET before 2025" in found.steps[-2].text


def test_text_output_numbers_the_steps_and_ends_with_the_encoding():
    result = run(SEED, "--tensor", "seed")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "seed, f32 4×4, sample_tensors/seed.npy"
    assert lines[1] == "f32, 8-bit asymmetric unsigned grid [0, 255], min-max"
    assert lines[2].startswith("1. integer grid: ")
    assert any(line.startswith("8. grid range: ") for line in lines)
    # the golden seed-1 encoding as float32 prints shortest
    assert lines[-1] == "encoding: scale 0.013148538, offset -161, min -2.1169145, max 1.2359625"
    assert max(len(line) for line in lines) <= 80


def test_json_steps_are_data():
    result = run(SEED, "-t", "seed", "--symmetric", "--format", "json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    expected = SEED_CASES["seed-3"]["expected"]
    assert data["tensor"] == "seed" and data["source"] == SEED and data["cell"] is None
    assert data["analyzer"] == "minmax" and data["bitwidth"] == 8 and data["symmetric"] is True
    assert data["encoding"] == {
        "scale": expected["scale"][0], "offset": 0, "min": expected["min"][0],
        "max": expected["max"][0], "qmin": -128, "qmax": 127,
    }  # fmt: skip
    assert all(set(step) == {"rule", "text", "values"} for step in data["steps"])
    delta = next(step for step in data["steps"] if step["rule"] == "symmetric delta")
    assert delta["values"]["side"] == "the negative side"


# --- histogram analyzers ------------------------------------------------------------------------


def test_percentile_steps_name_the_bins_and_positions():
    # 16 values, 2048 bins; at 90%: vmin = 16 × 0.1 = 1.6, vmax = 16 × 0.9 = 14.4
    found = explain([SEED], Spec(analyzer="percentile", percentile=90), "seed")
    values = steps_of(found)
    assert values["histogram"]["bins"] == 2048
    assert values["histogram"]["counted"] == 16
    raw = np.load(SEED).astype(np.float32)
    assert values["histogram"]["min"] == f32(raw.min())
    positions = values["percentile positions"]
    assert positions["lower_target"] == f32(np.float32(16) * np.float32(1 - 0.9))
    assert positions["upper_target"] == f32(np.float32(16) * np.float32(90) / np.float32(100))
    # the cut edges hold the 2nd lowest / 15th lowest values' bins: between the sorted values
    ordered = np.sort(raw.ravel())
    assert ordered[1] <= values["percentile range"]["min"] + values["histogram"]["bin_width"]
    assert values["percentile range"]["max"] <= ordered[-2]
    assert _same_as_encode([SEED], Spec(analyzer="percentile", percentile=90), "seed", found)


@pytest.mark.parametrize("analyzer, bins", [("sqnr", 2048), ("tf-enhanced", 512)])
@pytest.mark.parametrize("symmetric", [False, True], ids=["asym", "sym"])
def test_sqnr_steps_name_the_winner_and_its_score(analyzer, bins, symmetric):
    spec = Spec(analyzer=analyzer, symmetric=symmetric)
    found = explain([SEED], spec, "seed")
    values = steps_of(found)
    assert values["histogram"]["bins"] == bins
    # asymmetric: 17 deltas × (20 offsets + the min-max one); symmetric: 101 deltas
    assert values["candidates"]["candidates"] == (101 if symmetric else 17 * 21)
    best = values["best candidate"]
    assert best["noise"] == values["noise"]["lowest"]
    assert best["min"] == f32(np.float32(best["offset"]) * np.float32(best["delta"]))
    assert _same_as_encode([SEED], spec, "seed", found)


def test_histogram_search_traced_equals_untraced():
    """The trace records the search, it does not change it (numpy and compiled paths)."""
    x = np.load(SEED).astype(np.float32).reshape(1, -1)
    binning = histogram.plan_batch(None, x.min(axis=1), x.max(axis=1), 2048, np.float32)
    h = histogram.finish(binning, histogram.count(x, binning))
    for symmetric in (False, True):
        plain = histogram.sqnr_range(h, 255, symmetric)
        traced = histogram.sqnr_range(h, 255, symmetric, trace=Trace())
        assert all(bits_equal(a, b) for a, b in zip(plain, traced))
        plain = histogram.percentile_range(h, 99.0, 255, symmetric)
        traced = histogram.percentile_range(h, 99.0, 255, symmetric, trace=Trace())
        assert all(bits_equal(a, b) for a, b in zip(plain, traced))


# --- the minimum-scale rule, by hand ------------------------------------------------------------


@pytest.mark.parametrize("symmetric", [False, True], ids=["asym", "sym"])
def test_all_zero_cell_is_widened_by_the_minimum_scale(tmp_path, symmetric):
    """All zeros: span 0 < 2^-23, so max += 255 × 2^-23 (asymmetric) or max += 127 × 2^-23,
    min -= 128 × 2^-23 (symmetric); scale = 2^-23 either way."""
    path = tmp_path / "z.npy"
    np.save(path, np.zeros((3, 3), np.float32))
    found = explain([path], Spec(symmetric=symmetric), "z")
    assert steps_of(found)["minimum scale"]["widened"] is True
    assert found.cell_encoding["scale"] == 2.0**-23
    if not symmetric:
        assert steps_of(found)["asymmetric range"]["max"] == f32(255 * np.float32(2.0**-23))
    else:
        assert steps_of(found)["symmetric delta"]["delta"] == 2.0**-23


def test_grid_functions_traced_equal_untraced():
    mn, mx = np.float32(-0.3), np.float32(2.5)
    for symmetric in (False, True):
        plain = grid.minmax_range(mn, mx, 15, symmetric, np.float32)
        traced = grid.minmax_range(mn, mx, 15, symmetric, np.float32, trace=Trace())
        assert all(bits_equal(a, b) for a, b in zip(plain, traced))
        plain = grid.scale_offset(*plain, 0, 15, symmetric)
        traced = grid.scale_offset(*traced, 0, 15, symmetric, trace=Trace())
        assert all(bits_equal(a, b) for a, b in zip(plain, traced))


# --- explain's encoding is encode's, bit for bit ----------------------------------------------


def _same_as_encode(paths, spec, tensor, found) -> bool:
    (encoding,) = compute_encodings(paths, spec, include=[tensor]).encodings
    index = _index(found)
    cell = found.cell_encoding
    return all(
        bits_equal(np.asarray(getattr(encoding, key))[index], np.float32(cell[key]))
        for key in ("scale", "offset", "min", "max")
    )


def _index(found):
    if found.cell is None:
        return ()
    index = [0] * len(found.shape)
    index[found.cell["axis"]] = found.cell["channel"]
    if "block" in found.cell:
        index[found.cell["block_axis"]] = found.cell["block"]
    return tuple(index)


GRIDS = {
    "asym": {},
    "asym-signed": {"signed": True},
    "sym": {"symmetric": True},
    "sym-unsigned": {"symmetric": True, "signed": False},
    "sym-zero": {"symmetric": True, "signed": False, "symmetric_offset": "zero"},
    "strict-4bit": {"symmetric": True, "strict_symmetric": True, "bitwidth": 4},
    "2bit-sym": {"symmetric": True, "bitwidth": 2},
    "16bit": {"bitwidth": 16},
    "input-dtype": {"compute_dtype": "input"},
}
LAYOUTS = {
    "tensor": ({}, {}),
    "channel": ({"per_channel": True}, {"channel": 7}),
    "block": ({"block_size": 64}, {"channel": 3, "block": 5}),
    "block-axis0": ({"block_size": 2, "axis": 1, "block_axis": 0}, {"channel": 100, "block": 4}),
}
ANALYZERS = {
    "minmax": {},
    "percentile": {"analyzer": "percentile", "percentile": 99.0},
    "sqnr": {"analyzer": "sqnr"},
    "tf-enhanced": {"analyzer": "tf-enhanced", "num_bins": 128},
}


@pytest.mark.parametrize("analyzer", ANALYZERS)
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("grid_name", GRIDS)
def test_explain_equals_encode(grid_name, layout, analyzer, compiled):
    settings, cell = LAYOUTS[layout]
    spec = Spec(**{**GRIDS[grid_name], **settings, **ANALYZERS[analyzer]})
    found = explain([MODEL], spec, "fc.weight", **cell)
    assert _same_as_encode([MODEL], spec, "fc.weight", found)


@pytest.mark.parametrize("bitwidth", [2, 4, 6])
@pytest.mark.parametrize("analyzer", ["minmax", "percentile", "sqnr"])
def test_lpbq_block_equals_encode(bitwidth, analyzer):
    spec = Spec(bitwidth=bitwidth, symmetric=True, block_size=64, lpbq=True, analyzer=analyzer)
    found = explain([MODEL], spec, "fc.weight", channel=-1, block=2)
    assert found.cell == {"channel": 9, "axis": 0, "block": 2, "block_axis": 1}
    assert _same_as_encode([MODEL], spec, "fc.weight", found)
    values = steps_of(found)
    # block scale = multiplier × channel scale, the multiplier in 1 .. 2^(8 - bw)
    assert 1 <= values["block multiplier"]["multiplier"] <= 2 ** (8 - bitwidth)
    assert found.cell_encoding["scale"] == f32(
        np.float32(values["block multiplier"]["multiplier"])
        * np.float32(values["channel scale"]["per_channel_scale"])
    )


def test_several_batches_merge_as_encode_does(tmp_path):
    rng = np.random.default_rng(3)
    paths = []
    for i, scale in enumerate((1.0, 4.0)):
        (tmp_path / f"b{i}").mkdir()
        np.save(tmp_path / f"b{i}" / "t.npy", (rng.standard_normal((8, 32)) * scale).astype("f4"))
        paths.append(tmp_path / f"b{i}" / "t.npy")
    for analyzer in ("minmax", "percentile", "sqnr", "tf-enhanced"):
        spec = Spec(analyzer=analyzer, per_channel=True)
        found = explain(paths, spec, "t", channel=2)
        assert _same_as_encode(paths, spec, "t", found), analyzer
    batches = [s for s in found.steps if s.rule == "observed range"]
    assert len(batches) == 2 and "Batch 2 of 2" in batches[1].text


@pytest.mark.parametrize("nonfinite", ["ignore", "keep"])
@pytest.mark.parametrize("analyzer", ["minmax", "percentile", "sqnr"])
def test_nonfinite_values_follow_the_flag(tmp_path, nonfinite, analyzer):
    x = np.linspace(-1, 3, 24, dtype=np.float32).reshape(4, 6)
    x[1, 2], x[2, 0] = np.inf, -np.inf
    if nonfinite == "ignore":
        x[3] = np.nan  # channel 3 has no finite value: the zero range
    else:
        x[3, 4] = np.nan  # (a channel without any finite value fails under keep, as in AIMET)
    np.save(tmp_path / "n.npy", x)
    spec = Spec(nonfinite=nonfinite, analyzer=analyzer, per_channel=True)
    for channel in (1, 2, 3):
        found = explain([tmp_path / "n.npy"], spec, "n", channel=channel)
        assert _same_as_encode([tmp_path / "n.npy"], spec, "n", found)


# --- golden cases: explain's cell equals AIMET's ------------------------------------------------


def _golden_params():
    for case in CASES:
        if "memory order" in case.get("note", ""):
            continue  # AIMET's merge bug: qcalc merges per channel (see test_golden)
        yield pytest.param(case, id=case["id"])


@pytest.mark.parametrize("case", list(_golden_params()))
def test_golden_case_cell(case, tmp_path):
    """The last channel (and middle block) of every golden case, explained, is AIMET's."""
    paths = link_batches(case, tmp_path)
    (name,) = [n for group in gather(paths).groups.values() for n in group]
    config, expected = case["config"], case["expected"]
    args = cli_args(case)
    if "--nonfinite" not in args and not all(
        np.isfinite(as_float32(expected[k])).all() for k in ("scale", "min", "max")
    ):
        args = [*args[:-2], "--nonfinite", "keep", *args[-2:]]
    shape = config["encoding_shape"]
    flat = 0
    if config["axis"] is not None:
        channel = shape[config["axis"]] - 1
        args += ["--channel", str(channel)]
        index = [0] * len(shape)
        index[config["axis"]] = channel
        if config["block_size"] is not None:
            block_axis = config["block_axis"] % len(shape)
            index[block_axis] = shape[block_axis] // 2
            args += ["--block", str(index[block_axis])]
        flat = int(np.ravel_multi_index(index, shape))
    result = run(*paths, "-t", name, *args)
    assert result.exit_code == 0, result.output
    cell = json.loads(result.stdout)["encoding"]
    for key in ("scale", "min", "max"):
        assert bits_equal(as_float32([cell[key]]), as_float32(expected[key])[flat]), key
    assert np.array_equal(
        as_float32([cell["offset"]]), as_float32(expected["offset"])[flat : flat + 1],
        equal_nan=True,
    )  # fmt: skip


# --- errors: one line, exit 2 --------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (
            [SEED, "-t", "nope"],
            "tensor 'nope' not found; the inputs hold 1 tensor: seed",
        ),
        (
            [MODEL, "-t", "fc.weight", "--per-channel"],
            "tensor 'fc.weight': 10 channels along axis 0, each with its own encoding: name "
            "the channel to explain with --channel K (K in 0..9)",
        ),
        (
            [MODEL, "-t", "fc.weight", "--per-channel", "--channel", "10"],
            "tensor 'fc.weight': channel 10 is out of range: 10 channels along axis 0 (0..9)",
        ),
        (
            [SEED, "-t", "seed", "--channel", "1"],
            "tensor 'seed': its grid is per tensor (one encoding), so --channel does not apply "
            "(--per-channel or --block-size give channels and blocks)",
        ),
        (
            [MODEL, "-t", "fc.weight", "--per-channel", "--channel", "1", "--block", "0"],
            "tensor 'fc.weight': --block needs a per-block grid (--block-size)",
        ),
        (
            [MODEL, "-t", "fc.weight", "--block-size", "64", "--channel", "1"],
            "tensor 'fc.weight': 8 blocks of 64 along axis 1 in each channel: name one with "
            "--block J (0..7)",
        ),
        (
            [MODEL, "-t", "fc.weight", "--block-size", "64", "--channel", "1", "--block", "-9"],
            "tensor 'fc.weight': block -9 is out of range: 8 blocks of 64 along axis 1 (0..7)",
        ),
    ],
    ids=[
        "unknown-tensor", "no-channel", "channel-range", "per-tensor-channel", "block-no-blocks",
        "no-block", "block-range",
    ],
)  # fmt: skip
def test_errors_are_one_line_exit_2(args, message):
    result = run(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"qcalc: error: {message}\n"


def test_nonfinite_error_is_encodes(tmp_path):
    np.save(tmp_path / "n.npy", np.array([[1.0, np.nan]], np.float32))
    result = run(str(tmp_path / "n.npy"), "-t", "n")
    assert result.exit_code == 2
    assert "holds 1 NaN, 0 +inf and 0 -inf values" in result.stderr


def test_help_has_examples():
    result = runner.invoke(app, ["explain", "--help"], env={"COLUMNS": "100"})
    assert result.exit_code == 0
    assert "qcalc explain sample_tensors/seed.npy --tensor seed" in result.stdout
    assert "--channel" in result.stdout and "--block" in result.stdout
