"""Errors qcalc raises; the CLI turns each into one line on stderr and an exit code."""

from __future__ import annotations

import contextlib
import os
import re
from typing import Iterator


class QcalcError(Exception):
    """Base class: a user-facing problem with a one-line message."""

    exit_code = 2


class ReadError(QcalcError):
    """An input file is missing, unreadable, malformed or of an unknown kind."""


class SpecError(QcalcError):
    """Quantization settings that are invalid, or invalid for a given tensor."""


class NonFiniteError(QcalcError):
    """A tensor holds NaN or infinite values and --nonfinite is 'error', or its encoding would
    not be finite (a range that overflows float32) and --nonfinite is not 'keep'."""


class FilterError(QcalcError):
    """An --include / --exclude pattern matches no tensor, or nothing is left to encode."""


class FormatError(QcalcError):
    """An encodings file is malformed, or an encoding cannot be written in a version."""


class WriteError(QcalcError):
    """An output file cannot be written (missing directory, permissions, disk full)."""


class RecipeError(QcalcError):
    """A --recipe file is unreadable or invalid, or its rules give a tensor invalid settings."""


class HistogramError(QcalcError):
    """AIMET cannot build the histogram (torch.histc raises): a cell without any finite value,
    a range whose bin edges overflow float32, or NaN / inf in a cell whose range collapsed to
    one value."""


# Characters that would move the cursor, change the terminal or break a line: C0 and C1
# controls, DEL, and the invisible or direction-changing format characters.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """`text` with every control or direction-changing character escaped as Python writes it
    (``\\n``, ``\\x1b``, ``\\u202e``): whatever a file names its tensors, a message stays one
    line and cannot drive the terminal."""
    return _UNPRINTABLE.sub(
        lambda match: match.group().encode("unicode_escape").decode(), str(text)
    )


def one_line(text: object) -> str:
    """Collapse any whitespace run (newlines included) so a message stays on one line."""
    return " ".join(str(text).split())


@contextlib.contextmanager
def os_errors(
    path: "str | os.PathLike[str]", error: type[QcalcError] = ReadError, doing: str = ""
) -> Iterator[None]:
    """The one way an OSError becomes a qcalc error: `error` with the message
    "PATH: [DOING: ]REASON" (REASON "no such file or directory" for a missing file)."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, FileNotFoundError):
            reason = "no such file or directory"
        else:
            reason = one_line(exc.strerror or exc)
        prefix = f"{os.fspath(path)}: " + (f"{doing}: " if doing else "")
        raise error(prefix + reason) from None
