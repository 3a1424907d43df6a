"""A picture of a shard set: the first frame of some samples with each identity's face mask
tinted and its box drawn, so a person can see at a glance that masks sit on the right faces."""

from __future__ import annotations

import json

import cv2
import numpy as np

from shards.reader import face_masks, iter_raw_samples
from shards.schema import Sample, from_members

COLOURS = [(230, 60, 60), (60, 170, 230), (80, 200, 90), (240, 190, 40)]


def draw_sample(sample: Sample, height: int = 200) -> np.ndarray:
    """Frame 0 with masks (at the smallest expansion, on a 1/8 grid) tinted, boxes and speakers labelled."""
    frame = sample.video[0].astype(np.float32)
    h, w = frame.shape[:2]
    n = sample.n_identities
    grid = (h // 8, w // 8)
    masks = face_masks(sample.boxes, (h, w), grid, np.full(n, 1.3), np.full(n, 1.2))
    for i in range(n):
        big = cv2.resize(masks[i], (w, h), interpolation=cv2.INTER_NEAREST)[..., None]
        frame = frame * (1 - 0.35 * big) + 0.35 * big * np.array(COLOURS[i % len(COLOURS)], np.float32)
    image = frame.clip(0, 255).astype(np.uint8)
    for i in range(n):
        box = sample.boxes[i, 0]
        if not np.isnan(box[0]):
            cv2.rectangle(image, (int(box[0]), int(box[1])), (int(box[2]), int(box[3])), COLOURS[i % len(COLOURS)], 2)
            cv2.putText(image, str(i), (int(box[0]) + 4, int(box[1]) + 22), cv2.FONT_HERSHEY_SIMPLEX, 0.8,
                        COLOURS[i % len(COLOURS)], 2)  # fmt: skip
    image = cv2.resize(image, (int(round(w * height / h)), height), interpolation=cv2.INTER_AREA)
    label = f"{sample.kind} N={n} {sample.key[:14]}"
    cv2.putText(image, label, (6, image.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    return image


def preview_png(samples: list[Sample], max_width: int = 1400, height: int = 200) -> bytes:
    """Drawn samples packed into rows of at most `max_width` pixels, as PNG bytes."""
    tiles = [draw_sample(s, height) for s in samples] or [np.full((height, 400, 3), 40, np.uint8)]
    rows: list[list[np.ndarray]] = [[]]
    for tile in tiles:
        if rows[-1] and sum(t.shape[1] + 4 for t in rows[-1]) + tile.shape[1] > max_width:
            rows.append([])
        rows[-1].append(tile)
    gap = np.zeros((height, 4, 3), np.uint8)
    lines = [np.hstack([x for t in row for x in (t, gap)]) for row in rows]
    width = max(line.shape[1] for line in lines)
    image = np.vstack([np.pad(line, ((0, 4), (0, width - line.shape[1]), (0, 0))) for line in lines])
    ok, png = cv2.imencode(".png", image[..., ::-1])
    return png.tobytes()


def first_samples(urls: list[str], per_kind: int = 2, kinds: tuple[str, ...] = ("composite", "single", "multi")) -> list[Sample]:
    """Up to `per_kind` samples of each kind, reading the tars in order and stopping when done."""
    picked: list[Sample] = []
    counts = dict.fromkeys(kinds, 0)
    for key, parts in iter_raw_samples(urls):
        kind = json.loads(parts["meta.json"])["kind"]
        if counts.get(kind, per_kind) < per_kind:
            counts[kind] += 1
            picked.append(from_members(key, parts))
        if all(c >= per_kind for c in counts.values()):
            break
    return picked
