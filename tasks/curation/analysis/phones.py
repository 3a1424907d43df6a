"""Phone timing for the lip-sync estimate: the transcript force-aligned to the audio, and the
mouth opening those phones imply.

An audio envelope rises and falls once a syllable, so a mouth signal correlates with it almost
as well one syllable off: side peaks. Phones say more: bilabials (p, b, m) close the lips, open
vowels (aa, ae, ao) drop the jaw, so an expected-opening signal made from phone times has one
sharp match with the measured mouth. The alignment is pocketsphinx's (its English acoustic
model and CMUdict ship in the wheel; offline, BSD licence): the ASR's transcript is aligned to
the clip's own audio, so phone times are on the audio's clock and the offset against the mouth
is the audio-video offset. English only; other languages get no phone cue.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import numpy as np

RATE = 16000
FRAME_S = 0.01  # pocketsphinx's 100 frames/s

# Expected opening of the mouth (0 closed .. 1 wide) while a phone sounds, from the place and
# manner of articulation (ARPAbet, as CMUdict spells phones): bilabials closed, labiodentals
# nearly so, other consonants narrow, vowels by height (open vowels widest). Silence: at rest.
OPENING = {
    **dict.fromkeys(("M", "B", "P"), 0.0),
    **dict.fromkeys(("F", "V"), 0.15),
    **dict.fromkeys(("W", "UW"), 0.25),
    **dict.fromkeys(("S", "Z", "SH", "ZH", "CH", "JH", "TH", "DH", "T", "D", "N", "L", "R", "K", "G", "NG", "HH", "Y"), 0.3),
    **dict.fromkeys(("IY", "UH"), 0.35),
    **dict.fromkeys(("IH", "ER", "OW"), 0.45),
    **dict.fromkeys(("EY", "EH", "AH", "OY"), 0.6),
    **dict.fromkeys(("AE", "AO", "AW", "AY"), 0.8),
    "AA": 0.9,
    "SIL": 0.0,
}
MAX_DROPPED = 2  # words the aligner may leave out at the ends of a clip cut mid-word
MAX_UNKNOWN_SHARE = 0.2  # more of the transcript's words missing from the dictionary: no phone cue

_LOCAL = threading.local()  # one decoder per thread: a pocketsphinx Decoder is not thread-safe


@dataclass(frozen=True)
class Phone:
    name: str  # ARPAbet without stress, or SIL
    start_s: float
    end_s: float


def _decoder():
    if not hasattr(_LOCAL, "decoder"):
        from pocketsphinx import Decoder

        _LOCAL.decoder = Decoder(samprate=RATE, bestpath=False, loglevel="FATAL")
    return _LOCAL.decoder


def dictionary_words(transcript: str) -> tuple[list[str], int]:
    """The transcript's words that CMUdict knows (lower case, punctuation dropped), and how many
    words it did not know (numbers written as digits, names, ...)."""
    decoder = _decoder()
    known, unknown = [], 0
    for token in re.findall(r"[a-z']+|\d+", transcript.lower()):
        token = token.strip("'")
        if token and decoder.lookup_word(token) is not None:
            known.append(token)
        elif token:
            unknown += 1
    return known, unknown


def align_phones(audio: np.ndarray, transcript: str, rate: int = RATE) -> list[Phone] | None:
    """Phones of `transcript` with their times in `audio` (16 kHz mono float), or None when the
    transcript is empty or mostly unknown words, or the aligner finds no path. A clip cut from
    a longer recording often starts or ends inside a word that the ASR still wrote down, and a
    forced alignment must place every word, so on failure up to MAX_DROPPED words are dropped
    from the ends (the last first: a clip cut mid-word ends more often than it starts so)."""
    if rate != RATE:
        raise ValueError(f"phone alignment needs {RATE} Hz audio, got {rate}")
    words, unknown = dictionary_words(transcript)
    if not words or unknown > MAX_UNKNOWN_SHARE * (len(words) + unknown):
        return None
    pcm = (np.clip(np.asarray(audio, np.float32), -1, 1) * 32767).astype(np.int16).tobytes()
    for dropped in range(MAX_DROPPED + 1):
        for head in range(dropped + 1):
            kept = words[head : len(words) - (dropped - head)]
            if len(kept) >= max(1, len(words) // 2):
                phones = _align(pcm, kept)
                if phones:
                    return phones
    return None


def _align(pcm: bytes, words: list[str]) -> list[Phone] | None:
    decoder = _decoder()
    try:
        decoder.set_align_text(" ".join(words))
        for attempt in range(2):  # the first pass aligns words; set_alignment() makes the second align phones
            decoder.start_utt()
            decoder.process_raw(pcm, full_utt=True)
            decoder.end_utt()
            if attempt == 0:
                decoder.set_alignment()
        alignment = decoder.get_alignment()
    except RuntimeError:  # no alignment path through the audio
        return None
    if alignment is None:
        return None
    return [
        Phone(re.sub(r"\d", "", p.name), p.start * FRAME_S, (p.start + p.duration) * FRAME_S)
        for word in alignment
        for p in word
    ]


def expected_opening(phones: list[Phone], fps: float, n_frames: int) -> np.ndarray:
    """(n_frames,) the mouth opening the phones imply, per video frame: each phone's OPENING over
    its span at 100 frames/s, smoothed over 50 ms (the lips move between targets, they do not
    jump), then averaged within each video frame's window."""
    n = int(np.ceil(n_frames / fps / FRAME_S)) + 1
    track = np.zeros(n)
    for p in phones:
        track[int(round(p.start_s / FRAME_S)) : int(round(p.end_s / FRAME_S))] = OPENING.get(p.name, 0.3)
    kernel = np.exp(-0.5 * (np.arange(-10, 11) / 2.5) ** 2)
    track = np.convolve(track, kernel / kernel.sum(), mode="same")
    edges = np.round(np.arange(n_frames + 1) / fps / FRAME_S).astype(int)
    return np.array([track[a : max(b, a + 1)].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)])
