"""Quantization error of a tensor under an encoding: SQNR, MSE, clipping, grid use.

The tensor is streamed in chunks along axis 0 (as the encoding computation streams it), each
chunk fake-quantized exactly as `grid.quantize_dequantize` (AIMET's QuantizeDequantize) does
and reduced to per-cell sums, so memory stays bounded whatever the tensor's size.

Speed: the common case (float32 arithmetic on a float32 grid, finite data) runs in place on
each chunk's (cells, elements) matrix, and each chunk row's sums of squares are float32
dot products (relative error ~1e-6), added up across chunks in float64. Other cases (float64
grids, --compute-dtype input, NaN / inf in a chunk) take a general path with float64 errors.
Errors are exact in float32 except for clipped elements, whose chunks switch to float64.

Non-finite elements are counted and left out of the sums; a float64 tensor measured in float32
arithmetic (the default --compute-dtype) counts its values beyond float32 as ±inf, which is
what they are in the float32 model (qcalc.core.dtypes.FLOAT32_OVERFLOW).
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import numpy as np

from qcalc.core import conventions, grid
from qcalc.core.dtypes import FLOAT32, FLOAT64, arithmetic_dtype, to_numpy, widen
from qcalc.core.encoding import Encoding, Metrics
from qcalc.core.layout import Layout, encoding_layout
from qcalc.core.stats import NonFiniteCount, reduce_minmax
from qcalc.core.tensor import DEFAULT_CHUNK_BYTES, TensorRef, array_ref
from qcalc.core.workspace import work_array


def array_metrics(array: np.ndarray, encoding: Encoding) -> Metrics:
    """Metrics of an in-memory array under `encoding` (streamed in chunks like a file)."""
    return tensor_metrics([array_ref(np.asarray(array), encoding.name)], encoding)


def tensor_metrics(
    batches: Union[TensorRef, Sequence[TensorRef]],
    encoding: Encoding,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Metrics:
    """Metrics of one tensor (a TensorRef, or several calibration batches of it) under
    `encoding`, read in chunks of at most `chunk_bytes` source bytes."""
    if isinstance(batches, TensorRef):
        batches = [batches]
    acc = _Accumulator(encoding)
    with np.errstate(all="ignore"):  # NaN / inf levels propagate into the sums on purpose
        for ref in batches:
            acc.add_batch(ref, chunk_bytes)
        return acc.result()


class _Accumulator:
    """Per-cell sums and level spans, and global counts, fed chunk by chunk."""

    def __init__(self, encoding: Encoding) -> None:
        self.encoding = encoding
        self.cells = int(encoding.scale.size)
        self.levels = encoding.qmax - encoding.qmin + 1
        self.sum_x2 = np.zeros(self.cells, dtype=FLOAT64)
        self.sum_e2 = np.zeros(self.cells, dtype=FLOAT64)
        # the sums are in units of 2^(2 unit): 0, except in cells of float64 values so small
        # (below TINY) that their squares would underflow; see _add_scaled
        self.unit = np.zeros(self.cells, dtype=np.int64)
        self.level_lo = np.full(self.cells, np.inf)
        self.level_hi = np.full(self.cells, -np.inf)
        self.max_error = 0.0
        self.elements = self.clipped = self.nan = self.inf = 0
        scale, offset = encoding.scale, encoding.offset
        # With a finite positive scale and a finite offset, every finite x has a finite level.
        self.regular = encoding.toolchain is None and bool(
            np.all(np.isfinite(offset)) and np.all((scale > 0) & np.isfinite(scale))
        )
        self.flat_scale = np.asarray(scale, dtype=FLOAT32).reshape(-1, 1)
        offsets = np.asarray(offset, dtype=FLOAT32).reshape(-1, 1)
        self.flat_offset = offsets if np.any(offsets) else None
        self._workspace: dict = {}  # work arrays reused chunk after chunk

    def add_batch(self, ref: TensorRef, chunk_bytes: int) -> None:
        enc = self.encoding
        layout = encoding_layout(enc, ref.shape, ref.where)
        views = _grid_views(enc, layout)
        qdq_dtype = arithmetic_dtype(ref.dtype, enc.spec.compute_dtype)
        fast = (
            self.regular
            and qdq_dtype == FLOAT32
            and grid.internal_dtype(FLOAT32, enc.qmin, enc.qmax) == FLOAT32
        )
        cells_per_row = self.cells // enc.encoding_shape[0] if layout.rows_are_cells else 0
        row = 0
        for chunk in ref.chunks(chunk_bytes, layout.row_multiple):
            chunk = np.asarray(chunk)
            x = widen(chunk, ref.dtype)
            start, part = 0, views
            if layout.rows_are_cells:  # this chunk's rows hold a contiguous run of cells
                first = row // layout.row_multiple
                rows = slice(first, first + len(chunk) // layout.row_multiple)
                part = _rows_of(views, rows)
                start = first * cells_per_row
                row += len(chunk)
            if fast and x.dtype == FLOAT32 and x.size and self._add_rows(layout, x, start):
                continue
            qin = x if x.dtype == qdq_dtype else to_numpy(chunk, ref.dtype)  # bf16: ml_dtypes
            self._add_chunk(layout, x, qin.astype(qdq_dtype, copy=False), part, start)

    def _add_rows(self, layout: Layout, x: np.ndarray, start: int) -> bool:
        """The fast path: a float32 chunk as its (cells, elements) matrix, fake-quantized in
        place with the operations (and roundings) of grid.quantize_dequantize. Returns False,
        having changed nothing, when the chunk holds NaN / inf (the general path counts them)
        or values whose squares overflow float32."""
        enc = self.encoding
        rows = layout.cells(x)
        cells = slice(start, start + rows.shape[0]) if layout.rows_are_cells else slice(None)
        scale = self.flat_scale[cells]
        offset = None if self.flat_offset is None else self.flat_offset[cells]
        t = np.divide(rows, scale, out=work_array(self._workspace, "t", rows.shape, FLOAT32))
        np.rint(t, out=t)
        if offset is not None:
            np.subtract(t, offset, out=t)
        levels = reduce_minmax(t, (1,))
        lo, hi = levels.min.ravel(), levels.max.ravel()
        if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
            return False
        qmin, qmax = np.float32(enc.qmin), np.float32(enc.qmax)
        clipped = 0
        if lo.min() < qmin or hi.max() > qmax:
            clipped = int(np.count_nonzero(t < qmin)) + int(np.count_nonzero(t > qmax))
            np.clip(t, qmin, qmax, out=t)
        if offset is not None:
            np.add(t, offset, out=t)
        np.multiply(t, scale, out=t)  # xhat
        if clipped:  # a clipped element's error can be inexact in float32
            err = np.subtract(rows, t, dtype=FLOAT64)
        else:  # |x - xhat| <= scale / 2 with xhat = k * scale: exact in float32 (Sterbenz)
            err = np.subtract(rows, t, out=t)
        sum_x2, sum_e2 = _row_dots(rows), _row_dots(err)
        if not (np.isfinite(sum_x2).all() and np.isfinite(sum_e2).all()):
            return False  # float32 squares overflowed (|x| > 1e19): float64 on the general path
        small_x, small_e = sum_x2 < SMALL_SUM, sum_e2 < SMALL_SUM  # all-zero rows are common
        if (small_x.any() and np.any(rows[small_x])) or (small_e.any() and np.any(err[small_e])):
            return False  # squares of values below ~1e-19 underflow float32: float64 instead
        # a cell can lie wholly beyond one end of the grid: clamp both bounds both ways
        self.level_lo[cells] = np.minimum(self.level_lo[cells], np.clip(lo, qmin, qmax))
        self.level_hi[cells] = np.maximum(self.level_hi[cells], np.clip(hi, qmin, qmax))
        self.sum_x2[cells] += sum_x2
        self.sum_e2[cells] += sum_e2
        self.max_error = max(self.max_error, float(np.max(err)), -float(np.min(err)))
        self.elements += rows.size
        self.clipped += clipped
        return True

    def _add_chunk(self, layout: Layout, x, qin, views, start: int) -> None:
        enc = self.encoding
        scale, offset, numbers = views
        xv, axes = layout.cell_view(x)
        qv, _ = layout.cell_view(qin)
        if xv.size == 0:
            return
        if numbers is None:
            xhat = widen(grid.quantize_dequantize(qv, scale, offset, enc.qmin, enc.qmax))
        else:  # another toolchain's quantizer and dequantizer
            xhat = conventions.quantize_dequantize(enc.spec, qv, numbers)
        err = np.asarray(np.subtract(xv, xhat, dtype=FLOAT64))  # arrays even for 0-d tensors
        x2 = np.asarray(np.square(xv, dtype=FLOAT64))
        sum_x2 = np.sum(x2, axis=axes, dtype=FLOAT64).ravel()
        # a float64 tensor in float32 arithmetic: values beyond float32 are ±inf there
        seen = qv if qv.dtype == FLOAT32 and xv.dtype == FLOAT64 else xv
        finite = np.isfinite(seen)
        nonfinite = xv.size - int(np.count_nonzero(finite))
        if nonfinite:
            count = NonFiniteCount.of(seen)
            self.nan += count.nan
            self.inf += count.inf
            x2[~finite] = 0.0
            err[~finite] = 0.0
            sum_x2 = np.sum(x2, axis=axes, dtype=FLOAT64).ravel()
        self.elements += xv.size - nonfinite
        if err.size:
            self.max_error = max(self.max_error, float(np.max(err)), -float(np.min(err)))
        np.square(err, out=err)
        sum_e2 = np.sum(err, axis=axes, dtype=FLOAT64).ravel()
        if np.isnan(sum_e2).any():  # NaN levels (a NaN / zero scale): max() above dropped them
            self.max_error = math.nan
        cells = slice(start, start + sum_x2.size)
        if xv.dtype == FLOAT64 and (np.any(sum_x2 < TINY_SUM) or np.any(self.unit[cells])):
            x2[...] = np.where(finite, xv, 0.0)
            err = np.asarray(np.subtract(xv, xhat, dtype=FLOAT64))
            err[~finite] = 0.0
            self._add_scaled(x2, err, axes, cells)
        else:
            self.sum_x2[cells] += sum_x2
            self.sum_e2[cells] += sum_e2
        self._add_levels(qv, views, axes, finite, cells)

    def _add_scaled(self, x, err, axes, cells) -> None:
        """Add the sums of squares of finite float64 `x` and `err` per cell, each cell whose
        values are all below TINY scaled exactly by a power of two first (its unit), so that
        squares of values down to the subnormals do not underflow to 0 (an SQNR 0 / 0)."""
        peak = np.maximum(
            np.max(np.abs(x), axis=axes, keepdims=True),
            np.max(np.abs(err), axis=axes, keepdims=True),
        )
        tiny = (peak < TINY) & (peak > 0)
        exponent = np.where(tiny, np.frexp(peak)[1], 0).astype(np.int64)
        x = np.ldexp(x, -exponent)
        err = np.ldexp(err, -exponent)
        sum_x2 = np.sum(np.square(x), axis=axes).ravel()
        sum_e2 = np.sum(np.square(err), axis=axes).ravel()
        unit = exponent.ravel()
        held = self.unit[cells]
        empty = (self.sum_x2[cells] == 0) & (self.sum_e2[cells] == 0)
        merged = np.where(empty, unit, np.maximum(held, unit))
        self.sum_x2[cells] = np.ldexp(self.sum_x2[cells], 2 * (held - merged)) + np.ldexp(
            sum_x2, 2 * (unit - merged)
        )
        self.sum_e2[cells] = np.ldexp(self.sum_e2[cells], 2 * (held - merged)) + np.ldexp(
            sum_e2, 2 * (unit - merged)
        )
        self.unit[cells] = merged

    def _add_levels(self, qv, views, axes, finite, cells) -> None:
        """Clipped elements (their level before clamping is off the grid) and each cell's
        lowest and highest level, from the chunk's finite elements."""
        enc = self.encoding
        scale, offset, numbers = views
        if numbers is None:
            q = grid.unclamped_levels(qv, scale, offset, enc.qmin, enc.qmax)
        else:
            q = conventions.levels(enc.spec, qv, numbers)
        valid = finite & ~np.isnan(q)  # x / scale can overflow: an infinite level is clipped
        self.clipped += int(np.count_nonzero(valid & ((q < enc.qmin) | (q > enc.qmax))))
        q = np.clip(q, enc.qmin, enc.qmax)
        lo = np.min(q, axis=axes, where=valid, initial=np.inf).ravel()
        hi = np.max(q, axis=axes, where=valid, initial=-np.inf).ravel()
        self.level_lo[cells] = np.minimum(self.level_lo[cells], lo)
        self.level_hi[cells] = np.maximum(self.level_hi[cells], hi)

    def result(self) -> Metrics:
        top = int(self.unit.max()) if self.cells else 0  # the common unit of the totals
        total_x2 = float(np.sum(np.ldexp(self.sum_x2, 2 * (self.unit - top))))
        total_e2 = float(np.sum(np.ldexp(self.sum_e2, 2 * (self.unit - top))))
        n = self.elements
        used = None
        if n:
            spans = np.maximum(self.level_hi - self.level_lo + 1, 0)  # 0 for an empty cell
            used = float(np.sum(spans) / (self.cells * self.levels))
        worst_db = worst = None
        if self.encoding.granularity != "per-tensor":
            per_cell = _sqnr_db(self.sum_x2, self.sum_e2)
            worst = int(np.argmin(per_cell))  # first minimum (or first NaN)
            worst_db = float(per_cell[worst])
        return Metrics(
            sqnr_db=float(_sqnr_db(np.float64(total_x2), np.float64(total_e2))),
            mse=math.ldexp(total_e2 / n, 2 * top) if n else 0.0,
            max_abs_error=self.max_error,
            clipped_fraction=self.clipped / n if n else 0.0,
            grid_used_fraction=used,
            worst_sqnr_db=worst_db,
            worst_index=worst,
            elements=n,
            nan_count=self.nan,
            inf_count=self.inf,
        )


