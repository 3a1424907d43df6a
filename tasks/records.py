"""The records that flow between stages and into the catalog.

Every stage returns one of these or raises `Rejected`; the flow turns either into catalog rows,
so that every input ends `accepted` or `rejected` with a reason.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from enum import StrEnum


class Reason(StrEnum):
    """Why an input, source or clip was rejected. Values are what the catalog and report show."""

    # inputs
    UNSUPPORTED_SCHEME = "unsupported_scheme"
    OUTSIDE_ROOTS = "outside_roots"
    NOT_FOUND = "not_found"
    DOWNLOAD_FAILED = "download_failed"
    DUPLICATE = "duplicate"
    BAD_MANIFEST = "bad_manifest"  # a manifest file, or one of its rows, that cannot be read
    EMPTY_LISTING = "empty_listing"  # a playlist or channel that lists nothing to take
    OUTSIDE_WINDOW = "outside_window"  # uploaded before ingest.since
    DISK_BUDGET = "disk_budget"  # not downloaded: free space under ingest.min_free_gb (retried next run)
    FORGOTTEN = "forgotten"  # removed with `anytalker forget`; never taken again
    # sources
    EMPTY_FILE = "empty_file"
    UNREADABLE = "unreadable"
    TRUNCATED = "truncated"
    NO_VIDEO_STREAM = "no_video_stream"
    ZERO_LENGTH = "zero_length"
    ABSURD_SIZE = "absurd_size"
    NO_AUDIO = "no_audio"
    DECODE_ERROR = "decode_error"
    INTERNAL_ERROR = "internal_error"
    # clips
    TOO_SHORT = "too_short"
    ENCODE_ERROR = "encode_error"
    # analysis
    NO_FACE = "no_face"
    MULTI_FACE = "multi_face"
    FACE_TOO_SMALL = "face_too_small"
    FACE_LOST = "face_lost"
    PROFILE = "profile"
    NO_SPEECH = "no_speech"
    SINGING = "singing"  # the voice holds notes: singing or music, not talk
    MULTI_SPEAKER = "multi_speaker"
    NOT_THE_SPEAKER = "not_the_speaker"  # the voice is not the visible face's (Light-ASD)
    OUT_OF_SYNC = "out_of_sync"
    BLURRY = "blurry"
    TOO_DARK = "too_dark"
    SHAKY = "shaky"
    # stage 2 (real multi-person clips)
    UNSTABLE_FACES = "unstable_faces"
    TOO_MANY_FACES = "too_many_faces"
    SPEAKERS_UNTIED = "speakers_untied"


class Rejected(Exception):
    """Raised by a stage when its input cannot go on; carries the reason and a human detail."""

    def __init__(self, reason: Reason, detail: str = "", facts: dict | None = None) -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail
        self.facts = facts or {}  # what was learnt before the rejection (e.g. the probe), kept in the catalog


@dataclass(frozen=True)
class Rejection:
    """A `Rejected` turned into a value at a stage boundary (what Prefect tasks return)."""

    reason: Reason
    detail: str = ""
    facts: dict = field(default_factory=dict)

    @classmethod
    def of(cls, exc: Rejected) -> Rejection:
        return cls(exc.reason, exc.detail, exc.facts)


@dataclass(frozen=True)
class Section:
    """A time range of a video, in seconds on the original video's clock (a manifest's start/end)."""

    start_s: float
    end_s: float

    def label(self) -> str:
        return f"{self.start_s:g}-{self.end_s:g}"


@dataclass(frozen=True)
class InputItem:
    """One input as the user gave it, resolved to a local path or a URL, or refused.

    `input` is the item's identity in the catalog: a path, a URL, a playlist entry
    (`PAGE#item=K`), or a section (`URL#t=START,END`, the W3C media-fragment form).
    """

    input: str  # exactly as given, or as a listing or manifest row named it
    path: str | None = None  # local file to read
    url: str | None = None  # http(s) URL to download
    refused: Reason | None = None
    detail: str = ""
    section: Section | None = None  # only this range is fetched; clip times stay on the original clock
    playlist_item: int | None = None  # 1-based entry of the page at `url` (entries without their own URL)
    archive_key: str | None = None  # "extractor id", when a listing already told us
    origin: dict = field(default_factory=dict)  # where it was listed: playlist URL, manifest and line, face box


@dataclass(frozen=True)
class Acquired:
    """An input whose bytes are on local disk and hashed: the source id is their sha256."""

    input: str
    path: str
    source_id: str
    size_bytes: int
    section: Section | None = None  # the file is this range of the original video (its t=0 is section.start_s)
    provenance: dict = field(default_factory=dict)  # url, extractor, id, title, uploader, licence, ...
    downloaded: bool = False  # the file is ours (a download), not the user's


@dataclass(frozen=True)
class Probe:
    """What the container says, checked against the packets: the facts later stages rely on."""

    duration_s: float
    width: int  # after rotation
    height: int  # after rotation
    rotation: int  # degrees, as the display matrix says
    fps: float  # average frame rate
    vfr: bool  # frame intervals vary
    n_frames: int
    video_codec: str
    video_start_s: float
    has_audio: bool
    audio_codec: str | None
    audio_rate: int | None
    audio_channels: int | None
    format_name: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Shot:
    """A shot in source time (seconds of presentation time, as ffmpeg sees them)."""

    index: int
    start_s: float
    end_s: float

    @property
    def length_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class ClipPlan:
    """A piece of a shot that becomes one standard clip (or a too_short rejection)."""

    clip_id: str
    shot_index: int
    piece_index: int
    start_s: float  # on the original video's clock
    end_s: float
    rejected: Reason | None = None
    offset_s: float = 0.0  # the source file's t=0 on that clock (a section's start; 0 for whole videos)
    audio_shift_frames: int = 0  # the written clip's audio moves this many frames earlier (later if < 0):
    # a confident lip-sync offset found by analysis, applied by the cut itself (standardize._cut_graph)

    @property
    def length_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def file_start_s(self) -> float:
        """Start in the source file's own time, where ffmpeg cuts."""
        return self.start_s - self.offset_s

    @property
    def file_end_s(self) -> float:
        return self.end_s - self.offset_s


@dataclass(frozen=True)
class ClipResult:
    """A planned clip after standardization: its file, or why there is none."""

    plan: ClipPlan
    path: str | None
    n_frames: int = 0
    rejected: Reason | None = None
    detail: str = ""
    metrics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SourceResult:
    """Everything one source produced: its probe, its shots and its clips."""

    acquired: Acquired
    probe: Probe
    shots: list[Shot]
    clips: list[ClipResult]
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage, for the run summary


def clip_id_for(source_id: str, start_s: float, end_s: float, fps: float) -> str:
    """A clip id from content: the source bytes' hash, the time range and the output rate."""
    key = f"{source_id}:{start_s:.3f}:{end_s:.3f}:{fps:g}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]
