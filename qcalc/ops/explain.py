"""`qcalc explain`: the derivation of one tensor's (or one channel's, or one block's) encoding,
step by step, with the numbers qcalc computes.

The steps are recorded by the math itself: the cell's statistics go through the same
functions `encode` uses (`grid.minmax_range`, `histogram.plan_batch` / `count` / `finish`,
`histogram.percentile_range` / `sqnr_range`, `grid.scale_offset` / `lpbq_scales` /
`effective_range`), called with the one cell's values and a `Trace`. The tensor is also
encoded as `encode` does it, and the cell's final scale, offset, min and max must equal that
encoding's bit for bit (a difference is a bug in qcalc, raised as such).

Decisions:

- **Which cell**: a per-tensor grid has one; a per-channel grid needs `--channel K` (no
  default: channel 0 is rarely the interesting one, and a silent pick could be read as the
  tensor's); a per-block or LPBQ grid needs `--channel K` and `--block J` (J along
  `--block-axis`; negative K / J count from the end). `--channel` / `--block` where the grid
  has no channels / blocks is an error, as is a missing one (the message gives the counts).
- **LPBQ**: block J's range is derived step by step; the channel's other blocks go through
  the same functions untraced, since the channel's scale is the largest block scale over
  2^(D-B); then the LPBQ steps (channel scale, block J's multiplier and scale).
- **Batches**: min-max reports the cell's range over all batches (its merged statistics);
  the histogram analyzers report each batch's finite range and the histogram after it.
- **Non-finite values** follow --nonfinite exactly as `encode` does (the tensor is encoded
  first, so `error` fails the same way).
- **Errors** (exit 2): unknown tensor, a recipe skipping it, --channel / --block missing,
  out of range or not applicable.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass
from typing import Any, Optional, Sequence

import numpy as np

from qcalc.core import grid, histogram, parallel
from qcalc.core.calibrate import first_peaks
from qcalc.core.conventions import covered_range, toolchain_grid
from qcalc.core.dtypes import FLOAT32, FLOAT64, arithmetic_dtype, widen
from qcalc.core.encoding import Encoding
from qcalc.core.layout import Layout, spec_layout
from qcalc.core.spec import Spec
from qcalc.core.tensor import DEFAULT_CHUNK_BYTES, Progress, TensorRef
from qcalc.core.toolchains import needs_peaks
from qcalc.core.trace import Step, Trace, add, fmt, one
from qcalc.errors import SpecError
from qcalc.ops.encode import PathLike, encode_tensor
from qcalc.ops.pick import checked_channel, finite_range, picked_tensor

ENCODING_FIELDS = ("scale", "offset", "min", "max")
TOOLCHAIN_FIELDS = ("zero_point", "stored_scale")  # and these under another convention


@dataclass(frozen=True)
class Explanation:
    """One cell's derivation: the `steps` (rule, sentence, numbers) and the cell's encoding
    (`cell_encoding`: scale, offset, min, max as Python floats, qmin, qmax; the LPBQ
    per-channel scale and multiplier too), equal to `encoding`'s cell. `cell` names the cell:
    None per tensor, else {"channel", "axis"} and, per block, {"block", "block_axis"}."""

    tensor: str
    source: str
    dtype: str
    shape: tuple[int, ...]
    spec: Spec
    granularity: str
    cell: Optional[dict[str, int]]
    steps: list[Step]
    cell_encoding: dict[str, Any]
    encoding: Encoding  # the tensor's, as `encode` computes it

    def record(self) -> dict[str, Any]:
        """The explanation as plain data (`--format json`)."""
        flags = {key: value for key, value in asdict(self.spec).items() if key != "analyzer"}
        return {
            "tensor": self.tensor,
            "source": self.source,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "granularity": self.granularity,
            "cell": self.cell,
            "analyzer": self.spec.analyzer,
            **flags,
            "steps": [
                {"rule": step.rule, "text": step.text, "values": dict(step.values)}
                for step in self.steps
            ],
            "encoding": dict(self.cell_encoding),
        }


def explain(
    paths: Sequence[PathLike],
    spec: Spec,
    tensor: str,
    *,
    channel: Optional[int] = None,
    block: Optional[int] = None,
    activations: Sequence[PathLike] = (),
    recipe=None,
    progress: Optional[Progress] = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    activation_bitwidth: Optional[int] = None,
    graph_axis: bool = True,
    jobs: Optional[int] = None,
) -> Explanation:
    """The derivation of tensor `tensor`'s (exact name) encoding under `spec` (and `recipe`),
    as `qcalc encode` computes it; of channel `channel` (and block `block`) for per-channel
    (per-block, LPBQ) grids, which need them. Raises FilterError (no such tensor) or SpecError
    (a cell missing, out of range or not applicable), and what `encode` raises.

    >>> found = explain(["sample_tensors/seed.npy"], Spec(), "seed")  # doctest: +SKIP
    >>> found.steps[-1].rule, found.cell_encoding["offset"]  # doctest: +SKIP
    ('grid range', -161)
    """
    batches, resolved = picked_tensor(
        paths, activations, spec, recipe, tensor, activation_bitwidth, graph_axis, "explain"
    )
    first = batches[0]
    layout = spec_layout(resolved, first.shape, first.where)
    cell = _pick_cell(layout, batches, resolved, tensor, channel, block)
    progress = progress or Progress()
    progress.start(1, sum(ref.nbytes for ref in batches))
    with parallel.using(jobs):
        encoding = encode_tensor(tensor, batches, resolved, False, progress, chunk_bytes)
    trace = Trace()
    cell_encoding = _derive(batches, resolved, layout, cell, trace, chunk_bytes)
    _check_equal(cell_encoding, encoding, layout, cell)
    return Explanation(
        tensor=tensor,
        source=encoding.source,
        dtype=first.dtype.name,
        shape=tuple(first.shape),
        spec=resolved,
        granularity=encoding.granularity,
        cell=cell,
        steps=list(trace.steps),
        cell_encoding=cell_encoding,
        encoding=encoding,
    )


# --- the cell ------------------------------------------------------------------------------


def _pick_cell(
    layout: Layout,
    batches: list[TensorRef],
    spec: Spec,
    tensor: str,
    channel: Optional[int],
    block: Optional[int],
) -> Optional[dict[str, int]]:
    """The cell asked for, checked against the layout: None per tensor."""
    where = f"tensor '{tensor}'"
    if layout.channel_axis is None:
        if channel is not None or block is not None:
            flag = "--channel" if channel is not None else "--block"
            raise SpecError(
                f"{where}: its grid is per tensor (one encoding), so {flag} does not apply "
                "(--per-channel or --block-size give channels and blocks)"
            )
        return None
    axis = layout.channel_axis
    channels = layout.shape[axis]
    if layout.block_axis is None and block is not None:
        raise SpecError(f"{where}: --block needs a per-block grid (--block-size)")
    if channel is None:
        what = "channel" if layout.block_axis is None else "channel and block"
        hint = "--channel K" if layout.block_axis is None else "--channel K --block J"
        raise SpecError(
            f"{where}: {channels} channels along axis {axis}, each with its own encoding: "
            f"name the {what} to explain with {hint} (K in 0..{channels - 1})"
        )
    axis, k, _ = checked_channel(batches, axis, channel, tensor)
    if layout.block_axis is None:
        return {"channel": k, "axis": axis}
    blocks = layout.shape[layout.block_axis] // (layout.block_size or 1)
    if block is None:
        raise SpecError(
            f"{where}: {blocks} blocks of {layout.block_size} along axis "
            f"{layout.block_axis} in each channel: name one with --block J (0..{blocks - 1})"
        )
    if not -blocks <= block < blocks:
        raise SpecError(
            f"{where}: block {block} is out of range: {blocks} blocks of {layout.block_size} "
            f"along axis {layout.block_axis} (0..{blocks - 1})"
        )
    return {"channel": k, "axis": axis, "block": block % blocks, "block_axis": layout.block_axis}


def _position(layout: Layout, cell: Optional[dict[str, int]], block: Optional[int] = None):
    """The cell's index in the encoding grid (a tuple; () per tensor) and its flat index."""
    if cell is None:
        return (), 0
    index = [0] * len(layout.shape)
    index[cell["axis"]] = cell["channel"]
    if "block" in cell:
        index[cell["block_axis"]] = cell["block"] if block is None else block
    return tuple(index), int(np.ravel_multi_index(index, layout.encoding_shape))


