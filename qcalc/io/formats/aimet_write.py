"""Encodings -> AIMET encodings JSON (0.6.1, 1.0.0, 2.0.0, 2.1.0), as aimet-torch 2.42 writes it.

`encoding_entry` is one tensor's entry, equal to AIMET's `to_qnn_encoding_dict(version)`;
`file_dict` / `dumps` / `write` lay out a whole file as QuantizationSimModel's export does
(tests/golden/NOTES.md, sections 12 and 13). Files are JSON indented by 4 spaces, keys in
AIMET's order, floats the exact float32 values, ending in a newline.

Per-block and LPBQ entries are AIMET's too: 1.0.0 `PER_BLOCK` / `LPBQ` entries with flat
lists, 2.x entries with the grid nested in its shape and `axis` = the block axis. A 0.6.1
file has no field for blocks (AIMET writes the cells as if they were channels), so files of
that version refuse them; 1.0.0 files refuse an LPBQ grid whose block axis comes before its
channel axis, which a reader could not put back in order.

Not written: non-finite encodings (NaN / infinity; AIMET would write them). The int32 bias
encodings of a whole model are ordinary 32-bit entries here; `EncodeResult.encodings_file`
leaves them out of 0.6.1 / 1.0.0 files, as AIMET's export does.
"""

from __future__ import annotations

import json
import os
from typing import Any, Union

import numpy as np

from qcalc.core.encoding import Encoding
from qcalc.core.spec import Spec, centre_offset
from qcalc.errors import WriteError, os_errors
from qcalc.io.formats.aimet import (
    INT32_MAX,
    INT32_MIN,
    LEGACY_VERSIONS,
    EncodingFile,
    FormatError,
    Kind,
    blockwise_channel_axis,
    check_version,
    grid_bitwidth,
    is_blockwise,
    output_dtype,
)
from qcalc.io.text import quote

PathLike = Union[str, "os.PathLike[str]"]
INDENT = 4
# quantizer_args.quant_scheme: the name of AIMET's QuantScheme member for each analyzer; plain
# SQNR (2048 bins, no growth limit) has no QuantScheme, so it is written by its own name.
QUANT_SCHEMES = {
    "minmax": "min_max",
    "percentile": "post_training_percentile",
    "tf-enhanced": "post_training_tf_enhanced",
    "sqnr": "sqnr",
}


def encoding_entry(
    enc: Encoding, version: str, *, param_axis: bool = False, symmetry_from_values: bool = False
) -> Any:
    """One tensor's entry, exactly as AIMET's ``to_qnn_encoding_dict(version)`` returns it.

    0.6.1 gives a list of per-channel (or per-block) dicts, the other versions a dict. A
    per-channel 2.x entry has AIMET's negative `axis` (counted from the end of the encoding
    shape), a per-block or LPBQ one the negative block axis (and, in 2.1.0 LPBQ, the negative
    channel axis in `y_scale`); with `param_axis` these are the positive axes QuantSim's file
    writer gives parameters. Raises FormatError where AIMET raises (strict grids in 0.6.1 /
    1.0.0, NaN offsets in 0.6.1, integers outside int32); NaN / inf scales are returned as
    AIMET holds them.

    >>> import numpy as np
    >>> from qcalc.ops.encode import encode_array
    >>> enc = encode_array(np.array([-1.0, 2.0], dtype=np.float32))
    >>> list(encoding_entry(enc, "2.0.0"))
    ['output_dtype', 'y_scale', 'y_zero_point']
    """
    check_version(version)
    if version == "0.6.1":
        return _entry_0_6_1(enc, symmetry_from_values)
    if version == "1.0.0":
        return _entry_1_0_0(enc, symmetry_from_values)
    return _entry_2(enc, version, param_axis)


def _flat(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).ravel()


def _bitwidth(enc: Encoding, version: str) -> int:
    bitwidth = grid_bitwidth(enc.qmin, enc.qmax)
    if bitwidth is None:
        kind = "strict-symmetric" if enc.qmin == -enc.qmax else "non-standard"
        raise FormatError(
            f"tensor {quote(enc.name)}: version {version} cannot carry the {kind} grid "
            f"[{enc.qmin}, {enc.qmax}] (its field 'bw' is undefined; AIMET refuses it too); "
            f"write encoding version 2.0.0 or later"
        )
    return bitwidth


def _legacy_offsets(enc: Encoding) -> np.ndarray:
    """Offsets in the unsigned convention of 0.6.1 / 1.0.0: offset + qmin, in float32."""
    with np.errstate(invalid="ignore"):
        return _flat(enc.offset) + np.float32(enc.qmin)


