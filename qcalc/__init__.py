"""qcalc: AIMET-exact quantization encodings (min, max, scale, offset) without torch.

>>> import numpy as np, qcalc
>>> enc = qcalc.encode_array(np.array([-1.0, 2.0], dtype=np.float32), qcalc.Spec(symmetric=True))
>>> enc.qmin, enc.qmax, int(enc.offset)
(-128, 127, 0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "compute_encodings",
    "encode_array",
    "EncodeResult",
    "Spec",
    "Encoding",
    "QcalcError",
    "Recipe",
    "Metrics",
    "array_metrics",
    "tensor_metrics",
    "inventory",
    "__version__",
]

_LAZY = {
    "compute_encodings": "qcalc.api",
    "encode_array": "qcalc.api",
    "EncodeResult": "qcalc.api",
    "Spec": "qcalc.spec",
    "Encoding": "qcalc.spec",
    "QcalcError": "qcalc.errors",
    "Recipe": "qcalc.recipe",
    "Metrics": "qcalc.metrics",
    "array_metrics": "qcalc.metrics",
    "tensor_metrics": "qcalc.metrics",
    "inventory": "qcalc.inventory",
}

if TYPE_CHECKING:
    from qcalc.api import EncodeResult, compute_encodings, encode_array
    from qcalc.errors import QcalcError
    from qcalc.inventory import inventory
    from qcalc.metrics import Metrics, array_metrics, tensor_metrics
    from qcalc.recipe import Recipe
    from qcalc.spec import Encoding, Spec


def __getattr__(name: str) -> Any:
    # Imported on first use so `qcalc --help` and `--version` start without numpy.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'qcalc' has no attribute {name!r}")
