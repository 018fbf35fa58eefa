"""Which elements share an encoding: per tensor, per channel, or per block within a channel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from qcalc.core.encoding import Encoding
from qcalc.core.spec import Spec
from qcalc.errors import SpecError


@dataclass(frozen=True)
class Layout:
    """How a tensor's elements map onto encoding cells.

    Per-channel keeps `channel_axis`; per-block also splits `block_axis` into blocks of
    `block_size` consecutive elements (AIMET's blockwise grid, e.g. (C, K/B) for a [C, K]
    weight). Cells are numbered in C order of the encoding grid.
    """

    shape: tuple[int, ...]
    channel_axis: Optional[int] = None
    block_axis: Optional[int] = None
    block_size: Optional[int] = None

    @property
    def granularity(self) -> str:
        if self.block_axis is not None:
            return "per-block"
        return "per-tensor" if self.channel_axis is None else "per-channel"

    @property
    def encoding_shape(self) -> tuple[int, ...]:
        """() per tensor, else the tensor's rank with C at the channel axis, K/B at the block
        axis and 1 elsewhere."""
        if self.channel_axis is None:
            return ()
        return tuple(self._cells_along(i, size) for i, size in enumerate(self.shape))

    def _cells_along(self, axis: int, size: int) -> int:
        if axis == self.block_axis:
            return size // self.block_size
        return size if axis == self.channel_axis else 1

    @property
    def row_multiple(self) -> int:
        """Chunks along axis 0 must hold a multiple of this many rows (whole blocks)."""
        return self.block_size if self.block_axis == 0 else 1

    @property
    def rows_are_cells(self) -> bool:
        """Whether axis 0 indexes cells (channels or blocks): then a chunk of rows covers a
        contiguous run of cells, else every chunk touches every cell."""
        return self.channel_axis is not None and 0 in (self.channel_axis, self.block_axis)

    def cell_name(self, index: int) -> str:
        """How errors name cell `index` (flat C order of the encoding grid): "" per tensor,
        "channel 3" per channel, "channel 3 block 5" per block."""
        if self.channel_axis is None:
            return ""
        position = np.unravel_index(index, self.encoding_shape)
        name = f"channel {int(position[self.channel_axis])}"
        if self.block_axis is not None:
            name += f" block {int(position[self.block_axis])}"
        return name

    def cell_view(self, values: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
        """`values` (a chunk: whole rows of the tensor) with each kept axis split out, and the
        axes to reduce over to get one value per cell (keeping the kept axes in place)."""
        if self.channel_axis is None:
            return values, tuple(range(values.ndim))
        split, reduce = [], []
        for axis, size in enumerate(values.shape):
            if axis == self.block_axis:
                split += [size // self.block_size, self.block_size]
                reduce.append(len(split) - 1)
            else:
                split.append(size)
                if axis != self.channel_axis:
                    reduce.append(len(split) - 1)
        return values.reshape(split), tuple(reduce)

    def cells(self, values: np.ndarray) -> np.ndarray:
        """A chunk as a (cells in the chunk, elements per cell) array, cells in C order."""
        view, reduce = self.cell_view(values)
        kept = [axis for axis in range(view.ndim) if axis not in reduce]
        moved = np.transpose(view, kept + list(reduce)) if kept else view
        cells = int(np.prod([view.shape[a] for a in kept], dtype=np.int64))
        return moved.reshape(cells, -1)


def layout_for(
    shape: tuple[int, ...],
    per_channel: bool,
    axis: int,
    where: str,
    block_size: Optional[int] = None,
    block_axis: int = -1,
) -> Layout:
    """The layout a Spec gives a tensor. Per-channel and per-block apply to tensors of rank
    >= 2; biases, norms and scalars stay per tensor so one setting covers a whole checkpoint.
    `where` names the tensor in errors.
    """
    if (not per_channel and block_size is None) or len(shape) < 2:
        return Layout(tuple(shape))
    return checked_layout(shape, axis, where, block_size, block_axis)


def spec_layout(spec: Spec, shape: tuple[int, ...], where: str) -> Layout:
    """`layout_for` with a Spec's channel and block settings."""
    return layout_for(
        tuple(shape), spec.per_channel, spec.axis, where, spec.block_size, spec.block_axis
    )


def checked_layout(
    shape: tuple[int, ...],
    axis: int,
    where: str,
    block_size: Optional[int] = None,
    block_axis: int = -1,
    whose: str = "",
) -> Layout:
    """Channels along `axis` (and blocks of `block_size` along `block_axis`) of a tensor of
    `shape`: the one place axes and blocks are checked, SpecError naming `where` otherwise
    (and `whose` axis it is: "encoding " for an encoding's own)."""
    channel = normalise_axis(axis, shape, where, f"{whose}axis")
    if block_size is None:
        return Layout(tuple(shape), channel)
    block = normalise_axis(block_axis, shape, where, f"{whose}block axis")
    if block == channel:
        raise SpecError(f"{where}: block axis {block_axis} is the channel axis {axis}")
    if shape[block] % block_size:
        raise SpecError(
            f"{where}: block size {block_size} does not divide the length {shape[block]} "
            f"of block axis {block_axis} (shape {list(shape)})"
        )
    return Layout(tuple(shape), channel, block, block_size)


def encoding_layout(encoding: Encoding, shape: tuple[int, ...], where: str) -> Layout:
    """How `encoding`'s grid lies on a tensor of `shape` (its axes are the tensor's); SpecError
    when the encoding does not record its axes or its grid does not fit the tensor."""
    shape = tuple(shape)
    if encoding.block_size is None and (
        encoding.granularity == "per-tensor" or encoding.scale.ndim == 0
    ):
        layout = Layout(shape)
    elif encoding.axis is None or (encoding.block_size is not None and encoding.block_axis is None):
        axes = "channel axis" if encoding.block_size is None else "channel and block axes"
        raise SpecError(f"{where}: the encoding does not record its {axes}")
    else:
        block_axis = -1 if encoding.block_axis is None else encoding.block_axis
        layout = checked_layout(
            shape, encoding.axis, where, encoding.block_size, block_axis, whose="encoding "
        )
    fits = (
        encoding.scale.size == 1
        if layout.channel_axis is None
        else layout.encoding_shape == encoding.encoding_shape
    )
    if not fits:
        raise SpecError(
            f"{where}: encoding grid {list(encoding.encoding_shape)} does not fit "
            f"shape {list(shape)}"
        )
    return layout


def channel_slice(shape: tuple[int, ...], axis: int, channel: int, where: str) -> tuple[int, int]:
    """(axis, channel) normalised for slicing channel `channel` out of a tensor of `shape`."""
    if len(shape) < 2:
        raise SpecError(f"{where}: --channel needs a tensor of rank >= 2, not shape {list(shape)}")
    axis = normalise_axis(axis, shape, where, "axis")
    count = shape[axis]
    if not -count <= channel < count:
        raise SpecError(
            f"{where}: channel {channel} is out of range: {count} channels along axis {axis} "
            f"(0..{count - 1})"
        )
    return axis, channel % count


def normalise_axis(axis: int, shape: tuple[int, ...], where: str, what: str = "axis") -> int:
    """`axis` of a tensor of `shape` as a non-negative index (negative counts from the end)."""
    rank = len(shape)
    if not -rank <= axis < rank:
        raise SpecError(
            f"{where}: {what} {axis} is out of range for shape {list(shape)} (rank {rank})"
        )
    return axis % rank
