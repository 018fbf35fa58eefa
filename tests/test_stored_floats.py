"""bfloat16 / float8 without ml_dtypes: the StoredFloat formats, their exact widening and
rounding against ml_dtypes (every bit pattern), and commands on bf16 / fp8 files that never
import ml_dtypes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from safetensors.numpy import save_file

from qcalc import Spec, encode_array
from qcalc.core import dtypes, histogram
from qcalc.core.dtypes import BFLOAT16, FLOAT8_E4M3FN, FLOAT8_E5M2, StoredFloat
from qcalc.core.stats import bf16_minmax
from qcalc.core.tensor import TensorRef, array_ref
from qcalc.io.readers import open_input

REPO = Path(__file__).resolve().parents[1]
SAMPLE_BF16 = REPO / "sample_tensors" / "model_bf16.safetensors"

FORMATS = {
    "bfloat16": (BFLOAT16, np.dtype(ml_dtypes.bfloat16)),
    "float8_e4m3fn": (FLOAT8_E4M3FN, np.dtype(ml_dtypes.float8_e4m3fn)),
    "float8_e5m2": (FLOAT8_E5M2, np.dtype(ml_dtypes.float8_e5m2)),
}


def every_pattern(fmt: StoredFloat) -> np.ndarray:
    return np.arange(1 << (8 * fmt.itemsize), dtype=np.uint32).astype(fmt.storage)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# --------------------------------------------------------------------------- the formats


@pytest.mark.parametrize("name", FORMATS)
def test_stored_float_quacks_like_its_dtype(name):
    fmt, ml = FORMATS[name]
    assert (fmt.name, fmt.itemsize, fmt.kind, str(fmt)) == (ml.name, ml.itemsize, "f", name)
    assert fmt.storage == np.dtype(f"u{ml.itemsize}")
    assert fmt == ml and ml == fmt and not (fmt != ml)  # equal to ml_dtypes' dtype
    assert fmt != np.dtype(f"u{ml.itemsize}") and fmt != np.dtype(np.float32)
    assert dtypes.stored_float(ml) is fmt and dtypes.stored_float(fmt) is fmt
    assert dtypes.stored_float(np.float16) is None
    assert dtypes.is_float(fmt) and dtypes.is_float(ml)
    assert dtypes.numpy_dtype(fmt) == ml
    assert dtypes.short_dtype(fmt.name) == dtypes.SHORT_NAMES[name]


@pytest.mark.parametrize("name", FORMATS)
def test_finfo_constants_equal_ml_dtypes(name):
    fmt, ml = FORMATS[name]
    ours, theirs = dtypes.finfo(fmt), ml_dtypes.finfo(ml)
    assert dtypes.finfo(ml) == ours  # by name: no ml_dtypes for an ml_dtypes dtype either
    assert ours.bits == theirs.bits
    for field in ("eps", "max", "min", "tiny", "smallest_normal", "smallest_subnormal"):
        assert getattr(ours, field) == float(getattr(theirs, field)), field


# ---------------------------------------------------------------------- exact widening


@pytest.mark.parametrize("name", FORMATS)
def test_widen_every_bit_pattern_as_ml_dtypes(name):
    """All 65536 bf16 / 256 float8 patterns widen to ml_dtypes' float32, bit for bit (NaN
    payloads included), from the bit patterns and from an ml_dtypes array alike."""
    fmt, ml = FORMATS[name]
    bits = every_pattern(fmt)
    expected = bits.view(ml).astype(np.float32)
    assert same_bits(dtypes.widen(bits, fmt), expected)
    assert same_bits(dtypes.widen(bits.view(ml)), expected)
    assert same_bits(dtypes.widen(bits.astype(bits.dtype.newbyteorder(">")), fmt), expected)
    strided = bits.reshape(-1, 4)[:, ::2]  # strided, 2-d
    assert same_bits(dtypes.widen(strided, fmt), strided.view(ml).astype(np.float32))
    scalar = bits[7:8].reshape(())  # 0-d stays an array
    widened = dtypes.widen(scalar, fmt)
    assert isinstance(widened, np.ndarray) and same_bits(widened, expected[7].reshape(()))
    assert same_bits(dtypes.decoded(bits, fmt), expected)


def test_float8_specials():
    e4m3 = dtypes.widen(np.array([0x7F, 0xFF, 0x7E, 0x80, 0x01], np.uint8), FLOAT8_E4M3FN)
    assert np.isnan(e4m3[:2]).all() and e4m3[2] == 448 and np.signbit(e4m3[3])
    assert e4m3[4] == 2.0**-9  # the smallest subnormal
    e5m2 = dtypes.widen(np.array([0x7C, 0xFC, 0x7D, 0x7B, 0x01], np.uint8), FLOAT8_E5M2)
    assert e5m2[0] == np.inf and e5m2[1] == -np.inf and np.isnan(e5m2[2])
    assert e5m2[3] == 57344 and e5m2[4] == 2.0**-16


# ---------------------------------------------------------- float32 -> bfloat16 rounding


def ml_round(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore", invalid="ignore"):
        return values.astype(ml_dtypes.bfloat16).astype(np.float32)


def patterns(bits) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint64).astype(np.uint32).view(np.float32)


def test_round_to_bfloat16_every_upper_half_and_its_edges():
    """Every bf16 pattern with the low halves that decide the rounding: 0, 1, just below,
    at and above the tie, 0xFFFF (NaN, inf, overflow past bf16 max, subnormals included)."""
    upper = np.arange(1 << 16, dtype=np.uint64) << 16
    lows = np.array([0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF], dtype=np.uint64)
    x = patterns((upper[:, None] | lows[None, :]).ravel())
    assert same_bits(dtypes.round_to_bfloat16(x), ml_round(x))


@given(st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=64))
def test_round_to_bfloat16_equals_ml_dtypes_cast(bits):
    x = patterns(bits)
    assert same_bits(dtypes.round_to_bfloat16(x), ml_round(x))


def test_round_to_bfloat16_named_cases():
    x = np.array(
        [0.0, -0.0, 1.0, np.inf, -np.inf, np.nan, 3.4028235e38, -3.4028235e38, 1e-45],
        dtype=np.float32,
    )
    got = dtypes.round_to_bfloat16(x)
    assert got[3] == np.inf and got[4] == -np.inf and np.isnan(got[5])
    assert got[6] == np.inf and got[7] == -np.inf  # beyond bf16 max: overflow to inf
    assert np.signbit(got[1]) and got[8] == 0.0  # the smallest float32 subnormal ties to 0
    ties = patterns([0x3F808000, 0x3F818000])  # 1 + 2^-8 (to even: 1), 1 + 3 * 2^-8 (up)
    assert dtypes.round_to_bfloat16(ties).tolist() == [1.0, 1.0 + 2.0**-6]


@pytest.mark.parametrize("dtype", [BFLOAT16, np.dtype(ml_dtypes.bfloat16)], ids=["stored", "ml"])
def test_histogram_round_to_bfloat16_by_bits(dtype):
    x = patterns(np.random.default_rng(0).integers(0, 2**32, 4096))
    with np.errstate(invalid="ignore"):
        x = x[np.isfinite(x)]
    assert same_bits(histogram._round_to(x, dtype), ml_round(x))
    assert histogram._check_dtype(BFLOAT16) is BFLOAT16


# ---------------------------------------------------------- tensors of stored floats


def test_tensor_ref_of_an_ml_dtypes_array_reads_its_bits():
    array = np.array([[1.5, -2.0], [np.nan, 3.0]], dtype=ml_dtypes.bfloat16)
    ref = array_ref(array, "w")
    assert ref.dtype is BFLOAT16 and ref == TensorRef("w", ref.source, BFLOAT16, (2, 2), None)
    assert same_bits(ref.read(), array.view(np.uint16))
    assert same_bits(ref.load(), array)
    assert [same_bits(c, array.view(np.uint16)) for c in ref.chunks()] == [True]


def test_encode_array_of_ml_dtypes_equals_its_float32_twin():
    rng = np.random.default_rng(3)
    for ml in (ml_dtypes.bfloat16, ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2):
        x = rng.standard_normal((8, 32)).astype(ml)
        spec = Spec(per_channel=True)
        got, twin = encode_array(x, spec), encode_array(x.astype(np.float32), spec)
        assert got.dtype == np.dtype(ml).name
        assert same_bits(got.scale, twin.scale) and same_bits(got.offset, twin.offset)


def test_bf16_minmax_on_bit_patterns_equals_ml_dtypes_arrays():
    bits = np.random.default_rng(1).integers(0, 1 << 16, (64, 32)).astype(np.uint16)
    stored = bf16_minmax(bits, (1,), BFLOAT16)
    ml = bf16_minmax(bits.view(ml_dtypes.bfloat16), (1,))
    assert same_bits(stored.min, ml.min) and same_bits(stored.max, ml.max)
    assert bf16_minmax(bits, (1,)) is None  # plain uint16: not bfloat16


def test_safetensors_reader_maps_bit_patterns(tmp_path):
    path = tmp_path / "m.safetensors"
    arrays = {
        "b": np.arange(6, dtype=np.float32).reshape(2, 3).astype(ml_dtypes.bfloat16),
        "e": np.arange(4, dtype=np.float32).astype(ml_dtypes.float8_e4m3fn),
        "f": np.arange(4, dtype=np.float32).astype(ml_dtypes.float8_e5m2),
    }
    save_file(arrays, str(path))
    for ref in open_input(path):
        assert isinstance(ref.dtype, StoredFloat)
        raw = ref.read()
        assert raw.dtype == np.dtype(f"<u{ref.dtype.itemsize}") and isinstance(raw, np.memmap)
        assert same_bits(np.asarray(ref.load()), arrays[ref.name])


# ------------------------------------------------------------- no ml_dtypes, end to end


def _fp8_file(tmp_path) -> Path:
    rng = np.random.default_rng(5)
    path = tmp_path / "fp8.safetensors"
    save_file(
        {
            "e4m3.weight": rng.standard_normal((16, 64)).astype(ml_dtypes.float8_e4m3fn),
            "e5m2.weight": rng.standard_normal((8, 32)).astype(ml_dtypes.float8_e5m2),
            "bf16.bias": rng.standard_normal(16).astype(ml_dtypes.bfloat16),
        },
        str(path),
    )
    return path


RUNS = [
    ["encode"],
    ["encode", "--metrics", "--format", "json"],
    ["encode", "--per-channel", "--block-size", "16", "--symmetric", "--include", "{tensor}"],
    ["encode", "--analyzer", "percentile", "--per-channel"],
    ["encode", "--analyzer", "sqnr"],
    ["ls"],
    ["ls", "--format", "json"],
    ["check"],
    ["hist", "--tensor", "{tensor}"],
    ["hist", "--tensor", "{tensor}", "--per-channel", "--channel", "1"],
]


@pytest.mark.parametrize("which", ["bf16", "fp8"])
def test_commands_on_bf16_and_fp8_files_never_import_ml_dtypes(tmp_path, which):
    """Every command that reads tensor data, on the bf16 sample checkpoint and an fp8 file,
    runs (exit 0) in one fresh interpreter without ever importing ml_dtypes."""
    path, tensor = (
        (SAMPLE_BF16, "fc.weight") if which == "bf16" else (_fp8_file(tmp_path), "e4m3.weight")
    )
    runs = [[arg.format(tensor=tensor) for arg in run] + [str(path)] for run in RUNS]
    code = (
        "import io, json, sys, contextlib\n"
        "from qcalc.__main__ import main\n"
        f"report = []\nfor argv in {runs!r}:\n"
        "    sys.argv = ['qcalc', *argv]\n"
        "    out = io.StringIO()\n"
        "    try:\n"
        "        with contextlib.redirect_stdout(out):\n"
        "            main()\n"
        "        code = 0\n"
        "    except SystemExit as exit:\n"
        "        code = exit.code or 0\n"
        "    report.append([argv[0], code, bool(out.getvalue()), 'ml_dtypes' in sys.modules])\n"
        "print(json.dumps(report))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert [code for _, code, _, _ in report] == [0] * len(RUNS), done.stderr
    assert all(printed for _, _, printed, _ in report)
    assert [imported for _, _, _, imported in report] == [False] * len(RUNS)


def test_compute_dtype_input_on_bf16_is_what_imports_ml_dtypes():
    """bfloat16 arithmetic (--compute-dtype input) is the one run that needs ml_dtypes."""
    code = (
        "import sys, contextlib, io\n"
        "from qcalc.__main__ import main\n"
        f"sys.argv = ['qcalc', 'encode', '--compute-dtype', 'input', {str(SAMPLE_BF16)!r}]\n"
        "try:\n    with contextlib.redirect_stdout(io.StringIO()):\n        main()\n"
        "except SystemExit as exit:\n    assert not exit.code\n"
        "print('ml_dtypes' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "True"
