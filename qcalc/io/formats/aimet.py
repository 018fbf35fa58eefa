"""AIMET encodings files: versions, the in-memory file, and how AIMET describes a grid.

Writing lives in aimet_write.py, reading in aimet_read.py; both follow aimet-torch 2.42
(tests/golden/NOTES.md, sections 12 and 13).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from qcalc.core.choices import VERSIONS, Kind
from qcalc.core.encoding import Encoding
from qcalc.errors import FormatError

LEGACY_VERSIONS = ("0.6.1", "1.0.0")  # param/activation sections; unsigned-convention offsets
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


@dataclass(frozen=True)
class EncodingFile:
    """The encodings one file holds: parameters and activations, each in file order.

    `version` is the version the file was read as (None for computed encodings).
    `quantizer_args` and `excluded_layers` are 0.6.1 / 1.0.0 metadata kept from a file read;
    when `quantizer_args` is None the writer describes the encodings' own settings.
    `model_export`: the encodings of a whole model, written as QuantSim's export writes them
    (0.6.1 / 1.0.0 symmetry flags from the offsets; `is_symmetric` of the parameters).

    >>> EncodingFile(params=[]).encodings
    ()
    """

    params: Sequence[Encoding] = ()
    activations: Sequence[Encoding] = ()
    version: Optional[str] = None
    quantizer_args: Optional[Mapping[str, Any]] = None
    excluded_layers: Sequence[str] = ()
    model_export: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "activations", tuple(self.activations))
        object.__setattr__(self, "excluded_layers", tuple(self.excluded_layers))

    @property
    def encodings(self) -> tuple[Encoding, ...]:
        """Activations, then parameters: the order of a 2.x file's single list."""
        return (*self.activations, *self.params)  # type: ignore[misc]

    def with_roles(self) -> list[tuple[Kind, Encoding]]:
        """(role, encoding) pairs in the order of `encodings`."""
        return [("activation", e) for e in self.activations] + [("param", e) for e in self.params]


BLOCKWISE = ("per-block", "lpbq")


def is_blockwise(enc: Encoding) -> bool:
    """Per-block and LPBQ encodings: a grid of blocks, each `block_size` long on one axis."""
    return enc.granularity in BLOCKWISE


def blockwise_channel_axis(shape: Sequence[int], block_axis: int) -> Optional[int]:
    """The channel axis of a blockwise grid as AIMET finds it: the one axis besides the block
    axis with more than one cell; without one, the axis before the block axis (None for a
    rank-1 grid). FormatError when several axes besides the block axis have cells."""
    others = [i for i, size in enumerate(shape) if size > 1 and i != block_axis]
    if len(others) > 1:
        raise FormatError(
            f"axes {', '.join(map(str, others))} besides the block axis {block_axis} have more "
            "than one cell (one channel axis expected)"
        )
    if others:
        return others[0]
    return (block_axis - 1) % len(shape) if len(shape) > 1 else None


def decompressed_bitwidth_of(bitwidth: int, multipliers: Any) -> int:
    """The decompressed bitwidth an LPBQ grid's integer multipliers need: bitwidth +
    ceil(log2(largest multiplier)). AIMET gives each channel's largest block the multiplier
    2^(dbw - bw), so this is the bitwidth the encoding was made with."""
    largest = int(np.max(multipliers)) if np.size(multipliers) else 1
    return bitwidth + max(largest - 1, 0).bit_length()


def check_version(version: str) -> str:
    """`version` if it is one of VERSIONS, else FormatError."""
    if version not in VERSIONS:
        raise FormatError(
            f"unknown encoding version '{version}' (choose from {', '.join(VERSIONS)})"
        )
    return version


def grid_bitwidth(qmin: int, qmax: int) -> Optional[int]:
    """AIMET's `bw`: defined only for the standard grids [0, 2^b-1] and [-2^(b-1), 2^(b-1)-1]."""
    levels = qmax - qmin + 1
    if levels < 2 or levels & (levels - 1) or qmin not in (0, -(levels // 2)):
        return None
    return levels.bit_length() - 1


def is_signed_grid(qmin: int, qmax: int) -> bool:
    return qmin < 0 <= qmax


def output_dtype(qmin: int, qmax: int) -> str:
    """2.x `output_dtype`: int<k> / uint<k> with k = ceil(log2(qmax - qmin + 1))."""
    prefix = "int" if is_signed_grid(qmin, qmax) else "uint"
    return f"{prefix}{(qmax - qmin).bit_length()}"
