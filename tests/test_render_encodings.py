"""qcalc.commands.render.encodings and render.text (and commands.progress): the table for
people (80 columns, middle ellipsis, per-channel summaries), exact and strict machine formats,
and the progress bar that only a terminal ever sees."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qcalc import Spec, encode_array
from qcalc.commands.progress import TerminalProgress
from qcalc.commands.render.encodings import FIELDS, exact_offset, table_row, write_table
from qcalc.commands.render.text import ellipsize_middle, exact_float, shorten_name, shorten_names
from helpers import rendered

LONG = "model.layers.31.self_attn.q_proj.weight_with_a_very_long_suffix"


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _reject_constant(token: str):
    raise ValueError(f"non-strict JSON constant {token}")


def realistic(spec: Spec) -> list:
    """An LLM-like checkpoint: bf16 matrices, a norm vector, an f32 bias, an f16 conv.

    Arrays are small; `shape` is set to the real size so the table shows real widths.
    """
    rng = np.random.default_rng(1)
    bf16 = ml_dtypes.bfloat16
    items = [
        ("model.embed_tokens.weight", (32000, 4096), (64, 8), bf16, 0.02),
        ("model.layers.0.input_layernorm.weight", (4096,), (4096,), bf16, 0.3),
        ("model.layers.31.self_attn.q_proj.weight", (4096, 4096), (4096, 4), bf16, 0.01),
        ("model.layers.31.mlp.down_proj.weight", (4096, 11008), (4096, 4), bf16, 1e-4),
        (LONG, (4096, 4096), (4096, 4), bf16, 1e-5),
        ("lm_head.bias", (32000,), (1000,), np.float32, 1e4),
        ("conv1.weight", (64, 3, 7, 7), (64, 3, 7, 7), np.float16, 0.5),
    ]
    encodings = []
    for name, shape, small, dtype, sigma in items:
        array = (rng.standard_normal(small) * sigma + 0.3 * sigma).astype(dtype)
        enc = encode_array(array, spec, name)
        encodings.append(dataclasses.replace(enc, shape=shape, source="model.safetensors"))
    return encodings


TABLE_SPECS = {
    "default": Spec(),
    "pc-sym-b4": Spec(per_channel=True, symmetric=True, bitwidth=4),
    "pc-asym-b16": Spec(per_channel=True, bitwidth=16),
    "pc-strict-b32": Spec(per_channel=True, symmetric=True, strict_symmetric=True, bitwidth=32),
    "pc-axis-1-unsigned-sym": Spec(per_channel=True, axis=-1, symmetric=True, signed=False),
}


def table(encodings, width: int) -> str:
    out = io.StringIO()
    write_table(encodings, out, width=width)
    return out.getvalue()


# --- table ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", TABLE_SPECS.values(), ids=TABLE_SPECS.keys())
def test_table_fits_80_columns(spec):
    encodings = realistic(spec)
    text = table(encodings, 80)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), "\n" + text
    assert "\x1b" not in text  # not a terminal: no colour codes
    assert all(line == line.rstrip() for line in lines)
    # a title (two lines for the longest grids), a header line, one row per tensor
    title = 2 if spec.bitwidth == 32 else 1
    assert len(lines) == title + 1 + len(encodings), "\n" + text
    lines = lines[title - 1 :]
    header = lines[1].split()
    assert header[0] == "tensor" and header[-4:] == ["min", "max", "scale", "offset"]
    # every value cell is whole: no rich truncation inside a cell ("…" only in names/spreads)
    for line, enc in zip(lines[2:], encodings):
        cells = line.split()
        assert cells[-1] == table_row(enc)[-1]
        assert cells[-2] == table_row(enc)[-2]


def test_long_names_are_abbreviated_then_ellipsised():
    text = table(realistic(Spec()), 80)
    names = [line.split()[0] for line in text.splitlines()[2:]]
    # model.layers.31.self_attn.q_proj.weight: leading components abbreviated, layer kept
    assert "m.l.31.s.q_proj.weight" in names
    # LONG does not fit even abbreviated: then its middle goes, start and end stay
    (name,) = [n for n in names if n.endswith("suffix")]
    head, tail = name.split("…")
    assert head.startswith("m.l.31.") and LONG.endswith(tail) and len(tail) >= 8


def test_short_names_are_not_ellipsised():
    text = table(realistic(Spec()), 80)
    for name in ("lm_head.bias", "conv1.weight", "model.embed_tokens.weight"):
        assert any(line.split()[0] == name for line in text.splitlines()), name


def test_wide_terminal_shows_everything():
    encodings = realistic(Spec(per_channel=True))
    text = table(encodings, 200)
    assert LONG in text
    assert all("…" not in line.split()[0] for line in text.splitlines()[2:])
    header = text.splitlines()[1].split()
    assert header == ["tensor", "dtype", "shape", "per", "min", "max", "scale", "offset"]
    assert "4096×11008" in text and "bf16" in text and "f16" in text


def test_per_channel_row_shows_channel_count_and_spread():
    encodings = realistic(Spec(per_channel=True, symmetric=True, bitwidth=4))
    text = table(encodings, 80)
    q_proj = next(e for e in encodings if e.name.endswith("q_proj.weight"))
    cells = table_row(q_proj)
    assert cells[3] == "4096 ch"
    lo, hi = cells[6].split("…")
    assert float(lo) == pytest.approx(float(np.min(q_proj.scale)), rel=5e-3)
    assert float(hi) == pytest.approx(float(np.max(q_proj.scale)), rel=5e-3)
    assert float(cells[4]) == pytest.approx(float(np.min(q_proj.min)), rel=5e-3)
    assert float(cells[5]) == pytest.approx(float(np.max(q_proj.max)), rel=5e-3)
    row = next(line for line in text.splitlines() if "4096 ch" in line and cells[6] in line)
    assert cells[6] in row
    # the norm vector stays per tensor, and says so
    norm = next(e for e in encodings if "layernorm" in e.name)
    assert table_row(norm)[3] == "tensor"
    assert "…" not in table_row(norm)[6]
    assert text.splitlines()[0].endswith(", per-channel, axis 0")


def test_per_channel_offset_spread_is_integers():
    enc = encode_array(
        np.array([[-1.0, 3.0], [-2.0, 0.5], [0.1, 0.2]], dtype=np.float32),
        Spec(per_channel=True),
    )
    lo, hi = table_row(enc)[7].split("…")
    assert (int(lo), int(hi)) == (int(np.min(enc.offset)), int(np.max(enc.offset)))


def test_one_dtype_moves_to_the_title():
    enc = encode_array(np.array([-1.0, 2.0], dtype=ml_dtypes.bfloat16), Spec(), "w")
    lines = table([enc], 80).splitlines()
    assert lines[0].startswith("bf16, 8-bit asymmetric unsigned grid [0, 255]")
    assert lines[1].split() == ["tensor", "shape", "min", "max", "scale", "offset"]
    assert lines[2].split()[0] == "w"


def test_table_rounds_for_people_and_marks_nan():
    enc = encode_array(
        np.array([-1.0, np.nan, 2.0], dtype=np.float32), Spec(nonfinite="keep"), "act"
    )
    cells = table_row(enc)
    assert cells[4:] == ["nan", "nan", "nan", "nan"]
    enc = encode_array(np.array([-1.0, 2.0], dtype=np.float32))
    assert table_row(enc)[4:] == ["-1", "2", "0.0118", "-85"]


def test_cli_table_fits_80_columns_when_piped(tmp_path, monkeypatch):
    from safetensors.numpy import save_file
    from typer.testing import CliRunner

    from qcalc.cli import app

    monkeypatch.delenv("COLUMNS", raising=False)
    path = tmp_path / "m.safetensors"
    rng = np.random.default_rng(0)
    save_file(
        {
            LONG: rng.standard_normal((64, 16)).astype(ml_dtypes.bfloat16),
            "model.norm.weight": rng.standard_normal(16).astype(ml_dtypes.bfloat16),
        },
        str(path),
    )
    for flags in ([], ["--per-channel", "--symmetric", "-b", "4"], ["--per-channel", "-b", "16"]):
        result = CliRunner().invoke(app, ["encode", str(path), *flags])
        assert result.exit_code == 0, result.output
        assert all(len(line) <= 80 for line in result.stdout.splitlines()), result.stdout
        assert "model.norm.weight" in result.stdout


def test_columns_variable_sets_the_width_of_a_piped_table(monkeypatch):
    encodings = realistic(Spec())
    monkeypatch.setenv("COLUMNS", "200")
    out = io.StringIO()
    write_table(encodings, out)
    assert LONG in out.getvalue()


def test_terminal_table_uses_the_terminal_width(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # shutil.get_terminal_size reads it first
    out = FakeTty()
    write_table(realistic(Spec(per_channel=True)), out)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # a terminal gets styles
    assert all(len(line) <= 80 for line in plain.splitlines()), plain


def test_encodings_without_dtype_or_shape_render():
    """Encodings read back from an encodings file know neither the tensor's dtype nor shape."""
    enc = encode_array(np.array([[-1.0, 2.0], [0.5, 1.0]], dtype=np.float32), Spec(), "w")
    enc = dataclasses.replace(enc, dtype=None, shape=None)
    cells = table_row(enc)
    assert cells[1:3] == ["?", "?"]
    lines = table([enc], 80).splitlines()
    assert lines[0].startswith("8-bit asymmetric")  # an unknown dtype: no column, no title
    assert lines[1].split()[:2] == ["tensor", "shape"] and lines[2].split()[:2] == ["w", "?"]
    (rec,) = json.loads(rendered([enc], "json"))
    assert (rec["dtype"], rec["shape"]) == (None, None)
    (row,) = csv.DictReader(io.StringIO(rendered([enc], "csv")))
    assert (row["dtype"], row["shape"]) == ("", "")


