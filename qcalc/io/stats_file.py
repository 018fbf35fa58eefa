"""Partial statistics files (`qcalc stats -o PART.qstats`, read by `encode --from-stats`).

The format is a safetensors file: the arrays as tensors named `u<position>.<array>` — each
batch's per-cell `min` and `max` (its dtype's), for the histogram analyzers also `finite`
(float32 1 / 0: were all the cell's values finite) and, in round 2, `counts` (float64 holding
the integer counts, (cells, bins + 2)) — and a JSON document in the header's
`__metadata__["qcalc_stats"]` saying what they are. Why safetensors: qcalc already
reads it with its own validated header parser (sizes, offsets and dtypes checked before any
data is touched, fuzzed), it maps the arrays without copying, it is one file a CI artifact
store keeps as is, and nothing in it is executable (npz would do too, through zip).

The JSON (`format` "qcalc-stats", `version` 1):
- `contents`: "final" (finishable by `encode --from-stats`) or "ranges" (round 1 of a
  histogram analyzer: `qcalc stats --ranges` counts the batches next);
- `part`, `parts`: this file is part K of N of one run (`--part K/N`);
- `settings`: the flags the run was given (the Spec, the activation bitwidth, the recipe's
  SHA-256), to refuse parts made under different flags;
- `plan`: the whole run's units (tensor, kind, batch, batch count, source, shape, dtype and
  resolved Spec, in calibration order), `run` its SHA-256 and `units` its length, which
  every part of the run shares;
- `skipped`: the tensors the run does not encode (name, source, reason), as notes;
- `statistics`: this part's units: `position` (in the run's plan), `kind` (param /
  activation), `name`, `batch` (its index among the tensor's batches), `batches` (their
  count), `source`, `dtype`, `shape`, `spec` (the resolved Spec's fields), and the key of
  its arrays.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from qcalc.errors import ReadError
from qcalc.io.atomic import write_atomic
from qcalc.io.readers.safetensors import read_safetensors_metadata

FORMAT, VERSION = "qcalc-stats", 1
METADATA_KEY = "qcalc_stats"
_DTYPES = {"float16": "F16", "float32": "F32", "float64": "F64"}


def write_stats(path: os.PathLike | str, document: dict[str, Any], arrays: dict) -> None:
    """Write `document` (the JSON above, without `format` / `version`) and `arrays` (key ->
    float32 / float64 numpy array) as a stats file, atomically."""
    meta = json.dumps({"format": FORMAT, "version": VERSION, **document}, allow_nan=False)
    header: dict[str, Any] = {"__metadata__": {METADATA_KEY: meta}}
    offset, blobs = 0, []
    for key, array in arrays.items():
        array = np.ascontiguousarray(array)
        data = array.tobytes()
        header[key] = {
            "dtype": _DTYPES[array.dtype.name],
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    write_atomic(path, len(text).to_bytes(8, "little") + text + b"".join(blobs))


def read_stats(path: os.PathLike | str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(document, arrays by key: TensorRefs) of a stats file; ReadError (one line naming the
    file) for anything that is not one: a safetensors problem, no or bad qcalc document, an
    unknown version, a unit whose arrays are missing or of the wrong shape."""
    source = os.fspath(path)
    refs, metadata = read_safetensors_metadata(source)
    text = (metadata or {}).get(METADATA_KEY)
    if text is None:
        raise ReadError(f"{source}: not a qcalc stats file (no {METADATA_KEY} metadata)")
    try:
        document = json.loads(text)
    except ValueError as error:
        raise ReadError(f"{source}: the stats document is not JSON: {error}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise ReadError(f"{source}: not a qcalc stats file (format is not {FORMAT!r})")
    if document.get("version") != VERSION:
        raise ReadError(
            f"{source}: stats file version {document.get('version')!r}; this qcalc reads "
            f"version {VERSION}"
        )
    arrays = {ref.name: ref for ref in refs}
    return document, arrays
