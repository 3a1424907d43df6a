"""Stage-1 samples: N-identity composites of accepted single-person clips, and single-person
samples, in the shard contract (shards/schema.py; DESIGN.md section 5).

A composite places N clips of different people left to right, each cropped around its face
track to the same cell (AnyTalker: 416x480, 81 frames at 24 fps). Plans and rendering count
source frames (the clips' rate) over the span a sample covers; `tasks.dataset.retime` then takes the
sample to `compose.fps`. Its timeline is a turn plan: in each
turn one identity speaks (or, in a share of turns, everyone does) and the others listen. A
speaker's cell plays a continuous run of its clip with the matching audio; a listener's audio
track is zero and its cell loops a silent stretch of its clip forward and back (or, when the
clip has none, its first frames, as AnyTalker does), so a moving mouth always has sound.
Audio track i belongs to the identity in place i, counted from the left.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

import av
import cv2
import numpy as np

from shards.schema import Sample
from tasks.config import ComposeConfig
from tasks.curation.clipmedia import read_audio
from tasks.dataset.clip_library import LibraryClip
from tasks.dataset.retime import retime, source_frames


@dataclass(frozen=True)
class Turn:
    start: int  # composite frame, inclusive
    end: int  # exclusive
    speakers: tuple[int, ...]  # places that speak in this turn


@dataclass(frozen=True)
class CompositePlan:
    key: str
    clip_ids: tuple[str, ...]  # left to right
    turns: tuple[Turn, ...]
    speak_starts: tuple[int, ...]  # first source frame of each place's speaking run


@dataclass(frozen=True)
class SinglePlan:
    key: str
    clip_id: str
    start: int  # first source frame


@dataclass(frozen=True)
class Crop:
    """A fixed window of a clip (clip pixels) with the cell's aspect ratio."""

    x0: float
    y0: float
    width: float
    height: float


def plan_turns(n: int, frames: int, rng: np.random.Generator, turn_frames: tuple[int, int], simultaneous: float) -> list[Turn]:
    """Turns covering [0, frames): lengths in `turn_frames`, no identity speaks two turns running,
    every identity gets a turn in each round (a random order per round)."""
    lo, hi = turn_frames
    turns: list[Turn] = []
    order: list[int] = []
    previous: int | None = None
    t = 0
    while t < frames:
        end = min(frames, t + int(rng.integers(lo, hi + 1)))
        if frames - end < lo:
            end = frames  # no stub at the end
        if n > 1 and rng.random() < simultaneous:
            speakers = tuple(range(n))
        else:
            if not order:
                order = [int(i) for i in rng.permutation(n)]
                if n > 1 and order[0] == previous:
                    order.append(order.pop(0))
            previous = order.pop(0)
            speakers = (previous,)
        turns.append(Turn(t, end, speakers))
        t = end
    return turns


def _key(prefix: str, *parts: object) -> str:
    return prefix + hashlib.sha1(repr(parts).encode()).hexdigest()[:16]


def _speaking_run_start(clip: LibraryClip, need: int, rng: np.random.Generator) -> int:
    """Where a run of `need` frames starts: the most voiced of a few random starts."""
    voiced = clip.speaking_frames().astype(np.int32)
    last = clip.n_frames - need
    candidates = {0, last, *(int(x) for x in rng.integers(0, last + 1, 6))}
    cumsum = np.concatenate([[0], np.cumsum(voiced)])
    return max(sorted(candidates), key=lambda s: cumsum[s + need] - cumsum[s])