def _cell_refs(batches: list[TensorRef], layout: Layout, cell, block=None) -> list[TensorRef]:
    """Each batch's values of the cell (a lazy slice: channel, and block)."""
    if cell is None:
        return list(batches)
    index: list[Any] = [slice(None)] * len(layout.shape)
    index[cell["axis"]] = slice(cell["channel"], cell["channel"] + 1)
    if "block" in cell:
        j, size = cell["block"] if block is None else block, layout.block_size
        index[cell["block_axis"]] = slice(j * size, (j + 1) * size)
    return [_sliced(ref, tuple(index)) for ref in batches]


def _sliced(ref: TensorRef, index: tuple) -> TensorRef:
    shape = tuple(len(range(*part.indices(size))) for part, size in zip(index, ref.shape))
    return TensorRef(ref.name, ref.source, ref.dtype, shape, lambda: ref.read()[index])


# --- the derivation ------------------------------------------------------------------------


def _derive(batches, spec: Spec, layout: Layout, cell, trace: Trace, chunk_bytes: int):
    """The cell's encoding, every step recorded in `trace`."""
    qmin, qmax = spec.int_range
    n = qmax - qmin
    kind = "signed" if spec.is_signed else "unsigned"
    strict = " strict-symmetric" if spec.strict_symmetric else ""
    add(
        trace, "integer grid",
        f"{_article(spec.bitwidth)} {spec.bitwidth}-bit {kind}{strict} grid has the integer "
        f"levels qmin = {qmin} to qmax = {qmax}: n = qmax - qmin = {n} steps.",
        bitwidth=spec.bitwidth, qmin=qmin, qmax=qmax, num_steps=n,
    )  # fmt: skip
    dtype = arithmetic_dtype(batches[0].dtype, spec.compute_dtype)
    float32_inf = batches[0].dtype.name == "float64" and dtype == FLOAT32
    total = math.prod(layout.encoding_shape)
    if spec.convention != "aimet":
        refs = _cell_refs(batches, layout, cell)
        return _derive_toolchain(refs, spec, dtype, float32_inf, trace, chunk_bytes)

    def cell_range(block=None, traced=True):
        refs = _cell_refs(batches, layout, cell, block)
        flat = _position(layout, cell, block)[1]
        where = trace if traced else None
        if spec.analyzer == "minmax":
            return _minmax_range(refs, spec, dtype, n, float32_inf, where, chunk_bytes)
        return _histogram_range(refs, spec, dtype, n, float32_inf, (flat, total), where,
                                chunk_bytes)  # fmt: skip

    if spec.lpbq and cell is not None and "block" in cell:
        blocks = layout.shape[cell["block_axis"]] // layout.block_size
        ranges = [cell_range(j, traced=j == cell["block"]) for j in range(blocks)]
        rmin = np.concatenate([r[0].reshape(1) for r in ranges]).reshape(1, blocks)
        rmax = np.concatenate([r[1].reshape(1) for r in ranges]).reshape(1, blocks)
        scale, per_channel, per_block = grid.lpbq_scales(
            rmin, rmax, n, spec.bitwidth, spec.decompressed_bitwidth, 1,
            trace=trace, block=cell["block"],
        )  # fmt: skip
        j = cell["block"]
        scale = scale[:, j : j + 1]
        offset = np.zeros_like(scale)
        extra = {
            "per_channel_scale": one(per_channel),
            "per_block_int_scale": one(per_block[:, j : j + 1]),
            "decompressed_bitwidth": spec.decompressed_bitwidth,
        }
    else:
        rmin, rmax = cell_range()
        scale, offset = grid.scale_offset(
            rmin, rmax, qmin, qmax, spec.symmetric, spec.symmetric_offset == "zero", trace=trace
        )
        extra = {}
    lo, hi = grid.effective_range(scale, offset, qmin, qmax, trace=trace)
    return {
        "scale": one(scale), "offset": one(offset), "min": one(lo), "max": one(hi),
        "qmin": qmin, "qmax": qmax, **extra,
    }  # fmt: skip


