"""Lint rules on the encodings file alone (the rules of `rules.RULES` without `model`), and
the reading of each entry by qcalc's own reader, which gives the model rules their Encodings.

The rules read the raw JSON. A value of the wrong type (a string `bw`, a `scale` that is not
an array of numbers) makes a rule skip the entry: the reader's `invalid-entry` finding names
it. Entries with an error finding here are not read again. Float entries (dtype `float` /
`FLOAT`, output_dtype `float16`: AIMET's float encodings) have no grid and are not linted."""

from __future__ import annotations

import re
from typing import Any, Optional

import numpy as np

from qcalc.core.grid import minimum_scale
from qcalc.core.spec import MAX_BITWIDTH, MIN_BITWIDTH
from qcalc.errors import FormatError
from qcalc.io.text import number
from qcalc.ops.lint.report import LEGACY, Entry, Finding, Subject, read_entry

# The scales the converters' fixed-point arithmetic takes (scale-range).
LOWEST_SCALE, HIGHEST_SCALE = 1e-10, 1e10
_INT_DTYPE = re.compile(r"(u?)int(\d{1,4})")
_ENC_TYPES = ("PER_TENSOR", "PER_CHANNEL", "PER_BLOCK", "LPBQ")
_SHOWN = 4  # items a message names
_REJECTS = "the converter rejects the entry"
_ONLY_SYMMETRIC = f"QNN quantizes channels and blocks symmetrically only; {_REJECTS}"


def check(subject: Subject) -> list[Finding]:
    """Every file-level finding; fills `subject.encodings` with the entries the reader takes.
    Entries missing a field are not read (the reader would only repeat the finding); those
    with a bad value are, so that the model rules still see them, and a refusal by the reader
    is then not reported twice."""
    findings = _schema(subject)
    unreadable = {f.name for f in findings if f.rule in _UNREADABLE}
    flagged = {f.name for f in findings if f.severity == "error"}
    findings += [
        f for f in read_entries(subject, skip=unreadable)
        if not (f.rule == "invalid-entry" and f.name in flagged)
    ]  # fmt: skip
    return findings


# Findings that leave an entry without what the reader needs.
_UNREADABLE = frozenset({"missing-field", "unpaired-field", "block-fields", "mixed-channels"})


def _schema(subject: Subject) -> list[Finding]:
    """Rules on the raw entries (missing-field, unpaired-field, legacy-symmetric-offset,
    channel-not-symmetric, block-fields, mixed-channels, scale-range, dead-channel), then on
    the whole file (qnn-bias-bitwidth, wrong-target)."""
    rules = {"0.6.1": _entry_0_6_1, "1.0.0": _entry_1_0_0}.get(subject.version, _entry_2)
    findings = []
    for entry in subject.entries:
        if entry.name and not _is_float(subject.version, entry.value):
            findings += rules(entry.name, entry.value)
    return findings + _target(subject)


# --- 0.6.1: a list of per-channel objects --------------------------------------------------


def _entry_0_6_1(name: str, cells: Any) -> list[Finding]:
    if not (isinstance(cells, list) and cells and all(isinstance(c, dict) for c in cells)):
        return []
    fields = ("bitwidth", "dtype", "is_symmetric", "min", "max", "scale", "offset")
    found = _presence(name, cells, fields, (("min", "max"), ("scale", "offset")), "0.6.1")
    bits = [_bitwidth(c.get("bitwidth")) for c in cells]
    symmetric = [_flag(c.get("is_symmetric")) for c in cells]
    for field, values in (("bitwidth", bits), ("is_symmetric", symmetric)):
        if None not in values and any(v != values[0] for v in values):
            i = next(i for i, v in enumerate(values) if v != values[0])
            found.append(Finding(
                "mixed-channels", name,
                f"field '{field}' is {number(values[i])} in channel {i} but "
                f"{number(values[0])} in channel 0: QNN gives a tensor one datatype; {_REJECTS}",
            ))  # fmt: skip
    if None in bits:
        return found
    scales = _numbers([c.get("scale") for c in cells], flat=True)
    if scales is not None:
        minimum = np.array([_minimum(b) for b in bits], dtype=np.float32)
        found += _scale_rules(name, "scale", scales, minimum, "channel")
    offsets = _integers([c.get("offset") for c in cells], flat=True)
    if offsets is not None and None not in symmetric and len({*bits}) == len({*symmetric}) == 1:
        axes = f"a per-channel entry ({len(cells)} channels)" if len(cells) > 1 else None
        found += _legacy_symmetry(
            name, "is_symmetric", symmetric[0], offsets, bits[0], axes, "channel"
        )
    return found


