"""How well the lip-sync estimate finds known audio shifts on real talking clips.

    .venv/bin/python benchmarks/sync_shift.py [VIDEO_DIR] [--backend syncnet --syncnet-model F]

For every single-person talking clip of ../shared/data (PC-AVS, video-retalking, LivePortrait
d11) it makes a standard clip, then copies whose audio is moved by -10, -6, -3, +3, +6 and +10
frames (ffmpeg: `adelay` for late audio, `atrim` for early), runs the estimate on each copy
(faces and landmarks once per clip, the copy's own audio), and prints:

- per shift: how far the estimate lands from the shift (the originals taken as in sync), how
  far from the clip's own unshifted estimate plus the shift (what the estimate can know), how
  often it is confident, and what the verdict rules do with the copy: reject it as
  out_of_sync, re-align it (and how many end within 2 frames of the shift), or keep it as is;
- per `verdict.uncertain_sync` policy: in-sync clips accepted, 10-frame copies rejected or
  re-aligned, 6- and 10-frame copies that pass out of sync;
- the null: the confidence and the z-score (sync_z) the estimate reports for each clip's mouth
  against every other clip's audio (nothing to find there), against `verdict.min_sync_confidence`
  and `verdict.min_sync_z`, beside the same figures of the in-sync clips;
- with `--select`: how the estimate's pairs (tasks/curation/analysis/sync.py PAIRS) were chosen, checked with
  each clip held out. For every clip, the subset of all mouth-signal x audio-signal pairs (two
  band envelopes and the phones' expected opening) that does best on the other clips (first
  the 10-frame gate, then shifts followed to 1 frame, then shifts found to 2 frames) is chosen,
  and scored on the held-out clip; and the same without the phone pairs, to show what they add.

Phones: the speech worker transcribes each clip once; the transcript is force-aligned to each
copy's own audio (tasks/curation/analysis/phones.py), as curation does.

The SyncNet backend is not measured here: no SyncNet weights exist offline, and random weights
say nothing. Use `--backend syncnet --syncnet-model syncnet_v2.model` where you have them.
"""

from __future__ import annotations

import argparse
import itertools
import subprocess
import tempfile
from collections import defaultdict
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from tasks.config import CurateConfig
from tasks.curation.analysis.faces import analyze_faces, resolve_face_models
from tasks.curation.analysis.landmarks import Landmarks, analyze_landmarks, resolve_landmarker
from tasks.curation.analysis.phones import align_phones
from tasks.curation.analysis.speech import speech_worker
from tasks.curation.analysis.sync import (
    AUDIO_SIGNALS,
    MOUTH_SIGNALS,
    NULL_MEDIAN,
    NULL_SPREAD,
    PAIRS,
    PAIRS_WITHOUT_PHONES,
    PairCurves,
    SyncEstimate,
    calibrated_z,
    combine,
    pair_correlations,
    syncnet_offset,
)
from tasks.curation.analysis.syncnet import load_syncnet
from tasks.curation.clipmedia import ClipMedia, read_audio, read_clip
from tasks.curation.verdict import judge_sync, sync_is_confident

DEFAULT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"
TALKING = ["PC-AVS__*.mp4", "video-retalking__*.mp4", "LivePortrait__d11.mp4"]
SHIFTS = (-10, -6, -3, 0, 3, 6, 10)


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True)


def shifted_copy(clip: Path, frames: int, fps: float, out: Path) -> Path:
    """`clip` with its audio `frames` later (positive) or earlier (negative), same length."""
    seconds = abs(frames) / fps
    audio = f"adelay={int(seconds * 1000)}:all=1" if frames > 0 else f"atrim=start={seconds},asetpts=PTS-STARTPTS,apad"
    ffmpeg("-i", str(clip), "-af", audio, "-c:v", "copy", "-c:a", "aac", "-ar", "16000", "-ac", "1", "-shortest", str(out))
    return out


