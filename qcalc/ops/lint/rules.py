"""The lint rules: a stable kebab-case id each, its severity, what it checks and which
converter behaviour or AIMET rule it protects. No numpy: `qcalc lint --help` lists them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]
Target = Literal["qnn", "qairt"]
TARGETS: tuple[str, ...] = ("qnn", "qairt")


@dataclass(frozen=True)
class Rule:
    """One lint rule; `model` rules need --model; `fixable` ones `--fix` repairs."""

    id: str
    severity: Severity
    summary: str
    source: str
    model: bool = False
    fixable: bool = False


RULES: dict[str, Rule] = {
    rule.id: rule
    for rule in (
        # --- the file alone -----------------------------------------------------------------
        Rule(
            "missing-field", "error",
            "a field the version's parser requires is absent (1.0.0: bw, dtype, enc_type, "
            "is_sym, scale, offset; 0.6.1: bitwidth, dtype, is_symmetric, min, max, scale, "
            "offset; 2.x: output_dtype, y_scale)",
            "QNN's 1.0.0 parser rejects an entry without bw; without dtype it validates the "
            "entry as int but does not mark it fixed-point",
        ),
        Rule(
            "unpaired-field", "error",
            "min without max, scale without offset (or the reverse), or per-channel lists of "
            "different lengths",
            "the legacy parsers read them in pairs",
        ),
        Rule(
            "invalid-entry", "error",
            "an entry qcalc's reader refuses (wrong types, offsets off the grid, min / max "
            "that disagree with scale / offset, ...), with the reader's reason",
            "AIMET's writer never produces it; converters read it differently or not at all",
        ),
        Rule(
            "duplicate-name", "error", "two entries for one tensor",
            "the converters keep one of them silently",
        ),
        Rule(
            "legacy-symmetric-offset", "error",
            "a symmetric 0.6.1 / 1.0.0 entry whose offset is not -2^(bw-1) (the unsigned "
            "convention those files use)",
            "the legacy parser rewrites or refuses other symmetric offsets",
            fixable=True,
        ),
        Rule(
            "channel-not-symmetric", "error",
            "a per-channel, per-block or LPBQ entry that is not symmetric with offset 0 or "
            "-2^(bw-1)",
            "QNN supports only symmetric axis and block quantization",
        ),
        Rule(
            "block-fields", "error",
            "PER_BLOCK without block_size; LPBQ without block_size, compressed_bw or "
            "per_block_int_scale (2.x: per-block entries without block_size or axis, LPBQ "
            "ones without their multipliers, per-channel scales, block_size or axis), or a "
            "per_block_int_scale outside 1 .. 2^(bw - compressed_bw)",
            "AIMET's block and LPBQ exports; the converter rejects incomplete entries",
        ),
        Rule(
            "mixed-channels", "error",
            "the channels of one 0.6.1 entry differ in bitwidth or symmetry",
            "one tensor has one quantization datatype in QNN",
        ),
        Rule(
            "scale-range", "error",
            "a scale that is not finite or lies outside 1e-10 .. 1e10 (AIMET's minimum scale "
            "is a dead-channel instead)",
            "such scales overflow or underflow the converter's fixed-point arithmetic",
        ),
        Rule(
            "dead-channel", "warning",
            "a scale at AIMET's minimum (2^-23 for 8 and 16 bits, 0.01 / (2^32 - 1) for "
            "int32 biases): the channel held only zeros",
            "AIMET's minimum-scale rule; usually a pruned or dead channel worth a look",
        ),
        Rule(
            "qnn-bias-bitwidth", "warning",
            "--target qnn and no bias entry: qnn-onnx-converter quantizes biases at its "
            "--bias_bitwidth default of 8; pass --bias_bitwidth 32",
            "qnn-onnx-converter's defaults",
        ),
        Rule(
            "wrong-target", "error",
            "a 2.0.0 / 2.1.0 file for --target qnn (qnn-onnx-converter reads 0.6.1 and 1.0.0; "
            "2.x is for qairt-converter)",
            "the converters' supported versions",
        ),
        # --- against the model --------------------------------------------------------------
        Rule(
            "unknown-name", "error",
            "a name that is not in the model (parameters: initializers; activations: tensor "
            "names), with the closest real names",
            "the converter drops entries whose names do not match the graph, silently",
            model=True, fixable=True,
        ),
        Rule(
            "unencoded-tensor", "warning",
            "a tensor the converter will quantize (an activation input or output of a "
            "quantizable op, a layer's weight) without an encoding, except what the converter "
            "fuses away (a Conv / Gemm / MatMul output feeding only a Relu / Clip, a linear "
            "layer's MatMul before its bias Add, a BatchNormalization folded into its conv) "
            "and constants",
            "the converter quantizes it with its own defaults or leaves it in float: the "
            "'24% of the tensors in float' failure",
            model=True,
        ),
        Rule(
            "missing-bias", "warning",
            "a 2.x (qairt) file without the int32 entry of a quantized layer's bias",
            "AIMET's 2.0.0 export writes int32 biases; without one QAIRT uses its own default",
            model=True, fixable=True,
        ),
        Rule(
            "data-movement-mismatch", "error",
            "a data-movement op (Reshape, Transpose, Flatten, Squeeze, Unsqueeze, Concat, "
            "Gather, ...) whose output encoding differs from its input's, or is missing where "
            "AIMET's export derives one; a Clip whose fused input or bounds differ from its "
            "output",
            "AIMET derives the output's encoding from the input's; the converter requantizes",
            model=True, fixable=True,
        ),
        Rule(
            "probability-range", "error",
            "a Sigmoid or Softmax output whose encoding reaches beyond [0, 1] by more than "
            "one grid step",
            "wasted grid levels on values the op never produces",
            model=True,
        ),
        Rule(
            "bias-scale", "error",
            "an int32 bias whose scale is not float32(input scale x weight scale) per channel",
            "AIMET's int32 bias rule; the accumulator needs exactly that scale",
            model=True, fixable=True,
        ),
        Rule(
            "bias-overflow", "error",
            "bias values that do not fit int32 at the bias entry's scale (more than the "
            "symmetric grid's one level at its edge)",
            "they are clipped on the device",
            model=True,
        ),
        Rule(
            "mixed-precision-op", "warning",
            "an op with some activation inputs / outputs encoded and others not (HTP rejects "
            "ops that mix integer and float tensors)",
            "HTP's op validation",
            model=True,
        ),
    )
}  # fmt: skip


def default_target(version: str) -> str:
    """The converter a version is for: 0.6.1 / 1.0.0 qnn-onnx-converter, 2.x qairt."""
    return "qnn" if version in ("0.6.1", "1.0.0") else "qairt"
