"""Hostile encodings files and recipes: every bad input is one QcalcError line naming the file,
the entry and the bound broken; nothing raises another exception, recurses without end,
hangs or reads without bound; whatever is accepted holds a valid grid and can be written back.

First one regression test per defect the fuzzing campaign found (exact messages), then
property tests (hypothesis) that mutate valid files and build random recipes, through the
library and, for a sample, through the command line.

The property tests run a few hundred derandomized examples (a few seconds); the long fuzz run
raises their count: ``QCALC_FUZZ_EXAMPLES=20000 python -m pytest tests/test_hostile_formats.py``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from golden_cases import BLOCK_CASES, golden_encoding, golden_file
from helpers import assert_one_error_line, sample_file
from qcalc.cli import app
from qcalc.core.spec import MAX_BINS, Spec
from qcalc.errors import FormatError, QcalcError, ReadError, RecipeError, SpecError
from qcalc.io import text as text_module
from qcalc.io.formats import VERSIONS, EncodingFile, diff, dumps, loads, read
from qcalc.io.recipe import RULE_KEYS, Recipe
from qcalc.ops.encode import encode_array

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT / "sample_tensors" / "seed.npy"
FUZZ = int(os.environ.get("QCALC_FUZZ_EXAMPLES", "0"))  # > 0: the long fuzz run
runner = CliRunner()


def examples(n: int) -> int:
    return max(n, FUZZ) if FUZZ else n


def fuzz_settings(n: int):
    """`n` derandomized examples; in the long fuzz run more, and random ones."""
    return settings(
        max_examples=examples(n),
        deadline=None,
        derandomize=not FUZZ,
        suppress_health_check=list(HealthCheck),
    )


def error_of(text: str, source: str = "f.json") -> str:
    with pytest.raises(FormatError) as info:
        loads(text, source=source)
    return str(info.value)


def doc_error(obj: Any) -> str:
    return error_of(json.dumps(obj))


def v2(**entry: Any) -> dict:
    """A 2.0.0 file of one entry named w (per-tensor int8 unless `entry` says otherwise; None
    drops a key)."""
    base = {"name": "w", "output_dtype": "int8", "y_scale": 0.5, **entry}
    return {"version": "2.0.0", "encodings": [{k: v for k, v in base.items() if v is not None}]}


def v1(**entry: Any) -> dict:
    """A 1.0.0 file of one parameter w (8-bit asymmetric per-channel unless changed)."""
    base = {"name": "w", "dtype": "INT", "bw": 8, "is_sym": False, "scale": [0.5, 0.25],
            "offset": [-3, 0], "enc_type": "PER_CHANNEL"}  # fmt: skip
    base.update(entry)
    return {"version": "1.0.0", "activation_encodings": [],
            "param_encodings": [{k: v for k, v in base.items() if v is not None}]}  # fmt: skip


def v0(**cell: Any) -> dict:
    """A 0.6.1 file of one per-tensor parameter w (8-bit asymmetric unless changed)."""
    base = {"min": -1.5, "max": 126.0, "scale": 0.5, "offset": -3, "bitwidth": 8,
            "dtype": "int", "is_symmetric": "False"}  # fmt: skip
    base.update(cell)
    return {"version": "0.6.1", "activation_encodings": {},
            "param_encodings": {"w": [{k: v for k, v in base.items() if v is not None}]}}


# --- regressions: encodings files ----------------------------------------------------------

W = "f.json: tensor 'w': "
SCALES = {
    "negative-2.x": (v2(y_scale=-0.5), W + "field 'y_scale' is -0.5, expected a finite number > 0"),
    "zero-1.0.0": (
        v1(scale=[0.5, 0]),
        W + "field 'scale' item 1 is 0, expected a finite number > 0",
    ),
    "negative-0.6.1": (
        v0(scale=-0.5, min=1.5, max=-126.0),
        W + "field 'scale' is -0.5, expected a finite number > 0",
    ),
    "boolean": (v2(y_scale=True), W + "field 'y_scale' is a boolean, expected a number"),
    "string": (v2(y_scale="0.5"), W + "field 'y_scale' is a string, expected a number"),
    "null": (v1(scale=[0.5, None]), W + "field 'scale' item 1 is null, expected a number"),
    "underflows-float32": (
        v2(y_scale=1e-50),
        W + "field 'y_scale' is 1e-50, which is 0 in float32 (expected a scale > 0)",
    ),
    "range-overflows-float32": (
        v2(y_scale=1e38, output_dtype="uint32"),
        W + "field 'y_scale' is 1e+38: the grid's 4294967295 steps of it overflow float32 "
        "(expected at most 7.923e+28)",
    ),
    "per-block": (
        v2(y_scale=[[0.5, 0.25], [0.5, -1.0]], axis=1, block_size=16, output_dtype="int4"),
        W + "field 'y_scale' item [1, 1] is -1.0, expected a finite number > 0",
    ),
    "lpbq-per-channel": (
        v2(axis=1, block_size=16, per_block_int_scale=[[1, 16], [2, 16]],
           per_channel_float_scale=[[0.5], [0.0]], output_dtype="int4", y_scale=None),
        W + "field 'per_channel_float_scale' item [1, 0] is 0.0, expected a finite number > 0",
    ),  # fmt: skip
}
NON_FINITE = {  # JSON tokens Python's parser accepts
    "nan-2.x": ('"y_scale": NaN', W + "field 'y_scale' is NaN, expected a finite number > 0"),
    "infinity": ('"y_scale": Infinity', W + "field 'y_scale' is Infinity, expected a finite "
                 "number > 0"),
    "1e400": ('"y_scale": 1e400', W + "field 'y_scale' is Infinity, expected a finite number > 0"),
    "minus-infinity": ('"y_scale": -Infinity', W + "field 'y_scale' is -Infinity, expected a "
                       "finite number > 0"),
}  # fmt: skip
OFFSETS = {
    "1.0.0-above-0": (
        v1(offset=[1, 0]),
        W + "field 'offset' item 0 is 1, expected -255 to 0 (the 8-bit grid, unsigned convention)",
    ),
    "0.6.1-below-grid": (
        v0(offset=-256, min=-128.0, max=-0.5),
        W + "field 'offset' is -256, expected -255 to 0 (the 8-bit grid, unsigned convention)",
    ),
    "2.x-int8": (
        v2(y_zero_point=1000),
        W + "field 'y_zero_point' is 1000, expected -128 to 127 (the int8 grid)",
    ),
    "2.x-uint8-per-channel": (
        v2(y_scale=[0.5, 0.25], y_zero_point=[0, -1], axis=0, output_dtype="uint8"),
        W + "field 'y_zero_point' item 1 is -1, expected 0 to 255 (the uint8 grid)",
    ),
    "2.x-huge": (
        v2(y_zero_point=10**400),
        W + "field 'y_zero_point' is ~10^400, expected -128 to 127 (the int8 grid)",
    ),
    "float": (v2(y_zero_point=1.5), W + "field 'y_zero_point' is a number, expected an integer"),
    "boolean": (v1(offset=[True, 0]), W + "field 'offset' item 0 is a boolean, expected an "
                "integer"),
    "symmetric-off-centre": (
        v1(is_sym=True, offset=[-3, -3]),
        W + "field 'offset' item 0 is -3, but 'is_sym' says symmetric: expected -128 (the grid "
        "centre) or 0",
    ),
    "symmetric-mixed": (
        v1(is_sym=True, offset=[-128, 0]),
        W + "field 'offset' item 1 is 0, but 'is_sym' says symmetric and the first offset is "
        "-128: a symmetric entry's offsets are all -128 or all 0",
    ),
    "0.6.1-symmetric-off-centre": (
        v0(is_symmetric="True"),
        W + "field 'offset' is -3, but 'is_symmetric' says symmetric: expected -128 (the grid "
        "centre) or 0",
    ),
}  # fmt: skip
MIN_MAX = {
    "min": (
        v0(min=-100.0),
        W + "field 'min' is -100.0, but 'scale' 0.5 and 'offset' -3 give -1.5 (scale × offset; "
        "they must agree within a relative 1e-05)",
    ),
    "max": (
        v0(max=1.0),
        W + "field 'max' is 1.0, but 'scale' 0.5 and 'offset' -3 give 126.0 (scale × (offset + "
        "255); they must agree within a relative 1e-05)",
    ),
    "nan": (v0(max=float("nan")), None),  # json.dumps writes NaN
    "string": (v0(min="-1.5"), W + "field 'min' is a string, expected a number"),
    "huge": (
        v0(min=10**400),
        W + "field 'min' is ~10^400, but 'scale' 0.5 and 'offset' -3 give -1.5 (scale × offset; "
        "they must agree within a relative 1e-05)",
    ),
}
BITWIDTHS = {
    "1-bit": (v1(bw=1), W + "field 'bw' is 1, expected 2 to 32"),
    "33-bit": (v0(bitwidth=33), W + "field 'bitwidth' is 33, expected 2 to 32"),
    "huge": (v1(bw=10**400), W + "field 'bw' is ~10^400, expected 2 to 32"),
    "uint1": (v2(output_dtype="uint1"), W + "field 'output_dtype' is 'uint1', expected 2 to 32 "
              "bits"),
    "digits": (v2(output_dtype="int" + "9" * 5000), None),
    "block-size": (
        v2(y_scale=[[0.5]], axis=1, block_size=2**31),
        W + "field 'block_size' is 2147483648, expected at most 2147483647",
    ),
    "channel-axis": (
        v2(y_scale=[0.5, 0.5], axis=10**400),
        W + "field 'axis' is ~10^400, expected -32 to 31",
    ),
}  # fmt: skip
WRONG_TYPES = {
    "number-for-list": (v1(scale=0.5), W + "field 'scale' is a number, expected an array"),
    "list-for-number": (
        v2(y_zero_point=[1]),
        W + "field 'y_zero_point' is an array, expected an integer",
    ),
    "nested-too-deep": (v1(scale=[[0.5], [0.25]]), W + "field 'scale' item 0 is an array, "
                        "expected a number"),
    "per-block-depth": (
        v2(y_scale=[[0.5, [0.25]], [0.5, 0.5]], axis=1, block_size=16),
        W + "field 'y_scale' item [0, 1] is an array, expected a number",
    ),
    "lpbq-x-number": (
        {"version": "2.1.0", "encodings": [{"name": "w", "output_dtype": "int4", "axis": 1,
         "block_size": 16, "y_scale": {"x": 3, "x_scale": [1.0], "axis": 0}}]},
        W + "field 'y_scale.x' is an integer, expected an array",
    ),
    "lpbq-x-scale-object": (
        {"version": "2.1.0", "encodings": [{"name": "w", "output_dtype": "int4", "axis": 1,
         "block_size": 16, "y_scale": {"x": [[1, 2]], "x_scale": {"a": 1}, "axis": 0}}]},
        W + "field 'y_scale.x_scale' is an object, expected an array",
    ),
    "0.6.1-is-symmetric-list": (
        v0(is_symmetric=[[["True"]]]),
        W + "field 'is_symmetric' is an array, expected \"True\" or \"False\"",
    ),
    "quantizer-args-nan": (
        {**v1(), "quantizer_args": {"param_bitwidth": float("nan")}},
        "f.json: field 'quantizer_args.param_bitwidth' is NaN, expected a finite number",
    ),
    "quantizer-args-deep": (
        {**v1(), "quantizer_args": {"a": [[[[[[[[[1]]]]]]]]]}},
        "f.json: field 'quantizer_args.a[0][0][0][0][0][0][0]' nests deeper than 8 levels",
    ),
}  # fmt: skip
TEXT = {
    "newline-in-name": (
        v2(name="a\nb", output_dtype="int8\n"),
        "f.json: tensor 'a\\nb': field 'output_dtype' is 'int8\\n', expected int<bits> or "
        "uint<bits>",
    ),
    "long-name": (
        v2(name="n" * 10000, y_scale=0),
        "f.json: tensor '" + "n" * 80 + "…" + "n" * 40 + "' (10,000 characters): field "
        "'y_scale' is 0, expected a finite number > 0",
    ),
    "lone-surrogate": (
        v2(name="\udc80"),
        "f.json: field 'encodings' item 0: the name '\\udc80' is not Unicode text (it holds a "
        "lone surrogate)",
    ),
    "version-controls": (
        {"version": "2.0.0\r\x1b[2J"},
        "f.json: field 'version' is '2.0.0\\r\\x1b[2J', expected one of 0.6.1, 1.0.0, 2.0.0, "
        "2.1.0",
    ),
    "duplicate-key": (
        '{"version": "2.0.0", "a\\u2028b": 1, "a\\u2028b": 2}',
        "f.json: key 'a\\u2028b' appears twice in one JSON object",
    ),
}
ENCODINGS = {
    f"{group}-{name}": case
    for group, cases in (("scale", SCALES), ("offset", OFFSETS), ("minmax", MIN_MAX),
                         ("bitwidth", BITWIDTHS), ("type", WRONG_TYPES), ("text", TEXT))
    for name, case in cases.items()
}  # fmt: skip


@pytest.mark.parametrize("content, message", ENCODINGS.values(), ids=ENCODINGS.keys())
def test_bad_encodings_file(content, message):
    text = content if isinstance(content, str) else json.dumps(content)
    error = error_of(text)
    if message is not None:
        assert error == message
    assert_message(error, "f.json")


@pytest.mark.parametrize("token, message", NON_FINITE.values(), ids=NON_FINITE.keys())
def test_non_finite_json_numbers(token, message):
    text = '{"version": "2.0.0", "encodings": [{"name": "w", "output_dtype": "int8", %s}]}'
    assert error_of(text % token) == message


def test_huge_integers_and_deep_nesting_are_one_line_errors():
    huge = '{"version": "2.0.0", "encodings": [], "x": 1%s}' % ("0" * 5000)
    assert error_of(huge) == "f.json: not valid JSON: an integer has more than 4300 digits"
    deep = "[" * 100_000 + "]" * 100_000
    message = "f.json: not valid JSON: arrays or objects nested deeper than qcalc reads"
    assert error_of(deep) == message
    assert error_of('{"version": "2.0.0", "encodings": %s}' % deep) == message


def test_what_agrees_is_accepted():
    """The bounds keep every legitimate file: a min written in double precision (one ulp off
    the float32 product), the pre-2025 symmetric offset 0, zero points at the grid's ends,
    the largest scale whose range fits float32, a subnormal float32 scale."""
    data = loads(json.dumps(v0(min=-1.5000000000000002, max=126.00000000000001)))
    assert float(data.params[0].min) == -1.5
    zero = loads(json.dumps(v1(is_sym=True, offset=[0, 0]))).params[0]
    assert (zero.spec.symmetric, zero.spec.symmetric_offset, zero.qmin) == (True, "zero", 0)
    ends = loads(json.dumps(v2(y_scale=[0.5, 0.5], y_zero_point=[-128, 127], axis=0)))
    assert ends.params[0].offset.tolist() == [128.0, -127.0]
    largest = float(np.finfo(np.float32).max) / 255
    wide = loads(json.dumps(v2(y_scale=largest, output_dtype="uint8"))).activations[0]
    assert np.isfinite(wide.max) and wide.max > 0
    tiny = loads(json.dumps(v2(y_scale=1e-45))).activations[0]
    assert tiny.scale == np.float32(1e-45) and np.isfinite(tiny.min)
    for version in VERSIONS:
        assert diff(ends, loads(dumps(ends, version))).equal


def test_every_golden_file_still_reads():
    for version in VERSIONS:
        data = golden_file(version)
        assert diff(data, loads(dumps(data, version))).equal


def test_duplicate_names_are_found_in_linear_time():
    """The check compared every name with every other; 4,000 names sharing a 10 kB prefix
    took minutes."""
    prefix = "p" * 10_000
    entries = [{"name": f"{prefix}{i}", "output_dtype": "uint8", "y_scale": 0.5}
               for i in range(4000)]  # fmt: skip
    entries.append(dict(entries[-1]))
    start = time.perf_counter()
    message = error_of(json.dumps({"version": "2.0.0", "encodings": entries}))
    assert time.perf_counter() - start < 10
    assert message == (
        f"f.json: tensor '{'p' * 80}…{'p' * 36}3999' (10,004 characters) appears more than once"
    )


def test_files_larger_than_the_limit_are_refused_before_reading(tmp_path, monkeypatch):
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(text_module.MAX_TEXT_BYTES + 1)  # sparse: nothing is written or read
    with pytest.raises(ReadError) as error:
        read(big)
    assert str(error.value) == (
        f"{big}: is 1,073,741,825 bytes, more than the 1 GiB qcalc reads into memory"
    )
    small = tmp_path / "small.json"
    small.write_text(json.dumps(v2()))
    monkeypatch.setattr(text_module, "MAX_TEXT_BYTES", 10)
    with pytest.raises(ReadError, match=r"^.*small\.json: is \d+ bytes, more than the 10 bytes"):
        read(small)


def test_dumps_refuses_what_json_cannot_hold():
    data = dataclasses.replace(loads(json.dumps(v1())), quantizer_args={"x": float("nan")})
    with pytest.raises(FormatError, match=r"^cannot be written as JSON \(ValueError: "):
        dumps(data, "1.0.0")


def test_diff_refuses_nan_tolerance():
    with pytest.raises(QcalcError, match=r"^--rtol and --atol must be numbers >= 0"):
        diff([], [], rtol=float("nan"))


def test_cli_prints_one_line_for_a_hostile_file(tmp_path):
    path = tmp_path / "e.json"
    path.write_text(json.dumps(v2(name="x\ny", y_scale=-1)))
    for args in (["show", path], ["diff", path, path], ["convert", path, "--to", "1.0.0", "-o",
                                                       tmp_path / "o.json"]):  # fmt: skip
        result = runner.invoke(app, [str(a) for a in args])
        assert_one_error_line(
            result,
            f"qcalc: error: {path}: tensor 'x\\ny': field 'y_scale' is -1, expected a finite "
            f"number > 0",
        )
    assert not (tmp_path / "o.json").exists()


# --- regressions: recipes and settings ----------------------------------------------------

R = 'r.toml: rule 1 (match "*"): '
RECIPES = {
    "deep-array": ("x = " + "[" * 5000 + "]" * 5000, "r.toml: invalid TOML: arrays or tables "
                   "nested too deeply"),
    "num-bins-1e8": ("num_bins = 100000000", R + "number of bins 100000000 must be at most "
                     "65536 (AIMET's default is 2048)"),
    "num-bins-2^62": (f"num_bins = {2**62}", R + f"number of bins {2**62} must be at most 65536 "
                      "(AIMET's default is 2048)"),
    "percentile-10^400": ("percentile = 1" + "0" * 400, R + "percentile ~10^400 is out of range "
                          "(50..100)"),
    "percentile-1e400": ("percentile = 1e400", R + "percentile inf is out of range (50..100)"),
    "percentile-nan": ("percentile = nan", R + "percentile nan is out of range (50..100)"),
    "percentile-inf": ("percentile = -inf", R + "percentile -inf is out of range (50..100)"),
    "decompressed-10^400": ("decompressed_bitwidth = 1" + "0" * 400, R + "decompressed bitwidth "
                            "~10^400 is out of range (2..32)"),
    "decompressed-33": ("decompressed_bitwidth = 33", R + "decompressed bitwidth 33 is out of "
                        "range (2..32)"),
    "bitwidth-10^400": ("bitwidth = 1" + "0" * 400, R + "bitwidth ~10^400 is out of range "
                        "(2..32)"),
    "axis-10^400": ("axis = -1" + "0" * 400, R + "axis -~10^400 is out of range (-64..63)"),
    "block-axis": ("block_axis = 64", R + "block axis 64 is out of range (-64..63)"),
    "block-size-10^400": ("block_size = 1" + "0" * 400, R + "block size ~10^400 must be at most "
                          "2147483647"),
    "digits": ("bitwidth = 1" + "0" * 5000, "r.toml: invalid TOML: exceeds the limit (4300 "
               "digits) for integer string conversion"),
    "control-characters": ('kind = "a\\u2028\\u0000"', R + 'kind must be one of "param", '
                           '"activation", "any", got "a\\u2028\\x00"'),
}  # fmt: skip


@pytest.mark.parametrize("setting, message", RECIPES.values(), ids=RECIPES.keys())
def test_bad_recipe(setting, message):
    with pytest.raises(RecipeError) as error:
        Recipe.from_text(f'[[rule]]\nmatch = "*"\n{setting}\n', "r.toml")
    assert str(error.value) == message
    assert_message(str(error.value), "r.toml")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_bins=MAX_BINS + 1), "number of bins 65537 must be at most 65536 (AIMET's "
         "default is 2048)"),
        (dict(percentile=10**400), "percentile ~10^400 is out of range (50..100)"),
        (dict(bitwidth="8"), "bitwidth must be an integer, got '8'"),
        (dict(axis=2.0), "axis must be an integer, got 2.0"),
        (dict(percentile="99"), "percentile must be a number, got '99'"),
        (dict(decompressed_bitwidth=10**100000), "decompressed bitwidth ~10^100000 is out of "
         "range (2..32)"),
    ],
)  # fmt: skip
def test_spec_bounds(kwargs, message):
    with pytest.raises(SpecError) as error:
        Spec(**kwargs)
    assert str(error.value) == message
    assert Spec(num_bins=MAX_BINS).bins == MAX_BINS


def test_recipe_from_a_device_or_too_large(tmp_path):
    with pytest.raises(RecipeError) as error:
        Recipe.load("/dev/zero")
    assert str(error.value) == (
        "/dev/zero: cannot read recipe: is a character device (only regular files and pipes are read)"
    )
    big = tmp_path / "big.toml"
    with open(big, "wb") as f:
        f.truncate((1 << 20) + 1)
    with pytest.raises(RecipeError) as error:
        Recipe.load(big)
    assert str(error.value) == (
        f"{big}: is 1,048,577 bytes, more than the 1 MiB qcalc reads into memory"
    )


def test_cli_num_bins_and_recipe_bounds(tmp_path):
    result = runner.invoke(app, ["encode", str(SEED), "--num-bins", "100000000"])
    assert_one_error_line(
        result,
        "qcalc: error: number of bins 100000000 must be at most 65536 (AIMET's default is 2048)",
    )
    recipe = tmp_path / "r.toml"
    recipe.write_text('[[rule]]\nmatch = "seed"\ndecompressed_bitwidth = 1' + "0" * 400 + "\n")
    result = runner.invoke(app, ["encode", str(SEED), "--recipe", str(recipe)])
    assert_one_error_line(
        result,
        f'qcalc: error: {recipe}: rule 1 (match "seed"): decompressed bitwidth ~10^400 is out '
        f"of range (2..32)",
    )


# --- the contract, checked on anything ----------------------------------------------------


def assert_message(message: str, source: str) -> None:
    """One printable line, naming the file first, of reasonable length."""
    assert message.startswith(f"{source}: "), message
    assert len(message.splitlines()) == 1 and message.isprintable(), repr(message)
    assert len(message) < 1000, message


def assert_valid(data: EncodingFile) -> None:
    """What an accepted file holds: finite grids with scales > 0 and offsets on the grid, that
    every version writes back (or refuses with FormatError) and reads back equal."""
    for enc in data.encodings:
        assert np.isfinite(enc.scale).all() and (enc.scale > 0).all(), enc.name
        assert np.isfinite(enc.min).all() and np.isfinite(enc.max).all(), enc.name
        assert (enc.min <= 0).all() and (enc.max >= 0).all(), enc.name
        assert (enc.offset == np.round(enc.offset)).all()
        assert (-enc.offset >= enc.qmin).all() and (-enc.offset <= enc.qmax).all(), enc.name
        if enc.per_channel_scale is not None:
            assert (enc.per_channel_scale > 0).all() and np.isfinite(enc.per_channel_scale).all()
    for version in VERSIONS:
        try:
            text = dumps(data, version)
        except FormatError as error:
            assert len(str(error).splitlines()) == 1 and str(error).isprintable()
            continue
        back = loads(text, source="back.json")
        if version == data.version:
            assert diff(data, back).equal, version


def check_text(text: str, source: str = "f.json"):
    try:
        data = loads(text, source=source)
    except FormatError as error:
        assert_message(str(error), source)
        return None
    assert_valid(data)
    return data


# --- hostile encodings files: mutations of valid ones -------------------------------------


def _base_docs() -> list[dict]:
    """Small valid files of every version (per-tensor, per-channel, per-block, LPBQ entries)."""
    sample = sample_file()
    lpbq = next(c for c in BLOCK_CASES if c["config"]["granularity"] == "lpbq")
    blocks = [golden_encoding(BLOCK_CASES[0], "blk.weight"), golden_encoding(lpbq, "lp.weight")]
    docs = []
    for version in VERSIONS:
        params = [*sample.params, *(blocks if version != "0.6.1" else [])]
        data = EncodingFile(params=params, activations=sample.activations)
        docs.append(json.loads(dumps(data, version)))
    return docs


BASES = _base_docs()
def _golden_subset(version: str) -> EncodingFile:
    """Every seventh golden encoding a version holds (all grids, a few dozen entries)."""
    data = golden_file(version)
    return EncodingFile(params=data.params[::7], activations=data.activations[::7])


GOLDEN_BASES = [json.loads(dumps(_golden_subset(v), v)) for v in VERSIONS]


class Raw:
    """JSON text put in place as it is (tokens json.dumps cannot write, deep nesting)."""

    def __init__(self, text: str):
        self.text = text


def serialize(doc: Any) -> str:
    raws: list[str] = []

    def default(value):
        if isinstance(value, Raw):
            raws.append(value.text)
            return f"@@RAW{len(raws) - 1}@@"
        raise TypeError(type(value))

    text = json.dumps(doc, default=default)
    for i, raw in enumerate(raws):
        text = text.replace(f'"@@RAW{i}@@"', raw)
    return text


EXTREMES = [
    0, -0.0, 1, -1, 2, 3, 7, 8, 15, 16, 31, 32, 33, 64, 127, 128, -127, -128, 255, 256, -255,
    -256, 2**31 - 1, 2**31, -(2**31), 2**32 - 1, 2**32, 2**53 + 1, 2**63, -(2**63) - 1,
    10**400, -(10**400), 0.5, -0.5, 1e-45, 1e-50, -1e-50, 1.17e-38, 1e30, 1e38, 3.4e38, 1e39,
    1e308, float("nan"), float("inf"), float("-inf"), 1.0000001, 0.49999999,
]  # fmt: skip
WORDS = [
    "", "w", "INT", "FLOAT", "PER_TENSOR", "PER_CHANNEL", "PER_BLOCK", "LPBQ", "VECTOR", "int",
    "int4", "int8", "uint8", "int32", "uint32", "int64", "uint1", "float16", "True", "False",
    "1.0.0", "2.0.0", "0.6.1", "2.1.0", "a\nb", "\x00", "\u2028", "\ud800", "\x1b[31m", "é",
    "x" * 300, "0.weight", "2.weight", "input", "name", "scale", "offset",
]  # fmt: skip
RAWS = ["1e400", "-1e400", "1e-400", "NaN", "Infinity", "-Infinity", "1" + "0" * 5000, "-0"]
scalars = st.one_of(
    st.sampled_from(EXTREMES),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.sampled_from(WORDS),
    st.text(max_size=12),
)
def _json_containers(inner):
    return st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(WORDS), inner, max_size=3)


json_values = st.recursive(scalars, _json_containers, max_leaves=8)
hostile = st.one_of(
    json_values,
    st.sampled_from(RAWS).map(Raw),
    st.integers(1, 100_000).map(lambda d: Raw("[" * d + "]" * d)),
    st.integers(1, 50).map(lambda d: Raw("[" * d + "0.5" + "]" * d)),
    st.tuples(st.sampled_from([0.5, 1, -128, 3, "x", None]), st.integers(0, 100_000)).map(
        lambda t: [t[0]] * t[1]
    ),
)


def _paths(node: Any, path: tuple = ()) -> list[tuple]:
    """Every path to a value in the document."""
    found = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node[:6]):
            found += _paths(value, path + (i,))
    return found


def _at(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def mutated_docs(draw, bases=BASES) -> Any:
    doc = json.loads(json.dumps(draw(st.sampled_from(bases))))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        if not path:
            if draw(st.booleans()):
                return draw(hostile)
            continue
        parent, key = _at(doc, path[:-1]), path[-1]
        if isinstance(parent, Raw):
            continue
        how = draw(st.sampled_from(["replace", "replace", "extreme", "number", "delete", "extra",
                                    "duplicate", "rename", "wrap", "unwrap"]))  # fmt: skip
        value = parent[key]
        if how == "replace":
            parent[key] = draw(hostile)
        elif how == "extreme" and isinstance(value, (int, float, list)):
            extreme = draw(st.sampled_from(EXTREMES))
            parent[key] = [extreme] * len(value) if isinstance(value, list) else extreme
        elif how == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
            factor = draw(st.sampled_from([-1, 0, 2, 0.5, 1e-40, 1e40, 10**30, 1.000001]))
            try:
                changed = value * factor + draw(st.sampled_from([0, 0, 1, -1]))
            except OverflowError:
                changed = value
            finite = not isinstance(changed, float) or math.isfinite(changed)
            parent[key] = changed if finite else value
        elif how == "delete":
            del parent[key]
        elif how == "extra" and isinstance(value, dict):
            value[draw(st.sampled_from(WORDS + list(RULE_KEYS)))] = draw(hostile)
        elif how == "duplicate" and isinstance(parent, list):
            parent.append(value)
        elif how == "duplicate" and isinstance(parent, dict) and len(path) == 2:
            parent[f"{key}"[::-1] or "x"] = value
            if draw(st.booleans()) and isinstance(value, list):
                parent[key] = [*value, *value]
        elif how == "rename" and isinstance(value, dict) and "name" in value:
            value["name"] = draw(st.sampled_from(WORDS))
        elif how == "wrap":
            parent[key] = [value]
        elif how == "unwrap" and isinstance(value, list) and value:
            parent[key] = value[0]
    return doc


@fuzz_settings(300)
@given(mutated_docs())
def test_mutated_files_keep_the_contract(doc):
    check_text(serialize(doc))


@fuzz_settings(30)
@given(mutated_docs(GOLDEN_BASES))
def test_mutated_golden_files_keep_the_contract(doc):
    check_text(serialize(doc))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hostile")


def read_bytes(scratch: Path, raw: bytes) -> tuple[str, Any]:
    """(the path as messages name it, what read() gave or the FormatError it raised)."""
    path = scratch / "f.json"
    path.write_bytes(raw)
    try:
        return str(path), read(path)
    except FormatError as error:
        return str(path), error


@fuzz_settings(100)
@given(st.sampled_from(BASES).map(serialize), st.data())
def test_corrupted_text_keeps_the_contract(scratch, text, data):
    """Cut, spliced or byte-flipped text, read from a file (so non-UTF-8 is reachable)."""
    raw = bytearray(text.encode())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw)))
        how = data.draw(st.sampled_from(["cut", "insert", "flip", "delete"]))
        if how == "cut":
            del raw[at:]
        elif how == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8) | st.sampled_from(
                [b"\xff", b"\xc3", b"[", b"{", b"]", b"}", b",", b'"', b"\\", b"NaN", b"-", b"e9"]
            ))  # fmt: skip
        elif how == "flip" and at < len(raw):
            raw[at] = data.draw(st.integers(0, 255))
        elif how == "delete" and at < len(raw):
            del raw[at]
    source, result = read_bytes(scratch, bytes(raw))
    check_result(source, result)


def check_result(source: str, result: Any) -> None:
    if isinstance(result, FormatError):
        assert_message(str(result), source)
    else:
        assert_valid(result)


@fuzz_settings(40)
@given(st.binary(max_size=200))
def test_random_bytes_keep_the_contract(scratch, raw):
    check_result(*read_bytes(scratch, raw))


# --- hostile recipes ----------------------------------------------------------------------

TOML_WORDS = ["*", "seed", "s*", "*.weight", "[", "[!a]", "**", "", "\n", "\u2028", "param",
              "activation", "any", "minmax", "percentile", "sqnr", "tf-enhanced", "x" * 300]
toml_scalars = st.one_of(
    st.sampled_from([0, 1, -1, 2, 4, 8, 16, 32, 33, 64, -65, 50, 99, 100, 101, MAX_BINS,
                     MAX_BINS + 1, 2**31, 2**62, 2**63, 10**400, -(10**400)]),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([Raw("1e400"), Raw("-1e400"), Raw("nan"), Raw("+inf"), Raw("1979-05-27"),
                     Raw("07:32:00"), Raw("0x10"), Raw("1_000")]),
    st.booleans(),
    st.sampled_from(TOML_WORDS),
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=10),
)  # fmt: skip
def _toml_containers(inner):
    keys = st.sampled_from(["a", "b", "match"])
    return st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=2)


toml_values = st.one_of(
    st.recursive(toml_scalars, _toml_containers, max_leaves=5),
    st.integers(1, 6000).map(lambda d: Raw("[" * d + "]" * d)),
)


def toml(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return '"' + "".join(
            ch if ch.isprintable() and ch not in '"\\' else f"\\u{ord(ch):04x}"
            if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}" for ch in value
        ) + '"'  # fmt: skip
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {toml(v)}" for k, v in value.items()) + "}"


recipe_keys = st.sampled_from([*RULE_KEYS, *RULE_KEYS, "bitwdith", "nonfinite", "x"])
rules = st.lists(
    st.dictionaries(recipe_keys, st.one_of(toml_values, toml_scalars), max_size=5).map(
        lambda d: {"match": d.pop("match", "*"), **d} if len(d) % 3 else d
    ),
    min_size=0,
    max_size=4,
)
BASE_SPECS = [
    Spec(),
    Spec(bitwidth=4, symmetric=True, per_channel=True),
    Spec(symmetric=True, block_size=2, lpbq=True, bitwidth=4),
    Spec(analyzer="sqnr", num_bins=64),
]
SEED_ARRAY = np.load(SEED)


def recipe_text(tables: list[dict]) -> str:
    return "".join(
        "[[rule]]\n" + "".join(f"{json.dumps(k)} = {toml(v)}\n" for k, v in table.items())
        for table in tables
    )


def check_recipe(text: str) -> None:
    try:
        recipe = Recipe.from_text(text, "r.toml")
    except RecipeError as error:
        assert_message(str(error), "r.toml")
        return
    recipe.unmatched({"param": ["seed", "x.weight"], "activation": ["a"]})
    for base in BASE_SPECS:
        for name, kind in (("seed", "param"), ("x.weight", "param"), ("a", "activation")):
            try:
                spec = recipe.spec_for(name, kind, base)
            except RecipeError as error:
                assert_message(str(error), "r.toml")
                continue
            if spec is None or name != "seed":
                continue
            try:
                enc = encode_array(SEED_ARRAY, spec, "seed")
            except QcalcError as error:
                assert len(str(error).splitlines()) == 1
                continue
            assert np.isfinite(enc.scale).all() and (enc.scale > 0).all()


@fuzz_settings(250)
@given(rules)
def test_random_recipes_keep_the_contract(tables):
    check_recipe(recipe_text(tables))


@fuzz_settings(30)
@given(st.text(max_size=300))
def test_random_recipe_text_keeps_the_contract(text):
    check_recipe(text)


# --- the command line, on a sample --------------------------------------------------------


def assert_cli(result, allowed: tuple[int, ...]) -> None:
    assert result.exit_code in allowed, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        assert_one_error_line(result)
    else:
        assert isinstance(result.exception, (SystemExit, type(None))), result.exception


@fuzz_settings(40)
@given(mutated_docs(), st.data())
def test_cli_show_and_diff_keep_the_contract(doc, data):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path, base = Path(tmp) / "e.json", Path(tmp) / "base.json"
        path.write_text(serialize(doc))
        base.write_text(serialize(data.draw(st.sampled_from(BASES))))
        result = runner.invoke(app, ["show", str(path), "--format", "jsonl"])
        assert_cli(result, (0, 2))
        if result.exit_code == 0:
            for line in result.stdout.splitlines():
                record = json.loads(line)  # strict: no NaN / Infinity tokens
                assert all(s > 0 and math.isfinite(s) for s in record["scale"]), record
                assert all(isinstance(v, (int, float)) and math.isfinite(v)
                           for v in record["min"] + record["max"]), record  # fmt: skip
            assert_cli(runner.invoke(app, ["show", str(path)]), (0,))
        assert_cli(runner.invoke(app, ["diff", str(base), str(path)]), (0, 1, 2))


@fuzz_settings(30)
@given(rules)
def test_cli_encode_with_a_recipe_keeps_the_contract(tables):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "r.toml"
        path.write_text(recipe_text(tables))
        result = runner.invoke(app, ["encode", str(SEED), "--recipe", str(path)])
        assert_cli(result, (0, 2))
