"""`qcalc stats --part K/N` + `encode --from-stats`: the same bytes as one `qcalc encode` run,
for any number of parts given in any order; bad parts are one-line errors (exit 2)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import assert_one_error_line
from qcalc.cli import app

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_tensors"
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def parts_of(tmp_path: Path, inputs: list, flags: list, n: int, tag: str = "p") -> list[Path]:
    paths = []
    for k in range(1, n + 1):
        path = tmp_path / f"{tag}{k}.qstats"
        result = run("stats", *inputs, *flags, "--part", f"{k}/{n}", "-o", path)
        assert result.exit_code == 0, result.output
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> Path:
    """A checkpoint in three shards with an index, float32 / float64 / bfloat16 bits."""
    from safetensors.numpy import save_file

    root = tmp_path_factory.mktemp("sharded")
    rng = np.random.default_rng(3)
    weight_map = {}
    for shard in range(3):
        tensors = {
            f"layer{shard}.weight": rng.standard_normal((8, 64)).astype(np.float32) * (shard + 1),
            f"layer{shard}.bias": rng.standard_normal(8).astype(np.float64),
            f"layer{shard}.scale": rng.standard_normal((4, 32)).astype(np.float16),
        }
        name = f"model-{shard + 1:05d}-of-00003.safetensors"
        save_file(tensors, str(root / name))
        weight_map.update({key: name for key in tensors})
    index = root / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


CASES = [
    [],
    ["--symmetric"],
    ["--per-channel", "-b", "4"],
    ["--per-channel", "--symmetric", "--axis", "1"],
    ["--symmetric", "-b", "4", "--block-size", "16"],
    ["--symmetric", "-b", "4", "--block-size", "16", "--lpbq"],
    ["--convention", "torch", "--symmetric", "--per-channel"],
    ["--convention", "onnxruntime", "-b", "4"],
    ["--convention", "llama.cpp", "-b", "8", "--symmetric", "--block-size", "32"],
    ["--convention", "quanto", "-b", "4", "--block-size", "16"],
]


@pytest.mark.parametrize("flags", CASES, ids=" ".join)
@pytest.mark.parametrize("n", [1, 2, 5])
def test_from_stats_is_the_local_run_byte_for_byte(tmp_path, sharded, flags, n):
    local = run("encode", sharded, *flags, "-f", "json")
    assert local.exit_code == 0, local.output
    parts = parts_of(tmp_path, [sharded], flags, n)
    random.Random(n).shuffle(parts)  # any order
    merged = run("encode", "--from-stats", *parts, "-f", "json")
    assert merged.exit_code == 0, merged.output
    assert merged.stdout == local.stdout
    assert merged.stderr == local.stderr


def test_calibration_batches_merge_in_their_order(tmp_path):
    """Activation dumps (several batches per tensor) plus parameters, each part holding some
    batches of a tensor: the encodings file is the local run's, byte for byte."""
    inputs = [SAMPLES / "model_f32.safetensors", "--activations", SAMPLES / "activations"]
    local_file, merged_file = tmp_path / "local.json", tmp_path / "merged.json"
    local = run("encode", *inputs, "--per-channel", "-o", local_file)
    assert local.exit_code == 0, local.output
    parts = parts_of(tmp_path, inputs, ["--per-channel"], 3)
    merged = run("encode", "--from-stats", *reversed(parts), "-o", merged_file)
    assert merged.exit_code == 0, merged.output
    assert merged_file.read_bytes() == local_file.read_bytes()
    documents = [json.loads(_metadata(p)) for p in parts]
    held = [{(u["name"], u["batch"]) for u in d["statistics"]} for d in documents]
    assert all(held) and not set.intersection(*held)  # every part holds some, none twice
    assert any(u["batches"] > 1 for d in documents for u in d["statistics"])


def _metadata(path: Path) -> str:
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + size])["__metadata__"]["qcalc_stats"]


def test_parts_share_the_bytes(tmp_path, sharded):
    """Each of N parts reads a contiguous share of about 1/N of the bytes."""
    parts = parts_of(tmp_path, [sharded], [], 3)
    positions = [[u["position"] for u in json.loads(_metadata(p))["statistics"]] for p in parts]
    flat = [p for ps in positions for p in ps]
    assert flat == list(range(len(flat)))  # contiguous, in order, each once
    assert all(positions)


