"""Word times two ways, in one run: a second faster-whisper pass with word timestamps (what the
speech worker did before), and the transcript's tokens aligned on the encoder output that the
batched ASR already computed (what it does now).

Run in the speech environment (the speech worker's own imports, nothing of the project's):

    .venv-speech/bin/python benchmarks/speech_words.py [--shared ../shared]

Prints, per clip of ../shared/data with speech: the seconds of each way, whether the words spell
the transcript, and the median start difference of the words both ways agree on; then, on
pyannote's sample with its reference transcript (.stm: who said what, when), the share of the
reference words whose time each way puts inside their reference utterance; then the speech
stage's time (VAD, ASR, words, speakers) before and after.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tasks" / "curation" / "analysis"), str(ROOT)]
from speech_worker import SpeechModels, speech_regions  # noqa: E402  (the worker's module, run as it runs)

from tasks.evaluation.word_times import inside_utterances, letters, stm_words  # noqa: E402  (pure Python)

SLACK_S = 0.25  # a word counts as inside its utterance with this much slack either side


def second_pass_words(models: SpeechModels, audio: np.ndarray, language: str) -> list[dict]:
    """The words as the worker found them before: faster-whisper decoding the clip again, sequentially, with word timestamps."""
    found, _ = models.asr.model.transcribe(audio, language=language, word_timestamps=True, vad_filter=False)
    return [{"word": w.word.strip(), "start": round(w.start, 3), "end": round(w.end, 3)} for s in found for w in s.words]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("ANYTALKER_SHARED", "../shared")))
    parser.add_argument("--threads", type=int, default=1, help="threads of the models (the worker's speech.threads)")
    args = parser.parse_args()
    import whisperx

    data = args.shared / "data"
    files = sorted((data / "videos").glob("*.mp4")) + [data / "audio" / "whisper__jfk.flac",
                                                       data / "audio" / "pyannote-audio__sample.wav"]  # fmt: skip
    models = SpeechModels({"threads": args.threads})
    stage = {"vad": 0.0, "asr": 0.0, "words before": 0.0, "words now": 0.0, "speakers": 0.0}
    for path in files:
        try:
            audio = whisperx.load_audio(str(path))
        except RuntimeError:  # a video without sound (the goldeneye sample): nothing to time
            continue
        if audio.size == 0:
            continue
        started = time.perf_counter()
        scores = models.vad(audio)
        regions = speech_regions(scores)
        stage["vad"] += time.perf_counter() - started
        if sum(e - s for s, e in regions) < 0.3:  # the worker stops here too
            continue
        started = time.perf_counter()
        asr, batches = models.transcribe(audio, scores)
        stage["asr"] += time.perf_counter() - started
        transcript = " ".join(s["text"].strip() for s in asr["segments"])
        started = time.perf_counter()
        before = second_pass_words(models, audio, "en")
        took_before = time.perf_counter() - started
        started = time.perf_counter()
        now = models.words(audio, asr["segments"], "en", batches)
        took_now = time.perf_counter() - started
        started = time.perf_counter()
        models.speakers(audio, regions)
        stage["speakers"] += time.perf_counter() - started
        stage["words before"] += took_before
        stage["words now"] += took_now
        spelled = letters(transcript) == "".join(letters(w["word"]) for w in now)
        matcher = difflib.SequenceMatcher(a=[letters(w["word"]) for w in before], b=[letters(w["word"]) for w in now],
                                          autojunk=False)  # fmt: skip
        moved = [abs(before[i]["start"] - now[j]["start"]) for b in matcher.get_matching_blocks()
                 for i, j in zip(range(b.a, b.a + b.size), range(b.b, b.b + b.size), strict=True)]  # fmt: skip
        print(f"{path.stem[:34]:34s} {len(audio) / 16000:5.1f} s: second pass {took_before:5.2f} s, aligned {took_now:5.3f} s "
              f"({took_before / took_now:4.1f}x); words {len(before):3d} / {len(now):3d}, now spell the transcript: {spelled}; "
              f"{len(moved)} in both, start moved by median {np.median(moved) if moved else float('nan'):.3f} s")  # fmt: skip
        if path.suffix == ".wav" and (stm := path.with_suffix(".stm")).is_file():
            reference = stm_words(stm)
            in_before, n_before = inside_utterances(before, reference, SLACK_S)
            in_now, n_now = inside_utterances(now, reference, SLACK_S)
            print(f"  against the reference transcript {stm.name}: inside their utterance (+-{SLACK_S} s): "
                  f"second pass {in_before / n_before:.2f} of {n_before} words, aligned {in_now / n_now:.2f} of {n_now}")  # fmt: skip
    common = stage["vad"] + stage["asr"] + stage["speakers"]
    print(f"words: second pass {stage['words before']:.1f} s, aligned {stage['words now']:.2f} s: "
          f"{stage['words before'] / stage['words now']:.0f}x faster")
    print(f"speech stage (VAD {stage['vad']:.1f} s, ASR {stage['asr']:.1f} s, speakers {stage['speakers']:.1f} s, words): "
          f"before {common + stage['words before']:.1f} s, now {common + stage['words now']:.1f} s: "
          f"{(common + stage['words before']) / (common + stage['words now']):.2f}x faster")  # fmt: skip


if __name__ == "__main__":
    main()
