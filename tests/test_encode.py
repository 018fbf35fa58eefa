"""qcalc.ops.encode, the library API (compute_encodings, encode_array, select): chunking, dtype
widening, non-finite modes, batches, granularity, tensor selection, compute dtype and empty
tensors.

Expected values come from invariants (chunked == one-shot == in-memory, merged batches ==
concatenated data, ignore == finite values alone) or from the AIMET cases in tests/golden.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

from golden_cases import (
    CASES,
    GOLDEN,
    as_float32,
    bits_equal,
    has_nonfinite,
    inputs_of,
    is_minmax_grid_case,
    load_input,
    spec_for_case,
)
from qcalc import Spec, compute_encodings, encode_array
from qcalc.ops.encode import select
from qcalc.core.dtypes import widen
from qcalc.errors import FilterError, NonFiniteError, SpecError
from qcalc.io.readers import Skipped, TensorRef, open_input

FIELDS = ("scale", "offset", "min", "max", "raw_min", "raw_max")
HUGE_CHUNK = 1 << 30
TINY_CHUNK = 64

DTYPES = {
    "f32": np.dtype(np.float32),
    "f16": np.dtype(np.float16),
    "bf16": np.dtype(ml_dtypes.bfloat16),
    "fp8e4m3": np.dtype(ml_dtypes.float8_e4m3fn),
    "f64": np.dtype(np.float64),
}


def assert_same_encoding(a, b) -> None:
    assert (a.qmin, a.qmax, a.granularity, a.axis) == (b.qmin, b.qmax, b.granularity, b.axis)
    for field in FIELDS:
        x, y = getattr(a, field), getattr(b, field)
        assert x.shape == y.shape, field
        assert bits_equal(x, y), field


def save(tmp_path, name: str, array: np.ndarray) -> str:
    """`array` as tensor `name`: .npy for numpy dtypes, .safetensors for ml_dtypes ones."""
    if array.dtype.kind == "f":
        path = tmp_path / f"{name}.npy"
        np.save(path, array)
    else:
        path = tmp_path / "tensors.safetensors"
        save_file({name: np.ascontiguousarray(array)}, str(path))
    return str(path)


def random_tensor(shape, dtype, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape) * 3 + 0.25  # off-centre so min and max differ in size
    return x.astype(dtype)


# --- chunking --------------------------------------------------------------------------------

SHAPES = {"2d": (37, 5), "3d": (11, 3, 4), "4d": (9, 3, 2, 4)}
GRANULARITIES = {
    "pt": dict(per_channel=False),
    "pc0": dict(per_channel=True, axis=0),
    "pc1": dict(per_channel=True, axis=1),
    "pc-1": dict(per_channel=True, axis=-1),
}
GRIDS = {"asym-u": dict(symmetric=False), "sym-s": dict(symmetric=True)}


@pytest.mark.parametrize("grid", GRIDS.values(), ids=GRIDS.keys())
@pytest.mark.parametrize("granularity", GRANULARITIES.values(), ids=GRANULARITIES.keys())
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("dtype", DTYPES.values(), ids=DTYPES.keys())
def test_chunking_never_changes_results(tmp_path, dtype, shape, granularity, grid):
    x = random_tensor(shape, dtype)
    path = save(tmp_path, "w", x)
    (ref,) = open_input(path)
    assert len(list(ref.chunks(TINY_CHUNK))) > 2  # the small chunk size really splits it
    spec = Spec(bitwidth=8, **granularity, **grid)
    (chunked,) = compute_encodings([path], spec, chunk_bytes=TINY_CHUNK).encodings
    (whole,) = compute_encodings([path], spec, chunk_bytes=HUGE_CHUNK).encodings
    in_memory = encode_array(x, spec, name="w")
    assert_same_encoding(chunked, whole)
    assert_same_encoding(whole, in_memory)
    assert chunked.dtype == dtype.name


# --- widening to float32 ---------------------------------------------------------------------


def every_bit_pattern(dtype: np.dtype) -> np.ndarray:
    bits = {1: np.uint8, 2: np.uint16}[dtype.itemsize]
    return np.arange(2 ** (8 * dtype.itemsize), dtype=np.uint64).astype(bits).view(dtype)


def assert_same_float32(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal bit for bit, except that any NaN equals any NaN."""
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(actual), nan)
    assert np.array_equal(actual[~nan].view(np.uint32), expected[~nan].view(np.uint32))


