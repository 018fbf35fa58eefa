"""What the inputs hold: every tensor's dtype, shape, size, file and value statistics.

One streaming pass per tensor (`TensorRef.chunks`), bounded memory, numpy vectorised:

- floating-point tensors are widened per chunk to float64 (exact for every stored float
  dtype); min / max / mean / std are over the finite values, NaN and ±inf are counted. Each
  chunk's mean and sum of squared deviations (M2) come from two BLAS dot products, and chunks
  merge with Chan's formula in float64. When a chunk's mean is large against its spread, the
  shortcut M2 = Σx² - (Σx)²/n would cancel, and the chunk is recomputed from its deviations.
- integer and bool tensors (which `encode` skips) are read through `Skipped.ref`; their
  statistics are exact: min and max as Python ints, mean and std from exact integer sums
  (values split into 16-bit limbs so no int64 sum can overflow), rounded once at the end.

std is the population standard deviation (numpy's default, ddof=0).
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

from qcalc.core import parallel
from qcalc.core.dtypes import FLOAT64, StoredFloat, stored_float, widen
from qcalc.core.stats import finite_minmax
from qcalc.core.tensor import DEFAULT_CHUNK_BYTES, Progress, Skipped, TensorRef
from qcalc.ops import cluster
from qcalc.ops.encode import select

PathLike = Union[str, "os.PathLike[str]"]
Number = Union[int, float]

# At most this many elements per piece however large `chunk_bytes` or a row is: the float64
# scratch (1 MB) stays in L2 cache through its five passes (widen, min, max, two dot products),
# which ran 1.4x faster than 4 MB pieces on the 1 GB bf16 benchmark checkpoint; and every int64
# sum of 16-bit limb products stays far below 2^63.
MAX_PIECE_ELEMENTS = 1 << 17
# A chunk whose M2 shortcut keeps less than this fraction of Σx² lost too many bits to
# cancellation; it is recomputed from deviations from its mean.
CANCELLATION = 1e-3


@dataclass(frozen=True)
class TensorInfo:
    """One tensor in one file. min / max / mean / std are None for an empty tensor or one
    without a single finite value; for integer and bool tensors min and max are exact ints."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    elements: int
    nbytes: int
    file: str
    min: Optional[Number]
    max: Optional[Number]
    mean: Optional[float]
    std: Optional[float]
    nan_count: int
    inf_count: int
    # ONNX model parameters: the consuming op, the role for it, the output-channel axis
    op: Optional[str] = None
    role: Optional[str] = None
    axis: Optional[int] = None

    def record(self) -> dict[str, Any]:
        """A JSON-ready dict with the documented keys, in order (shape as a list)."""
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "elements": self.elements,
            "bytes": self.nbytes,
            "file": self.file,
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "std": self.std,
            "nan": self.nan_count,
            "inf": self.inf_count,
            "op": self.op,
            "role": self.role,
            "axis": self.axis,
        }


def inventory(
    paths: Sequence[PathLike],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress: Optional[Progress] = None,
    jobs: Optional[int] = None,
    dask: Optional[str] = None,
) -> list[TensorInfo]:
    """Every tensor in `paths` (files or directories), in input order, with its statistics.

    Integer, bool and empty tensors are listed too. `include` / `exclude` are the globs of
    `encode` (each must match some tensor name). `jobs` threads read the tensors (None: every
    available core), or the workers of the Dask scheduler at `dask`.

    >>> [(t.name, t.dtype, t.min) for t in inventory(["sample_tensors/seed.npy"])]  # doctest: +SKIP
    [('seed', 'float32', -2.1246...)]
    """
    refs = _select(list_tensors(paths), include, exclude)
    progress = progress or Progress()
    progress.start(len(refs), sum(ref.nbytes for ref in refs))
    local = threading.local()  # each thread's scratch space

    def info(ref: TensorRef) -> TensorInfo:
        scratch = local.__dict__.setdefault("scratch", _Scratch())
        found = tensor_info(ref, chunk_bytes, progress, scratch)
        progress.tensor_done()
        return found

    with parallel.using(jobs), cluster.connected(dask) as client:
        return list(
            cluster.each_tensor(
                client, info, refs, lambda ref: (tensor_info, ref, chunk_bytes), progress,
                lambda ref: ref.nbytes,
            )
        )  # fmt: skip


def list_tensors(paths: Sequence[PathLike]) -> list[TensorRef]:
    """Every tensor the readers find, those `encode` skips (integer, bool) included."""
    from qcalc.io.readers import open_input

    refs = []
    for path in paths:
        for item in open_input(path):
            ref = item.ref if isinstance(item, Skipped) else item
            if ref is not None:
                refs.append(ref)
    return refs


