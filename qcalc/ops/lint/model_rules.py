"""Lint rules against the model's graph (the rules of `rules.RULES` with `model`).

What the rules take from the graph (`Model`), each choice documented where it is made:

- constants: initializers, Constant outputs and what ops compute from constants alone (the
  converter folds and quantizes them itself): never an unencoded or mixed-precision tensor;
- fused tensors: what the converter fuses away, so that no encoding is expected there (a
  Conv / ConvTranspose / Gemm / MatMul output, after its bias Add or folded BatchNormalization,
  feeding only a Relu / Clip; a linear layer's MatMul output before its bias Add; a layer
  output that only feeds the BatchNormalization folded into it);
- which encodings are copies: the files do not record which tensors a quantizer observed;
  `observed_tensors` reads them as AIMET's export writes them (a Reshape ... output is a copy, a
  MaxPool ... output equal to its input's is one).

The AIMET rules themselves (derived copies, product bias scales, overflow) are `ops.model`'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Mapping, Optional

import numpy as np

from qcalc.core.dtypes import decoded
from qcalc.core.encoding import Encoding
from qcalc.core.graph import (
    DATA_MOVERS,
    ENCODING_PASSTHROUGH,
    GRID_PRESERVING,
    TIED_OUTPUT_OPS,
    Graph,
    Node,
    ParamRole,
)
from qcalc.ops import model
from qcalc.ops.lint.report import LEGACY, Finding, Subject

Encodings = Mapping[str, Encoding]

# Ops whose value inputs and output the converters quantize: layers, elementwise arithmetic,
# normalisations, activation functions, pools and means. Ops outside (Shape, Cast,
# comparisons, ...) carry integers or booleans, or are left to the converter.
QUANTIZABLE = frozenset(
    {
        "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub", "Mul", "Div",
        "BatchNormalization", "LayerNormalization", "InstanceNormalization",
        "GroupNormalization", "Softmax", "LogSoftmax", "Sigmoid", "HardSigmoid", "Tanh",
        "Relu", "LeakyRelu", "PRelu", "Elu", "Gelu", "HardSwish", "Clip",
        "GlobalAveragePool", "AveragePool", "ReduceMean", "Resize",
    }
)  # fmt: skip
# The inputs of those ops that carry values, by position (the others are parameters, scales,
# sizes or axes); every input for the ops not listed.
_VALUE_INPUTS = {
    "BatchNormalization": (0,), "LayerNormalization": (0,), "InstanceNormalization": (0,),
    "GroupNormalization": (0,), "ReduceMean": (0,), "Resize": (0,),
}  # fmt: skip
# Layers whose weight the converter quantizes (BatchNormalization's parameters are folded into
# the layer before it: AIMET leaves them float).
_WEIGHTED = frozenset(
    {"Conv", "ConvTranspose", "Gemm", "MatMul", "LayerNormalization", "InstanceNormalization",
     "GroupNormalization"}
)  # fmt: skip
_LAYERS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
_FUSED_ACTIVATIONS = frozenset({"Relu", "Clip"})
# Data movers whose output AIMET's export always writes as a copy of the value input's
# encoding. The selecting ops (MaxPool, ReduceMax, TopK ...) are left out: their output may
# have a quantizer of its own, a requantization rather than a mistake.
_COPYING = GRID_PRESERVING - {"MaxPool", "MaxRoiPool", "ReduceMax", "ReduceMin", "TopK"}
# Movers whose output quantizer AIMET ties with its inputs': all of them share one encoding.
_TIED = TIED_OUTPUT_OPS & DATA_MOVERS
# Movers whose output equal to its input's is AIMET's derived copy (a Clip's and the tied
# ops' outputs have their own quantizer).
_FORWARD_COPIES = DATA_MOVERS - TIED_OUTPUT_OPS - {"Clip"}
_PROBABILITIES = frozenset({"Sigmoid", "Softmax", "HardSigmoid"})
_INT32 = (-(2**31), 2**31 - 1)


@dataclass(frozen=True)
class Model:
    """What the rules know of a graph, computed once: parameter roles, constants, tensors the
    converter fuses away."""

    graph: Graph
    roles: dict[str, ParamRole]
    constants: frozenset[str]
    fused: frozenset[str]

    @classmethod
    def of(cls, graph: Graph) -> "Model":
        return cls(graph, graph.param_roles(), _constants(graph), _fused(graph))

    def params(self, encodings: Encodings) -> set[str]:
        """The encoded parameters (weights, biases): never overwritten by a derived copy."""
        return {n for n in encodings if n in self.roles and self.roles[n].role != "other"}


def check(subject: Subject) -> list[Finding]:
    """Every finding against `subject.graph`, using `subject.encodings` (the entries the
    reader took) and `subject.tensors` (the model's parameter values)."""
    assert subject.graph is not None
    m = Model.of(subject.graph)
    encodings = subject.encodings
    missing = missing_copies(m, encodings)
    # entries the reader refused are in the file all the same: another rule names them
    unreadable = {e.name for e in subject.entries if e.name and e.name not in encodings}
    skip = {enc.name for enc in missing} | unreadable
    return [
        *unknown_names(subject),
        *unencoded(m, encodings, skip),
        *missing_biases(subject, m, encodings, unreadable),
        *mismatches(m, encodings),
        *_missing_findings(m, encodings, missing),
        *probabilities(m, encodings),
        *bias_scales(m, encodings),
        *overflows(m, encodings, subject),
        *mixed_precision(m, encodings, skip),
    ]


# --- the graph ---------------------------------------------------------------------------


def _constants(graph: Graph) -> frozenset[str]:
    """Initializers, Constant outputs, and the outputs of nodes fed by constants alone."""
    found = set(graph.initializers)
    for node in graph.nodes:
        inputs = [name for name in node.inputs if name]
        if node.op == "Constant" or (inputs and all(name in found for name in inputs)):
            found.update(name for name in node.outputs if name)
    return frozenset(found)


def _fused(graph: Graph) -> frozenset[str]:
    return frozenset(
        name
        for node in graph.nodes
        if node.op in _LAYERS and node.outputs and node.outputs[0]
        for name in _fused_after(graph, node)
    )


def _fused_after(graph: Graph, layer: Node) -> list[str]:
    """The tensors a converter fuses away after `layer`: a linear layer's MatMul output
    before its bias Add, a layer output into the BatchNormalization folded into it, and the
    (bias-added, normalised) output when a Relu / Clip is its only consumer."""
    out, inside = layer.outputs[0], []
    add = graph.bias_add(layer) if layer.op == "MatMul" else None
    if add is not None and add[0].outputs[0]:
        inside.append(out)
        out = add[0].outputs[0]
    norm = _sole_consumer(graph, out, {"BatchNormalization"})
    if norm is not None and norm.outputs and norm.outputs[0]:
        inside.append(out)
        out = norm.outputs[0]
    if _sole_consumer(graph, out, _FUSED_ACTIVATIONS) is not None:
        inside.append(out)
    return inside


def _sole_consumer(graph: Graph, name: str, ops: set | frozenset) -> Optional[Node]:
    """The node of `ops` that reads `name` as its data input, when nothing else reads it."""
    uses = graph.consumers.get(name, [])
    if len(uses) != 1 or name in graph.outputs:
        return None
    node, index = uses[0]
    return node if node.op in ops and index == 0 else None


def _tensors(m: Model, node: Node) -> tuple[list[str], list[str]]:
    """A node's activation inputs and outputs: the tensors that carry values, without
    constants and fused tensors."""
    graph = m.graph
    if node.op in DATA_MOVERS:
        inputs, outputs = graph.float_inputs(node), graph.float_outputs(node)
    else:
        positions = _VALUE_INPUTS.get(node.op)
        inputs = [
            name for i, name in enumerate(node.inputs)
            if name and (positions is None or i in positions)
        ]  # fmt: skip
        outputs = [name for name in node.outputs[:1] if name]
    kept = [name for name in inputs if name not in m.constants and name not in m.fused]
    return kept, [name for name in outputs if name not in m.fused]


def observed_tensors(m: Model, encodings: Encodings) -> set[str]:
    """The encoded tensors read as observed by a quantizer: all but AIMET's derived copies,
    the outputs of Reshape, Flatten ... (always copies) and of the other movers when equal
    to their input's."""
    copies = set()
    for node in m.graph.nodes:
        if node.op not in _FORWARD_COPIES or not node.inputs:
            continue
        source = encodings.get(node.inputs[0])
        copies.update(
            out for out in m.graph.float_outputs(node)
            if node.op in ENCODING_PASSTHROUGH or model.same_grid(encodings.get(out), source)
        )  # fmt: skip
    return set(encodings) - copies


# --- unknown-name, unencoded-tensor, missing-bias ----------------------------------------


def unknown_names(subject: Subject) -> list[Finding]:
    """Entries whose name the model does not have: in 0.6.1 / 1.0.0 parameters must be
    initializers and activations tensors; in 2.x any tensor name will do."""
    graph = subject.graph
    assert graph is not None
    tensors, initializers = sorted(graph.tensor_names), sorted(graph.initializers)
    kinds: dict[str, Optional[str]] = {}
    for entry in subject.entries:
        kinds.setdefault(entry.name, entry.kind)
    found = []
    for name in subject.encodings:
        param = subject.version in LEGACY and kinds.get(name) == "param"
        if name in (graph.initializers if param else graph.tensor_names):
            continue
        what = "an initializer" if param else "a tensor"
        hint = model.closest_hint(name, initializers if param else tensors)
        found.append(Finding("unknown-name", name, f"is not {what} of the model{hint}"))
    return found


# What the converter does with a tensor that has no encoding.
_FALLS_BACK = "the converter quantizes it with its own defaults or leaves it in float"


def unencoded(m: Model, encodings: Encodings, skip: set[str]) -> list[Finding]:
    """Activation inputs and outputs of quantizable ops without an encoding (`skip`: those
    another rule reports), then the weights of quantizable layers without one."""
    found: dict[str, Finding] = {}
    for node in m.graph.nodes:
        if node.op not in QUANTIZABLE:
            continue
        inputs, outputs = _tensors(m, node)
        for name, where in [*((n, "input") for n in inputs), *((n, "output") for n in outputs)]:
            if name not in encodings and name not in skip and name not in found:
                found[name] = Finding(
                    "unencoded-tensor", name,
                    f"{where} of {node.op} {node.name!r} has no encoding: {_FALLS_BACK}",
                )  # fmt: skip
    weights = [
        Finding(
            "unencoded-tensor", name,
            f"weight of {role.op} {role.node!r} has no encoding: {_FALLS_BACK}",
        )
        for name, role in m.roles.items()
        if role.role == "weight" and role.op in _WEIGHTED
        and name not in encodings and name not in skip
    ]  # fmt: skip
    return [*found.values(), *weights]


def missing_biases(
    subject: Subject, m: Model, encodings: Encodings, skip: set[str] = frozenset()
) -> list[Finding]:
    """2.x files for qairt: layer biases without an entry whose weight has one (`skip`:
    entries the file has but the reader refused)."""
    if subject.version in LEGACY or subject.target != "qairt":
        return []
    return [
        Finding(
            "missing-bias", name,
            f"bias of {role.op} {role.node!r} has no int32 entry while its weight "
            f"{role.weight!r} has one: QAIRT quantizes it with its own default",
        )
        for name, role in m.roles.items()
        if role.role == "bias" and role.weight in encodings
        and name not in encodings and name not in skip
    ]  # fmt: skip


# --- data-movement-mismatch --------------------------------------------------------------


def _pairs(m: Model, node: Node) -> list[tuple[str, str]]:
    """(reference, copy): the tensors at `node` that AIMET's export gives one encoding, the
    copy's derived from the reference's. Copying movers: value input -> outputs; tied
    Concat / Scatter: every activation input and the output; Clip: output -> the inputs it
    is copied to (a fused input, the bound constants)."""
    graph = m.graph
    if node.op == "Clip":
        inputs = [n for n in graph.float_inputs(node) if n in m.fused or n in m.constants]
        return [(node.outputs[0], name) for name in inputs] if node.outputs else []
    if node.op in _COPYING:
        inputs = [n for n in graph.float_inputs(node)[:1] if n not in m.constants]
    elif node.op in _TIED:
        inputs = [n for n in graph.float_inputs(node) if n not in m.constants]
    else:
        return []
    return [(source, out) for out in graph.float_outputs(node) for source in inputs]


def mismatches(m: Model, encodings: Encodings) -> list[Finding]:
    """Copies whose encoding differs from their reference's (per-tensor references only:
    AIMET copies those), one finding per copy."""
    found: dict[str, Finding] = {}
    for node in m.graph.nodes:
        for source, copy in _pairs(m, node):
            a, b = encodings.get(source), encodings.get(copy)
            if a is None or b is None or copy in found or not model.per_tensor(a):
                continue
            if not model.same_grid(a, b):
                found[copy] = Finding(
                    "data-movement-mismatch", copy,
                    f"{_grid(b)} differs from {_grid(a)} of {source!r} across {node.op} "
                    f"{node.name!r}: AIMET's export gives both one encoding; the converter "
                    f"requantizes between them",
                )  # fmt: skip
    return list(found.values())


def missing_copies(m: Model, encodings: Encodings) -> list[Encoding]:
    """The copies AIMET's export derives across data movers (`ops.model.derived_activations`)
    that the file lacks, but for fused tensors and constants (the converter needs none)."""
    derived = model.derived_activations(m.graph, encodings, m.params(encodings))
    return [enc for enc in derived if enc.name not in m.fused and enc.name not in m.constants]


def _missing_findings(m: Model, encodings: Encodings, missing: list[Encoding]) -> list[Finding]:
    known = {**encodings, **{enc.name: enc for enc in missing}}
    found = []
    for enc in missing:
        node, source = _across(m.graph, enc, known)
        found.append(
            Finding(
                "data-movement-mismatch",
                enc.name,
                f"has no encoding; AIMET's export gives it the encoding of {source!r} "
                f"across {node.op} {node.name!r}",
            )  # fmt: skip
        )
    return found


def _across(graph: Graph, enc: Encoding, known: Encodings) -> tuple[Node, str]:
    """The mover and the tensor a derived copy comes from: the producer's value input, or a
    consuming mover's output."""
    candidates = []
    producer = graph.producers.get(enc.name)
    if producer is not None and producer.op in DATA_MOVERS and producer.inputs:
        candidates.append((producer, producer.inputs[0]))
    for node, _ in graph.consumers.get(enc.name, []):
        if node.op in DATA_MOVERS:
            candidates += [(node, out) for out in graph.float_outputs(node)[:1]]
    for node, source in candidates:
        if model.same_grid(known.get(source), enc):
            return node, source
    return candidates[0]


def _grid(enc: Encoding) -> str:
    """A grid in a message: scale and offset (the first channel's and the count)."""
    scale = np.asarray(enc.scale, dtype=np.float32).reshape(-1)
    offset = np.asarray(enc.offset, dtype=np.float32).reshape(-1)
    cells = f" ({scale.size} channels, first)" if scale.size > 1 else ""
    return f"scale {scale[0]} offset {int(offset[0])} [{enc.qmin}, {enc.qmax}]{cells}"


# --- probability-range, bias-scale, bias-overflow ----------------------------------------


def probabilities(m: Model, encodings: Encodings) -> list[Finding]:
    """Sigmoid / Softmax outputs whose grid reaches beyond [0, 1] by more than one step."""
    found = []
    for node in m.graph.nodes:
        enc = encodings.get(node.outputs[0]) if node.op in _PROBABILITIES and node.outputs else None
        if enc is None:
            continue
        lo, hi = np.asarray(enc.min, np.float64), np.asarray(enc.max, np.float64)
        step = np.asarray(enc.scale, np.float64)
        if np.any(lo < -step) or np.any(hi > 1 + step):
            found.append(
                Finding(
                    "probability-range",
                    node.outputs[0],
                    f"range [{np.min(lo):.6g}, {np.max(hi):.6g}] reaches beyond [0, 1], where "
                    f"{node.op} outputs lie: the levels outside are never used",
                )  # fmt: skip
            )
    return found


def expected_biases(m: Model, encodings: Encodings) -> Iterator[tuple[Encoding, Encoding]]:
    """(entry, expected) for every int32 layer bias AIMET would give a product scale
    (`ops.model.product_bias`, with `observed_tensors` for the tensors a quantizer observed)."""
    observed = observed_tensors(m, encodings)
    for name, role in m.roles.items():
        bias = encodings.get(name)
        if role.role != "bias" or role.weight is None or bias is None or not _int32(bias):
            continue
        expected = model.product_bias(m.graph, bias, role, encodings, encodings, observed)
        if expected is not None:
            yield bias, expected


def _int32(enc: Encoding) -> bool:
    return (enc.qmin, enc.qmax) == _INT32


def bias_scales(m: Model, encodings: Encodings) -> list[Finding]:
    """int32 biases whose scale is not float32(input scale x weight scale) per channel, or
    whose offset is not 0."""
    found = []
    for bias, expected in expected_biases(m, encodings):
        problem = scale_problem(bias, expected)
        if problem:
            role = m.roles[bias.name]
            found.append(
                Finding(
                    "bias-scale",
                    bias.name,
                    f"{problem}; expected float32(scale of input {role.layer_input!r} x scale "
                    f"of weight {role.weight!r})",
                )  # fmt: skip
            )
    return found


def scale_problem(bias: Encoding, expected: Encoding) -> Optional[str]:
    scale = np.asarray(bias.scale, dtype=np.float32).reshape(-1)
    want = np.asarray(expected.scale, dtype=np.float32).reshape(-1)
    if scale.size != want.size:
        return f"has {scale.size} scale(s), not one per weight channel ({want.size})"
    if np.any(np.asarray(bias.offset) != 0):
        return "has a non-zero offset"
    wrong = np.flatnonzero(scale != want)
    if not wrong.size:
        return None
    i = int(wrong[0])
    where = f"{wrong.size} of {scale.size} channels, first {i}: " if scale.size > 1 else ""
    return f"scale is wrong ({where}{scale[i]} instead of {want[i]})"


def overflows(m: Model, encodings: Encodings, subject: Subject) -> list[Finding]:
    """int32 biases whose values quantize outside int32 at the entry's scale. One level
    beyond is the symmetric grid's own edge (AIMET's statistical int32 encoding puts the
    largest positive value at 2^31), not an overflow."""
    found = []
    for name, role in m.roles.items():
        bias, ref = encodings.get(name), subject.tensors.get(name)
        if role.role != "bias" or bias is None or ref is None or not _int32(bias):
            continue
        outside, size, steps = model.overflow_steps(bias, decoded(ref.read(), ref.dtype), slack=1)
        if outside:
            found.append(
                Finding(
                    "bias-overflow",
                    name,
                    f"{outside} of {size} values fall outside int32 at the entry's scale (up "
                    f"to {steps:.3g} steps): the device clips them",
                )  # fmt: skip
            )
    return found


# --- mixed-precision-op ------------------------------------------------------------------


def mixed_precision(m: Model, encodings: Encodings, skip: set[str]) -> list[Finding]:
    """Quantizable ops and data movers with some activations encoded and others not (fused
    tensors, constants and the copies another rule reports do not count)."""
    found = []
    for node in m.graph.nodes:
        if node.op not in QUANTIZABLE and node.op not in DATA_MOVERS:
            continue
        inputs, outputs = _tensors(m, node)
        names = [name for name in dict.fromkeys([*inputs, *outputs]) if name not in skip]
        bare = [name for name in names if name not in encodings]
        if bare and len(bare) < len(names):
            encoded = [name for name in names if name in encodings]
            found.append(
                Finding(
                    "mixed-precision-op",
                    node.name or names[0],
                    f"{node.op} with {_listed(encoded)} encoded but {_listed(bare)} not: the "
                    f"op runs in float with conversions around it, or HTP rejects it",
                )  # fmt: skip
            )
    return found


def _listed(names: list[str]) -> str:
    shown = ", ".join(repr(name) for name in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")
