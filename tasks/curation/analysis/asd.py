"""Who speaks when: Light-ASD (Liao et al., CVPR 2023; MIT weights) per face and frame.

The network is written here to match the released state dict (../shared/models/lightasd-state-dict.tsv,
loaded strict with torch.load(weights_only=True)): a visual encoder of three blocks of split
spatial (1xkxk) and temporal (kx1x1) 3-D convolutions at k = 3 and 5, an audio encoder of the
same shape in 2-D over 13 MFCC, the two embeddings summed and read by two GRUs (forward, then
backward over the flipped sequence), and `lossAV.FC` giving per frame a speaking logit
(positive: this face is the one speaking). Inputs as its authors feed it: grey 112x112 face
crops at 25 fps, 13 MFCC at 100 frames/s (4 per video frame); scores averaged over windows of
1 and 2 s. The visual 3-D kernels run as 2-D convolutions (`VisualBlock`). It tells who speaks;
it does not measure audio-video offset (../shared/models/README.md).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from tasks.evaluation.benchmark import speaking_mask
from tasks.models import ModelsMissing, load_once, torch_device

FPS = 25.0
MODEL_ENV = "ANYTALKER_LIGHT_ASD"


def _bn(channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels, momentum=0.01, eps=0.001)


class VisualBlock(nn.Module):
    """Two branches (k = 3, 5), each a spatial then a temporal convolution, summed, then 1x1x1.

    The weights are the checkpoint's 3-D kernels, run as 2-D convolutions (the same sums in
    another order): a (1, k, k) kernel is a 2-D convolution of every frame on its own, a
    (k, 1, 1) kernel a 2-D convolution with a (k, 1) kernel over (time, pixel). Why: PyTorch's CPU
    3-D convolution is its slow path; the encoder runs 1.2-1.4x faster so, outputs within 1e-6
    of the 3-D form (benchmarks/light_asd.py). Activations move between two layouts: frames as
    images (clips * frames, C, H, W) for the spatial steps, (clips, C, frames, H * W) for the temporal ones.
    """

    def __init__(self, cin: int, cout: int, down: bool = False) -> None:
        super().__init__()
        self.stride = 2 if down else 1
        for k in (3, 5):
            setattr(
                self, f"s_{k}", nn.Conv3d(cin, cout, (1, k, k), stride=(1, self.stride, self.stride),
                                          padding=(0, k // 2, k // 2), bias=False)
            )  # fmt: skip
            setattr(self, f"bn_s_{k}", _bn(cout))
            setattr(self, f"t_{k}", nn.Conv3d(cout, cout, (k, 1, 1), padding=(k // 2, 0, 0), bias=False))
            setattr(self, f"bn_t_{k}", _bn(cout))
        self.last = nn.Conv3d(cout, cout, 1, bias=False)
        self.bn_last = _bn(cout)

    def branch(self, x: torch.Tensor, frames: int, k: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """(clips * frames, cin, H, W) -> (clips, cout, frames, H' * W'), and (H', W')."""
        spatial, temporal = getattr(self, f"s_{k}"), getattr(self, f"t_{k}")
        x = nn.functional.conv2d(x, spatial.weight[:, :, 0], stride=self.stride, padding=k // 2)
        x = torch.relu(getattr(self, f"bn_s_{k}")(x))
        images, channels, h, w = x.shape
        x = x.reshape(images // frames, frames, channels, h * w).transpose(1, 2)
        x = nn.functional.conv2d(x, temporal.weight[..., 0], padding=(k // 2, 0))
        return torch.relu(getattr(self, f"bn_t_{k}")(x)), (h, w)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """(clips * frames, cin, H, W) -> (clips * frames, cout, H', W'), `frames` per clip in order."""
        x3, size = self.branch(x, frames, 3)
        x5, _ = self.branch(x, frames, 5)
        x = torch.relu(self.bn_last(nn.functional.conv2d(x3 + x5, self.last.weight[:, :, 0])))
        clips, channels = x.shape[:2]
        return x.transpose(1, 2).reshape(clips * frames, channels, *size)

    def forward_3d(self, x: torch.Tensor) -> torch.Tensor:
        """The checkpoint's own form, (B, cin, T, H, W) -> (B, cout, T, H', W'): the definition
        `forward` is checked against (tests, benchmarks/light_asd.py)."""
        norm = nn.functional.batch_norm

        def bn(y: torch.Tensor, layer: nn.BatchNorm2d) -> torch.Tensor:
            return norm(y, layer.running_mean, layer.running_var, layer.weight, layer.bias, False, 0.0, layer.eps)

        x3 = torch.relu(bn(self.t_3(torch.relu(bn(self.s_3(x), self.bn_s_3))), self.bn_t_3))
        x5 = torch.relu(bn(self.t_5(torch.relu(bn(self.s_5(x), self.bn_s_5))), self.bn_t_5))
        return torch.relu(bn(self.last(x3 + x5), self.bn_last))


class AudioBlock(nn.Module):
    """The same over (MFCC, time): a convolution along the MFCC axis, then along time."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        for k in (3, 5):
            setattr(self, f"m_{k}", nn.Conv2d(cin, cout, (k, 1), padding=(k // 2, 0), bias=False))
            setattr(self, f"bn_m_{k}", _bn(cout))
            setattr(self, f"t_{k}", nn.Conv2d(cout, cout, (1, k), padding=(0, k // 2), bias=False))
            setattr(self, f"bn_t_{k}", _bn(cout))
        self.last = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_last = _bn(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x3 = torch.relu(self.bn_t_3(self.t_3(torch.relu(self.bn_m_3(self.m_3(x))))))
        x5 = torch.relu(self.bn_t_5(self.t_5(torch.relu(self.bn_m_5(self.m_5(x))))))
        return torch.relu(self.bn_last(self.last(x3 + x5)))


class VisualEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block1, self.block2, self.block3 = VisualBlock(1, 32, down=True), VisualBlock(32, 64), VisualBlock(64, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, T, 112, 112) -> (B, T, 128)
        clips, _, frames, h, w = x.shape
        x = x.transpose(1, 2).reshape(clips * frames, 1, h, w)  # every frame an image
        pool = nn.functional.max_pool2d  # (1, 3, 3) in 3-D: each frame on its own
        x = pool(self.block1(x, frames), 3, 2, 1)
        x = pool(self.block2(x, frames), 3, 2, 1)
        x = self.block3(x, frames)
        return x.amax(dim=(2, 3)).reshape(clips, frames, -1)

    def forward_3d(self, x: torch.Tensor) -> torch.Tensor:
        """`forward` in the checkpoint's own 3-D form (`VisualBlock.forward_3d`)."""
        pool = nn.functional.max_pool3d
        x = pool(self.block1.forward_3d(x), (1, 3, 3), (1, 2, 2), (0, 1, 1))
        x = pool(self.block2.forward_3d(x), (1, 3, 3), (1, 2, 2), (0, 1, 1))
        return self.block3.forward_3d(x).amax(dim=(3, 4)).transpose(1, 2)


class AudioEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block1, self.block2, self.block3 = AudioBlock(1, 32), AudioBlock(32, 64), AudioBlock(64, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 1, 13, 4T) -> (B, T, 128)
        pool = nn.functional.max_pool2d  # time halves twice: 100 Hz -> 25 Hz
        x = pool(self.block1(x), (1, 3), (1, 2), (0, 1))
        x = pool(self.block2(x), (1, 3), (1, 2), (0, 1))
        return self.block3(x).mean(dim=2).transpose(1, 2)


class BGRU(nn.Module):
    def __init__(self, channels: int = 128) -> None:
        super().__init__()
        self.gru_forward = nn.GRU(channels, channels, batch_first=True)
        self.gru_backward = nn.GRU(channels, channels, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.gelu(self.gru_forward(x)[0])
        x = torch.flip(self.gru_backward(torch.flip(x, dims=[1]))[0], dims=[1])
        return nn.functional.gelu(x)


class ASDModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.visualEncoder = VisualEncoder()
        self.audioEncoder = AudioEncoder()
        self.GRU = BGRU(128)


class Head(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.FC = nn.Linear(128, 2)


class LightASD(nn.Module):
    """The released checkpoint's module tree: `model.*` plus the two heads `lossAV`, `lossV`."""

    def __init__(self) -> None:
        super().__init__()
        self.model = ASDModel()
        self.lossAV = Head()
        self.lossV = Head()

    def visual_features(self, faces: torch.Tensor) -> torch.Tensor:
        """(B, T, 112, 112) grey uint8-range faces -> (B, T, 128)."""
        return self.model.visualEncoder(((faces / 255 - 0.4161) / 0.1688).unsqueeze(1))

    def audio_features(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, 4T, 13) MFCC -> (B, T, 128)."""
        return self.model.audioEncoder(mfcc.unsqueeze(1).transpose(2, 3))

    def decide(self, audio: torch.Tensor, visual: torch.Tensor) -> torch.Tensor:
        """Both embeddings of one window, summed and read by the GRUs -> (B, T) speaking logits."""
        t = min(audio.shape[1], visual.shape[1])
        fused = self.model.GRU(audio[:, :t] + visual[:, :t])
        logits = self.lossAV.FC(fused)
        return logits[..., 1]  # as their evaluation reads it: the "speaking" logit

    def forward(self, mfcc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """(B, 4T, 13) MFCC and (B, T, 112, 112) grey uint8-range faces -> (B, T) speaking logits."""
        return self.decide(self.audio_features(mfcc), self.visual_features(faces))


def load_light_asd(path: str | Path) -> LightASD:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Light-ASD weights not found: {path} (finetuning_TalkSet.model from Junhua-Liao/Light-ASD)"
        )
    model = LightASD()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def light_asd(configured: str | None, gpus: float = 0.0) -> LightASD | None:
    """The process's Light-ASD (the environment wins over the config), loaded once (on the GPU
    when the task has one: `tasks.models`); None when neither names one, so curation runs
    without the who-speaks checks rather than failing."""
    path = os.environ.get(MODEL_ENV) or configured
    if not path:
        return None
    device = torch_device(gpus)

    def make() -> LightASD:
        try:
            return load_light_asd(Path(path).expanduser()).to(device)
        except FileNotFoundError as exc:
            raise ModelsMissing(f"{exc}; set speaker.model in the config or {MODEL_ENV}") from exc

    return load_once("light-asd", f"{path} on {device}", make)


def mfcc_100hz(audio: np.ndarray, rate: int = 16000) -> np.ndarray:
    """13 MFCC at 100 frames/s (25 ms windows), as Light-ASD's authors compute them: on 16-bit
    sample values (they read the wav as int16), which sets the level of the energy coefficient;
    float samples in [-1, 1] would put it 20.8 lower, outside what the network was trained on."""
    from python_speech_features import mfcc

    return mfcc(audio.astype(np.float64) * 32768, rate, numcep=13, winlen=0.025, winstep=0.010).astype(np.float32)


def face_crops_112(frames: Sequence[np.ndarray], boxes: np.ndarray, scale: float = 0.40) -> np.ndarray:
    """(T, 112, 112) grey crops: the box's larger half-side bs, the face centred with margin
    `scale` (more below the chin than above), resized to 224 and its centre 112 kept."""
    out = np.zeros((len(frames), 112, 112), np.float32)
    ok = ~np.isnan(boxes[:, 0])
    if not ok.any():
        return out
    filled = np.stack([np.interp(np.arange(len(boxes)), np.flatnonzero(ok), boxes[ok, j]) for j in range(4)], 1)
    for t, frame in enumerate(frames):
        x0, y0, x1, y1 = filled[t]
        bs = max(x1 - x0, y1 - y0) / 2
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        pad = int(bs * (1 + 2 * scale)) + 1
        grey = cv2.copyMakeBorder(
            cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=110
        )
        cy, cx = cy + pad, cx + pad
        crop = grey[
            int(cy - bs) : int(cy + bs * (1 + 2 * scale)), int(cx - bs * (1 + scale)) : int(cx + bs * (1 + scale))
        ]
        if crop.size == 0:
            continue
        out[t] = cv2.resize(crop, (224, 224))[56:168, 56:168]
    return out


def at_25fps(frames: np.ndarray, boxes: np.ndarray, fps: float) -> tuple[list[np.ndarray], np.ndarray]:
    """The frames nearest each 25-fps time (Light-ASD's rate), as views into `frames` (a copy of
    the whole clip cost more than the crops cut from it), and their boxes."""
    from tasks.dataset.retime import source_index

    n = int(len(frames) / fps * FPS)
    index = np.minimum(source_index(n, fps, FPS), len(frames) - 1)
    return [frames[i] for i in index], boxes[index]


VISUAL_REACH = 6  # frames: a visual feature sees this far either way (3 blocks, temporal kernels up to 5)


@torch.inference_mode()
def speaking_scores(
    model: LightASD, faces: np.ndarray, mfcc: np.ndarray, windows_s: tuple[float, ...] = (1.0, 2.0)
) -> np.ndarray:
    """(T,) speaking logits per 25-fps frame, averaged over windows of each length (last window
    shorter), as their evaluation averages durations. Each window is run on its own, its
    convolutions padded at its edges, as their evaluation runs it.

    The visual encoder, most of the cost, is not run twice on the same frames: a window made of
    shorter windows already run (2 s after 1 s) takes their visual features, which are its own
    except within VISUAL_REACH frames of an inner edge, where the shorter windows were padded;
    only those frames are encoded again, with VISUAL_REACH frames of context either side
    (`_spliced`). The audio encoder and the GRUs run on every window as before.
    """
    t = min(len(faces), len(mfcc) // 4)
    device = next(model.parameters()).device
    faces_t = torch.from_numpy(faces[:t]).to(device)
    mfcc_t = torch.from_numpy(mfcc[: 4 * t]).to(device)
    scores = []
    shorter: tuple[int, torch.Tensor] | None = None  # a window length already run, and its visual features
    for window in windows_s:
        step = int(window * FPS)
        features = []
        per = []
        for s in range(0, t, step):
            e = min(t, s + step)
            if shorter is not None and step % shorter[0] == 0:
                visual = _spliced(model, faces_t, shorter[1], shorter[0], s, e)
            else:
                visual = model.visual_features(faces_t[None, s:e])[0]
            features.append(visual)
            audio = model.audio_features(mfcc_t[None, 4 * s : 4 * e])
            per.append(model.decide(audio, visual[None])[0].cpu().numpy())
        scores.append(np.concatenate(per)[:t])
        if features:
            shorter = (step, torch.cat(features))
    return np.mean(scores, axis=0)


def _spliced(model: LightASD, faces: torch.Tensor, shorter: torch.Tensor, step: int, s: int, e: int) -> torch.Tensor:
    """The visual features of window [s, e) from those of the `step`-frame windows inside it:
    around each inner edge b, the frames [b - R, b + R) are encoded again from [b - 2R, b + 2R)
    (R = VISUAL_REACH), so that none of them sees that chunk's own padded edges."""
    reach = VISUAL_REACH
    visual = shorter[s:e].clone()
    for b in range(s + step, e, step):
        lo, hi = max(s, b - 2 * reach), min(e, b + 2 * reach)
        keep_lo, keep_hi = max(s, b - reach), min(e, b + reach)
        again = model.visual_features(faces[None, lo:hi])[0]
        visual[keep_lo - s : keep_hi - s] = again[keep_lo - lo : keep_hi - lo]
    return visual


@dataclass(frozen=True)
class WhoSpeaks:
    agreement: float  # share of frames where "this face speaks" equals "its voice speaks"
    silent_judged_speaking: float | None  # share of the identity's silent frames where its face is judged speaking
    scores: np.ndarray  # (T,) logits at 25 fps


def who_speaks(model: LightASD, frames: np.ndarray, fps: float, boxes: np.ndarray, audio: np.ndarray,
               speaking: list[tuple[float, float]], rate: int = 16000) -> WhoSpeaks:  # fmt: skip
    """One identity: its face (boxes in video pixels) against what is heard (`audio`, the mix the
    video plays), scored against that identity's own speaking intervals."""
    frames25, boxes25 = at_25fps(frames, boxes, fps)
    scores = speaking_scores(model, face_crops_112(frames25, boxes25), mfcc_100hz(audio, rate))
    truth = speaking_mask(speaking, len(scores), FPS)
    judged = scores > 0
    silent = ~truth
    return WhoSpeaks(float((judged == truth).mean()), float(judged[silent].mean()) if silent.any() else None, scores)


def face_scores(model: LightASD, frames: np.ndarray, fps: float, boxes: np.ndarray, audio: np.ndarray,
                rate: int = 16000) -> np.ndarray:  # fmt: skip
    """(T,) speaking logits of one face track per video frame (`boxes` in the pixels of
    `frames`), against the audio the clip plays. Computed at Light-ASD's 25 fps and read back at
    the clip's rate; all below zero (not speaking) when there is too little audio to judge."""
    if len(audio) < rate // 10 or np.isnan(boxes[:, 0]).all():
        return np.full(len(frames), -10.0, np.float32)
    frames25, boxes25 = at_25fps(frames, boxes, fps)
    scores = speaking_scores(model, face_crops_112(frames25, boxes25), mfcc_100hz(audio, rate))
    index = np.minimum(((np.arange(len(frames)) + 0.5) / fps * FPS).astype(int), len(scores) - 1)
    return scores[index].astype(np.float32)


def speaking_share(scores: np.ndarray, regions: list[list[float]], fps: float) -> float | None:
    """The share of the voiced frames (the VAD's regions) in which the face is judged speaking
    (logit > 0, the network's own decision); None when nothing is voiced."""
    voiced = speaking_mask([(float(r[0]), float(r[1])) for r in regions], len(scores), fps)
    return float((scores[voiced] > 0).mean()) if voiced.any() else None
