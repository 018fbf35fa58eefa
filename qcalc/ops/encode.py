"""Encoding inputs: files opened, tensors filtered and grouped into batches, each tensor's Spec
resolved (flags, recipe), then calibrated. Returns records; never prints or exits."""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterable, Optional, Sequence, Union

import numpy as np

from qcalc.core import calibrate, parallel
from qcalc.core.calibrate import encode_batches
from qcalc.core.dtypes import is_float
from qcalc.core.encoding import Encoding
from qcalc.core.layout import spec_layout
from qcalc.core.spec import Spec
from qcalc.core.tensor import DEFAULT_CHUNK_BYTES, Progress, Skipped, TensorRef, array_ref
from qcalc.core.toolchains import needs_peaks, shape_refused
from qcalc.errors import FilterError, SpecError
from qcalc.ops import cluster

if TYPE_CHECKING:
    from qcalc.core.graph import Graph

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
    notes: list[str] = field(default_factory=list)  # what the model rules want the user to know
    warnings: list[str] = field(default_factory=list)
    # AIMET's int32 bias encodings among `encodings`: written in 2.x files only, as AIMET does
    int32_biases: list[str] = field(default_factory=list)
    from_model: bool = False  # the inputs held an ONNX model: a whole model's encodings

    def encodings_file(self, version: str):
        """The encodings as a `version` file holds them (a `qcalc.io.formats.EncodingFile`):
        a model's int32 biases only in 2.x files, as AIMET's export writes them."""
        from qcalc.io.formats import LEGACY_VERSIONS, EncodingFile

        for enc in [*self.encodings, *self.activations]:
            if enc.toolchain is not None:
                raise SpecError(
                    f"tensor '{enc.name}': an encodings file holds AIMET's encodings, not "
                    f"{enc.spec.convention}'s; print them instead (--format json)"
                )
        params = self.encodings
        if version in LEGACY_VERSIONS:
            params = [enc for enc in params if enc.name not in self.int32_biases]
        return EncodingFile(
            params=params, activations=self.activations, model_export=self.from_model
        )


def open_inputs(
    paths: Sequence[PathLike], graphs: Optional[list[Graph]] = None
) -> tuple[list[TensorRef], list[Skipped]]:
    """Read the headers of every input, in command-line order; the graph of each ONNX model
    among them is appended to `graphs` (None: models are refused)."""
    from qcalc.io.readers import is_model, open_input

    refs: list[TensorRef] = []
    skipped: list[Skipped] = []
    for path in paths:
        if is_model(path):
            from qcalc.io.readers import read_model

            if graphs is None:
                raise FilterError(
                    f"{os.fspath(path)}: --activations takes calibration dumps (.safetensors, "
                    ".npz, .npy), not a model"
                )
            model = read_model(path)
            graphs.append(model.graph)
            items = model.tensors
        else:
            items = open_input(path)
        for item in items:
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
    graph: Optional[Graph] = None  # the ONNX model among the inputs


