"""The shared replay index in the platform database (SQLite and PostgreSQL): replays caught six
ways and across two stored samples, distinct EEG not matched, a sample never matches itself,
keys stable across machines, older fingerprints keyed by the migration."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from mindprint.core.errors import SignalError
from mindprint.device.openbci import read_openbci_gui_csv
from mindprint.labeling.store import FingerprintRow, ReplayKey, make_engine, migrate, sessions
from mindprint.labeling.verification.uniqueness import (
    HASH_BITS,
    HASH_TABLES,
    LEAD_SECONDS,
    ReplayRule,
    fingerprints,
    hash_keys,
    query_set,
    stored_fingerprints,
)
from mindprint.platform.replay import (
    FRESH_EXACT,
    STRONG_HITS,
    _sharing_keys,
    add,
    backfill_keys,
    check_fresh,
    lookup,
)
from mindprint.signal.filters import design_filter, filter_offline

from .conftest import CYTON_CSV, require
from .services import create_database

SF = 250
RULE = ReplayRule()


@pytest.fixture(scope="module")
def cyton() -> np.ndarray:
    return read_openbci_gui_csv(require(CYTON_CSV)).data[1:9] * 1e-6


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'platform.db'}"
    else:
        url = create_database(request.getfixturevalue("postgres_url"), f"replay_{uuid.uuid4().hex[:12]}")
    engine = make_engine(url)
    migrate(engine)
    yield engine
    engine.dispose()


def _accept(engine: Engine, name: str, epoch: np.ndarray) -> None:
    vectors, starts, n_channels = fingerprints(epoch, SF, RULE.hop)
    with sessions(engine)() as db:
        add(db, name, vectors, np.tile(starts, n_channels))
        db.commit()


def _query(engine: Engine, epoch: np.ndarray, cid: str = "query") -> str | None:
    with sessions(engine)() as db:
        sample = lookup(db, query_set(epoch, SF), cid, rule=RULE).sample
    return sample


def test_replays_are_caught_through_the_database(engine: Engine, cyton: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    for n in range(11):  # eleven accepted 4 s samples: 0–44 s
        _accept(engine, f"sample-{n}", cyton[:, n * 4 * SF : (n + 1) * 4 * SF])
    with sessions(engine)() as db:
        stored = db.scalar(select(func.count()).select_from(ReplayKey))
    assert stored is not None and stored > 11 * 300  # ~4 keys per fingerprint, 328 fingerprints each
    for start in (1.3, 9.7, 22.1, 33.6):  # 4 s replays at offsets off the stored grid
        i = int(start * SF)
        window = cyton[:, i : i + 4 * SF]
        noise = filter_offline(window, design_filter(SF, 1.0, 45.0)).std(axis=1, keepdims=True)
        variants = {
            "exact": window,
            "rescaled": window * 3.0 + 0.01,
            "noisy": window + rng.normal(0, 1, window.shape) * 0.15 * noise,
            "reversed": window[:, ::-1].copy(),
            "permuted": window[rng.permutation(8)],
        }
        owner = f"sample-{int(start // 4)}"
        for kind, variant in variants.items():
            found = _query(engine, variant)
            assert found is not None and found.startswith("sample-"), f"{kind} replay at {start} s missed"
        assert _query(engine, window) in (owner, f"sample-{int(start // 4) + 1}")
    # 1 s of fresh EEG, then 3 s that straddle two stored samples (2.5 s of them in one)
    fresh = cyton[:, 60 * SF : 61 * SF]
    tail = np.concatenate([fresh, cyton[:, int(5.5 * SF) : int(8.5 * SF)]], axis=1)
    assert _query(engine, tail) == "sample-1"
    # distinct EEG: the unstored part of the recording
    false = sum(_query(engine, cyton[:, i : i + 4 * SF]) is not None for i in range(46 * SF, 86 * SF, SF // 2))
    assert false == 0
    # a sample is never evidence against itself (a retried submission)
    assert _query(engine, cyton[:, : 4 * SF], cid="sample-0") in (None, "sample-1")


def test_rows_committed_after_the_query_are_checked_under_the_guard(engine: Engine, cyton: np.ndarray) -> None:
    _accept(engine, "first", cyton[:, : 4 * SF])
    epoch = cyton[:, 10 * SF : 14 * SF]
    queries = query_set(epoch, SF)
    with sessions(engine)() as db:
        found = lookup(db, queries, "late", rule=RULE)
    assert found.match is None and found.seen == 1 and found.candidates == 0
    _accept(engine, "raced", epoch)  # another replica accepts the same EEG meanwhile
    with sessions(engine)() as db:
        late, sample = check_fresh(db, found.seen, queries, "late", rule=RULE)
    assert late is not None and sample == "raced"


def test_of_a_few_rows_committed_after_the_query_only_those_sharing_keys_are_checked(
    engine: Engine, cyton: np.ndarray
) -> None:
    """Up to FRESH_EXACT fresh rows are keyed from their codes, and only the rows the key
    stage would have fetched are checked exactly: other contributors' EEG accepted meanwhile
    costs ~0.3 ms a row, not an exact check (~1 ms)."""
    _accept(engine, "first", cyton[:, : 4 * SF])
    epoch = cyton[:, 10 * SF : 14 * SF]
    queries = query_set(epoch, SF)
    with sessions(engine)() as db:
        found = lookup(db, queries, "late", rule=RULE)
    for name, data in (("a", cyton[:, 16 * SF : 20 * SF]), ("raced", epoch), ("b", cyton[:, 24 * SF : 28 * SF])):
        _accept(engine, name, data)
    with sessions(engine)() as db:
        fresh = db.execute(
            select(FingerprintRow.id, FingerprintRow.sample, FingerprintRow.codes, FingerprintRow.positions)
            .where(FingerprintRow.id > found.seen)
            .order_by(FingerprintRow.id)
        ).all()
        assert [row.sample for row in fresh] == ["a", "raced", "b"]
        assert [row.sample for row in _sharing_keys(fresh, queries)] == ["raced"]
        assert _sharing_keys(fresh, query_set(cyton[:, 40 * SF : 44 * SF], SF)) == []
        late, sample = check_fresh(db, found.seen, queries, "late", rule=RULE)
        assert late is not None and sample == "raced"


def test_many_rows_committed_after_the_query_are_asked_through_their_keys(engine: Engine, cyton: np.ndarray) -> None:
    """More rows accepted meanwhile than FRESH_EXACT: the guard step does not check each
    exactly (its cost would grow with the platform's acceptance rate) but asks their keys,
    and still finds the one that holds the same EEG — wherever it is among them."""
    _accept(engine, "first", cyton[:, : 4 * SF])
    epoch = cyton[:, 40 * SF : 44 * SF]
    queries = query_set(epoch, SF)
    with sessions(engine)() as db:
        found = lookup(db, queries, "late", rule=RULE)
    assert found.match is None and found.seen == 1
    fresh = [cyton[:, (4 + 4 * k) * SF : (8 + 4 * k) * SF] for k in range(FRESH_EXACT + 1)]  # 4–40 s: distinct
    fresh.insert(3, epoch)
    for k, data in enumerate(fresh):
        _accept(engine, "raced" if data is epoch else f"meanwhile-{k}", data)
    with sessions(engine)() as db:
        late, sample = check_fresh(db, found.seen, queries, "late", rule=RULE)
        assert late is not None and sample == "raced"
        # distinct EEG among as many fresh rows: nothing
        other = query_set(cyton[:, 60 * SF : 64 * SF], SF)
        assert check_fresh(db, found.seen, other, "other", rule=RULE) == (None, None)


def test_a_runner_up_sharing_only_two_keys_is_not_checked(engine: Engine, cyton: np.ndarray) -> None:
    """The candidate sharing the most keys is checked from two keys up, the others only from
    STRONG_HITS: chance pairs of keys grow with the index, and each exact check costs ~2 ms."""
    _accept(engine, "leader", cyton[:, : 4 * SF])
    _accept(engine, "runner-up", cyton[:, 20 * SF : 24 * SF])
    with sessions(engine)() as db:
        keys = {
            name: db.scalars(
                select(ReplayKey.key)
                .join(FingerprintRow, FingerprintRow.id == ReplayKey.fingerprint)
                .where(FingerprintRow.sample == name)
                .order_by(ReplayKey.key)
            ).all()
            for name in ("leader", "runner-up")
        }
    only = {
        name: sorted(set(keys[name]) - set(keys[other]))
        for name, other in (("leader", "runner-up"), ("runner-up", "leader"))
    }
    replay = query_set(cyton[:, 20 * SF : 24 * SF], SF)  # replays "runner-up" exactly

    def found(leader_keys: int, runner_keys: int) -> tuple[str | None, int]:
        chosen = np.asarray(only["leader"][:leader_keys] + only["runner-up"][:runner_keys], dtype=np.int64)
        with sessions(engine)() as db:
            result = lookup(db, replace(replay, keys=chosen), "query", rule=RULE)
        return result.sample, result.candidates

    assert found(0, 2) == ("runner-up", 1)  # the only candidate: checked from two keys
    assert found(4, 2) == (None, 1)  # second with two keys: not even fetched
    assert found(4, STRONG_HITS) == ("runner-up", 2)  # second with enough keys: checked


def test_keys_are_the_same_on_every_machine() -> None:
    """The hyperplanes come from a fixed PCG64 seed and a closed-form DCT basis: a key
    computed by one replica must equal another's (or replays would pass between them)."""
    t = np.arange(96) / 64.0
    vector = np.sin(2 * np.pi * 7.0 * t) + 0.5 * np.sin(2 * np.pi * 3.0 * t + 1.0)
    vector = (vector - vector.mean()) / np.linalg.norm(vector - vector.mean())
    keys = hash_keys(vector[None, :].astype(np.float32))
    assert len(keys) == HASH_TABLES and set((keys >> HASH_BITS).tolist()) == set(range(HASH_TABLES))
    assert keys.tolist() == [2620451132, 5323209549, 11037179532, 14829283865]


def test_the_migration_keys_fingerprints_stored_before_it(engine: Engine, cyton: np.ndarray) -> None:
    _accept(engine, "old", cyton[:, 20 * SF : 24 * SF])
    with engine.begin() as connection:
        expected = connection.execute(text("SELECT count(*) FROM replay_keys")).scalar()
        connection.execute(text("DELETE FROM replay_keys"))  # as before migration 0011
        assert backfill_keys(connection) == 1
        keyed = connection.execute(text("SELECT count(*) FROM replay_keys")).scalar()
        assert expected and keyed and abs(keyed - expected) <= 0.03 * expected  # from the 8-bit codes
    with sessions(engine)() as db:
        assert db.scalar(select(FingerprintRow.sample)) == "old"
    assert _query(engine, cyton[:, int(20.4 * SF) : int(24.4 * SF)]) == "old"


def _accept_consecutive(engine: Engine, cyton: np.ndarray, n: int, *, lead: bool) -> None:
    """``n`` consecutive 4 s samples of one session, stored as acceptance stores them: each
    reaching back LEAD_SECONDS into the EEG before it (the first has none) — or, ``lead=False``,
    each from its own epoch only (the design before 2026-12-05)."""
    with sessions(engine)() as db:
        for k in range(n):
            epoch = cyton[:, k * 4 * SF : (k + 1) * 4 * SF]
            before = cyton[:, max(0, k * 4 * SF - int(LEAD_SECONDS * SF)) : k * 4 * SF] if lead else None
            add(db, f"sample-{k}", *stored_fingerprints(epoch, SF, before, RULE.hop))
        db.commit()


def test_a_stretch_split_evenly_between_two_stored_samples_is_caught(
    engine: Engine, cyton: np.ndarray, tmp_path: Path
) -> None:
    """1 s of fresh EEG, then 3 s whose middle is the boundary between two consecutive stored
    samples (1.3–1.7 s in each): no whole query segment lies inside either sample, and the
    keys need a close match. Stored with their lead, the fingerprints run on across the
    boundary and every such straddle is caught; stored epoch by epoch, some are not."""
    rng = np.random.default_rng(11)
    fresh = cyton[:, 60 * SF : 61 * SF]
    straddles = []
    for k in range(1, 10):
        start = int((4 * k - rng.uniform(1.3, 1.7)) * SF)
        straddles.append((k, np.concatenate([fresh, cyton[:, start : start + 3 * SF]], axis=1)))
    _accept_consecutive(engine, cyton, 11, lead=True)
    for k, query in straddles:
        assert _query(engine, query) in (f"sample-{k - 1}", f"sample-{k}"), f"straddle at {4 * k} s missed"
    assert not any(_query(engine, cyton[:, i : i + 4 * SF]) for i in range(46 * SF, 86 * SF, SF // 2))

    before = make_engine(f"sqlite:///{tmp_path / 'epoch_only.db'}")
    migrate(before)
    _accept_consecutive(before, cyton, 11, lead=False)
    missed = sum(_query(before, query) is None for _, query in straddles)
    before.dispose()
    assert missed >= 2, "the case this test is for: stored epoch by epoch, straddles are missed"


def test_stored_fingerprints_without_a_lead_are_the_query_sets(cyton: np.ndarray) -> None:
    epoch = cyton[:, 8 * SF : 12 * SF]
    vectors, positions = stored_fingerprints(epoch, SF, None, RULE.hop)
    expected = query_set(epoch, SF).stored(RULE.hop)
    assert np.array_equal(vectors, expected[0]) and np.array_equal(positions, expected[1])
    # with a lead: positions count from the epoch (negative before it), the epoch part alike
    led, led_positions = stored_fingerprints(epoch, SF, cyton[:, 7 * SF : 8 * SF], RULE.hop)
    assert led_positions.min() == -64 and led_positions.max() == positions.max()
    assert len(led) == len(vectors) + 8 * 16  # 1 s more on the 64 Hz grid, every 4, 8 channels
    with pytest.raises(SignalError, match="a lead of 7 channels"):
        stored_fingerprints(epoch, SF, cyton[:7, 7 * SF : 8 * SF], RULE.hop)
