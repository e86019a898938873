"""The BrainFlow bridge against real BrainFlow boards (synthetic and playback) and faults."""

from __future__ import annotations

import time
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest

from mindprint.core.errors import BoardConnectionError
from mindprint.device.boards import BoardSpec
from mindprint.device.bridge import (
    CLOCK_SLEW_FRACTION,
    CLOCK_SLEW_SECONDS,
    Acquisition,
    BrainFlowSource,
    ChunkAssembler,
    DataChunk,
    Gap,
)
from mindprint.device.keys import DeviceKey
from mindprint.device.openbci import import_recording, read_openbci_gui_csv
from mindprint.device.recorder import record_session
from mindprint.device.session import (
    TIMING_TOLERANCE_FRACTION,
    TIMING_TOLERANCE_SECONDS,
    check_rate,
    check_timing,
    chunk_samples,
    iter_chunks,
    verify_session,
)

from .conftest import CYTON_CSV, require


def test_assembler_places_markers_on_their_sample_across_chunks() -> None:
    sfreq, chunk_n = 100.0, 40
    labels = {1: "a", 2: "b"}
    assembler = ChunkAssembler(sfreq, chunk_n, labels.get)
    total = 230
    block = np.zeros((3, total))
    block[0] = np.arange(total)
    block[1] = 1000 + np.arange(total) / sfreq  # timestamps, seconds
    marks = {3: 1, 39: 2, 40: 1, 117: 2, 229: 1}
    for pos, code in marks.items():
        block[2, pos] = code
    chunks = []
    for start in range(0, total, 17):  # odd read sizes
        chunks.extend(assembler.add(block[:, start : start + 17]))
    chunks.extend(assembler.flush())
    assert [c.samples.shape[1] for c in chunks] == [40] * 5 + [30]
    found = {seq * chunk_n + i: code for seq, c in enumerate(chunks) for i, code, _ in c.markers}
    assert found == marks
    for seq, chunk in enumerate(chunks):
        assert chunk.t0_ns == round((1000 + seq * chunk_n / sfreq) * 1e9)
        np.testing.assert_array_equal(
            chunk.samples[0], np.arange(seq * chunk_n, seq * chunk_n + chunk.samples.shape[1])
        )


def test_assembler_records_timestamp_jumps_as_gaps() -> None:
    assembler = ChunkAssembler(100.0, 50, str)
    first = np.vstack([np.zeros(30), 10 + np.arange(30) / 100, np.zeros(30)])
    second = np.vstack([np.zeros(30), 12 + np.arange(30) / 100, np.zeros(30)])  # 1.71 s lost
    chunks = list(assembler.add(first)) + list(assembler.add(second)) + list(assembler.flush())
    assert [c.samples.shape[1] for c in chunks] == [30, 30]
    assert chunks[1].gap is not None and "jump" in chunks[1].gap.reason
    assert chunks[1].gap.resume_ns == chunks[1].t0_ns == 12_000_000_000


def test_assembler_records_a_jump_inside_one_block_as_a_gap() -> None:
    """A board that drops samples mid-read: the chunk after the jump declares a gap (without
    it the platform refuses the chunk: "undeclared gap")."""
    assembler = ChunkAssembler(100.0, 50, str)
    stamps = np.r_[10 + np.arange(70) / 100, 24 + np.arange(60) / 100]  # 13.30 s lost after sample 70
    block = np.vstack([np.arange(130.0), stamps, np.zeros(130)])
    chunks = list(assembler.add(block)) + list(assembler.flush())
    assert [c.samples.shape[1] for c in chunks] == [50, 20, 50, 10]
    assert [c.gap is not None for c in chunks] == [False, False, True, False]
    assert chunks[2].t0_ns == chunks[2].gap.resume_ns == 24_000_000_000
    assert "13.300 s" in chunks[2].gap.reason  # 10.70 s to 24.00 s: missing
    np.testing.assert_array_equal(np.concatenate([c.samples[0] for c in chunks]), np.arange(130.0))


def _chunks_from_stamps(stamps: np.ndarray, sfreq: float, chunk_n: int, read_n: int = 7) -> list[DataChunk]:
    """Read ``read_n`` samples at a time, or (``read_n=0``) each arrival (equal stamps) at once."""
    assembler = ChunkAssembler(sfreq, chunk_n, str)
    block = np.vstack([np.arange(stamps.size, dtype=float), stamps, np.zeros(stamps.size)])
    starts = np.r_[0, np.flatnonzero(np.diff(stamps)) + 1] if read_n == 0 else np.arange(0, stamps.size, read_n)
    chunks = [c for part in np.split(block, starts[1:], axis=1) for c in assembler.add(part)]
    return chunks + list(assembler.flush())