def plan_composites(clips: list[LibraryClip], config: ComposeConfig, seed: int) -> list[CompositePlan]:
    """Groups of distinct identities, least-used clips first, each clip in at most `max_uses`.

    Deterministic for a seed and a clip list. Clips shorter than a sample are left out.
    """
    rng = np.random.default_rng(seed)
    usable = sorted((c for c in clips if c.n_frames >= span(c, config)), key=lambda c: c.clip_id)
    sizes = {n: w for n, w in sorted(config.identities.items()) if w > 0}
    uses: Counter[str] = Counter()
    seen: set[frozenset[str]] = set()
    plans: list[CompositePlan] = []
    misses = 0
    while sizes and (config.max_composites is None or len(plans) < config.max_composites) and misses < 20:
        ns = list(sizes)
        weights = np.array([sizes[n] for n in ns], float)
        n = int(rng.choice(ns, p=weights / weights.sum()))
        free = [c for c in usable if uses[c.clip_id] < config.max_uses]
        ties = rng.random(len(free))
        group: list[LibraryClip] = []
        for _, _, clip in sorted(zip([uses[c.clip_id] for c in free], ties, free, strict=True), key=lambda x: x[:2]):
            if clip.identity not in {g.identity for g in group}:
                group.append(clip)
            if len(group) == n:
                break
        if len(group) < n:
            del sizes[n]  # not enough distinct people left for this size
            continue
        members = frozenset(c.clip_id for c in group)
        if members in seen:
            misses += 1
            continue
        seen.add(members)
        group = [group[i] for i in rng.permutation(n)]  # place order is random, binding is left to right
        turns = plan_turns(n, span(group[0], config), rng, config.turn_frames, config.simultaneous_share)
        starts = []
        for i, clip in enumerate(group):
            need = sum(t.end - t.start for t in turns if i in t.speakers)
            starts.append(_speaking_run_start(clip, need, rng))
        ids = tuple(c.clip_id for c in group)
        plans.append(CompositePlan(_key("c", seed, ids, turns, starts), ids, tuple(turns), tuple(starts)))
        uses.update(ids)
    return plans


def span(clip: LibraryClip, config: ComposeConfig) -> int:
    """Source frames of `clip` that one sample (`frames` at `fps`) covers."""
    return source_frames(config.frames, clip.fps, config.fps)


def plan_singles(clips: list[LibraryClip], config: ComposeConfig) -> list[SinglePlan]:
    """Up to `single_windows` non-overlapping windows of each clip, spread over its length."""
    plans = []
    for clip in sorted(clips, key=lambda c: c.clip_id):
        need = span(clip, config)
        k = min(clip.n_frames // need, config.single_windows)
        if k == 0:
            continue
        gap = (clip.n_frames - k * need) // (k + 1)
        for w in range(k):
            start = gap + w * (need + gap)
            plans.append(SinglePlan(f"s{clip.clip_id}_{start:05d}", clip.clip_id, start))
    return plans


def face_crop_window(clip: LibraryClip, frames: np.ndarray, cell: tuple[int, int], face_scale: float) -> Crop:
    """A window of the cell's aspect around the face over `frames`: `face_scale` face heights
    tall when the frame allows, the face a little above the centre, kept inside the frame."""
    cw, ch = cell
    boxes = clip.boxes[frames]
    boxes = boxes[~np.isnan(boxes[:, 0])] if (~np.isnan(boxes[:, 0])).any() else clip.boxes[~np.isnan(clip.boxes[:, 0])]
    x0, y0, x1, y1 = (float(v) for v in np.median(boxes, axis=0))
    height = min(float(clip.height), (y1 - y0) * face_scale)
    width = height * cw / ch
    if width > clip.width:
        width, height = float(clip.width), clip.width * ch / cw
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = float(np.clip(cx - width / 2, 0, clip.width - width))
    top = float(np.clip(cy - 0.45 * height, 0, clip.height - height))
    return Crop(left, top, width, height)


def read_cells(path: str, indices: np.ndarray, crop: Crop, cell: tuple[int, int]) -> dict[int, np.ndarray]:
    """The needed frames of a clip, cropped and resized to the cell, decoded in one pass."""
    wanted = set(int(i) for i in indices)
    last = max(wanted)
    cells: dict[int, np.ndarray] = {}
    x0, y0 = int(round(crop.x0)), int(round(crop.y0))
    x1, y1 = x0 + int(round(crop.width)), y0 + int(round(crop.height))
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                image = frame.to_ndarray(format="rgb24")[y0:y1, x0:x1]
                cells[i] = cv2.resize(image, cell, interpolation=cv2.INTER_AREA if crop.width > cell[0] else cv2.INTER_CUBIC)
            if i >= last:
                break
    missing = wanted - set(cells)
    if missing:  # a clip shorter than its catalog row says: hold its last decoded frame
        tail = cells[max(cells)]
        cells.update({i: tail for i in missing})
    return cells


def map_boxes(boxes: np.ndarray, crop: Crop, cell: tuple[int, int], place: int) -> np.ndarray:
    """Clip-pixel boxes to composite pixels in `place`; clipped to the cell, NaN when outside it."""
    cw, ch = cell
    s = cw / crop.width
    out = np.empty_like(boxes, dtype=np.float32)
    out[:, [0, 2]] = (boxes[:, [0, 2]] - crop.x0) * s
    out[:, [1, 3]] = (boxes[:, [1, 3]] - crop.y0) * s
    out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, cw)
    out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, ch)
    empty = (out[:, 2] - out[:, 0] < 1) | (out[:, 3] - out[:, 1] < 1)
    out[empty] = np.nan
    out[:, [0, 2]] += place * cw
    return out


