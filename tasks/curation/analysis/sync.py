"""Lip sync per clip: an audio-visual offset in frames and a confidence, as SyncNet reports them.

For every candidate offset within +-`search` frames a distance between the mouth and the audio
is computed; the offset is the one with the smallest distance and the confidence is the median
distance minus the smallest (SyncNet's definition). A positive offset means the audio lags the
picture by that many frames. Two backends share this:

- `syncnet`: the official SyncNet checkpoint format (tasks/curation/analysis/syncnet.py), for users who have it;
  distance = mean Euclidean distance between lip and audio embeddings at that offset.
- `estimate`: needs no weights. Distance = 1 - the mean Pearson correlation of pairs of per-frame
  signals, each high-passed by subtracting a 13-frame moving average: MediaPipe's jawOpen
  against the 300-1000 Hz and the 1000-3000 Hz speech envelopes, the inner-lip gap and the
  lip-contour motion against the 1000-3000 Hz envelope, and, for English speech, the mouth
  opening that the force-aligned phones imply (tasks/curation/analysis/phones.py). One pair alone is fooled by
  some faces (jawOpen alone misses every shift of video-retalking face_4, lip motion alone
  those of PC-AVS Input_00002); envelopes peak again a syllable away, phones (lips closed on
  p, b, m) need not. `benchmarks/sync_shift.py --select` makes the choice among
  MOUTH_SIGNALS x AUDIO_SIGNALS with each clip held out (figures in the README).

Both report SyncNet's confidence (median distance minus the smallest). The estimate also
reports `sync_z`, that confidence calibrated against null pairs (the mouth of one clip against
the audio of another; benchmarks/sync_shift.py): by chance, correlations over n frames swing by
about 1/sqrt(n), so a short clip reaches a fixed confidence by chance far more often than a long
one (measured: unrelated pairs under 6 s reach 0.3 in 14% of cases, those of 6 s or more in 0%).
sync_z = (confidence * sqrt(n) - NULL_MEDIAN) / NULL_SPREAD, the constants measured on those
null pairs, so that one `verdict.min_sync_z` means the same chance of a false "confident" at
any length.
"""

from __future__ import annotations

import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.curation.analysis.landmarks import Landmarks, fill_gaps
from tasks.curation.clipmedia import ClipMedia


@dataclass(frozen=True)
class SyncEstimate:
    offset_frames: int
    confidence: float
    distances: list[float]  # per offset, from -search to +search
    z: float | None = None  # the confidence calibrated against null pairs (estimate only)
    cues: tuple[str, ...] = ()  # the audio signals it used (bands, phones)

    def metrics(self) -> dict:
        out = {"sync_offset_frames": self.offset_frames, "sync_confidence": round(self.confidence, 4)}
        if self.cues:  # the weight-free estimate
            out["sync_z"] = None if self.z is None else round(self.z, 2)
            out["sync_phones"] = "phones" in self.cues
        return out


def _from_distances(distances: np.ndarray, search: int) -> SyncEstimate:
    best = int(np.nanargmin(distances))
    conf = float(np.nanmedian(distances) - distances[best])
    return SyncEstimate(best - search, conf, [round(float(d), 5) for d in distances])


def _highpass(x: np.ndarray, width: int = 13) -> np.ndarray:
    return x - np.convolve(x, np.ones(width) / width, mode="same")


def speech_band_envelope(audio: np.ndarray, rate: int, fps: float, n_frames: int) -> np.ndarray:
    """RMS of the 300-3000 Hz band (brick-wall FFT filter) in each video frame's window.

    Stage 2 ties voices to faces with it, and its thresholds were measured on it: `band_envelopes`
    over the same band correlates 0.99 with it, yet moves the news clip's tie correlations enough
    (0.19 against 0.14 becomes 0.26 against 0.13) to turn a speakers_untied rejection into a tie.
    """
    spectrum = np.fft.rfft(audio)
    freqs = np.fft.rfftfreq(len(audio), 1 / rate)
    band = np.fft.irfft(spectrum * ((freqs >= 300) & (freqs <= 3000)), n=len(audio))
    hop = rate / fps
    return np.array([np.sqrt(np.mean(band[int(i * hop) : int((i + 1) * hop)] ** 2) + 1e-12) for i in range(n_frames)])


