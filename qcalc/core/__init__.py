"""The numeric core: AIMET's encoding math on numpy arrays and lazily read tensors.

Imports numpy and `qcalc.errors` only (ml_dtypes for bfloat16 arithmetic under
--compute-dtype input and for `TensorRef.load()` of bfloat16 / float8 tensors);
nothing here knows about files, command lines or terminals.
"""