# --- 1.0.0: one object per tensor, lists of values ------------------------------------------


def _entry_1_0_0(name: str, e: Any) -> list[Finding]:
    if not isinstance(e, dict):
        return []
    fields = ("dtype", "bw", "enc_type", "is_sym", "scale", "offset")
    found = _presence(name, [e], fields, (("scale", "offset"),), "1.0.0")
    enc_type = e.get("enc_type")
    if enc_type == "PER_BLOCK":
        found += _block_fields(name, e, ("block_size",), "a PER_BLOCK")
    elif enc_type == "LPBQ":
        found += _block_fields(
            name, e, ("block_size", "compressed_bw", "per_block_int_scale"), "an LPBQ"
        )
    bits = _bitwidth(e.get("bw"))
    scale, offset = _numbers(e.get("scale"), flat=True), _integers(e.get("offset"), flat=True)
    if scale is not None and offset is not None and scale.shape != offset.shape:
        found.append(_lengths(name, "offset", offset, "scale", scale))
        offset = None
    if bits is None or enc_type not in _ENC_TYPES:
        return found
    grid_bits, factor = bits, 1.0
    if enc_type == "LPBQ":  # bw: the decompressed bitwidth; scale: the per-channel scales
        grid_bits = _bitwidth(e.get("compressed_bw"))
        if grid_bits is None or grid_bits > bits:
            return found
        limit = 2 ** (bits - grid_bits)
        multipliers = _integers(e.get("per_block_int_scale"), flat=True)
        if multipliers is not None:
            found += _multipliers(name, "per_block_int_scale", multipliers, limit,
                                  "2^(bw - compressed_bw)")  # fmt: skip
        factor = float(limit)  # a dead channel's blocks all have the largest multiplier
    noun = {"PER_TENSOR": "", "PER_BLOCK": "block"}.get(enc_type, "channel")
    if scale is not None:
        found += _scale_rules(name, "scale", scale, _minimum(grid_bits), noun, factor)
    if offset is not None and isinstance(e.get("is_sym"), bool):
        axes = {"PER_CHANNEL": "a PER_CHANNEL entry", "PER_BLOCK": "a PER_BLOCK entry",
                "LPBQ": "an LPBQ entry"}.get(enc_type)  # fmt: skip
        found += _legacy_symmetry(name, "is_sym", e["is_sym"], offset, bits, axes, noun)
    return found


# --- 2.0.0 / 2.1.0 ---------------------------------------------------------------------------


def _entry_2(name: str, e: Any) -> list[Finding]:
    if not isinstance(e, dict):
        return []
    lpbq_2_0 = "per_block_int_scale" in e or "per_channel_float_scale" in e
    lpbq_2_1 = isinstance(e.get("y_scale"), dict)
    required = ("output_dtype",) if lpbq_2_0 else ("output_dtype", "y_scale")
    found = _presence(name, [e], required, (("y_scale", "y_zero_point"),), "2.x")
    if lpbq_2_0 or lpbq_2_1:
        return found + _lpbq_2(name, e, lpbq_2_1)
    scale = _numbers(e.get("y_scale"))
    if "block_size" in e or (scale is not None and scale.ndim > 1):
        found += _block_fields(name, e, ("block_size", "axis"), "a per-block")
    zero_point = _integers(e.get("y_zero_point", 0))
    if "y_zero_point" in e and scale is not None and zero_point is not None \
            and zero_point.shape != scale.shape:  # fmt: skip
        found.append(_lengths(name, "y_zero_point", zero_point, "y_scale", scale))
        zero_point = None
    dtype = _int_dtype(e.get("output_dtype"))
    if dtype is None or scale is None:
        return found
    signed, bits = dtype
    noun = "block" if scale.ndim > 1 else "channel" if scale.ndim else ""
    found += _scale_rules(name, "y_scale", scale, _minimum(bits), noun)
    if scale.ndim > 1 or "block_size" in e:
        axes = "a per-block entry"
    elif scale.ndim == 1 and "axis" in e:
        axes = f"a per-channel entry ({scale.size} channels)"
    else:
        return found
    return found + _zero_points(name, e, zero_point, signed, bits, axes, noun)


