"""The compiled kernels are built where a C compiler is, and can be switched off."""

import os
import shutil
import sys
from pathlib import Path

import pytest

from qcalc.core import kernels

SOURCES = Path(__file__).resolve().parent.parent / "qcalc" / "core" / "_kernels"
KERNELS = sorted(path.stem for path in SOURCES.glob("*.c"))


@pytest.mark.skipif(
    shutil.which("cc") is None or os.environ.get("QCALC_NO_EXTENSION") == "1",
    reason="no C compiler, or installed with QCALC_NO_EXTENSION=1: the numpy path runs",
)
@pytest.mark.parametrize("name", KERNELS)
def test_kernel_built_where_a_compiler_is(name):
    # A broken build would otherwise fall back to numpy silently (optional extensions).
    assert sys.platform != "linux" or kernels.built(name), f"qcalc.core._{name} was not built"


@pytest.mark.parametrize("name", kernels.KERNELS)
def test_use_compiled_switches_off(name):
    with kernels.use_compiled(False):
        assert kernels.kernel(name) is None
    assert kernels.kernel(name) is (kernels._load(name) if kernels._enabled else None)
