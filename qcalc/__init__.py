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
    "compute_encodings": "qcalc.ops.encode",
    "encode_array": "qcalc.ops.encode",
    "EncodeResult": "qcalc.ops.encode",
    "Spec": "qcalc.core.spec",
    "Encoding": "qcalc.core.encoding",
    "QcalcError": "qcalc.errors",
    "Recipe": "qcalc.io.recipe",
    "Metrics": "qcalc.core.encoding",
    "array_metrics": "qcalc.core.metrics",
    "tensor_metrics": "qcalc.core.metrics",
    "inventory": "qcalc.ops.inventory",
}

if TYPE_CHECKING:
    from qcalc.core.encoding import Encoding, Metrics
    from qcalc.core.metrics import array_metrics, tensor_metrics
    from qcalc.core.spec import Spec
    from qcalc.errors import QcalcError
    from qcalc.io.recipe import Recipe
    from qcalc.ops.encode import EncodeResult, compute_encodings, encode_array
    from qcalc.ops.inventory import inventory


def __getattr__(name: str) -> Any:
    # Imported on first use so `qcalc --help` and `--version` start without numpy.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'qcalc' has no attribute {name!r}")