def _lpbq_2(name: str, e: dict, nested: bool) -> list[Finding]:
    """An LPBQ 2.x entry: 2.0.0's per_block_int_scale / per_channel_float_scale, or 2.1.0's
    y_scale {x, x_scale, axis}."""
    if nested:
        fields = {f"y_scale.{key}": value for key, value in e["y_scale"].items()}
        scale_field, multipliers_field = "y_scale.x_scale", "y_scale.x"
        need = ("y_scale.x", "y_scale.x_scale", "y_scale.axis", "block_size", "axis")
    else:
        fields = e
        scale_field, multipliers_field = "per_channel_float_scale", "per_block_int_scale"
        need = ("per_block_int_scale", "per_channel_float_scale", "block_size", "axis")
    found = _block_fields(name, {**e, **fields}, need, "an LPBQ")
    dtype = _int_dtype(e.get("output_dtype"))
    multipliers = _integers(fields.get(multipliers_field))
    if dtype is None or not dtype[0] or multipliers is None:
        return found  # unsigned LPBQ: the reader's
    bits = dtype[1]
    limit = 2 ** (MAX_BITWIDTH - bits)
    found += _multipliers(name, multipliers_field, multipliers, limit, "2^(32 - bits)")
    scale = _numbers(fields.get(scale_field))
    if scale is not None and multipliers.min() >= 1:
        found += _scale_rules(name, scale_field, scale.ravel(), _minimum(bits), "channel",
                              factor=float(multipliers.max()))  # fmt: skip
    return found + _zero_points(name, e, _integers(e.get("y_zero_point", 0)), True, bits,
                                "an LPBQ entry")  # fmt: skip


def _zero_points(
    name: str, e: dict, zero_point: Optional[np.ndarray], signed: bool, bits: int, axes: str,
    noun: str = "channel",
) -> list[Finding]:  # fmt: skip
    """channel-not-symmetric in 2.x: zero points 0 (int<b>) or 2^(b-1) (uint<b>)."""
    centre = 0 if signed else 2 ** (bits - 1)
    if zero_point is None or not (off := zero_point != centre).any():
        return []
    what = _item_is("y_zero_point", zero_point, off, noun) if "y_zero_point" in e else (
        "field 'y_zero_point' is absent (0)"
    )  # fmt: skip
    return [Finding(
        "channel-not-symmetric", name,
        f"{axes} whose {what}, not {centre} (the "
        f"symmetric zero point of {e['output_dtype']}): {_ONLY_SYMMETRIC}",
    )]  # fmt: skip


# --- the whole file --------------------------------------------------------------------------


def _target(subject: Subject) -> list[Finding]:
    """wrong-target; qnn-bias-bitwidth (for the versions qnn-onnx-converter reads)."""
    if subject.target != "qnn":
        return []
    if subject.version not in LEGACY:
        return [Finding(
            "wrong-target", None,
            f"version {subject.version} is for qairt-converter: qnn-onnx-converter reads 0.6.1 "
            f"and 1.0.0 only and refuses the file (use --target qairt, or qcalc convert "
            f"--to 1.0.0)",
        )]  # fmt: skip
    if any(_is_bias(subject.version, entry) for entry in subject.entries):
        return []
    return [Finding(
        "qnn-bias-bitwidth", None,
        "no bias entry (none of 32 bits, no name ending in 'bias'): qnn-onnx-converter "
        "quantizes biases to its --bias_bitwidth default of 8 bits; pass --bias_bitwidth 32",
    )]  # fmt: skip


def _is_bias(version: str, entry: Entry) -> bool:
    if entry.name.lower().endswith("bias"):
        return True
    value = entry.value
    if version == "0.6.1":
        value = value[0] if isinstance(value, list) and value else None
        return isinstance(value, dict) and _bitwidth(value.get("bitwidth")) == 32
    return isinstance(value, dict) and _bitwidth(value.get("bw")) == 32