def test_bad_parts_are_one_line_errors(tmp_path, sharded):
    parts = parts_of(tmp_path, [sharded], [], 3)
    other_flags = parts_of(tmp_path, [sharded], ["--symmetric"], 3, "s")
    other_run = parts_of(tmp_path, [SAMPLES / "model_f32.safetensors"], [], 3, "o")
    truncated = tmp_path / "cut.qstats"
    truncated.write_bytes(parts[0].read_bytes()[:-5])
    plain = SAMPLES / "model_f32.safetensors"
    checks = [
        ([parts[0], parts[1]], "part 3 of 3 missing"),
        ([parts[0], parts[1], parts[2], parts[1]], "part 2/3 is given twice"),
        ([parts[0], parts[1], other_flags[2]], "computed under other flags"),
        ([parts[0], parts[1], other_run[2]], "a part of another run"),
        ([truncated, parts[1], parts[2]], "cut.qstats"),
        ([plain], "not a qcalc stats file"),
    ]
    for given, phrase in checks:
        result = run("encode", "--from-stats", *given)
        assert result.exit_code == 2, (phrase, result.output)
        assert phrase in assert_one_error_line(result)


@pytest.mark.parametrize(
    "args, phrase",
    [
        (["stats", "SEED", "-o", "OUT", "--part", "3/2"], "--part 3/2"),
        (["stats", "SEED", "-o", "OUT", "--part", "x"], "--part x"),
        (
            ["stats", "SEED", "-o", "OUT", "--convention", "llama.cpp", "-b", "4", "--symmetric",
             "--block-size", "2"],
            "Q4_0",
        ),  # fmt: skip
        (["stats", "ONNX", "-o", "OUT"], "ONNX models"),
        (["encode", "SEED", "--from-stats", "OUT"], "one of them"),
        (["encode", "--from-stats", "OUT", "--symmetric"], "no INPUT flags"),
        (["encode", "--from-stats", "OUT", "--metrics"], "no INPUT flags"),
    ],
)
def test_refused_exit_2(tmp_path, args, phrase):
    out = tmp_path / "out.qstats"
    if args[0] == "encode":
        assert run("stats", SAMPLES / "seed.npy", "-o", out).exit_code == 0
    names = {
        "SEED": SAMPLES / "seed.npy",
        "OUT": out,
        "ONNX": SAMPLES / "convnet" / "model.onnx",
    }
    result = run(*[names.get(a, a) for a in args])
    assert result.exit_code == 2, result.output
    assert phrase in assert_one_error_line(result)
    if args[0] == "stats":
        assert not out.exists()  # nothing written


def test_hostile_stats_files_never_crash(tmp_path):
    """Byte mutations of a stats file: a result or one line, exit 2; never a traceback."""
    (part,) = parts_of(tmp_path, [SAMPLES / "model_f32.safetensors"], ["--per-channel"], 1)
    raw = part.read_bytes()
    rng = random.Random(11)
    bad = tmp_path / "bad.qstats"
    header_end = 8 + int.from_bytes(raw[:8], "little")
    for trial in range(150):
        data = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            position = rng.randrange(header_end if trial % 3 else len(data))
            data[position] = rng.randrange(256)
        bad.write_bytes(bytes(data))
        result = run("encode", "--from-stats", bad, "-f", "json")
        assert result.exit_code in (0, 2), (trial, result.output)
        if result.exit_code == 2:
            assert_one_error_line(result)


def _rewritten(path: Path, out: Path, edit) -> None:
    """`path` with its document edited by `edit` and its plan and digest made to agree (a
    self-consistent forgery, which only the checks of what the units say can catch)."""
    import copy
    import hashlib

    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + size])
    document = json.loads(header["__metadata__"]["qcalc_stats"])
    edit(document)
    for unit in document["statistics"]:
        document["plan"][unit["position"]] = {k: v for k, v in unit.items() if k != "key"}
    plan = json.dumps(document["plan"], sort_keys=True).encode()
    document["run"] = hashlib.sha256(plan).hexdigest()
    header = copy.deepcopy(header)
    header["__metadata__"]["qcalc_stats"] = json.dumps(document)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    out.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + size :])


