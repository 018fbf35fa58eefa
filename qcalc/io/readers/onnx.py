"""ONNX models (`.onnx`): the graph, and its parameter initializers as lazy tensors.

The `onnx` package is optional and imported only when a model is read (`pip install
'qcalc[onnx]'`); the model is parsed by protobuf with external data left on disk. Parameters
are the initializers `Graph.param_roles` names (consumed by a node as something other than a
shape, index or axis list), in initializer order: float ones (FLOAT, FLOAT16, DOUBLE,
BFLOAT16, FLOAT8E4M3FN, FLOAT8E5M2) as TensorRefs carrying their ParamRole, integer and bool
ones as Skipped (readable through `ref`), other types (strings, complex, 2- and 4-bit
integers, float4 / float6, the other float8 variants) as Skipped without a ref. Sparse
initializers and nodes inside subgraphs (If / Loop bodies) are not read.

Bounds: the file is at most MAX_MODEL_BYTES (protobuf's own limit), read once, whole, and
parsed in memory: the bytes and the parsed model (twice the file at the peak; protobuf's
objects cost more than the bytes they come from, up to ~75x for a file of empty nodes).
Every string the graph holds must be UTF-8; every node has an op_type; initializer names are
non-empty and unique. A parameter's dims are at most MAX_RANK non-negative integers whose
non-zero product times the item size fits in 64 bits; its data is exactly dims x item size:
raw_data (viewed with np.frombuffer, no copy beyond protobuf's) or the typed field of its
type (float_data, double_data, int32_data, int64_data, uint64_data; FLOAT16 / BFLOAT16 /
FLOAT8 bit patterns in int32_data): a typed field's count is checked at open, raw_data's
length on load (reading it copies it out of protobuf). External data (`location`, `offset`,
`length`) is a regular file named by a relative path inside the model's directory (no
absolute path, no `..`, no control characters; symbolic links are followed) whose span at
`offset` (`length` bytes, else up to the end of the file) is exactly the tensor's size,
checked at open; it is memory-mapped read-only on load, after checking the file still has
the size it had.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np

from qcalc.core.dtypes import DType
from qcalc.core.graph import Graph, Node, ParamRole
from qcalc.core.tensor import Skipped, TensorRef
from qcalc.errors import ReadError, one_line
from qcalc.io.files import open_regular
from qcalc.io.readers._common import (
    FLOAT_ITEMSIZE,
    check_size,
    float_dtype,
    map_region,
    shown,
    skip_reason,
    stored_dtype,
)

# protobuf refuses to parse a message of 2 GiB or more; larger models keep their weights in
# external data files.
MAX_MODEL_BYTES = 2**31 - 1

# TensorProto.DataType codes (onnx.proto, fixed by the standard) -> (ONNX name, numpy or
# StoredFloat name, the typed field holding the values when raw_data is absent).
_TYPES = {
    1: ("FLOAT", "float32", "float_data"),
    2: ("UINT8", "uint8", "int32_data"),
    3: ("INT8", "int8", "int32_data"),
    4: ("UINT16", "uint16", "int32_data"),
    5: ("INT16", "int16", "int32_data"),
    6: ("INT32", "int32", "int32_data"),
    7: ("INT64", "int64", "int64_data"),
    9: ("BOOL", "bool", "int32_data"),
    10: ("FLOAT16", "float16", "int32_data"),
    11: ("DOUBLE", "float64", "double_data"),
    12: ("UINT32", "uint32", "uint64_data"),
    13: ("UINT64", "uint64", "uint64_data"),
    16: ("BFLOAT16", "bfloat16", "int32_data"),
    17: ("FLOAT8E4M3FN", "float8_e4m3fn", "int32_data"),
    19: ("FLOAT8E5M2", "float8_e5m2", "int32_data"),
}
# Types qcalc does not read: skipped with this reason.
_UNREAD = {
    8: "string tensor (STRING), not encoded",
    14: "complex tensor (COMPLEX64), not encoded",
    15: "complex tensor (COMPLEX128), not encoded",
    18: "unsupported float tensor (FLOAT8E4M3FNUZ), not encoded",
    20: "unsupported float tensor (FLOAT8E5M2FNUZ), not encoded",
    21: "integer tensor (UINT4), not encoded",
    22: "integer tensor (INT4), not encoded",
    23: "unsupported float tensor (FLOAT4E2M1), not encoded",
    24: "unsupported float tensor (FLOAT8E8M0), not encoded",
    25: "integer tensor (UINT2), not encoded",
    26: "integer tensor (INT2), not encoded",
    27: "unsupported float tensor (FLOAT6E2M3), not encoded",
    28: "unsupported float tensor (FLOAT6E3M2), not encoded",
}
_FIELD_DTYPES = {
    "float_data": np.float32, "double_data": np.float64, "int32_data": np.int32,
    "int64_data": np.int64, "uint64_data": np.uint64,
}  # fmt: skip
_EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
# AttributeProto.AttributeType codes of the attributes read; the others (graphs, tensors,
# type protos) are left out.
_FLOAT, _INT, _STRING, _FLOATS, _INTS, _STRINGS = 1, 2, 3, 6, 7, 8
# Offsets and lengths in external data are decimal strings; 20 digits hold any 64-bit value.
_MAX_DIGITS = 20


@dataclass(frozen=True)
class OnnxModel:
    """A model's graph and its parameter initializers (TensorRef, or Skipped for integer,
    bool and unsupported types), in initializer order."""

    graph: Graph
    tensors: list[TensorRef | Skipped]


def read_model(path: str | os.PathLike[str]) -> OnnxModel:
    """Read an ONNX model's graph; its parameters come back as lazy tensors with their roles.

    Needs the `onnx` package (`pip install 'qcalc[onnx]'`). Initializer data stays where it
    is until `load()`: in the parsed model, or memory-mapped from its external data file.

    >>> model = read_model("model.onnx")  # doctest: +SKIP
    >>> [(t.name, t.shape, t.param.role, t.param.axis) for t in model.tensors]  # doctest: +SKIP
    [('conv.weight', (8, 3, 3, 3), 'weight', 0), ('conv.bias', (8,), 'bias', None)]
    """
    source = os.fspath(path)
    try:
        import onnx
    except ImportError:
        raise ReadError(
            f"{source}: reading ONNX models needs the onnx package: pip install 'qcalc[onnx]'"
        ) from None
    with open_regular(source) as fp:
        size = os.fstat(fp.fileno()).st_size
        if size > MAX_MODEL_BYTES:
            raise _too_large(source, size)
        data = fp.read(MAX_MODEL_BYTES + 1)
    if len(data) > MAX_MODEL_BYTES:  # it grew since fstat
        raise _too_large(source, len(data))
    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:  # noqa: BLE001 - DecodeError, RecursionError, ...: all one thing
        reason = one_line(exc)[:120] or type(exc).__name__
        raise ReadError(f"{source}: not an ONNX model ({reason})") from None
    del data
    if not model.HasField("graph"):
        raise ReadError(f"{source}: not an ONNX model (no graph)")
    graph, initializers = _graph(model.graph, source)
    roles = graph.param_roles()
    external: dict[str, int] = {}  # data file -> its size, each file opened once
    tensors = [
        _tensor(initializers[name], roles[name], source, external)
        for name in graph.initializers
        if name in roles
    ]
    return OnnxModel(graph, tensors)


def _too_large(source: str, size: int) -> ReadError:
    return ReadError(
        f"{source}: file is {size} bytes, more than the {MAX_MODEL_BYTES} protobuf can parse "
        "(larger models keep their weights in external data files)"
    )


def _text(value: str | bytes, where: str, what: str) -> str:
    """A string field; protobuf hands over invalid UTF-8 as bytes."""
    if type(value) is not str:
        raise ReadError(f"{where}: {what} {shown(value)} is not valid UTF-8")
    return value


def _texts(values: Iterable[str | bytes], where: str, what: str) -> tuple[str, ...]:
    texts = tuple(values)
    for value in texts:
        _text(value, where, what)
    return texts


def _graph(proto: Any, source: str) -> tuple[Graph, dict[str, Any]]:
    """The Graph of a GraphProto, and its initializers by name."""
    initializers: dict[str, Any] = {}
    for index, tensor in enumerate(proto.initializer):
        name = _text(tensor.name, source, f"initializer {index}: name")
        if not name:
            raise ReadError(f"{source}: initializer {index} has no name")
        if initializers.setdefault(name, tensor) is not tensor:
            raise ReadError(f"{source}: two initializers are named {shown(name)}")
    nodes = tuple(_node(node, index, source) for index, node in enumerate(proto.node))
    inputs = _texts((value.name for value in proto.input), source, "graph input name")
    outputs = _texts((value.name for value in proto.output), source, "graph output name")
    graph = Graph(
        source=source,
        nodes=nodes,
        inputs=tuple(name for name in inputs if name not in initializers),
        outputs=outputs,
        initializers=tuple(initializers),
    )
    return graph, initializers


def _node(proto: Any, index: int, source: str) -> Node:
    name = _text(proto.name, f"{source}: node {index}", "name")
    where = f"{source}: node {index} ({shown(name)})"
    op = _text(proto.op_type, where, "op_type")
    if not op:
        raise ReadError(f"{where}: no op_type")
    attributes = {}
    for attribute in proto.attribute:
        key = _text(attribute.name, where, "attribute name")
        value = _attribute(attribute, f"{where}: attribute {shown(key)}")
        if value is not None:
            attributes[key] = value
    return Node(
        op=op,
        name=name,
        inputs=_texts(proto.input, where, "input name"),
        outputs=_texts(proto.output, where, "output name"),
        attributes=attributes,
    )


def _attribute(proto: Any, where: str) -> Any:
    """An INT, FLOAT, STRING or list attribute's value; None for the other types."""
    kind = proto.type
    if kind == _INT:
        return proto.i
    if kind == _FLOAT:
        return proto.f
    if kind == _INTS:
        return tuple(proto.ints)
    if kind == _FLOATS:
        return tuple(proto.floats)
    if kind == _STRING:
        return _utf8(proto.s, where)
    if kind == _STRINGS:
        return tuple(_utf8(value, where) for value in proto.strings)
    return None


