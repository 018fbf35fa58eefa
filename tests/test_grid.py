"""Grid math: rounding, integer grids, the minimum scale, documented identities (property
tests), edge-value tables and Spec validation.

Expected numbers are hand-derived from tests/golden/NOTES.md sections 1-4 (derivation in a
comment beside each) or are invariants; none is pasted from qcalc's output.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from golden_cases import CASES, as_float32, bits_equal, load_input
from qcalc import Spec, encode_array
from qcalc.errors import NonFiniteError, SpecError
from qcalc.core.grid import minimum_scale, round_half_even
from qcalc.core.spec import integer_range

F32_EPS = 2.0**-23
F32_MAX = float(np.finfo(np.float32).max)


# --- rounding -------------------------------------------------------------------------------

TIES = [  # (x, round-half-to-even(x))
    (0.5, 0.0),
    (1.5, 2.0),
    (2.5, 2.0),
    (3.5, 4.0),
    (-0.5, -0.0),
    (-1.5, -2.0),
    (-2.5, -2.0),
]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("x, expected", TIES, ids=[f"{x}->{e}" for x, e in TIES])
def test_round_half_even_ties(x, expected, dtype):
    out = round_half_even(np.asarray(x, dtype=dtype))
    assert out.dtype == np.dtype(dtype)
    assert out == expected
    assert np.signbit(out) == (math.copysign(1.0, expected) < 0)  # -0.5 -> -0.0, not +0.0


def test_round_half_even_off_ties_rounds_to_nearest():
    x = np.array([0.49999997, 0.50000006, 1.4999999, -2.5000002], dtype=np.float32)
    assert round_half_even(x).tolist() == [0.0, 1.0, 1.0, -3.0]


# --- integer grids ---------------------------------------------------------------------------

ALL_BITWIDTHS = range(2, 33)


@pytest.mark.parametrize("bitwidth", ALL_BITWIDTHS, ids=lambda b: f"b{b}")
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_integer_range(bitwidth, signed):
    qmin, qmax = integer_range(bitwidth, signed)
    assert qmax - qmin == 2**bitwidth - 1
    if signed:
        assert (qmin, qmax) == (-(2 ** (bitwidth - 1)), 2 ** (bitwidth - 1) - 1)
    else:
        assert (qmin, qmax) == (0, 2**bitwidth - 1)
    assert isinstance(qmin, int) and isinstance(qmax, int)


@pytest.mark.parametrize("bitwidth", ALL_BITWIDTHS, ids=lambda b: f"b{b}")
def test_integer_range_strict(bitwidth):
    qmin, qmax = integer_range(bitwidth, True, strict=True)
    assert qmax - qmin == 2**bitwidth - 2
    assert (qmin, qmax) == (-(2 ** (bitwidth - 1)) + 1, 2 ** (bitwidth - 1) - 1)
    assert qmin == -qmax


# --- minimum scale ---------------------------------------------------------------------------


@pytest.mark.parametrize("bitwidth", range(2, 17), ids=lambda b: f"b{b}")
@pytest.mark.parametrize("strict", [False, True], ids=["full", "strict"])
def test_minimum_scale_is_float32_eps_up_to_16_bits(bitwidth, strict):
    qmin, qmax = integer_range(bitwidth, True, strict)
    assert minimum_scale(qmax - qmin) == 2.0**-23


@pytest.mark.parametrize("bitwidth", range(17, 33), ids=lambda b: f"b{b}")
def test_minimum_scale_above_16_bits_is_one_hundredth_of_a_step(bitwidth):
    # 0.01 / n < 2**-23 once n > 0.01 * 2**23 = 83886.08, i.e. from 17 bits on.
    n = 2**bitwidth - 1
    assert minimum_scale(n) == 0.01 / n


def test_minimum_scale_32_bits():
    assert minimum_scale(2**32 - 1) == 0.01 / (2**32 - 1)
    assert minimum_scale(2**32 - 2) == 0.01 / (2**32 - 2)  # strict 32-bit


# --- property tests --------------------------------------------------------------------------

MAGNITUDE = 1e4
_finite = dict(width=32, allow_nan=False, allow_infinity=False)
_elements = {
    "mixed": st.floats(-MAGNITUDE, MAGNITUDE, **_finite),
    "positive": st.floats(0.0, MAGNITUDE, **_finite),
    "negative": st.floats(-MAGNITUDE, 0.0, **_finite),
}


@st.composite
def tensors(draw) -> np.ndarray:
    """float32 arrays of moderate magnitude: mixed signs, all zero, constant, one-signed."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6))
    kind = draw(st.sampled_from(["mixed", "zeros", "constant", "positive", "negative"]))
    if kind == "zeros":
        return np.zeros(shape, np.float32)
    if kind == "constant":
        return np.full(shape, draw(_elements["mixed"]), np.float32)
    return draw(hnp.arrays(np.float32, shape, elements=_elements[kind]))


