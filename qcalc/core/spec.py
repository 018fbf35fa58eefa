"""What to compute: `Spec`, the quantization settings of a tensor, and the integer grid they
describe. Pure Python (no numpy), so the command line can declare its options from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, get_args

from qcalc.core.choices import Analyzer, ComputeDtype, NonFinite, SymmetricOffset
from qcalc.errors import SpecError

MIN_BITWIDTH, MAX_BITWIDTH = 2, 32
# AIMET's histogram analyzers: bins by default, and tf-enhanced's limit on range growth
HISTOGRAM_BINS, TF_ENHANCED_BINS, TF_ENHANCED_GROWTH_LIMIT = 2048, 512, 3.0


def integer_range(bitwidth: int, signed: bool, strict: bool = False) -> tuple[int, int]:
    """(qmin, qmax) of a grid, e.g. ``integer_range(8, True) == (-128, 127)``.

    A strict-symmetric grid drops the most negative level: ``(-127, 127)`` for 8 bits.
    """
    if strict:
        return -(2 ** (bitwidth - 1)) + 1, 2 ** (bitwidth - 1) - 1
    if signed:
        return -(2 ** (bitwidth - 1)), 2 ** (bitwidth - 1) - 1
    return 0, 2**bitwidth - 1


def centre_offset(qmin: int, qmax: int) -> int:
    """The offset of a symmetric grid: -ceil((qmin + qmax) / 2), 0 on signed grids and
    -2^(b-1) on unsigned ones."""
    return -(qmin + qmax) // 2


@dataclass(frozen=True)
class Spec:
    """Quantization settings of a tensor (the command line's flags, adjusted by a recipe).

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
        if not MIN_BITWIDTH <= self.bitwidth <= MAX_BITWIDTH:
            raise SpecError(
                f"bitwidth {self.bitwidth} is out of range ({MIN_BITWIDTH}..{MAX_BITWIDTH})"
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
        """Histogram bins: num_bins, else AIMET's default (512 tf-enhanced, 2048 otherwise)."""
        if self.num_bins is not None:
            return self.num_bins
        return TF_ENHANCED_BINS if self.analyzer == "tf-enhanced" else HISTOGRAM_BINS

    @property
    def growth_limit(self) -> Optional[float]:
        """How far later batches may widen a histogram's first range (None: no limit)."""
        return TF_ENHANCED_GROWTH_LIMIT if self.analyzer == "tf-enhanced" else None

    @property
    def is_signed(self) -> bool:
        """Signedness after applying the default (signed iff symmetric)."""
        return self.symmetric if self.signed is None else self.signed

    @property
    def int_range(self) -> tuple[int, int]:
        """(qmin, qmax) of the integer grid."""
        return integer_range(self.bitwidth, self.is_signed, self.strict_symmetric)


def _check_choice(what: str, value: str, choices) -> None:
    allowed = get_args(choices)
    if value not in allowed:
        raise SpecError(f"unknown {what} {value!r} (choose from {', '.join(allowed)})")
