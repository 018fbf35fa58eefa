"""Partial statistics: `qcalc stats --part K/N` computes part K of a run's statistics into a
file (`qcalc.io.stats_file`), and `encode --from-stats` finishes the run's encodings from
all N parts, byte for byte what one `qcalc encode` of the same inputs and flags gives.

Decisions:

- **The plan**: a run's units are its tensors' calibration batches in the order `encode`
  merges them (tensors in input order, parameters then activations; each tensor's batches in
  command-line order). Every part reads every input's header, so every part knows the whole
  plan; part K takes a contiguous run of units holding about 1/N of the bytes (unit p goes
  to part floor(N x bytes before p / all bytes) + 1), reads only those, and records the plan's
  SHA-256 and its own units' positions. Merging needs all N parts of one plan, each once: a
  missing, repeated or foreign part, or one made under other flags, is an error naming it.
  A part is 1/1 unless `--part` says otherwise.
- **What is stored**: each unit's per-cell min and max (as the min-max pass reduces them,
  NaN / inf handled per --nonfinite at stats time): enough for the min-max analyzer and the
  conventions at every granularity, LPBQ included. The histogram analyzers take two rounds:
  AIMET counts each batch in a layout fixed by the ranges of the batches before it, so round
  1 stores each batch's finite range (and whether each cell was all finite), and round 2
  (`--ranges`: every round-1 part) replays the layouts from those ranges and counts its
  batches (raw int64 counts, stored as float64); the merge replays AIMET's re-binning with
  the real counts (`calibrate.histogram_ranges` / `histogram_counts`). --metrics needs the
  finished encoding: not offered. llama.cpp Q4_0 needs the first value of largest
  magnitude, which min / max do not tell: refused.
- ONNX models (their export rules read the graph and the data): refused for now.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from qcalc.core import parallel
from qcalc.core.calibrate import (
    BatchHistogram,
    encode_batches,
    histogram_counts,
    histogram_ranges,
    minmax_statistics,
)
from qcalc.core.encoding import Encoding
from qcalc.core.layout import spec_layout
from qcalc.core.spec import Spec
from qcalc.core.stats import MinMax
from qcalc.core.tensor import DEFAULT_CHUNK_BYTES, Progress, Skipped, TensorRef
from qcalc.core.toolchains import needs_peaks
from qcalc.errors import ReadError, SpecError
from qcalc.io.readers._common import FLOAT_ITEMSIZE, float_dtype
from qcalc.ops import cluster
from qcalc.ops.encode import (
    EncodeResult,
    PathLike,
    TensorSettings,
    gather,
    resolve_specs,
    unmatched_rules,
)

FINAL, RANGES = "final", "ranges"  # a part's contents: finishable, or round 1 of two


@dataclass(frozen=True)
class Unit:
    """One calibration batch of one tensor, at `position` in the run's plan."""

    position: int
    kind: str
    name: str
    batch: int  # its index in `tensor`
    tensor: tuple[TensorRef, ...]  # every batch of its tensor
    spec: Spec

    @property
    def ref(self) -> TensorRef:
        return self.tensor[self.batch]

    @property
    def batches(self) -> int:
        return len(self.tensor)

    def describe(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "kind": self.kind,
            "name": self.name,
            "batch": self.batch,
            "batches": self.batches,
            "source": self.ref.source,
            "dtype": self.ref.dtype.name,
            "shape": list(self.ref.shape),
            "spec": dataclasses.asdict(self.spec),
        }


@dataclass
class StatsPart:
    """What `qcalc stats` computed: the file's JSON document and its arrays."""

    document: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    recipe_skipped: list[str] = field(default_factory=list)
    unmatched_rules: list = field(default_factory=list)


def parse_part(text: str) -> tuple[int, int]:
    """`--part K/N` as (K, N), 1 <= K <= N; SpecError otherwise."""
    k, slash, n = text.partition("/")
    if not (slash and k.isdigit() and n.isdigit() and 1 <= int(k) <= int(n)):
        raise SpecError(f"--part {text}: expected K/N with 1 <= K <= N, e.g. 3/8")
    return int(k), int(n)


