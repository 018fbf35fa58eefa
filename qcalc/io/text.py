"""Small text files (encodings JSON, recipes) read whole as UTF-8, with one-line errors."""

from __future__ import annotations

import os
from typing import Union

from qcalc.errors import QcalcError
from qcalc.io.files import open_regular


def read_utf8(
    path: Union[str, "os.PathLike[str]"],
    read_error: type[QcalcError],
    text_error: type[QcalcError],
    doing: str = "cannot read",
    what: str = "",
) -> str:
    """The text of the regular file at `path`. Unreadable (or a FIFO, a device): `read_error`
    "PATH: DOING: reason"; not UTF-8: `text_error` "PATH: [WHAT: ]not UTF-8 text (byte N)"."""
    with open_regular(path, read_error, doing) as file:
        raw = file.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        where = f"{os.fspath(path)}: " + (f"{what}: " if what else "")
        raise text_error(f"{where}not UTF-8 text (byte {error.start})") from None
