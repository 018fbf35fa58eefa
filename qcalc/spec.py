"""Records: what to compute (Spec) and what was computed (Encoding)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import numpy as np

from qcalc import grid
from qcalc.errors import SpecError

Granularity = Literal["per-tensor", "per-channel"]
SymmetricOffset = Literal["centered", "zero"]
ComputeDtype = Literal["float32", "input"]
NonFinite = Literal["error", "ignore", "keep"]


@dataclass(frozen=True)
class Spec:
    """Quantization settings shared by every tensor of one run.

    `signed=None` means AIMET's default: signed when symmetric, unsigned when asymmetric.

    >>> Spec(bitwidth=4, symmetric=True).int_range
    (-8, 7)
    """

    bitwidth: int = 8
    symmetric: bool = False
    signed: Optional[bool] = None
    strict_symmetric: bool = False
    symmetric_offset: SymmetricOffset = "centered"
    per_channel: bool = False
    axis: int = 0
    compute_dtype: ComputeDtype = "float32"
    nonfinite: NonFinite = "error"

    def __post_init__(self) -> None:
        if not grid.MIN_BITWIDTH <= self.bitwidth <= grid.MAX_BITWIDTH:
            raise SpecError(
                f"bitwidth {self.bitwidth} is out of range "
                f"({grid.MIN_BITWIDTH}..{grid.MAX_BITWIDTH})"
            )
        if self.strict_symmetric and not self.symmetric:
            raise SpecError("--strict-symmetric needs --symmetric")
        if self.strict_symmetric and self.signed is False:
            raise SpecError("--strict-symmetric grids are signed; drop --unsigned")
        _check_choice("symmetric offset", self.symmetric_offset, SymmetricOffset)
        _check_choice("compute dtype", self.compute_dtype, ComputeDtype)
        _check_choice("nonfinite mode", self.nonfinite, NonFinite)

    @property
    def is_signed(self) -> bool:
        """Signedness after applying the default (signed iff symmetric)."""
        return self.symmetric if self.signed is None else self.signed

    @property
    def int_range(self) -> tuple[int, int]:
        """(qmin, qmax) of the integer grid."""
        return grid.integer_range(self.bitwidth, self.is_signed, self.strict_symmetric)


def _check_choice(what: str, value: str, choices) -> None:
    allowed = choices.__args__
    if value not in allowed:
        raise SpecError(f"unknown {what} {value!r} (choose from {', '.join(allowed)})")


@dataclass(frozen=True)
class Encoding:
    """One tensor's encoding: float32 arrays shaped like the encoding grid.

    Per-tensor grids are 0-d (shape ``()``); per-channel grids have the tensor's rank with the
    channel count at `axis` and 1 elsewhere, e.g. ``(C, 1)``. `raw_min` / `raw_max` are the
    range the analyzer produced before it was snapped to the grid. `dtype` and `shape` describe
    the tensor; they are None when unknown (an encoding read from an encodings file).
    """

    name: str
    source: str
    dtype: Optional[str]
    shape: Optional[tuple[int, ...]]
    spec: Spec
    granularity: Granularity
    axis: Optional[int]
    qmin: int
    qmax: int
    scale: np.ndarray = field(repr=False)
    offset: np.ndarray = field(repr=False)
    min: np.ndarray = field(repr=False)
    max: np.ndarray = field(repr=False)
    raw_min: np.ndarray = field(repr=False)
    raw_max: np.ndarray = field(repr=False)

    @property
    def encoding_shape(self) -> tuple[int, ...]:
        return tuple(self.scale.shape)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Integer grid values of `x` (same dtype as `x`), as AIMET's Quantize computes them."""
        return grid.quantize(x, self.scale, self.offset, self.qmin, self.qmax)

    def quantize_dequantize(self, x: np.ndarray) -> np.ndarray:
        """`x` fake-quantized on this grid, as AIMET's QuantizeDequantize computes it."""
        return grid.quantize_dequantize(x, self.scale, self.offset, self.qmin, self.qmax)
