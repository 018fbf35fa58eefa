"""`qcalc encode` through the CLI: every flag changes what it should, every format parses with
the documented keys, every user error is one line on stderr with exit code 2."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

import qcalc
from golden_cases import CASES, GOLDEN, as_float32, bits_equal
from helpers import assert_one_error_line
from qcalc import Spec, encode_array
from qcalc.cli import app
from qcalc.commands.encode import HELP as ENCODE_HELP
from qcalc.core import kernels
from qcalc.core.kernels import KERNELS

REPO = Path(__file__).resolve().parent.parent
KEYS = [
    "name", "source", "dtype", "shape", "bitwidth", "signed", "symmetric", "granularity",
    "axis", "qmin", "qmax", "encoding_shape", "min", "max", "scale", "offset",
]  # fmt: skip
CSV_COLUMNS = [*KEYS[:12], "channel", "min", "max", "scale", "offset"]
OPTIONS = [
    "--bitwidth", "-b", "--symmetric", "--asymmetric", "--signed", "--unsigned",
    "--strict-symmetric", "--symmetric-offset", "--per-channel", "--axis", "--compute-dtype",
    "--nonfinite", "--include", "--exclude", "--format",
]  # fmt: skip

# min -1, max 3: asymmetric 8-bit scale (3 - -1) / 255, offset round(-1 / scale) = -64.
X = np.array([[-1.0, 0.5, 2.0], [0.25, 1.0, 3.0]], dtype=np.float32)

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_columns(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)


def invoke(*args: str):
    return runner.invoke(app, ["encode", *map(str, args)])


def ok(*args: str):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def records(*args: str) -> list[dict]:
    """Run encode with --format jsonl and parse every line."""
    return [json.loads(line) for line in ok(*args, "--format", "jsonl").stdout.splitlines()]


def record(*args: str) -> dict:
    (only,) = records(*args)
    return only


@pytest.fixture
def x_npy(tmp_path) -> Path:
    path = tmp_path / "x.npy"
    np.save(path, X)
    return path


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    """Two weights, a bias and an integer tensor in one safetensors file."""
    rng = np.random.default_rng(0)
    path = tmp_path / "model.safetensors"
    save_file(
        {
            "a.weight": rng.standard_normal((4, 6)).astype(np.float32),
            "a.bias": rng.standard_normal(6).astype(np.float32),
            "b.weight": rng.standard_normal((3, 5)).astype(np.float32),
            "steps": np.arange(3, dtype=np.int64),
        },
        str(path),
    )
    return path


def f32(value) -> np.float32:
    return np.float32(value)


# --- flags ---------------------------------------------------------------------------------


def test_defaults_are_asymmetric_unsigned_8_bit_per_tensor(x_npy):
    rec = record(x_npy)
    assert (rec["bitwidth"], rec["signed"], rec["symmetric"]) == (8, False, False)
    assert (rec["qmin"], rec["qmax"]) == (0, 255)
    assert (rec["granularity"], rec["axis"], rec["encoding_shape"]) == ("per-tensor", None, [])
    scale = f32(4) / f32(255)
    assert rec["scale"] == [float(scale)]
    assert rec["offset"] == [-64]
    assert rec["min"] == [float(scale * f32(-64))]
    assert rec["max"] == [float(scale * f32(191))]


@pytest.mark.parametrize(
    "flags, qmin, qmax",
    [
        (["-b", "4"], 0, 15),
        (["--bitwidth", "4"], 0, 15),
        (["-b", "2"], 0, 3),
        (["-b", "16"], 0, 65535),
        (["-b", "32"], 0, 2**32 - 1),
        (["-b", "4", "--symmetric"], -8, 7),
        (["-b", "16", "--symmetric"], -32768, 32767),
    ],
    ids=["b4", "bitwidth4", "b2", "b16", "b32", "b4-sym", "b16-sym"],
)
def test_bitwidth_sets_the_grid(x_npy, flags, qmin, qmax):
    rec = record(x_npy, *flags)
    assert (rec["qmin"], rec["qmax"]) == (qmin, qmax)
    assert rec["bitwidth"] == int(flags[1])


def test_symmetric_is_signed_with_offset_zero(x_npy):
    rec = record(x_npy, "--symmetric")
    assert (rec["symmetric"], rec["signed"], rec["qmin"], rec["qmax"]) == (True, True, -128, 127)
    assert rec["offset"] == [0]
    # max |x| = 3 sits on the positive side: scale = 3 / 127, min = -128 * scale.
    scale = f32(rec["scale"][0])
    assert scale == f32(3) / f32(127)
    assert rec["min"] == [float(scale * f32(-128))]


def test_asymmetric_flag_is_the_default(x_npy):
    assert record(x_npy, "--asymmetric") == record(x_npy)


@pytest.mark.parametrize(
    "flags, signed, qmin, qmax, offset",
    [
        (["--symmetric", "--unsigned"], False, 0, 255, -128),  # centered: -2^(b-1)
        (["--symmetric", "--signed"], True, -128, 127, 0),
        (["--asymmetric", "--signed"], True, -128, 127, 64),  # -64 - qmin
        (["--asymmetric", "--unsigned"], False, 0, 255, -64),
    ],
    ids=["sym-unsigned", "sym-signed", "asym-signed", "asym-unsigned"],
)
def test_signed_and_unsigned_override_the_default(x_npy, flags, signed, qmin, qmax, offset):
    rec = record(x_npy, *flags)
    assert (rec["signed"], rec["qmin"], rec["qmax"]) == (signed, qmin, qmax)
    assert rec["offset"] == [offset]


def test_strict_symmetric_drops_the_lowest_level(x_npy):
    rec = record(x_npy, "--symmetric", "--strict-symmetric")
    assert (rec["qmin"], rec["qmax"], rec["offset"]) == (-127, 127, [0])
    assert record(x_npy, "--symmetric", "--strict-symmetric", "-b", "4")["qmin"] == -7


def test_symmetric_offset_zero_on_unsigned_grid(x_npy):
    centered = record(x_npy, "--symmetric", "--unsigned")
    zero = record(x_npy, "--symmetric", "--unsigned", "--symmetric-offset", "zero")
    assert zero["offset"] == [0] and zero["min"] == [0.0]
    assert zero["scale"] == centered["scale"]
    assert zero["max"] == [float(f32(zero["scale"][0]) * f32(255))]
    assert centered["offset"] == [-128] and centered["min"][0] < 0
    assert record(x_npy, "--symmetric", "--unsigned", "--symmetric-offset", "centered") == centered


def test_symmetric_offset_zero_leaves_signed_grids_alone(x_npy):
    signed = record(x_npy, "--symmetric")
    assert record(x_npy, "--symmetric", "--symmetric-offset", "zero") == signed


@pytest.mark.parametrize("symmetric", [False, True], ids=["asym", "sym"])
def test_per_channel_axis_0(x_npy, symmetric):
    flags = ["--symmetric"] if symmetric else []
    rec = record(x_npy, "--per-channel", *flags)
    assert (rec["granularity"], rec["axis"], rec["encoding_shape"]) == ("per-channel", 0, [2, 1])
    assert len(rec["scale"]) == len(rec["offset"]) == len(rec["min"]) == len(rec["max"]) == 2
    # Each channel's encoding is the per-tensor encoding of that row.
    rows = [encode_array(X[c], Spec(symmetric=symmetric)) for c in range(2)]
    assert rec["scale"] == [float(e.scale) for e in rows]
    assert rec["offset"] == [int(e.offset) for e in rows]


@pytest.mark.parametrize("axis", ["1", "-1"])
def test_per_channel_last_axis(x_npy, axis):
    rec = record(x_npy, "--per-channel", "--axis", axis)
    assert (rec["axis"], rec["encoding_shape"]) == (1, [1, 3])
    columns = [encode_array(np.ascontiguousarray(X[:, k]), Spec()) for k in range(3)]
    assert rec["scale"] == [float(e.scale) for e in columns]
    assert rec["min"] == [float(e.min) for e in columns]


def test_axis_without_per_channel_changes_nothing(x_npy):
    assert record(x_npy, "--axis", "1") == record(x_npy)


def test_per_channel_on_rank_3_puts_channels_at_the_axis(tmp_path):
    path = tmp_path / "t.npy"
    np.save(path, np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 5)
    assert record(path, "--per-channel", "--axis", "1")["encoding_shape"] == [1, 3, 1]
    assert record(path, "--per-channel", "--axis", "-1")["encoding_shape"] == [1, 1, 4]


def test_rank_1_stays_per_tensor_under_per_channel(checkpoint):
    by_name = {r["name"]: r for r in records(checkpoint, "--per-channel")}
    assert by_name["a.bias"]["granularity"] == "per-tensor"
    assert (by_name["a.bias"]["axis"], by_name["a.bias"]["encoding_shape"]) == (None, [])
    assert by_name["a.weight"]["encoding_shape"] == [4, 1]
    assert by_name["b.weight"]["encoding_shape"] == [3, 1]


BF16_CASE = next(c for c in CASES if c["id"] == "dtype-bfloat16-pt-b8-sym-s")


def test_compute_dtype_input_reproduces_aimet_on_bf16():
    """AIMET computed this bf16 tensor's range in bf16; float32 arithmetic gives another scale."""
    path = GOLDEN / BF16_CASE["input_safetensors"]
    expected = BF16_CASE["expected"]
    as_input = record(path, "--symmetric", "--compute-dtype", "input")
    in_float32 = record(path, "--symmetric", "--compute-dtype", "float32")
    assert as_input["dtype"] == "bfloat16"
    for key in ("scale", "min", "max"):
        assert bits_equal(as_float32(as_input[key]), as_float32(expected[key])), key
    assert as_input["offset"] == [int(v) for v in expected["offset"]]
    assert not bits_equal(as_float32(in_float32["scale"]), as_float32(expected["scale"]))
    assert record(path, "--symmetric") == in_float32  # float32 is the default


