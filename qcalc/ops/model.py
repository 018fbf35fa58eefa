"""Whole ONNX models: the encodings AIMET's QuantSim export writes for a graph beyond the
tensors it observes. Each rule names the section of tests/golden/models/README.md it follows.

- op-aware parameter settings: the consumer's output-channel axis (section 4), parameters of
  ops qcalc does not know per tensor;
- activation names checked against the graph;
- tied quantizers: a Concat's output shares one encoding with the tensors that feed it,
  calibrated on all of them (section 3);
- data-movement copies: Reshape / Transpose / Flatten ... outputs take their input's encoding,
  a Clip's input and bound constants take its output's (section 3);
- int32 biases: scale = float32(input scale x weight scale) per channel, or the statistical
  32-bit encoding when there is no such pair (section 1); AIMET writes them in 2.x only.
"""

from __future__ import annotations

import bisect
import dataclasses
import difflib
from typing import Iterable, Mapping, Optional

import numpy as np

from qcalc.core import grid
from qcalc.core.dtypes import decoded
from qcalc.core.encoding import Encoding
from qcalc.core.graph import (
    DATA_MOVERS,
    ENCODING_PASSTHROUGH,
    TIE_THROUGH,
    TIED_OUTPUT_OPS,
    Graph,
    ParamRole,
)
from qcalc.core.spec import Spec
from qcalc.core.tensor import TensorRef
from qcalc.errors import FilterError, SpecError
from qcalc.io.text import quote

INT32_BIAS_BITWIDTH = 32
# The recipes' int32 bias rule: 32 bits, symmetric, signed, min-max, per tensor.
INT32_BIAS_SPEC = Spec(bitwidth=INT32_BIAS_BITWIDTH, symmetric=True, signed=True)
# AIMET's smallest scale on a 32-bit grid: float32(0.01 / (2^32 - 1))
_INT32_MINIMUM_SCALE = np.float32(grid.minimum_scale(2**INT32_BIAS_BITWIDTH - 1))


def param_spec(ref: TensorRef, spec: Spec, graph_axis: bool) -> Spec:
    """`spec` for a model parameter before recipe rules: the channel axis its consumer implies
    (unless --axis was given), per tensor where the op has no channel axis."""
    role = ref.param
    if role is None:
        return spec
    if role.role == "other":
        return dataclasses.replace(spec, per_channel=False, block_size=None, lpbq=False)
    if graph_axis and role.axis is not None:
        return dataclasses.replace(spec, axis=role.axis % max(len(ref.shape), 1))
    return spec


# A "closest" hint costs difflib up to milliseconds a pair of names (more for long names), so
# it is given for names of at most HINT_CHARS characters, among the HINT_CANDIDATES graph
# names nearest in sorted order.
HINT_CANDIDATES = 100
HINT_CHARS = 120


def check_activation_names(graph: Graph, names: Iterable[str]) -> None:
    """Activation dumps must be keyed by the graph's tensor names: FilterError listing the
    names that are not, each with the closest graph names."""
    missing = [name for name in names if name not in graph.tensor_names]
    if not missing:
        return
    candidates = sorted(graph.tensor_names)
    shown = [f"{quote(name)}{closest_hint(name, candidates)}" for name in missing[:LISTED]]
    raise FilterError(
        f"{graph.source}: {len(missing)} activation name(s) are not tensors of the graph: "
        f"{_listing(shown, len(missing), '; ')}"
    )


LISTED = 5  # names an error lists before "and N more"


def _listing(shown: list[str], total: int, separator: str) -> str:
    """The first LISTED of `total` items, and how many more there are."""
    more = f" and {total - LISTED} more" if total > LISTED else ""
    return separator.join(shown[:LISTED]) + more


def closest_hint(name: str, candidates: list[str]) -> str:
    """The hint naming the two sorted `candidates` closest to `name` (difflib): " (closest:
    'a', 'b')", or "" when none is close. Bounded: names of at most HINT_CHARS characters,
    among the HINT_CANDIDATES candidates around `name`."""
    if len(name) > HINT_CHARS:
        return ""
    close = difflib.get_close_matches(name, _near(name, candidates), n=2, cutoff=0.5)
    return f" (closest: {', '.join(quote(c) for c in close)})" if close else ""


