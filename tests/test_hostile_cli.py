"""The command line under hostile input: names that try to drive the terminal or forge a
line, an output path that is not a regular file, an exception qcalc did not expect, and
signals. Each ends in one line on stderr and a documented exit code, nothing half-written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_error_line
from typer.testing import CliRunner

from qcalc.cli import app
from qcalc.commands.options import Terminated
from qcalc.errors import printable
from qcalc.io import atomic

runner = CliRunner()
FORGED = "w\x1b]0;pwned\x07\x1b[2J\nqcalc: error: forged"  # window title, clear, a new line


def safetensors_file(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    """A .safetensors file written by hand (any key, even one a library would refuse)."""
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        data = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {
            "dtype": "F32",
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"".join(blobs))
    return path


def test_printable_escapes_controls_and_keeps_other_text():
    assert printable("a\nb\x1b[2J\u202ec\té ✓") == "a\\nb\\x1b[2J\\u202ec\\té ✓"
    assert printable(FORGED).count("\n") == 0 and "\x1b" not in printable(FORGED)


@pytest.mark.parametrize(
    "command", [["encode"], ["ls"], ["encode", "--metrics"], ["check", "--all"]]
)
def test_a_name_cannot_drive_the_terminal_or_forge_a_line(tmp_path, command):
    path = safetensors_file(tmp_path / "m.safetensors", {FORGED: np.linspace(-1, 1, 8)})
    result = runner.invoke(app, [command[0], str(path), *command[1:]])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout and "\x07" not in result.stdout
    assert "qcalc: error: forged" not in result.stdout.splitlines()
    assert "\\x1b]0;pwned\\x07" in result.stdout  # escaped, and the name column still fits


def test_a_name_in_an_error_stays_on_one_line(tmp_path):
    path = safetensors_file(tmp_path / "m.safetensors", {FORGED: np.array([1.0, np.nan])})
    result = runner.invoke(app, ["encode", str(path)])  # --nonfinite error: names the tensor
    line = assert_one_error_line(result)
    assert "\x1b" not in result.stderr and "\\nqcalc: error: forged" in line


def test_a_note_stays_on_one_line(tmp_path):
    path = tmp_path / "m.npz"
    np.savez(path, **{"i\nqcalc: error: forged": np.arange(4)})
    result = runner.invoke(app, ["encode", str(path)])
    assert result.exit_code == 0
    assert result.stderr.count("\n") == 1 and "i\\nqcalc: error: forged" in result.stderr


def test_an_unexpected_exception_is_one_line_and_exit_3(monkeypatch, tmp_path):
    np.save(tmp_path / "x.npy", np.ones(4, np.float32))

    def boom(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr("qcalc.ops.encode.encode_batches", boom)
    result = runner.invoke(app, ["encode", str(tmp_path / "x.npy")])
    assert result.exit_code == 3
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        "qcalc: internal error: RuntimeError: boom\\nsecond line (a bug in qcalc"
    )
    assert "Traceback" not in result.output
    monkeypatch.setenv("QCALC_DEBUG", "1")
    result = runner.invoke(app, ["encode", str(tmp_path / "x.npy")])
    assert isinstance(result.exception, RuntimeError)  # the traceback, for whoever debugs


@pytest.fixture
def x_npy(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.linspace(-1, 1, 16, dtype=np.float32))
    return path


def test_o_onto_a_symlink_is_refused(x_npy, tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    result = runner.invoke(app, ["encode", str(x_npy), "-o", str(link)])
    assert_one_error_line(result, f"qcalc: error: {link}: cannot write: is a symbolic link, which would "
                          "be replaced by a file (write to the path it points to)")  # fmt: skip
    assert link.is_symlink() and target.read_text() == "old"


def test_o_onto_a_fifo_is_refused(x_npy, tmp_path):
    fifo = tmp_path / "out.json"
    os.mkfifo(fifo)
    result = runner.invoke(app, ["encode", str(x_npy), "-o", str(fifo)])
    assert_one_error_line(result, f"qcalc: error: {fifo}: cannot write: is a FIFO, which would be "
                          "replaced by a file")  # fmt: skip
    assert fifo.is_fifo()


def test_o_onto_the_recipe_is_refused(x_npy, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('[[rule]]\nmatch = "*"\nbitwidth = 4\n')
    result = runner.invoke(app, ["encode", str(x_npy), "--recipe", str(recipe), "-o", str(recipe)])
    assert_one_error_line(
        result, f"qcalc: error: {recipe}: is one of the inputs; refusing to overwrite it"
    )
    assert recipe.read_text().startswith("[[rule]]")


def test_terminated_inside_a_write_removes_the_temporary_file(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    with pytest.raises(Terminated):
        with atomic.atomic_open(target) as f:
            f.write("partial")
            raise Terminated
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def wait_for_cpu(pid: int, seconds: float) -> None:
    """Until process `pid` has used `seconds` of CPU time (Linux /proc; else a fixed wait):
    robust on a loaded machine, where wall time says nothing about progress."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        time.sleep(2 * seconds)
        return
    ticks = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        if (int(fields[11]) + int(fields[12])) / ticks >= seconds:  # utime + stime
            return
        time.sleep(0.02)
    raise AssertionError("the command never got going")


