"""--convention: every golden case made by the real toolchains (tests/golden/conventions,
made by tools/make_convention_goldens.py) through the command line, bit for bit: the scale as
the toolchain stores it (float32 or fp16 bits), its zero point (or quanto's float shift,
llama.cpp Q4_1's fp16 block minimum), its grid and its integers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import assert_one_error_line
from qcalc import compute_encodings, encode_array
from qcalc.cli import app
from qcalc.core.spec import Spec

GOLDEN = Path(__file__).parent / "golden" / "conventions"
FILES = ("torch", "onnxruntime", "compressed-tensors", "quanto", "llamacpp", "modelopt")
CASES = [
    case for name in FILES for case in json.loads((GOLDEN / f"{name}.json").read_text())["cases"]
]
runner = CliRunner()


def flags_of(case: dict) -> list[str]:
    """The case's settings as qcalc's flags."""
    flags = case["flags"]
    args = ["--convention", case["convention"], "-b", str(flags["bitwidth"])]
    args.append("--symmetric" if flags["symmetric"] else "--asymmetric")
    args.append("--signed" if flags["signed"] else "--unsigned")
    if flags["per_channel"]:
        args += ["--per-channel", "--axis", str(flags["axis"])]
    if flags["block_size"]:
        args += ["--block-size", str(flags["block_size"])]
    return args


def spec_of(case: dict) -> Spec:
    flags = case["flags"]
    return Spec(
        convention=case["convention"],
        bitwidth=flags["bitwidth"],
        symmetric=flags["symmetric"],
        signed=flags["signed"],
        per_channel=bool(flags["per_channel"]),
        axis=flags["axis"] or 0,
        block_size=flags["block_size"],
    )


def bits(values, dtype: str) -> list[str]:
    """Exact bits, written as the golden files write them."""
    array = np.asarray(values, dtype=np.float32)
    if dtype == "float16":
        return [f"0x{v:04x}" for v in array.astype(np.float16).view(np.uint16).ravel()]
    return [f"0x{v:08x}" for v in array.view(np.uint32).ravel()]


def expected_zero_points(case: dict) -> list[float]:
    """The zero point as stored: quanto's float shift, llama.cpp Q4_1's block minimum, else
    the integer zero point (one value for every cell when the toolchain keeps one)."""
    if case.get("shift") is not None:
        return [entry["value"] for entry in case["shift"]]
    if case.get("block_min") is not None:
        return [entry["value"] for entry in case["block_min"]]
    points = case["zero_point"]
    if points is None:  # ModelOpt INT4 stores no zero point: its grid is centred on 0
        points = [0]
    points = points if isinstance(points, list) else [points]
    return [float(p) for p in points] * (len(case["scale"]) if len(points) == 1 else 1)


def expected_integers(case: dict) -> list[int]:
    """The toolchain's integers in qcalc's terms, row-major: ModelOpt INT4 packs q + 8 into
    nibbles (the first element in the high one); the rest as recorded."""
    packed = case.get("packed_uint8_hex")
    if packed:
        raw = np.frombuffer(bytes.fromhex("".join(np.atleast_1d(packed))), dtype=np.uint8)
        return [int(v) - 8 for v in np.stack([raw >> 4, raw & 15], axis=-1).ravel()]
    return case["quantized"]


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_golden_case_through_the_cli(case):
    result = runner.invoke(
        app, ["encode", str(GOLDEN / case["input"]), *flags_of(case), "-f", "json"]
    )
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert record["convention"] == case["convention"]
    assert (record["qmin"], record["qmax"]) == (case["qmin"], case["qmax"])
    want = [entry["hex"] for entry in case["scale"]]
    assert bits(record["stored_scale"], case["scale_dtype"]) == want
    got = [float(v) for v in record["zero_point"]]
    assert bits(got, "float32") == bits(expected_zero_points(case), "float32")


# torch's 4-bit cases went through fake_quantize: they record x^ (test_golden_dequantized)
INTEGERS = [case for case in CASES if case.get("quantized") or case.get("packed_uint8_hex")]


@pytest.mark.parametrize("case", INTEGERS, ids=[case["id"] for case in INTEGERS])
def test_golden_integers(case):
    x = np.load(GOLDEN / case["input"])
    encoding = encode_array(x, spec_of(case))
    assert [int(q) for q in encoding.quantize(x).ravel()] == expected_integers(case)


DEQUANTIZED = [case for case in CASES if case.get("dequantized")]


@pytest.mark.parametrize("case", DEQUANTIZED, ids=[case["id"] for case in DEQUANTIZED])
def test_golden_dequantized(case):
    x = np.load(GOLDEN / case["input"])
    encoding = encode_array(x, spec_of(case))
    want = [entry["hex"] for entry in case["dequantized"]]
    assert bits(encoding.quantize_dequantize(x), "float32") == want


def test_every_convention_has_cases():
    conventions = {case["convention"] for case in CASES}
    assert conventions == {
        "torch",
        "onnxruntime",
        "compressed-tensors",
        "quanto",
        "modelopt",
        "llama.cpp",
    }
    assert len(CASES) == 299


def test_default_is_aimet_and_unchanged():
    """No --convention: AIMET's record, without the convention fields."""
    result = runner.invoke(app, ["encode", str(GOLDEN / "inputs" / "seed.npy"), "-f", "json"])
    (record,) = json.loads(result.stdout)
    assert "convention" not in record and "zero_point" not in record
    aimet = runner.invoke(
        app, ["encode", str(GOLDEN / "inputs" / "seed.npy"), "-f", "json", "--convention", "aimet"]
    )
    assert aimet.stdout == result.stdout


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["--convention", "torch", "--analyzer", "percentile"], "--analyzer percentile is AIMET's"),
        (["--convention", "torch", "--block-size", "2"], "convention torch offers"),
        (["--convention", "onnxruntime", "-b", "6"], "convention onnxruntime offers"),
        (
            ["--convention", "compressed-tensors", "--unsigned"],
            "convention compressed-tensors offers",
        ),
        (
            ["--convention", "llama.cpp", "-b", "8", "--symmetric"],
            "convention llama.cpp offers Q8_0",
        ),
        (
            ["--convention", "llama.cpp", "-b", "8", "--block-size", "32"],
            "convention llama.cpp offers",
        ),
        (
            ["--convention", "quanto", "-b", "4", "--symmetric", "--per-channel"],
            "convention quanto offers",
        ),
        (["--convention", "modelopt", "-b", "4", "--symmetric"], "convention modelopt offers"),
        (
            ["--convention", "torch", "--symmetric", "--strict-symmetric"],
            "--strict-symmetric is AIMET's",
        ),
        (["--convention", "torch", "--compute-dtype", "input"], "--compute-dtype input is AIMET's"),
        (["--convention", "nope"], "nope"),
    ],
)
def test_unsupported_combinations_exit_2_with_one_line(args, phrase):
    result = runner.invoke(app, ["encode", str(GOLDEN / "inputs" / "seed.npy"), *args])
    assert result.exit_code == 2
    assert phrase in assert_one_error_line(result)


