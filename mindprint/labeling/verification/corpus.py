"""The labelled evaluation corpus: real EEG windows and every kind of forgery.

Positives are the real recordings in ``shared/data/eeg`` (OpenBCI Cyton, EEGLAB
attention cap, BioSemi, the MNE sample subject's 60-channel Elekta cap, an Emotiv EPOC's
14 channels from the PhyAAt dataset as ``spkit`` ships it). Negatives:
BrainFlow's synthetic board (recorded live), the signal generator EDF, pink and brown
noise with an alpha sine, and two forgeries of every real recording that break what a
head gives — phase-randomised surrogates (each channel's spectrum kept, phases drawn at
random per channel) and channel-shuffled real data (each channel circularly shifted by its
own offset).

Forgeries that keep a recording's cross-channel linear structure — the same random
phases on every channel (:func:`same_phase_surrogate`), a fitted VAR model (:class:`Var`),
linear mixtures (:func:`mixture`), the recording played backwards — are *not* trained on:
on 4 s epochs a linear model cannot tell them from the real thing without rejecting real
EEG too (``benchmarks/forgeries.py`` measures them; the challenge–response score is the
layer that stops them, see the README's threat model).

Every sample carries its *group* (the recording it derives from) so that thresholds are
chosen by cross-validation across recordings, never within one file.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from mindprint.core.errors import ConfigurationError

logger = logging.getLogger(__name__)

__all__ = [
    "Recording",
    "Var",
    "build_recordings",
    "channel_shuffle",
    "coloured_noise",
    "mixture",
    "phase_surrogate",
    "same_phase_surrogate",
    "synthetic_board",
]


@dataclass(frozen=True, slots=True)
class Recording:
    """One source of windows: data in volts, rate, label (1 = live human), group, class."""

    name: str
    data: NDArray[np.float64]
    sfreq: float
    label: int
    group: str
    kind: str


def phase_surrogate(x: NDArray[np.float64], rng: np.random.Generator) -> NDArray[np.float64]:
    """Same amplitude spectrum per channel, independent random phases."""
    spectrum = np.fft.rfft(x, axis=1)
    phases = np.exp(1j * rng.uniform(0, 2 * np.pi, spectrum.shape))
    phases[:, 0] = 1.0
    if x.shape[1] % 2 == 0:
        phases[:, -1] = 1.0
    return np.fft.irfft(spectrum * phases, x.shape[1], axis=1)


def same_phase_surrogate(x: NDArray[np.float64], rng: np.random.Generator) -> NDArray[np.float64]:
    """Same amplitude spectrum per channel, the *same* random phases on every channel
    (keeps the cross-spectra: a linear Gaussian copy of the recording)."""
    spectrum = np.fft.rfft(x, axis=1)
    phases = np.exp(1j * rng.uniform(0, 2 * np.pi, spectrum.shape[1]))
    phases[0] = 1.0
    if x.shape[1] % 2 == 0:
        phases[-1] = 1.0
    return np.fft.irfft(spectrum * phases[None, :], x.shape[1], axis=1)


def mixture(x: NDArray[np.float64], rng: np.random.Generator) -> NDArray[np.float64]:
    """A random linear mixture of the recording's channels (a forger's cheap "new" EEG)."""
    mixing = rng.normal(size=(x.shape[0], x.shape[0]))
    mixing /= np.linalg.norm(mixing, axis=1, keepdims=True)
    return mixing @ (x - x.mean(axis=1, keepdims=True))


@dataclass
class Var:
    """A VAR(p) fitted by least squares on a recording (channels demeaned), simulated with
    Gaussian innovations or with its own residuals resampled (non-Gaussian innovations)."""

    coef: NDArray[np.float64]  # (p, n, n)
    residuals: NDArray[np.float64]  # (n, t)
    mean: NDArray[np.float64]

    @classmethod
    def fit(cls, x: NDArray[np.float64], p: int = 8) -> Var:
        mean = x.mean(axis=1, keepdims=True)
        y = (x - mean).T  # (t, n)
        lagged = np.hstack([y[p - k - 1 : len(y) - k - 1] for k in range(p)])  # (t-p, n*p)
        target = y[p:]
        beta, *_ = np.linalg.lstsq(lagged, target, rcond=None)  # (n*p, n)
        n = x.shape[0]
        coef = beta.reshape(p, n, n).transpose(0, 2, 1)
        return cls(coef, (target - lagged @ beta).T, mean)

    def simulate(self, n_times: int, rng: np.random.Generator, *, bootstrap: bool) -> NDArray[np.float64]:
        p, n, _ = self.coef.shape
        burn = 500
        if bootstrap:
            noise = self.residuals[:, rng.integers(0, self.residuals.shape[1], n_times + burn)]
        else:
            cov = np.cov(self.residuals)
            noise = np.linalg.cholesky(cov + 1e-30 * np.eye(n)) @ rng.normal(size=(n, n_times + burn))
        stacked = np.hstack(list(self.coef))  # (n, n*p): [A1 A2 ... Ap]
        out = np.zeros((n, n_times + burn))
        for t in range(p, n_times + burn):
            out[:, t] = stacked @ out[:, t - p : t][:, ::-1].T.reshape(-1) + noise[:, t]
        return out[:, burn:] + self.mean


def channel_shuffle(x: NDArray[np.float64], sfreq: float, rng: np.random.Generator) -> NDArray[np.float64]:
    """Each channel circularly shifted by its own random offset (at least 2 s)."""
    n = x.shape[1]
    low = int(2 * sfreq)
    return np.stack([np.roll(channel, int(rng.integers(low, max(low + 1, n - low)))) for channel in x])


def coloured_noise(
    n_channels: int, n_times: int, sfreq: float, exponent: float, rng: np.random.Generator
) -> NDArray[np.float64]:
    """1/f^exponent noise (20 µV RMS) plus a 10 µV alpha sine of random phase per channel."""
    freqs = np.fft.rfftfreq(n_times, 1 / sfreq)
    spectrum = rng.normal(size=(n_channels, freqs.size)) + 1j * rng.normal(size=(n_channels, freqs.size))
    spectrum[:, 1:] /= freqs[1:] ** (exponent / 2)
    spectrum[:, 0] = 0
    noise = np.fft.irfft(spectrum, n_times, axis=1)
    noise /= noise.std(axis=1, keepdims=True)
    t = np.arange(n_times) / sfreq
    return noise * 20e-6 + 10e-6 * np.sin(2 * np.pi * 10 * t + rng.uniform(0, 2 * np.pi, (n_channels, 1)))


def synthetic_board(seconds: float) -> tuple[NDArray[np.float64], float]:
    """Record BrainFlow's synthetic board live for ``seconds`` (EEG rows, volts)."""
    from brainflow.board_shim import BoardIds, BoardShim, BrainFlowInputParams

    board_id = BoardIds.SYNTHETIC_BOARD.value
    BoardShim.disable_board_logger()
    board = BoardShim(board_id, BrainFlowInputParams())
    board.prepare_session()
    try:
        board.start_stream()
        time.sleep(seconds)
        data = board.get_board_data()
        board.stop_stream()
    finally:
        board.release_session()
    return data[BoardShim.get_eeg_channels(board_id)] * 1e-6, float(BoardShim.get_sampling_rate(board_id))


