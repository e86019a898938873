"""Challenge–response liveness on real EEG with known events (the EEGLAB task's stimuli,
the Cyton recording's eyes-closed prompt): true event times pass, moved or invented ones fail."""

from __future__ import annotations

import mne
import numpy as np
import pytest

from mindprint.core.errors import SignalError
from mindprint.device.openbci import read_openbci_gui_csv
from mindprint.labeling.verification.challenge import alpha_reactivity, evoked_response

from .conftest import CYTON_CSV, EEGLAB_SET, require


@pytest.fixture(scope="module")
def task() -> tuple[np.ndarray, float, np.ndarray]:
    raw = mne.io.read_raw_eeglab(require(EEGLAB_SET), preload=True, verbose="error")
    events, ids = mne.events_from_annotations(raw, verbose="error")
    sfreq = float(raw.info["sfreq"])
    return raw.get_data(), sfreq, events[events[:, 2] == ids["square"], 0] / sfreq


def test_evoked_response_at_true_onsets_only(task: tuple[np.ndarray, float, np.ndarray]) -> None:
    data, sfreq, onsets = task
    rng = np.random.default_rng(0)
    eight = data[np.linspace(0, data.shape[0] - 1, 8).round().astype(int)]  # a Cyton-sized montage
    for start in (0, 20, 40, 60):
        chosen = onsets[start : start + 16]
        assert evoked_response(eight, sfreq, chosen).z > 3
        moved = chosen + rng.uniform(0.8, 2.0, len(chosen))
        invented = np.sort(rng.uniform(1, data.shape[1] / sfreq - 1, 16))
        assert evoked_response(eight, sfreq, moved).z < 3
        assert evoked_response(eight, sfreq, invented).z < 3
    # the statistic does not depend on amplitude
    scaled = evoked_response(eight * 1000, sfreq, onsets[:16]).z
    assert scaled == pytest.approx(evoked_response(eight, sfreq, onsets[:16]).z, rel=1e-6)


def test_evoked_response_needs_trials(task: tuple[np.ndarray, float, np.ndarray]) -> None:
    data, sfreq, onsets = task
    with pytest.raises(SignalError, match="at least 4 trials"):
        evoked_response(data, sfreq, onsets[:3])
    with pytest.raises(SignalError, match="at least 4 trials"):
        evoked_response(data, sfreq, [-5.0, 1e6, 2e6, 3e6, 4e6])
    bad = data.copy()
    bad[0, 10] = np.nan
    with pytest.raises(SignalError, match="finite"):
        evoked_response(bad, sfreq, onsets[:16])


def test_alpha_rises_when_the_eyes_close() -> None:
    data = read_openbci_gui_csv(require(CYTON_CSV)).data[1:9] * 1e-6
    at_prompt = alpha_reactivity(data, 250.0, 29.0)  # eyes closed from 29 s (see test_real_recordings)
    elsewhere = [alpha_reactivity(data, 250.0, t) for t in np.arange(5.0, 85.0, 2.0) if abs(t - 29.0) > 10]
    assert at_prompt > 0.15
    assert np.mean(np.asarray(elsewhere) < at_prompt) > 0.85