BANDS_HZ = ((300, 1000), (1000, 3000))
MOUTH_SIGNALS = ("jaw_open", "mouth_open", "lip_motion")  # Landmarks fields
AUDIO_SIGNALS = ("300-1000", "1000-3000", "phones")  # the two bands' envelopes, the phones' expected opening
# (mouth signal, audio signal) pairs whose correlation curves are averaged. Without phones (not
# English, nothing aligned, `sync.phones` off) lip motion is paired with the low band instead:
# that set is the held-out choice of benchmarks/sync_shift.py --select among the six pairs
# without phones (9 of 10 folds). With phones, the phone pair takes its place: as fixed
# sets it finds 60 of 70 known shifts to 2 frames against 57, but the held-out choice among all
# nine pairs does no better than without phones (README, "Analysis: measured").
PAIRS = (("jaw_open", "300-1000"), ("jaw_open", "1000-3000"), ("lip_motion", "phones"))
PAIRS_WITHOUT_PHONES = (("jaw_open", "300-1000"), ("jaw_open", "1000-3000"), ("lip_motion", "300-1000"))


def pairs_in_use(curves: PairCurves) -> tuple[tuple[str, str], ...]:
    """PAIRS when the phone cue was computed, else PAIRS_WITHOUT_PHONES."""
    return PAIRS if any(cue == "phones" for _, cue in curves.curves) else PAIRS_WITHOUT_PHONES


