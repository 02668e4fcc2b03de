"""Numbers that judge a dream: the seam score (are tile borders visible?).

A seam is a line where the change the dream made jumps: so look at the change D = output − input, average
|∂D/∂x| down each column and |∂D/∂y| along each row, and compare the worst line (99.5th percentile) with a typical
one (median). A seamless dream scores close to a dream done in one piece.
"""
from __future__ import annotations

import numpy as np


def _as_float(a: np.ndarray) -> np.ndarray:
    scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(a.dtype, 1.0)
    a = a.astype(np.float64) / scale
    return a if a.ndim == 2 else a.mean(axis=2)


def seam_score(before: np.ndarray, after: np.ndarray) -> float:
    """max over both axes of (99.5th percentile / median) of the per-line mean gradient of the change."""
    d = _as_float(after) - _as_float(before)
    cols = np.abs(np.diff(d, axis=1)).mean(axis=0)
    rows = np.abs(np.diff(d, axis=0)).mean(axis=1)
    return float(max(np.percentile(p, 99.5) / max(np.median(p), 1e-12) for p in (cols, rows)))