@pytest.fixture
def nonfinite_npy(tmp_path) -> Path:
    path = tmp_path / "act.npy"
    np.save(path, np.array([-1.0, np.nan, 2.0, np.inf], dtype=np.float32))
    return path


def test_nonfinite_ignore_encodes_the_finite_values(nonfinite_npy):
    finite = encode_array(np.array([-1.0, 2.0], dtype=np.float32))
    rec = record(nonfinite_npy, "--nonfinite", "ignore")
    assert rec["scale"] == [float(finite.scale)]
    assert rec["offset"] == [int(finite.offset)]
    assert (rec["min"], rec["max"]) == ([float(finite.min)], [float(finite.max)])


def test_nonfinite_keep_encodes_nan_as_aimet_does(nonfinite_npy):
    result = ok(nonfinite_npy, "--nonfinite", "keep", "--format", "json")
    rec = json.loads(result.stdout, parse_constant=_reject_constant)[0]
    assert rec["scale"] == rec["min"] == rec["max"] == rec["offset"] == ["NaN"]
    assert result.stderr == ""


def test_nonfinite_keep_with_inf_only_clamps_to_float32_max(tmp_path):
    path = tmp_path / "inf.npy"
    np.save(path, np.array([-1.0, 2.0, np.inf], dtype=np.float32))
    rec = record(path, "--nonfinite", "keep")
    assert rec["max"] == [float(np.finfo(np.float32).max)]
    assert rec["scale"] != record(path, "--nonfinite", "ignore")["scale"]