def _is_float(version: str, value: Any) -> bool:
    """A float encoding (dtype 'float' / 'FLOAT', output_dtype float<b> / bfloat16): no grid,
    no scale or offset; the converters keep the tensor in that float type."""
    if version == "0.6.1":
        cells = value if isinstance(value, list) else []
        return any(isinstance(c, dict) and str(c.get("dtype")).lower() == "float" for c in cells)
    if not isinstance(value, dict):
        return False
    if version in LEGACY:
        return str(value.get("dtype")).lower() == "float"
    return str(value.get("output_dtype")).lower().startswith(("float", "bfloat"))


# --- the rules' pieces -----------------------------------------------------------------------


def _presence(name: str, cells: list, required: tuple, pairs: tuple, version: str) -> list[Finding]:
    """missing-field and unpaired-field over an entry's objects (0.6.1: its channels): a
    required field of a pair absent while the other is present is unpaired, else missing."""
    partner = {a: b for a, b in pairs} | {b: a for a, b in pairs}
    missing: dict[str, list[int]] = {}
    unpaired: dict[str, list[int]] = {}
    for i, cell in enumerate(cells):
        for field in required:
            if field not in cell:
                paired = partner.get(field) in cell
                (unpaired if paired else missing).setdefault(field, []).append(i)
    found = []
    if missing:
        names = [f for f in required if f in missing]
        where = _channels(sorted({i for f in names for i in missing[f]}), len(cells))
        effect = (
            "the converter validates the entry as int but does not mark it fixed-point"
            if names == ["dtype"] else _REJECTS
        )  # fmt: skip
        it = "it" if len(names) == 1 else "them"
        found.append(Finding(
            "missing-field", name,
            f"{_fields(names)} {'is' if len(names) == 1 else 'are'} missing{where}: the "
            f"{version} parser needs {it}; {effect}",
        ))  # fmt: skip
    for field, channels in unpaired.items():
        found.append(Finding(
            "unpaired-field", name,
            f"field '{field}' is missing but '{partner[field]}' is present"
            f"{_channels(channels, len(cells))}: the parser reads them in pairs; {_REJECTS}",
        ))  # fmt: skip
    return found


def _lengths(name: str, field: str, values: np.ndarray, other: str, others: np.ndarray) -> Finding:
    def size(a: np.ndarray) -> str:
        return f"shape {list(a.shape)}" if a.ndim > 1 else f"{a.size} value{'s' * (a.size != 1)}"

    return Finding(
        "unpaired-field", name,
        f"field '{field}' has {size(values)} but '{other}' has {size(others)}: the parser "
        f"pairs them item by item; {_REJECTS}",
    )  # fmt: skip


def _block_fields(name: str, entry: dict, fields: tuple, what: str) -> list[Finding]:
    absent = [f for f in fields if f not in entry]
    if not absent:
        return []
    return [
        Finding("block-fields", name, f"{what} entry without {_fields(absent, 'or')}: {_REJECTS}")
    ]


def _multipliers(name: str, field: str, values: np.ndarray, limit: int, bound: str) -> list:
    off = (values < 1) | (values > limit)
    if not off.any():
        return []
    return [Finding(
        "block-fields", name,
        f"{_item_is(field, values, off)}, outside 1 .. {limit} ({bound}): {_REJECTS}",
    )]  # fmt: skip


def _legacy_symmetry(
    name: str, field: str, symmetric: bool, offsets: np.ndarray, bits: int,
    axes: Optional[str], noun: str = "item",
) -> list[Finding]:  # fmt: skip
    """legacy-symmetric-offset (symmetric, an offset not -2^(bw-1)) or channel-not-symmetric
    (`axes`: what makes the entry per-channel; None for a per-tensor entry)."""
    centre = -(2 ** (bits - 1))
    if symmetric:
        off = offsets != centre
        if not off.any():
            return []
        return [Finding(
            "legacy-symmetric-offset", name,
            f"'{field}' is true but {_item_is('offset', offsets, off, noun)}, not {centre} "
            f"(a symmetric {bits}-bit grid in the unsigned convention): the converter rewrites "
            f"or refuses it; --fix writes {centre}",
        )]  # fmt: skip
    if axes is None:
        return []
    return [
        Finding("channel-not-symmetric", name, f"{axes} with '{field}' false: {_ONLY_SYMMETRIC}")
    ]


