"""Singing and music under the "speech": what a VAD and an ASR cannot tell apart from talking.

A VAD scores sung lyrics as speech and an ASR transcribes them, so a face over a song passes
the speech checks. What separates them is physical: a singer holds each syllable on a note,
a talker's pitch glides through every syllable (intonation moves it several semitones a
second) and rarely stays within a quarter-tone for a fifth of a second; and a song keeps
sounding between its lines (held accompaniment), where a talker's pauses are unpitched.

Per clip, from a pitch track (YIN's cumulative-mean-normalised difference, 40 ms windows every
10 ms, 70-800 Hz):
- `held_pitch`: the share of the voiced time inside the VAD's speech that lies on held notes,
  runs of at least HELD_S whose pitch stays within HELD_CENTS of the run's median;
- `pitched_gaps`: the share of the time outside the VAD's speech that is pitched (periodic):
  instruments, not breaths, noise or room tone. Reported, not judged alone: talk over a music
  bed is still talk.
The verdict rejects `singing` when `held_pitch` exceeds `verdict.max_held_pitch`.

Accompaniment: chords under a voice defeat a one-voice pitch track (the window is no longer
periodic at one lag), so a song with a band shows no held notes at all. What an accompaniment
does that a voice does not is stay: a chord holds its frequencies for beats and bars, a sung line
moves from note to note and pauses. (The window, percentile and ratio were chosen on
benchmarks/singing.py's made accompaniments, a held chord and a plucked G-Em-C-D, and checked on
a different one, tests/test_singing.py's A minor-F-C-G with tremolo; README has the figures.)
`without_accompaniment` takes, per frequency, the level exceeded 90% of the time over
ACCOMPANIMENT_S as the accompaniment and keeps only what stands FOREGROUND_RATIO above it (a binary mask on the short-time spectrum, as median-filter and
minimum-statistics separations do), and the held-note share is measured again on that
foreground. `held_pitch` is the larger of the two: the foreground also loses a voice's notes
where they coincide with the chord's own tones (a melody sits on chord tones), so a song without
accompaniment is judged best on the whole signal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal

HOP_S = 0.01
WINDOW_S = 0.04
F0_RANGE_HZ = (70.0, 800.0)
YIN_THRESHOLD = 0.15  # below this normalised difference a window is periodic (YIN's usual 0.1-0.2)
HELD_S = 0.2  # a held note lasts at least this long...
HELD_CENTS = 50.0  # ...within a quarter-tone either side of its median pitch
VIBRATO_S = 0.17  # pitch averaged over this before the test
ACCOMPANIMENT_S = 1.0  # a sound that holds a frequency for 90% of this is accompaniment...
ACCOMPANIMENT_PERCENTILE = 10  # ...its level: what the frequency exceeds 90% of the time
FOREGROUND_RATIO = 2.0  # the voice: time-frequency cells 2x (6 dB) above the accompaniment
SEPARATION_WINDOW = 1024  # 64 ms at 16 kHz: resolves chord tones a semitone apart above ~260 Hz
SEPARATION_LEVEL_HOP = 5  # the accompaniment's level is taken every 5th frame (50 ms), then held


def pitch_track(audio: np.ndarray, rate: int = 16000) -> np.ndarray:
    """(frames,) F0 in Hz every 10 ms, NaN where the window is not periodic or is silent."""
    hop, width = int(HOP_S * rate), int(WINDOW_S * rate)
    lo, hi = int(rate / F0_RANGE_HZ[1]), int(rate / F0_RANGE_HZ[0])
    x = np.asarray(audio, np.float64)
    if len(x) < width + hi:
        return np.zeros(0)
    starts = np.arange(0, len(x) - width - hi, hop)
    frames = np.stack([x[s : s + width + hi] for s in starts])  # each window and the lags it needs
    head = frames[:, :width]
    energy = (head**2).sum(1)
    # d(tau) = sum (x_t - x_{t+tau})^2 = E(head) + E(shifted) - 2 * cross(tau), the cross term by FFT
    size = 1 << int(np.ceil(np.log2(width + hi + width)))
    cross = np.fft.irfft(np.conj(np.fft.rfft(head, size)) * np.fft.rfft(frames, size), size)[:, : hi + 1]
    squares = np.cumsum(np.concatenate([np.zeros((len(frames), 1)), frames**2], axis=1), axis=1)
    shifted = squares[:, width : width + hi + 1] - squares[:, : hi + 1]
    diff = energy[:, None] + shifted - 2 * cross
    diff[:, 0] = 0
    cumulative = np.cumsum(diff[:, 1:], axis=1) / np.arange(1, hi + 1)
    normalised = np.ones_like(diff)
    normalised[:, 1:] = diff[:, 1:] / np.maximum(cumulative, 1e-12)
    f0 = np.full(len(frames), np.nan)
    loud = energy > 1e-4 * width * (np.max(np.abs(x)) ** 2 + 1e-12)
    for i in np.flatnonzero(loud):
        below = np.flatnonzero(normalised[i, lo : hi + 1] < YIN_THRESHOLD)
        if below.size == 0:
            continue
        tau = lo + below[0]
        while tau + 1 < hi and normalised[i, tau + 1] < normalised[i, tau]:  # down to the dip's bottom
            tau += 1
        a, b, c = normalised[i, tau - 1 : tau + 2]
        shift = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c > 0 else 0.0  # parabola through the dip
        f0[i] = rate / (tau + float(np.clip(shift, -0.5, 0.5)))
    return f0


def without_accompaniment(audio: np.ndarray, rate: int = 16000) -> np.ndarray:
    """The audio less what holds its frequencies over ACCOMPANIMENT_S (module docstring): an
    STFT (SEPARATION_WINDOW, 10 ms hop), the per-frequency low percentile over a sliding window
    (on a 50 ms grid, as a chord changes no faster), and a binary mask, inverted back."""
    x = np.asarray(audio, np.float64)
    hop = int(HOP_S * rate)
    if len(x) < SEPARATION_WINDOW:
        return x
    _, _, spectrum = signal.stft(x, rate, nperseg=SEPARATION_WINDOW, noverlap=SEPARATION_WINDOW - hop)
    level = np.abs(spectrum)
    coarse = level[:, ::SEPARATION_LEVEL_HOP]
    width = max(1, int(round(ACCOMPANIMENT_S / (HOP_S * SEPARATION_LEVEL_HOP))) | 1)
    floor = ndimage.percentile_filter(coarse, ACCOMPANIMENT_PERCENTILE, size=(1, width), mode="nearest")
    floor = np.repeat(floor, SEPARATION_LEVEL_HOP, axis=1)[:, : level.shape[1]]
    _, y = signal.istft(spectrum * (level > FOREGROUND_RATIO * floor), rate, nperseg=SEPARATION_WINDOW,
                        noverlap=SEPARATION_WINDOW - hop)  # fmt: skip
    return y[: len(x)]


def _smooth_runs(cents: np.ndarray, voiced: np.ndarray, width: int) -> np.ndarray:
    """A moving average of `cents` within each voiced run (never across unvoiced frames)."""
    out = cents.copy()
    edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]])))
    kernel = np.ones(width) / width
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        if b - a >= width:
            padded = np.pad(cents[a:b], width // 2, mode="edge")
            out[a:b] = np.convolve(padded, kernel, mode="valid")[: b - a]
    return out


def held_mask(f0: np.ndarray) -> np.ndarray:
    """(frames,) True on held notes: voiced runs of at least HELD_S whose pitch stays within
    HELD_CENTS of the run's median, grown greedily from each frame. The pitch is first averaged
    over VIBRATO_S, about one cycle of a singer's vibrato (5-7 Hz, up to a semitone wide), so a
    note sung with vibrato is still one note; a talker's glides are slower and do not cancel."""
    voiced = np.isfinite(f0)
    cents = _smooth_runs(1200 * np.log2(np.where(voiced, f0, 1.0) / 55.0), voiced, int(round(VIBRATO_S / HOP_S)))
    need = int(round(HELD_S / HOP_S))
    held = np.zeros(len(f0), bool)
    t = 0
    while t < len(f0):
        if not voiced[t]:
            t += 1
            continue
        end = t + 1
        while end < len(f0) and voiced[end] and np.abs(cents[end] - np.median(cents[t : end + 1])) <= HELD_CENTS:
            end += 1
        if end - t >= need and np.ptp(cents[t:end]) <= 2 * HELD_CENTS:
            held[t:end] = True
            t = end
        else:
            t += 1
    return held


