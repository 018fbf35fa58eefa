"""`qcalc check`, the CI gate, and `encode --metrics`: every exit path (0 pass, 1 fail, 2 bad
input), the json records, thresholds, NaN / inf, recipes, and shipped encodings files in every
version evaluated exactly like the encodings qcalc computes."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

from qcalc.cli import app
from helpers import assert_one_error_line
from qcalc.core.choices import VERSIONS

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "sample_tensors" / "model_f32.safetensors"
METRIC_KEYS = [
    "sqnr_db", "mse", "max_abs_error", "clipped_fraction", "grid_used_fraction",
    "worst_sqnr_db", "worst_index",
]  # fmt: skip
RECORD_KEYS = ["name", "passed", "failures", "warnings", *METRIC_KEYS, "nan", "inf"]

runner = CliRunner()

# Hand case. "exact" = [0, 1, 2, 3]: 2-bit asymmetric min-max gives scale (3 - 0) / 3 = 1,
# offset 0; every value is on the grid, so the error is 0 and SQNR is +inf.
# "rough" = [0, 1, 2, 3, 1.5]: same grid; 1.5 / 1 = 1.5 rounds half to even to 2, error 0.5.
# SQNR = 10 log10((0 + 1 + 4 + 9 + 2.25) / 0.25) = 10 log10(65) = 18.129 dB.
EXACT = np.array([0, 1, 2, 3], dtype=np.float32)
ROUGH = np.array([0, 1, 2, 3, 1.5], dtype=np.float32)
ROUGH_SQNR = 10 * math.log10(65)


@pytest.fixture(autouse=True)
def _no_columns(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def save(tmp_path, tensors: dict, name="model.safetensors") -> Path:
    path = tmp_path / name
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path))
    return path


@pytest.fixture
def hand(tmp_path) -> Path:
    return save(tmp_path, {"exact": EXACT, "rough": ROUGH})


def check_json(*args, expect: int) -> list[dict]:
    result = invoke("check", *args, "--format", "json")
    assert result.exit_code == expect, result.output
    return json.loads(result.stdout)


def test_hand_case_metrics_and_exit_codes(hand):
    records = check_json(hand, "-b", "2", "--min-sqnr", "18", expect=0)
    assert [r["name"] for r in records] == ["exact", "rough"]
    assert all(list(r) == RECORD_KEYS for r in records)
    exact, rough = records
    assert exact["sqnr_db"] == "Infinity" and exact["mse"] == 0 and exact["max_abs_error"] == 0
    assert rough["sqnr_db"] == pytest.approx(ROUGH_SQNR, rel=1e-12)
    assert rough["mse"] == pytest.approx(0.25 / 5, rel=1e-12)
    assert rough["max_abs_error"] == 0.5
    assert rough["clipped_fraction"] == 0
    assert exact["worst_sqnr_db"] is None and exact["worst_index"] is None
    assert all(r["passed"] and r["failures"] == [] for r in records)

    records = check_json(hand, "-b", "2", "--min-sqnr", "18.2", expect=1)
    assert [r["passed"] for r in records] == [True, False]
    assert records[1]["failures"] == ["sqnr 18.1 dB < 18.2"]


def test_max_abs_error_and_clip_thresholds(hand):
    records = check_json(hand, "-b", "2", "--max-abs-error", "0.4", expect=1)
    assert records[1]["failures"] == ["max abs error 0.5 > 0.4"]
    check_json(hand, "-b", "2", "--max-abs-error", "0.5", expect=0)
    # percentile 50 on [0, 1, 2, 3] clips the tails: some element must leave [min, max]
    records = check_json(
        hand, "-b", "2", "--analyzer", "percentile", "--percentile", "50", "--max-clip", "0",
        expect=1,
    )  # fmt: skip
    assert all(r["clipped_fraction"] > 0 for r in records)
    assert all(r["failures"][0].startswith("clipped ") for r in records)


def test_table_lists_failures_only_unless_all(hand):
    result = invoke("check", hand, "-b", "2", "--min-sqnr", "20")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "FAILED: 1 of 2 tensors (sqnr >= 20 dB, NaN / inf fail)"
    assert lines[1].split() == ["tensor", "sqnr", "worst", "max", "err", "clip", "failures"]
    assert [line.split()[0] for line in lines[2:]] == ["rough"]
    assert lines[2].endswith("sqnr 18.1 dB < 20")
    every = invoke("check", hand, "-b", "2", "--min-sqnr", "20", "--all").stdout.splitlines()
    assert [line.split()[0] for line in every[2:]] == ["exact", "rough"]
    passing = invoke("check", hand, "-b", "2", "--min-sqnr", "10")
    assert passing.exit_code == 0
    assert passing.stdout == "passed: all 2 tensors (sqnr >= 10 dB, NaN / inf fail)\n"


def test_jsonl_has_one_record_per_tensor(hand):
    result = invoke("check", hand, "-b", "2", "--min-sqnr", "20", "-f", "jsonl")
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["name"], r["passed"]) for r in records] == [("exact", True), ("rough", False)]


def test_nonfinite_values_fail_with_counts_or_warn(tmp_path):
    data = np.array([0, 1, np.nan, 2, np.inf, 3, -np.inf], dtype=np.float32)
    path = save(tmp_path, {"x": data})
    (record,) = check_json(path, "-b", "2", expect=1)
    assert record["failures"] == ["1 NaN and 2 inf values"]
    assert (record["nan"], record["inf"]) == (1, 2)
    # metrics over the finite values [0, 1, 2, 3]: on the 2-bit grid, exact
    assert record["sqnr_db"] == "Infinity"
    result = invoke("check", path, "-b", "2", "--allow-nonfinite", "-f", "json")
    assert result.exit_code == 0
    (record,) = json.loads(result.stdout)
    assert record["passed"] and record["warnings"] == ["1 NaN and 2 inf values"]
    assert "qcalc: warning: tensor 'x': 1 NaN and 2 inf values" in result.stderr


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["missing.safetensors"], "missing.safetensors"),
        ([SAMPLE, "--recipe", "missing.toml"], "missing.toml"),
        ([SAMPLE, "--encodings", "missing.encodings"], "missing.encodings"),
        ([SAMPLE, "--include", "nothing*"], "nothing*"),
        ([SAMPLE, "-b", "1"], "bitwidth 1"),
        ([SAMPLE, "--max-clip", "2"], "--max-clip 2 is not a fraction"),
        ([SAMPLE, "--min-sqnr", "nan"], "--min-sqnr must be a number"),
        ([SAMPLE, "--max-abs-error", "-1"], "--max-abs-error -1 must be 0 or more"),
    ],
)
def test_bad_input_exits_2(args, phrase):
    assert_one_error_line(invoke("check", *args), None, phrase)


def test_nothing_to_check_is_an_error(tmp_path):
    ints = save(tmp_path, {"ids": np.arange(6, dtype=np.int32)})
    result = invoke("check", ints)
    assert_one_error_line(result, None, "nothing to check")


def test_every_tensor_is_checked_per_channel():
    records = check_json(SAMPLE, "--per-channel", "--symmetric", expect=0)
    names = [r["name"] for r in records]
    assert "conv1.weight" in names and "bn1.num_batches_tracked" not in names
    conv = next(r for r in records if r["name"] == "conv1.weight")
    assert isinstance(conv["worst_index"], int) and 0 <= conv["worst_index"] < 16
    assert conv["worst_sqnr_db"] <= conv["sqnr_db"]


LAYOUTS = {
    "per-tensor": [],
    "per-channel": ["--per-channel", "--symmetric"],
    "per-block": ["--block-size", "64", "--symmetric"],
    "lpbq": ["--block-size", "64", "--symmetric", "--lpbq", "--include", "fc.weight"],
}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("layout", LAYOUTS)
def test_shipped_encodings_are_evaluated_like_computed_ones(tmp_path, version, layout):
    flags = LAYOUTS[layout]
    if layout in ("per-block", "lpbq"):
        flags = [*flags, "--include", "fc.weight"] if layout == "per-block" else flags
        if version == "0.6.1":
            pytest.skip("0.6.1 has no block fields: blocks read back as channels")
    shipped = tmp_path / "shipped.encodings"
    written = invoke("encode", SAMPLE, *flags, "-o", shipped, "--encoding-version", version)
    assert written.exit_code == 0, written.output
    computed = check_json(SAMPLE, *flags, expect=0)
    from_file = check_json(SAMPLE, *flags, "--encodings", shipped, expect=0)
    assert [r["name"] for r in from_file] == [r["name"] for r in computed]
    for a, b in zip(computed, from_file):
        for key in ("sqnr_db", "mse", "max_abs_error", "clipped_fraction", "worst_index"):
            assert a[key] == b[key], (a["name"], key)


def test_shipped_encodings_missing_and_extra_tensors(tmp_path):
    # the shipped file: every sample tensor but conv1.bias, plus extra.weight
    extra = save(tmp_path, {"extra.weight": np.ones((2, 3), np.float32)}, "extra.safetensors")
    shipped = tmp_path / "shipped.encodings"
    made = invoke("encode", SAMPLE, extra, "--exclude", "conv1.bias", "-o", shipped)
    assert made.exit_code == 0, made.output
    result = invoke("check", SAMPLE, "--encodings", shipped, "-f", "json")
    assert result.exit_code == 1
    records = {r["name"]: r for r in json.loads(result.stdout)}
    assert records["fc.weight"]["passed"]
    assert records["conv1.bias"]["failures"] == [f"no encoding in {shipped}"]
    assert records["extra.weight"]["failures"] == ["not in the inputs"]
    assert records["conv1.bias"]["sqnr_db"] is None
    assert [name for name, r in records.items() if not r["passed"]] == [
        "conv1.bias", "extra.weight",
    ]  # fmt: skip


def test_entries_left_out_by_filters_or_recipes_are_not_missing_tensors(tmp_path):
    shipped = tmp_path / "all.encodings"
    assert invoke("encode", SAMPLE, "--per-channel", "--symmetric", "-o", shipped).exit_code == 0
    flags = ["--per-channel", "--symmetric", "--encodings", shipped, "-f", "json"]
    only_fc = json.loads(invoke("check", SAMPLE, "--include", "fc.*", *flags).stdout)
    assert sorted(r["name"] for r in only_fc) == ["fc.bias", "fc.weight"]
    assert all(r["passed"] for r in only_fc)
    recipe = tmp_path / "r.toml"
    recipe.write_text('[[rule]]\nmatch = "*.bias"\nskip = true\n')
    result = invoke("check", SAMPLE, "--recipe", recipe, *flags)
    assert result.exit_code == 0, result.stdout
    assert not any(r["name"].endswith(".bias") for r in json.loads(result.stdout))


@pytest.mark.parametrize("version", ["1.0.0", "2.0.0", "2.1.0"])
@pytest.mark.parametrize("shape, axis", [((16, 16, 3, 3), 1), ((8, 16, 3, 3), 1), ((4, 6, 5), 2)])
def test_shipped_per_channel_axes_are_the_files(tmp_path, version, shape, axis):
    """2.x files record the channel axis: check uses it (1.0.0 files do not: --axis says)."""
    weight = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    weight *= np.arange(1, shape[axis] + 1, dtype=np.float32).reshape(
        [-1 if i == axis else 1 for i in range(len(shape))]
    )  # channels of different ranges: the wrong axis shows
    path = save(tmp_path, {"w": weight})
    flags = ["--per-channel", "--axis", str(axis), "--symmetric"]
    shipped = tmp_path / "w.encodings"
    made = invoke("encode", path, *flags, "-o", shipped, "--encoding-version", version)
    assert made.exit_code == 0, made.output
    (computed,) = check_json(path, *flags, expect=0)
    axis_flag = ["--axis", str(axis)] if version == "1.0.0" else []
    (shipped_record,) = check_json(path, *axis_flag, "--encodings", shipped, expect=0)
    for key in ("sqnr_db", "mse", "max_abs_error", "clipped_fraction", "worst_index"):
        assert shipped_record[key] == computed[key], key


def test_shipped_encoding_that_does_not_fit_fails_that_tensor(tmp_path):
    shipped = tmp_path / "shipped.encodings"
    other = save(tmp_path, {"fc.weight": np.ones((4, 512), np.float32)}, "other.safetensors")
    assert invoke("encode", other, "--per-channel", "-o", shipped).exit_code == 0
    result = invoke("check", SAMPLE, "--include", "fc.weight", "--encodings", shipped, "-f", "json")
    assert result.exit_code == 1
    (record,) = json.loads(result.stdout)
    assert "does not fit tensor shape [10, 512]" in record["failures"][0]


def test_recipe_skips_and_sets_grids(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[[rule]]\nmatch = "*.bias"\nskip = true\n\n'
        '[[rule]]\nmatch = "fc.weight"\nbitwidth = 2\n\n'
        '[[rule]]\nmatch = "nothing.*"\nbitwidth = 4\n'
    )
    result = invoke("check", SAMPLE, "--recipe", recipe, "-f", "json", "--min-sqnr", "20")
    assert result.exit_code == 1
    records = {r["name"]: r for r in json.loads(result.stdout)}
    assert not any(name.endswith(".bias") for name in records)
    assert [name for name, r in records.items() if not r["passed"]] == ["fc.weight"]
    assert 'qcalc: warning: recipe rule 3 (match "nothing.*") matched no tensor' in result.stderr


def test_encode_metrics_in_every_format(hand):
    base = ["encode", hand, "-b", "2", "--metrics"]
    records = [json.loads(line) for line in invoke(*base, "-f", "jsonl").stdout.splitlines()]
    assert [list(r)[-7:] for r in records] == [METRIC_KEYS, METRIC_KEYS]
    assert records[1]["sqnr_db"] == pytest.approx(ROUGH_SQNR, rel=1e-12)
    rows = list(csv.DictReader(io.StringIO(invoke(*base, "-f", "csv").stdout)))
    assert float(rows[1]["sqnr_db"]) == pytest.approx(ROUGH_SQNR, rel=1e-12)
    assert rows[0]["sqnr_db"] == "Infinity"
    table = invoke(*base).stdout.splitlines()
    assert table[1].split() == ["tensor", "shape", "sqnr", "worst", "max", "err", "clip", "used"]
    assert table[3].split()[:3] == ["rough", "5", "18.1"]
    # without --metrics none of the keys appear
    plain = json.loads(invoke("encode", hand, "-b", "2", "-f", "jsonl").stdout.splitlines()[0])
    assert not set(METRIC_KEYS) & set(plain)


def test_table_fits_80_columns(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    long = "model.layers.10.post_attention_layernorm_with_an_unusually_long_name.weight"
    path = save(tmp_path, {long: np.linspace(-1, 1, 64, dtype=np.float32), "x": ROUGH})
    result = invoke(
        "check", path, "-b", "2", "--min-sqnr", "90", "--max-clip", "0", "--max-abs-error",
        "1e-9", "--all",
    )  # fmt: skip
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), result.stdout
    assert "max abs error" in result.stdout and "x " in result.stdout