def _scale_rules(
    name: str, field: str, scales: np.ndarray, minimum: Any, noun: str, factor: float = 1.0
) -> list[Finding]:
    """scale-range (not finite, <= 0, outside LOWEST_SCALE .. HIGHEST_SCALE) and dead-channel
    (at AIMET's `minimum` scale of the grid, float32; LPBQ per-channel scales times `factor`,
    the largest multiplier, are the channel's largest block scale). A scale at the minimum is
    a dead channel, not out of range: AIMET writes it for all-zero cells, and the int32
    minimum, 0.01 / (2^32 - 1), lies below 1e-10."""
    with np.errstate(over="ignore", invalid="ignore"):
        dead = (scales * factor).astype(np.float32) == minimum
        # int32 biases' scales lie below 1e-10 as a rule: their floor is AIMET's minimum
        lowest = np.minimum(LOWEST_SCALE, np.asarray(minimum, dtype=np.float64))
        fine = np.isfinite(scales) & (scales >= lowest) & (scales <= HIGHEST_SCALE)
    bad = ~fine & ~dead
    found = []
    if bad.any():
        first = float(scales.flat[int(np.argmax(bad))])
        why = (
            "not a finite number" if not np.isfinite(first) else "not > 0" if first <= 0
            else f"outside {float(np.min(lowest)):g} .. {HIGHEST_SCALE:g}"
        )  # fmt: skip
        found.append(Finding(
            "scale-range", name,
            f"{_item_is(field, scales, bad, noun)}: {why}; the converter's fixed-point "
            f"arithmetic overflows or underflows on it",
        ))  # fmt: skip
    if dead.any():
        times = f" divided by the largest multiplier {factor:g}" if factor != 1 else ""
        them = "it" if dead.sum() == 1 else "them"
        held = "the tensor held" if scales.size == 1 else f"{_many(int(dead.sum()), noun)} held"
        found.append(Finding(
            "dead-channel", name,
            f"{_item_is(field, scales, dead, noun)}: AIMET's minimum scale{times}; {held} only "
            f"zeros or tiny values (pruned or dead?); the converter keeps {them} and every "
            f"value quantizes to 0",
        ))  # fmt: skip
    return found


# --- values and words ------------------------------------------------------------------------


def _bitwidth(value: Any) -> Optional[int]:
    """A bitwidth qcalc's reader takes, else None (the reader reports it)."""
    return value if type(value) is int and MIN_BITWIDTH <= value <= MAX_BITWIDTH else None


def _int_dtype(value: Any) -> Optional[tuple[bool, int]]:
    """2.x output_dtype int<b> / uint<b> as (signed, b); None for anything else."""
    match = _INT_DTYPE.fullmatch(value) if isinstance(value, str) else None
    if match is None or _bitwidth(int(match.group(2))) is None:
        return None
    return match.group(1) == "", int(match.group(2))


def _flag(value: Any) -> Optional[bool]:
    """0.6.1 is_symmetric: "True" / "False" (AIMET's) or a boolean."""
    if isinstance(value, bool):
        return value
    return {"True": True, "False": False}.get(value) if isinstance(value, str) else None


def _minimum(bits: int) -> np.float32:
    """AIMET's minimum scale of a `bits`-bit grid, as its float32 scales hold it."""
    return np.float32(minimum_scale(2**bits - 1))


