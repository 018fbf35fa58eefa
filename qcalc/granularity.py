"""Which elements share an encoding: per tensor or per channel along an axis."""

from __future__ import annotations

from typing import Optional

from qcalc.errors import SpecError


def channel_axis(
    shape: tuple[int, ...], per_channel: bool, axis: int, where: str
) -> Optional[int]:
    """The non-negative channel axis for a tensor, or None when it is encoded per tensor.

    Per-channel applies to tensors of rank >= 2; biases, norms and scalars stay per tensor so
    one setting covers a whole checkpoint. `where` names the tensor in errors.
    """
    if not per_channel or len(shape) < 2:
        return None
    rank = len(shape)
    if not -rank <= axis < rank:
        raise SpecError(
            f"{where}: axis {axis} is out of range for shape {list(shape)} (rank {rank})"
        )
    return axis % rank


def encoding_shape(shape: tuple[int, ...], axis: Optional[int]) -> tuple[int, ...]:
    """Shape of the encoding grid: () per tensor, else the tensor's rank with C at `axis`."""
    if axis is None:
        return ()
    return tuple(size if i == axis else 1 for i, size in enumerate(shape))
