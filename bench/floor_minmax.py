"""The floor of bench_encode.py: the least work a per-channel min-max of a bf16 checkpoint takes.

    python bench/floor_minmax.py CHECKPOINT.safetensors

A fresh process that imports numpy only (no ml_dtypes: its import would hide the same cost
in qcalc), memory-maps each tensor as uint16, widens row chunks of ~32 MB of float32 to
float32 with a bit shift (a bf16 is the top half of a float32) and takes each row's min and
max, on one thread. Nothing is printed; `floor(path)` returns the statistics for checks.
"""

from __future__ import annotations

import json
import struct
import sys

import numpy as np

CHUNK_BYTES = 32 << 20  # float32 bytes per row chunk


def read_header(path: str) -> tuple[int, dict]:
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    header.pop("__metadata__", None)
    return 8 + length, header


def widened(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def floor(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    start, header = read_header(path)
    stats = {}
    for name, info in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
        assert info["dtype"] == "BF16", f"{name}: the floor reads BF16 checkpoints only"
        shape = tuple(info["shape"])
        offset = start + info["data_offsets"][0]
        bits = np.memmap(path, mode="r", dtype=np.uint16, offset=offset, shape=shape)
        if bits.ndim != 2:
            values = widened(bits)
            stats[name] = (values.min(), values.max())
            continue
        rows = max(1, CHUNK_BYTES // (bits.shape[1] * 4))
        mins, maxs = [], []
        for first in range(0, bits.shape[0], rows):
            values = widened(bits[first : first + rows])
            mins.append(values.min(axis=1))
            maxs.append(values.max(axis=1))
        stats[name] = (np.concatenate(mins), np.concatenate(maxs))
    return stats


if __name__ == "__main__":
    floor(sys.argv[1])
