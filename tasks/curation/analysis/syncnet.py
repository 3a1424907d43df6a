"""SyncNet (Chung & Zisserman, 2016) in the layout of the official `syncnet_v2.model` checkpoint.

The module names and layer order follow that checkpoint's state dict (`netcnnaud.*`,
`netfcaud.*`, `netcnnlip.*`, `netfclip.*`), so the official file loads with
`load_state_dict(strict=True)`. Inputs as in the original evaluation: 5 face crops of 224x224
(raw 0..255, BGR) per video frame, and a 13 x 20 MFCC window (0.2 s at 100 Hz) per frame.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def _conv2d(cin: int, cout: int, kernel, stride=1, padding=1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def _conv3d(cin: int, cout: int, kernel, stride=1, padding=0) -> list[nn.Module]:
    return [nn.Conv3d(cin, cout, kernel, stride, padding), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]


def _head() -> nn.Sequential:
    return nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True), nn.Linear(512, 1024))


class SyncNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *_conv2d(1, 64, 3), nn.MaxPool2d(1, 1),
            *_conv2d(64, 192, 3), nn.MaxPool2d((3, 3), (1, 2)),
            *_conv2d(192, 384, 3), *_conv2d(384, 256, 3), *_conv2d(256, 256, 3), nn.MaxPool2d((3, 3), (2, 2)),
            *_conv2d(256, 512, (5, 4), 1, 0),
        )  # fmt: skip
        self.netfcaud = _head()
        self.netcnnlip = nn.Sequential(
            *_conv3d(3, 96, (5, 7, 7), (1, 2, 2)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *_conv3d(256, 256, (1, 3, 3), 1, (0, 1, 1)), *_conv3d(256, 256, (1, 3, 3), 1, (0, 1, 1)),
            *_conv3d(256, 256, (1, 3, 3), 1, (0, 1, 1)), nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv3d(256, 512, (1, 6, 6)),
        )  # fmt: skip
        self.netfclip = _head()

    def forward_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(N, 1, 13, 20) MFCC windows -> (N, 1024)."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lip(self, crops: torch.Tensor) -> torch.Tensor:
        """(N, 3, 5, 224, 224) face crops -> (N, 1024)."""
        return self.netfclip(self.netcnnlip(crops).flatten(1))


def load_syncnet(path: str | Path) -> SyncNet:
    """Load an official-format checkpoint (a state dict saved with torch.save)."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a SyncNet state dict, got {type(state).__name__}")
    model = SyncNet()
    model.load_state_dict(state, strict=True)
    return model.eval()
