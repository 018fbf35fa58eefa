"""`qcalc compare`: every convention's row is `qcalc encode --convention C` with the same flags,
the toolchains' own numbers (golden) show through, and a channel compares like a tensor."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from golden_cases import CASES as AIMET_CASES
from helpers import assert_one_error_line
from qcalc.cli import app
from test_conventions import CASES as TOOLCHAIN_CASES
from test_conventions import GOLDEN, bits

runner = CliRunner()
SEED = str(GOLDEN / "inputs" / "seed.npy")
CONVENTIONS = [
    "aimet",
    "torch",
    "onnxruntime",
    "compressed-tensors",
    "quanto",
    "modelopt",
    "llama.cpp",
]


def records(*args: str) -> list[dict]:
    result = runner.invoke(app, ["compare", *args, "-f", "json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def encoded(path: str, *flags: str) -> dict:
    result = runner.invoke(app, ["encode", path, *flags, "--metrics", "-f", "json"])
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    return record


@pytest.mark.parametrize(
    "flags",
    [
        ["--symmetric"],
        [],
        ["-b", "4", "--symmetric"],
        ["-b", "4", "--per-channel"],
        ["--symmetric", "--per-channel", "--axis", "1"],
    ],
)
def test_each_row_is_what_encode_computes(flags):
    rows = records(SEED, "--tensor", "seed", *flags)
    assert [row["convention"] for row in rows] == CONVENTIONS
    for row in rows:
        if not row["offered"]:
            result = runner.invoke(app, ["encode", SEED, *flags, "--convention", row["convention"]])
            assert result.exit_code == 2  # and for the same reason
            assert assert_one_error_line(result).endswith(row["reason"])
            continue
        record = encoded(SEED, *flags, "--convention", row["convention"])
        for key in ("qmin", "qmax", "scale", "offset", "sqnr_db", "max_abs_error"):
            assert row[key] == record[key], (row["convention"], key)
        if row["convention"] != "aimet":
            assert row["zero_point"] == record["zero_point"]
            assert row["stored_scale"] == record["stored_scale"]
        else:  # AIMET stores the offset; its zero point is the offset negated
            assert row["zero_point"] == [-v for v in record["offset"]]


def test_the_toolchains_own_numbers_show_through():
    """The seed tensor, 8-bit symmetric per tensor: each row's stored scale is the one the
    toolchain computed (tests/golden/conventions) or AIMET computed (seed-3)."""
    rows = {row["convention"]: row for row in records(SEED, "--tensor", "seed", "--symmetric")}
    for case in TOOLCHAIN_CASES:
        if case["input"] == "inputs/seed.npy" and case["id"].endswith("/b8-sym-signed-tensor"):
            row = rows[case["convention"]]
            assert bits(row["stored_scale"], "float32") == [s["hex"] for s in case["scale"]]
    (seed3,) = [case for case in AIMET_CASES if case["id"] == "seed-3"]
    assert np.float32(rows["aimet"]["scale"][0]) == np.float32(
        np.ravel(seed3["expected"]["scale"])[0]
    )
    assert rows["llama.cpp"]["offered"] is False


def test_a_channel_compares_like_the_tensor_of_that_channel(tmp_path):
    """Channel 2 of a per-channel comparison == the per-tensor comparison of row 2 alone
    (its min / max are the channel's, its values the slice's)."""
    x = np.load(SEED)
    row2 = tmp_path / "row2.npy"
    np.save(row2, x[2:3])
    channel = records(SEED, "--tensor", "seed", "--per-channel", "--channel", "2")
    alone = records(str(row2), "--tensor", "row2")
    for ours, theirs in zip(channel, alone):
        assert ours["convention"] == theirs["convention"]
        if not ours["offered"]:
            continue
        assert ours["channel"] == 2
        for key in (
            "scale",
            "offset",
            "zero_point",
            "sqnr_db",
            "max_abs_error",
            "clipped_fraction",
        ):
            assert ours[key] == theirs[key], (ours["convention"], key)


def test_table_names_every_convention():
    result = runner.invoke(app, ["compare", SEED, "--tensor", "seed", "--symmetric"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "seed, f32 4×4, 8-bit symmetric, per-tensor, min-max"
    for convention in CONVENTIONS[:-1]:
        assert any(line.startswith(convention + " ") for line in lines), convention
    assert any(line.startswith("llama.cpp: offers Q8_0") for line in lines)


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["--tensor", "nope"], "tensor 'nope' not found"),
        (["--tensor", "seed", "--per-channel", "--channel", "9"], "channel"),
        (["--tensor", "seed", "--convention", "torch"], "No such option"),
    ],
)
def test_errors_exit_2(args, phrase):
    result = runner.invoke(app, ["compare", SEED, *args])
    assert result.exit_code == 2
    assert phrase in result.output