# --- ellipsize_middle ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, width, expected",
    [
        ("abcdef", 10, "abcdef"),
        ("abcdef", 6, "abcdef"),
        ("abcdef", 5, "ab…ef"),
        ("abcdefg", 6, "abc…fg"),
        ("abcdef", 2, "a…"),
        ("abcdef", 1, "…"),
        ("", 3, ""),
        (LONG, 21, "model.laye…ong_suffix"),
    ],
)
def test_ellipsize_middle(text, width, expected):
    assert ellipsize_middle(text, width) == expected


@given(st.text(min_size=0, max_size=80), st.integers(min_value=1, max_value=100))
def test_ellipsize_middle_keeps_start_and_end(text, width):
    short = ellipsize_middle(text, width)
    assert len(short) == min(len(text), width)
    if len(text) <= width:
        assert short == text
        return
    tail = (width - 1) // 2
    head = width - 1 - tail  # the start gets the odd character
    assert short[head] == "…"
    assert short[:head] == text[:head]
    assert short[head + 1 :] == text[len(text) - tail :]


# --- shorten_name --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, width, expected",
    [
        ("fc.weight", 20, "fc.weight"),
        ("model.layers.0.self_attn.q_proj.weight", 38, "model.layers.0.self_attn.q_proj.weight"),
        ("model.layers.0.self_attn.q_proj.weight", 37, "m.layers.0.self_attn.q_proj.weight"),
        ("model.layers.0.self_attn.q_proj.weight", 29, "m.l.0.self_attn.q_proj.weight"),
        ("model.layers.0.self_attn.q_proj.weight", 21, "m.l.0.s.q_proj.weight"),
        ("model.layers.0.self_attn.q_proj.weight", 16, "m.l.0.s.q.weight"),
        ("model.layers.0.self_attn.q_proj.weight", 12, "m.l.0.…eight"),  # then the middle
        ("a_very_long_name_without_dots", 10, "a_ver…dots"),
        ("layers.12.weight", 10, "l.12.…ight"),  # l.12.weight is 11
    ],
)
def test_shorten_name(name, width, expected):
    assert shorten_name(name, width) == expected


