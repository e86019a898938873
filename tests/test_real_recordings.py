"""The pipeline on the real recordings in tests/data/eeg.

How the Cyton events were found (OpenBCI_GUI-v6-blinks-jawClench-alpha.txt, 90 s, no
markers): per 0.5 s we printed the peak-to-peak of Fp1/Fp2 band-passed 0.5–8 Hz (blinks:
~300 µV against ~40 µV), the RMS of every channel in 25–100 Hz with 60/120 Hz notched
(jaw clench: 70–120 µV on C3/P7 and C4/P8 against ~9 µV) and the relative alpha
(8–13 / 1–30 Hz) on O1/O2 in 2 s windows (0.4–0.7 against 0.1–0.3). That shows blink
bursts at about 0–2, 4–7, 13.5–17.5, 24.5–25.5, 76–81.5 and 86–90 s, jaw clenches at
8.5–14.5 and 82.5–89.5 s, and eyes-closed alpha from about 29 to 76 s (dipping around
55–64 s). The same recording has 60 Hz mains ~40 dB above its neighbourhood.
"""

from __future__ import annotations

import mne
import numpy as np
import pytest

from mindprint.device.openbci import read_openbci_gui_csv
from mindprint.signal.epochs import make_epochs
from mindprint.signal.filters import detect_line_frequency
from mindprint.signal.pipeline import process_recording

from .conftest import CYTON_CSV, EEGLAB_SET, require

CYTON_NAMES = ["Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2"]
BLINK_EPISODES = [(0, 2), (4, 7), (13.5, 17.5), (24.5, 25.7), (75.5, 81.5), (86, 90)]
CLENCH_EPISODES = [(8.5, 14.5), (82.5, 89.5)]


@pytest.fixture(scope="module")
def cyton():  # type: ignore[no-untyped-def]
    recording = read_openbci_gui_csv(require(CYTON_CSV))
    eeg = recording.data[1:9] * 1e-6
    return eeg, recording.data[9:12], process_recording(eeg, 250.0, CYTON_NAMES, accel=recording.data[9:12])


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> float:
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def test_cyton_mains_is_60_hz(cyton) -> None:  # type: ignore[no-untyped-def]
    eeg, _, result = cyton
    assert detect_line_frequency(eeg, 250.0) == 60.0
    assert result.line_freq == 60.0


def test_cyton_blinks_found_in_every_episode_and_nowhere_else(cyton) -> None:  # type: ignore[no-untyped-def]
    blinks = [(a.onset, a.end) for a in cyton[2].annotations if a.kind == "blink"]
    for episode in BLINK_EPISODES:
        assert any(_overlap(b, episode) > 0 for b in blinks), f"no blink found in {episode}"
    stray = [b for b in blinks if not any(_overlap(b, e) > 0 for e in BLINK_EPISODES)]
    assert stray == []


def test_cyton_jaw_clenches_found_on_temporal_channels(cyton) -> None:  # type: ignore[no-untyped-def]
    muscle = [a for a in cyton[2].annotations if a.kind == "muscle"]
    for episode in CLENCH_EPISODES:
        hits = [m for m in muscle if _overlap((m.onset, m.end), episode) > 0.5 * (episode[1] - episode[0])]
        assert hits, f"no clench found covering {episode}"
        assert {"C3", "C4"} & set(hits[0].channels)
    quiet = [m for m in muscle if _overlap((m.onset, m.end), (20, 75)) > 0]
    assert quiet == []


def test_cyton_eyes_closed_alpha_segment(cyton) -> None:  # type: ignore[no-untyped-def]
    alpha = [(a.onset, a.end) for a in cyton[2].annotations if a.kind == "eyes_closed_alpha"]
    covered = sum(_overlap(a, (29, 76)) for a in alpha)
    assert covered >= 0.6 * (76 - 29)
    assert all(a[0] >= 25 and a[1] <= 80 for a in alpha)
    # and the features agree: occipital alpha is higher inside the segment than in 0-25 s
    features = cyton[2].features
    starts = features.starts / 250.0
    inside = (starts >= 30) & (starts <= 50)
    before = starts <= 23
    occipital_alpha = features.band("alpha", relative=True)[6:8]
    assert occipital_alpha[:, inside].mean() > 1.5 * occipital_alpha[:, before].mean()
    assert 8.5 < np.nanmedian(features.alpha_peak[6:8, inside]) < 12


@pytest.fixture(scope="module")
def attention():  # type: ignore[no-untyped-def]
    return mne.io.read_raw_eeglab(require(EEGLAB_SET), preload=True, verbose="error")


def test_attention_epochs_match_mne(attention) -> None:  # type: ignore[no-untyped-def]
    raw = attention
    sfreq = raw.info["sfreq"]
    events = [
        (int(round(onset * sfreq)), str(label))
        for onset, label in zip(raw.annotations.onset, raw.annotations.description, strict=True)
    ]
    assert len(events) == 154
    ours = make_epochs(raw.get_data(), sfreq, events, tmin=-0.2, tmax=0.8, baseline=(-0.2, 0.0))
    assert all(e.accepted for e in ours)
    mne_events, ids = mne.events_from_annotations(raw, verbose="error")
    reference = mne.Epochs(
        raw, mne_events, ids, tmin=-0.2, tmax=0.8, baseline=(-0.2, 0.0), preload=True, verbose="error"
    )
    np.testing.assert_allclose(np.stack([e.data for e in ours]), reference.get_data(), rtol=1e-10, atol=1e-15)
    assert [e.label for e in ours].count("square") == 80 and [e.label for e in ours].count("rt") == 74


def test_attention_squares_evoke_a_response_and_responses_follow_stimuli(attention) -> None:  # type: ignore[no-untyped-def]
    raw = attention
    sfreq = raw.info["sfreq"]
    result = process_recording(raw.get_data(), sfreq, raw.ch_names)
    events = [
        (int(round(o * sfreq)), str(d)) for o, d in zip(raw.annotations.onset, raw.annotations.description, strict=True)
    ]
    epochs = make_epochs(result.filtered, sfreq, [e for e in events if e[1] == "square"], tmin=-0.2, tmax=0.6)
    evoked = np.mean([e.data for e in epochs if e.accepted], axis=0)
    baseline = evoked[:, : int(0.2 * sfreq)].std()
    response = evoked[:, int(0.3 * sfreq) : int(0.6 * sfreq)].std()
    assert response > 2 * baseline  # a visual evoked response after each square
    squares = [s for s, label in events if label == "square"]
    for sample, label in events:
        if label == "rt":
            before = [s for s in squares if s < sample]
            assert before and 0.15 < (sample - before[-1]) / sfreq < 1.5  # plausible reaction times


def test_epoch_rejection_by_annotation_and_quality(cyton) -> None:  # type: ignore[no-untyped-def]
    result = cyton[2]
    events = [(int(10 * 250), "during clench"), (int(40 * 250), "quiet"), (int(89.9 * 250), "edge")]
    quality = result.quality_matrix()
    epochs = make_epochs(
        result.filtered, 250.0, events, annotations=result.annotations, quality=quality, quality_window=500
    )
    assert epochs[0].rejected and "muscle" in epochs[0].rejected
    assert epochs[1].accepted, epochs[1].rejected
    assert epochs[2].rejected == "out of range"
