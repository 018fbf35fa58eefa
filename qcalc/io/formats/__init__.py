"""Encodings files: AIMET JSON 0.6.1 / 1.0.0 / 2.0.0 / 2.1.0 — write, read, convert, diff.

>>> import numpy as np
>>> from qcalc.ops.encode import encode_array
>>> w = encode_array(np.array([-1.0, 2.0], dtype=np.float32), name="w")
>>> text = dumps(EncodingFile(params=[w]), "1.0.0")
>>> diff(loads(text), [w]).equal
True
"""

from __future__ import annotations

from qcalc.core.choices import VERSIONS, Version
from qcalc.io.formats.aimet import LEGACY_VERSIONS, EncodingFile, FormatError
from qcalc.io.formats.aimet_convert import convert, convert_file
from qcalc.io.formats.aimet_read import from_dict, loads, read
from qcalc.io.formats.aimet_write import dumps, encoding_entry, file_dict, quantizer_args, write
from qcalc.io.formats.diff import DiffResult, NumericDelta, SettingChange, diff

__all__ = [
    "VERSIONS",
    "LEGACY_VERSIONS",
    "Version",
    "EncodingFile",
    "FormatError",
    "encoding_entry",
    "file_dict",
    "quantizer_args",
    "dumps",
    "write",
    "read",
    "loads",
    "from_dict",
    "convert",
    "convert_file",
    "diff",
    "DiffResult",
    "NumericDelta",
    "SettingChange",
]
