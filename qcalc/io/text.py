"""Small text files (encodings JSON, recipes) read whole as UTF-8, with one-line errors, and
how error messages show the strings and numbers such files hold."""

from __future__ import annotations

import math
import os
from typing import Any, Optional, Union

from qcalc.core.spec import int_text
from qcalc.errors import QcalcError
from qcalc.io.files import open_regular

# The largest file read whole into memory. Encodings files of large LLMs run to hundreds of
# MB (an 8B-parameter model with LPBQ blocks of 64 holds ~125 million multipliers, ~500 MB of
# JSON), and parsing multiplies the size in memory by several times (Python objects): 1 GiB
# keeps every real file readable and the memory a hostile file can claim within reach of a
# workstation. The caller of `read_utf8` picks the limit (recipes: MAX_RECIPE_BYTES).
MAX_TEXT_BYTES = 1 << 30
# Error messages show at most this many characters of a string from a file (a tensor name,
# a field's value), cut in the middle; LLM tensor names are well under 100 characters.
MAX_SHOWN_CHARS = 120


def read_utf8(
    path: Union[str, "os.PathLike[str]"],
    read_error: type[QcalcError],
    text_error: type[QcalcError],
    doing: str = "cannot read",
    what: str = "",
    limit: Optional[int] = None,
) -> str:
    """The text of the regular file at `path`. Unreadable (or a FIFO, a device): `read_error`
    "PATH: DOING: reason"; larger than `limit` bytes: `read_error` "PATH: is N bytes, more than
    the LIMIT qcalc reads", refused before anything is read; not UTF-8: `text_error`
    "PATH: [WHAT: ]not UTF-8 text (byte N)". `limit` defaults to MAX_TEXT_BYTES."""
    limit = MAX_TEXT_BYTES if limit is None else limit
    with open_regular(path, read_error, doing, pipes=True) as file:  # `<(cmd)`: bounded too
        size = os.fstat(file.fileno()).st_size
        if size > limit:
            raise read_error(_too_large(path, size, limit))
        raw = file.read(limit + 1)  # a file that grew since fstat is still bounded
    if len(raw) > limit:
        raise read_error(_too_large(path, None, limit))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        where = f"{os.fspath(path)}: " + (f"{what}: " if what else "")
        raise text_error(f"{where}not UTF-8 text (byte {error.start})") from None


def _too_large(path: Any, size: Optional[int], limit: int) -> str:
    what = "holds" if size is None else f"is {size:,} bytes,"
    return f"{os.fspath(path)}: {what} more than the {byte_size(limit)} qcalc reads into memory"


def byte_size(n: int) -> str:
    """1 GiB, 1 MiB, or N bytes."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n:,} bytes"


def quote(text: str, mark: str = "'", limit: int = MAX_SHOWN_CHARS) -> str:
    """`text` between two `mark`s as a message shows it, always on one line: backslash, `mark`
    and every character that is not printable (newlines, controls, U+2028, lone surrogates)
    escaped as Python's repr does (\\n, \\x00, \\u2028, \\udc80); longer than `limit`
    characters, cut in the middle with "…" and the full length added.

    >>> quote("conv1.weight")
    "'conv1.weight'"
    >>> print(quote('a\\nb"', '"'))
    "a\\nb\\""
    >>> print(quote("x" * 200, limit=10))
    'xxxxxx…xxxx' (200 characters)
    """
    if len(text) <= limit:
        return mark + _escaped(text, mark) + mark
    head = limit * 2 // 3
    tail = text[len(text) - (limit - head) :]
    cut = f"{_escaped(text[:head], mark)}…{_escaped(tail, mark)}"
    return f"{mark}{cut}{mark} ({len(text):,} characters)"


def _escaped(text: str, mark: str) -> str:
    if text.isprintable() and "\\" not in text and mark not in text:
        return text
    out = []
    for ch in text:
        if ch == "\\" or ch == mark:
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


def number(value: Any) -> str:
    """A JSON / TOML number as a message shows it: integers in full (abbreviated beyond 20
    digits), floats as their shortest repr, NaN and infinities spelled as JSON does."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return int_text(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    return repr(value)