@st.composite
def specs(draw) -> Spec:
    """Every grid of 2..16 bits: signed / unsigned x symmetric / asymmetric (+ strict)."""
    symmetric = draw(st.booleans())
    signed = draw(st.booleans())
    strict = symmetric and signed and draw(st.booleans())
    return Spec(
        bitwidth=draw(st.integers(2, 16)),
        symmetric=symmetric,
        signed=signed,
        strict_symmetric=strict,
    )


def _two_bit_full_symmetric(enc) -> bool:
    return enc.spec.symmetric and enc.qmax - enc.qmin == 3


@settings(deadline=None)
@given(x=tensors(), spec=specs())
def test_zero_is_exactly_representable(x, spec):
    enc = encode_array(x, spec)
    zero = np.zeros(3, np.float32)
    assert np.all(enc.quantize_dequantize(zero) == 0.0)
    assert np.all(enc.quantize(zero) == -enc.offset)


@settings(deadline=None)
@given(x=tensors(), spec=specs())
def test_round_trip_error_is_at_most_half_a_step(x, spec):
    enc = encode_array(x, spec)
    inside = x
    if _two_bit_full_symmetric(enc):
        # NOTES.md section 2: with 2 bits the positive side is sized for two steps but the grid
        # has one, so positives above enc.max are clipped by up to a whole step; AIMET's rule.
        inside = x[x <= enc.max]
    xhat = enc.quantize_dequantize(inside)
    scale = float(enc.scale)
    # Float32 slack: x / scale and (q + offset) * scale each round to float32 (half an ulp of
    # a value no larger than `big`), and the grid ends enc.min / enc.max are themselves float32
    # products that can sit a few ulps inside the analyzer's range. 8 ulps of the largest
    # magnitude involved covers all of it and stays far below scale / 2 up to 16 bits
    # (scale / 2 >= big / 2**17 there, the slack is big / 2**20).
    big = max(abs(float(enc.min)), abs(float(enc.max)), float(np.abs(x).max()))
    slack = 8 * big * 2.0**-23
    err = np.abs(inside.astype(np.float64) - xhat.astype(np.float64))
    assert np.all(err <= scale / 2 + slack), (err.max(), scale)


@settings(deadline=None)
@given(x=tensors(), spec=specs())
def test_scale_offset_and_quantized_values_are_on_the_grid(x, spec):
    enc = encode_array(x, spec)
    n = enc.qmax - enc.qmin
    assert enc.scale >= np.float32(minimum_scale(n))
    offset = float(enc.offset)
    assert offset == round(offset)
    assert -enc.qmax <= offset <= -enc.qmin
    q = enc.quantize(x)
    assert q.dtype == x.dtype
    assert np.all((enc.qmin <= q) & (q <= enc.qmax))
    assert np.all(q == np.round(q))


@settings(deadline=None)
@given(x=tensors(), spec=specs(), seed=st.integers(0, 2**32 - 1))
def test_shuffling_does_not_change_per_tensor_encodings(x, spec, seed):
    shuffled = np.random.default_rng(seed).permutation(x.ravel()).reshape(x.shape)
    a, b = encode_array(x, spec), encode_array(shuffled, spec)
    for field in ("scale", "offset", "min", "max", "raw_min", "raw_max"):
        assert bits_equal(getattr(a, field), getattr(b, field)), field


