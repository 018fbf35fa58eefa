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
* Tensor dtype and shape are unknown (None); min / max and raw_min / raw_max are
  scale * (offset + qmin) and scale * (offset + qmax) in float32.

Every malformed file raises FormatError with one line naming the file, tensor and field.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, NoReturn, Optional, Union

import numpy as np

from qcalc import grid
from qcalc.errors import ReadError
from qcalc.formats.aimet import (
    LEGACY_VERSIONS,
    VERSIONS,
    EncodingFile,
    FormatError,
    Role,
    centre_offset,
    check_version,
)
from qcalc.spec import Encoding, Spec

PathLike = Union[str, "os.PathLike[str]"]
_INT_DTYPE = re.compile(r"(u?)int(\d+)")
_UNSUPPORTED_ENC_TYPES = ("PER_BLOCK", "LPBQ", "VECTOR")


def read(path: PathLike, version: Optional[str] = None) -> EncodingFile:
    """Read an encodings file; its version is taken from the file unless `version` forces one.

    >>> read("model.encodings").params[0].scale  # doctest: +SKIP
    """
    source = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ReadError(f"{source}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"{source}: not UTF-8 text (byte {e.start})") from None
    return loads(text, version, source=source)


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

    def bitwidth(self, field: str, value: int) -> int:
        if not grid.MIN_BITWIDTH <= value <= grid.MAX_BITWIDTH:
            self.fail(field, f"is {value}, expected {grid.MIN_BITWIDTH} to {grid.MAX_BITWIDTH}")
        return value

    def lengths(self, field: str, values: list, scales: list, scale_field: str) -> None:
        if len(values) != len(scales):
            self.fail(field, f"has {len(values)} values but '{scale_field}' has {len(scales)}")


def _integer_only(where: _Where, field: str, value: str) -> NoReturn:
    where.fail(field, f"is '{value}'; qcalc reads integer encodings only")


# --- building the Encoding ---------------------------------------------------------------


def _encoding(
    where: _Where,
    name: str,
    bitwidth: int,
    signed: bool,
    symmetric: bool,
    scale: list,
    offset: list,
    shape: tuple[int, ...],
    axis: Optional[int],
) -> Encoding:
    qmin, qmax = grid.integer_range(bitwidth, signed)
    scale_arr = np.asarray(scale, dtype=np.float64).astype(np.float32).reshape(shape)
    offset_arr = np.asarray(offset, dtype=np.float64).astype(np.float32).reshape(shape)
    lo, hi = grid.effective_range(scale_arr, offset_arr, qmin, qmax)
    per_channel = len(shape) > 0
    zero_mode = symmetric and not signed and bool(np.all(offset_arr == 0))
    spec = Spec(
        bitwidth=bitwidth,
        symmetric=symmetric,
        signed=signed,
        symmetric_offset="zero" if zero_mode else "centered",
        per_channel=per_channel,
        axis=axis if axis is not None else 0,
    )
    return Encoding(
        name=name,
        source=where.source,
        dtype=None,
        shape=None,
        spec=spec,
        granularity="per-channel" if per_channel else "per-tensor",
        axis=axis,
        qmin=qmin,
        qmax=qmax,
        scale=scale_arr,
        offset=offset_arr,
        min=lo,
        max=hi,
        raw_min=lo,
        raw_max=hi,
    )


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


def _read_1_0_0(where: _Where, entry: Any, section: str, index: int) -> Encoding:
    if not isinstance(entry, dict):
        raise FormatError(
            f"{where.source}: field '{section}' item {index} is {_a(entry)}, expected an object"
        )
    if "name" not in entry:
        raise FormatError(
            f"{where.source}: field '{section}' item {index}: field 'name' is missing"
        )
    name = where.get(entry, "name", str)
    at = where.at(name)
    dtype = at.get(entry, "dtype", str)
    if dtype != "INT":
        if dtype == "FLOAT":
            _integer_only(at, "dtype", dtype)
        at.fail("dtype", f"is '{dtype}', expected 'INT' or 'FLOAT'")
    enc_type = at.get(entry, "enc_type", str)
    if enc_type in _UNSUPPORTED_ENC_TYPES:
        at.fail(
            "enc_type",
            f"is '{enc_type}'; per-block, LPBQ and vector encodings are not supported yet",
        )
    if enc_type not in ("PER_TENSOR", "PER_CHANNEL"):
        at.fail("enc_type", f"is '{enc_type}', expected 'PER_TENSOR' or 'PER_CHANNEL'")
    bitwidth = at.bitwidth("bw", at.get(entry, "bw", int))
    symmetric = at.get(entry, "is_sym", bool)
    scale = at.items(entry, "scale", float)
    offset = at.items(entry, "offset", int)
    at.lengths("offset", offset, scale, "scale")
    if enc_type == "PER_TENSOR":
        if len(scale) != 1:
            at.fail("scale", f"has {len(scale)} values but 'enc_type' is PER_TENSOR")
        shape: tuple[int, ...] = ()
    else:
        shape = (len(scale),)
    signed, offset = _legacy_grid(bitwidth, symmetric, offset)
    return _encoding(at, name, bitwidth, signed, symmetric, scale, offset, shape, None)


# --- 2.0.0 and 2.1.0 ---------------------------------------------------------------------


def _read_2(where: _Where, obj: dict, version: str) -> EncodingFile:
    entries = where.get(obj, "encodings", list)
    roles: dict[Role, list[Encoding]] = {"activation": [], "param": []}
    role: Role = "activation"
    for i, entry in enumerate(entries):
        enc, axis = _read_2_entry(where, entry, i)
        if axis is not None:
            role = "param" if axis >= 0 else "activation"
        roles[role].append(enc)
    return EncodingFile(params=roles["param"], activations=roles["activation"], version=version)


def _read_2_entry(where: _Where, entry: Any, index: int) -> tuple[Encoding, Optional[int]]:
    if not isinstance(entry, dict):
        raise FormatError(
            f"{where.source}: field 'encodings' item {index} is {_a(entry)}, expected an object"
        )
    if "name" not in entry:
        raise FormatError(
            f"{where.source}: field 'encodings' item {index}: field 'name' is missing"
        )
    name = where.get(entry, "name", str)
    at = where.at(name)
    dtype = at.get(entry, "output_dtype", str)
    match = _INT_DTYPE.fullmatch(dtype)
    if match is None:
        if dtype.startswith(("float", "bfloat")):
            _integer_only(at, "output_dtype", dtype)
        at.fail("output_dtype", f"is '{dtype}', expected int<bits> or uint<bits>")
    for key in ("block_size", "per_block_int_scale", "per_channel_float_scale"):
        if key in entry:
            at.fail(key, "is present; per-block and LPBQ encodings are not supported yet")
    signed, bitwidth = match.group(1) == "", int(match.group(2))
    if not grid.MIN_BITWIDTH <= bitwidth <= grid.MAX_BITWIDTH:
        at.fail("output_dtype", f"is '{dtype}', expected 2 to 32 bits")
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
    qmin, qmax = grid.integer_range(bitwidth, signed)
    offset = [-z for z in zero_point]
    symmetric = all(o == centre_offset(qmin, qmax) for o in offset)
    enc = _encoding(at, name, bitwidth, signed, symmetric, scale, offset, shape, channel)
    return enc, axis
