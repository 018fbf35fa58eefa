"""Sharded Hugging Face checkpoints: `*.safetensors.index.json` and the shards it names.

The index is at most MAX_INDEX_BYTES of JSON (duplicate keys refused) whose `weight_map` maps
tensor names to shard file names. A shard name is a relative path that stays inside the
index's folder (subfolders allowed; `..` leading out, absolute paths and control characters
are refused); it is checked as written, not resolved, so shards that are symbolic links (a
Hugging Face cache snapshot links each file into `blobs/`) are read. Names that lead to the
same file as written (`a.safetensors`, `./a.safetensors`) are one shard. A tensor held by two
shards is an error naming both: merging them as calibration batches would be silent nonsense.
"""

from __future__ import annotations

import os
import posixpath

from qcalc.core.tensor import Skipped, TensorRef
from qcalc.errors import ReadError
from qcalc.io.files import open_regular
from qcalc.io.readers._common import parse_json, shown
from qcalc.io.readers.safetensors import MAX_HEADER_BYTES, read_safetensors

# The largest index read (the limit on a safetensors header): real indexes are well under 1 MB.
MAX_INDEX_BYTES = MAX_HEADER_BYTES


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
        listed.setdefault(_shard_name(source, name, shard), []).append(name)
    items: list[TensorRef | Skipped] = []
    holder: dict[str, str] = {}  # tensor name -> the shard that holds it
    for shard in sorted(listed):
        shard_path = os.path.join(folder, *shard.split("/"))
        try:
            os.stat(shard_path)
        except FileNotFoundError:
            raise ReadError(f"{source}: shard {shown(shard)} does not exist") from None
        except OSError:
            pass  # read_safetensors says what is wrong
        shard_items = read_safetensors(shard_path)
        for item in shard_items:
            other = holder.setdefault(item.name, shard)
            if other != shard:
                raise ReadError(
                    f"{source}: tensor {shown(item.name)} is in two shards, {shown(other)} and "
                    f"{shown(shard)}"
                )
        present = {item.name for item in shard_items}
        missing = sorted(set(listed[shard]) - present)
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise ReadError(
                f"{source}: tensor {shown(missing[0])}{more} listed in weight_map "
                f"is not in shard {shown(shard)}"
            )
        items.extend(shard_items)
    return items


def _shard_name(source: str, tensor: str, shard: str) -> str:
    """The shard file name, normalized ("a/./b" -> "a/b"); ReadError if it leads out of the
    index's folder."""
    if not shard.isprintable():  # a newline would split every message naming the shard
        raise ReadError(
            f"{source}: shard {shown(shard)} (of tensor {shown(tensor)}) has control characters "
            "in its name"
        )
    normal = posixpath.normpath(shard.replace(os.sep, "/"))
    if posixpath.isabs(normal) or normal == ".." or normal.startswith("../"):
        raise ReadError(
            f"{source}: shard {shown(shard)} (of tensor {shown(tensor)}) is not a file name "
            "inside the index's folder"
        )
    return normal


def _weight_map(source: str) -> dict[str, str]:
    with open_regular(source) as fp:
        raw = fp.read(MAX_INDEX_BYTES + 1)
    if len(raw) > MAX_INDEX_BYTES:
        raise ReadError(f"{source}: index is larger than the {MAX_INDEX_BYTES}-byte limit")
    index = parse_json(raw, source, "index")
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if weight_map is None:
        raise ReadError(f"{source}: no 'weight_map' object (not a safetensors shard index)")
    if not (
        isinstance(weight_map, dict)
        and all(isinstance(shard, str) and shard for shard in weight_map.values())
    ):
        raise ReadError(f"{source}: 'weight_map' must map tensor names to shard file names")
    return weight_map