@dataclass(frozen=True)
class Singing:
    held_pitch: float | None  # share of voiced speech time on held notes (the larger of whole and
    # foreground); None when nothing is voiced
    pitched_gaps: float | None  # share of non-speech time that is pitched; None without gaps

    def metrics(self) -> dict:
        return {
            "held_pitch": None if self.held_pitch is None else round(self.held_pitch, 3),
            "pitched_gaps": None if self.pitched_gaps is None else round(self.pitched_gaps, 3),
        }


def analyze_singing(audio: np.ndarray, regions: list[list[float]], rate: int = 16000) -> Singing:
    """Held notes inside the VAD's speech regions, on the whole signal and on its foreground,
    and pitch outside them (module docstring)."""
    f0 = pitch_track(audio, rate)
    times = np.arange(len(f0)) * HOP_S + WINDOW_S / 2
    speech = np.zeros(len(f0), bool)
    for start, end in regions:
        speech |= (times >= start) & (times < end)
    voiced = np.isfinite(f0)
    gaps = ~speech
    held = [held_share(f0, speech), held_share(pitch_track(without_accompaniment(audio, rate), rate), speech)]
    shares = [h for h in held if h is not None]
    return Singing(max(shares) if shares else None, float(voiced[gaps].mean()) if gaps.sum() >= 50 else None)


def held_share(f0: np.ndarray, speech: np.ndarray) -> float | None:
    """The share of the voiced frames inside `speech` that lie on held notes; None under 0.1 s voiced."""
    n = min(len(f0), len(speech))
    in_speech = np.isfinite(f0[:n]) & speech[:n]
    return float(held_mask(f0)[:n][in_speech].mean()) if in_speech.sum() >= 10 else None