def _article(number: int) -> str:
    return "An" if str(number).startswith("8") or number in (11, 18) else "A"


def _observed(refs, chunk_bytes: int, float32_inf: bool):
    """The finite range of `refs` (streamed once) and how many values they hold."""
    found = finite_range(refs, chunk_bytes, float32_inf)
    values = sum(math.prod(ref.shape) for ref in refs)
    return found, values


def _nonfinite_text(found) -> str:
    counts = [
        f"{count} {name}"
        for count, name in ((found.nan, "NaN"), (found.posinf, "+inf"), (found.neginf, "-inf"))
        if count
    ]
    return f" ({', '.join(counts)})" if counts else ""


def _derive_toolchain(refs, spec: Spec, dtype, float32_inf: bool, trace, chunk_bytes: int):
    """Another toolchain's cell: its observed min and max through the convention's rule
    (`conventions.toolchain_grid`, which records its steps)."""
    qmin, qmax = spec.int_range
    mn, mx = _observed_minmax(refs, spec, dtype, float32_inf, trace, chunk_bytes)
    peak = None
    if needs_peaks(spec):  # as encode finds it
        layout = spec_layout(spec, refs[0].shape, refs[0].where)
        shape = layout.encoding_shape
        found = first_peaks(refs, layout, mn.reshape(shape), mx.reshape(shape), chunk_bytes)
        peak = found.reshape(np.shape(mn))
    numbers = toolchain_grid(spec, mn, mx, peak, trace=trace)
    lo, hi = covered_range(numbers.scale, numbers.offset, qmin, qmax, trace=trace)
    return {
        "scale": one(numbers.scale), "offset": one(numbers.offset), "min": one(lo),
        "max": one(hi), "qmin": qmin, "qmax": qmax, "zero_point": one(numbers.zero_point),
        "stored_scale": one(numbers.stored_scale),
    }  # fmt: skip