def _select(refs: list[TensorRef], include: Sequence[str], exclude: Sequence[str]):
    if not (include or exclude):
        return refs
    return select(refs, include, exclude, purpose="list")


def tensor_info(
    ref: TensorRef,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    progress: Optional[Progress] = None,
    scratch: Optional[_Scratch] = None,
) -> TensorInfo:
    """Read one tensor once and summarise it."""
    progress = progress or Progress()
    kind = ref.dtype.kind
    if kind in "iub":
        stats: _FloatStats | _IntegerStats = _IntegerStats()
    elif kind == "f":  # bfloat16 / float8 too (StoredFloat)
        scratch = scratch or _Scratch()
        scratch.reserve(min(_elements(ref), _piece_elements(ref, chunk_bytes)))
        stats = _FloatStats(scratch, stored_float(ref.dtype))
    else:  # the readers refuse every other dtype
        raise TypeError(f"tensor '{ref.name}': unsupported dtype {ref.dtype}")
    for piece in _pieces(ref, chunk_bytes):
        stats.add(piece)
        progress.advance(piece.nbytes)
    lo, hi, mean, std = stats.result()
    return TensorInfo(
        name=ref.name,
        dtype=ref.dtype.name,
        shape=tuple(ref.shape),
        elements=_elements(ref),
        nbytes=ref.nbytes,
        file=ref.source,
        min=lo,
        max=hi,
        mean=mean,
        std=std,
        nan_count=stats.nan,
        inf_count=stats.inf,
        **_param_fields(ref),
    )


def _param_fields(ref: TensorRef) -> dict[str, Any]:
    """op / role / axis of an ONNX parameter (the axis counted from the front)."""
    role = ref.param
    if role is None:
        return {}
    axis = None if role.axis is None else role.axis % max(len(ref.shape), 1)
    return {"op": role.op, "role": role.role, "axis": axis}


def _elements(ref: TensorRef) -> int:
    return math.prod(ref.shape)


