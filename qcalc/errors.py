"""Errors qcalc raises; the CLI turns each into one line on stderr and an exit code."""

from __future__ import annotations


class QcalcError(Exception):
    """Base class: a user-facing problem with a one-line message."""

    exit_code = 2


class ReadError(QcalcError):
    """An input file is missing, unreadable, malformed or of an unknown kind."""


class SpecError(QcalcError):
    """Quantization settings that are invalid, or invalid for a given tensor."""


class NonFiniteError(QcalcError):
    """A tensor holds NaN or infinite values and --nonfinite is 'error'."""


class FilterError(QcalcError):
    """An --include / --exclude pattern matches no tensor, or nothing is left to encode."""


class FormatError(QcalcError):
    """An encodings file is malformed, or an encoding cannot be written in a version."""


class WriteError(QcalcError):
    """An output file cannot be written (missing directory, permissions, disk full)."""


class RecipeError(QcalcError):
    """A --recipe file is unreadable or invalid, or its rules give a tensor invalid settings."""