def _int32(values: np.ndarray, enc: Encoding, field: str) -> list[int]:
    """Integers as AIMET casts them to int32: NaN becomes -2^31; out of range raises."""
    values = np.asarray(values, dtype=np.float64)
    nan = np.isnan(values)
    outside = ~nan & ((values < INT32_MIN) | (values > INT32_MAX))
    if outside.any():
        bad = values[outside][0]
        shown = int(bad) if np.isfinite(bad) else float(bad)
        raise FormatError(
            f"tensor {quote(enc.name)}: field '{field}' value {shown} does not fit int32, "
            f"so AIMET cannot write it either"
        )
    return np.where(nan, INT32_MIN, values).astype(np.int64).tolist()


def _entry_0_6_1(enc: Encoding, symmetry_from_values: bool = False) -> list[dict[str, Any]]:
    bitwidth = _bitwidth(enc, "0.6.1")
    offsets = _legacy_offsets(enc)
    if np.isnan(offsets).any():
        raise FormatError(
            f"tensor {quote(enc.name)}: field 'offset' is NaN, which version 0.6.1 cannot hold "
            f"(AIMET: cannot convert float NaN to integer)"
        )
    steps = 2**bitwidth - 1
    wide = offsets.astype(np.float64)  # -steps is not a float32 value above 24 bits
    outside = (wide < -steps) | (wide > 0)
    if outside.any():  # a float32 offset of a grid over 24 bits, rounded past the grid's end
        raise FormatError(
            f"tensor {quote(enc.name)}: field 'offset' value {int(offsets[outside][0])} is off "
            f"the {bitwidth}-bit grid (-{steps} to 0, unsigned convention): its float32 offset "
            f"rounded past the grid's end, and no reader takes it"
        )
    symmetric = str(legacy_symmetric(enc, symmetry_from_values))
    return [
        {
            "min": lo,
            "max": hi,
            "scale": scale,
            "offset": int(offset),
            "bitwidth": bitwidth,
            "dtype": "int",
            "is_symmetric": symmetric,
        }
        for lo, hi, scale, offset in zip(
            _flat(enc.min).tolist(),
            _flat(enc.max).tolist(),
            _flat(enc.scale).tolist(),
            offsets,
            strict=True,
        )
    ]


def legacy_symmetric(enc: Encoding, from_values: bool = False) -> bool:
    """`is_symmetric` / `is_sym` of 0.6.1 / 1.0.0 entries: the quantizer's setting, as
    `to_qnn_encoding_dict` writes it; `from_values`: whether every offset sits at the grid
    centre, as QuantSim's whole-model export writes it (an asymmetric 8-bit activation whose
    offset came out at -128 is written symmetric: tests/golden/models/README.md)."""
    if not from_values:
        return bool(enc.spec.symmetric)
    return bool(np.all(_flat(enc.offset) == np.float32(centre_offset(enc.qmin, enc.qmax))))


def _entry_1_0_0(enc: Encoding, symmetry_from_values: bool = False) -> dict[str, Any]:
    if enc.granularity == "lpbq":
        return _entry_1_0_0_lpbq(enc)
    if is_blockwise(enc):
        enc_type = "PER_BLOCK"
    else:
        enc_type = "PER_TENSOR" if np.ndim(enc.scale) == 0 else "PER_CHANNEL"
    entry = {
        "dtype": "INT",
        "bw": _bitwidth(enc, "1.0.0"),
        "is_sym": legacy_symmetric(enc, symmetry_from_values),
        "scale": _flat(enc.scale).tolist(),
        "offset": _int32(_legacy_offsets(enc), enc, "offset"),
        "enc_type": enc_type,
    }
    if is_blockwise(enc):
        entry["block_size"] = _block_size(enc)
    return entry


def _entry_1_0_0_lpbq(enc: Encoding) -> dict[str, Any]:
    """AIMET's 1.0.0 LPBQ entry: `bw` is the decompressed bitwidth and `scale` the per-channel
    scale, on the decompressed signed symmetric grid (offset -2^(dbw-1))."""
    compressed = _bitwidth(enc, "1.0.0")
    decompressed = _decompressed_bitwidth(enc)
    per_channel, multipliers = _lpbq_parts(enc)
    return {
        "dtype": "INT",
        "bw": decompressed,
        "is_sym": bool(enc.spec.symmetric),
        "scale": _flat(per_channel).tolist(),
        "offset": [-(2 ** (decompressed - 1))] * per_channel.size,
        "enc_type": "LPBQ",
        "block_size": _block_size(enc),
        "compressed_bw": compressed,
        "per_block_int_scale": multipliers.ravel().tolist(),
    }