def outcome(estimate: SyncEstimate, shift: int, rules) -> str:
    """rejected, in_sync (re-aligned or already within 2 frames of true sync), or passes (out of sync)."""
    offset = estimate.offset_frames
    metrics = estimate.metrics()
    if judge_sync(metrics, rules) is not None:
        return "rejected"
    moved = offset if sync_is_confident(metrics, rules) else 0
    return "in_sync" if abs(shift - moved) <= 2 else "passes"


def null_estimates(clips: list[tuple[ClipMedia, Landmarks, str]]) -> list[tuple[int, int, int, SyncEstimate]]:
    """(mouth clip, audio clip, frames, estimate) of each clip's mouth against every other clip's
    audio (and its phones), cut to the shorter of the two."""
    out = []
    for i, (media, landmarks, _) in enumerate(clips):
        for j, (other, _, transcript) in enumerate(clips):
            if i == j:
                continue
            n = min(len(media.frames), int(len(other.audio) / other.rate * media.fps))
            cut = Landmarks(*(getattr(landmarks, f.name)[:n] for f in fields(Landmarks)))
            audio = other.audio[: int(n / media.fps * media.rate)]
            mixed = replace(media, frames=media.frames[:n], audio=audio)
            out.append((i, j, n, combine(pair_correlations(mixed, cut, phones=align_phones(audio, transcript)))))
    return out


def _spread(x: np.ndarray) -> float:
    return float((np.quantile(x, 0.84) - np.quantile(x, 0.16)) / 2)


def calibrate(null: list[tuple[int, int, int, SyncEstimate]], rows: dict[int, list[SyncEstimate]], frames: list[int],
              names: list[str], rules) -> None:  # fmt: skip
    """The null pairs' calibration of sync_z (tasks/curation/analysis/sync.py NULL_MEDIAN, NULL_SPREAD), how often
    unrelated and in-sync pairs reach the thresholds by length, and the same with each clip's
    own pairs left out of the constants it is judged by."""
    scaled = np.array([e.confidence * np.sqrt(n) for _, _, n, e in null])
    print(f"\nnull calibration ({len(null)} pairs): confidence*sqrt(frames) median {np.median(scaled):.2f}, "
          f"spread {_spread(scaled):.2f} (in use: NULL_MEDIAN {NULL_MEDIAN}, NULL_SPREAD {NULL_SPREAD})")
    seconds = np.array([n / 25 for _, _, n, _ in null])
    for label, value, limit in (("confidence", lambda e, n: e.confidence, rules.min_sync_confidence),
                                ("sync_z", lambda e, n: calibrated_z(e.confidence, n), rules.min_sync_z)):  # fmt: skip
        nv = np.array([value(e, n) for _, _, n, e in null])
        mv = np.array([value(e, frames[k]) for k, e in enumerate(rows[0])])
        print(f"  {label}: null 95th percentile {np.quantile(nv, 0.95):.2f}, {np.mean(nv >= limit):.0%} reach {limit} "
              f"(under 6 s: {np.mean(nv[seconds < 6] >= limit):.0%} of {np.sum(seconds < 6)}; 6 s or more: "
              f"{np.mean(nv[seconds >= 6] >= limit):.0%} of {np.sum(seconds >= 6)}); in-sync clips: median "
              f"{np.median(mv):.2f}, {np.mean(mv >= limit):.0%} reach it")  # fmt: skip
    confident = gate = 0
    for k in range(len(names)):
        keep = np.array([i != k and j != k for i, j, _, _ in null])
        median, spread = np.median(scaled[keep]), _spread(scaled[keep])
        z = {s: (rows[s][k].confidence * np.sqrt(frames[k]) - median) / spread for s in SHIFTS}
        confident += z[0] >= rules.min_sync_z
        for s in (-10, 10):
            metrics = {**rows[s][k].metrics(), "sync_z": z[s]}
            moved = rows[s][k].offset_frames if z[s] >= rules.min_sync_z else 0
            gate += judge_sync(metrics, rules) is not None or abs(s - moved) <= 2
        gate += judge_sync({**rows[0][k].metrics(), "sync_z": z[0]}, rules) is None
    print(f"  constants fitted with each clip's pairs held out: in-sync clips confident {confident}/{len(names)}, "
          f"gate (in-sync kept, 10-frame copies caught) {gate}/{3 * len(names)}")