# Sums of squares below this may have lost bits to underflow (float32: squares of values
# below ~1e-19; float64: below ~1e-154): such chunks are summed again in scaled units.
SMALL_SUM = 2.0**-60
TINY = 2.0**-400  # float64 cells whose values are all below this are summed scaled
TINY_SUM = 2.0**-700  # a float64 chunk with a cell's sum below this may hold such a cell


def _row_dots(rows: np.ndarray) -> np.ndarray:
    """Σ x² of each row in the rows' dtype: BLAS dot products (SIMD partial sums, relative
    error ~1e-6 even for 512k-element rows), numpy's einsum for short rows."""
    if rows.shape[1] >= 256:
        return (rows[:, None, :] @ rows[:, :, None]).ravel()
    return np.einsum("ij,ij->i", rows, rows)


def _sqnr_db(signal: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """10 log10(signal / noise); +inf without noise (0 / 0 too), -inf without signal."""
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10.0 * np.log10(signal / noise)
    return np.where(noise == 0, np.inf, db)


def _grid_views(encoding: Encoding, layout: Layout) -> tuple:
    """scale, offset and the toolchain's numbers (None under AIMET's convention) shaped to
    broadcast against a chunk's `Layout.cell_view` (a size-1 axis after each block axis)."""

    def shaped(values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        if layout.channel_axis is None:
            return values.reshape(())
        if layout.block_axis is not None:
            return np.expand_dims(values, layout.block_axis + 1)
        return values

    numbers = encoding.toolchain
    return (
        shaped(encoding.scale),
        shaped(encoding.offset),
        None if numbers is None else numbers.mapped(shaped),
    )


def _rows_of(views: tuple, rows: slice) -> tuple:
    """The views of the cells in `rows` (a chunk of rows that are cells)."""
    scale, offset, numbers = views
    return (
        scale[rows],
        offset[rows],
        None if numbers is None else numbers.mapped(lambda values: values[rows]),
    )
