"""Pictures of a curation run, for people who would rather look than read: histograms of the
main scores, split by verdict, and a contact sheet of accepted and rejected clips."""

from __future__ import annotations

import subprocess
from pathlib import Path

import cv2
import numpy as np

HISTOGRAMS = (("sync_confidence", "sync confidence"), ("face_size_px", "face size (px)"), ("sharpness", "sharpness"))
HISTOGRAM_KEYS = tuple(key for key, _ in HISTOGRAMS)
CONTACT_SHEET_PER_VERDICT = 12
TILE = 144


def score_histograms(scores: dict[str, dict[str, list[float]]]) -> bytes:
    """One PNG: a histogram per score (`Catalog.scores(HISTOGRAM_KEYS)`), accepted and rejected clips stacked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(HISTOGRAMS), figsize=(4 * len(HISTOGRAMS), 3), dpi=90)
    for ax, (key, label) in zip(axes, HISTOGRAMS, strict=True):
        groups = [scores.get(key, {}).get(verdict, []) for verdict in ("accepted", "rejected")]
        if any(groups):
            ax.hist(groups, bins=15, stacked=True, color=["#3a9d5d", "#c9473f"], label=["accepted", "rejected"])
        ax.set_title(label)
        ax.set_ylabel("clips")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=8)
    fig.tight_layout()
    canvas = fig.canvas
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3]
    plt.close(fig)
    return cv2.imencode(".png", image[..., ::-1])[1].tobytes()


def _thumbnail(item: dict) -> np.ndarray:
    tile = np.full((TILE, TILE, 3), 60, np.uint8)
    path, at = item["metrics"].get("path"), 0.0
    if not path and item["metrics"].get("source_path") and item["start"] is not None:
        path, at = item["metrics"]["source_path"], item["start"] - item["metrics"].get("offset_s", 0.0)  # not encoded
    if path and Path(path).is_file():
        middle = at + (item["end"] - item["start"]) / 2
        png = subprocess.run(
            ["ffmpeg", "-v", "error", "-nostdin", "-ss", f"{middle:.2f}", "-i", path, "-frames:v", "1",
             "-vf", f"scale={TILE}:{TILE}:force_original_aspect_ratio=decrease,pad={TILE}:{TILE}:-1:-1",
             "-f", "image2pipe", "-vcodec", "png", "-"],
            capture_output=True,
        ).stdout  # fmt: skip
        if png:
            tile = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    ok = item["verdict"] == "accepted"
    colour = (70, 160, 60) if ok else (60, 60, 200)
    cv2.rectangle(tile, (0, TILE - 22), (TILE, TILE), colour, -1)
    text = "accepted" if ok else (item["reason"] or "rejected")
    cv2.putText(tile, text[:20], (4, TILE - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def contact_sheet(items: list[dict], per_verdict: int = CONTACT_SHEET_PER_VERDICT, columns: int = 6) -> bytes:
    """One PNG: up to `per_verdict` accepted, then rejected items, each with its verdict or reason."""
    chosen = [i for i in items if i["verdict"] == "accepted"][:per_verdict]
    chosen += [i for i in items if i["verdict"] != "accepted"][:per_verdict]
    tiles = [_thumbnail(i) for i in chosen] or [np.full((TILE, TILE, 3), 60, np.uint8)]
    tiles += [np.zeros_like(tiles[0])] * (-len(tiles) % columns)
    rows = [np.hstack(tiles[k : k + columns]) for k in range(0, len(tiles), columns)]
    return cv2.imencode(".png", np.vstack(rows))[1].tobytes()