def _array(value: Any) -> Optional[np.ndarray]:
    """A JSON number (0-d) or a non-empty rectangular array of numbers; None for anything
    else (strings, nulls, ragged arrays, integers beyond 64 bits: the reader's findings)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, list)) or value == []:
        return None
    try:
        array = np.array(value)
    except (ValueError, OverflowError):
        return None
    return array if array.dtype.kind in "if" else None


def _numbers(value: Any, flat: bool = False) -> Optional[np.ndarray]:
    """Numbers as float64; `flat`: only a one-level array (0.6.1 / 1.0.0 lists)."""
    array = _array(value)
    if array is None or (flat and array.ndim != 1):
        return None
    return array.astype(np.float64)


def _integers(value: Any, flat: bool = False) -> Optional[np.ndarray]:
    """Integers (not 1.0: JSON integers) as int64; `flat` as for `_numbers`."""
    array = _array(value)
    if array is None or array.dtype.kind != "i" or (flat and array.ndim != 1):
        return None
    return array


def _fields(names: list, joint: str = "and") -> str:
    quoted = [f"'{n}'" for n in names]
    if len(quoted) == 1:
        return f"field {quoted[0]}"
    return f"fields {', '.join(quoted[:-1])} {joint} {quoted[-1]}"


def _many(n: int, noun: str) -> str:
    return f"{n} {noun or 'item'}{'s' * (n != 1)}"


def _channels(indices: list, total: int) -> str:
    """ " in channels 1, 2 (2 of 8)" for 0.6.1 entries of several channels, else ""."""
    return _where(indices, total, "channel") if total > 1 else ""


def _where(indices: Any, total: int, noun: str, shape: tuple = ()) -> str:
    """ " in channel 3", " in channels 1, 2, 5, 6, ... (9 of 32)"; blocks of a nested grid
    by their index in it ("[1, 2]")."""
    noun = noun or "item"
    if len(indices) == 1:
        return f" in {noun} {_index(int(indices[0]), shape)}"
    return f" in {noun}s {_listed(indices, shape)} ({len(indices)} of {total})"


def _listed(indices: Any, shape: tuple) -> str:
    shown = ", ".join(_index(int(i), shape) for i in indices[:_SHOWN])
    return shown + ", ..." * (len(indices) > _SHOWN)


def _index(i: int, shape: tuple) -> str:
    if len(shape) <= 1:
        return str(i)
    return "[" + ", ".join(str(int(n)) for n in np.unravel_index(i, shape)) + "]"


def _item_is(field: str, values: np.ndarray, mask: np.ndarray, noun: str = "item") -> str:
    """ "field 'F' is V" for a single value, "field 'F' is V in channel I" for one of many,
    "... in channels I, J (2 of 8)" for several alike, "... in channel I (and 2 more of 8:
    J, K)" for several with different values (the first one's shown)."""
    flat = np.flatnonzero(mask)
    first = values.flat[int(flat[0])]
    text = f"field '{field}' is {number(first.item())}"
    if values.size == 1:
        return text
    if len(flat) == 1 or (values.flat[flat] == first).all():
        return text + _where(flat, values.size, noun, values.shape)
    more = f"(and {len(flat) - 1} more of {values.size}: {_listed(flat[1:], values.shape)})"
    return f"{text}{_where(flat[:1], values.size, noun, values.shape)} {more}"


def read_entries(subject: Subject, skip: set = frozenset()) -> list[Finding]:
    """Each entry read on its own by qcalc's reader: the ones it takes go to
    `subject.encodings`; the others are `invalid-entry` findings with the reader's reason
    (entries in `skip` already have a finding). Names seen twice are `duplicate-name`."""
    findings = []
    seen: set[str] = set()
    for entry in subject.entries:
        if not entry.name:
            what = "has no name" if isinstance(entry.value, dict) else _not_an_object(entry)
            findings.append(Finding("invalid-entry", None, _position(subject, entry) + what))
            continue
        if entry.name in seen:
            findings.append(Finding("duplicate-name", entry.name, "appears more than once"))
            continue
        seen.add(entry.name)
        if entry.name in skip or _is_float(subject.version, entry.value):
            continue
        try:
            encoding = read_entry(subject, entry)
        except FormatError as error:
            reason = str(error).removeprefix(f"{subject.path}: ")
            findings.append(Finding("invalid-entry", entry.name, reason))
            continue
        subject.encodings[entry.name] = encoding
    return findings


def _not_an_object(entry: Entry) -> str:
    kinds = {str: "a string", list: "an array", bool: "a boolean", type(None): "null"}
    return f"is {kinds.get(type(entry.value), 'a number')}, expected an object"


def _position(subject: Subject, entry: Entry) -> str:
    section = "encodings" if entry.kind is None else f"{entry.kind}_encodings"
    return f"entry {entry.index} of '{section}' "
