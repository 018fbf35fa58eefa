"""`qcalc compare`: one tensor (or one channel) encoded under every convention, with what
each costs, side by side.

Decisions:

- **Rows**: one per convention, in `core.choices.Convention` order (AIMET first). The flags
  are the same for every row except `--convention`; a convention that does not offer them
  gets a row that says why (its `Spec` refused them) instead of numbers. `--signed` /
  `--unsigned` left out means each convention's own default.
- **Numbers**: each row's encoding is what `qcalc encode --convention C` computes with the
  same flags, and its metrics what `--metrics` reports (the toolchain's quantizer and
  dequantizer). With `--channel K` (per-channel or per-block flags), the row shows channel
  K's cells and the metrics of that slice, as `qcalc hist --channel K` measures them.
- **Errors** are `hist`'s: unknown tensor, bad --channel (exit 2).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Sequence, get_args

from qcalc.core import parallel
from qcalc.core.choices import Convention
from qcalc.core.encoding import Encoding, Metrics
from qcalc.core.spec import Spec
from qcalc.core.tensor import DEFAULT_CHUNK_BYTES, Progress
from qcalc.core.toolchains import TOOLCHAINS, shape_refused
from qcalc.errors import SpecError
from qcalc.ops.encode import PathLike, encode_tensor
from qcalc.ops.pick import (
    cell_encoding,
    channel_encoding,
    channel_ref,
    checked_channel,
    picked_tensor,
)

CONVENTIONS: tuple[str, ...] = get_args(Convention)


@dataclass(frozen=True)
class ConventionRow:
    """One convention's encoding of the tensor (or channel) and its metrics; `refused` is
    the reason, and `encoding` None, when the convention does not offer the flags."""

    convention: str
    toolchain: str
    source: str
    encoding: Optional[Encoding]
    metrics: Optional[Metrics]
    refused: str = ""


def _offered(spec: Spec, convention: str, shape) -> tuple[Optional[Spec], str]:
    """(`spec` under `convention`, "") when the convention offers it for a tensor of `shape`,
    else (None, why not)."""
    try:
        chosen = dataclasses.replace(spec, convention=convention)
    except SpecError as error:
        return None, str(error)
    refused = shape_refused(chosen, tuple(shape))
    return (None, refused) if refused is not None else (chosen, "")


@dataclass(frozen=True)
class Comparison:
    tensor: str
    dtype: str
    shape: tuple[int, ...]
    channel: Optional[tuple[int, int, int]]  # (axis, channel, channel count) with --channel
    rows: list[ConventionRow]


def compare(
    paths: Sequence[PathLike],
    spec: Spec,
    tensor: str,
    *,
    channel: Optional[int] = None,
    activations: Sequence[PathLike] = (),
    recipe=None,
    progress=None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    activation_bitwidth: Optional[int] = None,
    graph_axis: bool = True,
    jobs: Optional[int] = None,
) -> Comparison:
    """Tensor `tensor` (exact name) encoded under every convention with `spec`'s other
    settings (and `recipe`'s), with metrics; of its slice `channel` along the channel axis
    when given. Raises FilterError (no such tensor) or SpecError (bad --channel)."""
    from qcalc.core.metrics import tensor_metrics

    batches, resolved = picked_tensor(
        paths, activations, spec, recipe, tensor, activation_bitwidth, graph_axis, "compare"
    )
    picked = None
    if channel is not None:
        picked = checked_channel(batches, resolved.axis, channel, tensor)
    choices = [(convention, *_offered(resolved, convention, batches[0].shape))
               for convention in CONVENTIONS]  # fmt: skip
    offered = sum(chosen is not None for _, chosen, _ in choices)
    progress = progress or Progress()
    passes = 2 if channel is None else 1
    progress.start(offered, offered * passes * sum(ref.nbytes for ref in batches))
    rows = []
    with parallel.using(jobs):
        for convention, chosen, refused in choices:
            toolchain = TOOLCHAINS[convention]
            if chosen is None:
                rows.append(ConventionRow(
                    convention, toolchain.package, toolchain.source, None, None, refused
                ))  # fmt: skip
                continue
            encoding = encode_tensor(tensor, batches, chosen, picked is None, progress, chunk_bytes)
            shown, metrics = encoding, encoding.metrics
            if picked is not None:
                axis, k, _ = picked
                if encoding.granularity == "per-tensor":  # the slice under the tensor's grid
                    refs = [channel_ref(ref, axis, k) for ref in batches]
                elif encoding.block_size is None:
                    refs = [channel_ref(ref, axis, k) for ref in batches]
                    shown = cell_encoding(encoding, axis, k, refs[0].shape)
                else:
                    refs = [channel_ref(ref, axis, k, keepdims=True) for ref in batches]
                    shown = channel_encoding(encoding, axis, k)
                metrics = tensor_metrics(refs, shown, chunk_bytes=chunk_bytes)
            rows.append(
                ConventionRow(convention, toolchain.package, toolchain.source, shown, metrics)
            )
    first = batches[0]
    return Comparison(tensor, first.dtype.name, tuple(first.shape), picked, rows)
