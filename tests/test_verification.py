"""Human verification: liveness on real and forged EEG, replays, attention, decisions."""

from __future__ import annotations

import copy
from pathlib import Path

import mne
import numpy as np
import pytest

from mindprint.core.errors import ConfigurationError
from mindprint.device.openbci import read_openbci_gui_csv
from mindprint.device.session import verify_session
from mindprint.labeling.verification.corpus import channel_shuffle, coloured_noise, phase_surrogate, synthetic_board
from mindprint.labeling.verification.model import (
    LivenessModel,
    choose_threshold,
    epoch_scores,
    featurise,
    load_default_model,
    out_of_fold_scores,
)
from mindprint.labeling.verification.scores import attention_score, authenticity_score, decide, uniqueness_score
from mindprint.labeling.verification.uniqueness import FingerprintIndex, ReplayRule, query_set
from mindprint.signal.filters import design_filter, filter_offline

from .conftest import CYTON_CSV, EEGLAB_SET, EMOTIV_FIF, GENERATOR_EDF, make_chunks, require, write_session


@pytest.fixture(scope="module")
def cyton() -> np.ndarray:
    return read_openbci_gui_csv(require(CYTON_CSV)).data[1:9] * 1e-6


@pytest.fixture(scope="module")
def eeglab() -> tuple[np.ndarray, float]:
    raw = mne.io.read_raw_eeglab(require(EEGLAB_SET), preload=True, verbose="error")
    return raw.get_data(), float(raw.info["sfreq"])


@pytest.fixture(scope="module")
def emotiv() -> tuple[np.ndarray, float]:
    raw = mne.io.read_raw_fif(require(EMOTIV_FIF), preload=True, verbose="error")
    return raw.get_data(), float(raw.info["sfreq"])


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    return load_default_model()


def test_real_eeg_is_live(model, cyton, eeglab) -> None:  # type: ignore[no-untyped-def]
    for start in (20, 40, 60):  # 10 s stretches of the Cyton recording
        verdict = model.assess(cyton[:, start * 250 : (start + 10) * 250], 250.0)
        assert verdict.accepted, verdict
    data, sfreq = eeglab
    for start in (10, 100, 200):
        verdict = model.assess(data[:, int(start * sfreq) : int((start + 10) * sfreq)], sfreq)
        assert verdict.accepted, verdict


def test_forgeries_are_not_live(model, cyton) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    generator = mne.io.read_raw_edf(require(GENERATOR_EDF), preload=True, verbose="error").get_data()
    board, board_rate = synthetic_board(6.0)
    excerpt = cyton[:, 30 * 250 : 60 * 250]
    forgeries = {
        "synthetic board": (board, board_rate),
        "signal generator": (generator[:, 1000:3000], 200.0),
        "pink noise + alpha": (coloured_noise(8, 2500, 250.0, 1.0, rng), 250.0),
        "brown noise + alpha": (coloured_noise(8, 2500, 250.0, 2.0, rng), 250.0),
        "phase-randomised surrogate": (phase_surrogate(excerpt, rng), 250.0),
        "channel-shuffled": (channel_shuffle(excerpt, 250.0, rng), 250.0),
    }
    for name, (data, sfreq) in forgeries.items():
        verdict = model.assess(data, sfreq)
        assert not verdict.accepted, f"{name} accepted: {verdict.score:.2f}"
        assert verdict.reasons, name


def test_thresholds_hold_across_recordings(cyton, eeglab) -> None:  # type: ignore[no-untyped-def]
    from mindprint.labeling.verification.corpus import Recording

    rng = np.random.default_rng(5)
    data, sfreq = eeglab
    recordings = [
        Recording("cyton", cyton, 250.0, 1, "cyton", "real"),
        Recording("eeglab", data, sfreq, 1, "eeglab", "real"),
        Recording("s-cyton", phase_surrogate(cyton, rng), 250.0, 0, "cyton", "surrogate"),
        Recording("s-eeglab", phase_surrogate(data, rng), sfreq, 0, "eeglab", "surrogate"),
        Recording("pink", coloured_noise(8, 30000, 250.0, 1.0, rng), 250.0, 0, "pink", "noise"),
    ]
    windows = featurise(recordings, epoch_step=4.0, all_presentations=False)
    first, scores = epoch_scores(windows, out_of_fold_scores(windows))
    labels = windows.labels[first]
    threshold = choose_threshold(scores, labels, 0.01)
    # trained without the held-out recording (4 s epochs, weakest window), the other recording still passes
    assert np.mean(scores[labels == 1] >= threshold) > 0.9
    assert np.mean(scores[labels == 0] >= threshold) <= 0.01