def _utf8(value: bytes, where: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ReadError(f"{where}: {shown(value)} is not valid UTF-8") from None


def _tensor(
    proto: Any, role: ParamRole, source: str, external: dict[str, int]
) -> TensorRef | Skipped:
    """A parameter initializer, its shape, type and data checked (its raw_data length on load)."""
    name = proto.name
    where = f"{source}: tensor {shown(name)}"
    code = proto.data_type
    if code in _UNREAD:
        return Skipped(name, source, _UNREAD[code])
    if code not in _TYPES:
        raise ReadError(f"{where}: unknown data_type {code}")
    type_name, dtype_name, field = _TYPES[code]
    is_float = dtype_name in FLOAT_ITEMSIZE
    dtype = float_dtype(dtype_name) if is_float else np.dtype(dtype_name).newbyteorder("<")
    shape = tuple(proto.dims)
    if min(shape, default=0) < 0:
        raise ReadError(f"{where}: dims must be non-negative integers, got {shown(list(shape))}")
    check_size(shape, dtype.itemsize, type_name, where)
    if proto.data_location == _EXTERNAL:
        load = _external_data(proto, source, where, dtype, shape, external)
    elif proto.data_location != 0:
        raise ReadError(f"{where}: unknown data_location {proto.data_location}")
    else:
        if not proto.HasField("raw_data"):
            count = len(getattr(proto, field))
            if count != math.prod(shape):
                raise ReadError(
                    f"{where}: {field} holds {count} values, dims {list(shape)} need "
                    f"{math.prod(shape)}"
                )
        load = functools.partial(_load_embedded, proto, where, dtype, shape, field, type_name)

    ref = TensorRef(name, source, dtype, shape, load, param=role)
    reason = None if is_float else skip_reason(dtype, where)
    return ref if reason is None else Skipped(name, source, reason, ref)


def _load_embedded(
    proto: Any, where: str, dtype: DType, shape: tuple[int, ...], field: str, type_name: str
) -> np.ndarray:
    stored = stored_dtype(dtype)  # bfloat16 / float8: their bit patterns
    if proto.HasField("raw_data"):
        raw = proto.raw_data
        expected = math.prod(shape) * dtype.itemsize
        if len(raw) != expected:
            raise ReadError(
                f"{where}: raw_data holds {len(raw)} bytes, dims {list(shape)} of {type_name} "
                f"need {expected}"
            )
        return np.frombuffer(raw, stored).reshape(shape)
    values = np.array(getattr(proto, field), _FIELD_DTYPES[field])
    if field == "int32_data" and dtype.name in FLOAT_ITEMSIZE:  # bit patterns, low bits
        values = values.astype(f"<u{dtype.itemsize}").view(stored)
    return values.astype(stored, copy=False).reshape(shape)


def _external_data(
    proto: Any,
    source: str,
    where: str,
    dtype: DType,
    shape: tuple[int, ...],
    external: dict[str, int],
) -> Callable[[], np.ndarray]:
    """The loader of a tensor stored in an external data file, its location, offset, length
    and the file's size checked first."""
    nbytes = math.prod(shape) * dtype.itemsize
    entries = {}
    for entry in proto.external_data:
        key = _text(entry.key, where, "external_data key")
        entries[key] = _text(entry.value, where, f"external_data {shown(key)}")
    location = entries.get("location")
    if not location:
        raise ReadError(f"{where}: external data without a location")
    label = f"external data of tensor {shown(proto.name)} in {source}"
    where = f"{where}: external data {shown(location)}"
    if not location.isprintable():
        raise ReadError(f"{where}: the location has control characters")
    slashed = location.replace(os.sep, "/")
    if slashed.startswith("/") or os.path.isabs(location) or ".." in slashed.split("/"):
        raise ReadError(f"{where}: not a relative path inside the model's directory")
    offset = _digits(entries.get("offset", "0"), where, "offset")
    length = entries.get("length")
    if length is not None and _digits(length, where, "length") != nbytes:
        raise ReadError(f"{where}: length {length} is not the tensor's {nbytes} bytes")
    data_path = os.path.join(os.path.dirname(source), *slashed.split("/"))
    if data_path not in external:
        with open_regular(data_path, doing=label) as fp:
            external[data_path] = os.fstat(fp.fileno()).st_size
    size = external[data_path]
    if offset + nbytes > size:
        raise ReadError(
            f"{where}: the file is {size} bytes, too short for {nbytes} bytes at offset {offset}"
        )
    if length is None and size - offset != nbytes:
        raise ReadError(
            f"{where}: no length, and the {size - offset} bytes from offset {offset} to the end "
            f"of the file are not the tensor's {nbytes}"
        )
    return functools.partial(_load_external, data_path, label, where, dtype, shape, offset, size)


def _digits(text: str, where: str, what: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= _MAX_DIGITS):
        raise ReadError(f"{where}: {what} {shown(text)} is not a non-negative integer")
    return int(text)


def _load_external(
    data_path: str,
    label: str,
    where: str,
    dtype: DType,
    shape: tuple[int, ...],
    offset: int,
    size: int,
) -> np.ndarray:
    return map_region(data_path, where, dtype, shape, offset, size, doing=label)