def band_envelopes(audio: np.ndarray, rate: int, fps: float, n_frames: int, bands=BANDS_HZ) -> np.ndarray:
    """(len(bands), n_frames): the RMS amplitude of each band in each video frame's window (Hann, FFT)."""
    hop = round(rate / fps)
    windows = np.zeros((n_frames, hop), np.float64)
    usable = min(n_frames, len(audio) // hop)
    windows[:usable] = np.asarray(audio[: usable * hop], np.float64).reshape(usable, hop)
    if usable < n_frames and len(audio) > usable * hop:  # a last, partial window
        rest = audio[usable * hop : (usable + 1) * hop]
        windows[usable, : len(rest)] = rest
    power = np.abs(np.fft.rfft(windows * np.hanning(hop), 2 * hop)) ** 2
    freqs = np.fft.rfftfreq(2 * hop, 1 / rate)
    return np.stack([np.sqrt(power[:, (freqs >= lo) & (freqs <= hi)].mean(1) + 1e-12) for lo, hi in bands])


def _correlations(v: np.ndarray, a: np.ndarray, search: int) -> np.ndarray:
    """Pearson correlation of `v` and `a` at every lag; lag k pairs picture t with audio t + k."""
    n = len(v)
    out = np.full(2 * search + 1, np.nan)
    for k, lag in enumerate(range(-search, search + 1)):
        vs, as_ = (v[: n - lag], a[lag:]) if lag >= 0 else (v[-lag:], a[: n + lag])
        if len(vs) > 10 and vs.std() > 0 and as_.std() > 0:
            out[k] = float(np.corrcoef(vs, as_)[0, 1])
    return out


def audio_signals(media: ClipMedia, phones=None) -> dict[str, np.ndarray]:
    """The audio side of the pairs, per video frame and high-passed: both bands' envelopes, and
    the phones' expected mouth opening when the speech was aligned (tasks/curation/analysis/phones.py)."""
    from tasks.curation.analysis.phones import expected_opening

    n = len(media.frames)
    bands = band_envelopes(media.audio, media.rate, media.fps, n)
    signals = {name: _highpass(band) for name, band in zip(AUDIO_SIGNALS, bands, strict=False)}
    if phones:
        signals["phones"] = _highpass(expected_opening(phones, media.fps, n))
    return signals


@dataclass(frozen=True)
class PairCurves:
    """Each pair's correlation over lags -search..search, and the number of frames behind them."""

    curves: dict[tuple[str, str], np.ndarray]
    n_frames: int


def pair_correlations(media: ClipMedia, landmarks: Landmarks, search: int = 15, pairs=PAIRS + PAIRS_WITHOUT_PHONES,
                      phones=None) -> PairCurves:  # fmt: skip
    """The pairs' curves; pairs whose mouth signal is mostly missing, or whose audio signal is
    absent (no phones), are left out."""
    n = len(media.frames)
    audio = audio_signals(media, phones)
    curves = {}
    for signal, cue in pairs:
        values = getattr(landmarks, signal)
        if cue in audio and np.isfinite(values).sum() > n // 2:
            curve = _correlations(_highpass(fill_gaps(values.astype(np.float64))), audio[cue], search)
            if not np.isnan(curve).all():
                curves[(signal, cue)] = curve
    return PairCurves(curves, n)


# Null pairs (the mouth of each talking clip of ../shared/data against every other clip's audio,
# 90 pairs, 2.4-10 s): median and spread (half the 16th-84th percentile range) of
# confidence * sqrt(frames) with PAIRS / PAIRS_WITHOUT_PHONES; benchmarks/sync_shift.py prints
# them, and checks them with each clip's pairs held out.
NULL_MEDIAN = 2.04
NULL_SPREAD = 0.68


def calibrated_z(confidence: float, n_frames: int) -> float:
    """The confidence in null spreads above the null median, at the clip's length."""
    return float((confidence * np.sqrt(n_frames) - NULL_MEDIAN) / NULL_SPREAD)


def combine(pairs: PairCurves, search: int = 15, use=None) -> SyncEstimate:
    """The estimate from the mean of the pairs' curves (those in `use`, by default the pairs in
    use): distance = 1 - mean correlation; z calibrated against null pairs at the clip's length."""
    use = pairs_in_use(pairs) if use is None else use
    keys = [k for k in pairs.curves if k in use]
    if not keys:
        return SyncEstimate(0, 0.0, [])
    with np.errstate(all="ignore"):
        distances = 1.0 - np.nanmean([pairs.curves[k] for k in keys], axis=0)
    estimate = _from_distances(distances, search)
    z = calibrated_z(estimate.confidence, pairs.n_frames)
    cues = tuple(sorted({cue for _, cue in keys}))
    return SyncEstimate(estimate.offset_frames, estimate.confidence, estimate.distances, z, cues)


def estimate_offset(media: ClipMedia, landmarks: Landmarks, search: int = 15, phones=None) -> SyncEstimate:
    """The weight-free estimate (see the module docstring); `phones` from tasks.curation.analysis.phones.align_phones."""
    return combine(pair_correlations(media, landmarks, search, phones=phones), search)


def syncnet_offset(model, media: ClipMedia, boxes: np.ndarray, search: int = 15, batch: int = 32) -> SyncEstimate:
    """SyncNet's own evaluation: embeddings per frame, mean distance at each offset."""
    import cv2
    import torch
    from python_speech_features import mfcc

    n = len(media.frames)
    crops = np.zeros((n, 224, 224, 3), np.float32)
    for t in range(n):
        box = boxes[t] if not np.isnan(boxes[t, 0]) else np.nanmedian(boxes, axis=0)
        x0, y0, x1, y1 = (box / media.scale).astype(int)
        side = max(x1 - x0, y1 - y0)
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        pad = cv2.copyMakeBorder(media.frames[t], side, side, side, side, cv2.BORDER_CONSTANT)
        crop = pad[cy + side - side // 2 : cy + side + side // 2, cx + side - side // 2 : cx + side + side // 2]
        crops[t] = cv2.resize(crop, (224, 224))[..., ::-1]  # SyncNet was trained on BGR
    features = mfcc(media.audio, media.rate).T.astype(np.float32)  # (13, 100 per second)
    usable = min(n - 4, (features.shape[1] - 20) // 4)
    if usable < 2 * search + 2:
        return SyncEstimate(0, 0.0, [])
    lips, auds = [], []
    with torch.inference_mode():
        for s in range(0, usable, batch):
            idx = range(s, min(usable, s + batch))
            video = np.stack([crops[i : i + 5] for i in idx]).transpose(0, 4, 1, 2, 3)
            audio = np.stack([features[:, 4 * i : 4 * i + 20] for i in idx])[:, None]
            lips.append(model.forward_lip(torch.from_numpy(video)))
            auds.append(model.forward_audio(torch.from_numpy(audio)))
    lip, aud = torch.cat(lips), torch.cat(auds)
    distances = np.full(2 * search + 1, np.nan)
    for k, lag in enumerate(range(-search, search + 1)):
        lo, hi = max(0, -lag), min(usable, usable - lag)
        distances[k] = float(torch.nn.functional.pairwise_distance(lip[lo:hi], aud[lo + lag : hi + lag]).mean())
    return _from_distances(distances, search)


def shift_audio(clip: Path, audio: np.ndarray, rate: int, offset_frames: int, fps: float) -> None:
    """Re-mux `clip` with its audio moved earlier by `offset_frames` (later if negative), same length.

    The video stream is copied; the new file replaces the old one only when complete.
    """
    shift = round(offset_frames / fps * rate)
    moved = np.zeros_like(audio)
    if shift >= 0:
        moved[: len(audio) - shift] = audio[shift:]
    else:
        moved[-shift:] = audio[: len(audio) + shift]
    with tempfile.TemporaryDirectory(dir=clip.parent) as tmp:
        wav = Path(tmp) / "a.wav"
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes((np.clip(moved, -1, 1) * 32767).astype(np.int16).tobytes())
        out = Path(tmp) / "clip.mp4"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(clip), "-i", str(wav), "-map", "0:v", "-map", "1:a",
             "-c:v", "copy", "-c:a", "aac", "-b:a", "64k", "-ar", str(rate), "-ac", "1", "-movflags", "+faststart",
             str(out)],
            check=True,
        )  # fmt: skip
        out.replace(clip)