def test_blocks_need_a_matrix(tmp_path):
    """A tensor another toolchain's blocks cannot take (not a matrix) is skipped with a note
    by encode, as GGUF leaves vectors in float; hist / explain on it exit 2 with the reason."""
    path = tmp_path / "cube.npy"
    np.save(path, np.ones((2, 2, 32), dtype=np.float32))
    flags = ["--convention", "llama.cpp", "-b", "8", "--symmetric", "--block-size", "32"]
    result = runner.invoke(app, ["encode", str(path), *flags, "-f", "json"])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == []
    assert "tensor 'cube': shape [2, 2, 32] is not a matrix: llama.cpp blocks" in result.stderr
    for command in ("hist", "explain"):
        result = runner.invoke(app, [command, str(path), "-t", "cube", *flags, "--channel", "0"])
        assert result.exit_code == 2
        assert "is not a matrix" in assert_one_error_line(result)


def test_q4_0_takes_the_first_of_two_equal_magnitudes(tmp_path):
    """gguf's Q4_0 takes the value at argmax |x|, the first one on a tie: -2 before +2 gives
    d = -2 / -8 = 0.25, +2 before -2 gives d = 2 / -8 = -0.25 (fp16 0x3400 / 0xb400); a row
    without a tie (its chunk is not read again): 3 / -8 = -0.375 (0xb600)."""
    rows = np.zeros((3, 32), dtype=np.float32)
    rows[0, 5], rows[0, 7] = 3.0, -1.0
    rows[1, 3], rows[1, 9] = -2.0, 2.0
    rows[2, 3], rows[2, 9] = 2.0, -2.0
    path = tmp_path / "ties.npy"
    np.save(path, rows)
    spec = Spec(convention="llama.cpp", bitwidth=4, symmetric=True, block_size=32)
    for chunk_bytes in (128, 1 << 20):  # a row per chunk, or all at once
        (encoding,) = compute_encodings([path], spec, chunk_bytes=chunk_bytes).encodings
        assert bits(encoding.toolchain.stored_scale, "float16") == ["0xb600", "0x3400", "0xb400"]


