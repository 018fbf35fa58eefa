"""Helpers shared by the test modules (golden-data helpers are in golden_cases.py)."""

from __future__ import annotations

import contextlib
import io
import re
import signal
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pytest
from hypothesis import event
from typer.testing import CliRunner

from qcalc.cli import app
from qcalc.commands.render.encodings import render_encodings
from qcalc.core import histogram
from qcalc.core.encoding import Encoding
from qcalc.core.spec import Spec
from qcalc.core.stats import finite_minmax
from qcalc.errors import ReadError
from qcalc.io.formats import EncodingFile
from qcalc.io.readers import Skipped, open_input
from qcalc.ops.encode import encode_array


def rendered(encodings: Sequence[Encoding], fmt: str) -> str:
    """What `qcalc encode --format fmt` prints for `encodings`."""
    out = io.StringIO()
    render_encodings(encodings, fmt, out)
    return out.getvalue()


def bin_edges(mn: np.ndarray, mx: np.ndarray, dtype, bins: int) -> np.ndarray:
    """(cells, bins + 1) float32 edges, as AIMET's ``_create_bin_edges(min, max)``: edge i is
    ``float32(i) * step + lo`` from the histogram module's own start and step."""
    lo, step = histogram._bin_start_step(np.asarray(mn), np.asarray(mx), np.dtype(dtype), bins)
    index = np.arange(bins + 1, dtype=np.float32)[None, :]
    return histogram._edge(lo[:, None], step[:, None], index)


def plain_text(view) -> str:
    """`qcalc hist`'s picture of `view` as plain text (no colour), a newline after each line."""
    from qcalc.commands.render.hist import lines

    return "".join(line.plain.rstrip() + "\n" for line in lines(view))


def observe(
    previous: Optional[histogram.Histogram],
    cells: np.ndarray,
    bins: int,
    dtype,
    growth_limit: Optional[float] = None,
) -> histogram.Histogram:
    """One whole batch, (cells, m), into AIMET's histogram in one go: its per-cell finite
    min / max, the plan, the counts, the finish (what `qcalc.core.calibrate` does chunk by
    chunk)."""
    cells = np.asarray(cells)
    stats, _ = finite_minmax(cells, (1,))
    binning = histogram.plan_batch(
        previous, stats.min.ravel(), stats.max.ravel(), bins, dtype, growth_limit
    )
    return histogram.finish(binning, histogram.count(cells, binning))


def assert_one_error_line(result, exact: str | None = None, *phrases: str) -> str:
    """A CLI usage error: exit code 2, nothing on stdout, no traceback, and one stderr line
    starting "qcalc: error: " (equal to `exact` when given, holding every phrase); the line."""
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert "Traceback" not in result.output and "Traceback" not in result.stderr
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("qcalc: error: ")
    if exact is not None:
        assert line == exact
    for phrase in phrases:
        assert phrase in line, (phrase, line)
    return line


def sample_file() -> EncodingFile:
    """Computed encodings: per-channel and per-tensor parameters, per-tensor activations and one
    per-channel activation (axis 1 of an NCHW tensor)."""
    rng = np.random.default_rng(3)
    conv = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    linear = rng.normal(size=(5, 8)).astype(np.float32)
    bias = rng.normal(size=(5,)).astype(np.float32)
    act = (rng.normal(size=(2, 6, 4, 4)) + 0.5).astype(np.float32)
    weights = Spec(symmetric=True, per_channel=True)
    weights4 = Spec(bitwidth=4, symmetric=True, per_channel=True, axis=1)
    acts = Spec(bitwidth=16)
    return EncodingFile(
        params=[
            encode_array(conv, weights, "0.weight"),
            encode_array(linear, weights4, "2.weight"),
            encode_array(bias, Spec(symmetric=False), "2.bias"),
        ],
        activations=[
            encode_array(rng.normal(size=(2, 3, 8, 8)).astype(np.float32), acts, "input"),
            encode_array(np.maximum(act, 0), acts, "/relu/Relu_output_0"),
            encode_array(act, Spec(per_channel=True, axis=1), "/conv/Conv_output_0"),
        ],
    )  # fmt: skip


