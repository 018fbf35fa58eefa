"""Converting encodings between AIMET versions.

A conversion is lossless for what a version can hold: every tensor keeps its float grid
(bitwidth, scale, offset + qmin, symmetry, granularity), so `diff` finds the two files equal.
What a version has no field for is dropped, as aimet_read.py documents: signedness in 0.6.1 /
1.0.0 (offsets normalised to the unsigned convention), declared symmetry and per-tensor roles
in 2.x, the axis in 0.6.1 / 1.0.0, the shape and axes of a per-block grid in 1.0.0, the
decompressed bitwidth of LPBQ in 2.x (read back from the multipliers), and quantizer_args /
excluded_layers in 2.x. What a version cannot hold at all raises FormatError naming the field:
strict-symmetric grids in 0.6.1 / 1.0.0 ('bw'), per-block and LPBQ grids in 0.6.1
('block_size'), an LPBQ grid blocked before its channel axis in 1.0.0
('per_block_int_scale'), a per-channel activation of unknown axis or a per-block grid of
unknown shape (read from 1.0.0) in 2.x ('axis'), NaN / infinity.
"""

from __future__ import annotations

import os
from typing import Optional, Union

from qcalc.io.formats.aimet import EncodingFile
from qcalc.io.formats.aimet_read import loads, read
from qcalc.io.formats.aimet_write import dumps, write

PathLike = Union[str, "os.PathLike[str]"]


def convert(data: EncodingFile, version: str) -> EncodingFile:
    """`data` as a `version` file holds it (written, then read back).

    >>> convert(read("model.encodings"), "1.0.0").version  # doctest: +SKIP
    '1.0.0'
    """
    return loads(dumps(data, version), source=f"<version {version}>")


def convert_file(
    source: PathLike, target: PathLike, version: str, *, source_version: Optional[str] = None
) -> EncodingFile:
    """Read `source`, write it to `target` as `version` (atomically); returns what was read.

    Refusing a `target` that is `source` is the caller's choice (see qcalc.io.atomic.same_file).
    """
    data = read(source, source_version)
    write(target, data, version)
    return data
