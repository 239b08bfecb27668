"""Speaker identification with diagonal-covariance GMMs over MFCC frames.

Run: python examples/speech_features.py [--speakers 4] [--train-seconds 30] [--out data]

The classic text-independent speaker model (Reynolds & Rose, 1995): every
10 ms frame of speech becomes a vector of mel-frequency cepstral coefficients
(MFCCs) plus their deltas; a speaker is a mixture of diagonal Gaussians over
those frames; an unknown utterance goes to the speaker whose mixture gives
its frames the highest mean log-likelihood.

No audio files or speech libraries are needed: each "speaker" is synthesised
on the fly as a glottal pulse train at the speaker's pitch, shaped by vowel
formants scaled to the speaker's vocal tract, and the MFCCs are computed
here with NumPy and SciPy (framing, Hamming window, power spectrum, mel
filter bank, log, DCT). The frames of all speakers are written to Zarr, as a
real corpus of 10^8 frames would be, and a background model over all of them
is fitted from there.
"""

import argparse
import time
from pathlib import Path

import dask.array as da
import numpy as np
from scipy.fft import dct, rfft
from scipy.signal import lfilter

from daskgmm import GaussianMixture, open_array

RATE = 16_000
FRAME, HOP, N_FFT, N_MELS, N_CEPS = 400, 160, 512, 26, 13  # 25 ms frames every 10 ms
# F1, F2, F3 (Hz) of five vowels for an adult male tract; speakers scale them
VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480], [570, 840, 2410]])


# ---------------------------------------------------------------- synthetic speech
def resonator(frequency, bandwidth):
    """Two-pole filter coefficients of one formant."""
    radius = np.exp(-np.pi * bandwidth / RATE)
    theta = 2 * np.pi * frequency / RATE
    return [1 - radius], [1, -2 * radius * np.cos(theta), radius**2]


def synthesise(speaker, seconds, rng):
    """Speech-like audio: random vowels, each a pulse train at the speaker's pitch through formant filters."""
    pieces = []
    while sum(len(p) for p in pieces) < seconds * RATE:
        n = int(rng.uniform(0.08, 0.3) * RATE)
        pitch = speaker["pitch"] * (1 + 0.05 * rng.standard_normal())
        period = (RATE / pitch) * (1 + 0.01 * rng.standard_normal(int(n * pitch / RATE) + 2))
        source = np.zeros(n)
        source[np.cumsum(period).astype(int)[np.cumsum(period) < n]] = 1.0
        voice = source + 0.02 * rng.standard_normal(n)  # breath noise
        for formant, bandwidth in zip(VOWELS[rng.integers(len(VOWELS))] * speaker["tract"], (80, 100, 120)):
            voice = lfilter(*resonator(formant, bandwidth), voice)
        pieces.append(voice * np.hanning(n) * rng.uniform(0.5, 1.5))
        pieces.append(0.002 * rng.standard_normal(int(rng.uniform(0.02, 0.1) * RATE)))  # pause
    return np.concatenate(pieces)


# ---------------------------------------------------------------- features
def mel_filter_bank():
    """N_MELS triangular filters, equally spaced on the mel scale, over the rfft bins."""
    def mel(hz):
        return 2595 * np.log10(1 + hz / 700)

    edges_hz = 700 * (10 ** (np.linspace(mel(0), mel(RATE / 2), N_MELS + 2) / 2595) - 1)
    bins = np.fft.rfftfreq(N_FFT, 1 / RATE)
    low, centre, high = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    return np.maximum(0, np.minimum((bins - low) / (centre - low), (high - bins) / (high - centre)))


def mfcc(audio):
    """(frames, 2 * N_CEPS): MFCCs and their deltas."""
    emphasised = np.append(audio[0], audio[1:] - 0.97 * audio[:-1])
    n_frames = 1 + (len(emphasised) - FRAME) // HOP
    index = np.arange(FRAME)[None, :] + HOP * np.arange(n_frames)[:, None]
    frames = emphasised[index] * np.hamming(FRAME)
    power = np.abs(rfft(frames, N_FFT)) ** 2 / N_FFT
    energies = np.log(power @ mel_filter_bank().T + 1e-10)
    ceps = dct(energies, type=2, norm="ortho", axis=1)[:, :N_CEPS]
    deltas = np.gradient(ceps, axis=0)
    return np.hstack([ceps, deltas])


# ---------------------------------------------------------------- the speaker models
def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--speakers", type=int, default=4)
    parser.add_argument("--train-seconds", type=float, default=30)
    parser.add_argument("--tests", type=int, default=8, help="test utterances of 2 s per speaker")
    parser.add_argument("--components", type=int, default=16)
    parser.add_argument("--out", default="data")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)

    speakers = [dict(pitch=rng.uniform(90, 240), tract=rng.uniform(0.85, 1.2)) for _ in range(args.speakers)]
    train = [mfcc(synthesise(s, args.train_seconds, rng)) for s in speakers]
    print(f"{args.speakers} speakers, {args.train_seconds:.0f} s of training speech each: "
          f"{sum(len(f) for f in train):,} frames of {train[0].shape[1]} features")

    # every speaker's frames in one Zarr store, as a corpus would be kept; a background model over all
    store = folder / "speech_frames.zarr"
    da.from_array(np.vstack(train).astype(np.float32), chunks=(4096, -1)).to_zarr(str(store), overwrite=True)
    frames = open_array(store)
    started = time.perf_counter()
    background = GaussianMixture(args.components, covariance_type="diag", random_state=0).fit(frames)
    print(f"background model (K={args.components}, diag) on {frames.shape[0]:,} frames from Zarr: "
          f"{background.n_iter_} iterations in {time.perf_counter() - started:.1f} s, "
          f"mean log-likelihood {background.lower_bound_:.2f}")

    models = [GaussianMixture(args.components, covariance_type="diag", random_state=0).fit(f) for f in train]

    confusion = np.zeros((args.speakers, args.speakers), dtype=int)
    for truth, speaker in enumerate(speakers):
        for _ in range(args.tests):
            utterance = mfcc(synthesise(speaker, 2.0, rng))
            # mean log-likelihood ratio to the background model, as speaker verification scores it
            scores = [model.score(utterance) - background.score(utterance) for model in models]
            confusion[truth, int(np.argmax(scores))] += 1
    accuracy = np.trace(confusion) / confusion.sum()
    print("confusion (rows: true speaker, columns: identified):")
    print(confusion)
    print(f"identification accuracy: {accuracy:.1%} on {confusion.sum()} utterances of 2 s")


if __name__ == "__main__":
    main()