def entries(doc: dict) -> dict[str, tuple[str | None, object]]:
    """name -> (section, entry without its name) of any version's encodings file, in file
    order. The section is 'activation' / 'param' for 0.6.1 / 1.0.0 and None for 2.x."""
    version = doc["version"]
    found: dict[str, tuple[str | None, object]] = {}
    if version == "0.6.1":
        for section in ("activation", "param"):
            for name, cells in doc[f"{section}_encodings"].items():
                found[name] = (section, cells)
    elif version == "1.0.0":
        for section in ("activation", "param"):
            for entry in doc[f"{section}_encodings"]:
                rest = dict(entry)
                found[rest.pop("name")] = (section, rest)
    else:
        for entry in doc["encodings"]:
            rest = dict(entry)
            found[rest.pop("name")] = (None, rest)
    return found


# ------------------------------------------------ hostile inputs: the readers' contract


def write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging (a blocking open() is interrupted by the alarm)."""

    def expired(*_):
        raise TimeoutError(f"still running after {seconds} s")

    if not hasattr(signal, "SIGALRM"):  # not POSIX: no guard
        yield
        return
    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def read_all(path) -> list:
    """open_input, then every chunk of every tensor (Skipped ones too) read: the items."""
    items = open_input(path)
    for item in items:
        ref = item.ref if isinstance(item, Skipped) else item
        if ref is None:
            continue
        loaded = ref.load()
        assert (loaded.dtype, loaded.shape) == (ref.dtype, ref.shape)
        total = sum(np.ascontiguousarray(chunk).nbytes for chunk in ref.chunks(max_bytes=4096))
        assert total == ref.nbytes
    return items


def error(path) -> str:
    """The ReadError message for `path` (opened and read in full), checked to be one line."""
    with deadline(20), pytest.raises(ReadError) as info:
        read_all(path)
    message = str(info.value)
    assert message.isprintable(), message  # no newline, no control character
    return message


def check_contract(path, root: Path) -> str | None:
    """Reads `path` in full; None when it reads, else its one-line ReadError message, which
    names a file under `root`."""
    with deadline(20):
        try:
            read_all(path)
        except ReadError as exc:
            message = str(exc)
            assert message.isprintable(), repr(message)
            assert message.startswith(str(root)), message
            assert len(message) < 1200, message
            event(re.sub(r"[^a-z ]", "", message[len(str(root)) :]).split(" ")[1:5])
            return message
    event("reads")
    return None


runner = CliRunner()


def check_cli(path: Path, command: str = "ls") -> None:
    """Exit 0, or 2 with exactly one stderr line "qcalc: error: ..."."""
    with deadline(30):
        result = runner.invoke(app, [command, str(path)])
    assert result.exit_code in (0, 2), (result.exit_code, result.stderr, result.exception)
    if result.exit_code == 2:
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("qcalc: error: "), result.stderr
    else:
        assert all(line.startswith("qcalc: note: ") for line in result.stderr.splitlines())


def onnx_file(
    path: Path, nodes, initializers=(), inputs=("x",), outputs=("y",), **save_kwargs
) -> Path:
    """An opset-20 model of `nodes` and `initializers` (a dict of numpy arrays by name, or
    TensorProtos) saved at `path` (`save_kwargs`: onnx.save_model's, for external data)."""
    import onnx
    from onnx import helper, numpy_helper

    tensors = [
        item if isinstance(item, onnx.TensorProto) else numpy_helper.from_array(item[1], item[0])
        for item in (initializers.items() if isinstance(initializers, dict) else initializers)
    ]

    def values(names):
        return [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names]

    graph = helper.make_graph(list(nodes), "g", values(inputs), values(outputs), tensors)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    onnx.save_model(model, str(path), **save_kwargs)
    return path
