"""Signed session files: every kind of tampering is reported with the exact chunk."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mindprint.core.errors import SessionError
from mindprint.core.ipld import car_section, read_car
from mindprint.device.keys import DeviceKey
from mindprint.device.session import (
    SESSION_FILE,
    SessionWriter,
    _signed,
    chunk_samples,
    iter_chunks,
    verify_session,
)

from .conftest import make_chunks, write_session

N_HEADER_SECTIONS = 2  # header block and its signature


def _sections(path: Path) -> tuple[bytes, list[bytes]]:
    data = (path / SESSION_FILE).read_bytes()
    contents = read_car(data)
    head = data[: contents.sections[0].offset]
    return head, [data[s.offset : s.end] for s in contents.sections]


def _rewrite(path: Path, head: bytes, sections: list[bytes]) -> None:
    (path / SESSION_FILE).write_bytes(head + b"".join(sections))


def _chunk_index(seq: int) -> int:
    return N_HEADER_SECTIONS + 2 * seq


def _issues(path: Path) -> list[tuple[int | None, str]]:
    return sorted((issue.seq if issue.seq is not None else -1, issue.code) for issue in verify_session(path).issues)


def test_clean_session_verifies(session_dir: Path, key: DeviceKey) -> None:
    report = verify_session(session_dir)
    assert report.ok, report.issues
    assert (report.chunks, report.samples, report.markers) == (6, 1500, 1)
    assert report.device == key.device_id
    assert report.first_cid and report.first_cid.startswith("bafyrei")


def test_samples_round_trip_as_float32_volts(session_dir: Path) -> None:
    expected = make_chunks(6)
    for (_, block), chunk in zip(iter_chunks(session_dir), expected, strict=True):
        np.testing.assert_allclose(chunk_samples(block), chunk.samples, rtol=1e-6)
        assert block["prev"] is not None


def test_flipped_byte_names_the_chunk(session_dir: Path) -> None:
    head, sections = _sections(session_dir)
    target = bytearray(sections[_chunk_index(3)])
    target[len(target) // 2] ^= 0x01  # inside the sample bytes
    sections[_chunk_index(3)] = bytes(target)
    _rewrite(session_dir, head, sections)
    assert _issues(session_dir) == [(3, "cid-mismatch")]


def test_dropped_chunk_is_reported_at_the_next_chunk(session_dir: Path) -> None:
    head, sections = _sections(session_dir)
    del sections[_chunk_index(2) : _chunk_index(2) + 2]
    _rewrite(session_dir, head, sections)
    issues = _issues(session_dir)
    assert {seq for seq, _ in issues} == {3}
    assert {"missing-chunk", "broken-chain"} <= {code for _, code in issues}


def test_reordered_chunks_are_reported(session_dir: Path) -> None:
    head, sections = _sections(session_dir)
    i, j = _chunk_index(2), _chunk_index(3)
    sections[i : i + 2], sections[j : j + 2] = sections[j : j + 2], sections[i : i + 2]
    _rewrite(session_dir, head, sections)
    issues = _issues(session_dir)
    assert (3, "missing-chunk") in issues
    assert (2, "out-of-order") in issues
    assert {seq for seq, _ in issues} <= {2, 3, 4}


def test_duplicated_chunk_is_reported(session_dir: Path) -> None:
    head, sections = _sections(session_dir)
    i = _chunk_index(4)
    sections[i + 2 : i + 2] = sections[i : i + 2]
    _rewrite(session_dir, head, sections)
    issues = _issues(session_dir)
    assert (4, "duplicate-seq") in issues
    assert {seq for seq, _ in issues} == {4}


def test_replaced_signature_is_reported(session_dir: Path) -> None:
    head, sections = _sections(session_dir)
    contents = read_car((session_dir / SESSION_FILE).read_bytes())
    chunk_cid = contents.sections[_chunk_index(1)].cid
    sections[_chunk_index(1) + 1] = car_section(*_signed(DeviceKey.generate(), chunk_cid))
    _rewrite(session_dir, head, sections)
    assert _issues(session_dir) == [(1, "bad-signature")]


def test_missing_signature_is_reported(session_dir: Path) -> None:
    head, sections = _sections(session_dir)
    del sections[_chunk_index(5) + 1]
    _rewrite(session_dir, head, sections)
    assert _issues(session_dir) == [(5, "missing-signature")]


def test_data_faster_than_real_time_is_forged(tmp_path: Path, key: DeviceKey) -> None:
    chunks = make_chunks(8)
    # each chunk holds 1 s of samples but the device clock advances only 0.5 s
    forged = [replace(c, t0_ns=chunks[0].t0_ns + i * 500_000_000) for i, c in enumerate(chunks)]
    path = write_session(tmp_path / "forged", key, forged)
    assert _issues(path) == [(seq, "timing") for seq in range(1, 8)]


def test_slightly_fast_data_is_caught_over_the_session(tmp_path: Path, key: DeviceKey) -> None:
    chunks = make_chunks(20)
    # 4 % faster than real time: within the per-chunk tolerance, not over 20 s
    forged = [replace(c, t0_ns=chunks[0].t0_ns + i * 960_000_000) for i, c in enumerate(chunks)]
    path = write_session(tmp_path / "fast", key, forged)
    assert _issues(path) == [(-1, "rate")]
    honest = write_session(tmp_path / "honest", key, chunks)
    assert verify_session(honest).ok


def test_declared_gap_keeps_the_session_valid(tmp_path: Path, key: DeviceKey) -> None:
    path = write_session(tmp_path / "gap", key, make_chunks(6, gap_before={3: 2.0}))
    report = verify_session(path)
    assert report.ok, report.issues
    assert [g["seq"] for g in report.gaps] == [3]
    assert report.gaps[0]["missing_seconds"] == pytest.approx(2.004, abs=0.01)


def test_undeclared_gap_is_a_timing_issue(tmp_path: Path, key: DeviceKey) -> None:
    chunks = make_chunks(6)
    shifted = chunks[:3] + [replace(c, t0_ns=c.t0_ns + 2_000_000_000) for c in chunks[3:]]
    path = write_session(tmp_path / "jump", key, shifted)
    assert _issues(path) == [(3, "timing")]


def test_partial_tail_is_a_warning_and_resume_truncates_it(tmp_path: Path, key: DeviceKey) -> None:
    path = write_session(tmp_path / "crash", key, make_chunks(6))
    file = path / SESSION_FILE
    data = file.read_bytes()
    file.write_bytes(data[:-30])  # killed in the middle of writing the last signature
    report = verify_session(path)
    assert report.ok, report.issues
    assert report.chunks == 5  # chunk 5 is whole but its signature was cut: not committed
    assert len(report.warnings) == 2
    # an unsigned chunk is not kept: resume truncates back to the last signed chunk
    with SessionWriter.resume(path, key, fsync=False) as writer:
        assert writer.next_seq == 5
        for chunk in make_chunks(8)[5:]:
            writer.append(chunk)
    report = verify_session(path)
    assert report.ok, report.issues
    assert report.chunks == 8 and not report.warnings


def test_writer_rejects_nan_and_wrong_shapes(tmp_path: Path, key: DeviceKey) -> None:
    chunks = make_chunks(2)
    bad = replace(chunks[0], samples=np.full((4, 10), np.nan))
    with pytest.raises(SessionError, match="NaN"):
        write_session(tmp_path / "nan", key, [bad])
    wrong = replace(chunks[0], samples=np.zeros((3, 10)))
    with pytest.raises(SessionError, match="shape"):
        write_session(tmp_path / "shape", key, [chunks[1], wrong])


def test_resume_refuses_another_device(session_dir: Path) -> None:
    with pytest.raises(SessionError, match="another device"):
        SessionWriter.resume(session_dir, DeviceKey.generate())


def test_garbage_file_is_reported_not_raised(tmp_path: Path) -> None:
    path = tmp_path / "junk"
    path.mkdir()
    (path / SESSION_FILE).write_bytes(b"\x05hello world")
    report = verify_session(path)
    assert not report.ok and report.issues[0].code == "unreadable"