@pytest.mark.parametrize("case", CASES, ids=[case["id"] for case in CASES])
def test_explain_derives_the_toolchains_last_cell(case):
    """`qcalc explain` of the case's last cell (channel / block) reaches the toolchain's
    stored scale and zero point, through the convention's own steps."""
    from qcalc.ops.explain import explain

    flags, spec = case["flags"], spec_of(case)
    cells = {}
    if flags["per_channel"] or flags["block_size"]:
        cells["channel"] = -1
    if flags["block_size"]:
        cells["block"] = -1
    path = GOLDEN / case["input"]
    found = explain([path], spec, path.stem, **cells)
    rules = [step.rule for step in found.steps]
    assert rules[:2] == ["integer grid", "observed range"]
    assert rules[-3:] == ["qcalc's meaning", "quantizer", "grid range"]
    assert bits(found.cell_encoding["stored_scale"], case["scale_dtype"]) == [
        case["scale"][-1]["hex"]
    ]
    want = expected_zero_points(case)[-1]
    assert bits(found.cell_encoding["zero_point"], "float32") == bits(want, "float32")


def _sqnr(x: np.ndarray, xhat: np.ndarray) -> float:
    x64, e64 = x.astype(np.float64), x.astype(np.float64) - xhat.astype(np.float64)
    return float(10 * np.log10(np.sum(x64 * x64) / np.sum(e64 * e64)))


METRIC_SPECS = [
    Spec(convention="torch", symmetric=True, per_channel=True),
    Spec(convention="torch", bitwidth=4),
    Spec(convention="onnxruntime", symmetric=True, per_channel=True),
    Spec(convention="compressed-tensors", bitwidth=4, block_size=16),
    Spec(convention="quanto", bitwidth=4, block_size=16),
    Spec(convention="modelopt", bitwidth=4, symmetric=True, block_size=16),
    Spec(convention="llama.cpp", bitwidth=8, symmetric=True, block_size=32),
    Spec(convention="llama.cpp", bitwidth=4, symmetric=True, block_size=32),
    Spec(convention="llama.cpp", bitwidth=4, block_size=32),
]


