"""`qcalc ls`: statistics (hand-computed, against numpy, chunked == one-shot, exact for
integers), every reader, every format, the table at 80 columns and the CLI's exit codes."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from fractions import Fraction
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

from qcalc.cli import app
from qcalc.commands.ls import HELP as LS_HELP
from qcalc.errors import FilterError, ReadError
from qcalc.ops.inventory import TensorInfo, exact_sums, inventory, tensor_info
from qcalc.commands.render.inventory import file_labels, render_inventory, size_text
from qcalc.commands.render.text import pack
from qcalc.io.readers import Skipped, TensorRef, open_input

REPO = Path(__file__).resolve().parents[1]
KEYS = ["name", "dtype", "shape", "elements", "bytes", "file", "min", "max", "mean", "std",
        "nan", "inf", "op", "role", "axis"]  # fmt: skip
BF16 = np.dtype(ml_dtypes.bfloat16)
runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_columns(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)


def ref_of(array: np.ndarray, name: str = "t") -> TensorRef:
    return TensorRef(name, "<array>", array.dtype, array.shape, lambda: array)


def info_of(array: np.ndarray, chunk_bytes: int = 1 << 20) -> TensorInfo:
    return tensor_info(ref_of(np.asarray(array)), chunk_bytes)


def numpy_stats(array: np.ndarray) -> tuple:
    """The reference, on the whole array at once: float64 over the finite values."""
    values = np.asarray(array).astype(np.float64).ravel()
    finite = values[np.isfinite(values)]
    nan = int(np.isnan(values).sum())
    inf = int(np.isinf(values).sum())
    if finite.size == 0:
        return None, None, None, None, nan, inf
    return finite.min(), finite.max(), finite.mean(), finite.std(), nan, inf


def assert_matches_numpy(info: TensorInfo, array: np.ndarray, rtol: float = 1e-12) -> None:
    lo, hi, mean, std, nan, inf = numpy_stats(array)
    assert (info.min, info.max, info.nan_count, info.inf_count) == (lo, hi, nan, inf)
    if lo is None:
        assert (info.mean, info.std) == (None, None)
        return
    scale = max(abs(lo), abs(hi))  # a mean near 0 is only as exact as the values' magnitude
    assert info.mean == pytest.approx(mean, rel=rtol, abs=rtol * scale)
    assert info.std == pytest.approx(std, rel=rtol, abs=rtol * scale)


def ls(*args: str):
    return runner.invoke(app, ["ls", *map(str, args)])


def ok(*args: str):
    result = ls(*args)
    assert result.exit_code == 0, result.output
    return result


# -------------------------------------------------------------------------------- statistics


def test_hand_computed_stats():
    # [[1, 2], [3, 4]]: mean 10/4 = 2.5; deviations ±1.5, ±0.5 -> variance
    # (2.25 + 0.25 + 0.25 + 2.25) / 4 = 1.25, std sqrt(1.25).
    info = info_of(np.array([[1, 2], [3, 4]], np.float32))
    assert (info.min, info.max, info.mean, info.std) == (1.0, 4.0, 2.5, math.sqrt(1.25))
    assert (info.elements, info.nbytes, info.shape, info.dtype) == (4, 16, (2, 2), "float32")
    assert (info.nan_count, info.inf_count) == (0, 0)


def test_nan_and_inf_are_counted_and_left_out():
    # finite values 1 and 3: min 1, max 3, mean 2, deviations ±1 -> std 1.
    values = np.array([1, np.nan, np.inf, -np.inf, 3, np.nan], np.float32)
    info = info_of(values)
    assert (info.min, info.max, info.mean, info.std) == (1.0, 3.0, 2.0, 1.0)
    assert (info.nan_count, info.inf_count) == (2, 2)
    for chunk_bytes in (1, 4, 8):  # NaN / inf alone in a chunk, or with finite values
        assert info_of(values, chunk_bytes) == info


@pytest.mark.parametrize(
    "values", [[np.nan, np.nan], [np.inf, np.nan, -np.inf]], ids=["nan", "nonfinite"]
)
def test_no_finite_value_gives_no_statistics(values):
    info = info_of(np.array(values, np.float16), chunk_bytes=2)
    assert (info.min, info.max, info.mean, info.std) == (None, None, None, None)
    assert info.nan_count + info.inf_count == len(values)


@pytest.mark.parametrize("shape", [(0,), (3, 0)])
@pytest.mark.parametrize("dtype", [np.float32, BF16, np.int64])
def test_empty_tensors_are_listed_without_statistics(shape, dtype):
    info = info_of(np.zeros(shape, dtype))
    assert (info.elements, info.nbytes, info.shape) == (0, 0, shape)
    assert (info.min, info.max, info.mean, info.std, info.nan_count) == (None,) * 4 + (0,)


def test_scalar():
    info = info_of(np.array(-2.5, np.float64))
    assert (info.shape, info.min, info.max, info.mean, info.std) == ((), -2.5, -2.5, -2.5, 0.0)


FLOATS = {
    "f32": np.dtype(np.float32),
    "f16": np.dtype(np.float16),
    "bf16": BF16,
    "f64": np.dtype(np.float64),
    "f32-big-endian": np.dtype(">f4"),
    "f8e4m3": np.dtype(ml_dtypes.float8_e4m3fn),
    "f8e5m2": np.dtype(ml_dtypes.float8_e5m2),
}


@pytest.mark.parametrize("dtype", FLOATS.values(), ids=FLOATS.keys())
def test_chunked_equals_one_shot_equals_numpy(dtype):
    rng = np.random.default_rng(7)
    array = (rng.standard_normal((37, 23)) * 3 + 0.5).astype(dtype)
    array[4, 5] = np.nan
    if dtype != np.dtype(ml_dtypes.float8_e4m3fn):  # e4m3fn has no inf
        array[9, 0], array[30, 22] = np.inf, -np.inf
    whole = info_of(array, chunk_bytes=1 << 30)
    assert_matches_numpy(whole, array)
    for chunk_bytes in (1, 3, 64, 1000):  # rows split into pieces, several rows per chunk
        chunked = info_of(array, chunk_bytes)
        assert (chunked.min, chunked.max, chunked.nan_count, chunked.inf_count) == (
            whole.min, whole.max, whole.nan_count, whole.inf_count
        )  # fmt: skip
        assert chunked.mean == pytest.approx(whole.mean, rel=1e-13)
        assert chunked.std == pytest.approx(whole.std, rel=1e-13)


def test_fortran_order_and_long_rows():
    array = np.asfortranarray(np.arange(600, dtype=np.float32).reshape(20, 30) / 7)
    assert_matches_numpy(info_of(array, chunk_bytes=16), array)
    row = np.linspace(-1, 1, 5000).reshape(1, 5000)  # one row of 40 kB, 8-byte chunks
    assert_matches_numpy(info_of(row, chunk_bytes=8), row)


def test_stable_when_the_mean_dwarfs_the_spread():
    # mean 1e4, std 1e-3: the shortcut Σx² - (Σx)²/n would lose every digit (mean²/var = 1e14).
    array = 1e4 + np.random.default_rng(1).standard_normal(50_000) * 1e-3
    for chunk_bytes in (8_000, 1 << 20):
        assert_matches_numpy(info_of(array, chunk_bytes), array, rtol=1e-9)
    constant = np.full(1000, 0.1, np.float32)  # all equal: std exactly 0
    assert info_of(constant, 100).std == 0.0


@pytest.mark.parametrize("magnitude", [1e200, 1e-200])
def test_float64_beyond_the_square_range(magnitude):
    # Squares of 1e200 overflow float64 and of 1e-200 underflow: computed on scaled values.
    unit = np.random.default_rng(2).standard_normal(1000)
    info = info_of(unit * magnitude, chunk_bytes=800)
    assert info.mean == pytest.approx(unit.mean() * magnitude, rel=1e-10)
    assert info.std == pytest.approx(unit.std() * magnitude, rel=1e-10)
    # chunks of both magnitudes merge in the larger unit
    mixed = np.concatenate([unit, unit * magnitude])
    scale = max(1.0, magnitude)
    info = info_of(mixed, chunk_bytes=800)
    assert info.mean == pytest.approx((mixed / scale).mean() * scale, rel=1e-10)
    assert info.std == pytest.approx((mixed / scale).std() * scale, rel=1e-10)


def test_bf16_matches_numpy_on_widened_values():
    array = (np.random.default_rng(3).standard_normal((64, 128)) * 0.02).astype(BF16)
    assert_matches_numpy(info_of(array, chunk_bytes=512), array)


INTS = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]


@pytest.mark.parametrize("dtype", INTS, ids=lambda d: np.dtype(d).name)
def test_integer_stats_are_exact(dtype):
    limits = np.iinfo(dtype)
    rng = np.random.default_rng(4)
    array = rng.integers(limits.min, limits.max, size=(40, 5), dtype=dtype, endpoint=True)
    array[0, :2] = limits.min, limits.max
    values = [int(v) for v in array.ravel()]  # Python ints: no overflow anywhere
    n, total, squares = len(values), sum(values), sum(v * v for v in values)
    assert exact_sums(array.ravel()) == (total, squares)
    for chunk_bytes in (1, 24, 1 << 20):
        info = info_of(array, chunk_bytes)
        assert (info.min, info.max) == (min(values), max(values))
        assert isinstance(info.min, int) and isinstance(info.max, int)
        assert info.mean == total / n  # int / int rounds once, correctly
        assert info.std == math.sqrt(Fraction(n * squares - total * total, n * n))


def test_int64_sums_that_would_overflow_int64():
    # 2^62 * 3 overflows int64 sums; the mean is still exact: (3 * 2^62 - 2^63) / 4 = 2^60.
    array = np.array([2**62, 2**62, 2**62, -(2**63)], np.int64)
    info = info_of(array)
    assert (info.min, info.max, info.mean) == (-(2**63), 2**62, float(2**60))
    # deviations from 2^60: 3 * (3 * 2^60) and -9 * 2^60 -> variance (27 + 81) / 4 * 2^120
    assert info.std == math.sqrt(27 * 2.0**120)


def test_bool():
    # True, False, True: as 0 / 1, mean 2/3, variance 2/3 - 4/9 = 2/9.
    info = info_of(np.array([True, False, True]))
    assert (info.dtype, info.min, info.max, info.mean) == ("bool", 0, 1, 2 / 3)
    assert info.std == pytest.approx(math.sqrt(2 / 9), rel=1e-15)


def test_progress_sees_every_byte():
    events = []

    class Recorder:
        def start(self, tensors, total):
            events.append(("start", tensors, total))

        def advance(self, nbytes):
            events.append(("advance", nbytes))

        def tensor_done(self):
            events.append(("done",))

    inventory([REPO / "sample_tensors/model_bf16.safetensors"], progress=Recorder())
    _, tensors, total = events[0]
    assert sum(e[1] for e in events if e[0] == "advance") == total
    assert sum(e[0] == "done" for e in events) == tensors == 11


# ------------------------------------------------------------------------------ readers


def test_npy(tmp_path):
    array = np.arange(-6, 6, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "w.npy", array)
    np.save(tmp_path / "ids.npy", np.arange(10, dtype=np.int32))
    [info] = inventory([tmp_path / "w.npy"])
    assert (info.name, info.file, info.shape) == ("w", str(tmp_path / "w.npy"), (3, 4))
    assert_matches_numpy(info, array)
    [ids] = inventory([tmp_path / "ids.npy"])  # encode skips it; ls lists it
    assert (ids.dtype, ids.min, ids.max, ids.mean) == ("int32", 0, 9, 4.5)


def test_npz(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, a=np.ones((2, 3), np.float16), ids=np.arange(4), mask=np.zeros(2, bool))
    infos = inventory([path])
    assert [(i.name, i.dtype, i.file) for i in infos] == [
        ("a", "float16", str(path)), ("ids", "int64", str(path)), ("mask", "bool", str(path))
    ]  # fmt: skip
    assert (infos[1].min, infos[1].max, infos[1].mean) == (0, 3, 1.5)


def test_safetensors_every_dtype(tmp_path):
    rng = np.random.default_rng(5)
    tensors = {
        "bf16": (rng.standard_normal((8, 16)) * 0.05).astype(BF16),
        "f16": rng.standard_normal((4, 4)).astype(np.float16),
        "f32": rng.standard_normal(7).astype(np.float32),
        "i64": np.array(1875, np.int64),
        "u8": np.arange(250, 256, dtype=np.uint8),
        "mask": np.array([True, True, False, True]),
    }
    path = tmp_path / "m.safetensors"
    save_file(tensors, str(path))
    infos = {info.name: info for info in inventory([path], chunk_bytes=16)}
    assert sorted(infos) == sorted(tensors)
    for name, array in tensors.items():
        info = infos[name]
        assert (info.dtype, info.shape, info.nbytes, info.file) == (
            array.dtype.name, array.shape, array.nbytes, str(path)
        )  # fmt: skip
        assert_matches_numpy(info, array.astype(np.float64))
    assert (infos["i64"].min, infos["u8"].max, infos["mask"].mean) == (1875, 255, 0.75)


def make_sharded(folder: Path) -> Path:
    shards = {
        "model-00001-of-00002.safetensors": {
            "embed.weight": np.arange(6, dtype=np.float32).reshape(2, 3),
            "embed.ids": np.arange(3),
        },
        "model-00002-of-00002.safetensors": {
            "lm_head.weight": np.full((2, 2), -1.5, BF16),
        },
    }
    for shard, tensors in shards.items():
        save_file(tensors, str(folder / shard))
    weight_map = {name: shard for shard, tensors in shards.items() for name in tensors}
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


def test_sharded_checkpoint_names_the_shard(tmp_path):
    infos = inventory([make_sharded(tmp_path)])
    assert [(i.name, Path(i.file).name) for i in infos] == [
        ("embed.ids", "model-00001-of-00002.safetensors"),
        ("embed.weight", "model-00001-of-00002.safetensors"),
        ("lm_head.weight", "model-00002-of-00002.safetensors"),
    ]
    # 0..5: mean 2.5, variance (2.5² + 1.5² + 0.5²) * 2 / 6 = 35/12
    assert (infos[1].mean, infos[1].std) == (2.5, math.sqrt(35 / 12))
    assert (infos[2].min, infos[2].max, infos[2].std) == (-1.5, -1.5, 0.0)


def test_directory(tmp_path):
    make_sharded(tmp_path)
    batches = tmp_path / "acts" / "relu"
    batches.mkdir(parents=True)
    np.save(batches / "000.npy", np.zeros((2, 2), np.float32))
    np.save(batches / "001.npy", np.ones((2, 2), np.float32))
    infos = inventory([tmp_path])
    assert [(i.name, Path(i.file).name) for i in infos] == [
        ("acts/relu", "000.npy"),
        ("acts/relu", "001.npy"),  # every batch is listed, each with its own file
        ("embed.ids", "model-00001-of-00002.safetensors"),
        ("embed.weight", "model-00001-of-00002.safetensors"),
        ("lm_head.weight", "model-00002-of-00002.safetensors"),
    ]
    assert (infos[0].mean, infos[1].mean) == (0.0, 1.0)


def test_readers_still_skip_integers_for_encode(tmp_path):
    # The reader change ls needs: Skipped carries a readable ref, equal and repr'd as before.
    index = make_sharded(tmp_path)
    skipped = [item for item in open_input(index) if isinstance(item, Skipped)]
    assert skipped == [Skipped("embed.ids", skipped[0].source, "integer tensor (I64), not encoded")]
    assert "ref" not in repr(skipped[0])
    assert skipped[0].ref.load().tolist() == [0, 1, 2]


def test_include_exclude(tmp_path):
    index = make_sharded(tmp_path)
    assert [i.name for i in inventory([index], include=["embed.*"], exclude=["*.ids"])] == [
        "embed.weight"
    ]
    with pytest.raises(FilterError, match="--include 'emb' matches no tensor name"):
        inventory([index], include=["emb"])
    with pytest.raises(FilterError, match="^no tensor left to list after --include / --exclude$"):
        inventory([index], exclude=["*"])


def test_unreadable_input(tmp_path):
    with pytest.raises(ReadError, match="no such file"):
        inventory([tmp_path / "missing.npy"])


# ------------------------------------------------------------------------------ formats


def sample_infos(tmp_path) -> list[TensorInfo]:
    values = np.array([[1, np.nan], [np.inf, 3]], np.float32)
    np.save(tmp_path / "x.npy", values)
    np.save(tmp_path / "nan.npy", np.full(3, np.nan, np.float32))
    np.save(tmp_path / "ids.npy", np.array([2**62, -5], np.int64))
    return inventory([tmp_path])


def render(infos, fmt: str, width: int | None = None) -> str:
    buffer = io.StringIO()
    render_inventory(infos, fmt, buffer, width)
    return buffer.getvalue()


def test_record_keys_in_order(tmp_path):
    for info in sample_infos(tmp_path):
        assert list(info.record()) == KEYS


def test_json_and_jsonl(tmp_path):
    infos = sample_infos(tmp_path)
    rows = json.loads(render(infos, "json"))
    assert rows == [json.loads(line) for line in render(infos, "jsonl").splitlines()]
    by_name = {row["name"]: row for row in rows}
    assert [list(row) for row in rows] == [KEYS] * 3
    assert by_name["x"] == {
        "name": "x", "dtype": "float32", "shape": [2, 2], "elements": 4, "bytes": 16,
        "file": str(tmp_path / "x.npy"), "min": 1.0, "max": 3.0, "mean": 2.0, "std": 1.0,
        "nan": 1, "inf": 1, "op": None, "role": None, "axis": None,
    }  # fmt: skip
    assert [by_name["nan"][k] for k in ("min", "max", "mean", "std", "nan")] == [None] * 4 + [3]
    assert (by_name["ids"]["min"], by_name["ids"]["max"]) == (-5, 2**62)  # exact ints
    assert render([], "json") == "[]\n" and render([], "jsonl") == ""


def test_csv(tmp_path):
    infos = sample_infos(tmp_path)
    rows = list(csv.DictReader(io.StringIO(render(infos, "csv"))))
    assert list(rows[0]) == KEYS
    by_name = {row["name"]: row for row in rows}
    assert by_name["x"]["shape"] == "[2, 2]" and json.loads(by_name["nan"]["shape"]) == [3]
    assert (by_name["x"]["mean"], by_name["x"]["nan"], by_name["x"]["inf"]) == ("2.0", "1", "1")
    assert by_name["nan"]["min"] == "" and by_name["ids"]["max"] == str(2**62)
    assert float(by_name["ids"]["mean"]) == (2**62 - 5) / 2


def test_size_text():
    assert [size_text(n) for n in (0, 999, 1000, 9216, 1_011_972_280, 10**16)] == [
        "0 B", "999 B", "1 kB", "9.22 kB", "1.01 GB", "1e4 TB"
    ]  # fmt: skip


def test_file_labels_for_shards_and_batches():
    shards = [f"ckpt/model-0000{i}-of-00002.safetensors" for i in (1, 2)]
    assert file_labels(shards) == (
        dict(zip(shards, ["00001", "00002"])), "in ckpt/model-*-of-00002.safetensors"
    )  # fmt: skip
    batches = ["acts/relu/000.npy", "acts/relu/001.npy", "acts/fc/000.npy"]
    labels, where = file_labels(batches)
    assert list(labels.values()) == ["relu/000", "relu/001", "fc/000"] and where == "in acts/*.npy"
    assert file_labels(["a.npy", "b.npz"]) == ({"a.npy": "a.npy", "b.npz": "b.npz"}, "in 2 files")
    assert file_labels(["only.npy"]) == ({"only.npy": "only.npy"}, "")


def test_title_parts_break_between_parts():
    parts = ["f32", "6 tensors", "24.8 kB", "no NaN or inf"]
    assert pack(parts, 24) == ["f32, 6 tensors, 24.8 kB,", "no NaN or inf"]
    assert pack(parts, 23) == ["f32, 6 tensors,", "24.8 kB, no NaN or inf"]
    for width in range(8, 40):
        assert all(len(line) <= width for line in pack(parts, width))


def test_table_sample_checkpoint():
    text = render(inventory([REPO / "sample_tensors/model_bf16.safetensors"]), "table", 80)
    lines = text.splitlines()
    assert lines[0] == "11 tensors, 10,283 elements, 20.6 kB, no NaN or inf"
    assert lines[1].split() == ["tensor", "dtype", "shape", "min", "max", "mean", "std"]
    assert lines[2].split() == ["bn1.num_batches_tracked", "i64", "scalar", "1875", "1875",
                                "1.88e3", "0"]  # fmt: skip
    assert lines[-1].split() == ["fc.weight", "bf16", "10×512", "-0.602", "0.621", "-5.74e-4",
                                 "0.0801"]  # fmt: skip
    assert all(len(line) <= 80 and line == line.rstrip() for line in lines)


def test_table_shows_nonfinite_and_file_columns(tmp_path):
    text = render(sample_infos(tmp_path), "table", 200)  # the title fits on one line
    lines = text.splitlines()
    # 4 + 3 + 2 elements; 16 + 12 bytes of float32 and 16 of int64; NaN: 1 + 3
    assert lines[0] == f"3 tensors in {tmp_path}/*.npy, 9 elements, 44 B, 4 NaN, 1 inf"
    assert lines[1].split() == ["tensor", "dtype", "shape", "size", "min", "max", "mean",
                                "std", "nan", "inf", "file"]  # fmt: skip
    assert lines[3].split() == ["nan", "f32", "3", "12", "B", "-", "-", "-", "-", "3", "0", "nan"]


@pytest.mark.parametrize("width", [60, 80, 120])
def test_table_fits_the_width(tmp_path, width):
    long = "model.layers.12.self_attn.q_proj.weight_with_an_unusually_long_suffix"
    shards = {
        f"model-0000{i}-of-00002.safetensors": {
            f"{long}.{i}": np.full((3, 4), -1e-5 * i, np.float32),
            f"ids.{i}": np.arange(3, dtype=np.int32),
        }
        for i in (1, 2)
    }
    for shard, tensors in shards.items():
        save_file(tensors, str(tmp_path / shard))
    text = render(inventory([tmp_path]), "table", width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines), text
    assert any(long in line for line in lines) == (width >= 90)  # else shortened
    assert [line.split()[-1] for line in lines[-4:]] == ["00001"] * 2 + ["00002"] * 2


def test_empty_listing(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    assert render(inventory([path]), "table", 80) == "0 tensors, 0 elements, 0 B, no NaN or inf\n"


# ---------------------------------------------------------------------------------- CLI


def test_cli_formats_parse():
    sample = REPO / "sample_tensors/model_bf16.safetensors"
    rows = json.loads(ok(sample, "--format", "json").stdout)
    assert len(rows) == 11 and [list(r) for r in rows] == [KEYS] * 11
    lines = ok(sample, "-f", "jsonl").stdout.splitlines()
    assert [json.loads(line) for line in lines] == rows
    table = list(csv.DictReader(io.StringIO(ok(sample, "-f", "csv").stdout)))
    assert [row["name"] for row in table] == [row["name"] for row in rows]
    assert ok(sample).stdout.startswith("11 tensors, 10,283 elements")


def test_cli_include_exclude():
    sample = REPO / "sample_tensors/model_bf16.safetensors"
    args = ["--include", "conv*", "--exclude", "*.bias", "-f", "jsonl"]
    names = [json.loads(line)["name"] for line in ok(sample, *args).stdout.splitlines()]
    assert names == ["conv1.weight", "conv2.weight"]


def test_cli_errors_exit_2(tmp_path):
    garbage = tmp_path / "bad.safetensors"
    garbage.write_bytes(b"\xff" * 16)
    unknown = tmp_path / "x.txt"
    unknown.write_text("hello")
    sample = REPO / "sample_tensors/seed.npy"
    for args in ([tmp_path / "missing.npy"], [garbage], [unknown], [sample, "--include", "zz"]):
        result = ls(*args)
        assert result.exit_code == 2, result.output
        assert re.fullmatch(r"qcalc: error: [^\n]+\n", result.stderr), result.stderr
        assert result.stdout == ""
    assert ls(sample, "--format", "yaml").exit_code == 2  # click's usage error


def test_cli_table_80_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    lines = ok(REPO / "sample_tensors/activations").stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    header = [line.split() for line in lines].index(
        ["tensor", "shape", "size", "min", "max", "mean", "std", "file"]
    )
    title = " ".join(lines[:header])
    assert title.startswith("f32, 6 tensors in ") and title.endswith(", no NaN or inf")
    assert "sample_tensors/activations/*.npy, 6,204 elements, 24.8 kB" in title
    assert [line.split()[-1] for line in lines[header + 1 :]] == [
        "conv1.relu/000", "conv1.relu/001", "conv1.relu/002", "fc.out/000", "fc.out/001",
        "fc.out/002",
    ]  # fmt: skip


def test_cli_help_lists_examples():
    result = runner.invoke(app, ["ls", "--help"])
    assert result.exit_code == 0 and "qcalc ls sample_tensors/model_bf16.safetensors" in LS_HELP
    assert "Examples:" in result.stdout and "--include" in result.stdout