def test_nonfinite_error_is_the_default(nonfinite_npy):
    assert invoke(nonfinite_npy).exit_code == 2
    assert invoke(nonfinite_npy, "--nonfinite", "error").exit_code == 2


def names(*args) -> list[str]:
    return [r["name"] for r in records(*args)]


@pytest.mark.parametrize(
    "flags, expected",
    [
        ([], ["a.weight", "a.bias", "b.weight"]),
        (["--include", "*.weight"], ["a.weight", "b.weight"]),
        (["--include", "a.weight", "--include", "b.*"], ["a.weight", "b.weight"]),
        (["--exclude", "*.bias"], ["a.weight", "b.weight"]),
        (["--exclude", "*.bias", "--exclude", "b.*"], ["a.weight"]),
        (["--include", "a.*", "--exclude", "*.bias"], ["a.weight"]),
    ],
    ids=["none", "include", "include-twice", "exclude", "exclude-twice", "include-exclude"],
)
def test_include_exclude(checkpoint, flags, expected):
    assert sorted(names(checkpoint, *flags)) == sorted(expected)


def test_inputs_keep_command_line_order(x_npy, checkpoint):
    in_file = names(checkpoint)
    assert names(checkpoint, x_npy) == [*in_file, "x"]
    assert names(x_npy, checkpoint) == ["x", *in_file]