def _minmax_range(refs, spec: Spec, dtype, n: int, float32_inf: bool, trace, chunk_bytes: int):
    """Min-max: the cell's observed min and max through grid.minmax_range."""
    mn_d, mx_d = _observed_minmax(refs, spec, dtype, float32_inf, trace, chunk_bytes)
    return grid.minmax_range(mn_d, mx_d, n, spec.symmetric, dtype, trace=trace)


def _observed_minmax(refs, spec: Spec, dtype, float32_inf: bool, trace, chunk_bytes: int):
    """The cell's observed min and max in `dtype` (as `encode` reduces them: NaN and ±inf
    kept under --nonfinite keep, left out otherwise), recorded as the "observed range"."""
    found, values = _observed(refs, chunk_bytes, float32_inf)
    mn, mx = found.min, found.max
    if not found.finite:  # no finite value: finite_minmax's empty range
        mn, mx = math.inf, -math.inf
    if spec.nonfinite == "keep":  # np.min / np.max of all the values
        if found.nan:
            mn = mx = math.nan
        else:
            mn = -math.inf if found.neginf else mn if found.finite else math.inf
            mx = math.inf if found.posinf else mx if found.finite else -math.inf
    mn64, mx64 = np.asarray(mn, dtype=FLOAT64), np.asarray(mx, dtype=FLOAT64)
    with np.errstate(over="ignore"):
        mn_d, mx_d = mn64.astype(dtype), mx64.astype(dtype)
    if trace is not None:
        batches = f" in {len(refs)} batches" if len(refs) > 1 else ""
        if found.finite or spec.nonfinite == "keep":
            kept = ""
            if spec.nonfinite != "keep" and found.finite < values:
                kept = f" (its {found.finite} finite values{_nonfinite_text(found)} left out)"
            elif spec.nonfinite == "keep" and found.finite < values:
                kept = f", NaN and ±inf kept as AIMET keeps them{_nonfinite_text(found)}"
            text = (
                f"The min-max analyzer observes the cell's {values} values{batches}{kept}: "
                f"min = {fmt(mn_d)}, max = {fmt(mx_d)}."
            )
        else:
            text = (
                f"The cell has no finite value{_nonfinite_text(found)}: with them left out, "
                "its range is empty (min +inf, max -inf), which the zero rule makes [0, 0]."
            )
        add(trace, "observed range", text, min=one(mn_d), max=one(mx_d), values=values,
            finite=found.finite)  # fmt: skip
    return mn_d, mx_d


def _counted(chunk: np.ndarray, dtype, ignore: bool) -> np.ndarray:
    """A chunk of the cell's values as the histograms count them, as one row: float64 as
    float32 (beyond float32: ±inf); under --nonfinite ignore NaN and ±inf as NaN (counted
    nowhere)."""
    values = np.asarray(chunk)
    if values.dtype.name == "float64":
        with np.errstate(over="ignore"):
            values = values.astype(FLOAT32)
    if ignore:
        values = widen(values, dtype)
        values = np.where(np.isfinite(values), values, np.float32(np.nan))
    return values.reshape(1, -1)


