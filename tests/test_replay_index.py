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

from mindprint.device.openbci import read_openbci_gui_csv
from mindprint.labeling.store import FingerprintRow, ReplayKey, make_engine, migrate, sessions
from mindprint.labeling.verification.uniqueness import (
    HASH_BITS,
    HASH_TABLES,
    ReplayRule,
    fingerprints,
    hash_keys,
    query_set,
)
from mindprint.platform.replay import STRONG_HITS, add, backfill_keys, check_fresh, lookup
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
