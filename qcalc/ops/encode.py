"""Encoding inputs: files opened, tensors filtered and grouped into batches, each tensor's Spec
resolved (flags, recipe), then calibrated. Returns records; never prints or exits."""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence, Union

import numpy as np

from qcalc.core.calibrate import encode_batches
from qcalc.core.dtypes import is_float
from qcalc.core.encoding import Encoding
from qcalc.core.spec import Spec
from qcalc.core.tensor import DEFAULT_CHUNK_BYTES, Progress, Skipped, TensorRef, array_ref
from qcalc.errors import FilterError, SpecError

PathLike = Union[str, "os.PathLike[str]"]


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
    from qcalc.io.readers import open_input

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

    `recipe` (a qcalc.io.recipe.Recipe) adjusts `spec` tensor by tensor or skips tensors;
    `metrics` attaches each tensor's quantization error (qcalc.core.metrics) to its encoding,
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
        return [
            encode_tensor(name, batches, tensor_spec, metrics, progress, chunk_bytes)
            for name, batches in groups[kind].items()
            if (tensor_spec := specs[kind][name]) is not None
        ]

    recipe_skipped = [name for kind in specs for name, s in specs[kind].items() if s is None]
    return EncodeResult(
        encode_all("param"), skipped, encode_all("activation"), files, recipe_skipped, unmatched
    )


def encode_tensor(
    name: str,
    batches: list[TensorRef],
    spec: Spec,
    metrics: bool,
    progress: Progress,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Encoding:
    """One tensor's Encoding from its batches, with its Metrics when `metrics` (one more pass
    over the data, which `progress` counts too)."""
    encoding = encode_batches(name, batches, spec, progress, chunk_bytes)
    if metrics:
        from qcalc.core.metrics import tensor_metrics

        found = tensor_metrics(batches, encoding, chunk_bytes=chunk_bytes)
        encoding = dataclasses.replace(encoding, metrics=found)
        progress.advance(sum(ref.nbytes for ref in batches))
    progress.tensor_done()
    return encoding


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
    if not is_float(array.dtype):
        raise SpecError(f"tensor '{name}': dtype {array.dtype} is not a floating-point type")
    if array.size == 0:
        raise SpecError(f"tensor '{name}': is empty")
    return encode_batches(name, [array_ref(array, name)], spec, Progress(), DEFAULT_CHUNK_BYTES)
