"""The CI gate: each tensor's quantization error under computed or shipped encodings, held
against thresholds. Returns records; the CLI turns them into output and an exit code."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np

from qcalc.core import parallel
from qcalc.core.encoding import METRIC_FIELDS, Encoding, Metrics
from qcalc.core.layout import layout_for
from qcalc.core.spec import Spec
from qcalc.core.tensor import DEFAULT_CHUNK_BYTES, Progress, Skipped, TensorRef
from qcalc.errors import FilterError, HistogramError, NonFiniteError, SpecError
from qcalc.ops import cluster
from qcalc.ops.encode import (
    PathLike,
    TensorSettings,
    encode_tensor,
    gather,
    name_selected,
    resolve_specs,
    unmatched_rules,
)


@dataclass(frozen=True)
class Thresholds:
    """Limits a tensor must meet; None leaves a metric unchecked. NaN / inf values fail a
    tensor unless `allow_nonfinite` (then they are a warning)."""

    min_sqnr: Optional[float] = None
    max_clip: Optional[float] = None
    max_abs_error: Optional[float] = None
    allow_nonfinite: bool = False

    def __post_init__(self) -> None:
        if self.min_sqnr is not None and math.isnan(self.min_sqnr):
            raise SpecError("--min-sqnr must be a number of dB, not NaN")
        if self.max_clip is not None and not 0 <= self.max_clip <= 1:
            raise SpecError(f"--max-clip {self.max_clip:g} is not a fraction (0..1)")
        if self.max_abs_error is not None and not self.max_abs_error >= 0:
            raise SpecError(f"--max-abs-error {self.max_abs_error:g} must be 0 or more")


@dataclass(frozen=True)
class TensorCheck:
    """One tensor's verdict. `metrics` is None when the tensor could not be evaluated (it has
    no encoding, or an encoding has no tensor)."""

    name: str
    kind: str  # "param" | "activation"
    failures: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    metrics: Optional[Metrics] = None
    encoding: Optional[Encoding] = None

    @property
    def passed(self) -> bool:
        return not self.failures

    def record(self) -> dict[str, Any]:
        """name, passed, failures, warnings, the metric keys (null when not evaluated), nan,
        inf; and `convention` under another toolchain's rules."""
        metrics = self.metrics.record() if self.metrics is not None else {}
        record = {
            "name": self.name,
            "passed": self.passed,
            "failures": list(self.failures),
            "warnings": list(self.warnings),
            **{key: metrics.get(key) for key in METRIC_FIELDS},
            "nan": None if self.metrics is None else self.metrics.nan_count,
            "inf": None if self.metrics is None else self.metrics.inf_count,
        }
        if self.encoding is not None and self.encoding.spec.convention != "aimet":
            record["convention"] = self.encoding.spec.convention
        return record


@dataclass(frozen=True)
class CheckReport:
    results: list[TensorCheck]
    skipped: list[Skipped] = field(default_factory=list)
    recipe_skipped: list[str] = field(default_factory=list)
    unmatched_rules: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)

    @property
    def failed(self) -> list[TensorCheck]:
        return [result for result in self.results if not result.passed]


def evaluate(metrics, thresholds: Thresholds) -> tuple[list[str], list[str]]:
    """(failures, warnings) of one tensor's metrics, as short strings ("sqnr 27.1 dB < 30")."""
    failures: list[str] = []
    warnings: list[str] = []
    if thresholds.min_sqnr is not None and not metrics.sqnr_db >= thresholds.min_sqnr:
        failures.append(f"sqnr {_db(metrics.sqnr_db)} < {thresholds.min_sqnr:g}")
    if thresholds.max_clip is not None and not metrics.clipped_fraction <= thresholds.max_clip:
        failures.append(f"clipped {metrics.clipped_fraction:.4g} > {thresholds.max_clip:g}")
    if (
        thresholds.max_abs_error is not None
        and not metrics.max_abs_error <= thresholds.max_abs_error
    ):
        failures.append(f"max abs error {metrics.max_abs_error:.4g} > {thresholds.max_abs_error:g}")
    if metrics.nan_count or metrics.inf_count:
        message = f"{metrics.nan_count} NaN and {metrics.inf_count} inf values"
        (warnings if thresholds.allow_nonfinite else failures).append(message)
    return failures, warnings


def _db(value: float) -> str:
    return f"{value:.1f} dB" if math.isfinite(value) else f"{value} dB"