def gather(
    paths: Sequence[PathLike],
    activations: Sequence[PathLike] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Gathered:
    """Open every input, apply --include / --exclude and group batches by name. At most one
    input may be an ONNX model; activation names must then be tensors of its graph."""
    graphs: list[Graph] = []
    param_refs, skipped = open_inputs(paths, graphs)
    if len(graphs) > 1:
        raise FilterError(
            f"{graphs[1].source}: one ONNX model per run (already reading {graphs[0].source})"
        )
    graph = graphs[0] if graphs else None
    activation_refs, activation_skipped = open_inputs(activations)
    if graph is not None:
        from qcalc.ops.model import check_activation_names

        check_activation_names(graph, dict.fromkeys(ref.name for ref in activation_refs))
    skipped += activation_skipped
    files = list(dict.fromkeys(item.source for item in (*param_refs, *activation_refs, *skipped)))
    if param_refs or activation_refs or include or exclude:
        param_refs, activation_refs = select_each([param_refs, activation_refs], include, exclude)
    groups = {"param": group_batches(param_refs), "activation": group_batches(activation_refs)}
    return Gathered(groups, skipped, files, graph)


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
    activation_bitwidth: Optional[int] = None,
    graph_axis: bool = True,
    jobs: Optional[int] = None,
    dask: Optional[str] = None,
) -> EncodeResult:
    """Encode every float tensor in `paths` (files or directories); tensors read from
    `activations` come back separately in `result.activations`, with the same settings except
    that activations are always per tensor (per-channel activation encodings are not used by
    AIMET's QuantSim configs or QNN, and axis 0 of a dump is the batch) and take
    `activation_bitwidth` when it is given.

    An ONNX model among `paths` contributes its parameters, each with the channel axis its
    consumer implies (unless `graph_axis` is False: --axis was given), and the whole-model rules
    of `qcalc.ops.model` apply: tied activations, data-movement copies, int32 biases.

    `recipe` (a qcalc.io.recipe.Recipe) adjusts `spec` tensor by tensor or skips tensors;
    `metrics` attaches each tensor's quantization error (qcalc.core.metrics) to its encoding,
    at the cost of one more pass over the data. `jobs` threads do the work (None: every
    available core); the result is the same for any number. `dask`: the address of a Dask
    scheduler whose workers compute the tensors instead (`qcalc.ops.cluster`), same result.

    >>> result = compute_encodings(["sample_tensors/seed.npy"], Spec(bitwidth=8))
    >>> float(result.encodings[0].scale)  # doctest: +SKIP
    0.013148537836968899
    """
    with parallel.using(jobs), cluster.connected(dask) as client:
        found = gather(paths, activations, include, exclude)
        groups, skipped, files, graph = found.groups, found.skipped, found.files, found.graph
        if not any(groups.values()):
            return EncodeResult([], skipped, [], files)  # only integer / empty tensors: no error
        settings = TensorSettings(spec, recipe, graph, activation_bitwidth, graph_axis)
        specs, refused = resolve_specs(groups, settings)
        skipped = [*skipped, *refused]
        if graph is not None:
            from qcalc.ops.model import check_parameter_names

            kept = {
                kind: [name for name, s in specs[kind].items() if s is not None] for kind in specs
            }
            check_parameter_names(graph, [groups["param"][n][0] for n in kept["param"]],
                                  kept["activation"])  # fmt: skip
        unmatched = [] if recipe is None else unmatched_rules(recipe, groups, graph)
        work = [
            groups[kind][name]
            for kind in groups
            for name, s in specs[kind].items()
            if s is not None
        ]
        progress = progress or Progress()
        passes = 2 if metrics else 1  # the metrics read every tensor once more
        progress.start(len(work), passes * sum(ref.nbytes for batches in work for ref in batches))

        def encode_all(kind: str, tied: Sequence[list[str]] = ()) -> list[Encoding]:
            followers = {name: members for members in tied for name in members[1:]}
            leaders = {members[0]: members for members in tied}
            names = [n for n, s in specs[kind].items() if s is not None and n not in followers]

            def batches_of(name: str) -> list[TensorRef]:
                if name in leaders:  # tied: only a model has them
                    from qcalc.ops.model import interleaved

                    return interleaved([groups[kind][member] for member in leaders[name]])
                return groups[kind][name]

            def encode_one(name: str) -> Encoding:
                return encode_tensor(
                    name, batches_of(name), specs[kind][name], metrics, progress, chunk_bytes
                )

            def remote(name: str) -> tuple:
                return (encode_tensor, name, batches_of(name), specs[kind][name], metrics,
                        Progress(), chunk_bytes)  # fmt: skip

            def nbytes(name: str) -> int:
                return passes * sum(ref.nbytes for ref in batches_of(name))

            def split(name: str):
                return split_tensor(client, name, batches_of(name), specs[kind][name], metrics,
                                    chunk_bytes)  # fmt: skip

            done: dict[str, Encoding] = {}
            encoded = cluster.each_tensor(
                client, encode_one, names, remote, progress, nbytes, split
            )
            for name, encoding in zip(names, encoded):
                done[name] = encoding
                for member in leaders.get(name, [])[1:]:
                    done[member] = dataclasses.replace(encoding, name=member)
            return [done[name] for name in groups[kind] if name in done]

        recipe_skipped = [name for kind in specs for name, s in specs[kind].items() if s is None]
        if graph is None:
            return EncodeResult(
                encode_all("param"), skipped, encode_all("activation"), files, recipe_skipped,
                unmatched,
            )  # fmt: skip
        from qcalc.ops import model

        encoded = [name for name, s in specs["activation"].items() if s is not None]
        params = encode_all("param")
        activation_encodings = encode_all("activation", model.tied_groups(graph, encoded))
        refs = {name: batches[0] for name, batches in groups["param"].items()}
        finished = model.finish(graph, params, activation_encodings, refs, metrics, chunk_bytes)
        return EncodeResult(
            finished.params, skipped, finished.activations, files, recipe_skipped, unmatched,
            notes=finished.notes, warnings=finished.warnings, int32_biases=finished.int32_biases,
            from_model=True,
        )  # fmt: skip


