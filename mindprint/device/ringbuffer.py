"""A fixed-size ring buffer of samples, written by one acquisition thread.

Positions are absolute sample counts since the stream started, so a reader keeps a
cursor and learns exactly how many samples it missed if it fell behind (an overrun):
nothing is dropped silently.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RingRead:
    """Samples read from a :class:`RingBuffer`.

    ``data`` has shape (n_rows, n_new); ``start`` is the absolute position of its first
    sample; ``lost`` counts samples overwritten before this reader got them.
    """

    data: NDArray[np.float64]
    start: int
    lost: int

    @property
    def end(self) -> int:
        """Absolute position just after the last sample read (the next cursor)."""
        return self.start + self.data.shape[1]


class RingBuffer:
    """Fixed capacity (n_rows, capacity) float64 buffer under a lock.

    Parameters
    ----------
    n_rows : int
        Rows per sample (channels plus timestamp and marker rows).
    capacity : int
        Samples kept; older samples are overwritten.
    """

    def __init__(self, n_rows: int, capacity: int) -> None:
        if n_rows < 1 or capacity < 1:
            raise ValueError(f"n_rows and capacity must be positive, got {n_rows} and {capacity}")
        self._data = np.zeros((n_rows, capacity), dtype=np.float64)
        self._capacity = capacity
        self._head = 0  # absolute position of the next sample to write
        self._lock = threading.Lock()

    @property
    def head(self) -> int:
        """Absolute position of the next sample to be written."""
        with self._lock:
            return self._head

    def write(self, block: NDArray[np.float64]) -> None:
        """Append ``block`` of shape (n_rows, n) (copies it)."""
        if block.ndim != 2 or block.shape[0] != self._data.shape[0]:
            raise ValueError(f"block must have shape ({self._data.shape[0]}, n), got {block.shape}")
        n = block.shape[1]
        if n > self._capacity:
            block = block[:, -self._capacity :]
            skipped = n - self._capacity
        else:
            skipped = 0
        with self._lock:
            self._head += skipped
            m = block.shape[1]
            first = self._head % self._capacity
            part = min(m, self._capacity - first)
            self._data[:, first : first + part] = block[:, :part]
            self._data[:, : m - part] = block[:, part:]
            self._head += m

    def read_since(self, cursor: int) -> RingRead:
        """Return every sample written at or after ``cursor`` still in the buffer."""
        with self._lock:
            oldest = max(0, self._head - self._capacity)
            start = max(cursor, oldest)
            lost = start - cursor
            n = self._head - start
            idx = (np.arange(start, start + n) % self._capacity) if n else np.empty(0, dtype=np.intp)
            data = self._data[:, idx]
        if lost:
            logger.warning("ring buffer overrun: reader lost %d samples", lost)
        return RingRead(data=data, start=start, lost=lost)

    def latest(self, n: int) -> NDArray[np.float64]:
        """Return (a copy of) the most recent ``n`` samples, fewer if not yet written."""
        with self._lock:
            n = min(n, self._head, self._capacity)
            idx = np.arange(self._head - n, self._head) % self._capacity
            return self._data[:, idx]
