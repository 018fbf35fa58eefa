"""Records: what to compute (Spec) and what was computed (Encoding)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import numpy as np

from qcalc import grid
from qcalc.errors import SpecError

Granularity = Literal["per-tensor", "per-channel", "per-block", "lpbq"]
Analyzer = Literal["minmax", "percentile", "sqnr", "tf-enhanced"]
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
    analyzer: Analyzer = "minmax"
    percentile: float = 99.99
    num_bins: Optional[int] = None
    block_size: Optional[int] = None
    block_axis: int = -1
    lpbq: bool = False
    decompressed_bitwidth: int = 8

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
        _check_choice("analyzer", self.analyzer, Analyzer)
        if not 50 <= self.percentile <= 100:
            raise SpecError(f"percentile {self.percentile:g} is out of range (50..100)")
        if self.num_bins is not None and self.num_bins < 1:
            raise SpecError(f"number of bins {self.num_bins} must be at least 1")
        if self.block_size is not None and self.block_size < 1:
            raise SpecError(f"block size {self.block_size} must be at least 1")
        if self.lpbq:
            if self.block_size is None:
                raise SpecError("--lpbq needs --block-size")
            if not self.symmetric or self.strict_symmetric or self.signed is False:
                raise SpecError("--lpbq grids are symmetric and signed: add --symmetric")
            if self.decompressed_bitwidth < self.bitwidth:
                raise SpecError(
                    f"decompressed bitwidth {self.decompressed_bitwidth} is below "
                    f"bitwidth {self.bitwidth}"
                )

    @property
    def bins(self) -> int:
        """Histogram bins: --num-bins, else AIMET's default (512 tf-enhanced, 2048 otherwise)."""
        if self.num_bins is not None:
            return self.num_bins
        return 512 if self.analyzer == "tf-enhanced" else 2048
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
    channel count at `axis` and 1 elsewhere, e.g. ``(C, 1)``; per-block grids also hold
    K / block_size at `block_axis`, e.g. ``(C, K/B)``, and LPBQ grids carry the per-channel float
    scale and the integer per-block multipliers whose product is `scale`. `raw_min` / `raw_max`
    are the range the analyzer produced before it was snapped to the grid. `dtype` and `shape`
    describe the tensor; they are None when unknown (an encoding read from an encodings file).
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
    block_size: Optional[int] = None
    block_axis: Optional[int] = None
    per_channel_scale: Optional[np.ndarray] = field(default=None, repr=False)
    per_block_int_scale: Optional[np.ndarray] = field(default=None, repr=False)
    decompressed_bitwidth: Optional[int] = None
    # qcalc.metrics.Metrics of the tensor under this encoding, when they were asked for
    metrics: Optional[Any] = field(default=None, repr=False, compare=False)

    @property
    def encoding_shape(self) -> tuple[int, ...]:
        return tuple(self.scale.shape)

    def _broadcastable(self, values: np.ndarray) -> np.ndarray:
        """Per-block grids repeat each cell over its block so they broadcast like the tensor."""
        if self.block_size is None or self.block_axis is None:
            return values
        return np.repeat(values, self.block_size, axis=self.block_axis)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Integer grid values of `x` (same dtype as `x`), as AIMET's Quantize computes them."""
        scale, offset = self._broadcastable(self.scale), self._broadcastable(self.offset)
        return grid.quantize(x, scale, offset, self.qmin, self.qmax)

    def quantize_dequantize(self, x: np.ndarray) -> np.ndarray:
        """`x` fake-quantized on this grid, as AIMET's QuantizeDequantize computes it."""
        scale, offset = self._broadcastable(self.scale), self._broadcastable(self.offset)
        return grid.quantize_dequantize(x, scale, offset, self.qmin, self.qmax)
