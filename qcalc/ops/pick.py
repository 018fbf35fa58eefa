"""One tensor of the inputs, picked by name for a closer look (`qcalc hist`, `qcalc explain`,
`qcalc compare`): its batches found by exact name and its Spec resolved, a channel checked
and sliced lazily (with its cells of an encoding), and its finite values' range streamed
chunk by chunk."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from qcalc.core.dtypes import FLOAT64, decoded, float32_view
from qcalc.core.encoding import Encoding
from qcalc.core.layout import channel_slice
from qcalc.core.spec import Spec
from qcalc.core.stats import NonFiniteCount, finite_minmax
from qcalc.core.tensor import DEFAULT_CHUNK_BYTES, TensorRef
from qcalc.core.toolchains import shape_refused
from qcalc.errors import FilterError, SpecError

NAMES_SHOWN = 5  # tensor names listed when --tensor names none


@dataclass(frozen=True)
class FiniteRange:
    """The finite values' range of some batches, and how many values were (not) finite."""

    min: float
    max: float
    finite: int
    nan: int
    posinf: int
    neginf: int


def finite_range(
    batches: Sequence[TensorRef],
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    float32_inf: bool = False,
) -> FiniteRange:
    """Stream `batches` once: min / max of the finite values (NaN, NaN when none is finite)
    and the counts of finite, NaN, +inf and -inf values. With `float32_inf` (float32
    arithmetic), float64 values beyond float32 count as ±inf, as the encoding sees them."""
    lo, hi = math.inf, -math.inf
    finite, nonfinite = 0, NonFiniteCount()
    for values in float64_chunks(batches, chunk_bytes, float32_inf):
        if values.size == 0:
            continue
        stats, count = finite_minmax(values, None)
        finite += values.size - count.total
        nonfinite = nonfinite + count
        lo, hi = min(lo, stats.min.item()), max(hi, stats.max.item())
    if not finite:
        lo = hi = math.nan
    return FiniteRange(lo, hi, finite, nonfinite.nan, nonfinite.posinf, nonfinite.neginf)


def float64_chunks(batches: Sequence[TensorRef], chunk_bytes: int, float32_inf: bool = False):
    """Each chunk of each batch, flattened and widened exactly to float64; with `float32_inf`
    a float64 tensor's values beyond float32 become ±inf (dtypes.float32_view)."""
    for ref in batches:
        for chunk in ref.chunks(chunk_bytes):
            values = decoded(np.asarray(chunk), ref.dtype).astype(FLOAT64).ravel()
            if float32_inf and ref.dtype.name == "float64":
                values = float32_view(values)[0]
            yield values


def channel_ref(ref: TensorRef, axis: int, channel: int, keepdims: bool = False) -> TensorRef:
    """`ref` sliced at `channel` along `axis` (both normalised), lazily: a view of the data,
    read in chunks like the tensor. `keepdims` keeps the axis (length 1)."""
    index = (slice(None),) * axis + (slice(channel, channel + 1) if keepdims else channel,)
    shape = tuple(ref.shape)
    shape = shape[:axis] + ((1,) if keepdims else ()) + shape[axis + 1 :]
    return TensorRef(ref.name, ref.source, ref.dtype, shape, lambda: ref.read()[index])


def find_tensor(found, tensor: str, purpose: str = "draw") -> tuple[str, list[TensorRef]]:
    """(kind, batches) of the tensor named exactly `tensor` in `found` (a
    `qcalc.ops.encode.Gathered`); parameters first. FilterError otherwise: an integer
    tensor's says why there is nothing to `purpose`, an unknown name lists the first
    NAMES_SHOWN names and the count."""
    for kind in ("param", "activation"):
        if tensor in found.groups[kind]:
            return kind, found.groups[kind][tensor]
    for skipped in found.skipped:
        if skipped.name == tensor:
            raise FilterError(f"tensor '{tensor}': {skipped.reason}; nothing to {purpose}")
    names = list(dict.fromkeys(name for group in found.groups.values() for name in group))
    if not names:
        raise FilterError(f"tensor '{tensor}' not found: the inputs hold no float tensor")
    shown = ", ".join(names[:NAMES_SHOWN]) + (", …" if len(names) > NAMES_SHOWN else "")
    count = f"{len(names)} tensor{'s' if len(names) != 1 else ''}"
    raise FilterError(f"tensor '{tensor}' not found; the inputs hold {count}: {shown}")