@pytest.mark.parametrize("spec", METRIC_SPECS, ids=lambda s: f"{s.convention}-b{s.bitwidth}")
def test_metrics_use_the_toolchains_quantizer(tmp_path, spec):
    """--metrics under a convention: SQNR and max error of x against the toolchain's x^
    (Encoding.quantize_dequantize, checked bit for bit on the golden cases above), for any
    chunking and thread count."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((24, 64)) * np.linspace(0.1, 3, 64)).astype(np.float32)
    path = tmp_path / "w.npy"
    np.save(path, x)
    whole = compute_encodings([path], spec, metrics=True).encodings[0]
    xhat = whole.quantize_dequantize(x)
    assert whole.metrics.sqnr_db == pytest.approx(_sqnr(x, xhat), abs=1e-9)
    assert whole.metrics.max_abs_error == float(np.max(np.abs(x.astype(np.float64) - xhat)))
    for chunk_bytes, jobs in ((256, 1), (512, 2)):
        (split,) = compute_encodings(
            [path], spec, metrics=True, chunk_bytes=chunk_bytes, jobs=jobs
        ).encodings
        assert split.scale.tobytes() == whole.scale.tobytes()
        assert split.metrics.sqnr_db == pytest.approx(whole.metrics.sqnr_db, abs=1e-9)
        assert split.metrics.max_abs_error == whole.metrics.max_abs_error


def test_hist_channel_under_a_convention(tmp_path):
    """hist --channel K draws channel K's toolchain grid: its range is the cell's."""
    x = np.load(GOLDEN / "inputs" / "normal.npy")
    path = tmp_path / "w.npy"
    np.save(path, x)
    from qcalc.ops.hist import hist

    spec = Spec(convention="onnxruntime", symmetric=True, per_channel=True)
    view = hist([path], spec, "w", channel=2)
    (whole,) = compute_encodings([path], spec).encodings
    assert view.grid_min == float(whole.min[2, 0]) and view.grid_max == float(whole.max[2, 0])
    assert view.metrics.max_abs_error == float(
        np.max(np.abs(x[2].astype(np.float64) - whole.quantize_dequantize(x)[2]))
    )


def test_check_names_the_convention(tmp_path):
    """check under a convention: the verdict line and each record say whose rules; AIMET's
    stay as they were."""
    path = GOLDEN / "inputs" / "normal.npy"
    torch = runner.invoke(app, ["check", str(path), "--convention", "torch", "--symmetric"])
    assert torch.exit_code == 0
    assert torch.stdout.startswith("passed: all 1 tensor (NaN / inf fail, torch convention)")
    records = runner.invoke(app, ["check", str(path), "--convention", "torch", "-f", "json"])
    assert json.loads(records.stdout)[0]["convention"] == "torch"
    aimet = runner.invoke(app, ["check", str(path), "-f", "json"])
    assert "convention" not in json.loads(aimet.stdout)[0]


def test_explain_finds_q4_0s_peak_as_encode_does(tmp_path):
    """explain's Q4_0 cell takes its peak from encode's own search: a tie (-2 before +2, so
    d = -2 / -8 = 0.25) and, under --nonfinite ignore, a NaN that is not a value."""
    from qcalc.ops.explain import explain

    rows = np.zeros((2, 32), dtype=np.float32)
    rows[0, 3], rows[0, 5], rows[0, 9] = -2.0, np.nan, 2.0
    rows[1, 3], rows[1, 9] = 2.0, -2.0
    path = tmp_path / "q.npy"
    np.save(path, rows)
    spec = Spec(
        convention="llama.cpp", bitwidth=4, symmetric=True, block_size=32, nonfinite="ignore"
    )
    for channel, d in ((0, "0x3400"), (1, "0xb400")):
        found = explain([path], spec, "q", channel=channel, block=0)
        assert bits(found.cell_encoding["stored_scale"], "float16") == [d]


def test_q4_0_peak_leaves_out_what_the_statistics_left_out(tmp_path):
    """Under --nonfinite ignore a block's NaN / inf are not values: -2 (first) then +2 around
    a NaN and an inf gives d = 0.25 (0x3400), as without them."""
    rows = np.zeros((1, 32), dtype=np.float32)
    rows[0, 1], rows[0, 3], rows[0, 5], rows[0, 9] = np.inf, -2.0, np.nan, 2.0
    path = tmp_path / "q.npy"
    np.save(path, rows)
    spec = Spec(
        convention="llama.cpp", bitwidth=4, symmetric=True, block_size=32, nonfinite="ignore"
    )
    (encoding,) = compute_encodings([path], spec).encodings
    assert bits(encoding.toolchain.stored_scale, "float16") == ["0x3400"]
