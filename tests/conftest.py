"""Shared fixtures: device keys, synthetic chunks, paths to the real recordings."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mindprint.device.bridge import DataChunk, Gap
from mindprint.device.keys import DeviceKey
from mindprint.device.session import SessionWriter

ROOT = Path(__file__).resolve().parents[1]
#: the real recordings the tests read, carried in the repository (licences in its NOTICE.md)
SHARED_EEG = ROOT / "tests" / "data" / "eeg"
CYTON_CSV = SHARED_EEG / "openbci_cyton" / "OpenBCI_GUI-v6-blinks-jawClench-alpha.txt"
EEGLAB_SET = SHARED_EEG / "eeglab_attention" / "test_raw.set"
GENERATOR_EDF = SHARED_EEG / "generator" / "test_generator_2.edf"
EMOTIV_FIF = SHARED_EEG / "emotiv_phyaat" / "phyaat_emotiv_raw.fif.gz"


def require(path: Path) -> Path:
    """A recording the repository carries; a missing one is a broken checkout, not a skip."""
    if not path.exists():
        raise FileNotFoundError(f"real recording {path} is missing from the repository (tests/data/eeg)")
    return path


@pytest.fixture
def key() -> DeviceKey:
    return DeviceKey.generate()


def make_chunks(
    n_chunks: int,
    *,
    sfreq: float = 250.0,
    chunk_samples: int = 250,
    n_channels: int = 4,
    seed: int = 0,
    t0_ns: int = 1_700_000_000_000_000_000,
    gap_before: dict[int, float] | None = None,
) -> list[DataChunk]:
    """Chunks of random microvolt-scale data with consistent device timestamps."""
    rng = np.random.default_rng(seed)
    chunks = []
    t = t0_ns
    for seq in range(n_chunks):
        gap = None
        if gap_before and seq in gap_before:
            last = t - round(1e9 / sfreq)
            t += round(gap_before[seq] * 1e9)
            gap = Gap(last, t, "test outage")
        samples = rng.normal(0, 20e-6, size=(n_channels, chunk_samples))
        markers = ((10, 1, "stimulus"),) if seq == 1 else ()
        chunks.append(DataChunk(t0_ns=t, samples=samples, markers=markers, gap=gap))
        t += round(chunk_samples / sfreq * 1e9)
    return chunks


def write_session(path: Path, key: DeviceKey, chunks: list[DataChunk], *, sfreq: float = 250.0) -> Path:
    n_channels = chunks[0].samples.shape[0]
    with SessionWriter.create(
        path,
        key,
        board_id=-1,
        board_name="Synthetic",
        sfreq=sfreq,
        channels=tuple(f"EEG{i}" for i in range(n_channels)),
        types=("eeg",) * n_channels,
        units=("V",) * n_channels,
        chunk_seconds=1.0,
        fsync=False,
    ) as writer:
        for chunk in chunks:
            writer.append(chunk)
    return path


@pytest.fixture
def session_dir(tmp_path: Path, key: DeviceKey) -> Iterator[Path]:
    yield write_session(tmp_path / "session", key, make_chunks(6))


# --------------------------------------------------------------------------- chains
@pytest.fixture(scope="session")
def anvil_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from .services import anvil_node

    with anvil_node(tmp_path_factory.mktemp("anvil")) as url:
        yield url


@pytest.fixture(params=["embedded", "anvil"])
def chain(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """The same tests against the in-process EVM and a real anvil node."""
    from mindprint.ledger.chain import ChainClient

    from .services import ANVIL_KEY

    if request.param == "embedded":
        return ChainClient.embedded()
    return ChainClient.connect(request.getfixturevalue("anvil_url"), ANVIL_KEY)


def other_account(chain, index: int):  # type: ignore[no-untyped-def]
    """A second funded account on the same chain, as its own ChainClient."""
    from eth_account import Account

    from mindprint.ledger.chain import ChainClient

    from .services import ANVIL_KEYS

    account = chain.extra_keys[index - 1] if chain.embedded_tester is not None else Account.from_key(ANVIL_KEYS[index])
    return ChainClient(chain.w3, account)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    import shutil
    import tempfile

    from .services import postgres_server

    # not under pytest's 0700 basetemp: the server may run as the `postgres` user
    workdir = Path(tempfile.mkdtemp(prefix="mindprint-pg-"))
    try:
        with postgres_server(workdir) as url:
            yield url
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


class Dropout:
    """A board that loses ``seconds`` of data ``after`` seconds after the first marker (the
    first trial's stimulus) — or, ``every``, after each marker: the reads in between are thrown
    away, as when a Bluetooth link drops. The assembler declares the gap from the timestamps."""

    def __init__(self, source: Any, after: float = 1.2, seconds: float = 1.2, every: bool = False) -> None:
        self.source, self.after, self.seconds, self.every = source, after, seconds, every
        self.layout, self.finite = source.layout, source.finite
        self.marked: float | None = None
        self.dropped = 0

    def open(self) -> None:
        self.source.open()

    def read(self):  # type: ignore[no-untyped-def]
        block = self.source.read()
        if self.marked is not None and 0 <= time.monotonic() - self.marked - self.after < self.seconds:
            self.dropped += block.shape[1]
            return block[:, :0]
        return block

    def insert_marker(self, code: float) -> None:
        if self.marked is None or self.every:
            self.marked = time.monotonic()
        self.source.insert_marker(code)

    def close(self) -> None:
        self.source.close()
