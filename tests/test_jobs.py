"""--jobs: results byte-identical for every thread count, errors the same, threads gone after.

The reference is the serial run (jobs=1); the runs use tiny chunks so that every tensor is
split over many chunks on two or three threads and merged back in order.
"""

from __future__ import annotations

import threading

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from qcalc.cli import app
from qcalc.core import parallel
from qcalc.core.spec import Spec
from qcalc.errors import NonFiniteError
from qcalc.ops.check import Thresholds, check
from qcalc.ops.encode import compute_encodings
from qcalc.ops.inventory import inventory

runner = CliRunner()
DTYPES = [np.float32, np.float16, np.dtype(ml_dtypes.bfloat16), np.float64]


def fingerprint(encoding) -> tuple:
    """Every number of an encoding as bytes (so -0.0 / NaN payloads count), and its metrics."""
    arrays = tuple(
        np.asarray(getattr(encoding, key)).tobytes() for key in ("scale", "offset", "min", "max")
    )
    metrics = None if encoding.metrics is None else repr(encoding.metrics.record())
    return arrays + (metrics, encoding.name, encoding.source)


def dump(tmp_path, arrays: dict[str, list[np.ndarray]]) -> list:
    """Tensors as .npy batches: tensor name -> one subdirectory of batch files."""
    paths = []
    for name, batches in arrays.items():
        folder = tmp_path / name
        folder.mkdir()
        for index, batch in enumerate(batches):
            np.save(folder / f"b{index}.npy", batch)
        paths.append(folder)
    return paths


@st.composite
def runs(draw):
    dtype = draw(st.sampled_from(DTYPES))
    rows = draw(st.integers(1, 40))
    cols = draw(st.sampled_from([4, 8, 32]))
    batches = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    arrays = {}
    for t in range(draw(st.integers(1, 3))):
        made = []
        for _ in range(batches):
            x = (rng.standard_normal((rows, cols)) * rng.uniform(0.01, 10)).astype(dtype)
            if draw(st.booleans()) and x.size > 3:
                x.reshape(-1)[rng.integers(0, x.size, 2)] = [np.nan, np.inf]
            made.append(x)
        arrays[f"t{t}"] = made
    granularity = draw(st.sampled_from(["tensor", "channel", "block"]))
    spec = Spec(
        bitwidth=draw(st.sampled_from([4, 8])),
        symmetric=draw(st.booleans()),
        per_channel=granularity == "channel",
        block_size=4 if granularity == "block" else None,
        analyzer=draw(st.sampled_from(["minmax", "percentile", "sqnr", "tf-enhanced"])),
        nonfinite=draw(st.sampled_from(["error", "ignore", "keep"])),
    )
    return arrays, spec, draw(st.booleans()), draw(st.sampled_from([2, 3]))


def encode_or_error(paths, spec, metrics, jobs, chunk_bytes):
    try:
        result = compute_encodings(paths, spec, metrics=metrics, jobs=jobs, chunk_bytes=chunk_bytes)
    except Exception as error:  # the same error, whatever the thread count
        return type(error).__name__, str(error)
    return [fingerprint(e) for e in result.encodings]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(runs())
def test_every_thread_count_gives_the_same_bytes(tmp_path_factory, run):
    arrays, spec, metrics, jobs = run
    paths = dump(tmp_path_factory.mktemp("jobs"), arrays)
    # 16-byte chunks: one row or less of every tensor per chunk (the same chunks both ways:
    # metrics sum float32 dot products per chunk, so chunk sizes may change last bits)
    serial = encode_or_error(paths, spec, metrics, 1, 16)
    assert encode_or_error(paths, spec, metrics, jobs, 16) == serial


def test_nonfinite_counts_add_up_over_parallel_chunks(tmp_path):
    x = np.ones((64, 8), np.float32)
    x[::3, 1] = np.nan
    x[5::7, 2] = np.inf
    np.save(tmp_path / "x.npy", x)
    messages = []
    for jobs, chunk in ((1, 32), (2, 32)):
        with pytest.raises(NonFiniteError) as caught:
            compute_encodings([tmp_path / "x.npy"], Spec(), jobs=jobs, chunk_bytes=chunk)
        messages.append(str(caught.value))
    assert messages[0] == messages[1]
    assert "22 NaN, 9 +inf" in messages[0]  # rows 0, 3, ..., 63 and 5, 12, ..., 61