def _entry_2(enc: Encoding, version: str, param_axis: bool) -> dict[str, Any]:
    """2.x writes -offset as the zero point. AIMET writes the grid centre for symmetric
    encodings, which is the same number for every centred offset qcalc computes."""
    if enc.granularity == "lpbq":
        return _entry_2_lpbq(enc, version, param_axis)
    entry: dict[str, Any] = {"output_dtype": output_dtype(enc.qmin, enc.qmax)}
    scale = _flat(enc.scale)
    with np.errstate(invalid="ignore"):
        zero_point = _int32(-_flat(enc.offset), enc, "y_zero_point")
    if is_blockwise(enc):
        shape = np.shape(enc.scale)
        entry["y_scale"] = scale.reshape(shape).tolist()
        if any(zero_point):
            entry["y_zero_point"] = np.reshape(zero_point, shape).tolist()
        entry["axis"] = _axis(enc, _block_axis(enc, version), param_axis)
        entry["block_size"] = _block_size(enc)
        return entry
    if scale.size == 1:
        entry["y_scale"] = float(scale[0])
        if zero_point[0] != 0:
            entry["y_zero_point"] = zero_point[0]
        return entry
    entry["y_scale"] = scale.tolist()
    if any(zero_point):
        entry["y_zero_point"] = zero_point
    entry["axis"] = _channel_axis(enc, param_axis)
    return entry


def _entry_2_lpbq(enc: Encoding, version: str, param_axis: bool) -> dict[str, Any]:
    """2.0.0: the integer multipliers and the per-channel scale as two nested arrays (keys in
    AIMET's order); 2.1.0: both inside `y_scale`, the per-channel scale flat."""
    per_channel, multipliers = _lpbq_parts(enc)
    block_axis = _axis(enc, _block_axis(enc, version), param_axis)
    dtype = output_dtype(enc.qmin, enc.qmax)
    if version == "2.1.0":
        return {
            "output_dtype": dtype,
            "y_scale": {
                "x": multipliers.tolist(),
                "x_scale": _flat(per_channel).tolist(),
                "axis": _axis(enc, _lpbq_channel_axis(enc), param_axis),
            },
            "axis": block_axis,
            "block_size": _block_size(enc),
        }
    return {
        "axis": block_axis,
        "block_size": _block_size(enc),
        "per_block_int_scale": multipliers.tolist(),
        "per_channel_float_scale": per_channel.tolist(),
        "output_dtype": dtype,
    }


def _channel_axis(enc: Encoding, positive: bool) -> int:
    """The one non-singleton dimension of the encoding grid, as AIMET finds it."""
    shape = np.shape(enc.scale)
    channels = [i for i, size in enumerate(shape) if size > 1]
    if len(channels) != 1:
        raise FormatError(
            f"tensor {quote(enc.name)}: encoding shape {list(shape)} has more than one channel "
            f"axis; only per-tensor and per-channel encodings can be written"
        )
    return channels[0] if positive else channels[0] - len(shape)


def _axis(enc: Encoding, axis: int, positive: bool) -> int:
    """An axis of the encoding grid as 2.x writes it: counted from the end (AIMET's
    `to_qnn_encoding_dict`) or, for parameters in files, from the start."""
    return axis if positive else axis - np.ndim(enc.scale)


def _block_size(enc: Encoding) -> int:
    if enc.block_size is None:
        raise FormatError(
            f"tensor {quote(enc.name)}: field 'block_size' is unknown for a {_kind(enc)} encoding"
        )
    return int(enc.block_size)


def _kind(enc: Encoding) -> str:
    return "LPBQ" if enc.granularity == "lpbq" else enc.granularity


def _block_axis(enc: Encoding, version: str = "2.0.0") -> int:
    """The block axis (non-negative). 1.0.0 files do not record it, nor the grid's shape."""
    if enc.block_axis is None:
        raise FormatError(
            f"tensor {quote(enc.name)}: field 'axis' is unknown (1.0.0 files record the "
            f"{np.size(enc.scale)} cells of a {_kind(enc)} grid but not its shape or block "
            f"axis), and version {version} needs it"
        )
    return int(enc.block_axis) % max(np.ndim(enc.scale), 1)


