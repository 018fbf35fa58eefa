"""Computation graphs (ONNX models): nodes and tensors, and what each op means for
quantization: which initializers are a layer's weight or bias, the weight's output-channel
axis, the ops that only move data. Pure Python: no numpy, no onnx."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

Role = Literal["weight", "bias", "other"]

# Ops whose output values lie on their input's grid (AIMET's grid-preserving ops), plus the
# multi-input selectors and clippers: AIMET's export copies encodings across them where no
# quantizer observed one side (aimet common/onnx/_utils.py, _derive_data_movement_op_encodings).
GRID_PRESERVING = frozenset(
    {
        "Col2Im", "Compress", "DepthToSpace", "Dropout", "Expand", "Flatten", "Gather",
        "GatherElements", "GatherND", "Identity", "MaxPool", "MaxRoiPool", "NonZero", "Pad",
        "ReduceMax", "ReduceMin", "Reshape", "Slice", "SpaceToDepth", "Split",
        "SplitToSequence", "Squeeze", "Tile", "TopK", "Transpose", "Unsqueeze",
    }
)  # fmt: skip
DATA_MOVERS = GRID_PRESERVING | {
    "Concat", "Scatter", "ScatterElements", "ScatterND", "Clip", "Max", "Min", "Where",
}  # fmt: skip
# The float inputs / outputs of those ops (by position; None: all), from the ONNX schemas:
# shapes, indices, axes and conditions are not.
FLOAT_INPUTS: dict[str, Optional[tuple[int, ...]]] = {
    "Clip": None, "Max": None, "Min": None, "Concat": None, "Where": (1, 2), "Pad": (0, 2),
    "Dropout": (0, 1), "MaxRoiPool": (0, 1), "Scatter": (0, 2), "ScatterElements": (0, 2),
    "ScatterND": (0, 2),
}  # fmt: skip
FLOAT_OUTPUTS: dict[str, Optional[tuple[int, ...]]] = {
    "Split": None,
    "NonZero": (),
    "SplitToSequence": (),
}
# Ops that pass a tensor's encoding along in AIMET's export (its quantized tensors keep their
# encoding through these); any other op in between leaves a bias without an input scale.
ENCODING_PASSTHROUGH = frozenset(
    {
        "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Split", "Gather",
        "Expand", "Tile", "Slice", "Identity",
    }
)  # fmt: skip
# Ops whose output quantizer AIMET ties with the quantizers that encode its inputs (quantsim
# _propagate_encodings), looking through ops that do not change values.
TIED_OUTPUT_OPS = frozenset({"Concat", "Scatter", "ScatterElements", "ScatterND", "Relu"})
TIE_THROUGH = frozenset({"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity",
                         "Cast"})  # fmt: skip
# Ops that use an initializer only as a shape, index or axis list: never a parameter.
_SHAPE_INPUTS = {
    "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Slice": (1, 2, 3, 4), "Squeeze": (1,),
    "Unsqueeze": (1,), "Gather": (1,), "GatherElements": (1,), "GatherND": (1,), "Split": (1,),
    "Pad": (1, 2, 3), "Resize": (1, 2, 3), "ConstantOfShape": (0,), "Range": (0, 1, 2),
    "ReduceMean": (1,), "ReduceSum": (1,), "ReduceMax": (1,), "ReduceMin": (1,),
    "TopK": (1,), "OneHot": (1, 2),
}  # fmt: skip


@dataclass(frozen=True)
class Node:
    """One node: its op type, name, input and output tensor names ("" for an omitted optional
    input) and the attributes qcalc reads (integers, floats, strings and lists of them)."""

    op: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class ParamRole:
    """What an initializer is to the first quantizable node that consumes it.

    `axis` is the weight's output-channel axis (None: the op implies none, so a per-channel
    request uses the command line's); `layer_input` is the activation the layer reads and
    `layer_output` the one it writes (for MatMul + Add, the Add's); `weight` is the weight a
    bias pairs with (a bias's int32 scale is their scales' product), `bias` a weight's bias.
    """

    op: str
    node: str
    role: Role
    axis: Optional[int] = None
    layer_input: Optional[str] = None
    weight: Optional[str] = None
    layer_output: Optional[str] = None
    bias: Optional[str] = None
    known: bool = True  # False: qcalc does not know the op; its parameters stay per tensor


@dataclass(frozen=True)
class Graph:
    """A model's nodes in file (topological) order, its input and output tensor names, and
    its initializer names; `source` is the model file."""

    source: str
    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    initializers: tuple[str, ...]

    @functools.cached_property
    def producers(self) -> dict[str, Node]:
        """The node that outputs each tensor."""
        return {name: node for node in self.nodes for name in node.outputs if name}

    @functools.cached_property
    def consumers(self) -> dict[str, list[tuple[Node, int]]]:
        """Each tensor's consuming nodes, with the input position, in node order."""
        found: dict[str, list[tuple[Node, int]]] = {}
        for node in self.nodes:
            for index, name in enumerate(node.inputs):
                if name:
                    found.setdefault(name, []).append((node, index))
        return found

    @functools.cached_property
    def tensor_names(self) -> frozenset[str]:
        """Every tensor name in the graph: inputs, initializers, node inputs and outputs."""
        names = {*self.inputs, *self.outputs, *self.initializers, *self.producers}
        return frozenset(names | set(self.consumers))

    def float_inputs(self, node: Node) -> list[str]:
        """The inputs of a data mover that carry values (not shapes, indices or masks)."""
        return _picked(node.inputs, FLOAT_INPUTS.get(node.op, (0,)))

    def float_outputs(self, node: Node) -> list[str]:
        """The outputs of a data mover that carry values."""
        return _picked(node.outputs, FLOAT_OUTPUTS.get(node.op, (0,)))

    def producer_op(self, name: str) -> Optional[str]:
        """The op type that outputs tensor `name` (None for graph inputs and initializers)."""
        node = self.producers.get(name)
        return None if node is None else node.op

    def param_roles(self) -> dict[str, ParamRole]:
        """The role of every initializer some node consumes as a parameter (not as a shape,
        index or axis list), from its first such consumer in node order."""
        roles: dict[str, ParamRole] = {}
        initializers = set(self.initializers)
        for node in self.nodes:
            shape_inputs = _SHAPE_INPUTS.get(node.op, ())
            for index, name in enumerate(node.inputs):
                if name in initializers and name not in roles and index not in shape_inputs:
                    roles[name] = self._role(node, index)
        return roles

    def _role(self, node: Node, index: int) -> ParamRole:
        op, inputs = node.op, node.inputs
        output = node.outputs[0] if node.outputs else None
        layer = dict(op=op, node=node.name, layer_input=inputs[0] or None, layer_output=output)
        bias = inputs[2] if len(inputs) > 2 and inputs[2] else None
        if op in ("Conv", "ConvTranspose", "Gemm") and index in (1, 2):
            if index == 2:
                return ParamRole(**layer, role="bias", weight=inputs[1])
            axis = 0 if op == "Conv" else 1
            if op == "Gemm":
                axis = 0 if node.attributes.get("transB", 0) else 1  # any type from a file
            return ParamRole(**layer, role="weight", axis=axis, bias=bias)
        if op == "MatMul" and index == 1:
            add = self.bias_add(node)
            if add is not None:
                layer.update(layer_output=add[0].outputs[0], bias=add[0].inputs[1 - add[1]])
            return ParamRole(**layer, role="weight", axis=-1)
        if op == "Add" and len(inputs) == 2:
            bias = self._matmul_bias(node, index)
            if bias is not None:
                return bias
        if op in _NORMS and index in (1, 2):
            return ParamRole(**layer, role="weight" if index == 1 else "bias")
        if op == "BatchNormalization" and index in (1, 2, 3, 4):
            role: Role = {1: "weight", 2: "bias"}.get(index, "other")  # type: ignore[assignment]
            return ParamRole(**layer, role=role)
        return ParamRole(op, node.name, "other", known=op in _ELEMENTWISE)

    def _matmul_bias(self, add: Node, index: int) -> Optional[ParamRole]:
        """The bias of a linear layer exported as MatMul + Add (either input order)."""
        matmul = self.producers.get(add.inputs[1 - index])
        if matmul is None or matmul.op != "MatMul" or self.bias_add(matmul) != (add, 1 - index):
            return None
        return ParamRole(
            "Add", add.name, "bias", layer_input=matmul.inputs[0] or None,
            weight=matmul.inputs[1], layer_output=add.outputs[0] if add.outputs else None,
        )  # fmt: skip

    def bias_add(self, matmul: Node) -> Optional[tuple[Node, int]]:
        """The Add (and the MatMul output's position in it) that adds an initializer bias to
        `matmul`'s output, when that output has no other use and the weight is an
        initializer: a linear layer exported as MatMul + Add."""
        if len(matmul.inputs) != 2 or matmul.inputs[1] not in self.initializers:
            return None
        uses = self.consumers.get(matmul.outputs[0], ()) if matmul.outputs else ()
        if len(uses) != 1:
            return None
        add, position = uses[0]
        if add.op != "Add" or len(add.inputs) != 2 or not add.outputs:
            return None
        return (add, position) if add.inputs[1 - position] in self.initializers else None


def _picked(names: tuple[str, ...], positions: Optional[tuple[int, ...]]) -> list[str]:
    """The non-empty `names` at `positions` (None: all)."""
    chosen = names if positions is None else [names[i] for i in positions if i < len(names)]
    return [name for name in chosen if name]


_NORMS = frozenset({"LayerNormalization", "InstanceNormalization", "GroupNormalization"})
# Ops whose constant operands are plain tensors with no channel axis: encoded per tensor
# without a warning that the op is unknown.
_ELEMENTWISE = frozenset(
    {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Where", "Clip", "PRelu", "Concat"}
)
