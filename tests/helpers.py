"""Helpers shared by the test modules."""

from __future__ import annotations

import io
from typing import Optional, Sequence

import numpy as np

from qcalc.commands.render.encodings import render_encodings
from qcalc.core import histogram
from qcalc.core.encoding import Encoding
from qcalc.core.stats import finite_minmax


def rendered(encodings: Sequence[Encoding], fmt: str) -> str:
    """What `qcalc encode --format fmt` prints for `encodings`."""
    out = io.StringIO()
    render_encodings(encodings, fmt, out)
    return out.getvalue()


def observe(
    previous: Optional[histogram.Histogram],
    cells: np.ndarray,
    bins: int,
    dtype,
    growth_limit: Optional[float] = None,
) -> histogram.Histogram:
    """One whole batch, (cells, m), into AIMET's histogram in one go: its per-cell finite
    min / max, the plan, the counts, the finish (what `qcalc.core.calibrate` does chunk by
    chunk)."""
    cells = np.asarray(cells)
    stats, _ = finite_minmax(cells, (1,))
    binning = histogram.plan_batch(
        previous, stats.min.ravel(), stats.max.ravel(), bins, dtype, growth_limit
    )
    return histogram.finish(binning, histogram.count(cells, binning))