def _timing(chunks: list[DataChunk], sfreq: float) -> tuple[list[str], str | None]:
    problems, samples_s, clock_s = [], 0.0, 0.0
    for prev, chunk in pairwise(chunks):
        step = check_timing(prev.t0_ns, prev.samples.shape[1], chunk.t0_ns, chunk.gap is not None, sfreq)
        problems += [step.problem] if step.problem else []
        samples_s, clock_s = samples_s + step.samples_seconds, clock_s + step.clock_seconds
    return problems, check_rate(samples_s, clock_s, sfreq)


def test_device_clock_passes_bursts_of_arrival_stamps_on_to_no_chunk() -> None:
    """BrainFlow stamps samples on arrival: a starved playback thread (or a Bluetooth burst)
    emits a backlog with nearly one timestamp. Raw, the platform refuses such chunks ("chunk
    starts 0.002 s after the previous one, which holds 0.500 s"); the sample-count clock does
    not, and after a stall it is re-anchored as a declared gap."""
    sfreq, chunk_n = 250.0, 125
    true = 100 + np.arange(int(60 * sfreq)) / sfreq
    rng = np.random.default_rng(7)
    # Bluetooth-like delivery: 10-sample packets, each stamped on arrival 5-120 ms late
    stamps = np.repeat(true[9::10] + rng.uniform(0.005, 0.12, true.size // 10), 10)
    for start in (2000, 7100, 11_000):  # a starved thread: 0.8 s of samples delivered at once
        stamps[start : start + 200] = true[start + 200]
    stamps, true = np.delete(stamps, np.s_[13_000:13_425]), np.delete(true, np.s_[13_000:13_425])  # 1.7 s lost
    raw = [round(c * 1e9) for c in stamps[::chunk_n]]
    raw_problems = [p for a, b in pairwise(raw) if (p := check_timing(a, chunk_n, b, False, sfreq).problem) is not None]
    assert raw_problems  # the raw stamps would have been refused
    # read as it arrives (one poll takes a backlog at once): the loss is the one gap
    chunks = _chunks_from_stamps(stamps, sfreq, chunk_n, read_n=0)
    problems, rate = _timing(chunks, sfreq)
    assert problems == [] and rate is None
    gaps = [c.gap for c in chunks if c.gap is not None]
    assert len(gaps) == 1 and 1.6 < gaps[0].missing_seconds < 1.8, gaps
    # read 7 samples at a time: a backlog's first reads are 0.8 s late, but bunched, and are
    # judged once its last samples (on time) have come — the same one gap
    chunks = _chunks_from_stamps(stamps, sfreq, chunk_n)
    problems, rate = _timing(chunks, sfreq)
    assert problems == [] and rate is None
    gaps = [c.gap for c in chunks if c.gap is not None]
    assert len(gaps) == 1 and 1.6 < gaps[0].missing_seconds < 1.8, gaps
    assert sum(c.samples.shape[1] for c in chunks) == true.size
    # the clock never strays far from the raw stamps
    t0 = np.array([c.t0_ns for c in chunks]) / 1e9
    starts = np.cumsum([0] + [c.samples.shape[1] for c in chunks[:-1]])
    assert np.max(np.abs(t0 - stamps[starts])) < 1.0


def test_a_late_bunched_stretch_waits_for_the_next_block_or_the_end() -> None:
    """10 samples stamped at once, 2 s late: held until more comes. At the end of the stream
    (or before a fault the caller declares) nothing more will tell: they follow a gap."""
    on_time = np.vstack([np.arange(50.0), 10 + np.arange(50) / 100, np.zeros(50)])
    late = np.vstack([50 + np.arange(10.0), np.full(10, 12.6), np.zeros(10)])
    after = np.vstack([60 + np.arange(20.0), 20 + np.arange(20) / 100, np.zeros(20)])
    assembler = ChunkAssembler(100.0, 25, str)
    chunks = list(assembler.add(on_time)) + list(assembler.add(late))
    assert sum(c.samples.shape[1] for c in chunks) == 50  # the late ten wait
    chunks += list(assembler.flush())
    assert [c.samples.shape[1] for c in chunks] == [25, 25, 10] and chunks[2].gap is not None
    assembler = ChunkAssembler(100.0, 25, str)
    chunks = list(assembler.add(on_time)) + list(assembler.add(late))
    assembler.add_gap(Gap(0, 0, "board error"))
    chunks += list(assembler.add(after)) + list(assembler.flush())
    assert [c.samples.shape[1] for c in chunks] == [25, 25, 10, 20]
    assert [c.gap.reason if c.gap else None for c in chunks] == [
        None,
        None,
        "device timestamps jump by 2.010 s",
        "board error",
    ]
    np.testing.assert_array_equal(np.concatenate([c.samples[0] for c in chunks]), np.arange(80.0))


def test_a_gap_before_the_first_chunk_ends_at_its_start() -> None:
    """A reader overrun before any chunk: the gap keeps the caller's last time and resumes at
    the first chunk's start (the platform requires resume == t0), stamps bunched or not."""
    assembler = ChunkAssembler(100.0, 25, str)
    assembler.add_gap(Gap(5_000_000_000, 0, "reader overrun: 40 samples lost"))
    bunched = np.vstack([np.arange(30.0), np.full(30, 10.0), np.zeros(30)])
    chunks = list(assembler.add(bunched)) + list(assembler.flush())
    assert chunks[0].gap is not None and chunks[0].gap.last_ns == 5_000_000_000
    assert (
        chunks[0].gap.resume_ns == chunks[0].t0_ns == round((10.0 - 24 / 100) * 1e9)
    )  # its 25 samples stamped at once


@pytest.mark.parametrize("rate", [0.90, 1.10])
def test_device_clock_keeps_a_wrong_sample_rate_visible(rate: float) -> None:
    """A board that delivers 10 % more (or fewer) samples per second than it claims: the clock
    follows BrainFlow's timestamps, so the platform's whole-session rate check still sees it."""
    sfreq, chunk_n = 250.0, 125
    stamps = 50 + np.arange(int(120 * sfreq)) / (sfreq * rate)
    problems, mismatch = _timing(_chunks_from_stamps(stamps, sfreq, chunk_n), sfreq)
    assert problems == [] and mismatch is not None and "real time" in mismatch


def test_device_clock_slew_stays_inside_the_platform_tolerance() -> None:
    assert CLOCK_SLEW_SECONDS < TIMING_TOLERANCE_SECONDS / 2
    assert CLOCK_SLEW_FRACTION < TIMING_TOLERANCE_FRACTION / 2


def _synthetic() -> BrainFlowSource:
    return BrainFlowSource(BoardSpec.create("synthetic"))


def test_synthetic_recording_verifies_and_converts_to_volts(tmp_path: Path) -> None:
    summary = record_session(
        _synthetic(), tmp_path / "s", DeviceKey.generate(), duration=2.0, chunk_seconds=0.5, fsync=False
    )
    assert summary.chunks == 4 and summary.samples == 500
    report = verify_session(tmp_path / "s")
    assert report.ok, report.issues
    _, block = next(iter_chunks(tmp_path / "s"))
    eeg = chunk_samples(block)[:16]
    # BrainFlow's synthetic EEG is tens to hundreds of µV: in volts that is ~1e-5..1e-3
    assert 1e-7 < float(np.std(eeg)) < 1e-2
    assert block["units"][:16] == ["V"] * 16


def test_markers_land_on_the_sample_recorded_when_inserted(tmp_path: Path) -> None:
    inserted: list[tuple[float, str]] = []

    def on_start(acquisition: Acquisition) -> None:
        time.sleep(0.6)
        for label in ("stimulus", "response"):
            inserted.append((time.time(), label))
            acquisition.insert_marker(label)
            time.sleep(0.37)

    record_session(
        _synthetic(),
        tmp_path / "m",
        DeviceKey.generate(),
        duration=2.5,
        chunk_seconds=0.5,
        on_start=on_start,
        fsync=False,
    )
    found = []
    for _, block in iter_chunks(tmp_path / "m"):
        for index, _code, label in block["markers"]:
            found.append((block["t0_ns"] / 1e9 + index / block["sfreq"], label))
    assert [label for _, label in found] == ["stimulus", "response"]
    for (t_marker, _), (t_inserted, _) in zip(found, inserted, strict=True):
        # the marked sample's device time is within 50 ms of the insertion time
        assert abs(t_marker - t_inserted) < 0.05


class FaultInjectingSource(BrainFlowSource):
    """The synthetic board with an outage: errors (or silence) and failed reopen attempts."""

    def __init__(self, *, fail_at: float, outage: float, mode: str) -> None:
        super().__init__(BoardSpec.create("synthetic"))
        self.fail_at, self.outage, self.mode = fail_at, outage, mode
        self.started: float | None = None
        self.failed_at: float | None = None
        self.open_attempts = 0

    def _in_outage(self) -> bool:
        assert self.started is not None
        elapsed = time.monotonic() - self.started
        if elapsed >= self.fail_at and self.failed_at is None:
            self.failed_at = time.monotonic()
        return self.fail_at <= elapsed < self.fail_at + self.outage

    def open(self) -> None:
        self.open_attempts += 1
        if self.started is not None and self._in_outage():
            raise BoardConnectionError("device not found (unplugged)", 2)
        self.started = self.started or time.monotonic()
        super().open()

    def read(self) -> np.ndarray:
        data = super().read()
        if self._in_outage():
            if self.mode == "error":
                raise BoardConnectionError("read failed (unplugged)", 15)
            return np.empty((data.shape[0], 0))
        return data


@pytest.mark.parametrize("mode", ["error", "stall"])
def test_fault_is_noticed_gap_recorded_and_session_stays_valid(tmp_path: Path, mode: str) -> None:
    source = FaultInjectingSource(fail_at=1.0, outage=1.5, mode=mode)
    holder: list[Acquisition] = []
    summary = record_session(
        source,
        tmp_path / mode,
        DeviceKey.generate(),
        duration=3.0,
        chunk_seconds=0.5,
        on_start=holder.append,
        acquisition_options={"stall_timeout": 0.5, "backoff_initial": 0.1, "backoff_max": 0.4},
        fsync=False,
    )
    acquisition = holder[0]
    assert source.failed_at is not None and acquisition.fault_log
    noticed_after = acquisition.fault_log[0][0] - source.failed_at
    assert 0 <= noticed_after < 2.0
    assert summary.faults == 1 and summary.reconnects == 1 and summary.gaps == 1
    assert source.open_attempts >= 3  # reopen failed during the outage, with backoff
    report = verify_session(tmp_path / mode)
    assert report.ok, report.issues
    assert len(report.gaps) == 1
    assert report.gaps[0]["missing_seconds"] == pytest.approx(1.5, abs=0.6)
    assert report.samples == 750  # 3 s of samples despite the outage: nothing lost, nothing invented


def test_unrecoverable_board_ends_the_session_cleanly(tmp_path: Path) -> None:
    source = FaultInjectingSource(fail_at=0.8, outage=60, mode="error")
    summary = record_session(
        source,
        tmp_path / "gone",
        DeviceKey.generate(),
        duration=10.0,
        chunk_seconds=0.25,
        acquisition_options={"stall_timeout": 0.5, "backoff_initial": 0.1, "backoff_max": 0.2, "give_up_after": 1.0},
        fsync=False,
    )
    assert summary.ended.startswith("disconnected")
    assert 0 < summary.samples < 400
    assert verify_session(tmp_path / "gone").ok


def test_real_cyton_recording_replays_sample_exact(tmp_path: Path) -> None:
    csv = require(CYTON_CSV)
    playback = tmp_path / "cyton.csv"
    recording = import_recording(csv, playback, start_seconds=10.0, seconds=3.0)
    source = BrainFlowSource(BoardSpec.create("playback", file=str(playback), master_board="cyton"))
    started = time.monotonic()
    summary = record_session(
        source, tmp_path / "replay", DeviceKey.generate(), duration=None, chunk_seconds=1.0, fsync=False
    )
    elapsed = time.monotonic() - started
    assert summary.ended == "file ended"
    assert elapsed < 3.0 + 2.0  # end of file noticed within 2 s
    assert summary.samples == 750
    replayed = np.concatenate([chunk_samples(b) for _, b in iter_chunks(tmp_path / "replay")], axis=1)
    expected = recording.data[1:9, 2500:3250] * 1e-6
    np.testing.assert_allclose(replayed[:8], expected, rtol=1e-6, atol=1e-9)
    assert verify_session(tmp_path / "replay").ok


def test_openbci_import_reads_the_whole_real_file() -> None:
    recording = read_openbci_gui_csv(require(CYTON_CSV))
    assert recording.board_id == 0 and recording.sampling_rate == 250
    assert recording.data.shape == (24, 22490)
    duration = recording.data[22, -1] - recording.data[22, 0]
    assert 85 < duration < 95  # timestamps converted from ms to s


def test_brainflow_csv_import_round_trip(tmp_path: Path) -> None:
    from mindprint.core.errors import DeviceError
    from mindprint.device.openbci import read_brainflow_csv, write_playback_file

    recording = read_openbci_gui_csv(require(CYTON_CSV))
    first = write_playback_file(recording, tmp_path / "a.csv", start_seconds=5, seconds=2)
    again = read_brainflow_csv(first, 0)
    np.testing.assert_allclose(again.data, recording.data[:, 1250:1750], rtol=1e-6)
    with pytest.raises(DeviceError, match="rows"):
        read_brainflow_csv(first, 1)  # a Ganglion has another layout
