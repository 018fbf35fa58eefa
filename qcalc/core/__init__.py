"""The numeric core: AIMET's encoding math on numpy arrays and lazily read tensors.

Imports numpy and `qcalc.errors` only (ml_dtypes where a bfloat16 / float8 finfo is needed);
nothing here knows about files, command lines or terminals.
"""