# --- formats -------------------------------------------------------------------------------


def _reject_constant(token: str):
    raise ValueError(f"non-strict JSON constant {token}")


def test_json_is_one_strict_array_with_documented_keys(checkpoint, x_npy):
    result = ok(checkpoint, x_npy, "--per-channel", "--format", "json")
    data = json.loads(result.stdout, parse_constant=_reject_constant)
    assert isinstance(data, list) and len(data) == 4
    for rec in data:
        assert list(rec) == KEYS
        cells = int(np.prod(rec["encoding_shape"])) if rec["encoding_shape"] else 1
        assert all(len(rec[key]) == cells for key in ("min", "max", "scale", "offset"))
        assert all(isinstance(v, int) for v in rec["offset"])
        assert rec["source"] in (str(checkpoint), str(x_npy))


def test_jsonl_is_one_object_per_line(checkpoint):
    lines = ok(checkpoint, "--format", "jsonl").stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert list(json.loads(line, parse_constant=_reject_constant)) == KEYS


def test_json_and_jsonl_agree(checkpoint):
    as_json = json.loads(ok(checkpoint, "--per-channel", "--format", "json").stdout)
    assert as_json == records(checkpoint, "--per-channel")


def test_csv_has_one_row_per_channel(checkpoint):
    text = ok(checkpoint, "--per-channel", "--format", "csv").stdout
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == CSV_COLUMNS
    body = [dict(zip(rows[0], row)) for row in rows[1:]]
    channels = {"a.weight": 4, "a.bias": 1, "b.weight": 3}
    assert [(r["name"], r["channel"]) for r in body] == [
        (name, str(c)) for name in names(checkpoint) for c in range(channels[name])
    ]
    jsonl = {r["name"]: r for r in records(checkpoint, "--per-channel")}
    for row in body:
        rec, c = jsonl[row["name"]], int(row["channel"])
        assert float(row["scale"]) == rec["scale"][c]
        assert int(row["offset"]) == rec["offset"][c]
        assert json.loads(row["shape"]) == rec["shape"]
        assert json.loads(row["encoding_shape"]) == rec["encoding_shape"]
        assert row["signed"] == "false" and row["granularity"] == rec["granularity"]


def test_table_is_the_default_format(checkpoint):
    text = ok(checkpoint).stdout
    assert text == ok(checkpoint, "--format", "table").stdout
    assert "a.weight" in text and "scale" in text and "offset" in text
    assert all(len(line) <= 80 for line in text.splitlines())


def test_short_format_flag(checkpoint):
    assert ok(checkpoint, "-f", "jsonl").stdout == ok(checkpoint, "--format", "jsonl").stdout