def check(
    paths: Sequence[PathLike],
    spec: Spec,
    thresholds: Thresholds,
    *,
    activations: Sequence[PathLike] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    recipe=None,
    encodings: Optional[PathLike] = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress=None,
    activation_bitwidth: Optional[int] = None,
    graph_axis: bool = True,
    jobs: Optional[int] = None,
    dask: Optional[str] = None,
) -> CheckReport:
    """Evaluate every float tensor in `paths` (and `activations`) against `thresholds`, under
    the encodings qcalc computes with `spec` (and `recipe`), or under those in the AIMET
    encodings file `encodings`, matched by tensor name. `jobs` threads, or the workers of the
    Dask scheduler at `dask` (computed encodings only), do the work.

    Encodings are computed over the finite values (unless `spec.nonfinite` is "keep"), so
    that NaN / inf values are counted and reported instead of stopping the check."""
    if spec.nonfinite == "error":
        spec = dataclasses.replace(spec, nonfinite="ignore")
    settings = TensorSettings(spec, recipe, None, activation_bitwidth, graph_axis)
    if dask is not None and encodings is not None:
        raise SpecError("--dask checks computed encodings; with --encodings, run without it")
    with parallel.using(jobs), cluster.connected(dask) as client:
        report = _check(
            paths, settings, thresholds, activations, include, exclude, encodings, chunk_bytes,
            progress, client,
        )  # fmt: skip
    if not report.results:
        raise FilterError(
            "nothing to check: the inputs hold no floating-point tensor"
            + (" that a recipe does not skip" if report.recipe_skipped else "")
        )
    return report


def _check(
    paths,
    settings,
    thresholds,
    activations,
    include,
    exclude,
    encodings,
    chunk_bytes,
    progress,
    client=None,
) -> CheckReport:
    if encodings is None:
        return _check_computed(
            paths, settings, thresholds, activations, include, exclude, chunk_bytes,
            progress or Progress(), client,
        )  # fmt: skip
    return _check_shipped(
        paths, settings, thresholds, activations, include, exclude, encodings, chunk_bytes,
        progress or Progress(),
    )  # fmt: skip


def _check_computed(
    paths, settings, thresholds, activations, include, exclude, chunk_bytes, progress, client
) -> CheckReport:
    """Each tensor under the encoding `compute_encodings` gives it. A tensor that cannot be
    encoded (its range overflows float32 arithmetic, or AIMET's histogram cannot bin it)
    fails with the reason instead of stopping the run, as NaN / inf values do."""
    found = gather(paths, activations, include, exclude)
    settings = dataclasses.replace(settings, graph=found.graph)
    specs, refused = resolve_specs(found.groups, settings)
    recipe = settings.recipe
    unmatched = [] if recipe is None else unmatched_rules(recipe, found.groups, found.graph)
    work = [
        (kind, name, batches, specs[kind][name])
        for kind, group in found.groups.items()
        for name, batches in group.items()
        if specs[kind].get(name) is not None
    ]
    progress.start(len(work), 2 * sum(ref.nbytes for *_, batches, _ in work for ref in batches))

    def check_one(item) -> TensorCheck:
        return _check_tensor(*item, thresholds, progress, chunk_bytes)

    def remote(item) -> tuple:
        return (_check_tensor, *item, thresholds, Progress(), chunk_bytes)

    def nbytes(item) -> int:
        return 2 * sum(ref.nbytes for ref in item[2])

    results = list(cluster.each_tensor(client, check_one, work, remote, progress, nbytes))
    recipe_skipped = [name for kind in specs for name, s in specs[kind].items() if s is None]
    return CheckReport(results, [*found.skipped, *refused], recipe_skipped, unmatched)


def _check_tensor(kind, name, batches, resolved, thresholds, progress, chunk_bytes) -> TensorCheck:
    """One tensor's verdict under the encoding computed for it. A tensor that cannot be
    encoded (not for a NaN / inf count: those are ignored) fails with the reason."""
    try:
        encoding = encode_tensor(name, batches, resolved, True, progress, chunk_bytes)
    except (NonFiniteError, HistogramError) as error:
        reason = getattr(error, "reason", None) or str(error).removeprefix(f"{batches[0].where}: ")
        progress.tensor_done()
        return TensorCheck(name, kind, (f"cannot be encoded: {reason}",))
    return _verdict(encoding, kind, thresholds)


def _verdict(encoding: Encoding, kind: str, thresholds: Thresholds) -> TensorCheck:
    failures, warnings = evaluate(encoding.metrics, thresholds)
    return TensorCheck(
        encoding.name, kind, tuple(failures), tuple(warnings), encoding.metrics, encoding
    )