def _silent_stretch(clip: LibraryClip, min_frames: int) -> tuple[int, int]:
    """The longest run of frames without voice (start, length); the first frames when none is long enough."""
    voiced = clip.speaking_frames()
    best = (0, 0)
    start = None
    for i, v in enumerate([*voiced, True]):
        if not v and start is None:
            start = i
        elif v and start is not None:
            if i - start > best[1]:
                best = (start, i - start)
            start = None
    return best if best[1] >= min_frames else (0, min(min_frames, clip.n_frames))


def ping_pong(start: int, length: int, count: int) -> np.ndarray:
    """`count` indices going forward and back over [start, start + length)."""
    if length <= 1:
        return np.full(count, start)
    cycle = np.concatenate([np.arange(length), np.arange(length - 2, 0, -1)])
    return start + cycle[np.arange(count) % len(cycle)]


def face_crop(frame: np.ndarray, box: np.ndarray, size: int = 224) -> np.ndarray:
    """A square crop 1.3x around a box (black beyond the frame), for the face encoder."""
    if np.isnan(box[0]):
        return np.zeros((size, size, 3), np.uint8)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = int(1.3 * max(box[2] - box[0], box[3] - box[1])) + 2
    padded = cv2.copyMakeBorder(frame, side, side, side, side, cv2.BORDER_CONSTANT)
    x0, y0 = int(cx - side / 2) + side, int(cy - side / 2) + side
    return cv2.resize(padded[y0 : y0 + side, x0 : x0 + side], (size, size), interpolation=cv2.INTER_AREA)


def _words_in(clip: LibraryClip, src_start: int, src_end: int, at: int) -> list[dict]:
    """Words spoken in source frames [src_start, src_end), moved to composite frame `at`."""
    fps = clip.fps
    shift = (at - src_start) / fps
    return [
        {"word": w["word"], "start": round(w["start"] + shift, 3), "end": round(w["end"] + shift, 3)}
        for w in clip.words
        if "start" in w and src_start / fps <= w["start"] and w.get("end", w["start"]) <= src_end / fps
    ]


