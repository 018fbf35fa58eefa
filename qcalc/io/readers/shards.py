"""Sharded Hugging Face checkpoints: `*.safetensors.index.json` and the shards it names."""

from __future__ import annotations

import json
import os

from qcalc.core.tensor import Skipped, TensorRef
from qcalc.errors import ReadError, one_line, os_errors
from qcalc.io.readers.safetensors import read_safetensors


def read_index(path: str | os.PathLike[str]) -> list[TensorRef | Skipped]:
    """Open a shard index: every tensor of every shard it names, shard by shard.

    Shards (paths relative to the index's directory) come in sorted order, each shard's tensors
    in data-offset order. Tensors a shard holds beyond its weight_map entries are included too.

    >>> len(read_index("model.safetensors.index.json"))  # doctest: +SKIP
    291
    """
    source = os.fspath(path)
    weight_map = _weight_map(source)
    folder = os.path.dirname(source)
    listed: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        listed.setdefault(shard, []).append(name)
    items: list[TensorRef | Skipped] = []
    for shard in sorted(listed):
        shard_path = os.path.join(folder, shard)
        if not os.path.isfile(shard_path):
            raise ReadError(f"{source}: shard {shard!r} does not exist ({shard_path})")
        shard_items = read_safetensors(shard_path)
        present = {item.name for item in shard_items}
        missing = sorted(set(listed[shard]) - present)
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise ReadError(
                f"{source}: tensor {missing[0]!r}{more} listed in weight_map "
                f"is not in shard {shard!r}"
            )
        items.extend(shard_items)
    return items


def _weight_map(source: str) -> dict[str, str]:
    with os_errors(source), open(source, "rb") as fp:
        raw = fp.read()
    try:
        index = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReadError(f"{source}: not valid JSON ({one_line(exc)})") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if weight_map is None:
        raise ReadError(f"{source}: no 'weight_map' object (not a safetensors shard index)")
    if not (
        isinstance(weight_map, dict)
        and all(isinstance(shard, str) and shard for shard in weight_map.values())
    ):
        raise ReadError(f"{source}: 'weight_map' must map tensor names to shard file names")
    return weight_map