def split_tensor(client, name: str, batches: list[TensorRef], spec: Spec, metrics: bool,
                 chunk_bytes: int):  # fmt: skip
    """A large min-max tensor as row-range tasks on a cluster and how the client finishes it
    (the joined statistics through the local run's code, then --metrics as one more task);
    None to send it as one task."""
    big = sum(ref.nbytes for ref in batches) > cluster.SPLIT_BYTES
    if not big or spec.analyzer != "minmax" or needs_peaks(spec) or not batches[0].shape:
        return None
    ranges = [calibrate.row_ranges(ref, spec, cluster.SPLIT_BYTES, chunk_bytes) for ref in batches]
    tasks = [
        (calibrate.rows_minmax, ref, rows, spec, chunk_bytes)
        for ref, rows_of in zip(batches, ranges)
        for rows in rows_of
    ]
    rows_are_cells = spec_layout(spec, batches[0].shape, batches[0].where).rows_are_cells

    def combine(results: list) -> Encoding:
        statistics, position = [], 0
        for ref, rows_of in zip(batches, ranges):
            parts = results[position : position + len(rows_of)]
            position += len(rows_of)
            found = calibrate.CountedMinMax.joined(parts, rows_are_cells)
            calibrate.raise_nonfinite(ref, found)
            statistics.append(found.stats)
        encoding = calibrate.encode_batches(
            name, batches, spec, Progress(), chunk_bytes, statistics
        )
        if metrics:
            from qcalc.core.metrics import tensor_metrics

            task = (functools.partial(tensor_metrics, chunk_bytes=chunk_bytes), batches, encoding)
            found = client.submit(cluster.run_task, *task, retries=cluster.RETRIES).result()
            encoding = dataclasses.replace(encoding, metrics=found)
        return encoding

    return tasks, combine


def resolve_specs(groups, settings: "TensorSettings") -> tuple[dict, list[Skipped]]:
    """Each tensor's Spec, by kind and name (None: a recipe rule skips it), and the tensors
    whose shape the Spec's convention cannot encode (Skipped with the reason, and left out
    of the Specs): another toolchain's blocks need a matrix, and a checkpoint's vectors
    (norms, biases) are left as GGUF leaves them, in float."""
    specs: dict = {}
    refused: list[Skipped] = []
    for kind, group in groups.items():
        specs[kind] = {}
        for name, batches in group.items():
            spec = settings.spec_for(batches[0], kind)
            reason = None if spec is None else shape_refused(spec, tuple(batches[0].shape))
            if reason is not None:
                refused.append(Skipped(name, batches[0].source, reason, batches[0]))
                continue
            specs[kind][name] = spec
    return specs, refused


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


def unmatched_rules(recipe, groups: dict[str, dict[str, list[TensorRef]]], graph=None) -> list:
    """The recipe's rules that match no tensor; kinds without inputs are not checked (no
    --activations: activation rules have nothing to match)."""
    return recipe.unmatched(
        {
            kind: [recipe_key(graph, batches[0], kind) for batches in group.values()]
            for kind, group in groups.items()
            if group
        }
    )


def recipe_key(graph: Optional[Graph], ref: TensorRef, kind: str):
    """A tensor as recipe rules see it (a `qcalc.io.recipe.Tagged`): its name and, for a
    model's tensors, the op that consumes (parameters) or produces (activations) it and the
    parameter's role."""
    from qcalc.io.recipe import Tagged  # loaded already: only recipes ask

    if kind == "param" and ref.param is not None:
        return Tagged(ref.name, ref.param.op, ref.param.role)
    if kind == "activation" and graph is not None:
        return Tagged(ref.name, graph.producer_op(ref.name))
    return Tagged(ref.name)


@dataclass(frozen=True)
class TensorSettings:
    """How each tensor's Spec is resolved: the flags (`spec`), the activations' bitwidth,
    the model's per-op settings (channel axes unless `graph_axis` is False), then the
    recipe's rules."""

    spec: Spec
    recipe: object = None
    graph: Optional[Graph] = None
    activation_bitwidth: Optional[int] = None
    graph_axis: bool = True

    def spec_for(self, ref: TensorRef, kind: str) -> Optional[Spec]:
        """Tensor `ref`'s Spec, None when a recipe rule skips it. Activations are always per
        tensor."""
        base = self.spec
        if kind == "activation" and self.activation_bitwidth is not None:
            base = dataclasses.replace(base, bitwidth=self.activation_bitwidth)
        if kind == "param" and ref.param is not None:  # a model's parameter
            from qcalc.ops.model import param_spec

            base = param_spec(ref, base, self.graph_axis)
        if self.recipe is not None:
            base = self.recipe.spec_for(recipe_key(self.graph, ref, kind), kind, base)
        if base is not None and kind == "activation":
            base = per_tensor(base)
        return base


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