WIDENED = {k: DTYPES[k] for k in ("f16", "bf16", "fp8e4m3")}
WIDENED["fp8e5m2"] = np.dtype(ml_dtypes.float8_e5m2)


@pytest.mark.parametrize("dtype", WIDENED.values(), ids=WIDENED.keys())
def test_widen_is_exact_for_every_bit_pattern(dtype):
    values = every_bit_pattern(dtype)
    assert_same_float32(widen(values), values.astype(np.float32))


@pytest.mark.parametrize("dtype", WIDENED.values(), ids=WIDENED.keys())
def test_widen_handles_strided_and_0d_arrays(dtype):
    values = every_bit_pattern(dtype).reshape(16, -1)[:, ::3]
    assert_same_float32(widen(values), values.astype(np.float32))
    scalar = np.asarray(1.5, dtype=dtype)
    assert_same_float32(widen(scalar), scalar.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_widen_passes_wide_floats_through(dtype):
    values = np.arange(4, dtype=dtype)
    assert widen(values) is values


def test_big_endian_float64_is_widened_to_float64():
    values = np.array([1 + 2.0**-40, -3.0], dtype=">f8")  # 1 + 2**-40 is not a float32
    widened = widen(values)
    assert widened.dtype == np.float64
    assert widened.tolist() == [1 + 2.0**-40, -3.0]


@pytest.mark.parametrize("compute", ["float32", "input"])
@pytest.mark.parametrize("byteorder", [">", "<"], ids=["big", "little"])
def test_byte_order_does_not_change_encodings(byteorder, compute):
    x = random_tensor((8, 5), np.float64)
    for grid in GRIDS.values():
        spec = Spec(**grid, compute_dtype=compute, per_channel=True)
        native = encode_array(x, spec)
        assert_same_encoding(encode_array(x.astype(byteorder + "f8"), spec), native)


# --- non-finite values -----------------------------------------------------------------------


def with_nonfinite(shape=(6, 4), seed=1) -> np.ndarray:
    """A float32 tensor holding exactly 2 NaN, 1 +inf and 3 -inf, spread over several rows;
    row 4 holds no finite value at all."""
    x = random_tensor(shape, np.float32, seed)
    x[5, 3] = np.nan
    x[2, 0] = np.inf
    x[4, :] = [-np.inf, -np.inf, -np.inf, np.nan]
    return x


def test_nonfinite_fixture_counts():
    x = with_nonfinite()
    assert (np.isnan(x).sum(), np.isposinf(x).sum(), np.isneginf(x).sum()) == (2, 1, 3)


@pytest.mark.parametrize("chunk_bytes", [TINY_CHUNK, HUGE_CHUNK], ids=["tiny-chunks", "one-chunk"])
@pytest.mark.parametrize("granularity", GRANULARITIES.values(), ids=GRANULARITIES.keys())
def test_nonfinite_error_names_file_tensor_and_counts(tmp_path, granularity, chunk_bytes):
    path = save(tmp_path, "acts", with_nonfinite())
    with pytest.raises(NonFiniteError) as error:
        compute_encodings([path], Spec(**granularity), chunk_bytes=chunk_bytes)
    assert str(error.value) == (
        f"{path}: tensor 'acts' holds 2 NaN, 1 +inf and 3 -inf values "
        "(--nonfinite ignore skips them, keep encodes them as AIMET does)"
    )


def test_nonfinite_error_is_the_default_for_encode_array():
    with pytest.raises(NonFiniteError, match=r"tensor 'x' holds 0 NaN, 1 \+inf and 0 -inf"):
        encode_array(np.array([1.0, np.inf], np.float32), name="x")


@pytest.mark.parametrize("grid", GRIDS.values(), ids=GRIDS.keys())
@pytest.mark.parametrize("chunk_bytes", [TINY_CHUNK, HUGE_CHUNK], ids=["tiny-chunks", "one-chunk"])
def test_nonfinite_ignore_per_tensor_encodes_the_finite_values(tmp_path, chunk_bytes, grid):
    x = with_nonfinite()
    path = save(tmp_path, "acts", x)
    spec = Spec(**grid, nonfinite="ignore")
    (enc,) = compute_encodings([path], spec, chunk_bytes=chunk_bytes).encodings
    assert_same_encoding(enc, encode_array(x[np.isfinite(x)], Spec(**grid)))


@pytest.mark.parametrize("grid", GRIDS.values(), ids=GRIDS.keys())
@pytest.mark.parametrize("axis", [0, 1], ids=["pc0", "pc1"])
@pytest.mark.parametrize("chunk_bytes", [TINY_CHUNK, HUGE_CHUNK], ids=["tiny-chunks", "one-chunk"])
def test_nonfinite_ignore_per_channel_encodes_each_channels_finite_values(
    tmp_path, chunk_bytes, axis, grid
):
    x = with_nonfinite()
    x[:, 2] = np.nan  # column 2 too has no finite value
    path = save(tmp_path, "acts", x)
    spec = Spec(**grid, nonfinite="ignore", per_channel=True, axis=axis)
    (enc,) = compute_encodings([path], spec, chunk_bytes=chunk_bytes).encodings
    channels = np.moveaxis(x, axis, 0)
    empty_channels = 0
    for c, channel in enumerate(channels):
        finite = channel[np.isfinite(channel)]
        if finite.size == 0:  # no finite value: the [0, 0] range, widened like all zeros
            finite, empty_channels = np.zeros(1, np.float32), empty_channels + 1
        alone = encode_array(finite, Spec(**grid))
        for field in FIELDS:
            assert bits_equal(getattr(enc, field).ravel()[c], getattr(alone, field)), (c, field)
    assert empty_channels == 1


KEEP_CASES = [
    c for c in CASES
    if is_minmax_grid_case(c) and not isinstance(c["input"], list) and has_nonfinite(c)
]  # fmt: skip


def golden_spec(case: dict, **overrides) -> Spec:
    return spec_for_case(case, **overrides)


def golden_path(case: dict, index: int = 0) -> str:
    if case["tensor_dtype"] == "bfloat16":
        sources = case["input_safetensors"]
        return str(GOLDEN / (sources[index] if isinstance(sources, list) else sources))
    return str(GOLDEN / inputs_of(case)[index])


def assert_matches_golden(enc, expected: dict) -> None:
    assert (enc.qmin, enc.qmax) == (expected["qmin"], expected["qmax"])
    for field in ("min", "max", "scale", "raw_min", "raw_max"):
        assert bits_equal(getattr(enc, field), as_float32(expected[field])), field
    offset = np.asarray(expected["offset"], np.float32)
    assert np.array_equal(enc.offset.ravel(), offset, equal_nan=True)


def test_keep_cases_exist():
    assert len(KEEP_CASES) >= 5


@pytest.mark.parametrize("case", KEEP_CASES, ids=lambda c: c["id"])
def test_nonfinite_keep_matches_aimet_through_tiny_chunks(case):
    (enc,) = compute_encodings(
        [golden_path(case)], golden_spec(case), chunk_bytes=TINY_CHUNK
    ).encodings
    assert_matches_golden(enc, case["expected"])


# --- calibration batches ---------------------------------------------------------------------


def save_batches(tmp_path, arrays, name="x") -> list[str]:
    paths = []
    for i, array in enumerate(arrays):
        batch = tmp_path / f"batch{i}"
        batch.mkdir()
        paths.append(save(batch, name, array))
    return paths


BATCH_LAYOUTS = {  # spec settings, the axis batches concatenate along
    "pt": (dict(per_channel=False), 0),
    "pc0": (dict(per_channel=True, axis=0), 1),
    "pc1": (dict(per_channel=True, axis=1), 0),
    "pc-1": (dict(per_channel=True, axis=-1), 0),
}


@pytest.mark.parametrize("grid", GRIDS.values(), ids=GRIDS.keys())
@pytest.mark.parametrize("layout", BATCH_LAYOUTS.values(), ids=BATCH_LAYOUTS.keys())
@pytest.mark.parametrize("dtype", ["f32", "f16", "bf16"])
def test_batches_merge_like_concatenated_data(tmp_path, dtype, layout, grid):
    settings, along = layout
    sizes = [(4, 6), (7, 6), (2, 6)] if along == 0 else [(4, 3), (4, 8), (4, 1)]
    arrays = [random_tensor(s, DTYPES[dtype], seed) * (seed + 1) for seed, s in enumerate(sizes)]
    spec = Spec(**settings, **grid)
    paths = save_batches(tmp_path, arrays)
    result = compute_encodings(paths, spec, chunk_bytes=TINY_CHUNK)
    (merged,) = result.encodings
    assert merged.name == "x"
    assert_same_encoding(merged, encode_array(np.concatenate(arrays, axis=along), spec))


MULTI_BATCH = [c for c in CASES if is_minmax_grid_case(c) and isinstance(c["input"], list)]


@pytest.mark.parametrize("case", MULTI_BATCH, ids=lambda c: c["id"])
def test_multi_batch_golden_cases_merge_in_order(tmp_path, case):
    """AIMET's multi-batch cases, each batch a same-named file in its own input."""
    paths = []
    for i in range(len(inputs_of(case))):
        source = golden_path(case, i)
        link = tmp_path / f"batch{i}" / ("x" + source[source.rindex(".") :])
        link.parent.mkdir()
        link.symlink_to(source)
        paths.append(str(link))
    (enc,) = compute_encodings(paths, golden_spec(case), chunk_bytes=TINY_CHUNK).encodings
    assert_matches_golden(enc, case["expected"])


def test_batches_with_different_channel_counts_are_rejected(tmp_path):
    first, second = save_batches(
        tmp_path, [np.ones((4, 3), np.float32), np.ones((5, 3), np.float32)]
    )
    with pytest.raises(SpecError) as error:
        compute_encodings([first, second], Spec(per_channel=True, axis=0))
    assert str(error.value) == (
        f"{second}: tensor 'x': shape [5, 3] does not match [4, 3] in {first} "
        "along channel axis 0"
    )


def test_batches_with_different_ranks_are_rejected_per_channel(tmp_path):
    first, second = save_batches(
        tmp_path, [np.ones((4, 3), np.float32), np.ones((2, 4, 3), np.float32)]
    )
    with pytest.raises(SpecError, match="does not match"):
        compute_encodings([first, second], Spec(per_channel=True, axis=0))


def test_batches_of_different_shapes_merge_per_tensor(tmp_path):
    arrays = [np.full((4, 3), -2.0, np.float32), np.full((2, 5, 7), 3.0, np.float32)]
    (enc,) = compute_encodings(save_batches(tmp_path, arrays), Spec()).encodings
    # Asymmetric 8 bits on [-2, 3]: scale = 5 / 255, offset = round(-2 / scale) = -102.
    assert enc.scale == np.float32(5) / np.float32(255)
    assert enc.offset == -102


def test_batches_with_different_dtypes_are_rejected(tmp_path):
    first, second = save_batches(
        tmp_path, [np.ones((4, 3), np.float32), np.ones((4, 3), np.float16)]
    )
    with pytest.raises(SpecError) as error:
        compute_encodings([first, second], Spec())
    assert str(error.value) == (
        f"{second}: tensor 'x': dtype float16 differs from float32 in {first}; "
        "batches of one tensor must share a dtype"
    )


def test_batches_in_both_byte_orders_merge(tmp_path):
    arrays = [np.array([[-1.0, 2.0]], "<f4"), np.array([[3.0, 0.5]], ">f4")]
    (enc,) = compute_encodings(save_batches(tmp_path, arrays), Spec()).encodings
    assert_same_encoding(enc, encode_array(np.array([-1.0, 3.0], np.float32), Spec()))


# --- granularity -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape", [(), (1,), (7,)], ids=["rank0", "rank1-single", "rank1"]
)
@pytest.mark.parametrize("axis", [0, -1, 3], ids=["axis0", "axis-1", "axis3"])
def test_per_channel_on_rank_0_and_1_is_per_tensor(shape, axis):
    x = random_tensor(shape, np.float32)
    enc = encode_array(x, Spec(per_channel=True, axis=axis))
    assert (enc.granularity, enc.axis, enc.encoding_shape) == ("per-tensor", None, ())
    assert_same_encoding(enc, encode_array(x, Spec()))