def build_recordings(shared: Path, *, seed: int = 0, synthetic_seconds: float = 20.0) -> list[Recording]:
    """Every recording of the corpus (reads ``shared/data/eeg``)."""
    import mne

    from mindprint.device.openbci import read_openbci_gui_csv

    eeg_dir = shared / "data" / "eeg" if (shared / "data").exists() else shared
    cyton_path = eeg_dir / "openbci_cyton" / "OpenBCI_GUI-v6-blinks-jawClench-alpha.txt"
    eeglab_path = eeg_dir / "eeglab_attention" / "test_raw.set"
    generator_path = eeg_dir / "generator" / "test_generator_2.edf"
    biosemi_path = eeg_dir / "biosemi_bdf" / "test_bdf_stim_channel.bdf"
    elekta_path = eeg_dir / "mne_sample" / "sample_eeg_raw.fif.gz"
    emotiv_path = eeg_dir / "emotiv_phyaat" / "phyaat_emotiv_raw.fif.gz"
    for path in (cyton_path, eeglab_path, generator_path, biosemi_path, elekta_path, emotiv_path):
        if not path.exists():
            raise ConfigurationError(f"corpus file {path} not found")
    rng = np.random.default_rng(seed)
    cyton = read_openbci_gui_csv(cyton_path).data[1:9] * 1e-6
    eeglab = mne.io.read_raw_eeglab(eeglab_path, preload=True, verbose="error")
    generator = mne.io.read_raw_edf(generator_path, preload=True, verbose="error")
    biosemi = mne.io.read_raw_bdf(biosemi_path, preload=True, verbose="error").pick("eeg")
    elekta = mne.io.read_raw_fif(elekta_path, preload=True, verbose="error").pick("eeg")
    emotiv = mne.io.read_raw_fif(emotiv_path, preload=True, verbose="error").pick("eeg")
    reals = [
        Recording("cyton", cyton, 250.0, 1, "cyton", "real"),
        Recording("eeglab", eeglab.get_data(), float(eeglab.info["sfreq"]), 1, "eeglab", "real"),
        Recording("biosemi", biosemi.get_data(), float(biosemi.info["sfreq"]), 1, "biosemi", "real"),
        Recording("elekta", elekta.get_data(), float(elekta.info["sfreq"]), 1, "elekta", "real"),
        Recording("emotiv", emotiv.get_data(), float(emotiv.info["sfreq"]), 1, "emotiv", "real"),
    ]
    recordings = [
        *reals,
        Recording("generator", generator.get_data(), float(generator.info["sfreq"]), 0, "generator", "generator"),
    ]
    for base in reals:
        recordings += [
            Recording(
                f"surrogate-{base.name}", phase_surrogate(base.data, rng), base.sfreq, 0, base.group, "surrogate"
            ),
            Recording(
                f"shuffled-{base.name}",
                channel_shuffle(base.data, base.sfreq, rng),
                base.sfreq,
                0,
                base.group,
                "shuffled",
            ),
        ]
    for exponent, name in ((1.0, "pink"), (2.0, "brown")):
        recordings.append(
            Recording(name, coloured_noise(8, int(120 * 250), 250.0, exponent, rng), 250.0, 0, name, "noise")
        )
    if synthetic_seconds > 0:
        data, sfreq = synthetic_board(synthetic_seconds)
        recordings.append(Recording("synthetic-board", data, sfreq, 0, "synthetic", "synthetic"))
    return recordings
