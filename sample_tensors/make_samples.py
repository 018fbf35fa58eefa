"""Regenerate the sample inputs in this directory (deterministic: same bytes on every run).

    python sample_tensors/make_samples.py

Writes, next to this script:

- model_f32.safetensors, model_bf16.safetensors: a small CNN checkpoint (conv1 -> bn1 ->
  conv2 -> fc), the same values stored as float32 and as bfloat16. Weights are
  kaiming-normal with a per-output-channel scale spread (a few channels clearly wider than the
  rest, so per-channel encodings differ visibly); bn1.num_batches_tracked is an int64 scalar,
  which qcalc skips with a note.
- model.npz: a tiny language-model head: embed.weight, lm_head.weight, norm.weight (float32).
- activations/: a calibration dump, one subdirectory per tensor, one .npy per batch:
  conv1.relu/000..002.npy (non-negative, [2, 16, 8, 8]) and fc.out/000..002.npy (signed,
  [2, 10]). The batches' ranges differ (conv1.relu peaks in batch 001, fc.out reaches its
  minimum in 000 and its maximum in 002), so merging batches matters.

seed.npy is not written here: it is the seed article's example tensor, kept as is; neither is
convnet/, a copy of tests/golden/models/convnet-pc (model.onnx = float_model.onnx, calib/ =
activations_batch_*.safetensors), AIMET's own reference model, with hand_edited.encodings:
AIMET's encodings_2.0.0.json of it with three planted faults for the README's lint example
(`output` renamed `outptu`, the `/3/Flatten_output_0` entry deleted, channel 3 of `0.bias`'s
y_scale one float32 step up).
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

SEED = 20240611
HERE = Path(__file__).resolve().parent


def kaiming(rng: np.random.Generator, shape: tuple[int, ...], spread: np.ndarray) -> np.ndarray:
    """He-normal weights (std = sqrt(2 / fan_in)) with output channel c scaled by spread[c]."""
    fan_in = int(np.prod(shape[1:]))
    w = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
    return (w * spread.reshape(-1, *([1] * (len(shape) - 1)))).astype(np.float32)


def channel_spread(rng: np.random.Generator, channels: int, wide: dict[int, float]) -> np.ndarray:
    """Per-channel scale factors around 1 (log-normal), with a few named channels widened."""
    spread = np.exp(rng.normal(0.0, 0.25, channels))
    for channel, factor in wide.items():
        spread[channel] *= factor
    return spread


def checkpoint(rng: np.random.Generator) -> dict[str, np.ndarray]:
    f32 = np.float32
    tensors = {
        "conv1.weight": kaiming(rng, (16, 3, 3, 3), channel_spread(rng, 16, {3: 4.0, 11: 2.5})),
        "conv1.bias": (rng.standard_normal(16) * 0.05).astype(f32),
        "bn1.weight": (1.0 + rng.standard_normal(16) * 0.1).astype(f32),
        "bn1.bias": (rng.standard_normal(16) * 0.05).astype(f32),
        "bn1.running_mean": (rng.standard_normal(16) * 0.2).astype(f32),
        "bn1.running_var": (0.5 + rng.gamma(2.0, 0.25, 16)).astype(f32),
        "bn1.num_batches_tracked": np.array(1875, dtype=np.int64),
        "conv2.weight": kaiming(rng, (32, 16, 3, 3), channel_spread(rng, 32, {5: 5.0, 20: 3.0})),
        "conv2.bias": (rng.standard_normal(32) * 0.02).astype(f32),
        "fc.weight": kaiming(rng, (10, 512), channel_spread(rng, 10, {7: 3.0})),
        "fc.bias": (rng.standard_normal(10) * 0.01).astype(f32),
    }
    return tensors


def lm_head(rng: np.random.Generator) -> dict[str, np.ndarray]:
    vocab, dim = 128, 32
    embed = rng.standard_normal((vocab, dim)) * 0.02
    embed[[0, 17, 99]] *= 8.0  # a few outlier token rows, as real embeddings have
    return {
        "embed.weight": embed.astype(np.float32),
        "lm_head.weight": (rng.standard_normal((vocab, dim)) / np.sqrt(dim)).astype(np.float32),
        "norm.weight": (1.0 + rng.standard_normal(dim) * 0.05).astype(np.float32),
    }


def activations(rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    relu = []
    for gain in (1.0, 2.2, 0.7):  # batch 001 holds the largest activations
        pre = rng.standard_normal((2, 16, 8, 8)) * gain + rng.normal(0.0, 0.3, (1, 16, 1, 1))
        relu.append(np.maximum(pre, 0.0).astype(np.float32))
    logits = []
    for shift, gain in ((-2.0, 1.5), (0.0, 1.0), (2.0, 1.5)):  # min in 000, max in 002
        logits.append((rng.standard_normal((2, 10)) * gain + shift).astype(np.float32))
    # The merge-matters claims of the module docstring hold for this seed:
    assert int(np.argmax([b.max() for b in relu])) == 1
    assert int(np.argmin([b.min() for b in logits])) == 0
    assert int(np.argmax([b.max() for b in logits])) == 2
    return {"conv1.relu": relu, "fc.out": logits}


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez, but with fixed zip timestamps so the file's bytes are reproducible."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(info, buffer.getvalue())


def main() -> None:
    rng = np.random.default_rng(SEED)
    weights = checkpoint(rng)
    save_file(weights, str(HERE / "model_f32.safetensors"))
    bf16 = {
        name: a.astype(ml_dtypes.bfloat16) if a.dtype == np.float32 else a
        for name, a in weights.items()
    }
    save_file(bf16, str(HERE / "model_bf16.safetensors"))
    for name in ("model_f32.safetensors", "model_bf16.safetensors"):
        os.chmod(HERE / name, 0o644)  # save_file creates files 0600

    save_npz(HERE / "model.npz", lm_head(rng))

    for tensor, batches in activations(rng).items():
        folder = HERE / "activations" / tensor
        folder.mkdir(parents=True, exist_ok=True)
        for index, batch in enumerate(batches):
            np.save(folder / f"{index:03d}.npy", batch, allow_pickle=False)

    written = sorted(p for p in HERE.rglob("*") if p.is_file() and p.name != "make_samples.py")
    total = sum(p.stat().st_size for p in written)
    print(f"wrote {len(written)} files under {HERE} ({total / 1024:.0f} KiB in all)")


if __name__ == "__main__":
    main()
