"""The library's public paths keep working whatever the package layout, and its records
behave: every name in qcalc.__all__ resolves, qcalc.formats is importable both ways, and an
Encoding (arrays inside) compares by identity instead of raising."""

from __future__ import annotations

import importlib
import subprocess
import sys

import numpy as np
import pytest

import qcalc


@pytest.mark.parametrize("name", qcalc.__all__)
def test_every_public_name_resolves(name):
    assert getattr(qcalc, name) is not None


def test_formats_is_importable_as_a_module_and_an_attribute():
    from qcalc import formats

    module = importlib.import_module("qcalc.formats")
    for name in (
        "read",
        "write",
        "loads",
        "dumps",
        "convert",
        "convert_file",
        "diff",
        "EncodingFile",
    ):
        assert getattr(formats, name) is getattr(module, name)
    assert set(module.__all__) >= {"read", "write", "diff", "VERSIONS"}
    assert module.VERSIONS == ("0.6.1", "1.0.0", "2.0.0", "2.1.0")


def test_import_qcalc_loads_no_numpy():
    """`qcalc --help` and `--version` start without numpy: the package imports lazily."""
    code = "import sys, qcalc, qcalc.cli; print('numpy' in sys.modules, 'rich' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_encodings_compare_by_identity_and_hash():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    a = qcalc.encode_array(x, qcalc.Spec(per_channel=True))
    b = qcalc.encode_array(x, qcalc.Spec(per_channel=True))
    assert a == a and a != b  # per-channel arrays: no ValueError from ==
    assert len({a, b, a}) == 2  # hashable
    np.testing.assert_array_equal(a.scale, b.scale)  # same numbers, different objects
