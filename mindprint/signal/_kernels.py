"""Compiled inner loops (numba): the only code here that touches samples one by one.

Biquad cascades run with channels in the innermost loop so that the compiler vectorises
across channels while the recursion runs along time; every call carries its state in
and out, so filtering in chunks gives bit-identical results to one pass.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from numpy.typing import NDArray


@nb.njit(cache=True, nogil=True)
def sos_cascade(
    sos: NDArray[np.float64],
    x: NDArray[np.float64],
    out: NDArray[np.float64],
    state: NDArray[np.float64],
    reverse: bool,
) -> None:  # pragma: no cover - compiled
    """Filter ``x`` (n_channels, n_times) through ``sos`` into ``out`` (may be ``x``).

    ``state`` has shape (n_sections, 2, n_channels) (transposed direct form II) and is
    updated in place. With ``reverse`` the samples are visited from last to first.
    """
    n_sec = sos.shape[0]
    n_ch, n_t = x.shape
    v = np.empty(n_ch)
    for i in range(n_t):
        t = n_t - 1 - i if reverse else i
        for c in range(n_ch):
            v[c] = x[c, t]
        for s in range(n_sec):
            b0 = sos[s, 0]
            b1 = sos[s, 1]
            b2 = sos[s, 2]
            a1 = sos[s, 4]
            a2 = sos[s, 5]
            z0 = state[s, 0]
            z1 = state[s, 1]
            for c in range(n_ch):
                xv = v[c]
                y = b0 * xv + z0[c]
                z0[c] = b1 * xv - a1 * y + z1[c]
                z1[c] = b2 * xv - a2 * y
                v[c] = y
        for c in range(n_ch):
            out[c, t] = v[c]