def _near(name: str, candidates: list[str]) -> list[str]:
    """At most HINT_CANDIDATES of the sorted `candidates`: those around `name`."""
    if len(candidates) <= HINT_CANDIDATES:
        return candidates
    at = bisect.bisect_left(candidates, name)
    start = min(max(at - HINT_CANDIDATES // 2, 0), len(candidates) - HINT_CANDIDATES)
    return candidates[start : start + HINT_CANDIDATES]


def check_parameter_names(graph: Graph, params: Iterable[TensorRef], names: Iterable[str]) -> None:
    """Activations must not be named like a parameter the model encodes (a dump keyed by an
    initializer): an encodings file holds one entry per tensor. FilterError naming them."""
    roles = {ref.name: ref.param for ref in params}
    clashes = [name for name in names if name in roles]
    if not clashes:
        return
    shown = []
    for name in clashes[:LISTED]:
        role = roles[name]
        what = f" ({quote(role.op, '')} {role.role})" if role is not None else ""
        shown.append(quote(name) + what)
    raise FilterError(
        f"{graph.source}: {len(clashes)} activation name(s) are parameters of the graph, "
        f"encoded from the model: {_listing(shown, len(clashes), ', ')}"
    )


def tied_groups(graph: Graph, encoded: Iterable[str]) -> list[list[str]]:
    """Sets of activations that share one quantizer (section 3): each Concat (Scatter, Relu)
    output with the nearest encoded tensor behind each of its inputs (looking through
    Reshape, Transpose ...), merged when they overlap; members in graph order, groups of two
    or more only."""
    encoded = set(encoded)
    parent: dict[str, str] = {}
    sources: dict[str, Optional[str]] = {}  # each chain walked once, however many ties

    def root(name: str) -> str:
        path = []
        while parent.get(name, name) != name:
            path.append(name)
            name = parent[name]
        for member in path:  # path compression: long chains of ties stay linear
            parent[member] = name
        return name

    for node in graph.nodes:
        if node.op not in TIED_OUTPUT_OPS or not node.outputs or node.outputs[0] not in encoded:
            continue
        for source in node.inputs:
            source = _encoded_source(graph, source, encoded, sources)
            if source is not None:
                parent[root(source)] = root(node.outputs[0])
    order = {name: i for i, name in enumerate(_graph_order(graph))}
    groups: dict[str, list[str]] = {}
    for name in {*parent, *parent.values()}:
        groups.setdefault(root(name), []).append(name)
    return [
        sorted(members, key=lambda n: order.get(n, len(order)))
        for members in groups.values()
        if len(members) > 1
    ]


def _encoded_source(
    graph: Graph, name: str, encoded: set[str], known: dict[str, Optional[str]]
) -> Optional[str]:
    """`name` if it is encoded, else the encoded tensor a chain of value-preserving ops
    (Reshape, Transpose, ...) copies it from; `known` caches the answer of every tensor
    walked through."""
    chain: dict[str, None] = {}  # the tensors walked through, in order
    found = None
    while name and name not in chain:  # a loop of Reshapes ends the walk
        if name in encoded or name in known:
            found = name if name in encoded else known[name]
            break
        node = graph.producers.get(name)
        if node is None or node.op not in TIE_THROUGH:
            break
        chain[name] = None
        name = node.inputs[0] if node.inputs else ""
    known.update(dict.fromkeys(chain, found))
    return found


def _graph_order(graph: Graph) -> list[str]:
    return [*graph.inputs, *(name for node in graph.nodes for name in node.outputs)]


def interleaved(members: list[list[TensorRef]]) -> list[TensorRef]:
    """The observations of a tied quantizer in AIMET's order: batch by batch, and within a
    batch in graph order (the order the quantizer is called in a forward pass). The tensors
    must share a dtype: SpecError naming two that do not."""
    first = members[0][0]
    for batches in members[1:]:
        if batches[0].dtype.name != first.dtype.name:
            raise SpecError(
                f"{batches[0].where}: dtype {batches[0].dtype.name} differs from "
                f"{first.dtype.name} of {quote(first.name)} in {first.source}; tensors that "
                f"share one quantizer (tied by a Concat, Relu ...) must share a dtype"
            )
    rounds = max(len(batches) for batches in members)
    return [b[i] for i in range(rounds) for b in members if i < len(b)]


def derived_activations(
    graph: Graph, encodings: dict[str, Encoding], params: Iterable[str] = ()
) -> list[Encoding]:
    """Encodings AIMET's export adds for tensors no quantizer observed (section 3), in the
    order it derives them: every data mover in graph order, then in reverse order. Backward:
    when a mover's value outputs share one per-tensor encoding, each value input without one
    (and with no other consumer) copies it, so a Clip's input and bound constants take the
    Clip output's. Forward: a value output without an encoding copies the first input's, when
    that is per-tensor and every value input has the same (Pad: the first input alone).
    `params` names tensors that have a parameter encoding, never overwritten."""
    known = dict(encodings)
    taken = set(params)
    added: list[Encoding] = []
    movers = [node for node in graph.nodes if node.op in DATA_MOVERS]
    for node in [*movers, *reversed(movers)]:
        found: dict[str, Encoding] = {}
        inputs, outputs = graph.float_inputs(node), graph.float_outputs(node)
        out = [known.get(name) for name in outputs]
        if out and all(e is not None and same_grid(e, out[0]) for e in out) and per_tensor(out[0]):
            for name in inputs:
                if name not in known and name not in taken:
                    if len(graph.consumers.get(name, ())) <= 1:
                        found[name] = dataclasses.replace(out[0], name=name)
        first = known.get(node.inputs[0]) if node.inputs else None
        if (
            first is not None
            and per_tensor(first)
            and (node.op == "Pad" or all(same_grid(known.get(name), first) for name in inputs))
        ):
            for name in outputs:
                if name not in known and name not in taken:
                    found[name] = dataclasses.replace(first, name=name)
        known.update(found)
        added += found.values()
    return added


def per_tensor(enc: Encoding) -> bool:
    return enc.granularity == "per-tensor"


def same_grid(a: Optional[Encoding], b: Optional[Encoding]) -> bool:
    """Whether two encodings have the same grid (AIMET compares the exported entries)."""
    return (
        a is not None
        and b is not None
        and (a.qmin, a.qmax) == (b.qmin, b.qmax)
        and np.array_equal(a.scale, b.scale)
        and np.array_equal(a.offset, b.offset)
    )


# Layers whose weight AIMET's compute_encodings adjusts against bias overflow and requant
# scale underflow, then resets through set_range (aimet_torch nn/true_quant.py,
# _compute_encodings_with_overflow_protection); MatMul stands for nn.Linear.
PROTECTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
_BIAS_LIMIT = 2**31 - 2**15  # AIMET's headroom below int32 for the accumulated bias
_UNDERFLOW = np.float32(2**-23.5)  # smallest requant scale AIMET allows, over sy / sx


def protect_weights(
    params: list[Encoding], refs: dict[str, TensorRef], observed: dict[str, Encoding]
) -> list[Encoding]:
    """AIMET's final step on Conv / ConvTranspose / Linear weights (section 7 of the models
    README): when the layer's input and output are both observed (a fused Conv + ReLU has no
    output quantizer), the weight scale grows where a bias would overflow int32 or the
    requant scale underflow, and the range is set again from the grid's ends, recomputing the
    scale as (max - min) / steps in float32 (one ulp off the analyzer's for some channels)."""
    result = []
    for enc in params:
        role = refs[enc.name].param if enc.name in refs else None
        x = observed.get(role.layer_input or "") if role is not None else None
        y = observed.get(role.layer_output or "") if role is not None else None
        if (
            role is None or role.role != "weight" or role.op not in PROTECTED_OPS
            or x is None or y is None or np.size(x.scale) != 1 or np.size(y.scale) != 1
            or enc.granularity not in ("per-tensor", "per-channel")
        ):  # fmt: skip
            result.append(enc)
            continue
        bias = refs.get(role.bias or "")
        values = np.zeros((), np.float32) if bias is None else _float32(bias)
        if enc.spec.nonfinite == "ignore":  # skipped everywhere: a NaN bias bounds nothing
            values = np.where(np.isfinite(values), values, np.float32(0))
        result.append(_protected(enc, values, x, y))
    return result


def _float32(ref: TensorRef) -> np.ndarray:
    return np.asarray(decoded(ref.read(), ref.dtype), dtype=np.float32)


@np.errstate(all="ignore")
def _protected(weight: Encoding, bias: np.ndarray, x: Encoding, y: Encoding) -> Encoding:
    sx, sy = np.float32(x.scale), np.float32(y.scale)
    oy = np.float32(y.offset)
    sw = np.asarray(weight.scale, dtype=np.float32)
    if sw.ndim == 0:
        bias = np.max(np.abs(bias)) if bias.size else np.float32(0)
    elif bias.size == sw.size:
        bias = bias.reshape(sw.shape)
    else:
        return weight  # a bias that does not match the channels: AIMET's derivation fails too
    bias = np.asarray(bias, dtype=np.float32)
    w1 = _against_overflow(bias, sx, sw)
    w2 = np.maximum(w1, (_UNDERFLOW * sy) / sx)
    bias_scale = (sx * w2).astype(np.float32)
    accumulated = np.rint(bias / bias_scale) + np.rint(oy * sy / bias_scale)
    w3 = _against_overflow((accumulated * bias_scale).astype(np.float32), sx, w2)
    lo, hi = grid.effective_range(w3, weight.offset, weight.qmin, weight.qmax)
    scale, offset = grid.scale_offset(
        lo, hi, weight.qmin, weight.qmax, weight.spec.symmetric,
        weight.spec.symmetric_offset == "zero",
    )  # fmt: skip
    if weight.spec.symmetric:
        offset = np.asarray(weight.offset, dtype=np.float32)
    return Encoding.on_grid(
        weight.name, weight.source, weight.spec, weight.granularity, scale, offset,
        raw_min=weight.raw_min, raw_max=weight.raw_max, dtype=weight.dtype, shape=weight.shape,
        axis=weight.axis, metrics=weight.metrics,
    )  # fmt: skip


def _against_overflow(bias: np.ndarray, sx: np.float32, sw: np.ndarray) -> np.ndarray:
    """The weight scale at least |bias| / (limit x input scale), in float64 as AIMET."""
    needed = np.abs(bias.astype(np.float64) / (_BIAS_LIMIT * np.float64(sx)))
    return np.maximum(sw.astype(np.float64), needed).astype(np.float32)


def int32_biases(
    graph: Graph,
    params: list[Encoding],
    refs: dict[str, TensorRef],
    activations: dict[str, Encoding],
    observed: Iterable[str],
) -> tuple[list[Encoding], list[str]]:
    """Biases encoded at 32 bits become AIMET's int32 bias encodings (section 1): the product
    scale where `product_bias` derives one, otherwise the statistical 32-bit encoding (per
    element when the weight is per channel). Returns the parameters (biases replaced in
    place) and warnings for biases whose values overflow int32 on their product scale."""
    by_name = {enc.name: enc for enc in params}
    observed = set(observed)
    reached: dict[str, bool] = {}  # each chain walked once, however many biases
    result, warnings = [], []
    for enc in params:
        role = refs[enc.name].param if enc.name in refs else None
        if role is None or role.role != "bias" or enc.spec.bitwidth != INT32_BIAS_BITWIDTH:
            result.append(enc)
            continue
        product = product_bias(
            graph, enc, role, by_name, activations, observed, refs[enc.name].shape, reached
        )
        if product is None:
            result.append(statistical_bias(enc, refs[enc.name], by_name.get(role.weight or "")))
            continue
        warning = _overflow(product, refs[enc.name])
        if warning:
            warnings.append(warning)
        result.append(product)
    return result, warnings


def product_bias(
    graph: Graph,
    bias: Encoding,
    role: ParamRole,
    params: Mapping[str, Encoding],
    activations: Mapping[str, Encoding],
    observed: set[str],
    shape: Optional[tuple[int, ...]] = None,
    reached: Optional[dict[str, bool]] = None,
) -> Optional[Encoding]:
    """`bias` on AIMET's product scale, float32(input scale x weight scale) per channel
    (floored at the 32-bit minimum scale), when AIMET derives one: the layer's weight has an
    encoding in `params` and its input a per-tensor one in `activations` that reaches it from
    an `observed` tensor through ops that keep it (Reshape, Flatten ...: not MaxPool), and the
    weight has one scale or one per element of the bias (`shape`, when known); else None.
    `reached` caches the walks from layer inputs across calls."""
    weight = params.get(role.weight or "")
    layer_input = activations.get(role.layer_input or "")
    if (
        weight is None or layer_input is None or not per_tensor(layer_input)
        or (shape is not None and not _scales_match(weight, shape))
        or not _reaches(graph, role.layer_input or "", observed, {} if reached is None else reached)
    ):  # fmt: skip
        return None
    return _product_scale(bias, np.float32(layer_input.scale), weight)


def statistical_bias(
    bias: Optional[Encoding], ref: TensorRef, weight: Optional[Encoding]
) -> Encoding:
    """A bias's statistical 32-bit encoding when there is no product scale: `bias` (computed
    with the recipes' bias settings; None: computed here with INT32_BIAS_SPEC), per element
    when the weight is per channel and the bias a vector (AIMET shapes the bias quantizer
    like the bias then)."""
    spec = INT32_BIAS_SPEC if bias is None else bias.spec
    if weight is not None and weight.granularity == "per-channel" and len(ref.shape) == 1:
        return _per_element(ref, spec)
    return bias if bias is not None else _calibrated(ref, spec)


def _calibrated(ref: TensorRef, spec: Spec) -> Encoding:
    from qcalc.core.calibrate import encode_batches
    from qcalc.core.tensor import DEFAULT_CHUNK_BYTES, Progress

    return encode_batches(ref.name, [ref], spec, Progress(), DEFAULT_CHUNK_BYTES)


def _per_element(ref: TensorRef, spec: Spec) -> Encoding:
    """A 1-D bias encoded element by element: calibrated as a column (C, 1) per channel on
    axis 0 (Specs keep rank-1 tensors per tensor), then laid back on the bias, axis 0."""
    from qcalc.core.tensor import array_ref

    column = np.asarray(ref.read()).reshape(-1, 1)
    spec = dataclasses.replace(spec, per_channel=True, axis=0)
    enc = _calibrated(array_ref(column, ref.name, ref.dtype), spec)
    flat = lambda values: np.asarray(values).reshape(-1)  # noqa: E731
    return Encoding.on_grid(
        ref.name, ref.source, spec, "per-channel", flat(enc.scale), flat(enc.offset),
        raw_min=flat(enc.raw_min), raw_max=flat(enc.raw_max), dtype=enc.dtype,
        shape=tuple(ref.shape), axis=0,
    )  # fmt: skip


def _scales_match(weight: Encoding, bias_shape: tuple[int, ...]) -> bool:
    """Whether input scale x weight scale can be a bias's scale: a weight with one scale, or
    a per-channel one with one channel per element of a bias vector (a broadcast Gemm / Add
    bias, one of another length, a per-block weight: the statistical encoding stays)."""
    if np.size(weight.scale) == 1:
        return True
    return weight.granularity == "per-channel" and tuple(bias_shape) == (np.size(weight.scale),)


def _reaches(graph: Graph, name: str, observed: set[str], known: dict[str, bool]) -> bool:
    """Whether tensor `name` is observed or copies an observed tensor through ops that keep
    a quantized tensor's encoding in AIMET's export; `known` caches the answer of every
    tensor walked through."""
    chain: dict[str, None] = {}  # the tensors walked through, in order
    reached = True
    while name not in observed:
        node = graph.producers.get(name)
        if name in known:
            reached = known[name]
            break
        if name in chain or node is None or node.op not in ENCODING_PASSTHROUGH:
            reached = False
            break
        chain[name] = None
        name = node.inputs[0] if node.inputs else ""
    known.update(dict.fromkeys(chain, reached))
    return reached


def _product_scale(bias: Encoding, input_scale: np.float32, weight: Encoding) -> Encoding:
    scale = (input_scale * np.asarray(weight.scale, dtype=np.float32)).astype(np.float32)
    scale = np.maximum(scale, _INT32_MINIMUM_SCALE)
    per_channel = scale.size > 1
    scale = scale.reshape(-1) if per_channel else scale.reshape(())
    offset = np.zeros_like(scale)
    return Encoding.on_grid(
        bias.name, bias.source, bias.spec,
        "per-channel" if per_channel else "per-tensor",
        scale, offset, dtype=bias.dtype, shape=bias.shape, axis=0 if per_channel else None,
    )  # fmt: skip


def _overflow(bias: Encoding, ref: TensorRef) -> Optional[str]:
    """A warning when the bias's values fall outside int32 on its product scale."""
    outside, size, steps = overflow_steps(bias, decoded(ref.read(), ref.dtype))
    if not outside:
        return None
    return (
        f"bias '{bias.name}': {outside} of {size} values fall outside int32 on its scale "
        f"(input scale x weight scale, {steps:.3g} steps); they will be clipped"
    )


def overflow_steps(enc: Encoding, values: np.ndarray, slack: int = 0) -> tuple[int, int, float]:
    """How many of `values` quantize off `enc`'s grid by more than `slack` levels
    (round(x / scale) - offset outside qmin .. qmax, per element for a grid of one cell per
    value), of how many, and the largest |round(x / scale)|; (0, n, 0.0) when the grid does
    not match the values."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    scale = np.asarray(enc.scale, dtype=np.float64).reshape(-1)
    offset = np.asarray(enc.offset, dtype=np.float64).reshape(-1)
    if scale.size not in (1, values.size) or not values.size:
        return 0, values.size, 0.0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        steps = np.rint(values / scale)
    levels = steps - offset
    outside = (levels < enc.qmin - slack) | (levels > enc.qmax + slack)
    return int(outside.sum()), values.size, float(np.max(np.abs(steps)))


@dataclasses.dataclass(frozen=True)
class Finished:
    """A model's encodings after the whole-model rules, and what the user should be told."""

    params: list[Encoding]
    activations: list[Encoding]
    notes: list[str]
    warnings: list[str]
    int32_biases: list[str]  # AIMET writes these in 2.x files only


def finish(
    graph: Graph,
    params: list[Encoding],
    activations: list[Encoding],
    refs: dict[str, TensorRef],
    metrics: bool = False,
    chunk_bytes: Optional[int] = None,
) -> Finished:
    """Apply the whole-model rules to a model's calibrated encodings: weight protection
    against bias overflow, derived activation copies, then int32 bias scales from them.
    Without activations there is no input scale: 32-bit biases are left out, with a note."""
    notes = _unknown_op_notes(refs[enc.name] for enc in params if enc.name in refs)
    warnings: list[str] = []
    is_int32 = lambda enc: _is_int32_bias(enc, refs)  # noqa: E731
    if activations:
        observed = [enc.name for enc in activations]
        params = protect_weights(params, refs, _by_name(activations))
        derived = derived_activations(graph, _by_name(activations), _by_name(params))
        activations = [*activations, *derived]
        params, warnings = int32_biases(graph, params, refs, _by_name(activations), observed)
        if metrics:
            params = [_remeasured(enc, refs[enc.name], chunk_bytes) if is_int32(enc) else enc
                      for enc in params]  # fmt: skip
    else:
        dropped = [enc.name for enc in params if is_int32(enc)]
        params = [enc for enc in params if not is_int32(enc)]
        if dropped:
            notes.append(
                f"{len(dropped)} int32 bias encoding(s) left out: their scale is the layer "
                f"input's scale x the weight's; pass --activations to write them"
            )
    int32 = [enc.name for enc in params if is_int32(enc)]
    return Finished(params, activations, notes, warnings, int32)


def _by_name(encodings: list[Encoding]) -> dict[str, Encoding]:
    return {enc.name: enc for enc in encodings}


def _is_int32_bias(enc: Encoding, refs: dict[str, TensorRef]) -> bool:
    ref = refs.get(enc.name)
    return (
        ref is not None
        and ref.param is not None
        and ref.param.role == "bias"
        and enc.spec.bitwidth == INT32_BIAS_BITWIDTH
    )


def _remeasured(enc: Encoding, ref: TensorRef, chunk_bytes: Optional[int]) -> Encoding:
    from qcalc.core.metrics import tensor_metrics

    chunks = {} if chunk_bytes is None else {"chunk_bytes": chunk_bytes}
    found = tensor_metrics([ref], enc, **chunks)
    return dataclasses.replace(enc, metrics=found)


def _unknown_op_notes(refs: Iterable[TensorRef]) -> list[str]:
    """One note per op type qcalc does not know, naming its parameters."""
    unknown: dict[str, list[str]] = {}
    for ref in refs:
        if ref.param is not None and not ref.param.known:
            unknown.setdefault(ref.param.op, []).append(ref.name)
    return [
        f"op {op}: qcalc does not know its parameters' channel axis; encoded per tensor: "
        f"{', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
        for op, names in unknown.items()
    ]
