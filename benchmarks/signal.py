"""Edge signal pipeline benchmarks against SciPy, MNE and BrainFlow, in one run.

    .venv/bin/python benchmarks/signal.py             # one hour per device shape
    .venv/bin/python benchmarks/signal.py --minutes 5 # quicker

Per core (numba and BLAS pinned to one thread). Prints times, throughput and ratios
(peer time / our time: above 1 means we are faster), and peak extra memory as a
multiple of the input's size (tracemalloc, which sees NumPy's allocations).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder would come first on sys.path and benchmarks/signal.py
# would shadow the standard library's `signal`: put the repository root there instead.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import os

for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(variable, "1")

import argparse
import time
import tracemalloc
import warnings
from collections.abc import Callable

import mne
import numpy as np
from brainflow.data_filter import DataFilter, FilterTypes
from numpy.lib.stride_tricks import sliding_window_view
from scipy import signal as sps

from mindprint.signal.filters import StreamingFilter, design_filter, filter_offline, ringing_samples
from mindprint.signal.spectral import BANDS, band_powers, window_spectra

FLOOR_SAMPLES_PER_SECOND = 590e6  # arithmetic floor for a 5-biquad zero-phase filter, per core
DEVICES = {"cyton": (8, 250), "muse": (4, 256), "research": (32, 1000)}
L_FREQ, H_FREQ, LINE = 1.0, 45.0, 50.0


def timed(function: Callable[[], object], repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def peak_extra(function: Callable[[], object]) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    before, _ = tracemalloc.get_traced_memory()
    function()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return float(peak - before)


def synthetic(n_channels: int, sfreq: int, minutes: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * sfreq)
    t = np.arange(n) / sfreq
    data = rng.normal(0, 10e-6, (n_channels, n))
    data += 20e-6 * np.sin(2 * np.pi * 10 * t) + 5e-6 * np.sin(2 * np.pi * LINE * t) + 0.02
    return data


def brainflow_filter(data: np.ndarray, sfreq: int) -> np.ndarray:
    out = data.copy()
    for channel in range(out.shape[0]):
        row = np.ascontiguousarray(out[channel])
        DataFilter.perform_bandpass(row, sfreq, L_FREQ, H_FREQ, 4, FilterTypes.BUTTERWORTH_ZERO_PHASE.value, 0)
        DataFilter.perform_bandstop(row, sfreq, LINE - 1, LINE + 1, 2, FilterTypes.BUTTERWORTH_ZERO_PHASE.value, 0)
        out[channel] = row
    return out


def bench_filters(name: str, data: np.ndarray, sfreq: int, rows: list[str]) -> None:
    design = design_filter(sfreq, L_FREQ, H_FREQ, notch=LINE)
    pad = ringing_samples(design.sos)
    filter_offline(data[:, :2000], design)  # compile
    samples = data.size
    ours = timed(lambda: filter_offline(data, design), repeat=2)
    peers = {
        "scipy sosfiltfilt": lambda: sps.sosfiltfilt(design.sos, data, axis=1, padlen=pad),
        "mne IIR": lambda: mne.filter.filter_data(
            data,
            sfreq,
            L_FREQ,
            H_FREQ,
            method="iir",
            iir_params={"order": 4, "ftype": "butter", "output": "sos"},
            verbose="error",
        ),
        "mne FIR": lambda: mne.filter.notch_filter(
            mne.filter.filter_data(data, sfreq, L_FREQ, H_FREQ, verbose="error"), sfreq, LINE, verbose="error"
        ),
        "brainflow": lambda: brainflow_filter(data, sfreq),
    }
    rows.append(
        f"| {name} | filter zero-phase | ours | {ours:.3f} s | {samples / ours / 1e6:.0f} M samples/s "
        f"({samples / ours / FLOOR_SAMPLES_PER_SECOND:.0%} of floor) | 1.0× |"
    )
    print(rows[-1], flush=True)
    for peer, function in peers.items():
        seconds = timed(function)
        rows.append(
            f"| {name} | filter zero-phase | {peer} | {seconds:.3f} s | {samples / seconds / 1e6:.0f} M samples/s | {seconds / ours:.1f}× |"
        )
        print(rows[-1], flush=True)


def bench_band_powers(name: str, data: np.ndarray, sfreq: int, rows: list[str]) -> None:
    window = 2 * sfreq
    step = sfreq
    masks = [(lo, hi) for lo, hi in BANDS.values()]

    def ours() -> np.ndarray:
        return band_powers(window_spectra(data, sfreq, window_seconds=2.0, overlap=0.5, fmax=45.0))

    def scipy_welch() -> np.ndarray:
        frames = sliding_window_view(data, window, axis=-1)[:, ::step]
        freqs, psd = sps.welch(frames, fs=sfreq, nperseg=window)
        return np.stack([psd[..., (freqs >= lo) & (freqs < hi)].sum(-1) for lo, hi in masks], -1)

    def mne_welch() -> np.ndarray:
        frames = sliding_window_view(data, window, axis=-1)[:, ::step]
        psd, freqs = mne.time_frequency.psd_array_welch(frames, sfreq, fmin=1, fmax=45, n_fft=window, verbose="error")
        return np.stack([psd[..., (freqs >= lo) & (freqs < hi)].sum(-1) for lo, hi in masks], -1)

    def brainflow_bands() -> list[tuple[object, object]]:
        channels = list(range(data.shape[0]))
        out = []
        for start in range(0, data.shape[1] - window + 1, step):
            out.append(
                DataFilter.get_avg_band_powers(
                    np.ascontiguousarray(data[:, start : start + window]), channels, sfreq, False
                )
            )
        return out

    ours()
    ours_s = timed(ours, repeat=2)
    windows = (data.shape[1] - window) // step + 1
    rows.append(
        f"| {name} | band powers 2 s / 50 % | ours | {ours_s:.3f} s | {windows * data.shape[0] / ours_s / 1e3:.0f} k channel-windows/s | 1.0× |"
    )
    print(rows[-1], flush=True)
    for peer, function in {
        "scipy welch": scipy_welch,
        "mne psd_array_welch": mne_welch,
        "brainflow get_avg_band_powers": brainflow_bands,
    }.items():
        seconds = timed(function)
        rows.append(
            f"| {name} | band powers 2 s / 50 % | {peer} | {seconds:.3f} s | {windows * data.shape[0] / seconds / 1e3:.0f} k channel-windows/s | {seconds / ours_s:.1f}× |"
        )
        print(rows[-1], flush=True)


def bench_streaming(name: str, n_channels: int, sfreq: int, rows: list[str]) -> None:
    design = design_filter(sfreq, L_FREQ, H_FREQ, notch=LINE)
    rng = np.random.default_rng(1)
    for label, n in (("40 ms", round(0.04 * sfreq)), ("1 s", sfreq)):
        chunks = [rng.normal(0, 10e-6, (n_channels, n)) + 0.02 for _ in range(64)]
        ours = StreamingFilter(design, n_channels)
        zi = sps.sosfilt_zi(design.sos)[:, None, :] * chunks[0][:, 0][None, :, None]
        state = {"zi": zi}

        def step_ours(i: int) -> None:
            ours.process(chunks[i % 64])

        def step_scipy(i: int) -> None:
            _, state["zi"] = sps.sosfilt(design.sos, chunks[i % 64], axis=1, zi=state["zi"])

        results = {}
        for key, function in (("ours", step_ours), ("scipy sosfilt+zi", step_scipy)):
            for i in range(200):
                function(i)
            times = []
            for i in range(3000):
                start = time.perf_counter_ns()
                function(i)
                times.append(time.perf_counter_ns() - start)
            results[key] = float(np.median(times)) / 1e3
        rows.append(
            f"| {name} | streaming chunk {label} ({n} samples) | ours vs scipy sosfilt+zi | {results['ours']:.1f} µs vs "
            f"{results['scipy sosfilt+zi']:.1f} µs | median per chunk | {results['scipy sosfilt+zi'] / results['ours']:.1f}× |"
        )
        print(rows[-1], flush=True)


def bench_memory(data: np.ndarray, sfreq: int, rows: list[str]) -> None:
    design = design_filter(sfreq, L_FREQ, H_FREQ, notch=LINE)
    pad = ringing_samples(design.sos)
    size = data.nbytes
    window = 2 * sfreq
    measurements = {
        "ours filter_offline": lambda: filter_offline(data, design),
        "scipy sosfiltfilt": lambda: sps.sosfiltfilt(design.sos, data, axis=1, padlen=pad),
        "ours band powers": lambda: band_powers(window_spectra(data, sfreq)),
        "scipy welch (2 s windows)": lambda: sps.welch(
            sliding_window_view(data, window, axis=-1)[:, ::sfreq], fs=sfreq, nperseg=window
        ),
    }
    for label, function in measurements.items():
        extra = peak_extra(function)
        rows.append(
            f"| research | peak extra memory | {label} | {extra / 2**20:.0f} MiB | {extra / size:.2f}× the data ({size / 2**20:.0f} MiB) | |"
        )
        print(rows[-1], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="minutes of synthetic data per device shape")
    parser.add_argument("--skip-slow-peers", action="store_true", help="skip MNE FIR and BrainFlow on the research cap")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    rows = [
        "| device | task | implementation | time | throughput | ratio (peer / ours) |",
        "|---|---|---|---|---|---|",
    ]
    print("\n".join(rows), flush=True)
    for name, (n_channels, sfreq) in DEVICES.items():
        data = synthetic(n_channels, sfreq, args.minutes)
        bench_filters(name, data, sfreq, rows)
        bench_band_powers(name, data, sfreq, rows)
        if name != "research":
            bench_streaming(name, n_channels, sfreq, rows)
        else:
            bench_memory(data, sfreq, rows)
        del data
    print("\n" + "\n".join(rows))


if __name__ == "__main__":
    main()