@given(st.lists(st.text("abc_0123", min_size=0, max_size=8), min_size=1, max_size=6),
       st.integers(min_value=1, max_value=60))
def test_shorten_name_fits_and_keeps_what_fits(parts, width):
    name = ".".join(parts)
    short = shorten_name(name, width)
    assert len(short) <= width or short == name
    if len(name) <= width:
        assert short == name


# --- exact numbers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (float("nan"), "NaN"),
        (np.float32("nan"), "NaN"),
        (float("inf"), "Infinity"),
        (np.float32("-inf"), "-Infinity"),
    ],
    ids=["nan", "f32-nan", "inf", "f32-neg-inf"],
)
def test_exact_float_spells_nonfinite_as_strings(value, expected):
    assert exact_float(value) == expected


F32_EDGES = {
    "zero": 0.0, "neg-zero": -0.0, "one-third": 1 / 3, "eps": np.finfo(np.float32).eps,
    "tiny": np.finfo(np.float32).tiny, "subnormal": np.finfo(np.float32).smallest_subnormal,
    "max": np.finfo(np.float32).max, "neg-max": -np.finfo(np.float32).max, "scale": 4 / 255,
}  # fmt: skip


@pytest.mark.parametrize("value", F32_EDGES.values(), ids=F32_EDGES.keys())
def test_exact_float_round_trips_float32_through_json(value):
    f = np.float32(value)
    out = exact_float(f)
    assert type(out) is float
    back = np.float32(json.loads(json.dumps(out, allow_nan=False)))
    assert back.view(np.uint32) == f.view(np.uint32)  # bit-identical, sign of zero too


@pytest.mark.parametrize(
    "value, expected",
    [(-128.0, -128), (np.float32(0), 0), (np.float32(-65535), -65535), (7.0, 7),
     (float("nan"), "NaN"), (float("inf"), "Infinity"), (float("-inf"), "-Infinity")],
)  # fmt: skip
def test_exact_offset(value, expected):
    out = exact_offset(value)
    assert out == expected and type(out) is type(expected)


