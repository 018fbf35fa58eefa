"""Write a synthetic LLM-shaped bfloat16 .safetensors checkpoint for the throughput benchmark.

    python bench/make_checkpoint.py bench/out/ckpt.safetensors --size-gb 1.0

Shapes follow a Llama-style decoder with grouped-query attention (defaults: hidden 2048,
MLP 5632, 32 heads of 64, 4 KV heads, vocab 32000): model.embed_tokens.weight, then per
layer q_proj/k_proj/v_proj/o_proj, gate_proj/up_proj/down_proj and the two RMSNorm weights,
then model.norm.weight. The layer count is chosen so the file is as close to --size-gb
(10^9 bytes) as whole layers allow.

Values are N(0, 0.02) with a few outlier rows per matrix (scaled x20..x100), norm weights
around 1. To be fast, one pool of normal values is generated once and every tensor is cut
from it at random offsets; only outlier rows are recomputed. The file is streamed: the header
is written by hand (u64 LE length + JSON, space-padded to a multiple of 8), then each tensor's
bytes in chunks, so memory stays at the pool plus one chunk whatever the size. Written to
PATH.tmp, then renamed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Iterator, NamedTuple

import ml_dtypes
import numpy as np

BF16 = np.dtype(ml_dtypes.bfloat16)
POOL_VALUES = 1 << 23  # 8 Mi values = 16 MiB of bf16
CHUNK_BYTES = 16 << 20


class Tensor(NamedTuple):
    name: str
    shape: tuple[int, ...]
    kind: str  # "matrix" or "norm"


def layout(
    size_gb: float, hidden: int, ffn: int, heads: int, kv_heads: int, vocab: int
) -> list[Tensor]:
    """Tensor list of a decoder with as many layers as bring the file closest to size_gb."""
    head_dim = hidden // heads
    kv = kv_heads * head_dim

    def layer(i: int) -> list[Tensor]:
        p = f"model.layers.{i}."
        return [
            Tensor(p + "self_attn.q_proj.weight", (hidden, hidden), "matrix"),
            Tensor(p + "self_attn.k_proj.weight", (kv, hidden), "matrix"),
            Tensor(p + "self_attn.v_proj.weight", (kv, hidden), "matrix"),
            Tensor(p + "self_attn.o_proj.weight", (hidden, hidden), "matrix"),
            Tensor(p + "mlp.gate_proj.weight", (ffn, hidden), "matrix"),
            Tensor(p + "mlp.up_proj.weight", (ffn, hidden), "matrix"),
            Tensor(p + "mlp.down_proj.weight", (hidden, ffn), "matrix"),
            Tensor(p + "input_layernorm.weight", (hidden,), "norm"),
            Tensor(p + "post_attention_layernorm.weight", (hidden,), "norm"),
        ]

    def nbytes(tensors: list[Tensor]) -> int:
        return sum(int(np.prod(t.shape)) * BF16.itemsize for t in tensors)

    fixed = [
        Tensor("model.embed_tokens.weight", (vocab, hidden), "matrix"),
        Tensor("model.norm.weight", (hidden,), "norm"),
    ]
    per_layer = nbytes(layer(0))
    layers = max(1, round((size_gb * 1e9 - nbytes(fixed)) / per_layer))
    return [fixed[0], *(t for i in range(layers) for t in layer(i)), fixed[1]]


def header_bytes(tensors: list[Tensor]) -> bytes:
    entries: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for t in tensors:
        size = int(np.prod(t.shape)) * BF16.itemsize
        entries[t.name] = {
            "dtype": "BF16", "shape": list(t.shape), "data_offsets": [offset, offset + size]
        }
        offset += size
    raw = json.dumps(entries, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw


def tensor_chunks(
    t: Tensor, pool: np.ndarray, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """The tensor's bf16 values, row chunks of about CHUNK_BYTES, cut from `pool`."""
    if t.kind == "norm":
        values = 1.0 + 0.05 * rng.standard_normal(t.shape[0], dtype=np.float32)
        yield values.astype(BF16)
        return
    rows, cols = t.shape
    outliers = {
        int(r): float(f)
        for r, f in zip(
            rng.choice(rows, size=min(rows, 4), replace=False), rng.uniform(20, 100, size=4)
        )
    }
    rows_per_chunk = max(1, CHUNK_BYTES // (cols * BF16.itemsize))
    for start in range(0, rows, rows_per_chunk):
        stop = min(rows, start + rows_per_chunk)
        count = (stop - start) * cols
        if count > pool.size // 2:  # rows wider than half the pool: tile (not hit by defaults)
            block = np.resize(pool, count).reshape(stop - start, cols)
        else:
            begin = int(rng.integers(0, pool.size - count))
            block = pool[begin : begin + count].reshape(stop - start, cols)
        hits = [r for r in outliers if start <= r < stop]
        if hits:
            block = block.copy()
            for r in hits:
                block[r - start] = (block[r - start].astype(np.float32) * outliers[r]).astype(BF16)
        yield block


def write_checkpoint(
    path: str,
    size_gb: float = 1.0,
    *,
    hidden: int = 2048,
    ffn: int = 5632,
    heads: int = 32,
    kv_heads: int = 4,
    vocab: int = 32000,
    seed: int = 0,
) -> list[Tensor]:
    """Write the checkpoint to `path` (via a temp file and rename); return its tensor list."""
    tensors = layout(size_gb, hidden, ffn, heads, kv_heads, vocab)
    rng = np.random.default_rng(seed)
    pool = (rng.standard_normal(POOL_VALUES, dtype=np.float32) * np.float32(0.02)).astype(BF16)
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as out:
            out.write(header_bytes(tensors))
            for t in tensors:
                for block in tensor_chunks(t, pool, rng):
                    out.write(np.ascontiguousarray(block).view(np.uint8).data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return tensors


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="output .safetensors file")
    parser.add_argument("--size-gb", type=float, default=1.0, help="target size in 10^9 bytes")
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--ffn", type=int, default=5632)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--check", action="store_true", help="re-open the file with the safetensors package"
    )
    args = parser.parse_args(argv)
    os.makedirs(os.path.dirname(os.path.abspath(args.path)), exist_ok=True)
    started = time.perf_counter()
    tensors = write_checkpoint(
        args.path, args.size_gb, hidden=args.hidden, ffn=args.ffn, heads=args.heads,
        kv_heads=args.kv_heads, vocab=args.vocab, seed=args.seed,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    size = os.path.getsize(args.path)
    layers = sum(t.name.endswith("q_proj.weight") for t in tensors)
    print(
        f"wrote {args.path}: {len(tensors)} tensors ({layers} layers), {size / 1e9:.3f} GB "
        f"in {seconds:.1f} s",
        file=sys.stderr,
    )
    if args.check:
        check(args.path, tensors)


def check(path: str, tensors: list[Tensor]) -> None:
    """Open with the reference implementation; compare names, shapes and a few values."""
    from safetensors import safe_open

    with safe_open(path, framework="numpy") as f:
        assert list(f.keys()) == sorted(t.name for t in tensors), "tensor names differ"
        for t in tensors:
            assert tuple(f.get_slice(t.name).get_shape()) == t.shape, t.name
        first = f.get_tensor(tensors[0].name)
    assert first.dtype == BF16 and np.isfinite(first.astype(np.float32)).all()
    print(f"check: safetensors {len(tensors)} tensors OK", file=sys.stderr)


if __name__ == "__main__":
    main()
