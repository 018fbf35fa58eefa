"""The optional compiled kernels (qcalc/core/_kernels/*.c, built by `pip install`).

Each kernel reproduces a numpy function of qcalc.core bit for bit and is tested against it;
callers ask `kernel(name)` and fall back to numpy when it is None: not built (no compiler at
install time), disabled by QCALC_NO_EXTENSION=1, or switched off by `use_compiled(False)`.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
from types import ModuleType
from typing import Iterator, Optional

KERNELS = ("minmax", "histc", "sqnr")  # qcalc/core/_kernels/<name>.c -> qcalc.core._<name>
_enabled = os.environ.get("QCALC_NO_EXTENSION") != "1"


@functools.cache
def _load(name: str) -> Optional[ModuleType]:
    try:
        return importlib.import_module(f"qcalc.core._{name}")
    except ImportError:
        return None


def kernel(name: str) -> Optional[ModuleType]:
    """The compiled module `qcalc.core._<name>`, or None (numpy path)."""
    return _load(name) if _enabled else None


def built(name: str) -> bool:
    """Whether `qcalc.core._<name>` was built and imports, enabled or not."""
    return _load(name) is not None


@contextlib.contextmanager
def use_compiled(enabled: bool) -> Iterator[None]:
    """Run the block with the compiled kernels on or off (tests compare both paths)."""
    global _enabled
    before, _enabled = _enabled, enabled
    try:
        yield
    finally:
        _enabled = before
