"""What the singing check sees on real talk, real singing and made music.

    .venv/bin/python benchmarks/singing.py [SHARED_DATA_DIR]

For each recording: the VAD's speech ratio (what the no_speech rule sees), the ASR's transcript
(does it take the sound for words?), `held_pitch` and `pitched_gaps` (tasks/curation/analysis/singing.py), and
what the rules do with those figures alone (no_speech, singing, or passes). Recordings:
- real talk: the ten talking clips, JFK, pyannote's telephone dialogue (../shared/data);
- real singing: MultiTalk's multi3 tracks (sung lyrics, a man's and a woman's part);
- music: LivePortrait d14 (instrumental, no voice);
- made here: a synthesizer chord bed (ffmpeg), and a band-like accompaniment (a chord
  progression G-Em-C-D, a chord every 2 s, plucked on every half second); espeak-ng singing a
  melody (one syllable a note, SSML prosody without pitch range) plain and with ffmpeg vibrato,
  the song over each accompaniment, and espeak-ng talk over each.
"held whole" and "held fg" are the held-note shares on the whole signal and on its foreground
(tasks/singing.without_accompaniment); `held_pitch` is the larger.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from tasks.config import CurateConfig
from tasks.curation.analysis.singing import analyze_singing, held_share, pitch_track, without_accompaniment
from tasks.curation.analysis.speech import speech_worker
from tasks.curation.clipmedia import read_audio

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MELODY = [("la", 196), ("la", 220), ("loo", 247), ("mee", 262), ("la", 247), ("daa", 220), ("mooo", 196), ("naa", 175),
          ("la", 196), ("la", 220), ("loo", 247), ("mee", 294), ("la", 262)]  # fmt: skip
BED = "aevalsrc=0.08*sin(2*PI*196*t)+0.06*sin(2*PI*247*t)+0.05*sin(2*PI*294*t):s=16000:d=9"
CHORDS = [(196, 247, 294), (165, 196, 247), (131, 165, 196), (147, 185, 220)]  # G Em C D, 2 s each


def progression() -> str:
    """ffmpeg's aevalsrc expression of the band-like accompaniment: each chord tone (and the
    root's octave) chosen by the time within the 8 s cycle, a pluck decaying every 0.5 s."""

    def tone(i: int) -> str:
        a, b, c, d = (chord[i] for chord in CHORDS)
        return f"if(lt(mod(t,8),2),{a},if(lt(mod(t,8),4),{b},if(lt(mod(t,8),6),{c},{d})))"

    voices = "+".join(f"{gain}*sin({k}*PI*{tone(i)}*t)" for gain, k, i in
                      ((0.07, 2, 0), (0.05, 2, 1), (0.04, 2, 2), (0.02, 4, 0)))  # fmt: skip
    return f"aevalsrc='(0.6+0.4*exp(-6*mod(t,0.5)))*({voices})':s=16000:d=9"


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True)


def made_media(tmp: Path) -> dict[str, Path]:
    notes = "".join(f'<prosody pitch="{hz}Hz" range="0" rate="x-slow">{word}</prosody> ' for word, hz in MELODY)
    subprocess.run(["espeak-ng", "-m", "-w", str(tmp / "voice.wav"), f"<speak>{notes}</speak>"], check=True)
    talk = "Today I want to talk about how we clean the data before training, and why every clip keeps its reason."
    subprocess.run(["espeak-ng", "-w", str(tmp / "talk.wav"), talk], check=True)
    ffmpeg("-f", "lavfi", "-i", BED, str(tmp / "bed.wav"))
    ffmpeg("-f", "lavfi", "-i", progression(), str(tmp / "band.wav"))
    ffmpeg("-i", str(tmp / "voice.wav"), "-af", "vibrato=f=5.5:d=0.1", str(tmp / "vibrato.wav"))
    mix = "[0:a]aresample=16000[v];[v][1:a]amix=inputs=2:duration=first:normalize=0"
    made = {"synth bed (no voice)": tmp / "bed.wav", "band (no voice)": tmp / "band.wav",
            "espeak-ng song": tmp / "voice.wav", "espeak-ng song, vibrato": tmp / "vibrato.wav",
            "espeak-ng talk": tmp / "talk.wav"}  # fmt: skip
    for what, voice in (("song", "vibrato.wav"), ("talk", "talk.wav")):
        for under in ("bed", "band"):
            name = f"{what} over {under}"
            out = tmp / f"{name}.wav"
            ffmpeg("-i", str(tmp / voice), "-i", str(tmp / f"{under}.wav"), "-filter_complex", mix, str(out))
            made[name] = out
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DIR)
    args = parser.parse_args()
    rules = CurateConfig().verdict
    videos, audio = args.data / "videos", args.data / "audio"
    groups = {
        "real talk": [*sorted(videos.glob("PC-AVS__*.mp4")), *sorted(videos.glob("video-retalking__*.mp4")),
                      videos / "LivePortrait__d11.mp4", audio / "whisper__jfk.flac", audio / "pyannote-audio__sample.wav"],
        "real singing": [audio / "MultiTalk__multi3_1-man.wav", audio / "MultiTalk__multi3_1-woman.wav"],
        "music": [videos / "LivePortrait__d14.mp4"],
    }  # fmt: skip
    worker = speech_worker(CurateConfig().speech)
    print(f"rules: no_speech below speech_ratio {rules.min_speech_ratio}, singing above held_pitch {rules.max_held_pitch}")
    print(f"{'group':13s} {'recording':34s} speech  whole  fg     held   gaps   rules       transcript")
    with tempfile.TemporaryDirectory() as tmp:
        made = made_media(Path(tmp))
        rows = [(g, p.stem, p) for g, paths in groups.items() for p in paths] + [("made", k, v) for k, v in made.items()]
        for group, name, path in rows:
            wave = read_audio(path)
            speech = worker.analyze_audio(wave)
            singing = analyze_singing(wave, speech.speech_regions)
            times = np.arange(len(wave) // 160) * 0.01 + 0.02
            inside = np.zeros(len(times), bool)
            for start, end in speech.speech_regions:
                inside |= (times >= start) & (times < end)
            whole, fg = (held_share(pitch_track(w), inside) for w in (wave, without_accompaniment(wave)))
            if speech.speech_ratio < rules.min_speech_ratio:
                verdict = "no_speech"
            elif singing.held_pitch is not None and singing.held_pitch > rules.max_held_pitch:
                verdict = "singing"
            else:
                verdict = "passes"
            fmt = lambda v: "  -  " if v is None else f"{v:.2f}"  # noqa: E731
            print(f"{group:13s} {name[:34]:34s} {speech.speech_ratio:5.2f}  {fmt(whole)}  {fmt(fg)}  {fmt(singing.held_pitch)}  "
                  f"{fmt(singing.pitched_gaps)}  {verdict:10s}  {speech.transcript[:40]!r}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