@pytest.fixture
def with_nan():
    """A NaN tensor kept as AIMET does, and an ordinary per-channel one."""
    nan = encode_array(
        np.array([1.0, np.nan], dtype=np.float32), Spec(nonfinite="keep"), "nan_act"
    )
    inf = encode_array(
        np.array([[-np.inf, 1.0], [0.5, 2.0]], dtype=np.float32),
        Spec(nonfinite="keep", per_channel=True),
        "inf_w",
    )
    return [nan, inf]


def test_json_output_is_strict_json(with_nan):
    data = json.loads(rendered(with_nan, "json"), parse_constant=_reject_constant)
    assert [list(r) for r in data] == [list(FIELDS)] * 2
    assert data[0]["scale"] == data[0]["offset"] == ["NaN"]
    assert all(isinstance(v, float) and math.isfinite(v) for v in data[1]["min"])


def test_jsonl_lines_each_parse(with_nan):
    lines = rendered(with_nan, "jsonl").splitlines()
    assert len(lines) == 2
    parsed = [json.loads(line, parse_constant=_reject_constant) for line in lines]
    assert [r["name"] for r in parsed] == ["nan_act", "inf_w"]
    assert json.loads(rendered(with_nan, "json")) == parsed


def test_json_of_nothing_is_an_empty_array():
    assert json.loads(rendered([], "json")) == []
    assert rendered([], "jsonl") == ""


def test_csv_has_one_row_per_channel_with_its_index():
    array = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    per_channel = encode_array(array, Spec(per_channel=True, symmetric=True), "w")
    per_tensor = encode_array(array[0], Spec(symmetric=True), "b")
    rows = list(csv.DictReader(io.StringIO(rendered([per_channel, per_tensor], "csv"))))
    assert [(r["name"], r["channel"]) for r in rows] == [("w", str(c)) for c in range(5)] + [
        ("b", "0")
    ]
    for c, row in enumerate(rows[:5]):
        assert np.float32(float(row["scale"])) == per_channel.scale.ravel()[c]
        assert np.float32(float(row["min"])) == per_channel.min.ravel()[c]
        assert int(row["offset"]) == 0
        assert row["axis"] == "0" and row["encoding_shape"] == "[5, 1]"
    assert rows[5]["axis"] == "" and rows[5]["encoding_shape"] == "[]"
    header = rendered([per_tensor], "csv").splitlines()[0].split(",")
    assert header == [*FIELDS[:12], "channel", "min", "max", "scale", "offset"]


def test_csv_spells_nan_like_json(with_nan):
    rows = list(csv.DictReader(io.StringIO(rendered(with_nan, "csv"))))
    assert rows[0]["scale"] == "NaN" and rows[0]["offset"] == "NaN"
    assert len(rows) == 1 + 2


# --- progress ------------------------------------------------------------------------------


def run_progress(progress: TerminalProgress) -> None:
    progress.start(tensors=2, total_bytes=1000)
    for _ in range(2):
        progress.advance(500)
        progress.tensor_done()
    progress.close()


def test_progress_never_writes_to_a_non_terminal(capsys):
    stream = io.StringIO()
    progress = TerminalProgress(stream, show_after=0)
    assert not progress.enabled
    run_progress(progress)
    assert stream.getvalue() == ""
    assert capsys.readouterr() == ("", "")


def test_progress_draws_on_a_terminal_only(capsys):
    stream = FakeTty()
    progress = TerminalProgress(stream, show_after=0)
    assert progress.enabled
    run_progress(progress)
    assert stream.getvalue() != ""
    assert capsys.readouterr().out == ""


def test_progress_waits_before_drawing(capsys):
    stream = FakeTty()
    run_progress(TerminalProgress(stream, show_after=3600))
    assert stream.getvalue() == ""
    assert capsys.readouterr() == ("", "")


def test_progress_close_without_start_is_harmless():
    stream = FakeTty()
    TerminalProgress(stream, show_after=0).close()
    assert stream.getvalue() == ""


def test_shorten_names_keeps_distinct_names_distinct():
    gemma = [
        f"model.layers.10.{norm}.weight"
        for norm in (
            "input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
        )
    ]  # fmt: skip
    shown = shorten_names(gemma, 30)
    assert len(set(shown)) == len(gemma) and all(len(s) <= 30 for s in shown)
    # where abbreviation alone keeps them apart, it is used
    assert shorten_names(["model.layers.0.self_attn.q_proj.weight", "lm_head.weight"], 22) == [
        "m.l.0.s.q_proj.weight", "lm_head.weight",
    ]  # fmt: skip