@pytest.mark.parametrize("signum, code, word", [(signal.SIGTERM, 143, "terminated"),
                                                (signal.SIGINT, 130, "interrupted")])  # fmt: skip
def test_a_signal_mid_run_is_one_line_and_leaves_the_output_alone(tmp_path, signum, code, word):
    big = tmp_path / "big.npy"
    rng = np.random.default_rng(0)
    np.save(big, rng.standard_normal((512, 2048), dtype=np.float32))  # ~1.8 s of SQNR
    out = tmp_path / "out.json"
    out.write_text("old")
    process = subprocess.Popen(
        [sys.executable, "-m", "qcalc", "encode", str(big), "--per-channel", "--analyzer", "sqnr", "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "QCALC_NO_EXTENSION": "1"},  # the numpy path: slow enough to signal
    )  # fmt: skip
    wait_for_cpu(process.pid, 0.7)  # past start-up (~0.3 s of CPU), inside the work
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert stderr == f"qcalc: {word}\n" and stdout == ""
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.npy", "out.json"]


@pytest.mark.parametrize(
    "argv, phrase",
    [
        (
            ["encode", "x.npy", "--analyzer", "foo"],
            "Invalid value for '--analyzer': 'foo' is not one of",
        ),
        (["encode", "x.npy", "--activations"], "Option '--activations' requires an argument."),
        (["encode", "x.npy", "-b", "x\ny"], "'x\\ny' is not a valid int."),
        (["encodex"], "No such command 'encodex'."),
        (["hist", "x.npy"], "Missing option '--tensor' / '-t'."),
    ],
    ids=["bad-choice", "missing-value", "newline-in-value", "unknown-command", "missing-option"],
)
def test_usage_errors_are_one_line_too(argv, phrase):
    result = runner.invoke(app, argv)
    line = assert_one_error_line(result, None, phrase)
    assert line.endswith("--help')")


def test_a_command_without_arguments_prints_its_help():
    result = runner.invoke(app, ["encode"])
    assert result.exit_code == 2 and result.stderr.startswith("Usage: ")


@pytest.mark.parametrize("command", ["ls", "encode", "check"])
@pytest.mark.parametrize("columns", ["1", "2", "9"])
def test_tables_survive_absurd_widths(command, columns, monkeypatch):
    monkeypatch.setenv("COLUMNS", columns)
    sample = str(Path(__file__).parent.parent / "sample_tensors" / "model_bf16.safetensors")
    result = runner.invoke(app, [command, sample, *(["--all"] if command == "check" else [])])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()


def test_encodings_and_recipes_may_come_from_a_pipe(tmp_path):
    """`qcalc show <(cmd)` and `--recipe <(cmd)`: a FIFO is read once, bounded, like a file."""
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    writer = subprocess.Popen(
        ["sh", "-c", f"printf '[[rule]]\\nmatch = \"*\"\\nbitwidth = 4\\n' > {fifo}"]
    )
    sample = str(Path(__file__).parent.parent / "sample_tensors" / "seed.npy")
    result = subprocess.run([sys.executable, "-m", "qcalc", "encode", sample, "--recipe", str(fifo), "-f", "json"],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    writer.wait(timeout=10)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["bitwidth"] == 4


def test_hist_channel_of_batches_of_different_ranks_is_an_error(tmp_path):
    for folder, shape in (("b1", (3, 4, 6)), ("b2", (4, 6))):
        (tmp_path / folder).mkdir()
        np.save(tmp_path / folder / "x.npy", np.ones(shape, np.float32))
    result = runner.invoke(app, ["hist", str(tmp_path / "b1" / "x.npy"), str(tmp_path / "b2" / "x.npy"),
                                 "-t", "x", "--axis", "-1", "--channel", "0"])  # fmt: skip
    assert_one_error_line(
        result, "qcalc: error: tensor 'x': --channel needs batches of one rank, not ranks 2, 3"
    )