def _above_minimum_scale(x: np.ndarray, n: int) -> bool:
    """The analyzer's range, widened to include 0, spans at least two minimum steps, so
    AIMET's minimum-scale widening (NOTES.md section 2, step 4) does not apply."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    return (hi - lo) / n >= 2 * minimum_scale(n)


@settings(deadline=None)
@given(
    x=tensors(),
    spec=specs(),
    beyond=st.floats(0.0, MAGNITUDE, **_finite),
    upward=st.booleans(),
)
def test_widening_the_range_never_shrinks_the_scale(x, spec, beyond, upward):
    n = spec.int_range[1] - spec.int_range[0]
    assume(_above_minimum_scale(x, n))  # see test_widening_across_the_minimum_scale_threshold
    extra = np.float32(x.max() + beyond) if upward else np.float32(x.min() - beyond)
    wider = np.append(x.ravel(), extra)
    assert encode_array(wider, spec).scale >= encode_array(x, spec).scale


def test_widening_across_the_minimum_scale_threshold_shrinks_the_scale():
    """AIMET adds n * min_scale only while (max - min) / n < min_scale, so the scale is not
    monotonic at that threshold (NOTES.md section 2, steps 4 and 6). Asymmetric 8 bits:

    [0, 254 * 2**-23]: diff = 254/255 * 2**-23 < 2**-23, so max += 255 * 2**-23 -> 509 * 2**-23
        and scale = float32(509/255 * 2**-23) (double rounding of a quotient via float64 is
        innocuous for float32);
    [0, 255 * 2**-23]: diff = 2**-23 exactly, not below it: no widening, scale = 2**-23.
    """
    narrow = encode_array(np.array([0, 254 * F32_EPS], np.float32), Spec(bitwidth=8))
    wide = encode_array(np.array([0, 254 * F32_EPS, 255 * F32_EPS], np.float32), Spec(bitwidth=8))
    assert narrow.scale == np.float32(509 / 255 * F32_EPS)
    assert wide.scale == np.float32(F32_EPS)
    assert wide.scale < narrow.scale


@settings(deadline=None)
@given(
    x=tensors(),
    bitwidth=st.integers(2, 16),
    signed=st.booleans(),
    exponent=st.integers(-8, 8),
)
def test_power_of_two_input_scaling_scales_the_asymmetric_scale(x, bitwidth, signed, exponent):
    """Multiplying by 2**k is exact for normal float32 values, and every step of the asymmetric
    range (min/max, subtraction, division by n, rounding rmin / scale) commutes with it, as long
    as no minimum-scale widening applies and nothing becomes subnormal."""
    spec = Spec(bitwidth=bitwidth, symmetric=False, signed=signed)
    n = spec.int_range[1] - spec.int_range[0]
    factor = 2.0**exponent
    assume(_above_minimum_scale(x, n) and _above_minimum_scale(x * np.float32(factor), n))
    tiny = np.finfo(np.float32).smallest_normal
    assume(np.all((x == 0) | (np.abs(x) >= tiny * 2**8)))
    a = encode_array(x, spec)
    b = encode_array(x * np.float32(factor), spec)
    assert b.scale == a.scale * np.float32(factor)
    assert b.offset == a.offset
    assert b.min == a.min * np.float32(factor)
    assert b.max == a.max * np.float32(factor)


# --- edge-value tables -----------------------------------------------------------------------

ms = F32_EPS  # minimum scale up to 16 bits
nan, inf = float("nan"), float("inf")


ASYM_U8 = Spec(bitwidth=8)
SYM_S8 = Spec(bitwidth=8, symmetric=True)
KEEP_ASYM_U8 = Spec(bitwidth=8, nonfinite="keep")
KEEP_SYM_S8 = Spec(bitwidth=8, symmetric=True, nonfinite="keep")


def edge(case_id, spec, values, lo, hi, scale, offset):
    """One row of the edge table: input values -> expected (min, max, scale, offset)."""
    return pytest.param(spec, values, lo, hi, scale, offset, id=case_id)


def _zeros_cases():
    # All zeros: max - min = 0 < ms, so the range is widened by whole minimum steps and the
    # scale is exactly ms (NOTES.md sections 2-3). Asymmetric: [0, n * ms], offset 0.
    # Symmetric: delta = max(npos*ms / (npos + e), nneg*ms / nneg) = ms (e = 1 only for n = 3,
    # where npos / 2 < 1), so the range is [qmin * ms, qmax * ms] for the centred offset.
    for b in (2, 4, 8, 16):
        n, half = 2**b - 1, 2 ** (b - 1)
        zeros = [0.0] * 4
        yield edge(f"zeros-asym-u-b{b}", Spec(bitwidth=b), zeros, 0.0, n * ms, ms, 0.0)
        sym_s = Spec(bitwidth=b, symmetric=True)
        yield edge(f"zeros-sym-s-b{b}", sym_s, zeros, -half * ms, (half - 1) * ms, ms, 0.0)
        sym_u = Spec(bitwidth=b, symmetric=True, signed=False)
        yield edge(f"zeros-sym-u-b{b}", sym_u, zeros, -half * ms, (half - 1) * ms, ms, -half)


EDGE_CASES = [
    *_zeros_cases(),
    # Constant c = 255 * 2**-4 > 0, asymmetric 8 bits: range [0, c], scale c / 255 = 2**-4
    # exactly, offset round(0 / scale) - 0 = 0; max = 2**-4 * 255 = c.
    edge("const-pos-asym-u-b8", ASYM_U8, [15.9375] * 5, 0.0, 15.9375, 0.0625, 0.0),
    # Constant c = -255 * 2**-4 < 0: range [c, 0], scale 2**-4, offset round(c / scale) = -255
    # (inside the clamp [-255, 0]); min = 2**-4 * -255 = c, max = 0.
    edge("const-neg-asym-u-b8", ASYM_U8, [-15.9375] * 5, -15.9375, 0.0, 0.0625, -255.0),
    # Constant c = 127 * 2**-3, symmetric 8 bits: delta = max(c / 127, 0 / 128) = 2**-3,
    # range [-128 * 2**-3, 127 * 2**-3] = [-16, 15.875], scale 31.875 / 255 = 0.125.
    edge("const-pos-sym-s-b8", SYM_S8, [15.875] * 5, -16.0, 15.875, 0.125, 0.0),
    # Spanning +-float32 max, asymmetric: max - min overflows, so diff = inf (no widening) and
    # scale = inf / 255 = inf; offset = round(-max / inf) - 0 = -0.0 (== 0);
    # min = inf * 0 = NaN and max = inf * 255 = inf (NOTES.md section 3, last example).
    # AIMET's non-finite encoding is what --nonfinite keep asks for (refused otherwise:
    # test_overflowing_range_is_refused_unless_kept).
    edge("pm-f32max-asym-u-b8", KEEP_ASYM_U8, [-F32_MAX, F32_MAX], nan, inf, inf, 0.0),
    # Symmetric: delta = max(max / 127, max / 128) = max / 127; rmin = -128 * delta overflows
    # and is clamped to -max, rmax = 127 * delta ~ max; scale = inf, offset 0,
    # min = inf * -128 = -inf, max = inf * 127 = inf.
    edge("pm-f32max-sym-s-b8", KEEP_SYM_S8, [-F32_MAX, F32_MAX], -inf, inf, inf, 0.0),
    # Symmetric 2 bits on [-1, 2]: n = 3, npos = 1, nneg = 2, e = 1, so
    # delta = max(2 / (1 + 1), 1 / 2) = 1: range [-2, 1], scale 3 / 3 = 1 (NOTES.md section 2).
    edge("two-bit-sym-s", Spec(bitwidth=2, symmetric=True), [-1.0, 2.0], -2.0, 1.0, 1.0, 0.0),
    # Unsigned symmetric 2 bits, same data: same range, grid [0, 3] with offset -2.
    edge(
        "two-bit-sym-u",
        Spec(bitwidth=2, symmetric=True, signed=False),
        [-1.0, 2.0], -2.0, 1.0, 1.0, -2.0,
    ),  # fmt: skip
]


@pytest.mark.parametrize("spec", [ASYM_U8, SYM_S8])
@pytest.mark.parametrize("nonfinite", ["error", "ignore"])
def test_overflowing_range_is_refused_unless_kept(spec, nonfinite):
    """The +-float32 max rows above: AIMET's scale is inf. Without --nonfinite keep that
    encoding is refused (there is no NaN / inf value to ignore), naming the range."""
    spec = dataclasses.replace(spec, nonfinite=nonfinite)
    with pytest.raises(NonFiniteError) as error:
        encode_array(np.array([-F32_MAX, F32_MAX], np.float32), spec, "w")
    assert str(error.value).startswith(
        "tensor 'w': range [-3.40282347e+38, 3.40282347e+38] overflows float32 arithmetic: "
        "the encoding's scale inf"
    )


def test_two_bit_symmetric_clips_positives_beyond_one_step():
    """NOTES.md section 2: the positive side is sized for two steps but the grid has one, so
    2.0 on the [-2, 1] grid above comes back as 1.0 (an error of a whole step)."""
    enc = encode_array(np.array([-1.0, 2.0], np.float32), Spec(bitwidth=2, symmetric=True))
    assert enc.quantize_dequantize(np.array([2.0, -1.0], np.float32)).tolist() == [1.0, -1.0]


@pytest.mark.parametrize("spec, values, lo, hi, scale, offset", EDGE_CASES)
def test_edge_value_encodings(spec, values, lo, hi, scale, offset):
    enc = encode_array(np.array(values, np.float32), spec)
    assert bits_equal(enc.scale, [scale])
    # The sign of a zero offset is not pinned: AIMET's exports treat -0.0 and 0.0 alike.
    assert np.array_equal(enc.offset, np.float32(offset), equal_nan=True)
    assert bits_equal(enc.min, [lo])
    assert bits_equal(enc.max, [hi])


TINY = [  # values of order 1e-9: the range is widened past the minimum scale
    # Asymmetric 8 bits on [0, 1e-9]: diff = 1e-9 / 255 < ms, so rmax = 1e-9 + 255 * ms and
    # scale = rmax / 255 = ms + 1e-9 / 255 (just above 2**-23: 3.9e-12 >> ulp(ms) = 2**-46).
    pytest.param(Spec(bitwidth=8), [0.0, 1e-9], ms + 1e-9 / 255, id="asym-u-b8-pos"),
    # Asymmetric on [-1e-9, 0]: rmin = -1e-9, rmax = 255 * ms, scale = ms + 1e-9 / 255.
    pytest.param(Spec(bitwidth=8), [-1e-9, 0.0], ms + 1e-9 / 255, id="asym-u-b8-neg"),
    # Symmetric 8 bits on [-1e-9, 1e-9]: umax = 1e-9 + 127 ms, umin = -1e-9 - 128 ms,
    # delta = max(umax / 127, -umin / 128) = ms + 1e-9 / 127 = scale (255 delta / 255).
    pytest.param(Spec(bitwidth=8, symmetric=True), [-1e-9, 1e-9], ms + 1e-9 / 127, id="sym-s-b8"),
    # Symmetric 4 bits: n = 15, npos = 7, nneg = 8, delta = ms + 1e-9 / 7.
    pytest.param(Spec(bitwidth=4, symmetric=True), [-1e-9, 1e-9], ms + 1e-9 / 7, id="sym-s-b4"),
]


@pytest.mark.parametrize("spec, values, expected_scale", TINY)
def test_tiny_values_get_a_scale_just_above_the_minimum(spec, values, expected_scale):
    enc = encode_array(np.array(values, np.float32), spec)
    assert enc.scale > np.float32(ms)
    assert float(enc.scale) == pytest.approx(expected_scale, rel=2**-20)


@pytest.mark.parametrize(
    "spec, offset",
    [
        pytest.param(Spec(nonfinite="keep"), nan, id="asym-u-b8"),
        pytest.param(Spec(symmetric=True, nonfinite="keep"), 0.0, id="sym-s-b8"),
        pytest.param(
            Spec(bitwidth=4, symmetric=True, signed=False, nonfinite="keep"), -8.0, id="sym-u-b4"
        ),
    ],
)
def test_nan_input_kept_gives_a_nan_encoding(spec, offset):
    """min/max propagate NaN, so scale and range are NaN; a symmetric offset is fixed by the
    grid alone (NOTES.md sections 2-3, golden dist-nan-pt-b8-sym-s)."""
    enc = encode_array(np.array([1.0, nan, -2.0], np.float32), spec)
    for field in ("scale", "min", "max", "raw_min", "raw_max"):
        assert np.isnan(getattr(enc, field)), field
    assert bits_equal(enc.offset, [offset])


CONST_GOLDEN = [
    c for c in CASES
    if c["id"] in ("dist-const-pos-pt-b4-asym-u", "dist-const-zero-pt-b8-asym-u",
                   "dist-const-zero-pt-b8-sym-s", "dist-nan-pt-b8-sym-s")
]  # fmt: skip


@pytest.mark.parametrize("case", CONST_GOLDEN, ids=lambda c: c["id"])
def test_edge_values_match_golden(case):
    config = case["config"]
    spec = Spec(
        bitwidth=config["bitwidth"],
        symmetric=config["symmetric"],
        signed=config["signed"],
        nonfinite="keep",
    )
    enc = encode_array(load_input(case["input"], case["tensor_dtype"]), spec)
    for field in ("min", "max", "scale", "offset"):
        assert bits_equal(getattr(enc, field), as_float32(case["expected"][field])), field


# --- Spec validation -------------------------------------------------------------------------


@pytest.mark.parametrize("bitwidth", [1, 33, 0, -8], ids=lambda b: f"b{b}")
def test_bitwidth_out_of_range_is_rejected(bitwidth):
    with pytest.raises(SpecError) as error:
        Spec(bitwidth=bitwidth)
    assert str(error.value) == f"bitwidth {bitwidth} is out of range (2..32)"


@pytest.mark.parametrize("bitwidth", [2, 32], ids=lambda b: f"b{b}")
def test_bitwidth_limits_are_accepted(bitwidth):
    assert Spec(bitwidth=bitwidth).int_range == (0, 2**bitwidth - 1)


def test_strict_symmetric_needs_symmetric():
    with pytest.raises(SpecError) as error:
        Spec(strict_symmetric=True)
    assert str(error.value) == "--strict-symmetric needs --symmetric"


def test_strict_symmetric_rejects_unsigned():
    with pytest.raises(SpecError) as error:
        Spec(symmetric=True, strict_symmetric=True, signed=False)
    assert str(error.value) == "--strict-symmetric grids are signed; drop --unsigned"


@pytest.mark.parametrize("signed", [None, True], ids=["default", "explicit-signed"])
def test_strict_symmetric_grid(signed):
    spec = Spec(bitwidth=8, symmetric=True, strict_symmetric=True, signed=signed)
    assert spec.is_signed
    assert spec.int_range == (-127, 127)


@pytest.mark.parametrize(
    "symmetric, signed, is_signed, int_range",
    [
        pytest.param(False, None, False, (0, 255), id="asym-default-unsigned"),
        pytest.param(True, None, True, (-128, 127), id="sym-default-signed"),
        pytest.param(False, True, True, (-128, 127), id="asym-explicit-signed"),
        pytest.param(True, False, False, (0, 255), id="sym-explicit-unsigned"),
        pytest.param(False, False, False, (0, 255), id="asym-explicit-unsigned"),
        pytest.param(True, True, True, (-128, 127), id="sym-explicit-signed"),
    ],
)
def test_signedness_defaults_to_symmetric_and_explicit_wins(
    symmetric, signed, is_signed, int_range
):
    spec = Spec(bitwidth=8, symmetric=symmetric, signed=signed)
    assert spec.is_signed is is_signed
    assert spec.int_range == int_range


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("symmetric_offset", "mid", "unknown symmetric offset 'mid' (choose from centered, zero)"),
        ("compute_dtype", "half", "unknown compute dtype 'half' (choose from float32, input)"),
        ("nonfinite", "skip", "unknown nonfinite mode 'skip' (choose from error, ignore, keep)"),
    ],
    ids=["symmetric-offset", "compute-dtype", "nonfinite"],
)  # fmt: skip
def test_unknown_choices_are_rejected(field, value, message):
    with pytest.raises(SpecError) as error:
        Spec(**{field: value})
    assert str(error.value) == message


# --- byte order ------------------------------------------------------------------------------


@pytest.mark.parametrize("bitwidth", [8, 16, 32], ids=lambda b: f"b{b}")
def test_quantize_dequantize_ignores_byte_order(bitwidth):
    """A big-endian float64 array computes in float64 like a native one (it used to drop to
    float32 arithmetic because '>f8' != '<f8')."""
    x = np.random.default_rng(0).standard_normal(1000)
    enc = encode_array(x.astype(np.float32), Spec(bitwidth=bitwidth))
    native = enc.quantize_dequantize(x)
    swapped = enc.quantize_dequantize(x.astype(">f8"))
    assert np.array_equal(native, swapped.astype(np.float64))
