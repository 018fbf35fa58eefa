"""What was computed: a tensor's `Encoding` (its grid's scale, offset and range per cell), and
`Metrics`, what quantizing the tensor on that grid costs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from qcalc.core import conventions, grid
from qcalc.core.choices import Granularity
from qcalc.core.conventions import ToolchainGrid
from qcalc.core.spec import Spec


@dataclass(frozen=True)
class Metrics:
    """Quantization error of one tensor (all its batches) under one encoding.

    Sums run over finite elements only (NaN and ±inf are counted, not evaluated) in float64.
    `sqnr_db` is ``10 log10(sum x^2 / sum (x - xhat)^2)``: +inf when the error is 0 (an
    all-zero tensor too), -inf when ``sum x^2`` is 0 but the error is not. `mse`,
    `max_abs_error` and `clipped_fraction` are 0 when no element is finite.
    `grid_used_fraction` is the part of the integer grid the values span: in each cell the
    levels from the lowest to the highest one hit, ``hi - lo + 1``, summed over cells, over
    ``cells * levels`` (None when no element is finite). `worst_sqnr_db` /
    `worst_index` name the cell (flat C-order index in the encoding grid) with the lowest
    SQNR, the lowest index on ties; None for per-tensor encodings.
    """

    sqnr_db: float
    mse: float
    max_abs_error: float
    clipped_fraction: float
    grid_used_fraction: Optional[float]
    worst_sqnr_db: Optional[float]
    worst_index: Optional[int]
    elements: int
    nan_count: int
    inf_count: int

    def record(self) -> dict[str, Any]:
        """The METRIC_FIELDS as a plain dict (Python floats / ints / None), in that order."""
        return {key: _plain(getattr(self, key)) for key in METRIC_FIELDS}


# The headline metrics, in the order every record and table lists them.
METRIC_FIELDS = (
    "sqnr_db", "mse", "max_abs_error", "clipped_fraction", "grid_used_fraction",
    "worst_sqnr_db", "worst_index",
)  # fmt: skip


def _plain(value: Any) -> Any:
    """numpy scalars as Python floats / ints (None stays None)."""
    if value is None or isinstance(value, (bool, int)) and not isinstance(value, np.integer):
        return value
    return int(value) if isinstance(value, np.integer) else float(value)


@dataclass(frozen=True, eq=False)
class Encoding:
    """One tensor's encoding: float32 arrays shaped like the encoding grid.

    Per-tensor grids are 0-d (shape ``()``); per-channel grids have the tensor's rank with the
    channel count at `axis` and 1 elsewhere, e.g. ``(C, 1)``; per-block grids also hold
    K / block_size at `block_axis`, e.g. ``(C, K/B)``, and LPBQ grids carry the per-channel float
    scale and the integer per-block multipliers whose product is `scale`. `raw_min` / `raw_max`
    are the range the analyzer produced before it was snapped to the grid. `dtype` and `shape`
    describe the tensor; they are None when unknown (an encoding read from an encodings file).
    Under another toolchain's convention (`spec.convention`), `toolchain` holds its numbers
    as it stores them (zero point, stored scale) and quantizing follows its quantizer; the
    scale may then be negative (llama.cpp Q4_0) and the offset fractional (quanto's float
    shift, llama.cpp Q4_1's block minimum).
    Encodings compare by identity (their arrays have no single truth value).
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
    toolchain: Optional[ToolchainGrid] = field(default=None, repr=False)
    # qcalc.core.metrics.Metrics of the tensor under this encoding, when they were asked for
    metrics: Optional[Any] = field(default=None, repr=False, compare=False)

    @classmethod
    def on_grid(
        cls,
        name: str,
        source: str,
        spec: Spec,
        granularity: Granularity,
        scale: np.ndarray,
        offset: np.ndarray,
        *,
        raw_min: Optional[np.ndarray] = None,
        raw_max: Optional[np.ndarray] = None,
        **fields: Any,
    ) -> "Encoding":
        """The encoding of `scale` and `offset` on `spec`'s integer grid: qmin / qmax are the
        spec's, min / max the range the grid covers, and `raw_min` / `raw_max` (the analyzer's
        range) that range too unless given. `fields`: dtype, shape, axis (required), and the
        block fields."""
        qmin, qmax = spec.int_range
        if fields.get("toolchain") is not None:
            lo, hi = conventions.covered_range(scale, offset, qmin, qmax)
        else:
            lo, hi = grid.effective_range(scale, offset, qmin, qmax)
        return cls(
            name=name, source=source, spec=spec, granularity=granularity, qmin=qmin, qmax=qmax,
            scale=scale, offset=offset, min=lo, max=hi,
            raw_min=lo if raw_min is None else raw_min,
            raw_max=hi if raw_max is None else raw_max,
            **fields,
        )  # fmt: skip

    @property
    def encoding_shape(self) -> tuple[int, ...]:
        return tuple(self.scale.shape)

    def _broadcastable(self, values: np.ndarray) -> np.ndarray:
        """Per-block grids repeat each cell over its block so they broadcast like the tensor."""
        if self.block_size is None or self.block_axis is None:
            return values
        return np.repeat(values, self.block_size, axis=self.block_axis)

    def _toolchain_grid(self) -> ToolchainGrid:
        """The toolchain's numbers repeated over each block (see `_broadcastable`)."""
        return self.toolchain.mapped(self._broadcastable)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Integer grid values of `x` (same dtype as `x`), as AIMET's Quantize computes them
        (or the convention's toolchain: float32 in, float32 integers out)."""
        if self.toolchain is not None:
            return conventions.quantize(self.spec, x, self._toolchain_grid())
        scale, offset = self._broadcastable(self.scale), self._broadcastable(self.offset)
        return grid.quantize(x, scale, offset, self.qmin, self.qmax)

    def quantize_dequantize(self, x: np.ndarray) -> np.ndarray:
        """`x` fake-quantized on this grid, as AIMET's QuantizeDequantize computes it (or the
        convention's toolchain quantizes and dequantizes it, in float32)."""
        if self.toolchain is not None:
            return conventions.quantize_dequantize(self.spec, x, self._toolchain_grid())
        scale, offset = self._broadcastable(self.scale), self._broadcastable(self.offset)
        return grid.quantize_dequantize(x, scale, offset, self.qmin, self.qmax)