SPECS = [
    [],
    ["--symmetric"],
    ["--symmetric", "--unsigned"],
    ["--symmetric", "--strict-symmetric", "-b", "4"],
    ["--per-channel", "-b", "4"],
    ["--per-channel", "--axis", "-1", "--symmetric", "-b", "16"],
    ["-b", "32"],
]


@pytest.mark.parametrize("flags", SPECS, ids=lambda f: " ".join(f) or "default")
def test_json_numbers_are_exact_float32(tmp_path, flags):
    """float32(json value) is bit-identical to the library's float32 result."""
    array = (np.random.default_rng(7).standard_normal((5, 7)) * 3 + 0.4).astype(np.float32)
    path = tmp_path / "w.npy"
    np.save(path, array)
    rec = record(path, *flags)
    axis = int(flags[flags.index("--axis") + 1]) if "--axis" in flags else 0
    enc = encode_array(
        array,
        Spec(
            bitwidth=int(flags[flags.index("-b") + 1]) if "-b" in flags else 8,
            symmetric="--symmetric" in flags,
            signed=False if "--unsigned" in flags else None,
            strict_symmetric="--strict-symmetric" in flags,
            per_channel="--per-channel" in flags,
            axis=axis,
        ),
    )
    assert rec["encoding_shape"] == list(enc.encoding_shape)
    for key in ("scale", "min", "max"):
        got = np.asarray(rec[key], dtype=np.float64).astype(np.float32)
        assert bits_equal(got, getattr(enc, key)), key
        # The JSON number is exactly the float32 value, not a rounded decimal.
        assert rec[key] == [float(v) for v in np.asarray(getattr(enc, key)).ravel()]
    assert rec["offset"] == [int(v) for v in np.asarray(enc.offset).ravel()]


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", ["0", "1", "33", "-4"])
def test_bitwidth_out_of_range(x_npy, bits):
    result = invoke(x_npy, "-b", bits)
    assert_one_error_line(result, f"qcalc: error: bitwidth {bits} is out of range (2..32)")


@pytest.mark.parametrize("axis", ["2", "-3"])
def test_axis_out_of_range(x_npy, axis):
    result = invoke(x_npy, "--per-channel", "--axis", axis)
    assert_one_error_line(
        result,
        f"qcalc: error: {x_npy}: tensor 'x': axis {axis} is out of range for shape [2, 3] "
        "(rank 2)",
    )


def test_axis_out_of_range_is_checked_per_tensor(checkpoint):
    # rank-1 tensors are per-tensor, so only a rank >= 2 tensor can be out of range
    result = invoke(checkpoint, "--per-channel", "--axis", "2")
    assert_one_error_line(
        result,
        f"qcalc: error: {checkpoint}: tensor 'a.weight': axis 2 is out of range for shape "
        "[4, 6] (rank 2)",
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--include", "nope*"], "--include 'nope*' matches no tensor name"),
        (["--exclude", "nope"], "--exclude 'nope' matches no tensor name"),
        (["--include", "*.weight", "--include", "zz"], "--include 'zz' matches no tensor name"),
        (["--exclude", "*"], "no tensor left to encode after --include / --exclude"),
        (["--include", "a.*", "--exclude", "a.*"],
         "no tensor left to encode after --include / --exclude"),
    ],
    ids=["include", "exclude", "second-include", "exclude-all", "include-minus-exclude"],
)  # fmt: skip
def test_filter_matches_nothing(checkpoint, flags, message):
    assert_one_error_line(invoke(checkpoint, *flags), f"qcalc: error: {message}")


def test_nonfinite_error_names_file_tensor_and_counts(nonfinite_npy):
    assert_one_error_line(
        invoke(nonfinite_npy),
        f"qcalc: error: {nonfinite_npy}: tensor 'act' holds 1 NaN, 1 +inf and 0 -inf values "
        "(--nonfinite ignore skips them, keep encodes them as AIMET does)",
    )