def _piece_elements(ref: TensorRef, chunk_bytes: int) -> int:
    return max(1, min(MAX_PIECE_ELEMENTS, chunk_bytes // ref.dtype.itemsize))


def _pieces(ref: TensorRef, chunk_bytes: int) -> Iterator[np.ndarray]:
    """The tensor's values as flat pieces of at most `chunk_bytes` each: `ref.chunks` (rows
    along axis 0), rows longer than that cut further."""
    if _elements(ref) == 0:
        return
    limit = _piece_elements(ref, chunk_bytes)
    for chunk in ref.chunks(chunk_bytes):
        flat = np.asarray(chunk).ravel(order="K")  # a view unless the chunk is strided
        for start in range(0, flat.size, limit):
            yield flat[start : start + limit]


class _Scratch:
    """float64 work space reused from tensor to tensor: fresh pages for every tensor cost
    more than the arithmetic on small ones."""

    def __init__(self) -> None:
        self.buffer = self.ones = np.empty(0, FLOAT64)

    def reserve(self, size: int) -> None:
        if self.buffer.size < size:
            self.buffer = np.empty(size, FLOAT64)
            self.ones = np.ones(size, FLOAT64)


class _FloatStats:
    """min / max over finite values, NaN and ±inf counts, and (n, mean, M2) merged chunk by
    chunk with Chan's formula, all in float64."""

    def __init__(self, scratch: _Scratch, stored: Optional[StoredFloat] = None) -> None:
        self.buffer, self.ones = scratch.buffer, scratch.ones
        self.stored = stored  # pieces are the bit patterns of this format
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.exponent = 0  # mean and M2 are in units of 2^exponent (M2: 2^(2 exponent))
        self.lo = math.inf
        self.hi = -math.inf
        self.nan = 0
        self.inf = 0

    def add(self, piece: np.ndarray) -> None:
        if piece.dtype == FLOAT64 and piece.dtype.isnative:
            values = piece  # the mapped file itself: never written to
        else:  # exact widening into the scratch buffer (bf16, f16, f32, f8, byte-swapped)
            values = self.buffer[: piece.size]
            if self.stored is not None:
                piece = widen(piece, self.stored)
            np.copyto(values, piece, casting="unsafe")
        stats, count = finite_minmax(values, None)
        if count.total:
            self.nan += count.nan
            self.inf += count.inf
            if count.total == values.size:
                return
            values = values[np.isfinite(values)]
        lo, hi = stats.min.item(), stats.max.item()
        self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        self._merge(values.size, *_mean_m2(values, self.ones[: values.size], lo, hi))

    def _merge(self, n: int, mean: float, m2: float, exponent: int) -> None:
        if self.n == 0:
            self.n, self.mean, self.m2, self.exponent = n, mean, m2, exponent
            return
        if exponent != self.exponent:  # to the larger unit (only float64 data beyond 2^±500)
            unit = max(exponent, self.exponent)
            self.mean = math.ldexp(self.mean, self.exponent - unit)
            self.m2 = math.ldexp(self.m2, 2 * (self.exponent - unit))
            mean, m2 = math.ldexp(mean, exponent - unit), math.ldexp(m2, 2 * (exponent - unit))
            self.exponent = unit
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * (n / total)
        self.m2 += m2 + delta * delta * (self.n * (n / total))
        self.n = total

    def result(self) -> tuple[Optional[float], Optional[float], Optional[float], Optional[float]]:
        if self.n == 0:
            return None, None, None, None
        # the mean lies in [lo, hi] and the std is at most half the range (Popoviciu): rounding
        # near ±float64 max must neither leave those bounds nor overflow
        mean = min(max(math.ldexp(self.mean, self.exponent), self.lo), self.hi)
        bound = self.hi / 2 - self.lo / 2
        try:
            std = min(math.ldexp(math.sqrt(max(self.m2, 0.0) / self.n), self.exponent), bound)
        except OverflowError:
            std = bound
        return self.lo, self.hi, mean, std


def _mean_m2(
    values: np.ndarray, ones: np.ndarray, lo: float, hi: float
) -> tuple[float, float, int]:
    """Mean and sum of squared deviations (M2) of finite float64 values, by BLAS dot products,
    in units of 2^exponent: 1 unless the squares would overflow or underflow float64 (float64
    data beyond 2^±500), when the values are scaled exactly into [-1, 1]."""
    n = values.size
    biggest = max(abs(lo), abs(hi))
    exponent = 0
    if biggest > 2.0**500 or 0 < biggest < 2.0**-500:
        exponent = math.frexp(biggest)[1]  # -1073 for the smallest subnormal: 2^1073 overflows,
        values = np.ldexp(values, -exponent)  # so scale each value (exactly) instead
    total = float(np.dot(values, ones))
    squares = float(np.dot(values, values))
    mean = total / n
    m2 = squares - total * mean
    if m2 < squares * CANCELLATION:  # |mean| >> spread: the shortcut cancelled; two passes
        deviations = values - mean
        m2 = float(np.dot(deviations, deviations)) - float(np.dot(deviations, ones)) ** 2 / n
    return mean, max(m2, 0.0), exponent


class _IntegerStats:
    """Exact min, max, Σx and Σx² of integer (and bool, as 0 / 1) values as Python ints."""

    nan = 0
    inf = 0

    def __init__(self) -> None:
        self.n = 0
        self.sum = 0
        self.squares = 0
        self.lo: Optional[int] = None
        self.hi: Optional[int] = None

    def add(self, piece: np.ndarray) -> None:
        if piece.dtype.kind == "b":
            piece = piece.view(np.uint8)
        lo, hi = int(piece.min()), int(piece.max())
        self.lo = lo if self.lo is None else min(self.lo, lo)
        self.hi = hi if self.hi is None else max(self.hi, hi)
        total, squares = exact_sums(piece)
        self.n += piece.size
        self.sum += total
        self.squares += squares

    def result(self) -> tuple[Optional[int], Optional[int], Optional[float], Optional[float]]:
        if self.n == 0:
            return None, None, None, None
        n = self.n
        variance = Fraction(n * self.squares - self.sum * self.sum, n * n)  # exact, >= 0
        return self.lo, self.hi, self.sum / n, math.sqrt(variance)  # each rounded once


def exact_sums(values: np.ndarray) -> tuple[int, int]:
    """Σx and Σx² of a 1-d integer array (fewer than 2^31 elements) as exact Python ints.

    Each value is split into 16-bit limbs x = Σ l_i·2^(16 i) (the top limb signed for signed
    dtypes, the others unsigned); every limb product is at most 2^32 in magnitude, so int64
    sums of fewer than 2^31 of them cannot overflow.
    """
    bits = values.dtype.itemsize * 8
    if bits <= 16:
        limbs = [(0, values.astype(np.int64))]
    else:
        mask = values.dtype.type(0xFFFF)
        limbs = [
            (shift, ((values >> values.dtype.type(shift)) & mask).astype(np.int64))
            for shift in range(0, bits - 16, 16)
        ]
        limbs.append((bits - 16, (values >> values.dtype.type(bits - 16)).astype(np.int64)))
    total = sum(int(limb.sum()) << shift for shift, limb in limbs)
    squares = 0
    for i, (shift_i, limb_i) in enumerate(limbs):
        for shift_j, limb_j in limbs[i:]:
            product = int(np.dot(limb_i, limb_j)) << (shift_i + shift_j)
            squares += product if limb_i is limb_j else 2 * product
    return total, squares
