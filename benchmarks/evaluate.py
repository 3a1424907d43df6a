"""Evaluation cost per stage, as ratios to a bare decode of the same video, measured in one run.

    .venv/bin/python benchmarks/evaluate.py [--video ../shared/anytalker/benchmark/interact_11.mp4]
        [--benchmark ../shared/anytalker/benchmark] [--models ../shared/models]

Stages: decode (frames and audio), face detection in every frame (SCRFD), interactivity
(MediaPipe on two crops per frame), lip sync per identity (the weight-free estimate: landmarks
again, on the identity's own track), identity similarity (every 8th frame), who speaks
(Light-ASD at 25 fps, windows of 1 and 2 s). Prints seconds, the ratio to decode and seconds
per second of video.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--video", type=Path, default=ROOT.parent / "shared" / "anytalker" / "benchmark" / "interact_11.mp4"
    )
    parser.add_argument("--benchmark", type=Path, default=ROOT.parent / "shared" / "anytalker" / "benchmark")
    parser.add_argument("--models", type=Path, default=ROOT.parent / "shared" / "models")
    args = parser.parse_args()
    pack = Path(tempfile.mkdtemp(prefix="face-pack-"))
    for name in ("scrfd_2.5g_bnkps.onnx", "mobilefacenet.onnx"):
        (pack / name).symlink_to(args.models / name)
    os.environ.setdefault("ANYTALKER_FACE_MODELS", str(pack))

    from tasks.curation.analysis.asd import load_light_asd, who_speaks
    from tasks.curation.clipmedia import read_audio, read_clip
    from tasks.evaluation.benchmark import read_benchmark
    from tasks.evaluation.face_frames import detect_frames
    from tasks.evaluation.face_identity import embed_face, identity_similarity
    from tasks.evaluation.identity_sync import identity_sync
    from tasks.evaluation.interactivity import interactivity
    from tasks.evaluation.scoring import item_for

    item = item_for(args.video, read_benchmark(args.benchmark).items)
    landmarker = args.models / "face_landmarker.task"
    asd = load_light_asd(args.models / "lightasd_finetuning_TalkSet.model")
    arcface = args.models / "mobilefacenet_arcface.onnx"
    times: dict[str, float] = {}

    def timed(name, fn):
        start = time.perf_counter()
        out = fn()
        times[name] = time.perf_counter() - start
        return out

    media = timed("decode", lambda: read_clip(args.video, max_side=4096))
    tracks = [read_audio(t) for t in item.tracks]
    faces = timed("face detection", lambda: detect_frames(media.frames, item.n, os.environ["ANYTALKER_FACE_MODELS"]))
    timed("interactivity", lambda: interactivity(media.frames, media.fps, faces, list(item.speaking), landmarker))
    timed("lip sync (estimate)", lambda: [identity_sync(media.frames, media.fps, faces.boxes[:, i], tracks[i], landmarker)
                                          for i in range(item.n)])  # fmt: skip
    reference = [embed_face(media.frames[0], faces.kps[0, i], arcface) for i in range(item.n)]
    timed("identity similarity", lambda: identity_similarity(reference, media.frames, faces.kps, arcface))
    timed("who speaks (Light-ASD)", lambda: [who_speaks(asd, media.frames, media.fps, faces.boxes[:, i], media.audio,
                                                        list(item.speaking[i])) for i in range(item.n)])  # fmt: skip
    seconds = len(media.frames) / media.fps
    print(f"{args.video.name}: {len(media.frames)} frames, {media.frames.shape[2]}x{media.frames.shape[1]}, "
          f"{seconds:.2f} s, {item.n} identities")  # fmt: skip
    print(f"{'stage':26} {'seconds':>8} {'x decode':>9} {'s per video s':>14}")
    for name, t in times.items():
        print(f"{name:26} {t:8.2f} {t / times['decode']:9.1f} {t / seconds:14.2f}")
    total = sum(times.values())
    print(f"{'total':26} {total:8.2f} {total / times['decode']:9.1f} {total / seconds:14.2f}")


if __name__ == "__main__":
    main()