def test_nonfinite_error_in_a_checkpoint(tmp_path):
    path = tmp_path / "m.safetensors"
    bad = np.array([[1.0, -np.inf], [-np.inf, 2.0]], dtype=np.float32)
    save_file({"ok": np.ones(3, dtype=np.float32), "bad": bad}, str(path))
    assert_one_error_line(
        invoke(path, "--per-channel"),
        f"qcalc: error: {path}: tensor 'bad' holds 0 NaN, 0 +inf and 2 -inf values "
        "(--nonfinite ignore skips them, keep encodes them as AIMET does)",
    )


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--strict-symmetric"], "--strict-symmetric needs --symmetric"),
        (["--symmetric", "--strict-symmetric", "--unsigned"],
         "--strict-symmetric grids are signed; drop --unsigned"),
    ],
    ids=["without-symmetric", "unsigned"],
)  # fmt: skip
def test_strict_symmetric_misuse(x_npy, flags, message):
    assert_one_error_line(invoke(x_npy, *flags), f"qcalc: error: {message}")


def _missing(tmp_path):
    return tmp_path / "missing.npy", ["no such file"]


def _unknown_extension(tmp_path):
    path = tmp_path / "weights.pt"
    path.write_bytes(b"\x80\x02}q\x00.")
    return path, ["unknown file type"]


def _truncated_npy(tmp_path):
    path = tmp_path / "cut.npy"
    np.save(path, np.arange(24, dtype=np.float32).reshape(4, 6))
    path.write_bytes(path.read_bytes()[:-20])
    return path, ["truncated", "[4, 6]"]


def _header_only_npy(tmp_path):
    path = tmp_path / "head.npy"
    np.save(path, np.zeros((4, 6), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:100])
    return path, []


