"""AIMET encodings JSON (0.6.1, 1.0.0, 2.0.0, 2.1.0) -> the Encoding objects qcalc computes.

What a file does not say is filled in one documented way:

* 0.6.1 / 1.0.0 offsets are in the unsigned convention (signed grids are shifted by 2^(b-1)),
  so these encodings read as unsigned grids: qmin = 0, qmax = 2^b - 1, offset = the file's
  offset. The grid's float values are exactly those of the signed encoding written.
  Per-channel entries carry no axis: shape (C,), axis None. One-cell 0.6.1 entries and
  PER_TENSOR 1.0.0 entries read as per-tensor, shape ().
* 2.x: signedness and bitwidth come from `output_dtype`, offset = -y_zero_point. Symmetry is
  not written; an encoding is read as symmetric when every zero point is the grid centre
  (0 for int<b>, 2^(b-1) for uint<b>). Strict-symmetric grids cannot be told from full signed
  grids and read as the latter. A per-channel entry's shape has C at `axis`: (1,)*axis + (C,)
  for a positive axis (a parameter, as QuantSim writes it), (C,) + (1,)*(-axis - 1) for a
  negative one (an activation). Per-tensor entries do not say which they are and join the
  section of the entry before them (activations at the start).
* Per-block and LPBQ entries (1.0.0 `PER_BLOCK` / `LPBQ`; 2.x entries with `block_size`):
  * 1.0.0 `PER_BLOCK` records the cells and the block size but neither the grid's shape nor
    its axes: shape (cells,), axis and block_axis None (offsets as for per-channel entries).
  * 1.0.0 `LPBQ` records C per-channel scales and C*K/B multipliers: shape (C, K/B), channel
    axis 0, block axis 1; bitwidth = `compressed_bw`, decompressed bitwidth = `bw`.
  * 2.x: the shape is the nesting of `y_scale` (per-block), `per_block_int_scale` (2.0.0 LPBQ)
    or `y_scale.x` (2.1.0 LPBQ), the block axis is `axis` (its sign gives the role, as for
    per-channel entries), the channel axis is `y_scale.axis` in 2.1.0 LPBQ, else the one axis
    besides the block axis with more than one cell (AIMET's rule). 2.x does not record the
    decompressed bitwidth: it is read as bitwidth + ceil(log2(largest multiplier)), which is
    the bitwidth AIMET made the encoding with (each channel's largest block gets 2^(dbw-bw)).
    Both LPBQ forms are read in either 2.x version.
  * LPBQ: scale = multiplier * per-channel scale in float32, offset 0, symmetric signed grid.
  * 0.6.1 has no block fields: AIMET's per-block cells read as a per-channel encoding.
* Tensor dtype and shape are unknown (None); min / max and raw_min / raw_max are
  scale * (offset + qmin) and scale * (offset + qmax) in float32.

What every file must hold (anything else raises FormatError with one line naming the file,
the tensor, the field and the bound broken; strings from the file are quoted and escaped):

* scales (and LPBQ per-channel scales) finite and > 0 once rounded to float32, and small
  enough that the grid's range, scale × (qmax - qmin), is finite in float32;
* offsets integers on the grid: 0.6.1 / 1.0.0 offsets in the unsigned convention, from
  -(2^b - 1) to 0; 2.x zero points from qmin to qmax of `output_dtype`'s grid; a symmetric
  0.6.1 / 1.0.0 entry's offsets all -2^(b-1) (the grid centre) or all 0;
* 0.6.1 `min` / `max`, when present, equal to scale × offset and scale × (offset + 2^b - 1)
  within a relative MINMAX_RTOL of the range: AIMET 2.42 writes exactly these float32
  products, other writers compute them in double, and anything further off describes another
  grid than scale and offset do;
* bitwidths 2..32 (Spec's grids), block sizes 1..2^31-1, channel axes -32..31;
* tensor names valid Unicode (no lone surrogates) and each name once in the file;
* `quantizer_args` a JSON object of finite values nested at most _MAX_METADATA_DEPTH deep;
* JSON nested no deeper than Python's recursion limit allows, integers of at most 4300
  digits, and (read from a path) at most 1 GiB (io.text.MAX_TEXT_BYTES).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable, NoReturn, Optional, Sequence, Union

import numpy as np

from qcalc.core import grid
from qcalc.core.encoding import Encoding
from qcalc.core.spec import (
    MAX_BITWIDTH,
    MAX_BLOCK_SIZE,
    MIN_BITWIDTH,
    Spec,
    centre_offset,
    integer_range,
)
from qcalc.errors import ReadError, SpecError
from qcalc.io.formats.aimet import (
    LEGACY_VERSIONS,
    VERSIONS,
    EncodingFile,
    FormatError,
    Kind,
    blockwise_channel_axis,
    check_version,
    decompressed_bitwidth_of,
)
from qcalc.io.text import number, quote, read_utf8

PathLike = Union[str, "os.PathLike[str]"]
_INT_DTYPE = re.compile(r"(u?)int(\d{1,4})")
_ENC_TYPES = ("PER_TENSOR", "PER_CHANNEL", "PER_BLOCK", "LPBQ")
# The deepest nesting of a 2.x grid (`y_scale`, `per_block_int_scale`, ...): AIMET's grids
# have the rank of their tensor, which is 4 or less in practice; and the axes 2.x per-channel
# entries may give, -32..31.
_MAX_RANK = 32
# 0.6.1 `min` / `max` must equal scale × offset and scale × (offset + 2^b - 1) within this
# fraction of the larger of the two: float32 and double products differ by ~1e-7, while an
# offset or scale that disagrees by one step in 10^5 already describes another grid.
MINMAX_RTOL = 1e-5
# quantizer_args (kept and written back): at most this deep (AIMET writes a flat object).
_MAX_METADATA_DEPTH = 8
# A float32 product overflows when the exact value reaches FLT_MAX plus half its last unit.
_FLOAT32_OVERFLOW = 2.0**128 - 2.0**103
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def read(path: PathLike, version: Optional[str] = None) -> EncodingFile:
    """Read an encodings file; its version is taken from the file unless `version` forces one.

    >>> read("model.encodings").params[0].scale  # doctest: +SKIP
    """
    text = read_utf8(path, ReadError, FormatError)
    return loads(text, version, source=os.fspath(path))


def loads(text: str, version: Optional[str] = None, *, source: str = "<string>") -> EncodingFile:
    """Parse the text of an encodings file; `source` names it in error messages."""
    return from_dict(parse_json(text, source), version, source=source)


def parse_json(text: str, source: str = "<string>") -> Any:
    """The JSON value of an encodings file's text, strict (no duplicate keys, bounded
    nesting); FormatError naming `source` otherwise."""
    try:
        obj = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise FormatError(
            f"{source}: not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})"
        ) from None
    except _DuplicateKey as e:
        raise FormatError(
            f"{source}: key {quote(e.args[0])} appears twice in one JSON object"
        ) from None
    except RecursionError:
        raise FormatError(
            f"{source}: not valid JSON: arrays or objects nested deeper than qcalc reads"
        ) from None
    except ValueError:  # an integer of more digits than Python converts
        raise FormatError(
            f"{source}: not valid JSON: an integer has more than "
            f"{sys.get_int_max_str_digits()} digits"
        ) from None
    return obj


def from_dict(obj: Any, version: Optional[str] = None, *, source: str = "<dict>") -> EncodingFile:
    """An already-parsed encodings file (a dict) to an EncodingFile."""
    where = _Where(source)
    if not isinstance(obj, dict):
        raise FormatError(f"{source}: top level is {_a(obj)}, expected an object")
    if version is None:
        version = where.get(obj, "version", str)
        if version not in VERSIONS:
            where.fail("version", f"is {quote(version)}, expected one of {', '.join(VERSIONS)}")
    else:
        check_version(version)
    if version in LEGACY_VERSIONS:
        file = _read_legacy(where, obj, version)
    else:
        file = _read_2(where, obj, version)
    seen: set[str] = set()
    for enc in file.encodings:
        if enc.name in seen:
            raise FormatError(f"{source}: tensor {quote(enc.name)} appears more than once")
        seen.add(enc.name)
    return file


# --- validation helpers ------------------------------------------------------------------


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return result


_TYPE_NAMES = {
    bool: "a boolean", int: "an integer", float: "a number", str: "a string",
    list: "an array", dict: "an object", type(None): "null",
}  # fmt: skip


def _a(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _shown(value: Any) -> str:
    """A JSON value in a message: strings quoted, numbers in full, containers by their type."""
    if isinstance(value, str):
        return quote(value, '"')
    if isinstance(value, (bool, int, float)):
        return number(value)
    if value is None:
        return "null"
    return _a(value)


def _is(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _index(at: Sequence[int]) -> str:
    return str(at[0]) if len(at) == 1 else "[" + ", ".join(map(str, at)) + "]"


class _Where:
    """The file, tensor and channel an error message names."""

    def __init__(self, source: str, tensor: Optional[str] = None, channel: Optional[int] = None):
        self.source, self.tensor, self.channel = source, tensor, channel

    def at(self, tensor: Optional[str] = None, channel: Optional[int] = None) -> "_Where":
        return _Where(self.source, tensor if tensor is not None else self.tensor, channel)

    def fail(self, field: str, problem: str) -> NoReturn:
        parts = [self.source]
        if self.tensor is not None:
            parts.append(f"tensor {quote(self.tensor)}")
        if self.channel is not None:
            parts.append(f"channel {self.channel}")
        raise FormatError(": ".join(parts) + f": field {quote(field)} {problem}")

    def get(self, obj: dict, key: str, kind: type, default: Any = ...) -> Any:
        if key not in obj:
            if default is not ...:
                return default
            self.fail(key, "is missing")
        value = obj[key]
        if not _is(value, kind):
            self.fail(key, f"is {_a(value)}, expected {_TYPE_NAMES[kind]}")
        return value

    def items(self, obj: dict, key: str, kind: type) -> list:
        """A non-empty array of `kind`."""
        values = self.get(obj, key, list)
        if not values:
            self.fail(key, "is empty")
        for i, value in enumerate(values):
            if not _is(value, kind):
                self.fail(key, f"item {i} is {_a(value)}, expected {_TYPE_NAMES[kind]}")
        return values

    def nested(self, obj: dict, key: str, kind: type) -> tuple[list, tuple[int, ...]]:
        """A non-empty rectangular array of `kind`, nested to any depth: (flat values, shape)."""
        value = self.get(obj, key, list)
        shape: list[int] = []
        probe: Any = value
        while isinstance(probe, list):
            if not probe:
                self.fail(key, "is empty" if not shape else "holds an empty array")
            if len(shape) == _MAX_RANK:
                self.fail(key, f"nests deeper than {_MAX_RANK} levels")
            shape.append(len(probe))
            probe = probe[0]
        flat: list = []
        self._walk(key, kind, value, tuple(shape), (), flat)
        return flat, tuple(shape)

    def _walk(self, key: str, kind: type, value: Any, shape: tuple, at: tuple, flat: list) -> None:
        depth = len(at)
        if depth == len(shape):
            if not _is(value, kind):
                self.fail(key, f"item {_index(at)} is {_a(value)}, expected {_TYPE_NAMES[kind]}")
            flat.append(value)
            return
        if not isinstance(value, list) or len(value) != shape[depth]:
            what = f"an array of {len(value)}" if isinstance(value, list) else _a(value)
            self.fail(
                key,
                f"is not rectangular: item {_index(at)} is {what}, expected an array of "
                f"{shape[depth]}",
            )
        if depth + 1 == len(shape):  # the innermost arrays: check their items in one pass
            for i, item in enumerate(value):
                if not _is(item, kind):
                    self.fail(
                        key,
                        f"item {_index(at + (i,))} is {_a(item)}, expected {_TYPE_NAMES[kind]}",
                    )
            flat.extend(value)
            return
        for i, item in enumerate(value):
            self._walk(key, kind, item, shape, at + (i,), flat)

    def bitwidth(self, field: str, value: int) -> int:
        if not MIN_BITWIDTH <= value <= MAX_BITWIDTH:
            self.fail(field, f"is {number(value)}, expected {MIN_BITWIDTH} to {MAX_BITWIDTH}")
        return value

    def lengths(self, field: str, values: list, scales: list, scale_field: str) -> None:
        if len(values) != len(scales):
            self.fail(field, f"has {len(values)} values but '{scale_field}' has {len(scales)}")


def _integer_only(where: _Where, field: str, value: str) -> NoReturn:
    where.fail(field, f"is {quote(value)}; qcalc reads integer encodings only")


# How an error names item i of a field's values: "item 3 ", "item [1, 2] ", or "" for a scalar.
_Item = Callable[[int], str]


def _items_of(shape: Optional[tuple[int, ...]]) -> _Item:
    if shape is None:
        return lambda i: ""
    if len(shape) <= 1:
        return lambda i: f"item {i} "
    return lambda i: f"item {_index([int(n) for n in np.unravel_index(i, shape)])} "


def _float(value: Any) -> float:
    """A JSON number as a float (integers beyond float's range become ±inf)."""
    if isinstance(value, float) or abs(value) < 2**1000:
        return float(value)
    return math.inf if value > 0 else -math.inf


def _floats(values: list) -> np.ndarray:
    """JSON numbers as float64 (integers beyond float64's range become ±inf)."""
    try:
        return np.array(values, dtype=np.float64)
    except OverflowError:
        return np.array([_float(v) for v in values], dtype=np.float64)


def _good_scale(value: Any, steps: int) -> Optional[float]:
    """`value` as a float32 value (a float) when it is a good scale for `steps` steps (see
    `_scales`), else None; plain Python, for the many one-value fields."""
    f = _float(value)
    if 0 < f <= _FLOAT32_MAX:
        s32 = float(np.float32(f))
        if s32 > 0 and s32 * float(np.float32(steps)) < _FLOAT32_OVERFLOW:
            return s32
    return None


def _scale(at: _Where, field: str, value: Any, steps: int) -> float:
    """A scalar field's scale, checked as `_scales` checks them, as a float (a float32 value)."""
    good = _good_scale(value, steps)
    return good if good is not None else float(_scales(at, field, [value], steps))


def _scales(
    at: _Where, field: str, values: list, steps: int, shape: Optional[tuple[int, ...]] = None
) -> np.ndarray:
    """The float32 scales (shaped `shape`, 0-d when None: a scalar field) of a grid of `steps`
    steps: each finite and > 0 in float32, with scale × steps finite in float32 (so is the
    grid's range)."""
    if len(values) == 1 and (good := _good_scale(values[0], steps)) is not None:
        return np.array(good, dtype=np.float32).reshape(shape or ())
    scales64 = _floats(values)
    with np.errstate(over="ignore"):
        scales = scales64.astype(np.float32)
        ok = (scales > 0) & np.isfinite(scales * np.float32(steps))
    if not ok.all():
        i = int(np.argmin(ok))
        shown, item = number(values[i]), _items_of(shape)(i)
        if not (math.isfinite(scales64[i]) and scales64[i] > 0):
            at.fail(field, f"{item}is {shown}, expected a finite number > 0")
        if scales[i] == 0:
            at.fail(field, f"{item}is {shown}, which is 0 in float32 (expected a scale > 0)")
        at.fail(
            field,
            f"{item}is {shown}: the grid's {steps} steps of it overflow float32 (expected "
            f"at most {_FLOAT32_MAX / steps:.4g})",
        )
    return scales.reshape(shape or ())


def _in_range(
    at: _Where, field: str, values: list, lo: int, hi: int, what: str,
    shape: Optional[tuple[int, ...]] = None,
) -> None:  # fmt: skip
    """Every one of the integers `values` from `lo` to `hi` (`what` says why)."""
    if lo <= min(values) and max(values) <= hi:
        return
    i = next(i for i, v in enumerate(values) if not lo <= v <= hi)
    at.fail(field, f"{_items_of(shape)(i)}is {number(values[i])}, expected {lo} to {hi} ({what})")


def _float32(values: list, shape: tuple[int, ...]) -> np.ndarray:
    """Integers (offsets) as float32, shaped."""
    return np.array(values, dtype=np.float64).astype(np.float32).reshape(shape)


def _name(where: _Where, name: str, context: str) -> str:
    """A tensor name: any string that is Unicode text (JSON can spell lone surrogates, which
    no terminal or file encoding takes); `context` says where the name is."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError(
            f"{where.source}: {context}: the name {quote(name)} is not Unicode text "
            f"(it holds a lone surrogate)"
        ) from None
    return name


def _metadata(where: _Where, field: str, value: Any, depth: int = 0) -> None:
    """Metadata kept and written back (quantizer_args): JSON values nested at most
    _MAX_METADATA_DEPTH deep, numbers finite, keys strings."""
    if isinstance(value, float) and not math.isfinite(value):
        where.fail(field, f"is {number(value)}, expected a finite number")
    if isinstance(value, (list, dict)):
        if depth >= _MAX_METADATA_DEPTH:
            where.fail(field, f"nests deeper than {_MAX_METADATA_DEPTH} levels")
        pairs = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in pairs:
            if not isinstance(key, (str, int)):
                where.fail(field, f"has the key {_a(key)}, expected a string")
            sub = f"{field}.{key}" if isinstance(value, dict) else f"{field}[{key}]"
            _metadata(where, sub, item, depth + 1)
    elif not isinstance(value, (str, int, float, bool, type(None))):
        where.fail(field, f"is {_a(value)}, expected a JSON value")


# --- building the Encoding ---------------------------------------------------------------


@dataclass(frozen=True)
class _Blocks:
    """What a per-block or LPBQ entry says beyond scale and offset."""

    size: int
    axis: Optional[int]  # the block axis (non-negative); None when the file does not say
    per_channel_scale: Optional[np.ndarray] = None  # LPBQ: float32, 1 at the block axis
    per_block_int_scale: Optional[np.ndarray] = None  # LPBQ: float32 integers, the grid's shape
    decompressed_bitwidth: Optional[int] = None

    @property
    def lpbq(self) -> bool:
        return self.per_block_int_scale is not None


@functools.lru_cache(maxsize=1024)
def _spec(
    bitwidth: int,
    symmetric: bool,
    signed: bool,
    zero_mode: bool,
    per_channel: bool,
    axis: int,
    block_size: Optional[int] = None,
    block_axis: int = -1,
    lpbq: bool = False,
    decompressed: int = 8,
) -> Spec:
    """The Spec of an entry's grid (Specs are immutable: one per distinct grid in a file)."""
    return Spec(
        bitwidth=bitwidth,
        symmetric=symmetric,
        signed=signed,
        symmetric_offset="zero" if zero_mode else "centered",
        per_channel=per_channel,
        axis=axis,
        block_size=block_size,
        block_axis=block_axis,
        lpbq=lpbq,
        decompressed_bitwidth=decompressed,
    )


@dataclass(frozen=True)
class _Pending:
    """An entry read and checked, waiting for its Encoding (`_build`)."""

    name: str
    spec: Spec
    granularity: str
    scale: Any  # float32 array shaped like the grid; a Python float for a per-tensor entry
    offset: Any  # float32 array of that shape; a Python int for a per-tensor entry
    axis: Optional[int]
    fields: dict[str, Any]  # the block fields


def _encoding(
    where: _Where,
    name: str,
    bitwidth: int,
    signed: bool,
    symmetric: bool,
    scale: Any,
    offset: Any,
    axis: Optional[int],
    blocks: Optional[_Blocks] = None,
) -> _Pending:
    """The encoding of float32 `scale` and `offset` arrays of one shape (or, per tensor, a
    float and an int), checked already."""
    per_channel = isinstance(scale, np.ndarray) and scale.ndim > 0
    zero = not offset.any() if isinstance(offset, np.ndarray) else offset == 0
    zero_mode = symmetric and not signed and zero  # offsets 0 on an unsigned grid: not centred
    granularity = "per-channel" if per_channel else "per-tensor"
    block_fields: dict[str, Any] = {}
    spec_fields: tuple = ()
    if blocks is not None:
        granularity = "lpbq" if blocks.lpbq else "per-block"
        block_fields = {"block_size": blocks.size, "block_axis": blocks.axis}
        block_axis = blocks.axis if blocks.axis is not None else -1
        spec_fields = (blocks.size, block_axis)
        if blocks.lpbq:
            block_fields.update(
                per_channel_scale=blocks.per_channel_scale,
                per_block_int_scale=blocks.per_block_int_scale,
                decompressed_bitwidth=blocks.decompressed_bitwidth,
            )
            spec_fields += (True, blocks.decompressed_bitwidth)
    try:
        spec = _spec(bitwidth, symmetric, signed, zero_mode, per_channel, axis or 0, *spec_fields)
    except SpecError as error:  # every bound is checked before; a safety net
        raise FormatError(f"{where.source}: tensor {quote(name)}: {error}") from None
    return _Pending(name, spec, granularity, scale, offset, axis, block_fields)


def _build(source: str, pending: Sequence[_Pending]) -> list[Encoding]:
    """The Encodings of `pending` entries, each as Encoding.on_grid builds it (min, max and the
    raw range are grid.effective_range of its scale and offset), but with one effective_range
    call per integer grid instead of one per entry: per entry, that call (and the float32
    arrays of one value each) took most of the time a file of many small entries took."""
    scales = [p.scale for p in pending]
    offsets = [p.offset for p in pending]
    scalars = [i for i, p in enumerate(pending) if not isinstance(p.scale, np.ndarray)]
    if scalars:  # per-tensor entries: their 0-d arrays are views of two arrays
        scale32 = np.array([scales[i] for i in scalars], dtype=np.float32)
        offset32 = np.array([offsets[i] for i in scalars], dtype=np.float64).astype(np.float32)
        for j, i in enumerate(scalars):
            scales[i], offsets[i] = scale32[j, ...], offset32[j, ...]
    groups: dict[tuple[int, int], list[int]] = {}
    for i, p in enumerate(pending):
        groups.setdefault(p.spec.int_range, []).append(i)
    ranges: list[Any] = [None] * len(pending)
    for (qmin, qmax), members in groups.items():
        low, high = grid.effective_range(
            np.concatenate([scales[i].ravel() for i in members]),
            np.concatenate([offsets[i].ravel() for i in members]),
            qmin,
            qmax,
        )
        start = 0
        for i in members:
            size, shape = scales[i].size, scales[i].shape
            ranges[i] = (qmin, qmax, low[start : start + size].reshape(shape),
                         high[start : start + size].reshape(shape))  # fmt: skip
            start += size
    encodings = []
    for i, p in enumerate(pending):
        qmin, qmax, low, high = ranges[i]
        encodings.append(
            Encoding(
                name=p.name,
                source=source,
                dtype=None,
                shape=None,
                spec=p.spec,
                granularity=p.granularity,
                axis=p.axis,
                qmin=qmin,
                qmax=qmax,
                scale=scales[i],
                offset=offsets[i],
                min=low,
                max=high,
                raw_min=low,
                raw_max=high,
                **p.fields,
            )  # fmt: skip
        )
    return encodings


def _lpbq_encoding(
    where: _Where,
    name: str,
    bitwidth: int,
    multipliers: np.ndarray,
    per_channel: np.ndarray,
    axis: Optional[int],
    block_axis: int,
    block_size: int,
    decompressed: int,
    scale_field: str,
) -> _Pending:
    """An LPBQ grid: scale = multiplier * per-channel scale (float32), offset 0, signed; the
    per-channel scales were checked > 0, the products are checked here (`scale_field` holds
    the per-channel scales)."""
    multipliers = multipliers.astype(np.float32)
    steps = 2**bitwidth - 1
    with np.errstate(over="ignore"):
        scale = (multipliers * per_channel).astype(np.float32)
        ok = np.isfinite(scale * np.float32(steps))
    if not ok.all():
        cell = np.unravel_index(int(np.argmin(ok)), scale.shape)
        channel = tuple(0 if i == block_axis else int(n) for i, n in enumerate(cell))
        value = float(per_channel[channel])
        where.fail(
            scale_field,
            f"holds {number(value)}: times the multiplier {int(multipliers[cell])} and the "
            f"grid's {steps} steps it overflows float32",
        )
    blocks = _Blocks(block_size, block_axis, per_channel, multipliers, decompressed)
    zeros = np.zeros(scale.shape, dtype=np.float32)
    return _encoding(where, name, bitwidth, True, True, scale, zeros, axis, blocks)


def _block_size(where: _Where, entry: dict) -> int:
    size = where.get(entry, "block_size", int)
    if not 1 <= size <= MAX_BLOCK_SIZE:
        where.fail(
            "block_size",
            f"is {number(size)}, expected at least 1" if size < 1
            else f"is {number(size)}, expected at most {MAX_BLOCK_SIZE}",
        )  # fmt: skip
    return size


def _multipliers(
    where: _Where, field: str, values: list, shape: tuple[int, ...], limit: int
) -> np.ndarray:
    """LPBQ integer multipliers: each at least 1 and at most `limit` (2^(dbw - bw))."""
    if not (1 <= min(values) and max(values) <= limit):
        i = next(i for i, v in enumerate(values) if not 1 <= v <= limit)
        at = tuple(int(n) for n in np.unravel_index(i, shape))
        where.fail(field, f"item {_index(at)} is {number(values[i])}, expected 1 to {limit}")
    return np.asarray(values, dtype=np.int64).reshape(shape)


# --- 0.6.1 and 1.0.0 ---------------------------------------------------------------------


def _read_legacy(where: _Where, obj: dict, version: str) -> EncodingFile:
    kind = dict if version == "0.6.1" else list
    sections = {}
    for key in ("activation_encodings", "param_encodings"):
        section = where.get(obj, key, kind)
        if version == "0.6.1":
            sections[key] = [
                _read_0_6_1(where.at(_name(where, name, f"field '{key}'")), name, cells)
                for name, cells in section.items()
            ]
        else:
            sections[key] = [_read_1_0_0(where, entry, key, i) for i, entry in enumerate(section)]
    excluded = where.get(obj, "excluded_layers", list, default=[])
    for i, layer in enumerate(excluded):
        if not isinstance(layer, str):
            where.fail("excluded_layers", f"item {i} is {_a(layer)}, expected a string")
    args = where.get(obj, "quantizer_args", dict, default=None)
    if args is not None:
        _metadata(where, "quantizer_args", args)
    activations = sections["activation_encodings"]
    built = _build(where.source, [*activations, *sections["param_encodings"]])
    return EncodingFile(
        params=built[len(activations) :],
        activations=built[: len(activations)],
        version=version,
        quantizer_args=args,
        excluded_layers=excluded,
    )


def _legacy_offsets(
    fail: Callable[[int, str, str], NoReturn],
    bitwidth: int,
    symmetric: bool,
    offsets: list,
    sym_field: str,
) -> None:
    """0.6.1 / 1.0.0 offsets (unsigned convention) on the grid: -(2^b - 1) to 0; a symmetric
    entry's all -2^(b-1) (the grid centre, signed or unsigned) or all 0 (unsigned, offset 0).
    `fail(i, field, problem)` raises naming item (channel) i."""
    lowest = -(2**bitwidth - 1)
    if not (lowest <= min(offsets) and max(offsets) <= 0):
        i = next(i for i, v in enumerate(offsets) if not lowest <= v <= 0)
        fail(
            i, "offset",
            f"is {number(offsets[i])}, expected {lowest} to 0 (the {bitwidth}-bit grid, "
            f"unsigned convention)",
        )  # fmt: skip
    if not symmetric:
        return
    centre = -(2 ** (bitwidth - 1))
    first = offsets[0]
    if first not in (centre, 0):
        fail(
            0, "offset",
            f"is {first}, but {sym_field} says symmetric: expected {centre} (the grid centre) "
            f"or 0",
        )  # fmt: skip
    if any(o != first for o in offsets):
        i = next(i for i, o in enumerate(offsets) if o != first)
        fail(
            i, "offset",
            f"is {number(offsets[i])}, but {sym_field} says symmetric and the first offset is "
            f"{first}: a symmetric entry's offsets are all {centre} or all 0",
        )  # fmt: skip


def _read_0_6_1(where: _Where, name: str, cells: Any) -> _Pending:
    if not isinstance(cells, list):
        raise FormatError(
            f"{where.source}: tensor {quote(name)}: is {_a(cells)}, expected an array of encodings"
        )
    if not cells:
        raise FormatError(f"{where.source}: tensor {quote(name)}: has no encodings")
    rows = []
    for i, cell in enumerate(cells):
        at = where.at(channel=i if len(cells) > 1 else None)
        if not isinstance(cell, dict):
            raise FormatError(
                f"{where.source}: tensor {quote(name)}: item {i} is {_a(cell)}, expected an object"
            )
        dtype = at.get(cell, "dtype", str, default="int")
        if dtype != "int":
            _integer_only(at, "dtype", dtype)
        bitwidth = at.bitwidth("bitwidth", at.get(cell, "bitwidth", int))
        if "is_symmetric" not in cell:
            at.fail("is_symmetric", "is missing")
        symmetric = cell["is_symmetric"]
        if symmetric not in ("True", "False") and not isinstance(symmetric, bool):
            at.fail("is_symmetric", f'is {_shown(symmetric)}, expected "True" or "False"')
        steps = 2**bitwidth - 1
        scale = _scale(at, "scale", at.get(cell, "scale", float), steps)
        offset = at.get(cell, "offset", int)
        if not -steps <= offset <= 0:
            at.fail(
                "offset",
                f"is {number(offset)}, expected {-steps} to 0 (the {bitwidth}-bit grid, "
                f"unsigned convention)",
            )
        for field, expected in (("min", offset), ("max", offset + steps)):
            if field in cell:
                _range_agrees(at, field, at.get(cell, field, float), scale, offset, expected, steps)
        rows.append((bitwidth, symmetric in ("True", True), scale, offset))
    for field, column in (("bitwidth", 0), ("is_symmetric", 1)):
        for i, row in enumerate(rows):
            if row[column] != rows[0][column]:
                where.fail(
                    field, f"is {row[column]} in channel {i} but {rows[0][column]} in channel 0"
                )
    bitwidth, symmetric = rows[0][0], rows[0][1]

    def fail(i: int, field: str, problem: str) -> NoReturn:
        where.at(channel=i if len(rows) > 1 else None).fail(field, problem)

    offsets = [r[3] for r in rows]
    _legacy_offsets(fail, bitwidth, symmetric, offsets, "'is_symmetric'")
    signed, offsets = _legacy_grid(bitwidth, symmetric, offsets)
    if len(rows) == 1:
        return _encoding(where, name, bitwidth, signed, symmetric, rows[0][2], offsets[0], None)
    scale = np.array([r[2] for r in rows], dtype=np.float32)
    offset = _float32(offsets, (len(rows),))
    return _encoding(where, name, bitwidth, signed, symmetric, scale, offset, None)


def _range_agrees(
    at: _Where, field: str, value: float, scale: float, offset: int, levels: int, steps: int
) -> None:
    """0.6.1 `min` (`levels` = offset) or `max` (offset + 2^b - 1): scale × levels, within a
    relative MINMAX_RTOL of the grid's largest magnitude."""
    s = float(scale)
    expected = s * levels
    tolerance = MINMAX_RTOL * s * max(abs(offset), abs(offset + steps))
    if not abs(_float(value) - expected) <= tolerance:  # NaN and infinity fail too
        formula = "scale × offset" if field == "min" else f"scale × (offset + {steps})"
        at.fail(
            field,
            f"is {number(value)}, but 'scale' {number(s)} and 'offset' {offset} give "
            f"{float(np.float32(expected))!r} ({formula}; they must agree within a relative "
            f"{MINMAX_RTOL:g})",
        )


def _legacy_grid(bitwidth: int, symmetric: bool, offsets: list) -> tuple[bool, list]:
    """Signedness of a 0.6.1 / 1.0.0 entry, which these versions do not record.

    Offsets are stored in the unsigned convention, so both readings give the same float grid.
    A symmetric entry centred at -2^(b-1) is read as the signed symmetric grid (offset 0), as
    AIMET's symmetric weights are, and converts to int<b> in 2.x; anything else as unsigned.
    """
    centre = -(2 ** (bitwidth - 1))
    if symmetric and all(o == centre for o in offsets):
        return True, [0] * len(offsets)
    return False, offsets


def _named_entry(where: _Where, entry: Any, section: str, index: int) -> tuple[str, _Where]:
    """The name of item `index` of a list of named entries, and where errors in it point."""
    if not isinstance(entry, dict):
        raise FormatError(
            f"{where.source}: field '{section}' item {index} is {_a(entry)}, expected an object"
        )
    if "name" not in entry:
        raise FormatError(
            f"{where.source}: field '{section}' item {index}: field 'name' is missing"
        )
    name = where.get(entry, "name", str)
    return _name(where, name, f"field '{section}' item {index}"), where.at(name)


def _read_1_0_0(where: _Where, entry: Any, section: str, index: int) -> _Pending:
    name, at = _named_entry(where, entry, section, index)
    dtype = at.get(entry, "dtype", str)
    if dtype != "INT":
        if dtype == "FLOAT":
            _integer_only(at, "dtype", dtype)
        at.fail("dtype", f"is {quote(dtype)}, expected 'INT' or 'FLOAT'")
    enc_type = at.get(entry, "enc_type", str)
    if enc_type == "VECTOR":
        at.fail("enc_type", "is 'VECTOR'; vector encodings are not supported")
    if enc_type not in _ENC_TYPES:
        at.fail(
            "enc_type",
            f"is {quote(enc_type)}, expected 'PER_TENSOR', 'PER_CHANNEL', 'PER_BLOCK' or 'LPBQ'",
        )
    if enc_type == "LPBQ":
        return _read_1_0_0_lpbq(at, name, entry)
    bitwidth = at.bitwidth("bw", at.get(entry, "bw", int))
    symmetric = at.get(entry, "is_sym", bool)
    scale = at.items(entry, "scale", float)
    offset = at.items(entry, "offset", int)
    at.lengths("offset", offset, scale, "scale")
    blocks = None
    if enc_type == "PER_TENSOR":
        if len(scale) != 1:
            at.fail("scale", f"has {len(scale)} values but 'enc_type' is PER_TENSOR")
        shape: tuple[int, ...] = ()
    else:
        shape = (len(scale),)
        if enc_type == "PER_BLOCK":
            blocks = _Blocks(_block_size(at, entry), None)
    scales = _scales(at, "scale", scale, 2**bitwidth - 1, (len(scale),)).reshape(shape)

    def fail(i: int, field: str, problem: str) -> NoReturn:
        at.fail(field, f"item {i} {problem}")

    _legacy_offsets(fail, bitwidth, symmetric, offset, "'is_sym'")
    signed, offset = _legacy_grid(bitwidth, symmetric, offset)
    if not shape:
        return _encoding(at, name, bitwidth, signed, symmetric, float(scales), offset[0], None)
    offsets = _float32(offset, shape)
    return _encoding(at, name, bitwidth, signed, symmetric, scales, offsets, None, blocks)


def _read_1_0_0_lpbq(at: _Where, name: str, entry: dict) -> _Pending:
    """`bw` is the decompressed bitwidth, `scale` the C per-channel scales on the decompressed
    symmetric grid, `per_block_int_scale` the C*K/B multipliers, channel by channel."""
    decompressed = at.bitwidth("bw", at.get(entry, "bw", int))
    bitwidth = at.bitwidth("compressed_bw", at.get(entry, "compressed_bw", int))
    if bitwidth > decompressed:
        at.fail("compressed_bw", f"is {bitwidth}, more than 'bw' {decompressed}")
    if not at.get(entry, "is_sym", bool):
        at.fail("is_sym", "is false, but LPBQ grids are symmetric")
    per_channel = at.items(entry, "scale", float)
    offset = at.items(entry, "offset", int)
    at.lengths("offset", offset, per_channel, "scale")
    centre = -(2 ** (decompressed - 1))
    for i, value in enumerate(offset):
        if value != centre:
            at.fail(
                "offset",
                f"item {i} is {number(value)}, expected {centre} (LPBQ grids are symmetric)",
            )
    block_size = _block_size(at, entry)
    values = at.items(entry, "per_block_int_scale", int)
    channels = len(per_channel)
    if len(values) % channels:
        at.fail(
            "per_block_int_scale",
            f"has {len(values)} values, not a multiple of the {channels} channels in 'scale'",
        )
    limit = 2 ** (decompressed - bitwidth)
    multipliers = _multipliers(at, "per_block_int_scale", values, (len(values),), limit)
    shape = (channels, len(values) // channels)
    pcs = _scales(at, "scale", per_channel, 2**bitwidth - 1, (channels,)).reshape(channels, 1)
    return _lpbq_encoding(
        at, name, bitwidth, multipliers.reshape(shape), pcs, 0, 1, block_size, decompressed,
        "scale",
    )  # fmt: skip


# --- 2.0.0 and 2.1.0 ---------------------------------------------------------------------


def _read_2(where: _Where, obj: dict, version: str) -> EncodingFile:
    entries = where.get(obj, "encodings", list)
    roles: dict[Kind, list[_Pending]] = {"activation": [], "param": []}
    role: Kind = "activation"
    for i, entry in enumerate(entries):
        enc, axis = _read_2_entry(where, entry, i)
        if axis is not None:
            role = "param" if axis >= 0 else "activation"
        roles[role].append(enc)
    activations = roles["activation"]
    built = _build(where.source, [*activations, *roles["param"]])
    return EncodingFile(
        params=built[len(activations) :], activations=built[: len(activations)], version=version
    )


def _zero_points(
    at: _Where, field: str, values: list, bitwidth: int, signed: bool,
    shape: Optional[tuple[int, ...]] = None,
) -> np.ndarray:  # fmt: skip
    """2.x zero points, from qmin to qmax of the grid: the offsets (-zero point), float32."""
    qmin, qmax = integer_range(bitwidth, signed)
    kind = f"{'' if signed else 'u'}int{bitwidth}"
    _in_range(at, field, values, qmin, qmax, f"the {kind} grid", shape)
    return -_float32(values, (len(values),))


def _read_2_entry(where: _Where, entry: Any, index: int) -> tuple[_Pending, Optional[int]]:
    name, at = _named_entry(where, entry, "encodings", index)
    dtype = at.get(entry, "output_dtype", str)
    match = _INT_DTYPE.fullmatch(dtype)
    if match is None:
        if dtype.startswith(("float", "bfloat")):
            _integer_only(at, "output_dtype", dtype)
        at.fail("output_dtype", f"is {quote(dtype)}, expected int<bits> or uint<bits>")
    signed, bitwidth = match.group(1) == "", int(match.group(2))
    if not MIN_BITWIDTH <= bitwidth <= MAX_BITWIDTH:
        at.fail(
            "output_dtype",
            f"is {quote(dtype)}, expected {MIN_BITWIDTH} to {MAX_BITWIDTH} bits",
        )
    if (
        "per_block_int_scale" in entry
        or "per_channel_float_scale" in entry
        or isinstance(entry.get("y_scale"), dict)
    ):
        if not signed:
            at.fail("output_dtype", f"is {quote(dtype)}, but LPBQ grids are signed (int<bits>)")
        return _read_2_lpbq(at, name, entry, bitwidth)
    if "block_size" in entry:
        return _read_2_blocks(at, name, entry, signed, bitwidth)
    if "y_scale" not in entry:
        at.fail("y_scale", "is missing")
    steps = 2**bitwidth - 1
    if isinstance(entry["y_scale"], list):
        scale = at.items(entry, "y_scale", float)
        zero_point = (
            at.items(entry, "y_zero_point", int) if "y_zero_point" in entry else [0] * len(scale)
        )
        at.lengths("y_zero_point", zero_point, scale, "y_scale")
        axis = at.get(entry, "axis", int)
        if not -_MAX_RANK <= axis < _MAX_RANK:
            at.fail("axis", f"is {number(axis)}, expected {-_MAX_RANK} to {_MAX_RANK - 1}")
        shape = (1,) * axis + (len(scale),) if axis >= 0 else (len(scale),) + (1,) * (-axis - 1)
        channel = axis if axis >= 0 else 0
        flat = (len(scale),)
    else:  # per-tensor: the common case (every activation), kept to plain Python
        scale = at.get(entry, "y_scale", float)
        zero_point = at.get(entry, "y_zero_point", int, default=0)
        qmin, qmax = integer_range(bitwidth, signed)
        if not qmin <= zero_point <= qmax:
            _zero_points(at, "y_zero_point", [zero_point], bitwidth, signed)
        symmetric = -zero_point == centre_offset(qmin, qmax)
        value = _scale(at, "y_scale", scale, steps)
        return _encoding(at, name, bitwidth, signed, symmetric, value, -zero_point, None), None
    scales = _scales(at, "y_scale", scale, steps, flat).reshape(shape)
    offset = _zero_points(at, "y_zero_point", zero_point, bitwidth, signed, flat).reshape(shape)
    qmin, qmax = integer_range(bitwidth, signed)
    symmetric = bool((offset == centre_offset(qmin, qmax)).all())
    enc = _encoding(at, name, bitwidth, signed, symmetric, scales, offset, channel)
    return enc, axis


def _block_axis(at: _Where, entry: dict, ndim: int, shape_field: str) -> tuple[int, int]:
    """The entry's `axis` (the block axis) as written, and non-negative."""
    axis = at.get(entry, "axis", int)
    if not -ndim <= axis < ndim:
        at.fail(
            "axis",
            f"is {number(axis)}, expected {-ndim} to {ndim - 1} (the rank of '{shape_field}')",
        )
    return axis, axis % ndim


def _channel_axis(at: _Where, shape: tuple[int, ...], block_axis: int, field: str) -> Optional[int]:
    try:
        return blockwise_channel_axis(shape, block_axis)
    except FormatError as e:
        at.fail(field, f"has shape {list(shape)}: {e}")


def _read_2_blocks(
    at: _Where, name: str, entry: dict, signed: bool, bitwidth: int
) -> tuple[_Pending, Optional[int]]:
    """A per-block entry: `y_scale` (and `y_zero_point`) nested in the grid's shape."""
    scale, shape = at.nested(entry, "y_scale", float)
    if "y_zero_point" in entry:
        zero_point, zero_shape = at.nested(entry, "y_zero_point", int)
        if zero_shape != shape:
            at.fail(
                "y_zero_point",
                f"has shape {list(zero_shape)} but 'y_scale' has shape {list(shape)}",
            )
    else:
        zero_point = [0] * len(scale)
    axis, block_axis = _block_axis(at, entry, len(shape), "y_scale")
    blocks = _Blocks(_block_size(at, entry), block_axis)
    channel = _channel_axis(at, shape, block_axis, "y_scale")
    scales = _scales(at, "y_scale", scale, 2**bitwidth - 1, shape)
    offset = _zero_points(at, "y_zero_point", zero_point, bitwidth, signed, shape).reshape(shape)
    qmin, qmax = integer_range(bitwidth, signed)
    symmetric = bool((offset == centre_offset(qmin, qmax)).all())
    enc = _encoding(at, name, bitwidth, signed, symmetric, scales, offset, channel, blocks)
    return enc, axis


def _read_2_lpbq(
    at: _Where, name: str, entry: dict, bitwidth: int
) -> tuple[_Pending, Optional[int]]:
    """2.0.0: `per_block_int_scale` nested in the grid's shape and `per_channel_float_scale`
    nested with 1 at the block axis; 2.1.0: `y_scale` {x, x_scale (flat), axis (channel)}."""
    limit = 2 ** (MAX_BITWIDTH - bitwidth)
    if isinstance(entry.get("y_scale"), dict):
        for key in ("per_block_int_scale", "per_channel_float_scale"):
            if key in entry:
                at.fail(key, "is present along with a 'y_scale' object")
        meta = {f"y_scale.{key}": value for key, value in entry["y_scale"].items()}
        values, shape = at.nested(meta, "y_scale.x", int)
        axis, block_axis = _block_axis(at, entry, len(shape), "y_scale.x")
        written = at.get(meta, "y_scale.axis", int)
        if not -len(shape) <= written < len(shape):
            at.fail(
                "y_scale.axis",
                f"is {number(written)}, expected {-len(shape)} to {len(shape) - 1} (the rank "
                f"of 'y_scale.x')",
            )
        channel = written % len(shape)
        if channel == block_axis:
            at.fail(
                "y_scale.axis", f"is {written}, the same axis as the block axis 'axis' ({axis})"
            )
        others = [i for i, n in enumerate(shape) if n > 1 and i not in (channel, block_axis)]
        if others:
            at.fail(
                "y_scale.x",
                f"has shape {list(shape)}: axis {others[0]} is neither the channel axis "
                f"'y_scale.axis' nor the block axis 'axis'",
            )
        per_channel = at.items(meta, "y_scale.x_scale", float)
        if len(per_channel) != shape[channel]:
            at.fail(
                "y_scale.x_scale",
                f"has {len(per_channel)} values but 'y_scale.x' has {shape[channel]} channels "
                f"(shape {list(shape)}, channel axis {channel})",
            )
        multipliers_field, scale_field = "y_scale.x", "y_scale.x_scale"
        scale_shape: tuple[int, ...] = (len(per_channel),)
    else:
        if "y_scale" in entry:
            at.fail("y_scale", "is present along with 'per_block_int_scale'")
        values, shape = at.nested(entry, "per_block_int_scale", int)
        axis, block_axis = _block_axis(at, entry, len(shape), "per_block_int_scale")
        per_channel, scale_shape = at.nested(entry, "per_channel_float_scale", float)
        expected = tuple(1 if i == block_axis else n for i, n in enumerate(shape))
        if scale_shape != expected:
            at.fail(
                "per_channel_float_scale",
                f"has shape {list(scale_shape)}, expected {list(expected)} "
                f"('per_block_int_scale' has shape {list(shape)}, block axis {block_axis})",
            )
        channel = _channel_axis(at, shape, block_axis, "per_block_int_scale")
        multipliers_field, scale_field = "per_block_int_scale", "per_channel_float_scale"
    if any(z != 0 for z in _flat_ints(at, entry, "y_zero_point")):
        at.fail("y_zero_point", "is not 0; LPBQ grids have zero offsets")
    multipliers = _multipliers(at, multipliers_field, values, shape, limit)
    channel_shape = tuple(1 if i == block_axis else n for i, n in enumerate(shape))
    pcs = _scales(at, scale_field, per_channel, 2**bitwidth - 1, scale_shape)
    pcs = pcs.reshape(channel_shape)
    decompressed = decompressed_bitwidth_of(bitwidth, multipliers)
    block_size = _block_size(at, entry)
    enc = _lpbq_encoding(
        at, name, bitwidth, multipliers, pcs, channel, block_axis, block_size, decompressed,
        scale_field,
    )  # fmt: skip
    return enc, axis


def _flat_ints(at: _Where, entry: dict, key: str) -> list:
    if key not in entry:
        return []
    if isinstance(entry[key], list):
        return at.nested(entry, key, int)[0]
    return [at.get(entry, key, int)]