Pair = tuple[str, str]


def subset_scores(subset: tuple, curves: list[dict[int, PairCurves]], max_offset: int) -> tuple[int, int, int]:
    """(10-frame gate passed, shifts followed to 1 frame, shifts found to 2 frames) over clips, for one pair subset."""
    gate = followed = found = 0
    for clip in curves:
        est = {s: combine(clip[s], use=subset).offset_frames for s in SHIFTS}
        gate += (abs(est[0]) <= max_offset) + sum(abs(est[s]) > max_offset or abs(est[s] - s) <= 2 for s in (-10, 10))
        followed += sum(abs(est[s] - est[0] - s) <= 1 for s in SHIFTS if s)
        found += sum(abs(est[s] - s) <= 2 for s in SHIFTS)
    return gate, followed, found


def select_pairs(names: list[str], curves: list[dict[int, PairCurves]], max_offset: int, candidates: list[Pair]) -> None:
    """Leave-one-clip-out check of the pair choice (see the module docstring)."""
    subsets = [c for k in range(1, len(candidates) + 1) for c in itertools.combinations(candidates, k)]
    print(f"\n--select: {len(subsets)} subsets of {len(candidates)} pairs; held-out scores are "
          "(gate of 3: in-sync kept, both 10-frame copies caught; shifts followed to 1 frame of 6; found to 2 of 7)")
    total = np.zeros(3, int)
    for i, name in enumerate(names):
        rest = curves[:i] + curves[i + 1 :]
        best = max(subsets, key=lambda s: subset_scores(s, rest, max_offset))
        held = subset_scores(best, [curves[i]], max_offset)
        total += held
        print(f"  held out {name[:30]:30s} chose {' '.join(f'{m}x{a}' for m, a in best)}: {held}")
    n = len(names)
    print(f"  held-out totals: gate {total[0]}/{3 * n}, followed {total[1]}/{6 * n}, found {total[2]}/{7 * n}")
    for label, subset in (("PAIRS (in use)", PAIRS), ("PAIRS_WITHOUT_PHONES", PAIRS_WITHOUT_PHONES),
                          ("all pairs", tuple(candidates))):  # fmt: skip
        print(f"  {label} on all clips: {subset_scores(tuple(subset), curves, max_offset)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("videos", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--backend", choices=("estimate", "syncnet"), default="estimate")
    parser.add_argument("--syncnet-model", type=Path)
    parser.add_argument("--select", action="store_true", help="check the estimate's pair choice, each clip held out")
    args = parser.parse_args()
    config = CurateConfig()
    rules = config.verdict
    model = load_syncnet(args.syncnet_model) if args.backend == "syncnet" else None
    clips = sorted(p for pattern in TALKING for p in args.videos.glob(pattern))
    rows: dict[int, list[SyncEstimate]] = defaultdict(list)
    analysed: list[tuple[ClipMedia, Landmarks, str]] = []
    every_pair = [(signal, cue) for signal in MOUTH_SIGNALS for cue in AUDIO_SIGNALS]
    curves: list[dict[int, PairCurves]] = []
    worker = speech_worker(config.speech)
    with tempfile.TemporaryDirectory() as tmp:
        for src in clips:
            clip = Path(tmp) / f"{src.stem}.mp4"
            ffmpeg("-i", str(src), "-r", "25", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-c:a", "aac",
                   "-ar", "16000", "-ac", "1", str(clip))  # fmt: skip
            media = read_clip(clip)
            faces = analyze_faces(media, resolve_face_models(config.faces.model), 5, 0.3)
            landmarks = analyze_landmarks(media, faces.boxes, resolve_landmarker(config.faces.landmarker))
            transcript = worker.analyze_audio(media.audio).transcript
            analysed.append((media, landmarks, transcript))
            line = []
            curves.append({})
            for shift in SHIFTS:
                copy = clip if shift == 0 else shifted_copy(clip, shift, media.fps, Path(tmp) / f"{src.stem}.{shift}.mp4")
                media = replace(media, audio=read_audio(copy))
                if model is not None:
                    est = syncnet_offset(model, media, faces.boxes)
                else:
                    pairs = pair_correlations(media, landmarks, pairs=every_pair, phones=align_phones(media.audio, transcript))
                    curves[-1][shift] = pairs
                    est = combine(pairs)
                rows[shift].append(est)
                z = "" if est.z is None else f" z{est.z:.1f}"
                line.append(f"{shift:+d}->{est.offset_frames:+d} ({est.confidence:.2f}{z})")
            print(f"{src.stem[:34]:34s} " + "  ".join(line), flush=True)
    own = np.array([e.offset_frames for e in rows[0]])
    print(f"\n{len(clips)} clips; min_sync_confidence {rules.min_sync_confidence}, min_sync_z {rules.min_sync_z}, "
          f"max_sync_offset_frames {rules.max_sync_offset_frames}, uncertain_sync {rules.uncertain_sync}")  # fmt: skip
    print("shift  mean|err|  within2  own+shift±1  confident  rejected  realigned(ok)  kept")
    for shift in SHIFTS:
        est = np.array([e.offset_frames for e in rows[shift]])
        conf = np.array([sync_is_confident(e.metrics(), rules) for e in rows[shift]])
        err = np.abs(est - shift)
        rel = "      -    " if shift == 0 else f"{np.mean(np.abs(est - own - shift) <= 1):9.0%}  "
        rejected = np.array([outcome(r, shift, rules) == "rejected" for r in rows[shift]])
        realigned = conf & ~rejected
        realigned_ok = realigned & (err <= 2)
        kept = ~conf & ~rejected
        print(f"{shift:+4d}   {err.mean():7.1f}   {np.mean(err <= 2):6.0%}   {rel} {conf.mean():8.0%}   "
              f"{rejected.mean():7.0%}   {realigned.mean():5.0%} ({realigned_ok.sum()}/{realigned.sum()})   "
              f"{kept.mean():4.0%}")  # fmt: skip
    for policy in ("keep", "offset", "reject"):
        policy_rules = rules.model_copy(update={"uncertain_sync": policy})
        kept = sum(outcome(r, 0, policy_rules) != "rejected" for r in rows[0])
        ten = [outcome(r, s, policy_rules) for s in (-10, 10) for r in rows[s]]
        bad = [outcome(r, s, policy_rules) for s in SHIFTS if abs(s) >= 6 for r in rows[s]]
        print(f"uncertain_sync={policy:6s}: unshifted clips accepted {kept}/{len(rows[0])}; "
              f"10-frame copies rejected or re-aligned {sum(x != 'passes' for x in ten)}/{len(ten)}; "
              f"6- or 10-frame copies that pass out of sync {bad.count('passes')}/{len(bad)}")  # fmt: skip
    if model is None:
        calibrate(null_estimates(analysed), rows, [len(m.frames) for m, _, _ in analysed], [c.stem for c in clips], rules)
    if args.select:
        select_pairs([c.stem for c in clips], curves, rules.max_sync_offset_frames, every_pair)
        no_phones = [p for p in every_pair if p[1] != "phones"]
        print("\nthe same without the phone pairs:")
        select_pairs([c.stem for c in clips], curves, rules.max_sync_offset_frames, no_phones)


if __name__ == "__main__":
    main()
