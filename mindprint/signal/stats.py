"""Small statistics the pipeline and the verification layer share."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["mad_std", "median", "median_mad_std"]


def median(x: NDArray[np.float64], axis: int) -> NDArray[np.float64]:
    """``np.median(x, axis=axis)``, bit for bit (the two middle values' sum over 2 when the
    count is even) for finite ``x``. Rows of ≤ 64 values (channels, channel pairs, a
    frequency bin's neighbours) are sorted: at a third of the cost, since on rows that short
    NumPy's partition and bookkeeping dominate; longer rows are partitioned at the middle
    directly — what ``np.median`` does, without its NaN check and bookkeeping (an 8 × 1000
    epoch: 33 against 53 µs)."""
    n = x.shape[axis]
    if n > 64:  # e.g. a channel's samples, the pairs of a large cap: partitioning wins again
        k = n // 2
        if n % 2:
            return np.take(np.partition(x, k, axis=axis), k, axis=axis)
        halves = np.partition(x, (k - 1, k), axis=axis)
        return (np.take(halves, k - 1, axis=axis) + np.take(halves, k, axis=axis)) / 2.0
    ordered = np.sort(x, axis=axis)
    middle = np.take(ordered, n // 2, axis=axis)
    return middle if n % 2 else (np.take(ordered, n // 2 - 1, axis=axis) + middle) / 2.0


def median_mad_std(x: NDArray[np.float64], axis: int = -1) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """The median along ``axis`` and the robust standard deviation around it — 1.4826 × the
    median absolute deviation — both by :func:`median`, both keeping ``axis`` (length 1)."""
    centre = np.expand_dims(median(x, axis=axis), axis)
    return centre, np.expand_dims(1.4826 * median(np.abs(x - centre), axis=axis), axis)


def mad_std(x: NDArray[np.float64], axis: int = -1) -> NDArray[np.float64]:
    """The robust standard deviation along ``axis`` (:func:`median_mad_std`'s, ``axis`` reduced)."""
    return np.squeeze(median_mad_std(x, axis)[1], axis=axis)
