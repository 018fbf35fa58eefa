"""qcalc.core.layout: per-tensor, per-channel, per-block and LPBQ grids (the layout of a
tensor's cells, its validation errors) and their invariants across analyzers, batches and
chunking."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest

from qcalc import Spec, encode_array
from qcalc.ops.encode import compute_encodings
from qcalc.errors import SpecError
from qcalc.core.choices import Analyzer
from qcalc.core.layout import Layout, layout_for

ANALYZERS = get_args(Analyzer)


def _weight(seed: int, shape=(6, 64)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    x[1] *= 8  # one wide channel
    return x


def _same(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)


@pytest.mark.parametrize("analyzer", ANALYZERS)
@pytest.mark.parametrize("symmetric", [True, False], ids=["sym", "asym"])
def test_one_block_per_channel_equals_per_channel(analyzer, symmetric):
    x = _weight(0)
    common = dict(bitwidth=4, symmetric=symmetric, analyzer=analyzer, num_bins=64)
    per_channel = encode_array(x, Spec(per_channel=True, **common))
    per_block = encode_array(x, Spec(block_size=x.shape[1], block_axis=1, **common))
    assert per_block.granularity == "per-block"
    assert per_block.encoding_shape == per_channel.encoding_shape == (6, 1)
    for field in ("scale", "offset", "min", "max"):
        assert _same(getattr(per_block, field), getattr(per_channel, field)), field


@pytest.mark.parametrize("analyzer", ANALYZERS)
def test_blocks_are_per_channel_encodings_of_their_slices(analyzer):
    """Block j of channel i is encoded exactly as the slice x[i, jB:(j+1)B] per tensor."""
    x = _weight(1, (3, 32))
    common = dict(bitwidth=8, symmetric=True, analyzer=analyzer, num_bins=32)
    blocks = encode_array(x, Spec(block_size=8, block_axis=1, **common))
    assert blocks.encoding_shape == (3, 4)
    for i in range(3):
        for j in range(4):
            alone = encode_array(x[i, j * 8 : (j + 1) * 8].copy(), Spec(**common))
            assert _same(blocks.scale[i, j], alone.scale), (i, j)


@pytest.mark.parametrize("analyzer", ANALYZERS)
@pytest.mark.parametrize(
    "granularity",
    [
        {},
        {"per_channel": True},
        {"per_channel": True, "axis": 1},
        {"block_size": 16, "block_axis": 1},
    ],
    ids=["per-tensor", "per-channel-0", "per-channel-1", "per-block"],
)
def test_chunking_and_batch_files_change_nothing(analyzer, granularity, tmp_path):
    """Three batches streamed in 64-byte chunks, or read whole, as separate files of one
    name or as one batch directory: bit-identical encodings."""
    batches = [_weight(seed) * (seed + 1) for seed in range(3)]
    files = []
    for i, batch in enumerate(batches):
        (tmp_path / f"b{i}").mkdir()
        np.save(tmp_path / f"b{i}" / "w.npy", batch)
        files.append(tmp_path / f"b{i}" / "w.npy")
        (tmp_path / "dump" / "w").mkdir(parents=True, exist_ok=True)
        np.save(tmp_path / "dump" / "w" / f"{i:03d}.npy", batch)
    spec = Spec(bitwidth=8, analyzer=analyzer, num_bins=128, **granularity)
    whole = compute_encodings(files, spec).encodings[0]
    tiny = compute_encodings(files, spec, chunk_bytes=64).encodings[0]
    directory = compute_encodings([tmp_path / "dump"], spec, chunk_bytes=200).encodings[0]
    for other in (tiny, directory):
        for field in ("scale", "offset", "raw_min", "raw_max"):
            assert _same(getattr(whole, field), getattr(other, field)), field


@pytest.mark.parametrize("seed", range(5))
def test_percentile_100_brackets_the_minmax_range(seed):
    """p=100 takes the first and last bin edges: the data's min exactly, and its max up to
    the float32 rounding of the last edge (min + bins * step), as in AIMET."""
    x = np.random.default_rng(seed).standard_normal(4096).astype(np.float32) * (seed + 1)
    p100 = encode_array(x, Spec(analyzer="percentile", percentile=100))
    minmax = encode_array(x, Spec())
    assert p100.raw_min <= minmax.raw_min
    assert p100.raw_max >= minmax.raw_max - 4 * np.spacing(np.float32(abs(x).max()))


def test_lpbq_scales_are_integer_multiples_of_the_channel_scale():
    x = _weight(2, (4, 64))
    enc = encode_array(x, Spec(bitwidth=4, symmetric=True, block_size=16, lpbq=True))
    assert enc.granularity == "lpbq"
    multipliers = enc.per_block_int_scale
    assert np.all(multipliers == np.round(multipliers))
    assert multipliers.min() >= 1 and multipliers.max() <= 2 ** (8 - 4)
    assert np.all(multipliers.max(axis=1) == 16)  # the widest block of each channel
    assert _same(enc.scale, (multipliers * enc.per_channel_scale).astype(np.float32))
    assert np.all(enc.offset == 0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(block_size=5, block_axis=1), "block size 5 does not divide the length 64"),
        (dict(block_size=8, block_axis=0, axis=0), "block axis 0 is the channel axis 0"),
        (dict(block_size=8, block_axis=2), "block axis 2 is out of range for shape [6, 64]"),
    ],
)
def test_block_layout_errors_name_the_numbers(kwargs, message):
    with pytest.raises(SpecError) as error:
        layout_for((6, 64), False, kwargs.pop("axis", 0), "tensor 'w'", **kwargs)
    assert message in str(error.value)
    assert str(error.value).startswith("tensor 'w': ")


def test_block_axis_0_chunks_keep_whole_blocks():
    layout = Layout((32, 6), channel_axis=1, block_axis=0, block_size=8)
    assert layout.encoding_shape == (4, 6) and layout.row_multiple == 8 and layout.rows_are_cells
    x = _weight(3, (32, 6))
    enc = encode_array(x, Spec(per_channel=True, axis=1, block_size=8, block_axis=0))
    for j in range(4):
        alone = encode_array(x[j * 8 : (j + 1) * 8, 2].copy(), Spec())
        assert _same(enc.scale[j, 2], alone.scale)


@pytest.mark.parametrize("spec_kwargs, message", [
    (dict(lpbq=True), "--lpbq needs --block-size"),
    (dict(lpbq=True, block_size=8), "--lpbq grids are symmetric and signed: add --symmetric"),
    (dict(lpbq=True, block_size=8, symmetric=True, bitwidth=8, decompressed_bitwidth=4),
     "decompressed bitwidth 4 is below bitwidth 8"),
    (dict(analyzer="percentile", percentile=40), "percentile 40 is out of range (50..100)"),
    (dict(num_bins=0), "number of bins 0 must be at least 1"),
])  # fmt: skip
def test_spec_rejects_bad_block_and_analyzer_settings(spec_kwargs, message):
    with pytest.raises(SpecError) as error:
        Spec(**spec_kwargs)
    assert str(error.value) == message


@pytest.mark.parametrize("analyzer", ["percentile", "sqnr"])
def test_histograms_of_float64_tensors_are_float32(analyzer):
    """AIMET's histograms are float32; a float64 tensor under --compute-dtype input bins the
    float32 values (rounding is monotonic, so its min and max are those of the cast)."""
    x = np.random.default_rng(4).standard_normal((4, 64))
    spec = Spec(analyzer=analyzer, compute_dtype="input", per_channel=True, num_bins=256)
    assert _same(encode_array(x, spec).scale, encode_array(x.astype(np.float32), spec).scale)


@pytest.mark.parametrize("block", [1, 2, 16, 128, 512, 4096])
def test_bf16_block_minmax_on_int16_keys_equals_float_minmax(block, compiled):
    """stats.bf16_minmax reduces bf16 rows as int16 keys (numpy, or the compiled kernel):
    the same min / max as the widened values (NaN anywhere in a row -> NaN), over every
    bf16 bit pattern; the two paths agree bit for bit, zero signs included."""
    import ml_dtypes

    from qcalc.core.kernels import use_compiled
    from qcalc.core.stats import bf16_minmax

    every = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16).view(ml_dtypes.bfloat16)
    rng = np.random.default_rng(block)
    finite = every[np.isfinite(every.astype(np.float32))]
    # rows: shuffled bit patterns (NaN / inf in some rows), and finite-only rows
    mixed = rng.permutation(every)[: (every.size // block) * block].reshape(-1, block)
    clean = rng.choice(finite, size=(64, block))
    for values in (mixed, clean):
        got = bf16_minmax(values, (1,))
        wide = values.astype(np.float32)
        assert np.array_equal(got.min.ravel(), wide.min(axis=1), equal_nan=True)
        assert np.array_equal(got.max.ravel(), wide.max(axis=1), equal_nan=True)
        assert got.min.shape == (values.shape[0], 1) and got.min.dtype == np.float32
        with use_compiled(False):
            reference = bf16_minmax(values, (1,))
        assert got.min.tobytes() == reference.min.tobytes()
        assert got.max.tobytes() == reference.max.tobytes()
    whole = bf16_minmax(mixed, None)
    assert whole.min.shape == (1, 1) and np.isnan(whole.min).all() and np.isnan(whole.max).all()
    zeros = np.array([[0.0, -0.0, 0.0], [-0.0, -0.0, 0.0]], ml_dtypes.bfloat16)
    got = bf16_minmax(zeros, (1,))
    assert np.signbit(got.min).all() and not np.signbit(got.max[0, 0])  # -0 < +0
    # other dtypes, other axes: not handled here
    assert bf16_minmax(np.zeros((2, 8), np.float32), (1,)) is None
    assert bf16_minmax(np.zeros((2, 8), ml_dtypes.bfloat16), (0,)) is None
