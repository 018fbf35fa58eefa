"""--dask: a real distributed.LocalCluster (worker processes, on loopback) computes the
tensors; outputs are byte for byte the local run's, and errors the same one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from helpers import assert_one_error_line
from qcalc.cli import app

distributed = pytest.importorskip("distributed")  # the test extra installs it

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_tensors"
runner = CliRunner()
WITH_ACTIVATIONS = [SAMPLES / "model_f32.safetensors", "--activations", SAMPLES / "activations"]


@pytest.fixture(scope="module")
def address():
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None,
    )  # fmt: skip
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def _tasks_done(address: str) -> int:
    """How many state transitions the scheduler has made (it makes them for every task)."""
    with distributed.Client(address, set_as_default=False) as client:
        return client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter)


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


ANALYZERS = [
    [],
    ["--per-channel"],
    ["--analyzer", "percentile"],
    ["--analyzer", "percentile", "--per-channel"],
    ["--analyzer", "sqnr"],
    ["--analyzer", "sqnr", "--per-channel", "--symmetric"],
    ["--analyzer", "tf-enhanced", "--per-channel"],
    ["--include", "fc.weight", "--block-size", "16", "--symmetric", "-b", "4", "--lpbq"],
    ["--convention", "torch", "--per-channel", "--symmetric"],
    ["--analyzer", "sqnr", "--include", "fc.weight", "--block-size", "128", "-b", "4"],
]


@pytest.mark.parametrize("flags", ANALYZERS, ids=" ".join)
def test_encode_on_the_cluster_is_the_local_run(address, flags):
    """Parameters and multi-batch activations, --metrics on: the same stdout and stderr."""
    local = run("encode", *WITH_ACTIVATIONS, *flags, "--metrics", "-f", "json")
    assert local.exit_code == 0, local.output
    before = _tasks_done(address)
    remote = run("encode", *WITH_ACTIVATIONS, *flags, "--metrics", "-f", "json", "--dask", address)
    assert remote.exit_code == 0, remote.output
    assert _tasks_done(address) > before  # the cluster did the work
    assert remote.stdout == local.stdout
    assert remote.stderr == local.stderr


def test_encodings_file_and_check_on_the_cluster(address, tmp_path):
    local_file, remote_file = tmp_path / "local.json", tmp_path / "remote.json"
    assert run("encode", *WITH_ACTIVATIONS, "-o", local_file).exit_code == 0
    assert run("encode", *WITH_ACTIVATIONS, "-o", remote_file, "--dask", address).exit_code == 0
    assert remote_file.read_bytes() == local_file.read_bytes()
    flags = ["--per-channel", "-b", "4", "--min-sqnr", "25", "-f", "json"]
    local = run("check", *WITH_ACTIVATIONS, *flags)
    remote = run("check", *WITH_ACTIVATIONS, *flags, "--dask", address)
    assert (remote.exit_code, remote.stdout) == (local.exit_code, local.stdout)


@pytest.mark.parametrize("flags", [["--per-channel"], ["--per-channel", "--analyzer", "sqnr"]])
def test_stats_parts_on_the_cluster(address, tmp_path, flags):
    """Parts computed on the cluster (both rounds for SQNR) finish to the local bytes."""

    def parts(tag: str, extra: list) -> list:
        paths = []
        for k in (1, 2):
            path = tmp_path / f"{tag}-{k}.qstats"
            result = run("stats", *WITH_ACTIVATIONS, *flags, "--part", f"{k}/2", "-o", path,
                         "--dask", address, *extra)  # fmt: skip
            assert result.exit_code == 0, result.output
            paths.append(path)
        return paths

    found = parts("one", [])
    if "--analyzer" in flags:
        found = parts("two", ["--ranges", *found])
    local = run("encode", *WITH_ACTIVATIONS, *flags, "-f", "json")
    merged = run("encode", "--from-stats", *found, "-f", "json")
    assert merged.exit_code == 0, merged.output
    assert merged.stdout == local.stdout


def test_an_onnx_model_on_the_cluster(address, tmp_path):
    """A whole model (parameters, activations, AIMET's export rules after the tasks)."""
    model = [SAMPLES / "convnet" / "model.onnx", "--activations", SAMPLES / "convnet" / "calib",
             "--recipe", ROOT / "recipes" / "aimet-default-per-channel.toml"]  # fmt: skip
    local_file, remote_file = tmp_path / "local.json", tmp_path / "remote.json"
    local = run("encode", *model, "-o", local_file, "--metrics")
    remote = run("encode", *model, "-o", remote_file, "--metrics", "--dask", address)
    assert local.exit_code == remote.exit_code == 0, remote.output
    assert remote_file.read_bytes() == local_file.read_bytes()
    assert remote.stderr == local.stderr.replace("local.json", "remote.json")


def test_ls_on_the_cluster(address):
    for fmt in ("json", "table"):
        local = run("ls", *WITH_ACTIVATIONS[:1], SAMPLES / "activations", "-f", fmt)
        remote = run("ls", *WITH_ACTIVATIONS[:1], SAMPLES / "activations", "-f", fmt,
                     "--dask", address)  # fmt: skip
        assert local.exit_code == remote.exit_code == 0
        assert remote.stdout == local.stdout


def test_a_workers_error_is_the_local_one_line(address, tmp_path):
    """NaN values (the worker's NonFiniteError) and a file whose data is cut short (the
    worker's ReadError): the local run's message and exit code."""
    nan = tmp_path / "nan.npy"
    np.save(nan, np.array([1.0, np.nan], dtype=np.float32))
    cut = tmp_path / "cut.npy"
    np.save(cut, np.ones((64, 64), dtype=np.float32))
    cut.write_bytes(cut.read_bytes()[:-100])
    for path in (nan, cut):
        local = run("encode", path)
        remote = run("encode", path, "--dask", address)
        assert local.exit_code == 2
        assert (remote.exit_code, remote.stderr) == (local.exit_code, local.stderr)
        assert_one_error_line(remote)


def test_an_unreachable_scheduler_is_one_line(monkeypatch):
    from qcalc.ops import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "1s")
    result = run("encode", SAMPLES / "seed.npy", "--dask", "tcp://127.0.0.1:9")
    assert result.exit_code == 2
    assert "--dask tcp://127.0.0.1:9: cannot reach the scheduler" in assert_one_error_line(result)


