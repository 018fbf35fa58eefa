"""Semantic comparison of two sets of encodings, whatever file versions they came from.

Tensors are matched by name. Per tensor the settings (bitwidth, symmetry, strictness,
granularity, channel count, axis; for per-block and LPBQ grids also cell count, block size,
block axis and decompressed bitwidth) must agree and, cell by cell (channels, or blocks in
row-major order), scale and offset must be close: |a - b| <= atol + rtol * |b|
(numpy.isclose's rule; NaN equals NaN). LPBQ grids also compare their per-channel scales.

Everything is compared the way every file version can say it:

* offsets in the unsigned convention of 0.6.1 / 1.0.0 files, offset + qmax - (2^b - 1) (that
  is offset + qmin on standard grids): the same number for the signed and unsigned forms of
  one grid, and for a strict-symmetric grid and the full signed grid a 2.x file writes for it;
  so a 1.0.0 file and a 2.0.0 file of the same encodings are equal;
* granularity: a one-cell grid is per-tensor (AIMET's shape (1,) included), per-block and
  LPBQ grids are what they say (a 0.6.1 file holds AIMET's per-block cells as channels);
* the axis, the block axis and the channel count of a blockwise grid only when both sides know
  them, axes on grids of the same rank (0.6.1 / 1.0.0 files do not record axes, 1.0.0
  per-block entries not the grid's shape);
* the decompressed bitwidth of LPBQ grids, which 2.x files do not record: when either side
  was read from one, both sides count as bitwidth + ceil(log2(largest multiplier)), the
  reader's rule;
* symmetry: the declared flag, unless either side was read from a 2.x file, which records
  neither symmetry nor strictness: then both sides count as symmetric when every offset is the
  grid centre, and strictness is not compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import numpy as np

from qcalc.core.encoding import Encoding
from qcalc.core.spec import centre_offset
from qcalc.errors import QcalcError
from qcalc.io.formats.aimet import (
    LEGACY_VERSIONS,
    EncodingFile,
    FormatError,
    decompressed_bitwidth_of,
    is_blockwise,
)
from qcalc.io.text import quote

Side = Union[EncodingFile, Sequence[Encoding]]


class ToleranceError(QcalcError, ValueError):
    """A tolerance that is negative or NaN (a ValueError too, as it always was)."""


@dataclass(frozen=True)
class SettingChange:
    """A setting that differs: bitwidth, symmetric, strict, granularity, channels, axis, cells,
    block_size, block_axis or decompressed_bitwidth."""

    tensor: str
    setting: str
    a: Any
    b: Any


@dataclass(frozen=True)
class NumericDelta:
    """Channels of one field (scale, offset in the unsigned convention, or an LPBQ grid's
    per_channel_scale) whose values differ; for blockwise grids a "channel" is a cell.

    `channel` is the worst one (furthest beyond the tolerance, else the largest |a - b|), with
    its values `a`, `b` and `abs_delta`; `differing` channels differ at all, `beyond` of them
    by more than the tolerance.
    """

    tensor: str
    field: str
    channel: int
    a: float
    b: float
    abs_delta: float
    differing: int
    beyond: int
    channels: int

    @property
    def within_tolerance(self) -> bool:
        return self.beyond == 0


@dataclass(frozen=True)
class DiffResult:
    """Tensors only in A or only in B, changed settings, and numeric deltas (within tolerance
    or not). `equal` is the verdict: nothing missing, no setting changed, all deltas within."""

    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]
    settings: tuple[SettingChange, ...]
    deltas: tuple[NumericDelta, ...]
    rtol: float = 0.0
    atol: float = 0.0

    @property
    def equal(self) -> bool:
        return not (
            self.only_in_a
            or self.only_in_b
            or self.settings
            or any(not d.within_tolerance for d in self.deltas)
        )


def diff(a: Side, b: Side, *, rtol: float = 0.0, atol: float = 0.0) -> DiffResult:
    """Compare two encoding sets (EncodingFile objects or sequences of Encoding).

    >>> import numpy as np
    >>> from qcalc.ops.encode import encode_array
    >>> x = encode_array(np.array([-1.0, 2.0], dtype=np.float32), name="x")
    >>> diff([x], [x]).equal
    True
    """
    if not (rtol >= 0 and atol >= 0):  # NaN too
        raise ToleranceError(
            f"--rtol and --atol must be numbers >= 0 (got rtol {rtol!r}, atol {atol!r})"
        )
    left, right = _by_name(a, "A"), _by_name(b, "B")
    inferred = _symmetry_inferred(a) or _symmetry_inferred(b)
    settings: list[SettingChange] = []
    deltas: list[NumericDelta] = []
    for name, enc_a in left.items():
        enc_b = right.get(name)
        if enc_b is None:
            continue
        changes = _settings(enc_a, enc_b, inferred)
        settings += changes
        if enc_a.scale.size == enc_b.scale.size:
            for field, va, vb in _fields(enc_a, enc_b):
                delta = _delta(name, field, va, vb, rtol, atol)
                if delta is not None:
                    deltas.append(delta)
    return DiffResult(
        only_in_a=tuple(n for n in left if n not in right),
        only_in_b=tuple(n for n in right if n not in left),
        settings=tuple(settings),
        deltas=tuple(deltas),
        rtol=rtol,
        atol=atol,
    )


def _by_name(side: Side, label: str) -> dict[str, Encoding]:
    encodings = side.encodings if isinstance(side, EncodingFile) else tuple(side)
    named: dict[str, Encoding] = {}
    for enc in encodings:
        if enc.name in named:
            raise FormatError(f"tensor {quote(enc.name)} appears more than once in {label}")
        named[enc.name] = enc
    return named


def _symmetry_inferred(side: Side) -> bool:
    version = side.version if isinstance(side, EncodingFile) else None
    return version is not None and version not in LEGACY_VERSIONS


def _symmetric(enc: Encoding, inferred: bool) -> bool:
    if not inferred:
        return bool(enc.spec.symmetric)
    centre = centre_offset(enc.qmin, enc.qmax)
    if enc.offset.size == 1:  # per tensor: no numpy call (files hold 100,000s of these)
        return float(enc.offset.flat[0]) == centre
    return bool(np.all(enc.offset == centre))


def _granularity(enc: Encoding) -> str:
    if is_blockwise(enc):
        return enc.granularity
    return "per-tensor" if enc.scale.size == 1 else "per-channel"


def _channels(enc: Encoding) -> Optional[int]:
    """A blockwise grid's channel count: its cells over its blocks per channel (None when the
    block axis is unknown)."""
    if enc.block_axis is None or enc.scale.ndim == 0:
        return None
    return int(enc.scale.size // enc.scale.shape[enc.block_axis % enc.scale.ndim])


def _decompressed(enc: Encoding, inferred: bool) -> Optional[int]:
    if inferred and enc.per_block_int_scale is not None:
        return decompressed_bitwidth_of(enc.spec.bitwidth, enc.per_block_int_scale)
    if enc.decompressed_bitwidth is not None:
        return int(enc.decompressed_bitwidth)
    return int(enc.spec.decompressed_bitwidth)


def _axes(a: Encoding, b: Encoding, name: str) -> list[tuple[str, Any, Any]]:
    """`axis` or `block_axis`, when both sides know it on grids of the same rank."""
    va, vb = getattr(a, name), getattr(b, name)
    if va is None or vb is None or a.scale.ndim != b.scale.ndim or a.scale.ndim == 0:
        return []
    return [(name, va % a.scale.ndim, vb % b.scale.ndim)]


def _settings(a: Encoding, b: Encoding, inferred: bool) -> list[SettingChange]:
    pairs: list[tuple[str, Any, Any]] = [
        ("bitwidth", a.spec.bitwidth, b.spec.bitwidth),
        ("symmetric", _symmetric(a, inferred), _symmetric(b, inferred)),
        ("granularity", _granularity(a), _granularity(b)),
    ]
    if not inferred:
        pairs.append(("strict", a.qmin == -a.qmax, b.qmin == -b.qmax))
    if _granularity(a) == _granularity(b) == "per-channel":
        pairs.append(("channels", int(a.scale.size), int(b.scale.size)))
        pairs += _axes(a, b, "axis")
    elif _granularity(a) == _granularity(b) and is_blockwise(a):
        pairs.append(("cells", int(a.scale.size), int(b.scale.size)))
        pairs.append(("block_size", a.block_size, b.block_size))
        if _channels(a) is not None and _channels(b) is not None:
            pairs.append(("channels", _channels(a), _channels(b)))
        pairs += _axes(a, b, "axis") + _axes(a, b, "block_axis")
        if a.granularity == "lpbq":
            pairs.append(
                ("decompressed_bitwidth", _decompressed(a, inferred), _decompressed(b, inferred))
            )
    return [SettingChange(a.name, s, va, vb) for s, va, vb in pairs if va != vb]


def _fields(a: Encoding, b: Encoding):
    flat = lambda v: np.asarray(v, dtype=np.float64).ravel()  # noqa: E731
    yield "scale", flat(a.scale), flat(b.scale)
    yield "offset", _unsigned_offsets(a), _unsigned_offsets(b)
    pa, pb = a.per_channel_scale, b.per_channel_scale
    if _granularity(a) == _granularity(b) == "lpbq" and pa is not None and pb is not None:
        if np.size(pa) == np.size(pb):
            yield "per_channel_scale", flat(pa), flat(pb)


def _unsigned_offsets(enc: Encoding) -> np.ndarray:
    levels = 2 ** (enc.qmax - enc.qmin).bit_length() - 1
    return np.asarray(enc.offset, dtype=np.float64).ravel() + (enc.qmax - levels)


def _delta(
    name: str, field: str, a: np.ndarray, b: np.ndarray, rtol: float, atol: float
) -> Optional[NumericDelta]:
    if a.size == 1 and a[0] == b[0]:  # the common case, without numpy's error-state machinery
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        same = (a == b) | (np.isnan(a) & np.isnan(b))
        if same.all():
            return None
        gap = np.abs(a - b)
        tolerance = atol + rtol * np.abs(b)
        finite = np.isfinite(a) & np.isfinite(b)
        close = same | (finite & (gap <= tolerance))
        excess = np.where(same, -np.inf, np.where(finite, gap - tolerance, np.inf))
    worst = int(np.argmax(excess))
    return NumericDelta(
        tensor=name,
        field=field,
        channel=worst,
        a=float(a[worst]),
        b=float(b[worst]),
        abs_delta=float(gap[worst]),
        differing=int((~same).sum()),
        beyond=int((~close).sum()),
        channels=int(a.size),
    )