def checked_channel(
    batches: list[TensorRef], axis: int, channel: int, tensor: str
) -> tuple[int, int, int]:
    """(axis, channel, channel count), normalised and checked against every batch."""
    where = f"tensor '{tensor}'"
    ranks = sorted({len(ref.shape) for ref in batches})
    if len(ranks) > 1:
        raise SpecError(
            f"{where}: --channel needs batches of one rank, not ranks {', '.join(map(str, ranks))}"
        )
    axis = [channel_slice(tuple(ref.shape), axis, channel, where) for ref in batches][0][0]
    count = min(ref.shape[axis] for ref in batches)
    return axis, channel % count, count


def picked_tensor(
    paths: Sequence,
    activations: Sequence,
    spec: Spec,
    recipe,
    tensor: str,
    activation_bitwidth: Optional[int],
    graph_axis: bool,
    purpose: str = "draw",
) -> tuple[list[TensorRef], Spec]:
    """The batches of tensor `tensor` (exact name) in `paths` / `activations` and its Spec
    (`spec` adjusted by `recipe`, the activation bitwidth and the graph's axes, as `encode`
    resolves it). FilterError when there is no such tensor or a recipe skips it, SpecError
    when the Spec's convention cannot take its shape."""
    from qcalc.ops.encode import TensorSettings, gather

    found = gather(paths, activations)
    kind, batches = find_tensor(found, tensor, purpose)
    settings = TensorSettings(spec, recipe, found.graph, activation_bitwidth, graph_axis)
    resolved = settings.spec_for(batches[0], kind)
    if resolved is None:
        raise FilterError(f"tensor '{tensor}': skipped by a --recipe rule; nothing to {purpose}")
    refused = shape_refused(resolved, tuple(batches[0].shape))
    if refused is not None:
        raise SpecError(f"{batches[0].where}: {refused}")
    return batches, resolved


_CELL_FIELDS = ("scale", "offset", "min", "max", "raw_min", "raw_max")


def cell_encoding(encoding: Encoding, axis: int, k: int, shape) -> Encoding:
    """Per-channel cell k as a per-tensor encoding (0-d arrays) of the channel slice."""

    def cell(values: np.ndarray) -> np.ndarray:
        return np.take(values, k, axis=axis).reshape(())

    arrays = {name: cell(getattr(encoding, name)) for name in _CELL_FIELDS}
    if encoding.toolchain is not None:
        arrays["toolchain"] = encoding.toolchain.mapped(cell)
    return dataclasses.replace(
        encoding, granularity="per-tensor", axis=None, shape=tuple(shape), metrics=None, **arrays
    )


def channel_encoding(encoding: Encoding, axis: int, k: int) -> Encoding:
    """Channel k's blocks of a per-block / LPBQ encoding, the channel axis kept (length 1)."""

    def channel(values: np.ndarray) -> np.ndarray:
        return np.take(values, [k], axis=axis)

    arrays = {name: channel(getattr(encoding, name)) for name in _CELL_FIELDS}
    if encoding.toolchain is not None:
        arrays["toolchain"] = encoding.toolchain.mapped(channel)
    for name in ("per_channel_scale", "per_block_int_scale"):
        values = getattr(encoding, name)
        if values is not None and np.ndim(values) > axis:
            arrays[name] = np.take(values, [k], axis=axis)
    shape = None
    if encoding.shape is not None:
        shape = encoding.shape[:axis] + (1,) + encoding.shape[axis + 1 :]
    return dataclasses.replace(encoding, shape=shape, metrics=None, **arrays)
