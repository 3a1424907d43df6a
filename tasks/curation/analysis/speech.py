"""Speech per clip through the speech worker (tasks/curation/analysis/speech_worker.py in .venv-speech).

whisperx pins its own torch, so it lives in its own virtual environment (README, the whisperx
decision) and runs as a long-lived worker process: started on first use, models loaded once,
one JSON line per clip. One worker per curation process, shared by its threads.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import selectors
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tasks.config import SpeechConfig
from tasks.models import load_once

ROOT = Path(__file__).resolve().parents[3]  # the checkout: tasks/curation/analysis/speech.py
WORKER = Path(__file__).with_name("speech_worker.py")


class SpeechUnavailable(RuntimeError):
    """The speech environment or its models cannot be started; the message says how to fix it."""


@dataclass(frozen=True)
class SpeechResult:
    speech_ratio: float
    language: str | None
    transcript: str
    words: list[dict] = field(default_factory=list)
    num_speakers: int = 0
    turns: list[list] = field(default_factory=list)  # [start_s, end_s, speaker]
    speech_regions: list[list] = field(default_factory=list)

    def metrics(self) -> dict:
        return {"speech_ratio": round(self.speech_ratio, 3), "num_speakers": self.num_speakers, "language": self.language}


def speech_python(config: SpeechConfig) -> Path:
    python = Path(os.environ.get("ANYTALKER_SPEECH_PYTHON") or config.python or ROOT / ".venv-speech" / "bin" / "python")
    if not python.exists():
        raise SpeechUnavailable(f"speech environment not found: {python}. Run ./setup.sh (it builds .venv-speech).")
    return python


class SpeechWorker:
    def __init__(self, config: SpeechConfig, device: str = "cpu") -> None:
        options = {
            "device": device,
            "asr_model": config.asr_model, "language": config.language, "align_model": config.align_model,
            "diarization_model": config.diarization_model, "speaker_threshold": config.speaker_threshold,
            "min_speaker_share": config.min_speaker_share,
            "threads": config.threads,
        }  # fmt: skip
        self._proc = subprocess.Popen(
            [str(speech_python(config)), str(WORKER), json.dumps(options)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=sys.stderr, text=True, bufsize=1,
        )  # fmt: skip
        ready = self._wait_ready(config.startup_timeout_s)
        if not ready.get("ready"):
            self.close()
            raise SpeechUnavailable(f"speech worker could not load its models: {ready.get('error')}")
        self._lock = threading.Lock()
        self._next = 0

    def _wait_ready(self, timeout_s: float) -> dict:
        """The worker's first line. A cold machine may take minutes to import torch and load the
        models, so this waits as long as the process lives (up to `timeout_s`), and fails only
        when it died, saying so, or when it is truly stuck."""
        deadline = time.monotonic() + timeout_s
        with selectors.DefaultSelector() as selector:
            selector.register(self._proc.stdout, selectors.EVENT_READ)
            while not selector.select(timeout=1.0):
                if self._proc.poll() is not None:
                    break
                if time.monotonic() > deadline:
                    self._proc.kill()
                    self._proc.wait()
                    return {"ready": False, "error": f"no answer after {timeout_s:.0f} s (speech.startup_timeout_s)"}
        line = self._proc.stdout.readline()
        if not line:
            code = self._exit_code()
            return {"ready": False, "error": f"the worker exited with code {code} while starting (its messages are above)"}
        return json.loads(line)

    def analyze(self, path: str | Path) -> SpeechResult:
        """Speech of an audio or video file (the worker decodes it)."""
        return self._ask({"path": str(path)}, str(path))

    def analyze_audio(self, audio: np.ndarray) -> SpeechResult:
        """Speech of 16 kHz mono samples already decoded (the curate flow decodes each clip once)."""
        payload = base64.b64encode(np.ascontiguousarray(audio, dtype=np.float32).tobytes()).decode()
        return self._ask({"audio_f32": payload}, "decoded audio")

    def _ask(self, job: dict, what: str) -> SpeechResult:
        with self._lock:
            self._next += 1
            try:
                self._proc.stdin.write(json.dumps({"id": self._next, **job}) + "\n")
                self._proc.stdin.flush()
            except OSError:  # the process is gone: its pipe is closed
                line = ""
            else:
                line = self._proc.stdout.readline()
        if not line:
            raise SpeechUnavailable(f"the speech worker exited (code {self._exit_code()})")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"speech analysis failed on {what}: {reply.get('error')}")
        return SpeechResult(
            speech_ratio=float(reply["speech_ratio"]), language=reply.get("language"), transcript=reply["transcript"],
            words=reply["words"], num_speakers=int(reply["num_speakers"]), turns=reply["turns"],
            speech_regions=reply["speech_regions"],
        )  # fmt: skip

    def close(self) -> None:
        """Ask the worker to finish (end of its input), and stop it if it does not within 30 s."""
        if self._proc.poll() is None:
            self._proc.stdin.close()
            self._exit_code()

    def _exit_code(self, timeout_s: float = 30.0) -> int:
        """The worker's exit code once it is ending (its input or output closed), after `timeout_s`
        at most: one that lingers is killed, so neither a failed call nor close() can hang."""
        try:
            return self._proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            return self._proc.wait()


def speech_worker(config: SpeechConfig, gpus: float = 0.0) -> SpeechWorker:
    """The process's worker for this config, started once (and stopped at exit). With `gpus`,
    whisperx, the VAD, the voice encoder and the aligner run on CUDA where .venv-speech has a
    CUDA torch and the worker sees a GPU; the worker says on stderr when it falls back to the CPU."""
    device = "cuda" if gpus > 0 else "cpu"

    def start() -> SpeechWorker:
        worker = SpeechWorker(config, device)
        atexit.register(worker.close)
        return worker

    return load_once("speech-worker", f"{config.model_dump_json()} on {device}", start)