def _lpbq_channel_axis(enc: Encoding) -> int:
    ndim = np.ndim(enc.scale)
    if enc.axis is not None:
        return int(enc.axis) % ndim
    try:
        axis = blockwise_channel_axis(np.shape(enc.scale), _block_axis(enc))
    except FormatError:
        axis = None
    if axis is None:
        raise FormatError(f"tensor {quote(enc.name)}: field 'axis' (the channel axis) is unknown")
    return axis


def _decompressed_bitwidth(enc: Encoding) -> int:
    if enc.decompressed_bitwidth is not None:
        return int(enc.decompressed_bitwidth)
    return int(enc.spec.decompressed_bitwidth)


def _lpbq_parts(enc: Encoding) -> tuple[np.ndarray, np.ndarray]:
    """An LPBQ encoding's per-channel float32 scale, shaped like the grid with 1 at the block
    axis, and its integer multipliers (int64) shaped like the grid."""
    shape = np.shape(enc.scale)
    missing = [
        field for field in ("per_channel_scale", "per_block_int_scale")
        if getattr(enc, field) is None
    ]  # fmt: skip
    if missing:
        raise FormatError(
            f"tensor {quote(enc.name)}: field '{missing[0]}' is missing from an LPBQ encoding"
        )
    channel_shape = list(shape)
    channel_shape[_block_axis(enc)] = 1
    per_channel = np.asarray(enc.per_channel_scale, dtype=np.float32)
    multipliers = np.asarray(enc.per_block_int_scale, dtype=np.float64)
    if per_channel.size != int(np.prod(channel_shape)):
        raise FormatError(
            f"tensor {quote(enc.name)}: field 'per_channel_scale' has {per_channel.size} values, "
            f"expected {int(np.prod(channel_shape))} (one per channel of the grid {list(shape)})"
        )
    if multipliers.size != np.size(enc.scale):
        raise FormatError(
            f"tensor {quote(enc.name)}: field 'per_block_int_scale' has {multipliers.size} values, "
            f"expected {np.size(enc.scale)} (one per block of the grid {list(shape)})"
        )
    with np.errstate(invalid="ignore"):
        wrong = ~(multipliers == np.round(multipliers)) | ~(multipliers >= 1)
    if wrong.any():
        bad = multipliers[wrong][0]
        raise FormatError(
            f"tensor {quote(enc.name)}: field 'per_block_int_scale' value {float(bad):g} is not an "
            f"integer of at least 1"
        )
    return per_channel.reshape(channel_shape), multipliers.astype(np.int64).reshape(shape)


def _check_writable(enc: Encoding, role: Kind, version: str) -> None:
    fields = ("scale", "offset", "min", "max") if version == "0.6.1" else ("scale", "offset")
    for field in fields:
        values = _flat(getattr(enc, field))
        bad = ~np.isfinite(values)
        if bad.any():
            what = "NaN" if np.isnan(values).any() else "infinite"
            where = f" in {int(bad.sum())} of {values.size} channels" if values.size > 1 else ""
            raise FormatError(
                f"tensor {quote(enc.name)}: field '{field}' is {what}{where}; "
                f"encodings files never hold NaN or infinity"
            )
    steps = 2 ** (enc.qmax - enc.qmin).bit_length() - 1  # the reader's: 2^bitwidth - 1
    with np.errstate(over="ignore"):
        overflow = ~np.isfinite(_flat(enc.scale) * np.float32(steps))
    if overflow.any():  # a finite scale whose grid range float32 cannot hold: unreadable
        bad = float(_flat(enc.scale)[overflow][0])
        raise FormatError(
            f"tensor {quote(enc.name)}: field 'scale' value {bad:.4g}: the grid's {steps} steps "
            f"of it overflow float32, so no reader can take it"
        )
    if enc.granularity == "lpbq" and enc.per_channel_scale is not None:
        values = _flat(enc.per_channel_scale)
        if not np.isfinite(values).all():
            raise FormatError(
                f"tensor {quote(enc.name)}: field 'per_channel_scale' is NaN or infinite; "
                f"encodings files never hold NaN or infinity"
            )
    if is_blockwise(enc):
        _check_blocks_writable(enc, version)
        return
    per_channel = np.size(enc.scale) > 1
    if role == "activation" and per_channel and enc.axis is None and version not in LEGACY_VERSIONS:
        raise FormatError(
            f"tensor {quote(enc.name)}: field 'axis' is unknown (0.6.1 and 1.0.0 files do not "
            f"record it), and version {version} needs it for a per-channel activation"
        )