def _check_shipped(
    paths, settings, thresholds, activations, include, exclude, encodings, chunk_bytes, progress
) -> CheckReport:
    from qcalc.io import formats

    if settings.spec.convention != "aimet":
        raise SpecError(
            f"{encodings}: shipped encodings are quantized as AIMET does; drop --convention "
            f"{settings.spec.convention}"
        )
    shipped = formats.read(encodings)
    found = gather(paths, activations, include, exclude)
    settings = dataclasses.replace(settings, graph=found.graph)
    recipe = settings.recipe
    entries = {
        "param": {enc.name: enc for enc in shipped.params},
        "activation": {enc.name: enc for enc in shipped.activations},
    }
    results: list[TensorCheck] = []
    recipe_skipped: list[str] = []
    progress.start(
        sum(len(group) for group in found.groups.values()),
        sum(
            ref.nbytes for group in found.groups.values() for refs in group.values() for ref in refs
        ),
    )
    work = []
    for kind, group in found.groups.items():
        other = "activation" if kind == "param" else "param"
        for name, batches in group.items():
            resolved = settings.spec_for(batches[0], kind)
            if resolved is None:
                recipe_skipped.append(name)
                continue
            entry = entries[kind].pop(name, None) or entries[other].pop(name, None)
            work.append((name, kind, batches, entry, resolved))

    def check_one(item) -> TensorCheck:
        name, kind, batches, entry, resolved = item
        result = _check_entry(
            name, kind, batches, entry, resolved, thresholds, encodings, chunk_bytes
        )
        progress.advance(sum(ref.nbytes for ref in batches))
        progress.tensor_done()
        return result

    results += parallel.each_tensor(check_one, work)
    # Entries without a tensor: parameters always, activations only when dumps were given;
    # not those that --include / --exclude or a recipe leave out of the check.
    leftover = [("param", entry) for entry in entries["param"].values()]
    if activations:
        leftover += [("activation", entry) for entry in entries["activation"].values()]
    for kind, entry in leftover:
        if name_selected(entry.name, include, exclude) and not _skipped(recipe, entry.name, kind):
            results.append(TensorCheck(entry.name, kind, ("not in the inputs",), encoding=entry))
    unmatched = [] if recipe is None else unmatched_rules(recipe, found.groups, found.graph)
    return CheckReport(results, found.skipped, recipe_skipped, unmatched)


def _check_entry(name, kind, batches, entry, spec, thresholds, encodings, chunk_bytes):
    """One tensor against its shipped entry (None: the file has none)."""
    from qcalc.core.metrics import tensor_metrics

    if entry is None:
        return TensorCheck(name, kind, (f"no encoding in {encodings}",))
    try:
        bound = bind(entry, batches[0], spec)
    except SpecError as error:
        return TensorCheck(name, kind, (str(error),), encoding=entry)
    metrics = tensor_metrics(batches, bound, chunk_bytes=chunk_bytes)
    return _verdict(dataclasses.replace(bound, metrics=metrics), kind, thresholds)


def _skipped(recipe, name: str, kind: str) -> bool:
    """Whether a recipe rule skips tensor `name`."""
    return recipe is not None and recipe.skips(name, kind)


def _tensor_axis(grid_axis: int, grid_rank: int, rank: int) -> int:
    """The tensor axis of a 2.x per-channel grid's channel axis: grids of the tensor's rank
    say it directly; `(1,)*a + (C,)` is the positive axis a (parameters, as QuantSim writes
    them); `(C,) + (1,)*k` is axis -(k + 1), counted from the end (activations)."""
    if grid_rank == rank or grid_axis == grid_rank - 1:
        return grid_axis
    return rank - grid_rank + grid_axis


def bind(encoding: Encoding, ref: TensorRef, spec: Spec) -> Encoding:
    """A shipped encoding laid onto the tensor it is for: its grid reshaped to the tensor's
    rank with channels (and blocks) on their axes. Files from 0.6.1 / 1.0.0 do not record
    axes; they are taken from `spec` (--axis / --block-axis), which default to AIMET's
    parameter layout (channels on axis 0, blocks on the last axis). Raises SpecError when
    the encoding cannot belong to the tensor."""
    shape = tuple(ref.shape)
    grid_shape = encoding.encoding_shape
    cells = int(np.prod(grid_shape, dtype=np.int64))
    mismatch = f"encoding grid {list(grid_shape)} does not fit tensor shape {list(shape)}"
    per_tensor_grid = cells == 1 and encoding.block_size is None
    if per_tensor_grid:
        axis, block_axis = 0, -1
    elif encoding.axis is not None:  # 2.x files record it, in the grid's own coordinates
        axis = _tensor_axis(encoding.axis, len(grid_shape), len(shape))
        block_axis = spec.block_axis if encoding.block_axis is None else encoding.block_axis
    else:
        axis, block_axis = spec.axis, spec.block_axis
    try:
        layout = layout_for(
            shape, not per_tensor_grid, axis, f"tensor '{ref.name}'", encoding.block_size,
            -1 if block_axis is None else block_axis,
        )  # fmt: skip
    except SpecError as error:
        raise SpecError(f"{mismatch}: {error}") from None
    target = layout.encoding_shape
    if int(np.prod(target, dtype=np.int64)) != cells or (
        len(grid_shape) == len(shape) and grid_shape != target
    ):
        raise SpecError(mismatch)
    arrays = {
        key: getattr(encoding, key).reshape(target)
        for key in ("scale", "offset", "min", "max", "raw_min", "raw_max")
    }
    return dataclasses.replace(
        encoding,
        shape=shape,
        dtype=ref.dtype.name,
        axis=layout.channel_axis,
        block_axis=layout.block_axis,
        **arrays,
    )