def collect_stats(
    paths: Sequence[PathLike],
    spec: Spec = Spec(),
    *,
    part: tuple[int, int] = (1, 1),
    activations: Sequence[PathLike] = (),
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    recipe=None,
    activation_bitwidth: Optional[int] = None,
    graph_axis: bool = True,
    progress: Optional[Progress] = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    jobs: Optional[int] = None,
    dask: Optional[str] = None,
    ranges: Sequence[PathLike] = (),
) -> StatsPart:
    """Part `part` (K, N) of the statistics `compute_encodings` would gather from the same
    arguments. For the histogram analyzers in two rounds: without `ranges`, each batch's
    finite range; with `ranges` (every round-1 part of the same run), each batch's counts in
    the layout those ranges give. SpecError for what stats files cannot hold (see the
    module)."""
    k, n = part
    with parallel.using(jobs), cluster.connected(dask) as client:
        found = gather(paths, activations, include, exclude)
        if found.graph is not None:
            raise SpecError("qcalc stats: ONNX models are not supported yet; give tensor files")
        settings = TensorSettings(spec, recipe, None, activation_bitwidth, graph_axis)
        specs, refused = resolve_specs(found.groups, settings)
        units = _plan(found.groups, specs)
        for unit in units:
            reason = _unstorable(unit.spec)
            if reason is not None:
                raise SpecError(f"qcalc stats: {reason}")
        plan = [unit.describe() for unit in units]
        histograms = any(unit.spec.analyzer != "minmax" for unit in units)
        earlier = None
        if ranges:
            earlier = read_run(ranges, "--ranges")
            if earlier.document["run"] != _digest(plan):
                raise SpecError(
                    f"{earlier.first}: --ranges parts of another run (other inputs or flags)"
                )
            if earlier.document.get("contents") != RANGES:
                raise SpecError(f"{earlier.first}: --ranges takes round-1 parts (ranges)")
        total = sum(unit.ref.nbytes for unit in units)
        mine, before = [], 0
        for unit in units:
            if _part_of(before, total, n) == k:
                mine.append(unit)
            before += unit.ref.nbytes
        progress = progress or Progress()
        progress.start(len({(u.kind, u.name) for u in mine}), sum(u.ref.nbytes for u in mine))

        def given(unit: Unit):
            """What round 2 knows of the unit's tensor: its batches' ranges (or the unit's
            final min-max statistics)."""
            if earlier is None:
                return None
            if unit.spec.analyzer == "minmax":
                return earlier.units[unit.position][1]
            first = unit.position - unit.batch
            arrays = [earlier.units[first + i][1] for i in range(unit.batches)]
            cells = _cells(unit.spec, unit.ref)
            if any(found["min"].size != cells for found in arrays):
                raise ReadError(f"{earlier.first}: tensor '{unit.name}': ranges of the wrong size")
            return [_batch_ranges(found, earlier.first) for found in arrays]

        computed = cluster.each_tensor(
            client,
            lambda unit: _unit_stats(unit, given(unit), progress, chunk_bytes),
            mine,
            lambda unit: (_unit_stats, unit, given(unit), Progress(), chunk_bytes),
            progress,
            lambda unit: unit.ref.nbytes,
        )
        arrays: dict[str, np.ndarray] = {}
        described = []
        for unit, found_arrays in zip(mine, computed):
            key = f"u{unit.position}"
            for name, values in found_arrays.items():
                arrays[f"{key}.{name}"] = values
            described.append({**plan[unit.position], "key": key})
    skipped = [*found.skipped, *refused]
    recipe_skipped = sorted(name for kind in specs for name, s in specs[kind].items() if s is None)
    document = {
        "contents": RANGES if histograms and not ranges else FINAL,
        "part": k,
        "parts": n,
        "settings": _settings(spec, activation_bitwidth, recipe),
        "run": _digest(plan),
        "units": len(plan),
        "plan": plan,
        "skipped": [[s.name, s.source, s.reason] for s in skipped],
        "recipe_skipped": recipe_skipped,
        "statistics": described,
    }
    unmatched = [] if recipe is None else unmatched_rules(recipe, found.groups)
    return StatsPart(document, arrays, skipped, recipe_skipped, unmatched)


def _plan(groups: dict, specs: dict) -> list[Unit]:
    """The run's units in `encode`'s order."""
    units: list[Unit] = []
    for kind, group in groups.items():
        for name, batches in group.items():
            resolved = specs[kind].get(name)
            if resolved is None:
                continue
            for index in range(len(batches)):
                units.append(Unit(len(units), kind, name, index, tuple(batches), resolved))
    return units


