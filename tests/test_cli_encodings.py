"""Encodings files through the CLI: `encode -o / --activations / --encoding-version`, `show`,
`convert` and `diff`.

AIMET's golden entries come out of `encode -o` field for field and in AIMET's key order; files
survive every version round trip that can hold them byte for byte; `show` reads back what
`encode` computed; `diff` is the CI check; writes are atomic and never clobber an input.
Everything is written under tmp_path.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

import qcalc
from golden_cases import (
    CASES,
    LEGACY,
    cli_args,
    expected_entry,
    has_nonfinite,
    is_minmax_grid_case,
    link_batches,
)
from helpers import assert_one_error_line, entries
from qcalc.cli import app
from qcalc.core.choices import VERSIONS

REPO = Path(__file__).resolve().parent.parent
LEGACY_KEYS = [
    "producer", "version", "activation_encodings", "param_encodings", "excluded_layers",
    "quantizer_args",
]  # fmt: skip
V2_KEYS = ["producer", "version", "encodings"]
DIFF_KEYS = ["equal", "a", "b", "rtol", "atol", "only_in_a", "only_in_b", "settings", "deltas"]

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_columns(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def ok(*args):
    result = invoke(*args)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


def _reject_constant(token: str):
    raise AssertionError(f"non-standard JSON constant {token}")


def strict_json(text: str):
    """Parse strict JSON (no NaN / Infinity tokens)."""
    return json.loads(text, parse_constant=_reject_constant)


def load(path: Path) -> dict:
    return strict_json(path.read_text(encoding="utf-8"))


def wrote_note(out, params: int, activations: int, version: str) -> str:
    return (
        f"qcalc: note: wrote {params} parameter and {activations} activation encodings "
        f"to {out} (version {version})"
    )


def assert_layout(doc: dict, version: str) -> None:
    assert list(doc) == (LEGACY_KEYS if version in LEGACY else V2_KEYS)
    assert doc["producer"] == {"package": "qcalc", "version": qcalc.__version__}
    assert list(doc["producer"]) == ["package", "version"]
    assert doc["version"] == version


def assert_file_text(path: Path) -> None:
    """4-space indented strict JSON ending in one newline, floats as their shortest repr."""
    text = path.read_text(encoding="utf-8")
    assert text == json.dumps(strict_json(text), indent=4) + "\n"


def listing(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def no_temp_files(directory: Path) -> None:
    leftovers = [n for n in os.listdir(directory) if n.endswith(".tmp") or n.startswith(".")]
    assert leftovers == []


# --- golden: AIMET's entries through `encode -o` -----------------------------------------

GRID_CASES = [c for c in CASES if is_minmax_grid_case(c)]
NONFINITE_INPUT = {c["id"] for c in GRID_CASES if has_nonfinite(c)}


def _has_nonfinite_number(value) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_nonfinite_number(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nonfinite_number(v) for v in value)
    return False


def golden_args(case: dict, tmp_path: Path) -> list[str]:
    args = cli_args(case)
    assert args[-2:] == ["--format", "json"]
    return [*link_batches(case, tmp_path), *args[:-2]]


def test_the_golden_data_has_what_these_tests_rely_on():
    kinds = {
        (c["config"]["granularity"], len(c["config"]["encoding_shape"]) == 1)
        for c in GRID_CASES
        if c["config"]["granularity"] == "per-tensor"
    }
    assert kinds == {("per-tensor", True), ("per-tensor", False)}
    assert any(c["config"]["strict"] for c in GRID_CASES)
    assert any(c["config"]["granularity"] == "per-channel" for c in GRID_CASES)
    assert len(NONFINITE_INPUT) >= 5
    for case in GRID_CASES:
        assert all(f"json_{v}" in case["expected"] for v in VERSIONS)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("case", [pytest.param(c, id=c["id"]) for c in GRID_CASES])
def test_golden_entry_through_encode_o(case, version, tmp_path):
    out = tmp_path / "out.json"
    args = golden_args(case, tmp_path)
    result = invoke("encode", *args, "-o", out, "--encoding-version", version)
    expected = expected_entry(case, version)
    nonfinite = _has_nonfinite_number(expected) or _has_nonfinite_number(
        [case["expected"][k] for k in ("scale", "offset")]
    )
    if "error" in expected or nonfinite:
        if nonfinite:
            phrases = ["never hold NaN or infinity"]
        else:
            assert case["config"]["strict"] and version in LEGACY, expected
            phrases = ["strict-symmetric", "'bw'", "2.0.0"]
        assert_one_error_line(result, None, f"qcalc: error: {out}: tensor '", *phrases)
        assert not out.exists()
        no_temp_files(tmp_path)
        return
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [wrote_note(out, 1, 0, version)]
    assert_file_text(out)
    doc = load(out)
    assert_layout(doc, version)
    ((section, entry),) = entries(doc).values()
    # dict equality AND AIMET's key order
    assert json.dumps(entry) == json.dumps(expected)
    if version in LEGACY:
        assert section == "param"
        assert doc["activation_encodings"] == ({} if version == "0.6.1" else [])
        assert doc["excluded_layers"] == []
        config = case["config"]
        assert doc["quantizer_args"] == {
            "quant_scheme": "min_max",
            "param_bitwidth": config["bitwidth"],
            "activation_bitwidth": config["bitwidth"],
            "dtype": "int",
            "is_symmetric": config["symmetric"],
            "per_channel_quantization": config["granularity"] == "per-channel",
        }


# --- a model and calibration dumps -------------------------------------------------------

RNG_SEED = 7


@pytest.fixture
def model(tmp_path) -> Path:
    """Parameters: a per-channel-able weight first (in file order), a bias, another weight.
    Ranges are skewed ([-1, 3]) so no asymmetric offset lands on the grid centre."""
    rng = np.random.default_rng(RNG_SEED)
    path = tmp_path / "model.safetensors"
    save_file(
        {
            "a.weight": rng.uniform(-1, 3, (4, 6)).astype(np.float32),
            "b.bias": rng.uniform(-1, 3, 6).astype(np.float32),
            "c.weight": rng.uniform(-1, 3, (3, 5)).astype(np.float32),
        },
        str(path),
    )
    return path


@pytest.fixture
def acts(tmp_path) -> Path:
    """Calibration dumps: `relu` in two batches (a subdirectory), `logits` of rank 2."""
    rng = np.random.default_rng(RNG_SEED + 1)
    root = tmp_path / "acts"
    (root / "relu").mkdir(parents=True)
    np.save(root / "relu" / "000.npy", rng.uniform(0, 2, (2, 8)).astype(np.float32))
    np.save(root / "relu" / "001.npy", rng.uniform(0, 3, (2, 8)).astype(np.float32))
    np.save(root / "logits.npy", rng.uniform(-2, 5, (3, 10)).astype(np.float32))
    return root


PARAMS = ["a.weight", "b.bias", "c.weight"]
ACTS = ["logits", "relu"]


def by_name(records: list[dict]) -> dict[str, dict]:
    named = {r["name"]: r for r in records}
    assert len(named) == len(records)
    return named


# --- encode -o / --activations / --encoding-version ---------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_params_and_activations_go_to_their_sections(model, acts, tmp_path, version):
    out = tmp_path / "e.json"
    flags = ["--per-channel", "--symmetric", "-b", "4"]
    result = ok("encode", model, "--activations", acts, *flags, "-o", out,
                "--encoding-version", version)  # fmt: skip
    assert result.stdout == ""
    assert result.stderr.splitlines() == [wrote_note(out, 3, 2, version)]
    doc = load(out)
    assert_layout(doc, version)
    found = entries(doc)
    assert sorted(found) == sorted(PARAMS + ACTS)
    if version in LEGACY:
        assert {n for n, (s, _) in found.items() if s == "param"} == set(PARAMS)
        assert {n for n, (s, _) in found.items() if s == "activation"} == set(ACTS)
        assert doc["quantizer_args"]["param_bitwidth"] == 4
        assert doc["quantizer_args"]["activation_bitwidth"] == 4
        assert doc["quantizer_args"]["is_symmetric"] is True
        assert doc["quantizer_args"]["per_channel_quantization"] is True
    else:
        # one list: activations, then parameters
        assert [e["name"] for e in doc["encodings"]][:2] == ACTS
    for name in ACTS:  # per tensor whatever --per-channel says; -b and --symmetric apply
        entry = found[name][1]
        if version == "0.6.1":
            (cell,) = entry
            assert (cell["bitwidth"], cell["is_symmetric"], cell["offset"]) == (4, "True", -8)
        elif version == "1.0.0":
            assert (entry["enc_type"], entry["bw"], entry["is_sym"]) == ("PER_TENSOR", 4, True)
            assert len(entry["scale"]) == 1
        else:
            assert entry["output_dtype"] == "int4"
            assert isinstance(entry["y_scale"], float) and "axis" not in entry
    weight = found["a.weight"][1]
    if version == "0.6.1":
        assert len(weight) == 4
    elif version == "1.0.0":
        assert weight["enc_type"] == "PER_CHANNEL" and len(weight["scale"]) == 4
    else:
        assert weight["axis"] == 0 and len(weight["y_scale"]) == 4


def test_activations_are_per_tensor_and_share_the_other_flags(model, acts, tmp_path):
    flags = ["--per-channel", "--symmetric", "-b", "4"]
    out = tmp_path / "e.json"
    both = ok("encode", model, "--activations", acts, *flags, "-o", out, "--format", "json")
    records = by_name(strict_json(both.stdout))
    assert list(records) == PARAMS + ACTS  # parameters, then activations
    # the activations alone, encoded as parameters with the same flags minus --per-channel
    alone = by_name(strict_json(ok("encode", acts, "--symmetric", "-b", "4", "-f", "json").stdout))
    for name in ACTS:
        assert records[name]["granularity"] == "per-tensor"
        assert records[name]["encoding_shape"] == []
        assert {k: v for k, v in records[name].items() if k != "source"} == {
            k: v for k, v in alone[name].items() if k != "source"
        }
    assert records["a.weight"]["granularity"] == "per-channel"
    shown = by_name(strict_json(ok("show", out, "--format", "json").stdout))
    for name in ACTS:
        assert shown[name]["scale"] == records[name]["scale"]


def test_default_version_is_1_0_0(model, acts, tmp_path):
    default, explicit = tmp_path / "d.json", tmp_path / "x.json"
    result = ok("encode", model, "--activations", acts, "-o", default)
    assert result.stderr.splitlines() == [wrote_note(default, 3, 2, "1.0.0")]
    ok("encode", model, "--activations", acts, "-o", explicit, "--encoding-version", "1.0.0")
    assert load(default)["version"] == "1.0.0"
    assert default.read_bytes() == explicit.read_bytes()


@pytest.mark.parametrize("fmt", ["table", "json", "jsonl", "csv"])
def test_format_with_o_prints_the_report_too(model, acts, tmp_path, fmt):
    out = tmp_path / "e.json"
    result = ok("encode", model, "--activations", acts, "-o", out, "--format", fmt)
    assert out.exists()
    assert result.stdout == ok("encode", model, "--activations", acts, "--format", fmt).stdout
    assert "qcalc:" not in result.stdout
    assert result.stderr.splitlines() == [wrote_note(out, 3, 2, "1.0.0")]


def test_repeated_activations_flags(model, acts, tmp_path):
    gate = tmp_path / "gate.npy"
    np.save(gate, np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4))
    out = tmp_path / "e.json"
    result = ok("encode", model, "--activations", acts, "--activations", gate, "-o", out)
    assert result.stderr.splitlines() == [wrote_note(out, 3, 3, "1.0.0")]
    assert [e["name"] for e in load(out)["activation_encodings"]] == [*ACTS, "gate"]


def test_a_file_given_twice_is_two_batches_of_one_tensor(model, acts, tmp_path):
    once, twice = tmp_path / "once.json", tmp_path / "twice.json"
    logits = acts / "logits.npy"
    ok("encode", model, "--activations", logits, "-o", once)
    result = ok("encode", model, "--activations", logits, "--activations", logits, "-o", twice)
    assert result.stderr.splitlines() == [wrote_note(twice, 3, 1, "1.0.0")]
    assert once.read_bytes() == twice.read_bytes()


def test_include_exclude_apply_to_activations(model, acts, tmp_path):
    out = tmp_path / "e.json"
    result = ok("encode", model, "--activations", acts, "--exclude", "relu",
                "--exclude", "*.bias", "-o", out)  # fmt: skip
    assert result.stderr.splitlines() == [wrote_note(out, 2, 1, "1.0.0")]
    found = entries(load(out))
    assert sorted(found) == ["a.weight", "c.weight", "logits"]


def test_a_name_in_both_sections_is_refused(model, tmp_path):
    out = tmp_path / "e.json"
    result = invoke("encode", model, "--activations", model, "-o", out)
    assert_one_error_line(result, None, "a.weight", "more than once")
    assert not out.exists()


@pytest.mark.parametrize("bad", ["1.1.0", "2", "latest"])
def test_unknown_encoding_version_is_a_usage_error(model, tmp_path, bad):
    out = tmp_path / "e.json"
    result = invoke("encode", model, "-o", out, "--encoding-version", bad)
    assert result.exit_code == 2
    assert result.stdout == "" and "Traceback" not in result.output
    assert not out.exists()


# --- round trips through convert, and show ------------------------------------------------

# Each config says which documented losses its files are subject to:
#   strict        strict grids: no 'bw' in 0.6.1 / 1.0.0, so `encode` cannot start there; a
#                 2.x file does not record strictness either, so converting one to 0.6.1 /
#                 1.0.0 succeeds (test_strict_grids_and_legacy_versions)
#   signedness    0.6.1 / 1.0.0 do not record it: signed asymmetric and centred unsigned
#                 symmetric grids come back from them in the other form
#   axis          0.6.1 / 1.0.0 do not record it: a parameter comes back on axis 0
#   symmetry      2.x does not record it: a symmetric grid off the centre comes back asymmetric
#   roles         2.x does not record a per-tensor entry's section: with no per-channel
#                 parameter first, the parameters come back as activations
CONFIGS = {
    "asym-u-pt": ([], {"roles"}),
    "asym-u-pc": (["--per-channel"], set()),
    "sym-s-pc": (["--symmetric", "--per-channel"], set()),
    "sym-s-pc-b4": (["--symmetric", "--per-channel", "-b", "4"], set()),
    "sym-u-pc": (["--symmetric", "--unsigned", "--per-channel"], {"signedness"}),
    "asym-s-pc-b4": (["--asymmetric", "--signed", "--per-channel", "-b", "4"], {"signedness"}),
    "sym-s-pc-b16": (["--symmetric", "--per-channel", "-b", "16"], set()),
    "sym-s-pc-axis1": (["--symmetric", "--per-channel", "--axis", "1"], {"axis"}),
    "sym-u-zero-pc": (
        ["--symmetric", "--unsigned", "--symmetric-offset", "zero", "--per-channel"],
        {"symmetry"},
    ),
    "strict-pc": (["--symmetric", "--strict-symmetric", "--per-channel"], {"strict"}),
}


def _loss(config: str, origin: str, via: str) -> str | None:
    """The documented loss that keeps origin -> via -> origin from being byte-identical."""
    losses = CONFIGS[config][1]
    if origin in LEGACY and via not in LEGACY:
        for loss in ("symmetry", "roles"):
            if loss in losses:
                return loss
    if origin not in LEGACY and via in LEGACY:
        for loss in ("signedness", "axis"):
            if loss in losses:
                return loss
    return None


def encode_file(model, acts, tmp_path, config: str, version: str, name: str = "a.json") -> Path:
    out = tmp_path / name
    ok("encode", model, "--activations", acts, *CONFIGS[config][0], "-o", out,
       "--encoding-version", version)  # fmt: skip
    return out


ROUND_TRIPS = [
    pytest.param(config, origin, via, id=f"{config}-{origin}-via-{via}")
    for config in CONFIGS
    for origin in VERSIONS
    for via in VERSIONS
    if not ("strict" in CONFIGS[config][1] and origin in LEGACY)
]


@pytest.mark.parametrize("config, origin, via", ROUND_TRIPS)
def test_round_trip_through_convert(model, acts, tmp_path, config, origin, via):
    original = encode_file(model, acts, tmp_path, config, origin)
    before = original.read_bytes()
    middle, back = tmp_path / "mid.json", tmp_path / "back.json"
    result = invoke("convert", original, "--to", via, "-o", middle)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"qcalc: note: wrote {len(PARAMS) + len(ACTS)} encodings to {middle} (version {via})"
    ]
    assert load(middle)["version"] == via
    assert_layout(load(middle), via)
    ok("convert", middle, "--to", origin, "-o", back)
    assert original.read_bytes() == before
    # conversion keeps every float grid: diff finds the files equal
    assert ok("diff", original, middle).stdout == (
        f"equal within rtol 0, atol 0: {original} and {middle}\n"
    )
    loss = _loss(config, origin, via)
    if loss is None:
        assert back.read_bytes() == before
    else:
        assert back.read_bytes() != before, f"expected the documented {loss} loss"
        assert invoke("diff", middle, back).exit_code == 0


def test_round_trip_losses_are_the_documented_ones(model, acts, tmp_path):
    """What the non-identical round trips above lose, spelled out once."""
    # roles: a 1.0.0 file of per-tensor parameters comes back from 2.0.0 as activations
    pt = encode_file(model, acts, tmp_path, "asym-u-pt", "1.0.0", "pt.json")
    ok("convert", pt, "--to", "2.0.0", "-o", tmp_path / "pt2.json")
    ok("convert", tmp_path / "pt2.json", "--to", "1.0.0", "-o", tmp_path / "pt1.json")
    back = load(tmp_path / "pt1.json")
    assert back["param_encodings"] == []
    assert [e["name"] for e in back["activation_encodings"]] == ACTS + PARAMS
    # axis: a 2.0.0 parameter on axis 1 comes back from 1.0.0 on axis 0
    ax = encode_file(model, acts, tmp_path, "sym-s-pc-axis1", "2.0.0", "ax.json")
    assert entries(load(ax))["a.weight"][1]["axis"] == 1
    ok("convert", ax, "--to", "1.0.0", "-o", tmp_path / "ax1.json")
    ok("convert", tmp_path / "ax1.json", "--to", "2.0.0", "-o", tmp_path / "ax2.json")
    assert entries(load(tmp_path / "ax2.json"))["a.weight"][1]["axis"] == 0
    # signedness: 2.0.0 int4 asymmetric comes back from 1.0.0 as uint4
    sg = encode_file(model, acts, tmp_path, "asym-s-pc-b4", "2.0.0", "sg.json")
    ok("convert", sg, "--to", "1.0.0", "-o", tmp_path / "sg1.json")
    ok("convert", tmp_path / "sg1.json", "--to", "2.0.0", "-o", tmp_path / "sg2.json")
    assert entries(load(sg))["a.weight"][1]["output_dtype"] == "int4"
    assert entries(load(tmp_path / "sg2.json"))["a.weight"][1]["output_dtype"] == "uint4"


@pytest.mark.parametrize("version", LEGACY)
def test_strict_grids_and_legacy_versions(model, acts, tmp_path, version):
    """encode refuses a strict grid in 0.6.1 / 1.0.0 (exit 2, no file). A 2.x file cannot say
    a grid is strict (int8 either way), so it reads as the full signed grid, and that grid is
    what `convert` writes to 0.6.1 / 1.0.0: an encoding with one more level at the bottom."""
    strict = ["--symmetric", "--strict-symmetric", "--per-channel"]
    refused = tmp_path / "refused.json"
    result = invoke("encode", model, "--activations", acts, *strict, "-o", refused,
                    "--encoding-version", version)  # fmt: skip
    assert_one_error_line(result, None, "tensor '", "strict-symmetric", "'bw'", "2.0.0")
    assert not refused.exists()
    v2 = encode_file(model, acts, tmp_path, "strict-pc", "2.0.0", "strict.json")
    legacy = tmp_path / "legacy.json"
    ok("convert", v2, "--to", version, "-o", legacy)
    full = encode_file(model, acts, tmp_path, "sym-s-pc", version, "full.json")
    assert legacy.read_bytes() != full.read_bytes()  # the scales are the strict grid's
    shown = by_name(strict_json(ok("show", legacy, "-f", "json").stdout))
    assert (shown["a.weight"]["qmin"], shown["a.weight"]["qmax"]) == (-128, 127)  # full grid
    assert invoke("diff", v2, legacy).exit_code == 0  # 2.x: strictness is not compared


def test_one_channel_grids_read_back_per_tensor(tmp_path):
    """A per-channel weight with one channel is PER_CHANNEL in 1.0.0 (as AIMET writes shape
    (1,)), but 0.6.1 and 2.x write any one-cell grid like a per-tensor one, so it comes back
    PER_TENSOR; diff counts one-cell grids as per-tensor either way."""
    w = tmp_path / "w.npy"
    np.save(w, np.array([[-1.0, 2.0, 3.0]], dtype=np.float32))
    a = tmp_path / "a.json"
    ok("encode", w, "--per-channel", "-o", a)
    assert entries(load(a))["w"][1]["enc_type"] == "PER_CHANNEL"
    for via in ("0.6.1", "2.0.0"):
        ok("convert", a, "--to", via, "-o", tmp_path / "mid.json")
        ok("convert", tmp_path / "mid.json", "--to", "1.0.0", "-o", tmp_path / "back.json")
        assert entries(load(tmp_path / "back.json"))["w"][1]["enc_type"] == "PER_TENSOR"
        assert ok("diff", a, tmp_path / "back.json").exit_code == 0


def unsigned_offsets(record: dict) -> list[int]:
    """Offsets in the unsigned convention of 0.6.1 / 1.0.0: offset + qmin on standard grids
    (offset + qmax - (2^b - 1), so a strict grid and the full signed grid a 2.x file reads it
    as agree)."""
    levels = 2 ** (record["qmax"] - record["qmin"]).bit_length() - 1
    return [o + record["qmax"] - levels for o in record["offset"]]


def f32_bits(values) -> list[int]:
    return np.asarray(values, dtype=np.float32).view(np.uint32).tolist()


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("config", list(CONFIGS))
def test_show_gives_what_encode_computed(model, acts, tmp_path, config, version):
    flags = CONFIGS[config][0]
    if "strict" in CONFIGS[config][1] and version in LEGACY:
        pytest.skip("strict grids cannot be written in 0.6.1 / 1.0.0 (tested above)")
    path = encode_file(model, acts, tmp_path, config, version)
    computed = by_name(strict_json(
        ok("encode", model, "--activations", acts, *flags, "--format", "json").stdout
    ))  # fmt: skip
    shown = by_name(strict_json(ok("show", path, "--format", "json").stdout))
    assert set(shown) == set(computed)
    for name, rec in computed.items():
        got = shown[name]
        assert f32_bits(got["scale"]) == f32_bits(rec["scale"]), name
        assert unsigned_offsets(got) == unsigned_offsets(rec), name
        assert got["bitwidth"] == rec["bitwidth"]
        assert got["granularity"] == rec["granularity"]
        assert got["source"] == str(path)
        if "strict" not in CONFIGS[config][1]:  # the same float grid, so the same range
            assert f32_bits(got["min"]) == f32_bits(rec["min"]), name
            assert f32_bits(got["max"]) == f32_bits(rec["max"]), name
            if rec["signed"] == got["signed"]:
                assert got["offset"] == rec["offset"]


@pytest.mark.parametrize("version", VERSIONS)
def test_show_every_format(model, acts, tmp_path, version):
    path = encode_file(model, acts, tmp_path, "sym-s-pc", version)
    names = set(PARAMS + ACTS)
    table = ok("show", path)
    assert table.stdout == ok("show", path, "--format", "table").stdout
    for name in names:
        assert name in table.stdout
    assert "4 ch" in table.stdout
    as_json = strict_json(ok("show", path, "--format", "json").stdout)
    lines = [strict_json(line) for line in ok("show", path, "-f", "jsonl").stdout.splitlines()]
    assert as_json == lines
    assert {r["name"] for r in lines} == names
    rows = list(csv.DictReader(io.StringIO(ok("show", path, "--format", "csv").stdout)))
    assert sum(r["name"] == "a.weight" for r in rows) == 4
    assert {r["name"] for r in rows} == names
    assert table.stderr == ""


# --- convert ------------------------------------------------------------------------------


@pytest.fixture
def e1(model, acts, tmp_path) -> Path:
    return encode_file(model, acts, tmp_path, "sym-s-pc", "1.0.0", "e1.json")


def _same_path(path: Path, monkeypatch) -> Path:
    return path


def _dot_path(path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(path.parent)
    return Path(".") / "sub" / ".." / path.name


def _symlink(path: Path, monkeypatch) -> Path:
    link = path.parent / "link.json"
    link.symlink_to(path)
    return link


def _hardlink(path: Path, monkeypatch) -> Path:
    link = path.parent / "hard.json"
    os.link(path, link)
    return link


@pytest.mark.parametrize("spell", [_same_path, _dot_path, _symlink, _hardlink],
                         ids=lambda f: f.__name__.strip("_"))  # fmt: skip
def test_convert_refuses_to_overwrite_its_input(e1, monkeypatch, spell):
    (e1.parent / "sub").mkdir()
    before = e1.read_bytes()
    out = spell(e1, monkeypatch)
    result = invoke("convert", e1, "--to", "2.0.0", "-o", out)
    assert_one_error_line(result, None, "is one of the inputs", "refusing to overwrite")
    assert e1.read_bytes() == before
    assert not [n for n in os.listdir(e1.parent) if n.endswith(".tmp")]


def test_convert_unreadable_input(tmp_path):
    out = tmp_path / "out.json"
    missing = tmp_path / "missing.json"
    assert_one_error_line(invoke("convert", missing, "--to", "2.0.0", "-o", out), None,
                          f"qcalc: error: {missing}: cannot read")  # fmt: skip
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": "1.0.0", ')
    assert_one_error_line(invoke("convert", bad, "--to", "2.0.0", "-o", out), None,
                          f"qcalc: error: {bad}: not valid JSON")  # fmt: skip
    directory = tmp_path / "dir.json"
    directory.mkdir()
    assert_one_error_line(invoke("convert", directory, "--to", "2.0.0", "-o", out), None,
                          f"qcalc: error: {directory}: cannot read")  # fmt: skip
    assert not out.exists()


def test_convert_encoding_version_forces_the_reader(e1, tmp_path):
    doc = load(e1)
    del doc["version"]
    unversioned = tmp_path / "unversioned.json"
    unversioned.write_text(json.dumps(doc, indent=4) + "\n")
    out = tmp_path / "out.json"
    result = invoke("convert", unversioned, "--to", "1.0.0", "-o", out)
    assert_one_error_line(result, f"qcalc: error: {unversioned}: field 'version' is missing")
    assert not out.exists()
    ok("convert", unversioned, "--encoding-version", "1.0.0", "--to", "1.0.0", "-o", out)
    assert out.read_bytes() == e1.read_bytes()
    # a file that says the wrong version is read as the version forced
    doc["version"] = "0.6.1"
    lying = tmp_path / "lying.json"
    lying.write_text(json.dumps(doc))
    assert invoke("convert", lying, "--to", "2.0.0", "-o", tmp_path / "l.json").exit_code == 2
    ok("convert", lying, "--encoding-version", "1.0.0", "--to", "2.0.0", "-o", tmp_path / "l.json")
    assert ok("diff", e1, tmp_path / "l.json").exit_code == 0
    # forcing the wrong reader is a schema error naming the file and field
    result = invoke("convert", e1, "--encoding-version", "0.6.1", "--to", "2.0.0", "-o", out)
    assert_one_error_line(result, None, f"qcalc: error: {e1}: ", "'activation_encodings'")


def test_convert_into_a_missing_directory(e1, tmp_path):
    out = tmp_path / "nowhere" / "out.json"
    assert_one_error_line(invoke("convert", e1, "--to", "2.0.0", "-o", out), None,
                          f"qcalc: error: {out}: cannot write")  # fmt: skip


def test_convert_failure_leaves_an_existing_output_alone(e1, tmp_path):
    """A per-channel activation read from 1.0.0 has no axis, which 2.x needs: convert fails
    after reading, before writing."""
    doc = load(e1)
    weight = next(e for e in doc["param_encodings"] if e["name"] == "a.weight")
    doc["param_encodings"].remove(weight)
    doc["activation_encodings"].append(weight)
    source = tmp_path / "pc-activation.json"
    source.write_text(json.dumps(doc, indent=4))
    out = tmp_path / "out.json"
    out.write_text("precious\n")
    before = listing(tmp_path)
    for version in ("2.0.0", "2.1.0"):
        result = invoke("convert", source, "--to", version, "-o", out)
        assert_one_error_line(result, None, "tensor 'a.weight'", "field 'axis'")
        assert out.read_text() == "precious\n"
        assert listing(tmp_path) == before
    ok("convert", source, "--to", "0.6.1", "-o", out)  # legacy versions need no axis
    assert load(out)["version"] == "0.6.1"


# --- diff ---------------------------------------------------------------------------------


def equal_line(a, b, rtol="0", atol="0") -> str:
    return f"equal within rtol {rtol}, atol {atol}: {a} and {b}\n"


@pytest.fixture
def files(model, acts, tmp_path) -> dict[str, Path]:
    """The same encodings in every version."""
    return {v: encode_file(model, acts, tmp_path, "sym-s-pc", v, f"e-{v}.json") for v in VERSIONS}


def test_diff_equal_files_same_and_cross_version(files):
    for va, a in files.items():
        for vb, b in files.items():
            result = invoke("diff", a, b)
            assert result.exit_code == 0, (va, vb, result.stdout)
            assert result.stdout == equal_line(a, b)
            assert result.stderr == ""


def _reverse(doc: dict) -> dict:
    doc = copy.deepcopy(doc)
    if doc["version"] == "0.6.1":
        for key in ("activation_encodings", "param_encodings"):
            doc[key] = dict(reversed(list(doc[key].items())))
    elif doc["version"] == "1.0.0":
        for key in ("activation_encodings", "param_encodings"):
            doc[key] = doc[key][::-1]
    else:
        doc["encodings"] = doc["encodings"][::-1]
    return doc


@pytest.mark.parametrize("version", VERSIONS)
def test_diff_ignores_order(files, tmp_path, version):
    reordered = tmp_path / "reordered.json"
    doc = load(files[version])
    reordered.write_text(json.dumps(_reverse(doc), indent=4))
    assert list(entries(load(reordered))) != list(entries(doc))
    for a, b in ((files[version], reordered), (reordered, files["1.0.0"])):
        result = invoke("diff", a, b)
        assert result.exit_code == 0, result.stdout
        assert result.stdout == equal_line(a, b)


def _edit(path: Path, out: Path, change) -> Path:
    doc = load(path)
    change(doc)
    out.write_text(json.dumps(doc, indent=4) + "\n")
    return out


def _scale_list(doc: dict, name: str) -> tuple[list, str]:
    """The mutable per-channel scale container of `name` and its key (0.6.1: list of cells)."""
    version = doc["version"]
    if version == "1.0.0":
        return next(e for e in doc["param_encodings"] if e["name"] == name)["scale"], ""
    if version in ("2.0.0", "2.1.0"):
        return next(e for e in doc["encodings"] if e["name"] == name)["y_scale"], ""
    return doc["param_encodings"][name], "scale"


def perturb(doc: dict, name: str = "a.weight", channel: int = 3, factor=1 + 1e-6) -> None:
    values, key = _scale_list(doc, name)
    if key:
        values[channel][key] *= factor
    else:
        values[channel] *= factor


@pytest.mark.parametrize("version", VERSIONS)
def test_diff_perturbed_scale(files, tmp_path, version):
    a = files[version]
    b = _edit(a, tmp_path / "perturbed.json", perturb)
    result = invoke("diff", a, b)
    assert result.exit_code == 1, result.stdout
    assert result.stderr == ""
    (row,) = [line for line in result.stdout.splitlines() if "a.weight" in line]
    assert "scale ch 3" in row
    assert "1/4 ch" in row
    verdict = result.stdout.splitlines()[-1]
    assert verdict.startswith("1 tensor") and verdict.endswith(" beyond rtol 0, atol 0")
    within = invoke("diff", a, b, "--rtol", "1e-5")
    assert within.exit_code == 0, within.stdout
    assert within.stdout == equal_line(a, b, rtol="1e-05")
    record = strict_json(invoke("diff", a, b, "--format", "json").stdout)
    (delta,) = record["deltas"]
    assert (delta["tensor"], delta["field"], delta["worst_channel"]) == ("a.weight", "scale", 3)
    assert (delta["beyond_tolerance"], delta["differing"], delta["channels"]) == (1, 1, 4)
    assert delta["b"] == float(np.float32(delta["a"] * (1 + 1e-6)))  # the file's value, read
    loose = strict_json(invoke("diff", a, b, "--rtol", "1e-5", "--format", "json").stdout)
    assert loose["equal"] is True and loose["deltas"][0]["beyond_tolerance"] == 0


def test_diff_table_names_long_tensors_in_full(tmp_path):
    names = [f"model.layers.{i}.self_attn.q_proj.weight" for i in (10, 11)]
    rng = np.random.default_rng(0)
    model = tmp_path / "llm.safetensors"
    save_file({n: rng.standard_normal((4, 6)).astype(np.float32) for n in names}, str(model))
    a = tmp_path / "a.json"
    ok("encode", model, "--per-channel", "-o", a)
    b = _edit(a, tmp_path / "b.json", lambda doc: [perturb(doc, n, 2, 1.001) for n in names])
    result = invoke("diff", a, b)
    assert result.exit_code == 1
    for name in names:
        assert name in result.stdout


def test_diff_atol(files, tmp_path):
    a = files["1.0.0"]
    b = _edit(a, tmp_path / "perturbed.json", perturb)
    assert invoke("diff", a, b, "--atol", "1e-6").exit_code == 0
    assert invoke("diff", a, b, "--atol", "1e-12").exit_code == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_diff_truncated_file(files, tmp_path, version):
    a = files[version]

    def drop(doc):
        if version == "0.6.1":
            del doc["param_encodings"]["b.bias"]
        elif version == "1.0.0":
            doc["param_encodings"] = [e for e in doc["param_encodings"] if e["name"] != "b.bias"]
        else:
            doc["encodings"] = [e for e in doc["encodings"] if e["name"] != "b.bias"]

    b = _edit(a, tmp_path / "truncated.json", drop)
    result = invoke("diff", a, b)
    assert result.exit_code == 1
    (row,) = [line for line in result.stdout.splitlines() if "b.bias" in line]
    assert "missing" in row
    record = strict_json(invoke("diff", a, b, "-f", "json").stdout)
    assert (record["only_in_a"], record["only_in_b"]) == (["b.bias"], [])
    reverse = strict_json(invoke("diff", b, a, "-f", "json").stdout)
    assert (reverse["only_in_a"], reverse["only_in_b"]) == ([], ["b.bias"])


@pytest.mark.parametrize("version", VERSIONS)
def test_diff_changed_bitwidth(files, tmp_path, version):
    a = files[version]

    def narrow(doc):  # the same symmetric scales on a 4-bit grid: offsets -8, range [-8, 7] steps
        if version == "0.6.1":
            for cell in doc["param_encodings"]["c.weight"]:
                cell["bitwidth"], cell["offset"] = 4, -8
                cell["min"], cell["max"] = cell["scale"] * -8, cell["scale"] * 7
        elif version == "1.0.0":
            entry = next(e for e in doc["param_encodings"] if e["name"] == "c.weight")
            entry["bw"], entry["offset"] = 4, [-8] * len(entry["offset"])
        else:
            next(e for e in doc["encodings"] if e["name"] == "c.weight")["output_dtype"] = "int4"

    b = _edit(a, tmp_path / "narrow.json", narrow)
    result = invoke("diff", a, b)
    assert result.exit_code == 1
    assert any("c.weight" in line and "bitwidth" in line for line in result.stdout.splitlines())
    record = strict_json(invoke("diff", a, b, "-f", "json").stdout)
    assert {"tensor": "c.weight", "setting": "bitwidth", "a": 8, "b": 4} in record["settings"]


def _missing_file(tmp_path):
    return tmp_path / "missing.json", "cannot read"


def _bad_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"version": "1.0.0", "param_encodings": [')
    return path, "not valid JSON"


def _schema_error(tmp_path):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps({"version": "1.0.0", "activation_encodings": [],
                                "param_encodings": [{"name": "w", "dtype": "INT"}]}))  # fmt: skip
    return path, "tensor 'w'"


def _not_utf8(tmp_path):
    path = tmp_path / "binary.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    return path, "UTF-8"


@pytest.mark.parametrize("make", [_missing_file, _bad_json, _schema_error, _not_utf8],
                         ids=lambda f: f.__name__.strip("_"))  # fmt: skip
@pytest.mark.parametrize("side", ["a", "b"])
def test_diff_unreadable_file(files, tmp_path, make, side):
    bad, phrase = make(tmp_path)
    good = files["1.0.0"]
    args = (bad, good) if side == "a" else (good, bad)
    for fmt in ("table", "json"):
        result = invoke("diff", *args, "--format", fmt)
        assert_one_error_line(result, None, f"qcalc: error: {bad}: ", phrase)


def test_diff_json_format(files, tmp_path):
    a, b = files["0.6.1"], files["2.1.0"]
    result = invoke("diff", a, b, "--format", "json")
    assert result.exit_code == 0
    (line,) = result.stdout.splitlines()
    record = strict_json(line)
    assert list(record) == DIFF_KEYS
    assert record == {
        "equal": True, "a": str(a), "b": str(b), "rtol": 0.0, "atol": 0.0,
        "only_in_a": [], "only_in_b": [], "settings": [], "deltas": [],
    }  # fmt: skip
    c = _edit(a, tmp_path / "p.json", perturb)
    differing = invoke("diff", a, c, "--format", "json", "--rtol", "1e-9")
    assert differing.exit_code == 1
    record = strict_json(differing.stdout)
    assert list(record) == DIFF_KEYS
    assert record["equal"] is False and record["rtol"] == 1e-9


def test_diff_negative_tolerance_is_a_usage_error(files):
    result = invoke("diff", files["1.0.0"], files["2.0.0"], "--rtol", "-1")
    assert result.exit_code == 2 and result.stdout == ""


def test_ci_walk_through(tmp_path, monkeypatch):
    """`encode model -o e.json && diff shipped.json e.json` on the sample checkpoints."""
    monkeypatch.chdir(REPO)
    shipped, current, bf16 = tmp_path / "shipped.json", tmp_path / "e.json", tmp_path / "b.json"
    model = "sample_tensors/model_f32.safetensors"
    ok("encode", model, "-o", shipped)
    ok("encode", model, "-o", current)
    result = invoke("diff", shipped, current)
    assert result.exit_code == 0
    assert result.stdout == equal_line(shipped, current)
    ok("encode", "sample_tensors/model_bf16.safetensors", "-o", bf16)
    result = invoke("diff", shipped, bf16)
    assert result.exit_code == 1
    assert "conv1.weight" in result.stdout
    assert "differ beyond rtol 0, atol 0" in result.stdout.splitlines()[-1]


# --- atomic writes and inputs -------------------------------------------------------------


@pytest.fixture
def x_npy(tmp_path) -> Path:
    path = tmp_path / "x.npy"
    np.save(path, np.array([[-1.0, 0.5, 2.0], [0.25, 1.0, 3.0]], dtype=np.float32))
    return path


def test_failed_encode_leaves_an_existing_file_alone_strict(x_npy, tmp_path):
    out = tmp_path / "e.json"
    ok("encode", x_npy, "-o", out)
    before, names = out.read_bytes(), listing(tmp_path)
    for version in LEGACY:
        result = invoke("encode", x_npy, "--symmetric", "--strict-symmetric", "-o", out,
                        "--encoding-version", version)  # fmt: skip
        assert_one_error_line(result, None, "tensor 'x'", "strict-symmetric", "2.0.0")
        assert out.read_bytes() == before
        assert listing(tmp_path) == names


def test_failed_encode_leaves_an_existing_file_alone_nan(tmp_path):
    nan = tmp_path / "nan.npy"
    np.save(nan, np.array([1.0, np.nan, 2.0], dtype=np.float32))
    out = tmp_path / "e.json"
    out.write_bytes(b"old contents\n")
    names = listing(tmp_path)
    for version in VERSIONS:
        result = invoke("encode", nan, "--nonfinite", "keep", "-o", out,
                        "--encoding-version", version)  # fmt: skip
        assert_one_error_line(result, None, "tensor 'nan'", "NaN")
        assert out.read_bytes() == b"old contents\n"
        assert listing(tmp_path) == names
    # the same data with --nonfinite ignore is written
    ok("encode", nan, "--nonfinite", "ignore", "-o", out)
    assert load(out)["version"] == "1.0.0"
    assert listing(tmp_path) == names


def test_nonfinite_error_before_writing(tmp_path):
    nan = tmp_path / "nan.npy"
    np.save(nan, np.array([1.0, np.inf], dtype=np.float32))
    out = tmp_path / "e.json"
    assert_one_error_line(invoke("encode", nan, "-o", out), None, "tensor 'nan'", "+inf")
    assert not out.exists()


def test_o_onto_the_npy_input_is_refused(x_npy, tmp_path):
    before = x_npy.read_bytes()
    result = invoke("encode", x_npy, "-o", x_npy)
    assert_one_error_line(result, f"qcalc: error: {x_npy}: is one of the inputs; "
                                  "refusing to overwrite it")  # fmt: skip
    assert x_npy.read_bytes() == before


def test_o_onto_an_activations_input_is_refused(x_npy, acts, tmp_path):
    target = acts / "logits.npy"
    before = target.read_bytes()
    result = invoke("encode", x_npy, "--activations", target, "-o", target)
    assert_one_error_line(result, None, "is one of the inputs")
    assert target.read_bytes() == before


@pytest.fixture
def sharded(tmp_path) -> Path:
    rng = np.random.default_rng(3)
    save_file({"a.weight": rng.standard_normal((4, 6)).astype(np.float32)},
              str(tmp_path / "m-00001-of-00002.safetensors"))  # fmt: skip
    save_file({"b.weight": rng.standard_normal((3, 5)).astype(np.float32)},
              str(tmp_path / "m-00002-of-00002.safetensors"))  # fmt: skip
    index = tmp_path / "m.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": {
        "a.weight": "m-00001-of-00002.safetensors", "b.weight": "m-00002-of-00002.safetensors",
    }}))  # fmt: skip
    return index


def test_o_onto_the_index_input_is_refused(sharded, tmp_path):
    before = sharded.read_bytes()
    result = invoke("encode", sharded, "-o", sharded)
    assert_one_error_line(result, None, f"qcalc: error: {sharded}: is one of the inputs")
    assert sharded.read_bytes() == before
    # the index is a fine input otherwise
    out = tmp_path / "e.json"
    assert ok("encode", sharded, "-o", out).stderr.splitlines() == [wrote_note(out, 2, 0, "1.0.0")]


def test_o_through_a_symlink_to_an_input_is_refused(x_npy, tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(x_npy)
    before = x_npy.read_bytes()
    assert_one_error_line(invoke("encode", x_npy, "-o", link), None, "is one of the inputs")
    assert x_npy.read_bytes() == before


def test_o_onto_a_shard_of_the_index_input_is_refused(sharded, tmp_path):
    shard = tmp_path / "m-00001-of-00002.safetensors"
    before = shard.read_bytes()
    result = invoke("encode", sharded, "-o", shard)
    assert shard.read_bytes() == before
    assert_one_error_line(result, None, "is one of the inputs")


def test_o_onto_a_file_inside_an_input_directory_is_refused(acts, x_npy):
    batch = acts / "relu" / "000.npy"
    before = batch.read_bytes()
    result = invoke("encode", x_npy, "--activations", acts, "-o", batch)
    assert batch.read_bytes() == before
    assert_one_error_line(result, None, "is one of the inputs")


def test_o_into_a_missing_directory(x_npy, tmp_path):
    out = tmp_path / "nowhere" / "e.json"
    result = invoke("encode", x_npy, "-o", out)
    assert_one_error_line(result, None, f"qcalc: error: {out}: cannot write")
    assert not out.parent.exists()


def test_o_onto_a_directory(x_npy, tmp_path):
    out = tmp_path / "adir"
    out.mkdir()
    assert_one_error_line(invoke("encode", x_npy, "-o", out), None, f"qcalc: error: {out}: ",
                          "cannot write")  # fmt: skip
    assert listing(out) == []


def _half_then(error):
    def write(f, data):
        f.write(data[: len(data) // 2])
        f.flush()
        raise error

    return write


@pytest.mark.parametrize("command", ["encode", "convert"])
def test_failure_mid_write_keeps_the_old_file(x_npy, tmp_path, monkeypatch, command):
    from qcalc.io import atomic

    source = tmp_path / "source.json"
    ok("encode", x_npy, "-o", source)
    out = tmp_path / "e.json"
    out.write_text("old\n")
    names = listing(tmp_path)
    monkeypatch.setattr(atomic, "_write", _half_then(OSError(28, "No space left on device")))
    args = [x_npy] if command == "encode" else [source, "--to", "2.0.0"]
    result = invoke(command, *args, "-o", out)
    assert_one_error_line(result, f"qcalc: error: {out}: cannot write: No space left on device")
    assert out.read_text() == "old\n"
    assert listing(tmp_path) == names


def test_interrupted_write_keeps_the_old_file(x_npy, tmp_path, monkeypatch):
    from qcalc.io import atomic

    out = tmp_path / "e.json"
    out.write_text("old\n")
    names = listing(tmp_path)
    monkeypatch.setattr(atomic, "_write", _half_then(KeyboardInterrupt()))
    result = invoke("encode", x_npy, "-o", out)
    assert result.exit_code == 130
    assert result.stdout == ""
    assert result.stderr == "qcalc: interrupted\n"
    assert out.read_text() == "old\n"
    assert listing(tmp_path) == names


def test_o_replaces_an_existing_file_and_keeps_its_mode(x_npy, tmp_path):
    out = tmp_path / "e.json"
    out.write_text("old\n")
    out.chmod(0o640)
    ok("encode", x_npy, "-o", out, "--encoding-version", "2.1.0")
    assert load(out)["version"] == "2.1.0"
    assert out.stat().st_mode & 0o777 == 0o640
    assert listing(tmp_path) == ["e.json", "x.npy"]


# --- show on malformed files --------------------------------------------------------------


def _good_doc(model, acts, tmp_path, version: str) -> dict:
    return load(encode_file(model, acts, tmp_path, "sym-s-pc", version, "good.json"))


def _v1_entry(doc, name="a.weight"):
    return next(e for e in doc["param_encodings"] if e["name"] == name)


def _v2_entry(doc, name="a.weight"):
    return next(e for e in doc["encodings"] if e["name"] == name)


def _del(obj, key):
    del obj[key]


# (version, edit, tensor or None, field)
SCHEMA_ERRORS = {
    "0.6.1-missing-scale": ("0.6.1", lambda d: _del(d["param_encodings"]["a.weight"][1], "scale"),
                            "a.weight", "scale"),
    "0.6.1-missing-bitwidth": ("0.6.1", lambda d: _del(d["param_encodings"]["b.bias"][0],
                                                       "bitwidth"), "b.bias", "bitwidth"),
    "0.6.1-text-offset": ("0.6.1", lambda d: d["param_encodings"]["b.bias"][0].update(offset="x"),
                          "b.bias", "offset"),
    "1.0.0-missing-scale": ("1.0.0", lambda d: _del(_v1_entry(d), "scale"), "a.weight", "scale"),
    "1.0.0-missing-bw": ("1.0.0", lambda d: _del(_v1_entry(d), "bw"), "a.weight", "bw"),
    "1.0.0-offset-length": ("1.0.0", lambda d: _v1_entry(d)["offset"].pop(), "a.weight",
                            "offset"),
    "1.0.0-enc-type": ("1.0.0", lambda d: _v1_entry(d).update(enc_type="PER_SOMETHING"),
                       "a.weight", "enc_type"),
    "1.0.0-missing-section": ("1.0.0", lambda d: _del(d, "param_encodings"), None,
                              "param_encodings"),
    "2.0.0-missing-y-scale": ("2.0.0", lambda d: _del(_v2_entry(d), "y_scale"), "a.weight",
                              "y_scale"),
    "2.0.0-zero-point-length": ("2.0.0", lambda d: _v2_entry(d).update(y_zero_point=[0, 0]),
                                "a.weight", "y_zero_point"),
    "2.0.0-missing-axis": ("2.0.0", lambda d: _del(_v2_entry(d), "axis"), "a.weight", "axis"),
    "2.1.0-output-dtype": ("2.1.0", lambda d: _v2_entry(d).update(output_dtype="fp8"),
                           "a.weight", "output_dtype"),
    "2.1.0-missing-encodings": ("2.1.0", lambda d: _del(d, "encodings"), None, "encodings"),
    "unknown-version": ("1.0.0", lambda d: d.update(version="3.0.0"), None, "version"),
    "missing-version": ("2.0.0", lambda d: _del(d, "version"), None, "version"),
}  # fmt: skip


@pytest.mark.parametrize("what", list(SCHEMA_ERRORS))
def test_show_schema_errors_name_file_tensor_and_field(model, acts, tmp_path, what):
    version, edit, tensor, field = SCHEMA_ERRORS[what]
    doc = _good_doc(model, acts, tmp_path, version)
    edit(doc)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(doc, indent=4))
    for fmt in ("table", "json", "jsonl", "csv"):
        result = invoke("show", path, "--format", fmt)
        line = assert_one_error_line(result, None, f"qcalc: error: {path}: ", f"field '{field}'")
        if tensor is not None:
            assert f"tensor '{tensor}'" in line


@pytest.mark.parametrize(
    "content, phrase",
    [
        ('{"version": "1.0.0"', "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "top level"),
        ('{"version": "1.0.0", "version": "2.0.0", "encodings": []}', "appears twice"),
    ],
    ids=["truncated", "empty", "array", "duplicate-key"],
)
def test_show_malformed_json(tmp_path, content, phrase):
    path = tmp_path / "bad.json"
    path.write_text(content)
    assert_one_error_line(invoke("show", path), None, f"qcalc: error: {path}: ", phrase)


def test_show_missing_file(tmp_path):
    path = tmp_path / "missing.json"
    assert_one_error_line(invoke("show", path), f"qcalc: error: {path}: cannot read: "
                                                "no such file or directory")  # fmt: skip


def test_show_encoding_version_forces_the_reader(files, tmp_path):
    doc = load(files["2.0.0"])
    doc["version"] = "9"
    path = tmp_path / "v.json"
    path.write_text(json.dumps(doc))
    assert invoke("show", path).exit_code == 2
    forced = ok("show", path, "--encoding-version", "2.0.0", "-f", "json").stdout
    assert [{k: v for k, v in r.items() if k != "source"} for r in strict_json(forced)] == [
        {k: v for k, v in r.items() if k != "source"}
        for r in strict_json(ok("show", files["2.0.0"], "-f", "json").stdout)
    ]


def test_show_an_empty_file_of_each_version(tmp_path):
    for version in VERSIONS:
        path = tmp_path / f"empty-{version}.json"
        if version in LEGACY:
            empty = {} if version == "0.6.1" else []
            doc = {"version": version, "activation_encodings": empty, "param_encodings": empty}
        else:
            doc = {"version": version, "encodings": []}
        path.write_text(json.dumps(doc))
        assert strict_json(ok("show", path, "-f", "json").stdout) == []


# --- help ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command, options",
    [
        ("show", ["--format", "--encoding-version", "table", "jsonl", "csv"]),
        ("convert", ["--to", "--output", "-o", "--encoding-version", "0.6.1", "2.1.0"]),
        ("diff", ["--rtol", "--atol", "--format", "--encoding-version"]),
        ("encode", ["--activations", "--output", "-o", "--encoding-version", "0.6.1", "1.0.0",
                    "2.0.0", "2.1.0"]),
    ],
)  # fmt: skip
def test_help(command, options):
    for flag in ("--help", "-h"):
        result = runner.invoke(app, [command, flag], env={"COLUMNS": "200"})
        assert result.exit_code == 0
        for option in options:
            assert option in result.stdout, option
        assert "Examples" in result.stdout


@pytest.mark.parametrize("command", ["show", "convert", "diff"])
def test_no_arguments_prints_help(command):
    result = runner.invoke(app, [command])
    assert "Usage" in result.output
    assert "Traceback" not in result.output
