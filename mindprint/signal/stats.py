"""Small statistics the pipeline and the verification layer share."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["mad_std", "median"]


def median(x: NDArray[np.float64], axis: int) -> NDArray[np.float64]:
    """``np.median(x, axis=axis)``, bit for bit (the two middle values' sum over 2 when the
    count is even). Rows of ≤ 64 values (channels, channel pairs, a frequency bin's
    neighbours) are sorted: at a third of the cost, since on rows that short NumPy's
    partition and bookkeeping dominate; longer rows go to ``np.median``."""
    n = x.shape[axis]
    if n > 64:  # e.g. the pairs of a large cap: partitioning wins again
        return np.asarray(np.median(x, axis=axis))
    ordered = np.sort(x, axis=axis)
    middle = np.take(ordered, n // 2, axis=axis)
    return middle if n % 2 else (np.take(ordered, n // 2 - 1, axis=axis) + middle) / 2.0


def mad_std(x: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    """The robust standard deviation along ``axis``: 1.4826 × the median absolute deviation
    from the median (both by :func:`median`)."""
    centre = np.expand_dims(median(x, axis=axis), axis)
    return 1.4826 * median(np.abs(x - centre), axis=axis)
