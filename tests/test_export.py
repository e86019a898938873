from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pytest

from mindprint.core.errors import ConfigurationError
from mindprint.device.session import chunk_samples, iter_chunks
from mindprint.export.session_file import export_session

from .conftest import make_chunks, write_session


def test_fif_round_trip_with_markers_and_gap(tmp_path: Path, key) -> None:  # type: ignore[no-untyped-def]
    path = write_session(tmp_path / "s", key, make_chunks(5, gap_before={3: 2.0}))
    out = export_session(path, tmp_path / "out_raw.fif")
    raw = mne.io.read_raw_fif(out, preload=True, verbose="error")
    assert raw.info["sfreq"] == 250
    assert raw.n_times == 5 * 250 + 500  # the 2 s gap is zero-filled, so times stay true
    by_name = {a["description"]: a for a in raw.annotations}
    assert by_name["stimulus"]["onset"] == pytest.approx(1 + 10 / 250)
    assert by_name["BAD_ACQ_SKIP"]["onset"] == pytest.approx(3.0, abs=0.01)
    assert by_name["BAD_ACQ_SKIP"]["duration"] == pytest.approx(2.0, abs=0.01)
    first = chunk_samples(next(iter_chunks(path))[1])
    np.testing.assert_allclose(raw.get_data()[:, :250], first, rtol=1e-6)


def test_edf_export_is_readable_by_mne(tmp_path: Path, key) -> None:  # type: ignore[no-untyped-def]
    path = write_session(tmp_path / "s", key, make_chunks(4))
    out = export_session(path, tmp_path / "rec.edf")
    raw = mne.io.read_raw_edf(out, preload=True, verbose="error")
    assert raw.n_times == 1000 and len(raw.ch_names) == 4
    assert "stimulus" in set(raw.annotations.description)
    original = np.concatenate([chunk_samples(b) for _, b in iter_chunks(path)], axis=1)
    # EDF stores 16-bit integers: compare within the quantisation step
    step = (original.max() - original.min()) / 2**15
    np.testing.assert_allclose(raw.get_data(), original, atol=2 * step)


def test_unknown_format_is_refused(tmp_path: Path, session_dir: Path) -> None:
    with pytest.raises(ConfigurationError, match="fif"):
        export_session(session_dir, tmp_path / "x.mat")
