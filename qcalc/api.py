"""Glue: readers -> statistics -> grid. Returns records; never prints or exits."""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from qcalc import grid
from qcalc.analyzers import (
    MinMax,
    NonFiniteCount,
    is_all_finite,
    reduce_minmax,
    short_rows_minmax,
)
from qcalc.dtypes import FLOAT32, FLOAT64, widen
from qcalc.errors import FilterError, NonFiniteError, SpecError
from qcalc.granularity import layout_for
from qcalc.readers.base import DEFAULT_CHUNK_BYTES, Skipped, TensorRef
from qcalc.spec import Encoding, Spec

PathLike = Union[str, "os.PathLike[str]"]


class Progress:
    """Receives progress events; this base class ignores them (the CLI draws a bar)."""

    def start(self, tensors: int, total_bytes: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass

    def tensor_done(self) -> None:
        pass


@dataclass(frozen=True)
class EncodeResult:
    """Encodings in input order, and the tensors that were found but not encoded."""

    encodings: list[Encoding]
    skipped: list[Skipped] = field(default_factory=list)
    activations: list[Encoding] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # every file read, for overwrite checks
    recipe_skipped: list[str] = field(default_factory=list)  # names a recipe rule skipped
    unmatched_rules: list = field(default_factory=list)  # recipe rules that matched no tensor


def open_inputs(paths: Sequence[PathLike]) -> tuple[list[TensorRef], list[Skipped]]:
    """Read the headers of every input, in command-line order."""
    from qcalc.readers import open_input

    refs: list[TensorRef] = []
    skipped: list[Skipped] = []
    for path in paths:
        for item in open_input(path):
            (skipped if isinstance(item, Skipped) else refs).append(item)
    empty = [ref for ref in refs if 0 in ref.shape]
    skipped += [Skipped(ref.name, ref.source, "empty tensor, not encoded") for ref in empty]
    return [ref for ref in refs if 0 not in ref.shape], skipped


def select(
    refs: list[TensorRef],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    purpose: str = "encode",
) -> list[TensorRef]:
    """Keep tensors whose name matches an include glob (if any) and no exclude glob.

    Every pattern must match at least one tensor name: a typo should fail, not pass silently.
    `purpose` completes the error for an empty result ("no tensor left to encode").
    """
    (kept,) = select_each([refs], include, exclude, purpose)
    return kept


def select_each(
    ref_sets: Sequence[list[TensorRef]],
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    purpose: str = "encode",
) -> list[list[TensorRef]]:
    """`select` applied to several sets of tensors (parameters, activations) at once: each
    pattern must match a tensor in one of them, and something must be left in one of them."""
    names = list(dict.fromkeys(ref.name for refs in ref_sets for ref in refs))
    for flag, patterns in (("--include", include), ("--exclude", exclude)):
        for pattern in patterns:
            if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
                raise FilterError(f"{flag} '{pattern}' matches no tensor name")

    kept = [[ref for ref in refs if name_selected(ref.name, include, exclude)] for refs in ref_sets]
    if not any(kept):
        raise FilterError(f"no tensor left to {purpose} after --include / --exclude")
    return kept


def name_selected(name: str, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> bool:
    """Whether --include / --exclude globs keep tensor `name`."""
    matches = lambda patterns: any(fnmatch.fnmatchcase(name, p) for p in patterns)  # noqa: E731
    return (not include or matches(include)) and not matches(exclude)


def group_batches(refs: Iterable[TensorRef]) -> dict[str, list[TensorRef]]:
    """Tensors with the same name are calibration batches of one tensor, in input order."""
    groups: dict[str, list[TensorRef]] = {}
    for ref in refs:
        groups.setdefault(ref.name, []).append(ref)
    return groups


@dataclass(frozen=True)
class Gathered:
    """The tensors of a run: `groups[kind][name]` lists a tensor's batches in input order
    (kind "param" for positional inputs, "activation" for --activations)."""

    groups: dict[str, dict[str, list[TensorRef]]]
    skipped: list[Skipped]
    files: list[str]  # every file read, for overwrite checks


def gather(
    paths: Sequence[PathLike],
    activations: Sequence[PathLike] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Gathered:
    """Open every input, apply --include / --exclude and group batches by name."""
    param_refs, skipped = open_inputs(paths)
    activation_refs, activation_skipped = open_inputs(activations)
    skipped += activation_skipped
    files = list(dict.fromkeys(item.source for item in (*param_refs, *activation_refs, *skipped)))
    if param_refs or activation_refs or include or exclude:
        param_refs, activation_refs = select_each([param_refs, activation_refs], include, exclude)
    groups = {"param": group_batches(param_refs), "activation": group_batches(activation_refs)}
    return Gathered(groups, skipped, files)


def compute_encodings(
    paths: Sequence[PathLike],
    spec: Spec = Spec(),
    *,
    activations: Sequence[PathLike] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    recipe=None,
    metrics: bool = False,
    progress: Optional[Progress] = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> EncodeResult:
    """Encode every float tensor in `paths` (files or directories); tensors read from
    `activations` come back separately in `result.activations`, with the same settings except
    that activations are always per tensor (per-channel activation encodings are not used by
    AIMET's QuantSim configs or QNN, and axis 0 of a dump is the batch).

    `recipe` (a qcalc.recipe.Recipe) adjusts `spec` tensor by tensor or skips tensors;
    `metrics` attaches each tensor's quantization error (qcalc.metrics) to its encoding,
    at the cost of one more pass over the data.

    >>> result = compute_encodings(["sample_tensors/seed.npy"], Spec(bitwidth=8))
    >>> float(result.encodings[0].scale)  # doctest: +SKIP
    0.013148537836968899
    """
    found = gather(paths, activations, include, exclude)
    groups, skipped, files = found.groups, found.skipped, found.files
    if not any(groups.values()):
        return EncodeResult([], skipped, [], files)  # only integer / empty tensors: no error
    specs = {kind: _tensor_specs(group, kind, spec, recipe) for kind, group in groups.items()}
    unmatched = [] if recipe is None else unmatched_rules(recipe, groups)
    work = [
        groups[kind][name] for kind in groups for name, s in specs[kind].items() if s is not None
    ]
    progress = progress or Progress()
    passes = 2 if metrics else 1  # the metrics read every tensor once more
    progress.start(len(work), passes * sum(ref.nbytes for batches in work for ref in batches))

    def encode_all(kind: str) -> list[Encoding]:
        encodings = []
        for name, batches in groups[kind].items():
            tensor_spec = specs[kind][name]
            if tensor_spec is None:
                continue
            encoding = _encode_batches(name, batches, tensor_spec, progress, chunk_bytes)
            if metrics:
                from qcalc.metrics import tensor_metrics

                found = tensor_metrics(batches, encoding, chunk_bytes=chunk_bytes)
                encoding = dataclasses.replace(encoding, metrics=found)
                progress.advance(sum(ref.nbytes for ref in batches))
            encodings.append(encoding)
            progress.tensor_done()
        return encodings

    recipe_skipped = [name for kind in specs for name, s in specs[kind].items() if s is None]
    return EncodeResult(
        encode_all("param"), skipped, encode_all("activation"), files, recipe_skipped, unmatched
    )


def unmatched_rules(recipe, groups: dict[str, dict[str, list[TensorRef]]]) -> list:
    """The recipe's rules that match no tensor; kinds without inputs are not checked (no
    --activations: activation rules have nothing to match)."""
    return recipe.unmatched({kind: list(group) for kind, group in groups.items() if group})


def _tensor_specs(
    group: dict[str, list[TensorRef]], kind: str, spec: Spec, recipe
) -> dict[str, Optional[Spec]]:
    """Each tensor's Spec (None: a recipe skips it). Activations are always per tensor."""
    return {name: tensor_spec(name, kind, spec, recipe) for name in group}


def tensor_spec(name: str, kind: str, spec: Spec, recipe=None) -> Optional[Spec]:
    """Tensor `name`'s Spec: `spec` (the flags) adjusted by the recipe's matching rules; None
    when a rule skips it. Activations (`kind` "activation") are always per tensor."""
    resolved = spec if recipe is None else recipe.spec_for(name, kind, spec)
    if resolved is not None and kind == "activation":
        resolved = per_tensor(resolved)
    return resolved


def per_tensor(spec: Spec) -> Spec:
    """`spec` without per-channel or per-block settings (how activations are encoded)."""
    if not (spec.per_channel or spec.block_size is not None or spec.lpbq):
        return spec
    return dataclasses.replace(spec, per_channel=False, block_size=None, lpbq=False)


def encode_array(array: np.ndarray, spec: Spec = Spec(), name: str = "tensor") -> Encoding:
    """Encode one in-memory array.

    >>> enc = encode_array(np.array([-1.0, 0.5, 2.0], dtype=np.float32), Spec(bitwidth=8))
    >>> int(enc.offset), enc.qmin, enc.qmax
    (-85, 0, 255)
    """
    array = np.asarray(array)
    if array.dtype.kind != "f" and array.dtype.name not in _ML_FLOATS:
        raise SpecError(f"tensor '{name}': dtype {array.dtype} is not a floating-point type")
    if array.size == 0:
        raise SpecError(f"tensor '{name}': is empty")
    ref = TensorRef(name, ARRAY_SOURCE, array.dtype, array.shape, lambda: array)
    return _encode_batches(name, [ref], spec, Progress(), DEFAULT_CHUNK_BYTES)


ARRAY_SOURCE = "<array>"
_ML_FLOATS = {"bfloat16", "float8_e4m3fn", "float8_e5m2"}


def compute_dtype(tensor_dtype: np.dtype, spec: Spec) -> np.dtype:
    """The dtype AIMET's range arithmetic runs in for this tensor (see --compute-dtype).

    'input' applies to float16, bfloat16 and float64 tensors; float8 tensors compute in
    float32 (AIMET simulates no float8 model arithmetic).
    """
    if spec.compute_dtype == "input" and tensor_dtype.name in ("float16", "bfloat16", "float64"):
        return np.dtype(tensor_dtype).newbyteorder("=")
    return FLOAT32


def _encode_batches(
    name: str, batches: list[TensorRef], spec: Spec, progress: Progress, chunk_bytes: int
) -> Encoding:
    first = batches[0]
    layout = layout_for(
        first.shape, spec.per_channel, spec.axis, _where(first), spec.block_size, spec.block_axis
    )
    for batch in batches[1:]:
        _check_batch(first, batch, layout)
    dtype = compute_dtype(first.dtype, spec)
    qmin, qmax = spec.int_range
    stream = _Stream(layout, spec, progress, chunk_bytes)
    if spec.analyzer == "minmax":
        stats = stream.minmax(batches[0])
        for batch in batches[1:]:
            stats = stats.merge(stream.minmax(batch))
        rmin, rmax = grid.minmax_range(
            stats.min.astype(dtype).reshape(layout.encoding_shape),
            stats.max.astype(dtype).reshape(layout.encoding_shape),
            qmax - qmin,
            spec.symmetric,
            dtype,
        )
    else:
        rmin, rmax = _histogram_range(batches, stream, spec, dtype, qmax - qmin)

    granularity = layout.granularity
    extra: dict = {}
    if spec.lpbq and layout.block_axis is not None:
        granularity = "lpbq"
        scale, per_channel, per_block = grid.lpbq_scales(
            rmin, rmax, qmax - qmin, spec.bitwidth, spec.decompressed_bitwidth, layout.block_axis
        )
        offset = np.zeros_like(scale)
        extra = {
            "per_channel_scale": per_channel,
            "per_block_int_scale": per_block,
            "decompressed_bitwidth": spec.decompressed_bitwidth,
        }
    else:
        scale, offset = grid.scale_offset(
            rmin, rmax, qmin, qmax, spec.symmetric, spec.symmetric_offset == "zero"
        )
    lo, hi = grid.effective_range(scale, offset, qmin, qmax)
    return Encoding(
        name=name,
        source=_describe_sources(batches),
        dtype=first.dtype.name,
        shape=tuple(first.shape),
        spec=spec,
        granularity=granularity,
        axis=layout.channel_axis,
        qmin=qmin,
        qmax=qmax,
        scale=scale,
        offset=offset,
        min=lo,
        max=hi,
        raw_min=rmin,
        raw_max=rmax,
        block_size=layout.block_size,
        block_axis=layout.block_axis,
        **extra,
    )


def _histogram_range(batches, stream, spec: Spec, dtype, num_steps: int):
    """Percentile / SQNR / TF-enhanced: per-cell histograms built batch by batch (two passes
    over each batch: its finite range, then the counts), then AIMET's range search."""
    from qcalc import histogram

    growth = 3.0 if spec.analyzer == "tf-enhanced" else None
    if dtype == FLOAT64:  # AIMET's histograms are float32 even for float64 models
        dtype = FLOAT32
    hist = None
    for batch in batches:
        finite = stream.minmax(batch, finite_only=True)
        cells = finite.min.size
        binning = histogram.plan_batch(
            hist,
            finite.min.reshape(cells).astype(dtype).astype(np.float32),
            finite.max.reshape(cells).astype(dtype).astype(np.float32),
            spec.bins,
            dtype,
            growth,
        )
        hist = histogram.finish(binning, stream.counts(batch, binning))
    shape = stream.layout.encoding_shape
    if spec.analyzer == "percentile":
        rmin, rmax = histogram.percentile_range(hist, spec.percentile, num_steps, spec.symmetric)
    else:
        rmin, rmax = histogram.sqnr_range(hist, num_steps, spec.symmetric)
    return rmin.reshape(shape), rmax.reshape(shape)


def _check_batch(first: TensorRef, batch: TensorRef, layout) -> None:
    where = _where(batch)
    if batch.dtype.name != first.dtype.name:  # byte order does not matter
        raise SpecError(
            f"{where}: dtype {batch.dtype.name} differs from {first.dtype.name} "
            f"in {first.source}; batches of one tensor must share a dtype"
        )
    kept = [a for a in (layout.channel_axis, layout.block_axis) if a is not None]
    if kept and (
        len(batch.shape) != len(first.shape) or any(batch.shape[a] != first.shape[a] for a in kept)
    ):
        what = "channel axis" if layout.block_axis is None else "channel and block axes"
        raise SpecError(
            f"{where}: shape {list(batch.shape)} does not match {list(first.shape)} "
            f"in {first.source} along {what} {', '.join(map(str, kept))}"
        )


class _Stream:
    """Streams one batch in chunks along axis 0 and reduces each chunk to its cells."""

    def __init__(self, layout, spec: Spec, progress: Progress, chunk_bytes: int) -> None:
        self.layout, self.spec, self.progress, self.chunk_bytes = (
            layout,
            spec,
            progress,
            chunk_bytes,
        )

    def _chunks(self, ref: TensorRef):
        for chunk in ref.chunks(self.chunk_bytes, self.layout.row_multiple):
            yield chunk, widen(np.asarray(chunk))

    def minmax(self, ref: TensorRef, finite_only: bool = False) -> MinMax:
        """Per-cell min-max of one batch (keepdims shape); non-finite values handled per
        --nonfinite, or always left out with `finite_only` (a histogram's range)."""
        layout = self.layout
        parts: list[MinMax] = []
        total: Optional[MinMax] = None
        nonfinite = NonFiniteCount()
        for chunk in ref.chunks(self.chunk_bytes, layout.row_multiple):
            chunk = np.asarray(chunk)
            stats = short_rows_minmax(*layout.cell_view(chunk))  # bf16 blocks: no widening
            if stats is None:
                stats = reduce_minmax(*layout.cell_view(widen(chunk)))
            if not is_all_finite(stats):
                values = widen(chunk)
                view, axes = layout.cell_view(values)
                if self.spec.nonfinite == "error":
                    nonfinite = nonfinite + NonFiniteCount.of(values)
                elif finite_only or self.spec.nonfinite == "ignore":
                    stats = reduce_minmax(view, axes, finite_only=True)
            if layout.rows_are_cells:
                parts.append(stats)
            else:
                total = stats if total is None else total.merge(stats)
            if not finite_only:
                self.progress.advance(chunk.nbytes)
        if nonfinite.total:
            raise NonFiniteError(
                f"{ref.source}: tensor '{ref.name}' holds {nonfinite.nan} NaN, "
                f"{nonfinite.posinf} +inf and {nonfinite.neginf} -inf values "
                f"(--nonfinite ignore skips them, keep encodes them as AIMET does)"
            )
        if layout.rows_are_cells:
            return MinMax(
                np.concatenate([p.min for p in parts]), np.concatenate([p.max for p in parts])
            )
        assert total is not None
        return total

    def counts(self, ref: TensorRef, binning) -> np.ndarray:
        """Histogram counts of one batch, chunk by chunk (counts are additive)."""
        from qcalc import histogram

        layout = self.layout
        total = binning.zeros()
        start = 0
        workspace: dict = {}  # count's work arrays, reused chunk after chunk
        for chunk, values in self._chunks(ref):
            if self.spec.nonfinite == "ignore":
                values = np.where(np.isfinite(values), values, np.float32(np.nan))
            cells = layout.cells(values)
            if layout.rows_are_cells:  # this chunk's rows hold a contiguous run of cells
                part = slice(start, start + cells.shape[0])
                histogram.count(cells, _cells_of(binning, part), total[part], workspace)
                start += cells.shape[0]
            else:
                histogram.count(cells, binning, total, workspace)
            self.progress.advance(chunk.nbytes)
        return total


def _cells_of(binning, part: slice):
    """The binning of a run of cells."""
    per_cell = ("lo", "hi", "below", "above", "carried", "min", "max", "left", "right", "strict")
    parts = {name: getattr(binning, name) for name in per_cell}
    return dataclasses.replace(
        binning, **{name: None if v is None else v[part] for name, v in parts.items()}
    )


def _where(ref: TensorRef) -> str:
    """How errors name a tensor: its file and name (just the name for in-memory arrays)."""
    tensor = f"tensor '{ref.name}'"
    return tensor if ref.source == ARRAY_SOURCE else f"{ref.source}: {tensor}"


def _describe_sources(batches: list[TensorRef]) -> str:
    sources = list(dict.fromkeys(batch.source for batch in batches))
    if len(sources) == 1:
        return sources[0]
    try:
        common = os.path.commonpath(sources)
    except ValueError:
        common = ""
    return common if common not in ("", ".", os.sep) else ", ".join(sources)