def _histogram_range(refs, spec: Spec, dtype, n, float32_inf, cells_of, trace, chunk_bytes):
    """Percentile / SQNR / TF-enhanced: the cell's histogram, batch by batch (its finite
    range, then its counts), then the analyzer's search."""
    hist_dtype = FLOAT32 if dtype == FLOAT64 else dtype  # AIMET's histograms are float32
    ignore = spec.nonfinite == "ignore"
    hist = None
    for number, ref in enumerate(refs, 1):
        found, values = _observed([ref], chunk_bytes, float32_inf)
        lo = np.asarray(found.min if found.finite else math.inf, dtype=FLOAT64)
        hi = np.asarray(found.max if found.finite else -math.inf, dtype=FLOAT64)
        with np.errstate(over="ignore"):
            lo32 = lo.astype(hist_dtype).astype(FLOAT32).reshape(1)
            hi32 = hi.astype(hist_dtype).astype(FLOAT32).reshape(1)
        binning = histogram.plan_batch(
            hist, lo32, hi32, spec.bins, hist_dtype, spec.growth_limit, empty_ok=ignore,
            describe=lambda _: ref.where,
        )  # fmt: skip
        if ignore:
            binning = dataclasses.replace(binning, strict=np.zeros(1, dtype=bool))
        counts = binning.zeros()
        for chunk in ref.chunks(chunk_bytes):
            histogram.count(_counted(chunk, ref.dtype, ignore), binning, counts, dtype=ref.dtype)
        hist = histogram.finish(binning, counts)
        if trace is not None:
            _record_batch(trace, number, len(refs), ref, found, values, binning, spec, lo32, hi32)
    assert hist is not None
    if not hist.started[0]:  # no finite value (only under ignore): min-max's zero range
        add(
            trace,
            "no finite value",
            "The cell has no finite value to count: it gets min-max's zero range.",
        )
        empty = np.full(1, np.inf, dtype)
        return grid.minmax_range(empty, -empty, n, spec.symmetric, dtype, trace=trace)
    if spec.analyzer == "percentile":
        return histogram.percentile_range(hist, spec.percentile, n, spec.symmetric, trace=trace)
    return histogram.sqnr_range(hist, n, spec.symmetric, cells_of=cells_of, trace=trace)


def _record_batch(trace, number, batches, ref, found, values, binning, spec, lo, hi) -> None:
    which = f"Batch {number} of {batches} ({ref.source})" if batches > 1 else "The cell"
    left = f" ({found.finite} finite{_nonfinite_text(found)})" if found.finite < values else ""
    if not found.finite:
        seen = f"has no finite value among its {values}{_nonfinite_text(found)}"
    else:
        finite = "the finite ones " if left else ""
        seen = f"holds {values} values{left}, {finite}from {fmt(lo)} to {fmt(hi)}"
    merged = ""
    if number > 1:
        merged = f"; the histogram now spans [{fmt(binning.min)}, {fmt(binning.max)}]" + (
            " (earlier counts re-binned)" if binning.carried is not None else ""
        )
    add(
        trace, "observed range",
        f"{which} {seen}{merged}; the {spec.analyzer} analyzer counts it into {spec.bins} "
        "bins.",
        values=values, finite=found.finite,
        min=found.min if found.finite else None, max=found.max if found.finite else None,
        histogram_min=one(binning.min), histogram_max=one(binning.max),
    )  # fmt: skip


# --- the check ------------------------------------------------------------------------------


def _check_equal(cell_encoding: dict, encoding: Encoding, layout: Layout, cell) -> None:
    """RuntimeError (a bug: exit 3) unless the derived cell equals `encode`'s, bit for bit."""
    index, _ = _position(layout, cell)
    keys = ENCODING_FIELDS + (TOOLCHAIN_FIELDS if encoding.toolchain is not None else ())
    for key in keys:
        held = encoding.toolchain if key in TOOLCHAIN_FIELDS else encoding
        expected = np.asarray(getattr(held, key))[index] if index else getattr(held, key)
        derived = np.float32(cell_encoding[key])
        expected = np.asarray(expected, dtype=FLOAT32)
        same = expected.tobytes() == derived.tobytes() or (np.isnan(expected) and np.isnan(derived))
        if not same:
            raise RuntimeError(
                f"explain derived {key} {derived!r} but encode computes {expected!r} for "
                f"tensor '{encoding.name}'"
            )