def _check_blocks_writable(enc: Encoding, version: str) -> None:
    """What a version's files cannot carry of a per-block or LPBQ encoding."""
    if version == "0.6.1":
        fields = (
            "'block_size'"
            if enc.granularity == "per-block"
            else ("'block_size' or 'per_block_int_scale'")
        )
        raise FormatError(
            f"tensor {quote(enc.name)}: version 0.6.1 cannot carry the {_kind(enc)} encoding "
            f"(it has no field {fields}; its {np.size(enc.scale)} cells would read back as "
            f"channels); write encoding version 1.0.0 or later"
        )
    if version == "1.0.0":
        if enc.granularity == "lpbq" and enc.block_axis is not None and enc.axis is not None:
            ndim = max(np.ndim(enc.scale), 1)
            if enc.block_axis % ndim < enc.axis % ndim:
                raise FormatError(
                    f"tensor {quote(enc.name)}: version 1.0.0 records no axes, and its field "
                    f"'per_block_int_scale' reads channel by channel, but this grid's block "
                    f"axis {enc.block_axis % ndim} comes before its channel axis "
                    f"{enc.axis % ndim}; write encoding version 2.0.0 or later"
                )
        return
    _block_axis(enc, version)


def _check_names(data: EncodingFile) -> None:
    seen: set[str] = set()
    for enc in data.encodings:
        if enc.name in seen:
            raise FormatError(f"tensor {quote(enc.name)} appears more than once")
        seen.add(enc.name)


def quantizer_args(data: EncodingFile) -> dict[str, Any]:
    """The `quantizer_args` of a 0.6.1 / 1.0.0 file: the settings the encodings were made with
    (the first parameter's settings, else the first activation's; the first activation's for
    `activation_bitwidth`)."""
    specs = [e.spec for e in (*data.params, *data.activations)]
    param = specs[0] if specs else Spec()
    activation = data.activations[0].spec if data.activations else param
    return {
        "quant_scheme": QUANT_SCHEMES[param.analyzer],
        "param_bitwidth": param.bitwidth,
        "activation_bitwidth": activation.bitwidth,
        "dtype": "int",
        "is_symmetric": (
            any(e.spec.symmetric for e in data.params) if data.model_export else param.symmetric
        ),
        "per_channel_quantization": any(e.granularity != "per-tensor" for e in data.params),
    }


def file_dict(data: EncodingFile, version: str) -> dict[str, Any]:
    """The whole file as a dict, keys in the order AIMET's export writes them."""
    from qcalc import __version__

    check_version(version)
    _check_names(data)
    for role, enc in data.with_roles():
        _check_writable(enc, role, version)
    head = {"producer": {"package": "qcalc", "version": __version__}, "version": version}
    if version not in LEGACY_VERSIONS:
        entries = [
            {"name": enc.name, **encoding_entry(enc, version, param_axis=role == "param")}
            for role, enc in data.with_roles()
        ]
        return {**head, "encodings": entries}

    def section(encodings) -> Any:
        model = data.model_export
        if version == "0.6.1":
            return {
                enc.name: encoding_entry(enc, version, symmetry_from_values=model)
                for enc in encodings
            }
        return [
            {"name": enc.name, **encoding_entry(enc, version, symmetry_from_values=model)}
            for enc in encodings
        ]

    args = data.quantizer_args
    return {
        **head,
        "activation_encodings": section(data.activations),
        "param_encodings": section(data.params),
        "excluded_layers": list(data.excluded_layers),
        "quantizer_args": quantizer_args(data) if args is None else dict(args),
    }


def dumps(data: EncodingFile, version: str) -> str:
    """The text of a `version` encodings file holding `data` (strict JSON). FormatError for
    what JSON cannot hold (NaN, infinity or objects in `quantizer_args`, say)."""
    doc = file_dict(data, version)
    try:
        return json.dumps(doc, indent=INDENT, allow_nan=False) + "\n"
    except (ValueError, TypeError, RecursionError) as error:
        where = "quantizer_args" if version in LEGACY_VERSIONS else "encodings"
        raise FormatError(
            f"cannot be written as JSON ({type(error).__name__}: {quote(str(error), '', 80)}); "
            f"check field '{where}'"
        ) from None


def write(path: PathLike, data: EncodingFile, version: str) -> None:
    """Write `data` as a `version` encodings file, atomically: on any error (FormatError
    before anything is written, WriteError, KeyboardInterrupt) an existing file is untouched.
    Errors name `path`."""
    from qcalc.io.atomic import write_atomic

    try:
        text = dumps(data, version)
    except FormatError as error:
        raise FormatError(f"{os.fspath(path)}: {error}") from None
    with os_errors(path, WriteError, "cannot write"):
        write_atomic(path, text)