def _band_rms(window: np.ndarray, sfreq: float) -> np.ndarray:
    """Per-channel RMS in 1–45 Hz, shape (n_channels, 1)."""
    return filter_offline(window, design_filter(sfreq, 1.0, 45.0)).std(axis=1, keepdims=True)


def test_replays_are_caught_and_distinct_windows_are_not(cyton, eeglab) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(8)
    index = FingerprintIndex()
    index.add(1, cyton[:, : 45 * 250], 250.0)
    data, sfreq = eeglab
    index.add(2, data[:, : int(120 * sfreq)], sfreq)
    for start in (5, 17, 33):
        window = cyton[:, start * 250 : start * 250 + 500]
        shift = int(rng.integers(1, 125))
        replays = {
            "exact": window,
            "rescaled": window * 3.0 + 0.01,
            "noisy": window + rng.normal(0, 0.3 * _band_rms(window, 250.0), window.shape),
            "shifted": cyton[:, start * 250 + shift : start * 250 + shift + 500],
            "reversed": window[:, ::-1].copy(),
            "permuted": window[rng.permutation(8)],
        }
        for kind, replay in replays.items():
            match = index.query(replay, 250.0)
            assert match is not None and match.owner == 1, f"{kind} replay at {start} s missed"
            assert uniqueness_score(match).value == 0.0
    false = 0
    starts = list(range(46 * 250, 88 * 250, 125))
    for start in starts:  # the unindexed half of the recording: distinct windows
        false += index.query(cyton[:, start : start + 500], 250.0) is not None
    assert false <= 1, f"{false} false matches among {len(starts)} distinct windows"