EDITS = [
    ("shape", [3, 3]), ("shape", [16, 3, 3, 2]), ("shape", []), ("dtype", "float16"),
    ("kind", "weird"), ("name", "conv1.weight"), ("batches", 3), ("batch", 2),
    ("spec.axis", 5), ("spec.axis", "x"), ("spec.per_channel", False), ("spec.block_size", 4),
    ("spec.lpbq", True), ("spec.analyzer", "sqnr"), ("spec.bitwidth", 4),
    ("spec.convention", "llama.cpp"), ("spec.percentile", 1e9),
]  # fmt: skip


@pytest.mark.parametrize("field, value", EDITS, ids=[f"{f}={v}" for f, v in EDITS])
def test_forged_units_are_refused_or_harmless(tmp_path, field, value):
    """A part whose units say something else than its arrays hold: exit 2 with one line (or,
    where the edit still describes a computable encoding, a result); never a crash."""
    (part,) = parts_of(tmp_path, [SAMPLES / "model_f32.safetensors"], ["--per-channel"], 1)
    forged = tmp_path / "forged.qstats"

    def edit(document):
        for unit in document["statistics"][:2]:
            target, key = (unit["spec"], field[5:]) if field.startswith("spec.") else (unit, field)
            target[key] = value

    _rewritten(part, forged, edit)
    result = run("encode", "--from-stats", forged, "-f", "json")
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        assert_one_error_line(result)


HISTOGRAMS = [
    ["--analyzer", "percentile"],
    ["--analyzer", "percentile", "--per-channel", "--percentile", "99.9"],
    ["--analyzer", "sqnr"],
    ["--analyzer", "sqnr", "--per-channel", "--symmetric"],
    ["--analyzer", "tf-enhanced", "--per-channel"],
    ["--analyzer", "sqnr", "--nonfinite", "ignore", "-b", "4"],
    ["--analyzer", "percentile", "--include", "fc.weight", "--block-size", "64", "--symmetric"],
    ["--analyzer", "sqnr", "--include", "fc.weight", "--block-size", "128", "-b", "4"],
]


@pytest.mark.parametrize("flags", HISTOGRAMS, ids=" ".join)
def test_histogram_analyzers_in_two_rounds(tmp_path, flags):
    """Round 1 (ranges) in 3 parts, round 2 (counts) in 2 parts given the round-1 parts in
    any order, then --from-stats: the local run's bytes, multi-batch activations included."""
    inputs = [SAMPLES / "model_f32.safetensors", "--activations", SAMPLES / "activations"]
    local = run("encode", *inputs, *flags, "-f", "json")
    assert local.exit_code == 0, local.output
    first = parts_of(tmp_path, inputs, flags, 3, "r1-")
    second = []
    for k in (1, 2):
        path = tmp_path / f"r2-{k}.qstats"
        result = run("stats", *inputs, *flags, "--part", f"{k}/2", "--ranges",
                     *reversed(first), "-o", path)  # fmt: skip
        assert result.exit_code == 0, result.output
        second.append(path)
    merged = run("encode", "--from-stats", second[1], second[0], "-f", "json")
    assert merged.exit_code == 0, merged.output
    assert merged.stdout == local.stdout
    # round-1 parts cannot be finished, nor mixed with round-2 ones
    for given, phrase in (
        (first, "round-1 statistics"),
        ([second[0], first[1]], "parts of one round only"),
    ):
        result = run("encode", "--from-stats", *given)
        assert result.exit_code == 2
        assert phrase in assert_one_error_line(result)


def test_round_two_refuses_foreign_ranges(tmp_path):
    inputs = [SAMPLES / "model_f32.safetensors"]
    first = parts_of(tmp_path, inputs, ["--analyzer", "sqnr"], 2, "r1-")
    other = parts_of(tmp_path, inputs, ["--analyzer", "sqnr", "--per-channel"], 1, "o-")
    final = parts_of(tmp_path, inputs, [], 1, "f-")
    out = tmp_path / "r2.qstats"
    for given, flags, phrase in (
        (other, ["--analyzer", "sqnr"], "another run"),
        (first[:1], ["--analyzer", "sqnr"], "part 2 of 2 missing"),
        (final, [], "round-1 parts"),
    ):
        result = run("stats", *inputs, *flags, "--ranges", *given, "-o", out)
        assert result.exit_code == 2, result.output
        assert phrase in assert_one_error_line(result)
        assert not out.exists()
