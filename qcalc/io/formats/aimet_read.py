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

Every malformed file raises FormatError with one line naming the file, tensor and field.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from typing import Any, NoReturn, Optional, Union

import numpy as np

from qcalc.core.encoding import Encoding
from qcalc.core.spec import MAX_BITWIDTH, MIN_BITWIDTH, Spec, centre_offset, integer_range
from qcalc.errors import ReadError
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
from qcalc.io.text import read_utf8

PathLike = Union[str, "os.PathLike[str]"]
_INT_DTYPE = re.compile(r"(u?)int(\d+)")
_ENC_TYPES = ("PER_TENSOR", "PER_CHANNEL", "PER_BLOCK", "LPBQ")
_MAX_RANK = 32


def read(path: PathLike, version: Optional[str] = None) -> EncodingFile:
    """Read an encodings file; its version is taken from the file unless `version` forces one.

    >>> read("model.encodings").params[0].scale  # doctest: +SKIP
    """
    text = read_utf8(path, ReadError, FormatError)
    return loads(text, version, source=os.fspath(path))


def loads(text: str, version: Optional[str] = None, *, source: str = "<string>") -> EncodingFile:
    """Parse the text of an encodings file; `source` names it in error messages."""
    try:
        obj = json.loads(text, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as e:
        raise FormatError(
            f"{source}: not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})"
        ) from None
    except _DuplicateKey as e:
        raise FormatError(f"{source}: key '{e.args[0]}' appears twice in one JSON object") from None
    return from_dict(obj, version, source=source)


def from_dict(obj: Any, version: Optional[str] = None, *, source: str = "<dict>") -> EncodingFile:
    """An already-parsed encodings file (a dict) to an EncodingFile."""
    where = _Where(source)
    if not isinstance(obj, dict):
        raise FormatError(f"{source}: top level is {_a(obj)}, expected an object")
    if version is None:
        version = where.get(obj, "version", str)
        if version not in VERSIONS:
            where.fail("version", f"is '{version}', expected one of {', '.join(VERSIONS)}")
    else:
        check_version(version)
    if version in LEGACY_VERSIONS:
        file = _read_legacy(where, obj, version)
    else:
        file = _read_2(where, obj, version)
    names = [enc.name for enc in file.encodings]
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise FormatError(f"{source}: tensor '{twice}' appears more than once")
    return file


# --- validation helpers ------------------------------------------------------------------


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


_TYPE_NAMES = {
    bool: "a boolean", int: "an integer", float: "a number", str: "a string",
    list: "an array", dict: "an object", type(None): "null",
}  # fmt: skip


def _a(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def _is(value: Any, kind: type) -> bool:
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


class _Where:
    """The file, tensor and channel an error message names."""

    def __init__(self, source: str, tensor: Optional[str] = None, channel: Optional[int] = None):
        self.source, self.tensor, self.channel = source, tensor, channel

    def at(self, tensor: Optional[str] = None, channel: Optional[int] = None) -> "_Where":
        return _Where(self.source, tensor if tensor is not None else self.tensor, channel)

    def fail(self, field: str, problem: str) -> NoReturn:
        parts = [self.source]
        if self.tensor is not None:
            parts.append(f"tensor '{self.tensor}'")
        if self.channel is not None:
            parts.append(f"channel {self.channel}")
        raise FormatError(": ".join(parts) + f": field '{field}' {problem}")

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
        for i, item in enumerate(value):
            self._walk(key, kind, item, shape, at + (i,), flat)

    def bitwidth(self, field: str, value: int) -> int:
        if not MIN_BITWIDTH <= value <= MAX_BITWIDTH:
            self.fail(field, f"is {value}, expected {MIN_BITWIDTH} to {MAX_BITWIDTH}")
        return value

    def lengths(self, field: str, values: list, scales: list, scale_field: str) -> None:
        if len(values) != len(scales):
            self.fail(field, f"has {len(values)} values but '{scale_field}' has {len(scales)}")


def _index(at: tuple) -> str:
    return str(at[0]) if len(at) == 1 else "[" + ", ".join(map(str, at)) + "]"


def _integer_only(where: _Where, field: str, value: str) -> NoReturn:
    where.fail(field, f"is '{value}'; qcalc reads integer encodings only")


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


def _encoding(
    where: _Where,
    name: str,
    bitwidth: int,
    signed: bool,
    symmetric: bool,
    scale: Any,
    offset: Any,
    shape: tuple[int, ...],
    axis: Optional[int],
    blocks: Optional[_Blocks] = None,
) -> Encoding:
    scale_arr = np.asarray(scale, dtype=np.float64).astype(np.float32).reshape(shape)
    offset_arr = np.asarray(offset, dtype=np.float64).astype(np.float32).reshape(shape)
    per_channel = len(shape) > 0
    zero_mode = symmetric and not signed and bool(np.all(offset_arr == 0))
    granularity = "per-channel" if per_channel else "per-tensor"
    block_fields: dict[str, Any] = {}
    spec_fields: dict[str, Any] = {}
    if blocks is not None:
        granularity = "lpbq" if blocks.lpbq else "per-block"
        block_fields = {"block_size": blocks.size, "block_axis": blocks.axis}
        spec_fields = {
            "block_size": blocks.size,
            "block_axis": blocks.axis if blocks.axis is not None else -1,
        }
        if blocks.lpbq:
            block_fields.update(
                per_channel_scale=blocks.per_channel_scale,
                per_block_int_scale=blocks.per_block_int_scale,
                decompressed_bitwidth=blocks.decompressed_bitwidth,
            )
            spec_fields.update(lpbq=True, decompressed_bitwidth=blocks.decompressed_bitwidth)
    spec = Spec(
        bitwidth=bitwidth,
        symmetric=symmetric,
        signed=signed,
        symmetric_offset="zero" if zero_mode else "centered",
        per_channel=per_channel,
        axis=axis if axis is not None else 0,
        **spec_fields,
    )
    return Encoding.on_grid(
        name,
        where.source,
        spec,
        granularity,
        scale_arr,
        offset_arr,
        dtype=None,
        shape=None,
        axis=axis,
        **block_fields,
    )


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
) -> Encoding:
    """An LPBQ grid: scale = multiplier * per-channel scale (float32), offset 0, signed."""
    multipliers = multipliers.astype(np.float32)
    per_channel = per_channel.astype(np.float32)
    scale = (multipliers * per_channel).astype(np.float32)
    blocks = _Blocks(block_size, block_axis, per_channel, multipliers, decompressed)
    shape = multipliers.shape
    zeros = np.zeros(shape, dtype=np.float32)
    return _encoding(where, name, bitwidth, True, True, scale, zeros, shape, axis, blocks)


def _block_size(where: _Where, entry: dict) -> int:
    size = where.get(entry, "block_size", int)
    if size < 1:
        where.fail("block_size", f"is {size}, expected at least 1")
    return size


def _multipliers(
    where: _Where, field: str, values: list, shape: tuple[int, ...], limit: int
) -> np.ndarray:
    """LPBQ integer multipliers: each at least 1 and at most `limit` (2^(dbw - bw))."""
    if any(not 1 <= v <= limit for v in values):
        i = next(i for i, v in enumerate(values) if not 1 <= v <= limit)
        at = tuple(int(n) for n in np.unravel_index(i, shape))
        where.fail(field, f"item {_index(at)} is {values[i]}, expected 1 to {limit}")
    return np.asarray(values, dtype=np.int64).reshape(shape)


# --- 0.6.1 and 1.0.0 ---------------------------------------------------------------------


def _read_legacy(where: _Where, obj: dict, version: str) -> EncodingFile:
    kind = dict if version == "0.6.1" else list
    sections = {}
    for key in ("activation_encodings", "param_encodings"):
        section = where.get(obj, key, kind)
        if version == "0.6.1":
            sections[key] = [
                _read_0_6_1(where.at(name), name, cells) for name, cells in section.items()
            ]
        else:
            sections[key] = [_read_1_0_0(where, entry, key, i) for i, entry in enumerate(section)]
    excluded = where.get(obj, "excluded_layers", list, default=[])
    for i, layer in enumerate(excluded):
        if not isinstance(layer, str):
            where.fail("excluded_layers", f"item {i} is {_a(layer)}, expected a string")
    return EncodingFile(
        params=sections["param_encodings"],
        activations=sections["activation_encodings"],
        version=version,
        quantizer_args=where.get(obj, "quantizer_args", dict, default=None),
        excluded_layers=excluded,
    )


def _read_0_6_1(where: _Where, name: str, cells: Any) -> Encoding:
    if not isinstance(cells, list):
        raise FormatError(
            f"{where.source}: tensor '{name}': is {_a(cells)}, expected an array of encodings"
        )
    if not cells:
        raise FormatError(f"{where.source}: tensor '{name}': has no encodings")
    rows = []
    for i, cell in enumerate(cells):
        at = where.at(channel=i if len(cells) > 1 else None)
        if not isinstance(cell, dict):
            raise FormatError(
                f"{where.source}: tensor '{name}': item {i} is {_a(cell)}, expected an object"
            )
        dtype = at.get(cell, "dtype", str, default="int")
        if dtype != "int":
            _integer_only(at, "dtype", dtype)
        bitwidth = at.bitwidth("bitwidth", at.get(cell, "bitwidth", int))
        if "is_symmetric" not in cell:
            at.fail("is_symmetric", "is missing")
        symmetric = cell["is_symmetric"]
        if symmetric not in ("True", "False") and not isinstance(symmetric, bool):
            at.fail("is_symmetric", f'is {json.dumps(symmetric)}, expected "True" or "False"')
        rows.append(
            (bitwidth, symmetric in ("True", True), at.get(cell, "scale", float),
             at.get(cell, "offset", int))
        )  # fmt: skip
    for field, column in (("bitwidth", 0), ("is_symmetric", 1)):
        for i, row in enumerate(rows):
            if row[column] != rows[0][column]:
                where.fail(
                    field, f"is {row[column]} in channel {i} but {rows[0][column]} in channel 0"
                )
    bitwidth, symmetric = rows[0][0], rows[0][1]
    shape = (len(rows),) if len(rows) > 1 else ()
    scale, offset = [r[2] for r in rows], [r[3] for r in rows]
    signed, offset = _legacy_grid(bitwidth, symmetric, offset)
    return _encoding(where, name, bitwidth, signed, symmetric, scale, offset, shape, None)


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
    return name, where.at(name)


def _read_1_0_0(where: _Where, entry: Any, section: str, index: int) -> Encoding:
    name, at = _named_entry(where, entry, section, index)
    dtype = at.get(entry, "dtype", str)
    if dtype != "INT":
        if dtype == "FLOAT":
            _integer_only(at, "dtype", dtype)
        at.fail("dtype", f"is '{dtype}', expected 'INT' or 'FLOAT'")
    enc_type = at.get(entry, "enc_type", str)
    if enc_type == "VECTOR":
        at.fail("enc_type", "is 'VECTOR'; vector encodings are not supported")
    if enc_type not in _ENC_TYPES:
        at.fail(
            "enc_type",
            f"is '{enc_type}', expected 'PER_TENSOR', 'PER_CHANNEL', 'PER_BLOCK' or 'LPBQ'",
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
    signed, offset = _legacy_grid(bitwidth, symmetric, offset)
    return _encoding(at, name, bitwidth, signed, symmetric, scale, offset, shape, None, blocks)


def _read_1_0_0_lpbq(at: _Where, name: str, entry: dict) -> Encoding:
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
            at.fail("offset", f"item {i} is {value}, expected {centre} (LPBQ grids are symmetric)")
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
    pcs = np.asarray(per_channel, dtype=np.float64).astype(np.float32).reshape(channels, 1)
    return _lpbq_encoding(
        at, name, bitwidth, multipliers.reshape(shape), pcs, 0, 1, block_size, decompressed
    )


# --- 2.0.0 and 2.1.0 ---------------------------------------------------------------------


def _read_2(where: _Where, obj: dict, version: str) -> EncodingFile:
    entries = where.get(obj, "encodings", list)
    roles: dict[Kind, list[Encoding]] = {"activation": [], "param": []}
    role: Kind = "activation"
    for i, entry in enumerate(entries):
        enc, axis = _read_2_entry(where, entry, i)
        if axis is not None:
            role = "param" if axis >= 0 else "activation"
        roles[role].append(enc)
    return EncodingFile(params=roles["param"], activations=roles["activation"], version=version)


def _read_2_entry(where: _Where, entry: Any, index: int) -> tuple[Encoding, Optional[int]]:
    name, at = _named_entry(where, entry, "encodings", index)
    dtype = at.get(entry, "output_dtype", str)
    match = _INT_DTYPE.fullmatch(dtype)
    if match is None:
        if dtype.startswith(("float", "bfloat")):
            _integer_only(at, "output_dtype", dtype)
        at.fail("output_dtype", f"is '{dtype}', expected int<bits> or uint<bits>")
    signed, bitwidth = match.group(1) == "", int(match.group(2))
    if not MIN_BITWIDTH <= bitwidth <= MAX_BITWIDTH:
        at.fail("output_dtype", f"is '{dtype}', expected 2 to 32 bits")
    lpbq_keys = ("per_block_int_scale", "per_channel_float_scale")
    if any(key in entry for key in lpbq_keys) or isinstance(entry.get("y_scale"), dict):
        if not signed:
            at.fail("output_dtype", f"is '{dtype}', but LPBQ grids are signed (int<bits>)")
        return _read_2_lpbq(at, name, entry, bitwidth)
    if "block_size" in entry:
        return _read_2_blocks(at, name, entry, signed, bitwidth)
    if "y_scale" not in entry:
        at.fail("y_scale", "is missing")
    if isinstance(entry["y_scale"], list):
        scale = at.items(entry, "y_scale", float)
        zero_point = (
            at.items(entry, "y_zero_point", int) if "y_zero_point" in entry else [0] * len(scale)
        )
        at.lengths("y_zero_point", zero_point, scale, "y_scale")
        axis = at.get(entry, "axis", int)
        if not -32 <= axis < 32:
            at.fail("axis", f"is {axis}, expected -32 to 31")
        shape = (1,) * axis + (len(scale),) if axis >= 0 else (len(scale),) + (1,) * (-axis - 1)
        channel: Optional[int] = axis if axis >= 0 else 0
    else:
        scale = [at.get(entry, "y_scale", float)]
        zero_point = [at.get(entry, "y_zero_point", int, default=0)]
        shape, axis, channel = (), None, None
    qmin, qmax = integer_range(bitwidth, signed)
    offset = [-z for z in zero_point]
    symmetric = all(o == centre_offset(qmin, qmax) for o in offset)
    enc = _encoding(at, name, bitwidth, signed, symmetric, scale, offset, shape, channel)
    return enc, axis


def _block_axis(at: _Where, entry: dict, ndim: int, shape_field: str) -> tuple[int, int]:
    """The entry's `axis` (the block axis) as written, and non-negative."""
    axis = at.get(entry, "axis", int)
    if not -ndim <= axis < ndim:
        at.fail("axis", f"is {axis}, expected {-ndim} to {ndim - 1} (the rank of '{shape_field}')")
    return axis, axis % ndim


def _channel_axis(at: _Where, shape: tuple[int, ...], block_axis: int, field: str) -> Optional[int]:
    try:
        return blockwise_channel_axis(shape, block_axis)
    except FormatError as e:
        at.fail(field, f"has shape {list(shape)}: {e}")


def _read_2_blocks(
    at: _Where, name: str, entry: dict, signed: bool, bitwidth: int
) -> tuple[Encoding, Optional[int]]:
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
    qmin, qmax = integer_range(bitwidth, signed)
    offset = [-z for z in zero_point]
    symmetric = all(o == centre_offset(qmin, qmax) for o in offset)
    enc = _encoding(at, name, bitwidth, signed, symmetric, scale, offset, shape, channel, blocks)
    return enc, axis


def _read_2_lpbq(
    at: _Where, name: str, entry: dict, bitwidth: int
) -> tuple[Encoding, Optional[int]]:
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
                f"is {written}, expected {-len(shape)} to {len(shape) - 1} (the rank of "
                f"'y_scale.x')",
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
        multipliers_field = "y_scale.x"
    else:
        if "y_scale" in entry:
            at.fail("y_scale", "is present along with 'per_block_int_scale'")
        values, shape = at.nested(entry, "per_block_int_scale", int)
        axis, block_axis = _block_axis(at, entry, len(shape), "per_block_int_scale")
        per_channel, channel_shape = at.nested(entry, "per_channel_float_scale", float)
        expected = tuple(1 if i == block_axis else n for i, n in enumerate(shape))
        if channel_shape != expected:
            at.fail(
                "per_channel_float_scale",
                f"has shape {list(channel_shape)}, expected {list(expected)} "
                f"('per_block_int_scale' has shape {list(shape)}, block axis {block_axis})",
            )
        channel = _channel_axis(at, shape, block_axis, "per_block_int_scale")
        multipliers_field = "per_block_int_scale"
    if any(z != 0 for z in _flat_ints(at, entry, "y_zero_point")):
        at.fail("y_zero_point", "is not 0; LPBQ grids have zero offsets")
    multipliers = _multipliers(at, multipliers_field, values, shape, limit)
    channel_shape = tuple(1 if i == block_axis else n for i, n in enumerate(shape))
    pcs = np.asarray(per_channel, dtype=np.float64).astype(np.float32).reshape(channel_shape)
    decompressed = decompressed_bitwidth_of(bitwidth, multipliers)
    block_size = _block_size(at, entry)
    enc = _lpbq_encoding(
        at, name, bitwidth, multipliers, pcs, channel, block_axis, block_size, decompressed
    )
    return enc, axis


def _flat_ints(at: _Where, entry: dict, key: str) -> list:
    if key not in entry:
        return []
    if isinstance(entry[key], list):
        return at.nested(entry, key, int)[0]
    return [at.get(entry, key, int)]