def test_a_headset_whose_channels_are_one_signal_is_not_taken_for_a_replay(cyton, eeglab, emotiv) -> None:  # type: ignore[no-untyped-def]
    """Emotiv EPOC windows whose 14 channels carry one 1–20 Hz signal resembled one stored
    Cyton or EEGLAB fingerprint by chance on 11–14 channels at once: counted channel by
    channel, a replay (8 of 48 such windows in ``benchmarks/verification.py``). The stored
    fingerprints they matched are one signal; a replay's are not, or match closely. Replays
    of the same headset's data are still caught."""
    headset, sfreq = emotiv
    width = int(np.ceil(2 * sfreq))
    data, eeglab_sfreq = eeglab
    index = FingerprintIndex()
    index.add(1, cyton[:, : 45 * 250], 250.0)
    index.add(2, data[:, : int(120 * eeglab_sfreq)], eeglab_sfreq)
    index.add(3, headset[:, : headset.shape[1] // 2], sfreq)
    starts = [int(t * sfreq) for t in np.arange(8.25, 10.25, 0.125)]
    queries = [query_set(headset[:, s : s + width], sfreq, index.rule.hop) for s in starts]
    counted_per_channel = copy.copy(index)  # the same fingerprints, the rule before the one-signal condition
    counted_per_channel.rule = ReplayRule(min_sources=0.0, close=1.0)
    assert sum(counted_per_channel.search(q) is not None for q in queries) >= 3  # the case is real
    assert [index.search(q) for q in queries] == [None] * len(queries)
    rng = np.random.default_rng(5)
    for start in (64, 320, 576):
        window = headset[:, start : start + width]
        for replay in (window, window * 2.0, window + rng.normal(0, 0.3 * _band_rms(window, sfreq), window.shape)):
            match = index.query(replay, sfreq)
            assert match is not None and match.owner == 3


def test_attention_scores() -> None:
    baseline = [1.0, 1.1, 0.9, 1.05, 0.95, 1.0]
    attentive = attention_score(1.0, baseline, [0.45, 0.6, 0.52], gold_correct=4, gold_total=4)
    assert attentive.value > 0.8 and not attentive.reasons
    drowsy = attention_score(0.3, baseline, [0.5, 0.6])
    assert drowsy.value < 0.5 and "baseline" in drowsy.reasons[0]
    bot = attention_score(1.0, baseline, [0.5] * 8)
    assert bot.value < 0.6 and any("machine-regular" in r for r in bot.reasons)
    guesser = attention_score(1.0, baseline, [0.5, 0.7, 0.4], gold_correct=0, gold_total=6)
    assert guesser.value < attentive.value and any("gold" in r for r in guesser.reasons)
    impossible = attention_score(1.0, baseline, [0.05, 0.08, 0.5])
    assert impossible.value < attentive.value and any("outside" in r for r in impossible.reasons)


def test_authenticity_and_decision(tmp_path: Path, key, model, cyton) -> None:  # type: ignore[no-untyped-def]
    session = write_session(tmp_path / "s", key, make_chunks(3))
    report = verify_session(session)
    assert authenticity_score(report, device_bound=True).value == 1.0
    assert authenticity_score(report, device_bound=False).value == 0.0
    assert authenticity_score(report, device_bound=None).value == 0.5
    live = model.assess(cyton[:, 30 * 250 : 40 * 250], 250.0)
    good = decide(
        authenticity_score(report, device_bound=True),
        live,
        uniqueness_score(None),
        attention_score(1.0, [1.0] * 6, [0.5, 0.7]),
    )
    assert good.accepted and good.scores["authenticity"] == 1.0
    unbound = decide(
        authenticity_score(report, device_bound=False),
        live,
        uniqueness_score(None),
        attention_score(1.0, [1.0] * 6, [0.5, 0.7]),
    )
    assert not unbound.accepted and unbound.reasons


def test_the_whole_epoch_is_checked(model, cyton) -> None:  # type: ignore[no-untyped-def]
    """2 s windows every 0.5 s over the whole 4 s epoch, the weakest decides: real EEG for
    2.25 s then pink noise + alpha (at the real DC offsets) is caught — the first model
    looked at 0.25–2.25 s only and passed every one."""
    real = cyton[:, 40 * 250 : 44 * 250]
    honest = model.assess(real, 250.0)
    assert len(honest.window_scores) == 4 and honest.score == min(honest.window_scores)
    assert honest.accepted and not honest.reasons
    for start in (35, 45, 66, 70):
        epoch = cyton[:, start * 250 : (start + 4) * 250]
        fake = coloured_noise(8, 1000, 250.0, 1.0, np.random.default_rng(1)) + epoch.mean(axis=1, keepdims=True)
        spliced = model.assess(np.hstack([epoch[:, :562], fake[:, 562:]]), 250.0)
        # rejected for a window that reaches into the noise (by the score or the correlation pattern)
        # (windows start 0.25 s in: the second covers 0.75–2.75 s of the epoch)
        late = ("at 0.75–2.75 s", "at 1.25–3.25 s", "at 1.75–3.75 s")
        assert not spliced.accepted and any(where in spliced.reasons[0] for where in late), spliced


def test_a_splice_that_keeps_the_spectrum_is_caught_by_the_correlation_pattern(model, cyton, eeglab) -> None:  # type: ignore[no-untyped-def]
    """Real EEG for 2.75 s, then each channel's own phase-randomised surrogate of the same
    epoch: every feature the model reads stays human (the logistic score passes most), but
    the forged second loses the pattern of channel correlations a head keeps — the
    ``stability`` rule rejects it and says where. Real EEG keeps it; 2 channels have no pattern."""
    from mindprint.labeling.verification.liveness import liveness_features

    data, sfreq = eeglab
    for x, rate, start in ((cyton, 250.0, 18), (data, sfreq, 26), (data, sfreq, 30)):
        epoch = x[:, int(start * rate) : int(start * rate) + int(4 * rate)]
        cut = int(2.75 * rate)
        forged = phase_surrogate(epoch, np.random.default_rng(start))
        spliced = np.hstack([epoch[:, :cut], forged[:, cut:]])
        verdict = model.assess(spliced, rate)
        # the rule says so whether or not the model's score is also low
        assert not verdict.accepted and any("correlation pattern changes" in r for r in verdict.reasons), verdict
        honest = model.assess(epoch, rate)
        assert honest.accepted, honest
        floor = model.stability_floor(len(epoch))
        assert floor is not None and liveness_features(epoch, rate, step_seconds=0.5).stability.min() >= floor
    assert np.all(np.isnan(liveness_features(cyton[:2, :1000], 250.0).stability))
    assert model.stability_floor(2) is None and model.stability_floor(64) == model.stability_low["8"]


def test_a_consumer_headset_the_rules_were_not_tuned_on_is_accepted(model, emotiv) -> None:  # type: ignore[no-untyped-def]
    """An Emotiv EPOC (14 channels at 128 Hz, dominated by slow activity: few independent
    samples in a 0.5 s piece) through all its channels and any 8: real epochs keep the
    channels' correlation pattern as ``stability`` asks. The ``pattern`` rule this replaced
    (the shape of the pattern, from 8 channels) rejected 68–72 % of these epochs."""
    data, sfreq = emotiv
    rng = np.random.default_rng(3)
    for picks in (np.arange(14), *(np.sort(rng.choice(14, 8, replace=False)) for _ in range(3))):
        verdicts = [model.assess(data[picks, s : s + 512], sfreq) for s in range(0, data.shape[1] - 512 + 1, 256)]
        assert len(verdicts) == 7
        assert sum(v.accepted for v in verdicts) >= 6, [v.reasons for v in verdicts]


def test_a_model_trained_before_the_pattern_rule_went_still_loads(tmp_path: Path, model) -> None:  # type: ignore[no-untyped-def]
    """A model file from before 2026-12-05 carries the retired ``pattern`` floors: it loads
    and scores as the same model without them; a file that is not a model says so."""
    import json
    from dataclasses import asdict

    old = tmp_path / "old_model.json"
    old.write_text(json.dumps({**asdict(model), "pattern_low": {"8": 0.3}}))
    assert LivenessModel.load(old) == model
    broken = tmp_path / "broken.json"
    broken.write_text("[1, 2]")
    with pytest.raises(ConfigurationError, match="cannot load liveness model"):
        LivenessModel.load(broken)


def test_one_channel_copied_onto_every_channel_is_rejected(model, cyton, eeglab) -> None:  # type: ignore[no-untyped-def]
    """A forger's cheapest multichannel EEG: one real channel on every channel, each copy with
    its own 0.1 µV of noise. In every band the channels correlate at |r| ≥ 0.999 — the
    ``copies`` rule rejects it through 2 channels and through 8, and says why; the real
    epochs it was cut from stay below the ceiling."""
    from mindprint.labeling.verification.liveness import COPIES_CEILING, liveness_features

    data, sfreq = eeglab
    rng = np.random.default_rng(5)
    for x, rate, start in ((cyton, 250.0, 30), (data, sfreq, 40)):
        for k in (2, 8):
            epoch = x[:k, int(start * rate) : int(start * rate) + int(4 * rate)]
            copied = np.repeat(epoch[:1], k, axis=0) + rng.normal(0, 1e-7, epoch.shape)
            verdict = model.assess(copied, rate)
            assert not verdict.accepted and verdict.reasons[0].startswith("the channels carry one signal"), verdict
            assert liveness_features(copied, rate, step_seconds=0.5).copies.min() > 0.999
            assert liveness_features(epoch, rate, step_seconds=0.5).copies.max() < COPIES_CEILING


def _whole_window_stability(x: np.ndarray, sfreq: float) -> float:
    """The stability as it was measured until 2026-12-04: each 0.5 s piece against the whole
    2 s window that holds it (the windows of ``liveness_features``)."""
    from mindprint.labeling.verification.liveness import BAND
    from mindprint.signal.filters import design_filter, filter_offline

    band = filter_offline(np.asarray(x, dtype=np.float64), design_filter(sfreq, *BAND))
    edge, width, piece = int(0.25 * sfreq), int(2 * sfreq), int(0.5 * sfreq)
    lowest = np.inf
    for start in range(edge, band.shape[1] - edge - width + 1, piece):
        window = band[:, start : start + width]
        whole = np.corrcoef(window)[np.triu_indices(len(window), 1)]
        for k in range(4):
            r = np.corrcoef(window[:, k * piece : (k + 1) * piece])[np.triu_indices(len(window), 1)]
            lowest = min(lowest, float(np.mean(r * np.sign(whole)) / np.mean(np.abs(whole))))
    return lowest


def test_a_forged_piece_is_compared_with_the_rest_of_its_window(cyton) -> None:  # type: ignore[no-untyped-def]
    """A forged piece inside the window it is measured against shares its own chance pattern
    with it: each channel's surrogate from 2.75 s measured against its whole window keeps a
    stability of 0.37–0.52 (held out, such splices passed); against the rest of the window
    (the other pieces' mean correlations, each piece detrended) it scores lower (−0.10–0.07:
    below the 0.2 floor of 8 channels), while real EEG stays above it (0.37–0.79; against the
    whole window 0.44–0.79)."""
    from mindprint.labeling.verification.liveness import liveness_features

    for start in (5, 10, 13, 37):
        epoch = cyton[:, start * 250 : (start + 4) * 250]
        forged = phase_surrogate(epoch, np.random.default_rng(start))
        spliced = np.hstack([epoch[:, : int(2.75 * 250)], forged[:, int(2.75 * 250) :]])
        against_rest = liveness_features(spliced, 250.0, step_seconds=0.5).stability.min()
        assert against_rest < _whole_window_stability(spliced, 250.0) - 0.02
        assert against_rest < 0.2
        honest = liveness_features(epoch, 250.0, step_seconds=0.5).stability.min()
        assert honest > 0.3


def test_features_are_bounded_and_two_channels_are_handled(model, cyton) -> None:  # type: ignore[no-untyped-def]
    """One feature far outside the human range cannot buy acceptance (each is clipped to
    its range widened by half, and being outside the range counts against the window), and
    a 2-channel epoch has no correlation spread instead of a spread of 0."""
    from mindprint.labeling.verification.liveness import FEATURES, liveness_features
    from mindprint.labeling.verification.model import _standardise

    epoch = cyton[:, 50 * 250 : 54 * 250]
    values = liveness_features(epoch, 250.0, step_seconds=0.5).values
    spread = FEATURES.index("correlation_z_spread")
    assert np.all(np.isnan(liveness_features(epoch[:2], 250.0).values[:, spread]))
    assert model.assess(epoch[:2], 250.0).accepted
    best = int(np.argmax(model.coef))
    extreme = values.copy()
    extreme[:, best] = 1e6 if model.coef[best] > 0 else -1e6
    width = model.human_high[best] - model.human_low[best]
    bound = abs(model.coef[best]) * (2 * width) / model.scale[best]  # at most the widened range, in logits
    params = model._params()
    logit = lambda v: _standardise(params, v) @ params.coef + params.intercept  # noqa: E731  (p saturates at 1.0)
    assert np.all(logit(extreme) - logit(values) <= bound + 1e-9)
    # and being far outside counts against the window: less than at the edge of the widened range
    edge = values.copy()
    edge[:, best] = model.human_high[best] + width / 2 if model.coef[best] > 0 else model.human_low[best] - width / 2
    assert model.coef[-1] < 0 and np.all(logit(extreme) < logit(edge))
    # a feature whose human range is one value (``stuck``: 0 in every real window) is not
    # infinitely far outside it for a trace: one run of 6 held samples costs almost nothing
    held = epoch.copy()
    held[3, 500:506] = held[3, 500]
    traced = liveness_features(held, 250.0, step_seconds=0.5).values
    assert np.all(traced[:, FEATURES.index("stuck")] > 0)
    excess = _standardise(params, traced)[:, -1]
    assert np.all(excess < 0.05) and model.assess(held, 250.0).accepted


def test_correlation_is_a_significance_band_by_band() -> None:
    """``correlation_z``: independent channels score near 1 however slow they are; two
    channels whose large slow activity is each their own but which share a 15–25 Hz rhythm
    (a distant pair on one reference) score twice that — the broadband |r|√N_eff of the
    same windows, ruled by the slow activity, stays at chance."""
    from mindprint.labeling.verification.liveness import liveness_features

    rng = np.random.default_rng(7)
    sfreq, n = 250.0, 1000
    own = filter_offline(np.cumsum(rng.standard_normal((2, n)), axis=1), design_filter(sfreq, 1.0, 45.0))
    own *= 20e-6 / own.std()  # brown, 20 µV: each channel's own
    shared = filter_offline(rng.standard_normal((1, n)), design_filter(sfreq, 15.0, 25.0))[0]
    shared *= 8e-6 / shared.std()
    alone = liveness_features(own, sfreq, step_seconds=0.5).column("correlation_z")
    together = liveness_features(own + shared, sfreq, step_seconds=0.5).column("correlation_z")
    assert np.all(alone < 1.2) and np.all(together > 1.8), (alone, together)
    broadband = []  # what correlation_z was until 2026-12-05, on the same 2 s windows
    for start in (62, 187, 312, 437):
        window = (own + shared)[:, start : start + 500]
        a, b = window - window.mean(axis=1, keepdims=True)
        pa, pb = np.abs(np.fft.rfft(a)) ** 2, np.abs(np.fft.rfft(b)) ** 2
        broadband.append(abs(np.corrcoef(a, b)[0, 1]) * np.sqrt(2 * pa.sum() * pb.sum() / (pa * pb).sum()))
    assert np.median(broadband) < 1.2 < np.median(together), (broadband, together)


def test_time_irreversibility_is_signed(cyton, eeglab) -> None:  # type: ignore[no-untyped-def]
    """Scalp EEG rises faster than it falls on the recordings we carry: the signed
    irreversibility is positive, and played backwards it flips."""
    from mindprint.labeling.verification.liveness import liveness_features

    data, sfreq = eeglab
    column = liveness_features(data, sfreq).column("irreversibility_10")
    backwards = liveness_features(data[:, ::-1].copy(), sfreq).column("irreversibility_10")
    assert np.median(column) > 0.05 and np.median(backwards) < -0.05


def test_replays_anywhere_in_the_epoch_and_across_two_stored_samples(cyton) -> None:  # type: ignore[no-untyped-def]
    """The query covers the whole 4 s epoch: real EEG spliced after 2 s of fresh EEG is
    caught, and so is a stretch that straddles two stored samples (each indexed alone, as
    the platform stores accepted samples)."""
    rng = np.random.default_rng(3)
    index = FingerprintIndex()
    sf = 250
    stored = {owner: (10 + 4 * owner) * sf for owner in range(1, 7)}  # six consecutive 4 s samples, 14–38 s
    for owner, start in stored.items():
        index.add(owner, cyton[:, start : start + 4 * sf], 250.0)
    fresh = cyton[:, 60 * sf : 64 * sf]  # never stored
    assert index.query(fresh, 250.0) is None
    fade = np.linspace(0.0, 1.0, int(0.1 * sf))
    for owner in (2, 4):
        start = stored[owner]
        # fresh EEG for 2 s, then (cross-faded over 0.1 s) a replay of the stored sample's middle
        replay = cyton[:, start + sf : start + 3 * sf]
        tail = np.concatenate([fresh[:, : 2 * sf], replay], axis=1)
        blend = slice(2 * sf - len(fade), 2 * sf)
        tail[:, blend] = fresh[:, blend] * (1 - fade) + cyton[:, start + sf - len(fade) : start + sf] * fade
        match = index.query(tail, 250.0)
        assert match is not None and match.owner == owner, "a replay in the epoch's tail was missed"
        for split in (1.4, 2.0, 2.6):  # the last `split` s of one stored sample, then the next one
            at = start + 4 * sf - int(split * sf)
            clean = cyton[:, at : at + 4 * sf]
            straddle = clean + rng.normal(0, 0.2 * _band_rms(clean, 250.0), clean.shape)
            match = index.query(straddle, 250.0)
            assert match is not None and match.owner in (owner, owner + 1), f"straddle at {split} s missed"


def test_adc_quantisation_is_not_stuck(model, cyton) -> None:  # type: ignore[no-untyped-def]
    """Real EEG stored with a coarse ADC step (0.5 µV, as a 16-bit EDF with a ±16 mV range
    stores it) repeats values now and then, but never in runs of five: 'stuck' stays 0 and
    the epoch stays live; a stream that holds its value is flagged."""
    from mindprint.labeling.verification.liveness import liveness_features

    quantised = np.round(cyton[:, 50 * 250 : 54 * 250] / 0.5e-6) * 0.5e-6
    features = liveness_features(quantised, 250.0, step_seconds=0.5)
    assert np.all(features.column("stuck") == 0.0)
    assert model.assess(quantised, 250.0).accepted
    held = quantised.copy()
    held[:, ::10] = held[:, 1::10]  # pairs of equal samples: still not a run of five
    assert np.all(liveness_features(held, 250.0).column("stuck") == 0.0)
    frozen = quantised.copy()
    frozen[:, 300:700] = frozen[:, 300:301]  # the stream froze for 1.6 s
    assert np.all(liveness_features(frozen, 250.0, step_seconds=0.5).column("stuck") > 0.2)


def test_liveness_reuses_the_pipelines_filtered_epoch_bit_for_bit(model, cyton) -> None:  # type: ignore[no-untyped-def]
    """The platform passes the pipeline re-run's filtered epoch to liveness when the filter is
    the same (no notch): the features, hence the model's verdict, are identical; with a notch
    it is not shared; a band of another shape is refused."""
    from mindprint.core.errors import SignalError
    from mindprint.labeling.verification.liveness import liveness_features, shares_band
    from mindprint.signal.pipeline import PipelineParams, process_recording

    epoch = cyton[:, 44 * 250 : 48 * 250]
    names = ["Fp1", "Fp2", "C3", "C4", "P7", "P8", "O1", "O2"]
    result = process_recording(epoch, 250.0, names, params=PipelineParams(notch=None))
    assert result.design is not None and shares_band(result.design)
    alone = liveness_features(epoch, 250.0, step_seconds=0.5).values
    shared = liveness_features(epoch, 250.0, step_seconds=0.5, band=result.filtered).values
    assert np.array_equal(alone, shared, equal_nan=True)
    assert model.assess(epoch, 250.0, band=result.filtered) == model.assess(epoch, 250.0)
    notched = process_recording(epoch, 250.0, names, params=PipelineParams(notch=60.0))
    assert notched.design is not None and not shares_band(notched.design)
    with pytest.raises(SignalError, match="shape"):
        liveness_features(epoch, 250.0, band=result.filtered[:, :-1])


def test_two_channels_of_a_signal_generator_are_rejected_and_say_why(model, cyton, eeglab, emotiv) -> None:  # type: ignore[no-untyped-def]
    """Through 2 channels the model alone let a signal generator pass (two sines covary
    perfectly in the bands where both carry only filter residue, and that correlation
    outweighed a capped range term): three rules past ceilings no head reaches stop every
    pair of the generator's 11 channels, each with its reason, and leave real EEG alone —
    through every pair of the Cyton recording too, jaw clenches included (a rule on the
    summed range, tried first, rejected those)."""
    import itertools

    from mindprint.labeling.verification.liveness import (
        LOW_HIGH_CEILING,
        STUCK_CEILING,
        TONE_CEILING,
        liveness_features,
    )

    raw = mne.io.read_raw_edf(require(GENERATOR_EDF), preload=True, verbose="error")
    generator, names = raw.get_data(), raw.ch_names
    why = {"tone": 0, "stuck": 0, "tilt": 0}
    for a, b in itertools.combinations(range(len(names)), 2):
        for start in (12811, 56756):
            epoch = generator[[a, b], start : start + 800]
            verdict = model.assess(epoch, 200.0)
            assert not verdict.accepted, (names[a], names[b], start)
            why["tone"] += any(r.startswith("a pure tone") for r in verdict.reasons)
            why["stuck"] += any("runs of identical values" in r for r in verdict.reasons)
            why["tilt"] += any("no broadband activity" in r for r in verdict.reasons)
    assert all(why.values()), why
    # the pair only the tilt rule stops: a 1 Hz and a 50 Hz sine — the model's score alone passes it
    pair = generator[[names.index("sine 1 Hz"), names.index("sine 50 Hz")], 56756 : 56756 + 800]
    verdict = model.assess(pair, 200.0)
    assert verdict.score >= model.threshold and not verdict.accepted
    assert any("no broadband activity" in r for r in verdict.reasons), verdict.reasons
    # real EEG stays inside every ceiling: every Cyton pair every 6 s, EEGLAB and Emotiv through 2 channels and all
    data, sfreq = eeglab
    emotiv_data, emotiv_rate = emotiv
    stretches = [(cyton[list(p)], 250.0) for p in itertools.combinations(range(8), 2)]
    stretches += [
        (x[rows], rate)
        for x, rate in ((data, sfreq), (emotiv_data, emotiv_rate))
        for rows in (slice(0, 2), slice(None))
    ]
    for x, rate in stretches:
        for start in np.arange(1.0, x.shape[1] / rate - 5.0, 6.0):
            epoch = x[:, int(start * rate) : int(start * rate) + int(4 * rate)]
            features = liveness_features(epoch, rate, step_seconds=0.5)
            assert features.column("tone").max() < TONE_CEILING - 1
            assert features.column("stuck").max() < STUCK_CEILING
            assert features.column("low_high").max() < LOW_HIGH_CEILING - 2