def _garbage_safetensors(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!" + b"x" * 32)
    return path, ["JSON"]


def _random_safetensors(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(bytes(range(200)))
    return path, []


def _tiny_safetensors(tmp_path):
    path = tmp_path / "tiny.safetensors"
    path.write_bytes(b"garbage")
    return path, []


def _object_npy(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([1, "a"], dtype=object), allow_pickle=True)
    return path, ["object", "pickle"]


def _garbage_npz(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_bytes(b"PK\x03\x04 this is not a zip archive")
    return path, []


@pytest.mark.parametrize(
    "make",
    [
        _missing, _unknown_extension, _truncated_npy, _header_only_npy, _garbage_safetensors,
        _random_safetensors, _tiny_safetensors, _object_npy, _garbage_npz,
    ],
    ids=lambda f: f.__name__.strip("_"),
)  # fmt: skip
def test_unreadable_input(tmp_path, x_npy, make):
    path, phrases = make(tmp_path)
    # a good input before the bad one: still no partial output
    result = invoke(x_npy, path, "--format", "json")
    line = assert_one_error_line(result, None, f"qcalc: error: {path}: ", *phrases)
    assert line.startswith(f"qcalc: error: {path}: ")


def test_unknown_format_is_a_usage_error(x_npy):
    result = invoke(x_npy, "--format", "xml")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "flags",
    [["--symmetric-offset", "middle"], ["--compute-dtype", "float16"], ["--nonfinite", "drop"],
     ["-b", "eight"], ["--no-such-flag"]],
    ids=["symmetric-offset", "compute-dtype", "nonfinite", "bitwidth-text", "unknown-flag"],
)  # fmt: skip
def test_bad_choices_are_usage_errors(x_npy, flags):
    result = invoke(x_npy, *flags)
    assert result.exit_code == 2
    assert result.stdout == "" and "Traceback" not in result.output


def test_no_input_is_a_usage_error():
    result = runner.invoke(app, ["encode"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output


# --- streams -------------------------------------------------------------------------------


def test_skipped_integer_tensors_are_a_note_on_stderr(checkpoint):
    for fmt in ("json", "jsonl", "csv", "table"):
        result = ok(checkpoint, "--format", fmt)
        (note,) = result.stderr.splitlines()
        assert note.startswith(f"qcalc: note: {checkpoint}: tensor 'steps': integer tensor")
        assert note.endswith("not encoded")
        assert "qcalc:" not in result.stdout and "steps" not in result.stdout
    json.loads(ok(checkpoint, "--format", "json").stdout)


def test_only_integer_tensors_is_notes_and_exit_0(tmp_path):
    path = tmp_path / "steps.safetensors"
    save_file({"steps": np.array([3], np.int64), "mask": np.ones(2, bool)}, str(path))
    result = ok(path, "--format", "json")
    assert json.loads(result.stdout) == []
    assert len(result.stderr.splitlines()) == 2
    assert all(line.startswith("qcalc: note: ") for line in result.stderr.splitlines())


def test_stdout_is_clean_when_piped(tmp_path, checkpoint):
    """A real process with pipes: stdout is only the JSON, stderr only the note."""
    done = subprocess.run(
        [sys.executable, "-m", "qcalc", "encode", str(checkpoint), "--format", "json"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(r["name"] for r in json.loads(done.stdout)) == ["a.bias", "a.weight", "b.weight"]
    assert done.stderr.splitlines() == [
        line for line in done.stderr.splitlines() if line.startswith("qcalc: note: ")
    ]
    assert len(done.stderr.splitlines()) == 1
    assert "\x1b" not in done.stdout + done.stderr  # no progress bar, no colour codes


def test_error_in_a_real_process_has_no_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "qcalc", "encode", str(tmp_path / "nope.npy")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == f"qcalc: error: {tmp_path / 'nope.npy'}: no such file or directory\n"


def test_closed_pipe_is_not_an_error(tmp_path):
    """`qcalc encode ... | head -1`: the reader leaves early; exit 0, nothing on stderr."""
    path = tmp_path / "wide.npy"
    np.save(path, np.random.default_rng(0).standard_normal((4000, 2)).astype(np.float32))
    proc = subprocess.Popen(
        [sys.executable, "-m", "qcalc", "encode", str(path), "--per-channel", "--format", "csv"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    )  # fmt: skip
    assert proc.stdout.readline().startswith(b"name,source,")
    proc.stdout.close()  # ~600 kB of rows are still to come: the next write fails
    stderr = proc.stderr.read()
    assert proc.wait(timeout=120) == 0
    assert stderr == b""


# --- version and help ----------------------------------------------------------------------


def test_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    built = [name for name in KERNELS if kernels.built(name)]
    extra = f"compiled kernels: {', '.join(built)}" if built else "numpy only"
    assert result.stdout == f"qcalc {qcalc.__version__} ({extra})\n"
    assert qcalc.__version__ == "0.1.0"


def test_python_dash_m_version(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "qcalc", "--version"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("qcalc 0.1.0 (")


def test_top_level_help():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "encode" in result.stdout and "--version" in result.stdout
    assert "Examples" in result.stdout


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_encode_help_lists_every_option(flag):
    result = runner.invoke(app, ["encode", flag], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in OPTIONS:
        assert option in result.stdout, option
    for choice in ("centered", "zero", "float32", "input", "error", "ignore", "keep",
                   "table", "json", "jsonl", "csv"):  # fmt: skip
        assert choice in result.stdout, choice
    assert "Examples" in result.stdout


def help_examples() -> list[list[str]]:
    """`qcalc encode ...` lines of the encode help, without any shell pipe after them."""
    lines = [line.strip() for line in ENCODE_HELP.splitlines()]
    return [line.split("|")[0].split()[2:] for line in lines if line.startswith("qcalc encode ")]


@pytest.mark.parametrize("args", help_examples(), ids=" ".join)
def test_help_examples_run(monkeypatch, args):
    monkeypatch.chdir(REPO)  # the examples name files in sample_tensors/
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()
    if "--format" in args and args[args.index("--format") + 1] == "jsonl":
        for line in result.stdout.splitlines():
            json.loads(line)


def test_help_examples_exist():
    assert len(help_examples()) >= 3
    assert os.path.isdir(REPO / "sample_tensors")
