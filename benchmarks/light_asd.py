"""Light-ASD's visual encoder: its 3-D kernels run as 2-D convolutions (`VisualBlock.forward`)
against the checkpoint's own 3-D form (`forward_3d`), and the 2-s windows built on the 1-s
windows' visual features (`asd.speaking_scores`) against every window run on its own, on the
same face crops, one run.

    .venv/bin/python benchmarks/light_asd.py [VIDEO] [--threads N]

Face crops are cut from VIDEO (default: ../shared/data/videos/PC-AVS__Input_00098.mp4) as
curation cuts them (main face track, grey 112x112, 25 fps) and fed in the windows curation uses
(1 s and 2 s). Prints, per window length, the seconds of each form, their ratio and the largest
difference of the speaking logits, then the ratio over both; then curation's `speaking_scores`
(2-D, windows sharing their visual features) against the 2-D windows each run on their own.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from tasks.config import CurateConfig
from tasks.curation.analysis.asd import (
    FPS,
    LightASD,
    at_25fps,
    face_crops_112,
    light_asd,
    mfcc_100hz,
    speaking_scores,
)  # fmt: skip
from tasks.curation.analysis.faces import analyze_faces, resolve_face_models
from tasks.curation.clipmedia import read_clip

DEFAULT_VIDEO = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos" / "PC-AVS__Input_00098.mp4"


@contextmanager
def visual_in_3d(model: LightASD, three_d: bool) -> Iterator[None]:
    """Run `model` as it is, or with its visual encoder in the checkpoint's 3-D form (`forward_3d`)."""
    encoder = model.model.visualEncoder
    if three_d:
        encoder.forward = encoder.forward_3d  # an instance attribute: nn.Module calls it instead of the class's
    try:
        yield
    finally:
        encoder.__dict__.pop("forward", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("video", nargs="?", type=Path, default=DEFAULT_VIDEO)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a curation task on 2 cores gets 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = CurateConfig()
    model = light_asd(config.speaker.model)
    if model is None:
        raise SystemExit("no Light-ASD weights: set ANYTALKER_LIGHT_ASD or speaker.model")
    media = read_clip(args.video, config.faces.analysis_max_side)
    boxes = analyze_faces(media, resolve_face_models(config.faces.model), config.faces.sample_fps,
                          config.faces.count_min_ratio).boxes  # fmt: skip
    frames, boxes = at_25fps(media.frames, boxes / media.scale, media.fps)
    crops = torch.from_numpy(face_crops_112(frames, boxes))
    mfcc = torch.from_numpy(mfcc_100hz(media.audio))
    n = min(len(crops), len(mfcc) // 4)
    print(f"{args.video.name}: {n} frames at 25 fps, {args.threads} torch thread(s)")
    total = {False: 0.0, True: 0.0}
    on_their_own = []  # the 2-D logits of each window length, every window run on its own
    for window_s in (1.0, 2.0):
        step = int(window_s * FPS)
        spent = {False: 0.0, True: 0.0}
        worst = 0.0
        logits = []
        for s in range(0, n, step):
            e = min(n, s + step)
            out = {}
            for three_d in (True, False):
                with visual_in_3d(model, three_d), torch.inference_mode():
                    start = time.perf_counter()
                    out[three_d] = model(mfcc[None, 4 * s : 4 * e], crops[None, s:e])
                    spent[three_d] += time.perf_counter() - start
            worst = max(worst, float((out[True] - out[False]).abs().max()))
            logits.append(out[False][0].numpy())
        on_their_own.append(np.concatenate(logits))
        total[False] += spent[False]
        total[True] += spent[True]
        print(f"windows of {window_s:.0f} s: 3-D {spent[True]:.2f} s, 2-D {spent[False]:.2f} s, "
              f"ratio 3-D / 2-D {spent[True] / spent[False]:.2f}x; largest logit difference {worst:.1e}")  # fmt: skip
    print(f"both windows: 3-D {total[True]:.2f} s, 2-D {total[False]:.2f} s: the 2-D form "
          f"{total[True] / total[False]:.2f}x faster")  # fmt: skip
    start = time.perf_counter()
    shared = speaking_scores(model, crops.numpy(), mfcc.numpy())
    spliced = time.perf_counter() - start
    worst = float(np.abs(shared - np.mean(on_their_own, axis=0)).max())
    print(f"2-D, each window on its own {total[False]:.2f} s, 2-s windows on the 1-s windows' visual features "
          f"{spliced:.2f} s: {total[False] / spliced:.2f}x faster; largest logit difference {worst:.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
