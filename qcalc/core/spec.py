"""What to compute: `Spec`, the quantization settings of a tensor, and the integer grid they
describe. Pure Python (no numpy), so the command line can declare its options from it."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Optional, get_args

from qcalc.core import toolchains
from qcalc.core.choices import Analyzer, ComputeDtype, Convention, NonFinite, SymmetricOffset
from qcalc.errors import SpecError

# Grids of 2 to 32 bits: what AIMET's golden data spans. A 1-bit grid has no symmetric form
# (AIMET's symmetric range divides by floor(n/2) = 0), and integers beyond 32 bits are neither
# in AIMET's encodings nor exact in the float arithmetic of the grid. The LPBQ decompressed
# bitwidth has the same bounds.
MIN_BITWIDTH, MAX_BITWIDTH = 2, 32
# AIMET's histogram analyzers: bins by default, and tf-enhanced's limit on range growth
HISTOGRAM_BINS, TF_ENHANCED_BINS, TF_ENHANCED_GROWTH_LIMIT = 2048, 512, 3.0
# The most histogram bins: 32 times AIMET's default. Each channel of a per-channel histogram
# keeps this many counts (as much state as a 64K-element weight row per channel) and the SQNR
# search scores every candidate grid against every bin, so more bins cost memory and time
# linearly while AIMET's results hardly change beyond a few thousand.
MAX_BINS = 1 << 16
# Axes (channel and block axes, negative counting from the end) of at most MAX_RANK
# dimensions, numpy's own limit on an array's rank; each tensor's rank bounds them further.
MAX_RANK = 64
# The longest block: int32's maximum (AIMET and QNN hold block sizes as 32-bit integers).
MAX_BLOCK_SIZE = 2**31 - 1
# Percentiles from 50 to 100, as AIMET's percentile analyzer allows (finite, so not NaN).
MIN_PERCENTILE, MAX_PERCENTILE = 50, 100


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
    Bounds (SpecError otherwise, as for a value of the wrong type): bitwidth and
    decompressed_bitwidth 2..32, axis and block_axis -64..63, percentile 50..100 (finite),
    num_bins 1..65536, block_size 1..2^31-1.

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
    convention: Convention = "aimet"

    def __post_init__(self) -> None:
        for name, what in _INTEGERS.items():
            value = getattr(self, name)
            if not (value is None and name in _OPTIONAL or _is_integer(value)):
                raise SpecError(f"{what} must be an integer, got {_repr(value)}")
        if not _is_real(self.percentile):
            raise SpecError(f"percentile must be a number, got {_repr(self.percentile)}")
        if not MIN_BITWIDTH <= self.bitwidth <= MAX_BITWIDTH:
            raise SpecError(
                f"bitwidth {int_text(self.bitwidth)} is out of range "
                f"({MIN_BITWIDTH}..{MAX_BITWIDTH})"
            )
        for name, what in (("axis", "axis"), ("block_axis", "block axis")):
            value = getattr(self, name)
            if not -MAX_RANK <= value < MAX_RANK:
                raise SpecError(
                    f"{what} {int_text(value)} is out of range ({-MAX_RANK}..{MAX_RANK - 1})"
                )
        if self.strict_symmetric and not self.symmetric:
            raise SpecError("--strict-symmetric needs --symmetric")
        if self.strict_symmetric and self.signed is False:
            raise SpecError("--strict-symmetric grids are signed; drop --unsigned")
        _check_choice("symmetric offset", self.symmetric_offset, SymmetricOffset)
        _check_choice("compute dtype", self.compute_dtype, ComputeDtype)
        _check_choice("nonfinite mode", self.nonfinite, NonFinite)
        _check_choice("analyzer", self.analyzer, Analyzer)
        if not MIN_PERCENTILE <= self.percentile <= MAX_PERCENTILE:  # NaN fails too
            raise SpecError(
                f"percentile {_shown(self.percentile)} is out of range "
                f"({MIN_PERCENTILE}..{MAX_PERCENTILE})"
            )
        if self.num_bins is not None and self.num_bins < 1:
            raise SpecError(f"number of bins {int_text(self.num_bins)} must be at least 1")
        if self.num_bins is not None and self.num_bins > MAX_BINS:
            raise SpecError(
                f"number of bins {int_text(self.num_bins)} must be at most {MAX_BINS} "
                f"(AIMET's default is {HISTOGRAM_BINS})"
            )
        if self.block_size is not None and self.block_size < 1:
            raise SpecError(f"block size {int_text(self.block_size)} must be at least 1")
        if self.block_size is not None and self.block_size > MAX_BLOCK_SIZE:
            raise SpecError(
                f"block size {int_text(self.block_size)} must be at most {MAX_BLOCK_SIZE}"
            )
        if not MIN_BITWIDTH <= self.decompressed_bitwidth <= MAX_BITWIDTH:
            raise SpecError(
                f"decompressed bitwidth {int_text(self.decompressed_bitwidth)} is out of range "
                f"({MIN_BITWIDTH}..{MAX_BITWIDTH})"
            )
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
        _check_choice("convention", self.convention, Convention)
        reason = toolchains.unsupported(self)
        if reason is not None:
            raise SpecError(reason)

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
        """Signedness after applying the default (signed iff symmetric, unless the
        convention fixes it)."""
        if self.signed is not None:
            return self.signed
        return toolchains.default_signed(self.convention, self.symmetric, self.bitwidth)

    @property
    def int_range(self) -> tuple[int, int]:
        """(qmin, qmax) of the integer grid."""
        if self.convention != "aimet":
            return toolchains.integer_grid(
                self.convention, self.bitwidth, self.is_signed, self.symmetric
            )
        return integer_range(self.bitwidth, self.is_signed, self.strict_symmetric)


# The integer fields and how messages name them; those in _OPTIONAL may be None.
_INTEGERS = {
    "bitwidth": "bitwidth",
    "axis": "axis",
    "num_bins": "number of bins",
    "block_size": "block size",
    "block_axis": "block axis",
    "decompressed_bitwidth": "decompressed bitwidth",
}
_OPTIONAL = ("num_bins", "block_size")


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def int_text(value: Any) -> str:
    """An integer as messages show it: in full up to 20 digits, else its sign and magnitude
    (``-~10^400``), which never converts a huge integer to decimal.

    >>> int_text(-12), int_text(10**400)
    ('-12', '~10^400')
    """
    if not _is_integer(value):
        return _shown(value)
    value = int(value)
    if abs(value) < 10**20:
        return str(value)
    digits = int(abs(value).bit_length() * math.log10(2))
    return f"{'-' if value < 0 else ''}~10^{digits}"


def _shown(value: Any) -> str:
    """A setting's value in a range message: integers by int_text, other numbers as %g, the
    rest as `_repr`."""
    if _is_integer(value):
        return int_text(value)
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return f"{float(value):g}"
    return _repr(value)


def _repr(value: Any) -> str:
    """A value of the wrong type in a message: integers by int_text, the rest as repr (which
    escapes control characters), cut at 40 characters."""
    if _is_integer(value):
        return int_text(value)
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_choice(what: str, value: str, choices) -> None:
    allowed = get_args(choices)
    if not isinstance(value, str) or value not in allowed:
        raise SpecError(f"unknown {what} {_shown(value)} (choose from {', '.join(allowed)})")