def test_dask_is_not_imported_without_the_flag():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from qcalc.cli import app\n"
        "CliRunner().invoke(app, ['encode', 'sample_tensors/seed.npy'])\n"
        "print(sorted(m for m in ('dask', 'distributed') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


BLOCKS = ["fc.weight"]  # the tensors whose lengths the block sizes below divide
SPLIT = [
    (dict(), ()),
    (dict(per_channel=True), ()),
    (dict(per_channel=True, axis=1, symmetric=True), ()),
    (dict(block_size=16, symmetric=True, bitwidth=4), BLOCKS),
    (dict(block_size=16, symmetric=True, bitwidth=4, lpbq=True), BLOCKS),
    (dict(block_size=2, block_axis=0, axis=1, symmetric=True), BLOCKS),
    (dict(convention="onnxruntime", per_channel=True), ()),
    (dict(nonfinite="keep"), ()),
]


@pytest.mark.parametrize(
    "flags, include", SPLIT, ids=[" ".join(f"{k}={v}" for k, v in f.items()) for f, _ in SPLIT]
)
@pytest.mark.parametrize("sample", ["model_f32.safetensors", "model_bf16.safetensors"])
def test_large_tensors_split_into_row_ranges(address, monkeypatch, flags, include, sample):
    """With tiny chunks and a tiny split size every min-max tensor goes out as several
    row-range tasks; the joined statistics give the local bytes (zero signs included), and
    --metrics too."""
    from helpers import rendered
    from qcalc import Spec, compute_encodings
    from qcalc.ops import cluster

    monkeypatch.setattr(cluster, "SPLIT_BYTES", 512)
    spec, path = Spec(**flags), [SAMPLES / sample]
    local = compute_encodings(path, spec, metrics=True, chunk_bytes=128, include=include)
    before = _tasks_done(address)
    remote = compute_encodings(
        path, spec, metrics=True, chunk_bytes=128, include=include, dask=address
    )
    transitions = _tasks_done(address) - before
    assert rendered(remote.encodings, "json") == rendered(local.encodings, "json")
    # a task makes a few scheduler transitions: far more than one task per tensor ran
    assert transitions > 4 * 2 * len(local.encodings)


def test_split_tensors_raise_the_local_nonfinite_error(address, monkeypatch, tmp_path):
    """NaN in several row ranges: the totals over the batch, as one local pass counts."""
    from qcalc import Spec, compute_encodings
    from qcalc.errors import NonFiniteError
    from qcalc.ops import cluster

    monkeypatch.setattr(cluster, "SPLIT_BYTES", 512)
    values = np.ones((64, 16), dtype=np.float32)
    values[::9, 3] = np.nan
    values[5, 5] = np.inf
    path = tmp_path / "w.npy"
    np.save(path, values)
    messages = []
    for dask in (None, address):
        with pytest.raises(NonFiniteError) as error:
            compute_encodings([path], Spec(per_channel=True), chunk_bytes=128, dask=dask)
        messages.append(str(error.value))
    assert messages[0] == messages[1]
    assert "8 NaN, 1 +inf" in messages[0]


def test_split_ranges_are_whole_chunks_and_cover_the_rows(monkeypatch):
    """The row ranges of a large tensor: consecutive, covering every row, each a whole number
    of the local pass's chunks (and of blocks along axis 0)."""
    from qcalc import Spec
    from qcalc.core.calibrate import row_ranges
    from qcalc.io.readers import open_input

    (ref,) = [r for r in open_input(SAMPLES / "model_f32.safetensors") if r.name == "fc.weight"]
    for spec, per_chunk in ((Spec(), 3), (Spec(block_size=2, block_axis=0, axis=1), 2)):
        chunk_bytes = per_chunk * 512 * 4  # fc.weight rows are 512 float32s
        ranges = row_ranges(ref, spec, 4096 * 4, chunk_bytes)
        assert ranges[0].start == 0 and ranges[-1].stop == ref.shape[0]
        assert all(a.stop == b.start for a, b in zip(ranges, ranges[1:]))
        assert len(ranges) > 1
        assert all((r.stop - r.start) % per_chunk == 0 for r in ranges[:-1])