@pytest.mark.parametrize(
    "shape, axis",
    [((3, 4), 2), ((3, 4), -3), ((2, 3, 4), 3), ((2, 3, 4), -4)],
    ids=["2d-axis2", "2d-axis-3", "3d-axis3", "3d-axis-4"],
)
def test_axis_out_of_range_names_the_tensor(shape, axis):
    with pytest.raises(SpecError) as error:
        encode_array(np.ones(shape, np.float32), Spec(per_channel=True, axis=axis), name="conv.w")
    assert str(error.value) == (
        f"tensor 'conv.w': axis {axis} is out of range for shape {list(shape)} (rank {len(shape)})"
    )


@pytest.mark.parametrize(
    "shape, axis, positive",
    [((3, 4), -1, 1), ((3, 4), -2, 0), ((2, 3, 4, 5), -3, 1), ((2, 3, 4, 5), -1, 3)],
    ids=["2d-axis-1", "2d-axis-2", "4d-axis-3", "4d-axis-1"],
)
def test_negative_axis_is_normalised(shape, axis, positive):
    x = random_tensor(shape, np.float32)
    negative = encode_array(x, Spec(per_channel=True, axis=axis))
    assert negative.axis == positive
    assert negative.encoding_shape == tuple(n if i == positive else 1 for i, n in enumerate(shape))
    assert_same_encoding(negative, encode_array(x, Spec(per_channel=True, axis=positive)))


