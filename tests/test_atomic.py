"""Atomic writes: an interrupted write never truncates or replaces the old file, and leaves no
temporary file behind."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from qcalc import Spec, encode_array
from qcalc.io import atomic
from qcalc.io.atomic import atomic_open, same_file, write_atomic
from qcalc.io.formats import EncodingFile, FormatError, dumps, write

OLD = b'{"old": true}\n'


@pytest.fixture
def target(tmp_path):
    path = tmp_path / "model.encodings"
    path.write_bytes(OLD)
    return path


def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != "model.encodings")


def test_success_replaces(target):
    write_atomic(target, "new\n")
    assert target.read_bytes() == b"new\n"
    assert leftovers(target.parent) == []


def test_success_creates(tmp_path):
    path = tmp_path / "fresh.json"
    write_atomic(path, b"\x00\x01")
    assert path.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.json"]


@pytest.mark.parametrize("interrupt", [OSError("disk full"), KeyboardInterrupt()],
                         ids=["error", "ctrl-c"])  # fmt: skip
def test_failure_mid_write_keeps_the_old_file(target, monkeypatch, interrupt):
    def half_then_fail(f, data):
        f.write(data[: len(data) // 2])
        f.flush()
        raise interrupt

    monkeypatch.setattr(atomic, "_write", half_then_fail)
    with pytest.raises(type(interrupt)):
        write_atomic(target, "x" * 100_000)
    assert target.read_bytes() == OLD
    assert leftovers(target.parent) == []


@pytest.mark.parametrize("interrupt", [RuntimeError("boom"), KeyboardInterrupt()],
                         ids=["error", "ctrl-c"])  # fmt: skip
def test_failure_inside_atomic_open(target, interrupt):
    with pytest.raises(type(interrupt)):
        with atomic_open(target) as f:
            f.write("partial")
            raise interrupt
    assert target.read_bytes() == OLD
    assert leftovers(target.parent) == []


def test_failing_fsync_keeps_the_old_file(target, monkeypatch):
    def broken(fd):
        raise OSError("I/O error")

    monkeypatch.setattr(atomic.os, "fsync", broken)
    with pytest.raises(OSError):
        write_atomic(target, "new")
    assert target.read_bytes() == OLD
    assert leftovers(target.parent) == []


def test_failing_rename_keeps_the_old_file(target, monkeypatch):
    def broken(src, dst):
        raise OSError("cross-device link")

    monkeypatch.setattr(atomic.os, "replace", broken)
    with pytest.raises(OSError):
        write_atomic(target, "new")
    assert target.read_bytes() == OLD
    assert leftovers(target.parent) == []


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "no" / "such" / "dir.json", "x")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_permissions(target, tmp_path):
    os.chmod(target, 0o640)
    write_atomic(target, "new")
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    fresh = tmp_path / "fresh.json"
    write_atomic(fresh, "x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(fresh).st_mode) == 0o666 & ~umask


def test_encodings_write_refuses_before_touching_the_file(target):
    x = np.array([-1.0, np.nan], dtype=np.float32)
    enc = encode_array(x, Spec(nonfinite="keep"), name="x")
    assert np.isnan(enc.scale)
    with pytest.raises(FormatError):
        write(target, EncodingFile(activations=[enc]), "1.0.0")
    assert target.read_bytes() == OLD
    assert leftovers(target.parent) == []


def test_encodings_write_interrupted(target, monkeypatch):
    enc = encode_array(np.array([-1.0, 2.0], dtype=np.float32), name="x")
    data = EncodingFile(activations=[enc])

    def interrupted(f, data):
        f.write(data[:10])
        raise KeyboardInterrupt

    monkeypatch.setattr(atomic, "_write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write(target, data, "2.0.0")
    assert target.read_bytes() == OLD
    monkeypatch.undo()
    write(target, data, "2.0.0")
    assert target.read_text() == dumps(data, "2.0.0")
    assert leftovers(target.parent) == []


def test_same_file(tmp_path):
    a = tmp_path / "a.json"
    a.write_text("{}")
    (tmp_path / "sub").mkdir()
    assert same_file(a, tmp_path / "sub" / ".." / "a.json")
    assert same_file(str(a), a)
    if hasattr(os, "symlink"):
        (tmp_path / "link.json").symlink_to(a)
        assert same_file(tmp_path / "link.json", a)
    if hasattr(os, "link"):
        os.link(a, tmp_path / "hard.json")
        assert same_file(tmp_path / "hard.json", a)
    assert not same_file(a, tmp_path / "b.json")  # b does not exist
    (tmp_path / "b.json").write_text("{}")
    assert not same_file(a, tmp_path / "b.json")
    assert same_file(tmp_path / "absent.json", tmp_path / "sub" / ".." / "absent.json")