def test_check_and_ls_are_the_same_on_every_thread_count(tmp_path):
    rng = np.random.default_rng(3)
    for name in ("a", "b", "c"):
        np.save(tmp_path / f"{name}.npy", rng.standard_normal((50, 16)).astype(np.float32))
    paths = sorted(tmp_path.glob("*.npy"))

    def summary(jobs, chunk):
        report = check(paths, Spec(per_channel=True), Thresholds(), jobs=jobs, chunk_bytes=chunk)
        infos = inventory(paths, jobs=jobs, chunk_bytes=chunk)
        return [r.record() for r in report.results], [i.record() for i in infos]

    assert summary(2, 64) == summary(1, 64)


def test_cli_output_is_identical_for_jobs_1_and_2():
    args = ["sample_tensors/model_bf16.safetensors", "--per-channel", "-f", "json", "--metrics"]
    one = runner.invoke(app, ["encode", *args, "--jobs", "1"])
    two = runner.invoke(app, ["encode", *args, "-j", "2"])
    assert one.exit_code == two.exit_code == 0
    assert one.stdout == two.stdout


@pytest.mark.parametrize("command", ["encode", "check", "ls"])
def test_jobs_below_one_is_refused(command):
    result = runner.invoke(app, [command, "sample_tensors/seed.npy", "--jobs", "0"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "qcalc: error: --jobs must be at least 1, not 0"


def test_an_error_stops_the_run_and_leaves_no_thread(tmp_path):
    before = threading.active_count()
    good = np.zeros((256, 64), np.float32)
    bad = good.copy()
    bad[200, 3] = np.nan
    for name, x in (("a", good), ("b", bad), ("c", good)):
        np.save(tmp_path / f"{name}.npy", x)
    with pytest.raises(NonFiniteError, match="tensor 'b'"):
        compute_encodings(sorted(tmp_path.glob("*.npy")), Spec(), jobs=3, chunk_bytes=256)
    assert threading.active_count() == before


def test_ordered_keeps_item_order_and_bounds_the_work_ahead():
    started = []

    def slow_first(i):
        started.append(i)
        if i == 0:
            threading.Event().wait(0.05)  # the first item finishes last
        return i * i

    with parallel.using(2):
        taken = []
        for result in parallel.ordered(slow_first, range(100)):
            taken.append(result)
            # never more than AHEAD_PER_THREAD x jobs items beyond what was consumed
            assert len(started) <= len(taken) + parallel.AHEAD_PER_THREAD * 2 + 1
    assert taken == [i * i for i in range(100)]


def test_jobs_default_to_the_available_cores():
    assert parallel.available_cores() >= 1
    with pytest.raises(ValueError):
        with parallel.using(0):
            pass


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(runs())
def test_encodings_do_not_depend_on_the_chunk_size(tmp_path_factory, run):
    """Without --metrics an encoding is the same for any chunking: per channel, SQNR and
    TF-enhanced are searched chunk by chunk (no whole-tensor histogram), the percentile
    counted and searched chunk by chunk, min-max merged chunk by chunk."""
    arrays, spec, _, jobs = run
    paths = dump(tmp_path_factory.mktemp("chunks"), arrays)
    whole = encode_or_error(paths, spec, False, 1, 1 << 20)
    assert encode_or_error(paths, spec, False, jobs, 16) == whole


def test_released_pages_of_a_mapped_tensor_read_back_the_same(tmp_path, monkeypatch):
    """Chunks of a memory-mapped tensor give their pages back behind the reader (resident
    size bounded); a chunk still in use afterwards reads the same bytes from the file."""
    from qcalc.core import tensor
    from qcalc.io.readers import open_input

    x = np.random.default_rng(5).standard_normal((512, 1024)).astype(np.float32)  # 2 MB
    np.save(tmp_path / "x.npy", x)
    monkeypatch.setattr(tensor, "RELEASE_LAG_BYTES", 64 << 10)
    (ref,) = open_input(tmp_path / "x.npy")
    assert tensor._mapped_pages(ref.read()) is not None  # .npy files are memory-mapped
    views = list(ref.chunks(32 << 10))  # 64 chunks; the early ones released by the end
    assert np.array_equal(np.concatenate(views), x)
    encoded = compute_encodings([tmp_path / "x.npy"], Spec(per_channel=True), chunk_bytes=4096)
    monkeypatch.setattr(tensor, "RELEASE_LAG_BYTES", 1 << 40)  # never released
    kept = compute_encodings([tmp_path / "x.npy"], Spec(per_channel=True), chunk_bytes=4096)
    assert fingerprint(encoded.encodings[0]) == fingerprint(kept.encodings[0])