# --- selecting tensors -----------------------------------------------------------------------

NAMES = ["embed.weight", "layer1.weight", "layer1.bias", "layer2.weight", "layer2.bias"]


def refs(names=NAMES) -> list[TensorRef]:
    array = np.zeros(2, np.float32)
    return [TensorRef(n, "<mem>", array.dtype, array.shape, lambda: array) for n in names]


@pytest.mark.parametrize(
    "include, exclude, kept",
    [
        ((), (), NAMES),
        (("layer1.*",), (), ["layer1.weight", "layer1.bias"]),
        (("*.weight",), ("embed.*",), ["layer1.weight", "layer2.weight"]),
        ((), ("*.bias",), ["embed.weight", "layer1.weight", "layer2.weight"]),
        (("layer?.bias", "embed.*"), (), ["embed.weight", "layer1.bias", "layer2.bias"]),
        (("layer[2].*",), ("*.bias",), ["layer2.weight"]),
    ],
    ids=["all", "include", "include-exclude", "exclude", "two-includes", "char-class"],
)
def test_select_include_exclude_globs(include, exclude, kept):
    assert [r.name for r in select(refs(), include, exclude)] == kept


@pytest.mark.parametrize(
    "include, exclude, message",
    [
        (("layer3.*",), (), "--include 'layer3.*' matches no tensor name"),
        ((), ("*.bias", "head.*"), "--exclude 'head.*' matches no tensor name"),
        (("LAYER1.*",), (), "--include 'LAYER1.*' matches no tensor name"),  # case-sensitive
        (("layer1.*",), ("layer*",), "no tensor left to encode after --include / --exclude"),
        ((), ("*",), "no tensor left to encode after --include / --exclude"),
    ],
    ids=["include-none", "exclude-none", "include-wrong-case", "all-excluded", "exclude-star"],
)
def test_select_errors(include, exclude, message):
    with pytest.raises(FilterError) as error:
        select(refs(), include, exclude)
    assert str(error.value) == message


