"""Uniqueness: a fingerprint index of accepted EEG that catches replays.

A fingerprint is a 1.5 s stretch of one channel, low-passed at 20 Hz, resampled to a
64 Hz grid (96 values), with its own quadratic trend removed and z-normalised — so
rescaling, DC offsets, slow drift and broadband noise barely move it, and the same
stretch gives the same vector whether it was cut from a long recording or submitted on
its own. Accepted data is fingerprinted per channel every ``hop`` grid samples (stored
and keyed in the platform database, ``platform/replay.py``). A query (≥ 2 s) is checked
over its whole length — segments every 0.5 s from one edge to the other, so a replayed
stretch anywhere in the epoch, or one that straddles two stored samples (one part is
≥ 2 s of a 4 s epoch and holds a whole segment),
is seen — each at ``hop`` integer offsets of the grid (a time shift lines up within half
a grid sample, 7.8 ms, which the 20 Hz low-pass makes cheap), forwards and time-reversed,
channel by channel, all in one search: channel identity is ignored, so permuted channels
still match. (Checking the whole epoch costs 320 query vectors instead of 128 for the first
1.5 s: at 10^5 stored vectors 36 ms instead of 19 ms per query; a second, half-step grid
phase would double that again and caught nothing more in the tests.)

A replay is declared when at least ``min_channels`` query channels, and at least
``min_fraction`` of them, match (similarity ≥ ``threshold``) the *same* stored
recording at the *same* time offset and direction:
one channel resembling something by chance is common among millions of EEG segments;
several channels agreeing on where they came from is not — unless they are all one signal.
Where a headset's channels share their 1–20 Hz (Emotiv EPOC, some Elekta and Cyton
stretches), one chance resemblance to one stored fingerprint shows on every query channel
at once. So the stored fingerprints the query channels matched must also be more than one
signal — their participation ratio (the effective number of distinct fingerprints,
(Σλ)² / Σλ² of their Gram matrix) at least ``min_sources`` — unless the match is close
(mean similarity ≥ ``close``), as a replay of one-signal data is. Measured on
``benchmarks/verification.py``'s corpus: every false match among distinct windows had
matched fingerprints of ratio ≤ 1.03 at similarity ≤ 0.93; every replay (exact, rescaled,
noisy, shifted, reversed, permuted) ≥ 1.33.

What an accepted sample stores reaches back ``LEAD_SECONDS`` into the EEG its session
streamed just before the epoch (:func:`stored_fingerprints`). Without it, a replayed stretch
split about evenly between two consecutive stored samples (1.5 s in each of a 3 s stretch)
held no whole query segment inside either, and the database's keys — which need a close
match — missed 16 of 161 such straddles (``benchmarks/replay.py``); with 1 s of lead the
stored fingerprints run on across the boundary, and none is missed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import faiss
import numpy as np
from numpy.typing import NDArray

from mindprint.core.errors import SignalError
from mindprint.signal.filters import design_filter, filter_offline

logger = logging.getLogger(__name__)
# one thread per search: the API serves requests on its own threads, and the machine has 2 cores
faiss.omp_set_num_threads(1)

GRID_HZ = 64.0
SEGMENT = 96  # 1.5 s at 64 Hz
FRACTIONS = (0.0, 0.5)  # grid phases a query is tried at (half a grid sample: 7.8 ms)
PRE_EMPHASIS = 0.8
QUERY_START = 16  # grid samples skipped at each end of a query (filter edge)
SPACING = 32  # grid samples (0.5 s) between query segments

# keys for the shared index (SimHash, Charikar 2002): the sign of a fingerprint's projection
# on random hyperplanes within the span of its DCT components 1..HASH_DIMS, HASH_BITS signs
# per key, HASH_TABLES keys per fingerprint. Similar fingerprints share a key with
# probability (1 − angle/π)^HASH_BITS; a replay has dozens of aligned fingerprints, so it
# shares many keys with the sample it copies, while a distinct one shares ~none.
# The hyperplanes are drawn from a fixed seed (PCG64: the same on every machine and numpy).
HASH_BITS = 32
HASH_TABLES = 4
HASH_DIMS = 48
HASH_SEED = 20261203
LEAD_SECONDS = 1.0  # how far an accepted sample's stored fingerprints reach back into its session
KEY_CHANNELS = 8  # query channels whose keys look up candidates (all channels are checked)

__all__ = [
    "LEAD_SECONDS",
    "FingerprintIndex",
    "QuerySet",
    "ReplayMatch",
    "ReplayRule",
    "fingerprints",
    "hash_keys",
    "query_set",
    "stored_fingerprints",
]


def _to_grid(
    data: NDArray[np.float64], sfreq: float, fractions: tuple[float, ...] = (0.0,)
) -> list[NDArray[np.float64]]:
    """Low-pass at 20 Hz (once) and resample onto the 64 Hz grid starting each of ``fractions``
    of a grid step late."""
    centred = data - data.mean(axis=1, keepdims=True)
    band = filter_offline(centred, design_filter(sfreq, None, min(20.0, sfreq / 2 - 1), order=4))
    source = np.arange(band.shape[1]) / sfreq
    grids = []
    for fraction in fractions:
        n_grid = int(np.floor((band.shape[1] / sfreq - fraction / GRID_HZ) * GRID_HZ))
        times = (np.arange(n_grid) + fraction) / GRID_HZ
        # the 1–20 Hz signal is smooth at the source rate: linear interpolation is enough
        grids.append(_interp_rows(times, source, band))
    return grids


def _interp_rows(
    times: NDArray[np.floating], source: NDArray[np.floating], rows: NDArray[np.floating]
) -> NDArray[np.float64]:
    """``np.interp(times, source, row)`` for every row at once, with its arithmetic (the
    slope of the interval, times the offset into it, plus its left value; a time on a source
    sample takes that sample; beyond the ends, the end values): the same numbers, bit for bit."""
    left = np.clip(np.searchsorted(source, times, side="right") - 1, 0, len(source) - 2)
    right = left + 1
    slope = (rows[:, right] - rows[:, left]) / (source[right] - source[left])
    out = slope * (times - source[left]) + rows[:, left]
    on_sample = times == source[left]
    out[:, on_sample] = rows[:, left[on_sample]]
    out[:, times >= source[-1]] = rows[:, -1:]
    out[:, times < source[0]] = rows[:, :1]
    return out


_t = np.linspace(-1, 1, SEGMENT)
_basis = np.stack([np.ones(SEGMENT), _t, _t**2], axis=1)
# projection onto constant, linear, quadratic: x ↦ (x @ _FIT) @ _TREND, rank 3 (a 96 × 96
# product per segment would cost 32 times the arithmetic)
_FIT = np.linalg.pinv(_basis).T  # (SEGMENT, 3)
_TREND = np.ascontiguousarray(_basis.T)  # (3, SEGMENT)


def _segments(
    grid: NDArray[np.float64], hop: int, starts: NDArray[np.int64] | None = None
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """(n_channels * n_positions, SEGMENT) z-normalised segments (channel-major) and their
    start positions: every ``hop`` grid samples, or at ``starts``."""
    n = grid.shape[1]
    if n < SEGMENT:
        return np.empty((0, SEGMENT), np.float32), np.empty(0, np.int64)
    if starts is None:
        starts = np.arange(0, n - SEGMENT + 1, hop)
    windows = np.lib.stride_tricks.sliding_window_view(grid, SEGMENT, axis=1)[:, starts]
    centred = windows - (windows @ _FIT) @ _TREND  # remove each segment's quadratic trend
    # pre-emphasis flattens EEG's 1/f spectrum: more independent values per fingerprint,
    # so distinct stretches correlate less by chance (at 1.0, a plain derivative, added
    # noise would dominate; 0.8 keeps both)
    emphasised = centred.copy()
    emphasised[:, :, 1:] -= PRE_EMPHASIS * centred[:, :, :-1]
    centred = emphasised - emphasised.mean(axis=2, keepdims=True)
    norms = np.linalg.norm(centred, axis=2, keepdims=True)
    vectors = (centred / np.maximum(norms, 1e-30)).reshape(-1, SEGMENT).astype(np.float32)
    return np.ascontiguousarray(vectors), starts


def _sources(vectors: NDArray[np.float32]) -> float:
    """How many distinct signals unit ``vectors`` are: the participation ratio of their Gram
    matrix, (Σλ)² / Σλ² = n² / ‖G‖²_F (1 for copies of one vector, n for orthogonal ones)."""
    unit = vectors.astype(np.float64)
    gram = unit @ unit.T
    return float(np.trace(gram) ** 2 / max(float(np.sum(gram * gram)), 1e-30))


def _hash_planes() -> NDArray[np.float32]:
    """(SEGMENT, HASH_TABLES * HASH_BITS) hyperplanes: Gaussian directions in the span of
    the DCT-II basis vectors 1..HASH_DIMS (below ~16 Hz on the grid, where a sub-sample
    misalignment moves a fingerprint least; the mean is already removed)."""
    n = np.arange(SEGMENT)
    k = np.arange(1, HASH_DIMS + 1)
    basis = np.cos(np.pi * (n[:, None] + 0.5) * k[None, :] / SEGMENT) * np.sqrt(2.0 / SEGMENT)
    gauss = np.random.Generator(np.random.PCG64(HASH_SEED)).standard_normal((HASH_DIMS, HASH_TABLES * HASH_BITS))
    return np.ascontiguousarray(basis @ gauss, dtype=np.float32)


_PLANES = _hash_planes()


def hash_keys(vectors: NDArray[np.float32]) -> NDArray[np.int64]:
    """The distinct keys of ``vectors`` (n, SEGMENT): ``table << HASH_BITS | signs``."""
    if not len(vectors):
        return np.empty(0, np.int64)
    signs = np.asarray(vectors, np.float32) @ _PLANES > 0  # (n, tables * bits)
    packed = np.packbits(signs, axis=1, bitorder="little")  # bit j of a table: 2^j
    keys = packed.view("<u4").astype(np.int64)  # (n, tables): HASH_BITS = 32
    keys |= np.arange(HASH_TABLES, dtype=np.int64) << HASH_BITS
    return np.unique(keys)


def fingerprints(
    data: NDArray[np.floating], sfreq: float, hop: int = 4
) -> tuple[NDArray[np.float32], NDArray[np.int64], int]:
    """Fingerprints of every channel every ``hop`` grid samples; returns (vectors, starts, n_channels)."""
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2 or not np.all(np.isfinite(x)):
        raise SignalError("fingerprints need finite data of shape (n_channels, n_times)")
    (grid,) = _to_grid(x, sfreq)
    vectors, starts = _segments(grid, hop)
    return vectors, starts, x.shape[0]


def stored_fingerprints(
    epoch: NDArray[np.floating], sfreq: float, lead: NDArray[np.floating] | None = None, hop: int = 4
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """What an accepted sample stores: :func:`fingerprints` of ``lead`` — the EEG its session
    streamed just before the epoch, at most LEAD_SECONDS (none at a session's start or after a
    gap) — and the epoch as one stretch, with positions counted from the epoch's first grid
    sample (negative in the lead). Without a lead, the same as :meth:`QuerySet.stored`."""
    if lead is not None and lead.shape[0] != np.shape(epoch)[0]:
        raise SignalError(f"a lead of {lead.shape[0]} channels before an epoch of {np.shape(epoch)[0]}")
    n_lead = 0 if lead is None else lead.shape[1]
    stretch = np.concatenate([lead, epoch], axis=1) if n_lead else epoch
    vectors, starts, n_channels = fingerprints(stretch, sfreq, hop)
    return vectors, np.tile(starts - int(round(n_lead / sfreq * GRID_HZ)), n_channels)


def _query_shifts(n: int, hop: int) -> list[int]:
    """Start positions of query segments: every SPACING from QUERY_START to the far edge,
    each at ``hop`` consecutive shifts (short queries: as far in as they allow)."""
    last = n - QUERY_START - SEGMENT - (hop - 1)
    if last < QUERY_START:
        first = min(QUERY_START, max(0, n - SEGMENT - hop))
        return [first + step for step in range(hop) if first + step + SEGMENT <= n]
    starts = list(range(QUERY_START, last + 1, SPACING))
    if last - starts[-1] >= SPACING // 2:
        starts.append(last)  # the tail of the epoch too
    return [start + step for start in starts for step in range(hop)]


@dataclass(frozen=True, slots=True)
class QuerySet:
    """A query's fingerprints across the whole epoch, both directions and grid phases, with
    the channel, grid start and direction of each row; ``keys`` look up candidates."""

    vectors: NDArray[np.float32]
    channels: NDArray[np.int64]
    shifts: NDArray[np.int64]
    reversed: NDArray[np.bool_]
    n_channels: int
    keys: NDArray[np.int64]
    grid: NDArray[np.float64]  # the query on the grid (phase 0): what is stored if it is accepted

    def stored(self, hop: int = 4) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """The fingerprints and positions to store for this data once accepted (the same as
        :func:`fingerprints`, from the grid already computed)."""
        vectors, starts = _segments(self.grid, hop)
        return vectors, np.tile(starts, self.n_channels)


def query_set(data: NDArray[np.floating], sfreq: float, hop: int = 4) -> QuerySet:
    """The fingerprints a replay query of ``data`` (n_channels, ≥ 2 s) searches with.

    Segments every SPACING grid samples from edge to edge (a replayed stretch that straddles
    two stored samples still has a whole segment inside one of them, as long as that part
    is ≥ SEGMENT + SPACING grid samples), each at ``hop`` shifts so that one lines up with the
    stored grid, at two grid phases, forwards and time-reversed."""
    x = np.asarray(data, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] < 2 * sfreq or not np.all(np.isfinite(x)):
        raise SignalError("a replay query needs finite (n_channels, >= 2 s) data")
    n_ch = x.shape[0]
    keyed = np.unique(np.round(np.linspace(0, n_ch - 1, min(n_ch, KEY_CHANNELS))).astype(np.int64))
    batches, channels, shifts_of, directions = [], [], [], []
    grids = _to_grid(x, sfreq, FRACTIONS)
    for grid in grids:
        shifts = np.asarray(_query_shifts(grid.shape[1], hop), dtype=np.int64)
        if not len(shifts):
            continue
        # both directions in one call: the channels forwards, then time-reversed; rows are
        # channel-major (row = channel * len(shifts) + j), so the first half is forwards
        vectors, _ = _segments(np.concatenate([grid, grid[:, ::-1]]), 1, shifts)
        batches.append(vectors)
        channels.append(np.tile(np.repeat(np.arange(n_ch), len(shifts)), 2))
        shifts_of.append(np.tile(shifts, 2 * n_ch))
        directions.append(np.repeat([False, True], n_ch * len(shifts)))
    if not batches:
        empty = np.empty(0, np.int64)
        return QuerySet(np.empty((0, SEGMENT), np.float32), empty, empty, np.empty(0, bool), n_ch, empty, grids[0])
    vectors = np.concatenate(batches)
    channel = np.concatenate(channels)
    return QuerySet(
        vectors,
        channel,
        np.concatenate(shifts_of),
        np.concatenate(directions),
        n_ch,
        hash_keys(vectors if len(keyed) == n_ch else vectors[np.isin(channel, keyed)]),
        grids[0],
    )


@dataclass(frozen=True, slots=True)
class ReplayMatch:
    """Evidence that a query replays stored data."""

    owner: int
    offset: int  # stored grid position minus query grid position
    reversed: bool
    channels: int
    similarity: float


@dataclass(frozen=True, slots=True)
class ReplayRule:
    """When fingerprints make a replay: ``threshold`` cosine similarity per channel, at least
    ``min_channels`` and ``min_fraction`` of the query's channels agreeing on one stored
    sample, offset and direction, on stored fingerprints that are at least ``min_sources``
    distinct signals or at a mean similarity of ``close``; ``hop`` grid samples between
    stored fingerprints."""

    hop: int = 4
    threshold: float = 0.8
    min_channels: int = 2
    min_fraction: float = 0.5
    min_sources: float = 1.2
    close: float = 0.97

    def match_sample(
        self, queries: QuerySet, owner: int, vectors: NDArray[np.float32], positions: NDArray[np.int64]
    ) -> ReplayMatch | None:
        """Replay evidence against one stored sample's fingerprints, exactly: every pair of a
        query and a stored fingerprint at or above the threshold votes (one matrix product)."""
        if not len(vectors) or not len(queries.vectors):
            return None
        stored = np.asarray(vectors, np.float32)
        sims = queries.vectors @ stored.T
        rows, cols = np.nonzero(sims >= self.threshold)
        owners = np.full(len(rows), owner)
        return self.vote(queries, rows, owners, np.asarray(positions)[cols], sims[rows, cols], cols, stored.__getitem__)

    def vote(
        self,
        queries: QuerySet,
        rows: NDArray[np.int64],
        owners: NDArray[np.int64],
        positions: NDArray[np.int64],
        sims: NDArray[np.float32],
        refs: NDArray[np.int64],
        fetch: Callable[[NDArray[np.int64]], NDArray[np.float32]],
    ) -> ReplayMatch | None:
        """Matching pairs (query row, stored owner, position and fingerprint, similarity) → the
        replay they agree on: a channel counts for one (owner, offset, direction) at its best
        similarity, and the fingerprints so matched must be more than one signal (see the
        module). ``fetch(refs[i])`` gives pair i's stored fingerprint: only those of
        groups that pass the channel count are fetched."""
        if not len(rows):
            return None
        n_ch = queries.n_channels
        # one vote per (owner, offset, direction, channel), at its best similarity
        groups = np.stack(
            [
                np.asarray(owners, np.int64),
                np.asarray(positions, np.int64) - queries.shifts[rows],
                queries.reversed[rows].astype(np.int64),
            ],
            axis=1,
        )
        keys, group = np.unique(groups, axis=0, return_inverse=True)
        group = group.ravel()
        order = np.lexsort((-np.asarray(sims, np.float64), queries.channels[rows], group))
        pair = group[order] * n_ch + queries.channels[rows][order]
        first = np.r_[True, pair[1:] != pair[:-1]]  # each (group, channel) at its best
        chosen_group, chosen_sim = group[order][first], np.asarray(sims, np.float64)[order][first]
        chosen_refs = np.asarray(refs, np.int64)[order][first]
        channels = np.bincount(chosen_group, minlength=len(keys))
        similarity = np.bincount(chosen_group, weights=chosen_sim, minlength=len(keys)) / np.maximum(channels, 1)
        # a real replay moves every channel; a chance match among correlated scalp
        # channels moves a few neighbours: ask for a share of the channels too
        needed = max(min(self.min_channels, n_ch), int(np.ceil(self.min_fraction * n_ch)))
        found = [
            ReplayMatch(int(keys[g, 0]), int(keys[g, 1]), bool(keys[g, 2]), int(channels[g]), float(similarity[g]))
            for g in np.flatnonzero(channels >= needed).tolist()
            if similarity[g] >= self.close or _sources(fetch(chosen_refs[chosen_group == g])) >= self.min_sources
        ]
        if not found:
            return None
        return max(found, key=lambda m: (m.channels, m.similarity))


class FingerprintIndex:
    """An in-process exact (faiss flat) index of fingerprints with replay queries under a
    :class:`ReplayRule`: the reference the shared database index (``platform/replay.py``) is
    measured against, and the index of tools that hold everything in memory. Its query cost
    grows with what it holds (5.5 s at 10^6 vectors): the platform does not use it."""

    def __init__(self, rule: ReplayRule | None = None) -> None:
        self.rule = rule or ReplayRule()
        self.index = faiss.IndexFlatIP(SEGMENT)
        # grown by doubling: adding a sample costs the same at 10 and at 10^5 samples
        self._owners = np.empty(1024, np.int64)
        self._positions = np.empty(1024, np.int64)

    @property
    def owners(self) -> NDArray[np.int64]:
        return self._owners[: len(self)]

    @property
    def positions(self) -> NDArray[np.int64]:
        return self._positions[: len(self)]

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(
        self, owner: int, data: NDArray[np.floating], sfreq: float
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Index accepted data of ``owner`` (an id of the sample / session).

        Returns the vectors and positions added.
        """
        vectors, starts, n_ch = fingerprints(data, sfreq, self.rule.hop)
        positions = np.tile(starts, n_ch)
        self.add_vectors(owner, vectors, positions)
        return vectors, positions

    def add_vectors(self, owner: int, vectors: NDArray[np.float32], positions: NDArray[np.int64]) -> None:
        if not len(vectors):
            return
        start, end = len(self), len(self) + len(vectors)
        if end > len(self._owners):
            size = max(end, 2 * len(self._owners))
            self._owners = np.resize(self._owners, size)
            self._positions = np.resize(self._positions, size)
        self._owners[start:end] = owner
        self._positions[start:end] = positions
        self.index.add(vectors)

    def query(self, data: NDArray[np.floating], sfreq: float, *, k: int = 4) -> ReplayMatch | None:
        """The strongest replay evidence for ``data`` (n_channels, ≥ 2 s), or None."""
        queries = query_set(data, sfreq, self.rule.hop)
        return self.search(queries, k=k)

    def search(self, queries: QuerySet, *, k: int = 4) -> ReplayMatch | None:
        """The strongest replay evidence for a prepared :class:`QuerySet`, or None."""
        if len(self) == 0 or not len(queries.vectors):
            return None
        sims, ids = self.index.search(queries.vectors, min(k, len(self)))
        rows, cols = np.nonzero((sims >= self.rule.threshold) & (ids >= 0))
        hits = ids[rows, cols]
        return self.rule.vote(
            queries, rows, self.owners[hits], self.positions[hits], sims[rows, cols], hits, self._reconstruct
        )

    def _reconstruct(self, ids: NDArray[np.int64]) -> NDArray[np.float32]:
        """Stored fingerprints by id (``fetch`` for :meth:`ReplayRule.vote`)."""
        return np.asarray(self.index.reconstruct_batch(np.asarray(ids, np.int64)), np.float32)