def render_composite(plan: CompositePlan, clips: dict[str, LibraryClip], config: ComposeConfig) -> Sample:
    """The composite's frames, audio tracks, boxes, face crops and meta, at `config.fps`."""
    cell = (config.cell_width, config.cell_height)
    frames, n = span(clips[plan.clip_ids[0]], config), len(plan.clip_ids)
    fps = clips[plan.clip_ids[0]].fps
    hop = 16000 / fps
    video = np.zeros((frames, config.cell_height, n * config.cell_width, 3), np.uint8)
    tracks = [np.zeros(int(round(frames * hop)), np.float32) for _ in range(n)]
    boxes = np.full((n, frames, 4), np.nan, np.float32)
    speaking: list[list[list[float]]] = [[] for _ in range(n)]
    words: list[list[dict]] = [[] for _ in range(n)]
    sources = []
    for place, clip_id in enumerate(plan.clip_ids):
        clip = clips[clip_id]
        audio = read_audio(clip.path)
        listen_start, listen_len = _silent_stretch(clip, config.listen_loop_frames)
        src = np.empty(frames, np.int64)
        cursor = plan.speak_starts[place]
        listened = 0
        for turn in plan.turns:
            length = turn.end - turn.start
            if place in turn.speakers:
                src[turn.start : turn.end] = np.arange(cursor, cursor + length)
                a, b = int(round(turn.start * hop)), int(round(turn.end * hop))
                piece = audio[int(round(cursor * hop)) : int(round(cursor * hop)) + (b - a)]
                tracks[place][a : a + len(piece)] = piece
                if speaking[place] and speaking[place][-1][1] == round(turn.start / fps, 4):
                    speaking[place][-1][1] = round(turn.end / fps, 4)  # one interval across adjacent turns
                else:
                    speaking[place].append([round(turn.start / fps, 4), round(turn.end / fps, 4)])
                words[place] += _words_in(clip, cursor, cursor + length, turn.start)
                cursor += length
            else:
                src[turn.start : turn.end] = ping_pong(listen_start, listen_len, listened + length)[listened:]
                listened += length
        src = np.clip(src, 0, clip.n_frames - 1)
        crop = face_crop_window(clip, np.unique(src), cell, config.face_scale)
        cells = read_cells(clip.path, src, crop, cell)
        for t in range(frames):
            video[t, :, place * config.cell_width : (place + 1) * config.cell_width] = cells[int(src[t])]
        boxes[place] = map_boxes(clip.boxes[src], crop, cell, place)
        sources.append(clip.source_entry(
            speak_start_frame=plan.speak_starts[place], listen_frames=[listen_start, listen_len],
            crop=[crop.x0, crop.y0, crop.width, crop.height],
        ))  # fmt: skip
    faces = [face_crop(video[0], boxes[i, 0]) for i in range(n)]
    meta = {
        "identities": [clips[c].identity for c in plan.clip_ids],
        "sources": sources,
        "speaking": speaking,
        "turns": [[t.start, t.end, list(t.speakers)] for t in plan.turns],
        "words": words,
        "transcript": [" ".join(w["word"] for w in ws) for ws in words],
        "scores": [clip_scores(clips[c]) for c in plan.clip_ids],
    }
    return retime(Sample(plan.key, "composite", 1, video, fps, tracks, boxes, faces, meta), config.fps, config.frames)


def render_single(plan: SinglePlan, clip: LibraryClip, config: ComposeConfig) -> Sample:
    """One cell of one clip over the span of one sample from `start`, with its own audio, at `config.fps`."""
    cell = (config.cell_width, config.cell_height)
    frames = span(clip, config)
    fps = clip.fps
    hop = 16000 / fps
    src = np.arange(plan.start, plan.start + frames)
    crop = face_crop_window(clip, src, cell, config.face_scale)
    cells = read_cells(clip.path, src, crop, cell)
    video = np.stack([cells[int(i)] for i in src])
    audio = read_audio(clip.path)
    a = int(round(plan.start * hop))
    track = np.zeros(int(round(frames * hop)), np.float32)
    piece = audio[a : a + len(track)]
    track[: len(piece)] = piece
    boxes = map_boxes(clip.boxes[src], crop, cell, 0)[None]
    t0, t1 = plan.start / fps, (plan.start + frames) / fps
    speaking = [[round(max(a_, t0) - t0, 4), round(min(b_, t1) - t0, 4)] for a_, b_ in clip.speech_regions if b_ > t0 and a_ < t1]
    words = _words_in(clip, plan.start, plan.start + frames, 0)
    meta = {
        "identities": [clip.identity],
        "sources": [clip.source_entry(start_frame=plan.start, crop=[crop.x0, crop.y0, crop.width, crop.height])],
        "speaking": [speaking],
        "words": [words],
        "transcript": [" ".join(w["word"] for w in words)],
        "scores": [clip_scores(clip)],
    }  # fmt: skip
    sample = Sample(plan.key, "single", 1, video, fps, [track], boxes, [face_crop(video[0], boxes[0, 0])], meta)
    return retime(sample, config.fps, config.frames)


def clip_scores(clip: LibraryClip) -> dict:
    keys = ("sync_offset_frames", "sync_confidence", "face_size_px", "yaw_deg", "sharpness", "brightness",
            "speech_ratio", "language")  # fmt: skip
    return {k: clip.metrics[k] for k in keys if k in clip.metrics}