def test_compute_encodings_applies_include_and_exclude(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file({n: np.full((2, 2), i + 1, np.float32) for i, n in enumerate(NAMES)}, str(path))
    result = compute_encodings([path], include=["layer*"], exclude=["*.bias"])
    assert [e.name for e in result.encodings] == ["layer1.weight", "layer2.weight"]
    with pytest.raises(FilterError, match="--include 'nope' matches no tensor name"):
        compute_encodings([path], include=["nope"])


# --- compute dtype ---------------------------------------------------------------------------

FLOAT16_CASES = [
    c for c in CASES
    if is_minmax_grid_case(c)
    and c["tensor_dtype"] == "float16"
    and not isinstance(c["input"], list)
]  # fmt: skip


def test_float16_cases_exist():
    assert len(FLOAT16_CASES) >= 5


@pytest.mark.parametrize("case", FLOAT16_CASES, ids=lambda c: c["id"])
def test_compute_dtype_input_reproduces_aimet_float16(case):
    x = load_input(case["input"], "float16")
    assert x.dtype == np.float16
    assert_matches_golden(encode_array(x, golden_spec(case)), case["expected"])


@pytest.mark.parametrize("case", FLOAT16_CASES, ids=lambda c: c["id"])
def test_compute_dtype_float32_equals_encoding_float32_data(case):
    x = load_input(case["input"], "float16")
    spec = golden_spec(case, compute_dtype="float32")
    enc = encode_array(x, spec)
    assert enc.dtype == "float16"
    assert_same_encoding(enc, encode_array(x.astype(np.float32), spec))


@pytest.mark.parametrize("dtype", ["bf16", "f64"])
def test_compute_dtype_float32_equals_encoding_float32_data_other_dtypes(dtype):
    x = random_tensor((16, 8), DTYPES[dtype]) * 1000
    for grid in GRIDS.values():
        spec = Spec(**grid)
        assert_same_encoding(encode_array(x, spec), encode_array(x.astype(np.float32), spec))


# --- empty tensors ---------------------------------------------------------------------------


def test_empty_tensors_are_skipped_not_encoded(tmp_path):
    np.save(tmp_path / "a_empty.npy", np.zeros((0, 4), np.float32))
    np.save(tmp_path / "b_full.npy", np.ones((2, 4), np.float32))
    save_file({"c_empty": np.zeros((3, 0), np.float16)}, str(tmp_path / "c.safetensors"))
    result = compute_encodings([tmp_path])
    assert [e.name for e in result.encodings] == ["b_full"]
    empty = [s for s in result.skipped if s.reason == "empty tensor, not encoded"]
    assert sorted(s.name for s in empty) == ["a_empty", "c_empty"]
    assert all(isinstance(s, Skipped) for s in result.skipped)


def test_only_empty_tensors_gives_notes_not_an_error(tmp_path):
    path = tmp_path / "empty.npy"
    np.save(path, np.zeros((0,), np.float32))
    result = compute_encodings([path])
    assert result.encodings == []
    assert [(s.name, s.reason) for s in result.skipped] == [("empty", "empty tensor, not encoded")]


def test_encode_array_rejects_empty_and_integer_arrays():
    with pytest.raises(SpecError, match="^tensor 'e': is empty$"):
        encode_array(np.zeros((2, 0), np.float32), name="e")
    with pytest.raises(SpecError, match="^tensor 'i': dtype int32 is not a floating-point type$"):
        encode_array(np.zeros(3, np.int32), name="i")


def test_activations_are_per_tensor_whatever_the_weight_granularity(tmp_path):
    weights = save(tmp_path, "w.npy", random_tensor((8, 64), np.float32))
    dump = random_tensor((8, 64), np.float32, seed=3)
    acts = save(tmp_path, "act.npy", dump)
    spec = Spec(symmetric=True, block_size=16, lpbq=True)
    result = compute_encodings([weights], spec, activations=[acts])
    assert result.encodings[0].granularity == "lpbq"
    (act,) = result.activations
    # per tensor: the same as the dump encoded alone with no channel or block settings
    alone = encode_array(dump, Spec(symmetric=True))
    assert act.granularity == "per-tensor" and act.encoding_shape == ()
    assert_same_encoding(act, alone)