def _unstorable(spec: Spec) -> Optional[str]:
    """Why statistics files cannot finish `spec`'s encoding (a phrase), or None."""
    if needs_peaks(spec):
        return (
            "llama.cpp Q4_0 needs each block's first value of largest magnitude, which "
            "min-max statistics do not hold"
        )
    return None


def _part_of(before: int, total: int, parts: int) -> int:
    """The part (1..parts) of a unit starting `before` bytes into a run of `total` bytes."""
    return 1 if total == 0 else min(parts - 1, before * parts // total) + 1


def _unit_stats(unit: Unit, given, progress: Progress, chunk_bytes: int) -> dict[str, Any]:
    """The unit's arrays for its file: min-max statistics; for a histogram analyzer its
    finite range (round 1, `given` None) or that and its counts (round 2, `given` its
    tensor's batches' ranges)."""
    if unit.spec.analyzer == "minmax":
        if given is not None:  # round 2 copies round 1's final statistics
            arrays = {"min": given["min"], "max": given["max"]}
        else:
            (stats,) = minmax_statistics([unit.ref], unit.spec, progress, chunk_bytes)
            arrays = {"min": np.asarray(stats.min), "max": np.asarray(stats.max)}
    elif given is None:
        (found,) = histogram_ranges([unit.ref], unit.spec, progress, chunk_bytes)
        arrays = _range_arrays(found)
    else:
        counts = histogram_counts(
            list(unit.tensor), unit.spec, given, unit.batch, progress, chunk_bytes
        )
        arrays = {**_range_arrays(given[unit.batch]), "counts": counts.astype(np.float64)}
    if unit.batch == unit.batches - 1:
        progress.tensor_done()
    return arrays


def _range_arrays(found: BatchHistogram) -> dict[str, np.ndarray]:
    return {
        "min": np.asarray(found.finite.min),
        "max": np.asarray(found.finite.max),
        "finite": np.asarray(found.all_finite, dtype=np.float32),
    }


def _batch_ranges(arrays: dict[str, np.ndarray], path: str) -> BatchHistogram:
    if "finite" not in arrays or arrays["finite"].size != arrays["min"].size:
        raise ReadError(f"{path}: a histogram analyzer's unit has no 'finite' array of its size")
    return BatchHistogram(MinMax(arrays["min"], arrays["max"]), arrays["finite"] != 0)


def _settings(spec: Spec, activation_bitwidth: Optional[int], recipe) -> dict[str, Any]:
    recipe_hash = None
    if recipe is not None:
        recipe_hash = hashlib.sha256(Path(recipe.path).read_bytes()).hexdigest()
    return {
        "spec": dataclasses.asdict(spec),
        "activation_bitwidth": activation_bitwidth,
        "recipe": recipe_hash,
    }


def _digest(plan: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()


# --- finishing ------------------------------------------------------------------------------


@dataclass
class Run:
    """The parts of one run, read and checked: its plan and every unit's arrays."""

    first: str  # the path errors name for the run
    document: dict[str, Any]
    units: dict[int, tuple[dict, dict[str, np.ndarray]]]
    paths: list[str]


def read_run(parts: Sequence[PathLike], option: str = "--from-stats") -> Run:
    """Every part of one run, checked: ReadError / SpecError naming the part for a file that
    is not a stats file, parts of different runs, flags or rounds, missing or repeated parts,
    a damaged part."""
    from qcalc.io.stats_file import read_stats

    read = [(str(path), *read_stats(path)) for path in parts]
    if not read:
        raise SpecError(f"{option} needs at least one stats file")
    for path, document, _ in read:
        _check_document(document, path)
    first_path, first, _ = read[0]
    for path, document, _ in read[1:]:
        if document.get("settings") != first.get("settings"):
            raise SpecError(
                f"{path}: computed under other flags than {first_path} (stats parts must come "
                "from one run)"
            )
        if document.get("contents") != first.get("contents"):
            raise SpecError(
                f"{path}: holds {document.get('contents')} statistics, {first_path} "
                f"{first.get('contents')} (parts of one round only)"
            )
        if document.get("run") != first.get("run") or document.get("parts") != first.get("parts"):
            raise SpecError(
                f"{path}: a part of another run than {first_path} (other inputs, or another N)"
            )
    n = _integer(first, "parts", first_path)
    seen: dict[int, str] = {}
    for path, document, _ in read:
        k = _integer(document, "part", path)
        if k in seen:
            raise SpecError(f"{path}: part {k}/{n} is given twice (also {seen[k]})")
        seen[k] = path
    missing = [k for k in range(1, n + 1) if k not in seen]
    if missing:
        raise SpecError(
            f"part{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} of {n} "
            f"missing (given: {', '.join(sorted(seen.values()))})"
        )
    plan = first["plan"]
    units: dict[int, tuple[dict, dict[str, np.ndarray]]] = {}
    for path, document, arrays in read:
        for entry in document["statistics"]:
            position = entry["position"]
            described = {key: value for key, value in entry.items() if key != "key"}
            if not 0 <= position < len(plan) or plan[position] != described:
                raise ReadError(f"{path}: unit {entry['key']} is not the unit its plan names")
            if position in units:
                raise SpecError(f"{path}: unit {position} is held by two parts")
            units[position] = (entry, _arrays(entry, arrays, path))
    if len(units) != len(plan):
        raise SpecError(f"{first_path}: the parts do not hold every unit of their run")
    return Run(first_path, first, units, [p for p, _, _ in read])


def encode_from_stats(
    parts: Sequence[PathLike], *, progress: Optional[Progress] = None, jobs: Optional[int] = None
) -> EncodeResult:
    """The encodings of the run whose N parts are the stats files `parts` (any order): what
    `compute_encodings` gives for that run. Errors as `read_run`, and for the round-1 parts
    of a histogram analyzer (their batches are not counted yet)."""
    run = read_run(parts)
    first_path, first = run.first, run.document
    if first.get("contents") != FINAL:
        raise SpecError(
            f"{first_path}: round-1 statistics (ranges): count the batches first with "
            "qcalc stats ... --ranges <these parts>, then --from-stats the new parts"
        )
    progress = progress or Progress()
    tensors: dict[tuple[str, str], list[tuple[dict, dict]]] = {}
    for position in sorted(run.units):
        entry, arrays = run.units[position]
        tensors.setdefault((entry["kind"], entry["name"]), []).append((entry, arrays))
    progress.start(len(tensors), 0)

    def finish(item) -> Encoding:
        (kind, name), batches = item
        entries = [entry for entry, _ in batches]
        spec = _spec(entries[0], first_path)
        refused = _unstorable(spec)
        if refused is not None:
            raise ReadError(f"{first_path}: tensor '{name}': {refused}")
        refs = [_stub(entry) for entry in entries]
        statistics = [_statistics(spec, arrays, refs[0], first_path) for _, arrays in batches]
        encoding = encode_batches(name, refs, spec, progress, DEFAULT_CHUNK_BYTES, statistics)
        progress.tensor_done()
        return encoding

    with parallel.using(jobs):
        done = list(parallel.each_tensor(finish, list(tensors.items())))
    params = [e for (kind, _), e in zip(tensors, done) if kind == "param"]
    activations = [e for (kind, _), e in zip(tensors, done) if kind == "activation"]
    skipped = [Skipped(*entry) for entry in first.get("skipped", [])]
    return EncodeResult(params, skipped, activations, run.paths,
                        list(first.get("recipe_skipped", [])))  # fmt: skip


def _cells(spec: Spec, ref: TensorRef) -> int:
    """How many encodings (cells) `spec` gives the tensor of `ref`."""
    return math.prod(spec_layout(spec, ref.shape, ref.where).encoding_shape)


def _statistics(spec: Spec, arrays: dict, ref: TensorRef, path: str):
    """A unit's arrays as `encode_batches` takes them (MinMax, or BatchHistogram with its
    counts), checked against the sizes its layout gives: ReadError otherwise."""
    cells = _cells(spec, ref)
    wrong = ReadError(f"{path}: tensor '{ref.name}': statistics of the wrong size")
    stats = MinMax(arrays["min"], arrays["max"])
    if stats.min.size != cells:
        raise wrong
    if spec.analyzer == "minmax":
        return stats
    finite, counts = arrays.get("finite"), arrays.get("counts")
    if finite is None or counts is None or finite.size != cells:
        raise wrong
    if counts.shape != (cells, spec.bins + 2):
        raise wrong
    return BatchHistogram(stats, finite != 0, counts.astype(np.int64))


def _check_document(document: dict, path: str) -> None:
    """ReadError naming `path` unless the stats document has every field, of its type, and
    its plan matches the run's digest (a damaged or edited part)."""
    for key in ("part", "parts", "units"):
        _integer(document, key, path)
    if document.get("contents") not in (FINAL, RANGES):
        raise ReadError(f"{path}: stats document field 'contents' is not {FINAL} / {RANGES}")
    plan = document.get("plan")
    if not isinstance(plan, list):
        raise ReadError(f"{path}: stats document field 'plan' is not a list")
    _units(plan, path)
    if len(plan) != document["units"] or _digest(plan) != document.get("run"):
        raise ReadError(f"{path}: the run's plan does not match its digest (a damaged part)")
    for position, unit in enumerate(plan):
        if unit["position"] != position:
            raise ReadError(f"{path}: the plan's unit {position} says position {unit['position']}")
    entries = document.get("statistics")
    if not isinstance(entries, list):
        raise ReadError(f"{path}: stats document field 'statistics' is not a list")
    _units(entries, path)
    if any(entry.get("key") != f"u{entry['position']}" for entry in entries):
        raise ReadError(f"{path}: a unit's key is not u<position>")
    skipped = document.get("skipped")
    if not (
        isinstance(skipped, list)
        and all(isinstance(s, list) and len(s) == 3 and all(isinstance(v, str) for v in s)
                for s in skipped)
    ):  # fmt: skip
        raise ReadError(f"{path}: stats document field 'skipped' is not a list of notes")
    names = document.get("recipe_skipped")
    if not (isinstance(names, list) and all(isinstance(v, str) for v in names)):
        raise ReadError(f"{path}: stats document field 'recipe_skipped' is not a list of names")
    if not isinstance(document.get("settings"), dict):
        raise ReadError(f"{path}: stats document field 'settings' is not an object")


def _integer(document: dict, key: str, path: str) -> int:
    value = document.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ReadError(f"{path}: stats document field {key!r} is not a count")
    return value


# the fields of a unit in a stats document, and their types
_UNIT_FIELDS = (
    ("position", int), ("name", str), ("kind", str), ("batch", int), ("batches", int),
    ("source", str), ("dtype", str), ("shape", list), ("spec", dict),
)  # fmt: skip


def _units(entries: list, path: str) -> None:
    """ReadError unless every entry is a unit with its fields, of their types."""
    if not all(isinstance(e, dict) for e in entries):
        raise ReadError(f"{path}: a unit of the stats document is not an object")
    for entry in entries:
        for key, kind in _UNIT_FIELDS:
            if not isinstance(entry.get(key), kind):
                raise ReadError(f"{path}: a unit's {key!r} is missing or of the wrong type")
        if entry["dtype"] not in FLOAT_ITEMSIZE or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in entry["shape"]
        ):
            raise ReadError(f"{path}: unit {entry.get('key')}: bad dtype or shape")


def _arrays(entry: dict, arrays: dict, path: str) -> dict[str, np.ndarray]:
    """A unit's arrays by name (min, max; finite and counts for the histogram analyzers)."""
    key = entry["key"]
    found = {}
    for name in ("min", "max", "finite", "counts"):
        ref = arrays.get(f"{key}.{name}")
        if ref is not None:
            found[name] = np.array(ref.read())
    if "min" not in found or "max" not in found:
        raise ReadError(f"{path}: unit {key} has no min / max arrays")
    if found["min"].shape != found["max"].shape:
        raise ReadError(f"{path}: unit {key}'s min and max differ in shape")
    counts = found.get("counts")
    if counts is not None and not (
        counts.ndim == 2 and np.all(np.isfinite(counts)) and np.all(counts >= 0)
        and np.all(counts == np.round(counts)) and np.all(counts < 2.0**53)
    ):  # fmt: skip
        raise ReadError(f"{path}: unit {key}'s counts are not counts")
    return found


def _spec(entry: dict, path: str) -> Spec:
    try:
        return Spec(**entry["spec"])
    except (TypeError, SpecError) as error:
        raise ReadError(f"{path}: unit {entry.get('key')}: bad settings: {error}") from None


def _stub(entry: dict) -> TensorRef:
    """A TensorRef of a unit's batch that describes it (name, source, dtype, shape) but has no
    data: finishing from statistics never reads."""

    def unread():
        raise RuntimeError("finishing from statistics read a tensor")

    return TensorRef(entry["name"], entry["source"], float_dtype(entry["dtype"]),
                     tuple(entry["shape"]), unread)  # fmt: skip
