from __future__ import annotations

import numpy as np
import pytest

from mindprint.device.ringbuffer import RingBuffer


def _block(start: int, n: int) -> np.ndarray:
    return np.vstack([np.arange(start, start + n, dtype=float), -np.arange(start, start + n, dtype=float)])


def test_reads_in_order_across_wraparound() -> None:
    ring = RingBuffer(2, 10)
    cursor, seen = 0, []
    for start, n in [(0, 4), (4, 5), (9, 3), (12, 7)]:
        ring.write(_block(start, n))
        read = ring.read_since(cursor)
        assert read.lost == 0
        seen.extend(read.data[0].tolist())
        cursor = read.end
    assert seen == list(range(19))


def test_overrun_counts_lost_samples() -> None:
    ring = RingBuffer(2, 10)
    ring.write(_block(0, 25))
    read = ring.read_since(0)
    assert read.lost == 15 and read.start == 15
    np.testing.assert_array_equal(read.data[0], np.arange(15, 25))
    np.testing.assert_array_equal(ring.latest(3)[0], [22, 23, 24])


def test_shape_is_checked() -> None:
    with pytest.raises(ValueError, match="shape"):
        RingBuffer(2, 10).write(np.zeros((3, 4)))
