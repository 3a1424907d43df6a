"""The identity-aware DiT: AFCA's properties, the model's real save format, and two-stage-ready
training through Ray Train on shards made from real clips (loss falls; a killed run resumes)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from model.afca import AudioFaceCrossAttention
from model.config import load_run_config
from model.dit import IdentityAwareDiT
from model.encoders import FrozenEncoders
from model.flow_matching import build_model

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"


def _afca_inputs(n: int, b: int = 1, f: int = 3, h: int = 6, w: int = 8, dim: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    t = 4 * (f - 1) + 1
    x = torch.randn(b, f * h * w, dim, generator=g)
    face = torch.randn(b, n, 5, dim, generator=g)
    audio = torch.randn(b, n, t, 8, dim, generator=g)
    masks = torch.zeros(b, n, h, w)
    for i in range(n):  # side by side, as in a composite; neighbours overlap by one column
        masks[:, i, :, i * w // n : min(w, (i + 1) * w // n + 1)] = 1.0
    return x, (f, h, w), face, audio, masks


def _live_afca(dim: int = 32) -> AudioFaceCrossAttention:
    torch.manual_seed(0)
    afca = AudioFaceCrossAttention(dim, heads=4)
    torch.nn.init.normal_(afca.to_out.weight, std=0.2)  # past step 0: the output projection has learnt
    return afca.eval()


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_afca_runs_for_any_identity_count_and_matches_the_papers_loop(n: int) -> None:
    afca = _live_afca()
    args = _afca_inputs(n, b=2)
    with torch.no_grad():
        packed, loop = afca(*args), afca.forward_loop(*args)
    assert packed.shape == args[0].shape and packed.abs().max() > 0
    torch.testing.assert_close(packed, loop, rtol=1e-5, atol=1e-5)


def test_identity_audio_changes_output_only_inside_its_mask() -> None:
    afca = _live_afca()
    x, grid, face, audio, masks = _afca_inputs(3)
    other = audio.clone()
    other[:, 1] = torch.randn_like(other[:, 1])
    with torch.no_grad():
        delta = (afca(x, grid, face, other, masks) - afca(x, grid, face, audio, masks)).abs().sum(-1)
    inside = masks[0, 1].flatten().bool().repeat(grid[0])
    assert delta[0, ~inside].max() == 0, "identity 1's audio leaked outside its mask"
    assert (delta[0, inside] > 1e-4).all()


def test_frame_zero_sees_all_audio_and_frame_j_only_its_window() -> None:
    afca = _live_afca()
    x, grid, face, audio, masks = _afca_inputs(1, f=4)
    f, h, w = grid
    for k in range(audio.shape[2]):  # perturb the audio of video frame k
        other = audio.clone()
        other[:, :, k] += 1.0
        with torch.no_grad():
            delta = (afca(x, grid, face, other, masks) - afca(x, grid, face, audio, masks)).abs()
        changed = {j for j in range(f) if delta[0, j * h * w : (j + 1) * h * w].max() > 0}
        expected = {0} if k == 0 else {0, (k + 3) // 4}
        assert changed == expected, (k, changed)


def _dit_inputs(model: IdentityAwareDiT, n: int = 2, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    cfg = model.backbone.config
    f, h, w = 3, 8, 12
    latents = torch.randn(1, cfg.in_channels, f, h, w, generator=g)
    text = torch.randn(1, 4, cfg.text_dim, generator=g)
    image = torch.randn(1, 17, cfg.image_dim, generator=g)
    audio = torch.randn(1, n, 9, 5, model.adapter.config.audio_layers, model.adapter.config.audio_channels, generator=g)
    faces = torch.randn(1, n, 17, model.adapter.config.face_channels, generator=g)
    masks = torch.zeros(1, n, h // 2, w // 2)
    masks[:, 0, :, :3], masks[:, 1, :, 3:] = 1, 1
    return latents, torch.tensor([500.0]), text, image, audio, faces, masks


def test_zero_initialised_afca_leaves_the_backbone_unchanged() -> None:
    config = load_run_config(TINY)
    torch.manual_seed(0)
    model = build_model(config, FrozenEncoders(config.model)).eval()
    latents, t, text, image, *_ = inputs = _dit_inputs(model)
    with torch.no_grad():
        with_afca = model(*inputs)
        backbone_only = model.backbone(latents, t, text, encoder_hidden_states_image=image, return_dict=False)[0]
    torch.testing.assert_close(with_afca, backbone_only, rtol=0, atol=0)


def test_model_and_encoders_round_trip_in_their_real_formats(tmp_path: Path) -> None:
    config = load_run_config(TINY)
    torch.manual_seed(0)
    encoders = FrozenEncoders(config.model)
    model = build_model(config, encoders).eval()
    for afca in model.adapter.afca:
        torch.nn.init.normal_(afca.to_out.weight, std=0.2)
    model.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "transformer" / "config.json").is_file()
    assert (tmp_path / "model" / "adapter" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = IdentityAwareDiT.from_pretrained(tmp_path / "model").eval()
    inputs = _dit_inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(*inputs), model(*inputs))
    # frozen encoders: saved as diffusers / transformers folders, loaded back through `pretrained`
    encoders.vae.save_pretrained(tmp_path / "vae")
    encoders.audio.save_pretrained(tmp_path / "wav2vec2")
    encoders.face.save_pretrained(tmp_path / "image_encoder")
    folders = {"vae": {"pretrained": str(tmp_path / "vae")}, "audio_encoder": {"pretrained": str(tmp_path / "wav2vec2")},
               "face_encoder": {"pretrained": str(tmp_path / "image_encoder")}}  # fmt: skip
    again = FrozenEncoders(config.model.model_copy(update={k: type(config.model.vae)(**v) for k, v in folders.items()}))
    video = torch.randint(0, 255, (1, 9, 3, 64, 96), dtype=torch.uint8)
    audio = torch.randn(1, 2, 5760)
    torch.testing.assert_close(again.latents(video), encoders.latents(video))
    torch.testing.assert_close(again.audio_windows(audio, 9), encoders.audio_windows(audio, 9))
    torch.testing.assert_close(again.image_tokens(video[:, 0]), encoders.image_tokens(video[:, 0]))


@pytest.fixture(scope="module")
def tiny_shards(shared_curated: Path, tmp_path_factory) -> Path:
    """A tiny shard set from the real accepted clips: 9-frame samples, small cells."""
    from flows.build_shards import build_shards

    folder = tmp_path_factory.mktemp("tiny-shards")
    config = folder / "shards.yaml"
    config.write_text("compose:\n  frames: 9\n  cell_width: 96\n  cell_height: 112\n  single_windows: 4\n"
                      "shards:\n  max_samples: 8\n  val_share: 0.0\n")  # fmt: skip
    build_shards(str(shared_curated), str(folder / "set"), None, 0, str(config))
    return folder / "set"


def _train(shards: Path, out: Path, steps: int) -> subprocess.Popen:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    return subprocess.Popen(
        [sys.executable, "-m", "anytalker", "train", "--shards", str(shards), "--config", str(TINY), "--out", str(out),
         "--workers", "2", "--max-steps", str(steps)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environ, start_new_session=True,
    )  # fmt: skip


@pytest.mark.slow
def test_training_on_ray_lowers_the_loss_and_a_killed_run_resumes(tiny_shards: Path, tmp_path: Path) -> None:
    from model.ray_train import loss_curve

    out = tmp_path / "run"
    first = _train(tiny_shards, out, 40)
    deadline = time.time() + 400
    while not (out / "checkpoints" / "step-000020.ckpt").exists():
        assert first.poll() is None, first.stdout.read()[-3000:]
        assert time.time() < deadline, "no checkpoint at step 20"
        time.sleep(1)
    os.killpg(first.pid, signal.SIGKILL)  # the driver, its local Ray and the workers
    first.wait()
    second = _train(tiny_shards, out, 40)
    log, _ = second.communicate(timeout=600)
    assert second.returncode == 0, log[-3000:]
    resumed = [int(line.split("resumed from step ")[1].split()[0]) for line in log.splitlines() if "resumed from step" in line]
    assert resumed and resumed[0] >= 20, log[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["step"] == 40
    assert IdentityAwareDiT.from_pretrained(out / "model") is not None
    losses = np.array([loss for _, loss in loss_curve(out)])
    assert len(losses) >= 35
    first10, last10 = losses[:10].mean(), losses[-10:].mean()
    print(f"loss: first 10 steps {first10:.3f}, last 10 steps {last10:.3f}")
    assert last10 < 0.85 * first10, (first10, last10)
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_encoded_shards_give_the_same_loss_as_encoding_on_the_fly(prefect_server, shared_videos: Path, tmp_path: Path) -> None:
    """`anytalker shards encode` stores the frozen encoders' outputs; training on them computes
    the same flow-matching loss as encoding in the step (float16 features: a small tolerance)."""
    from flows.encode_shards import encode_shards
    from shards.codec import decode_video
    from shards.reader import ReaderConfig, collate, make_dataset
    from shards.writer import ShardWriter, shard_urls, write_index
    from test_shards import _tiny_sample

    from model.flow_matching import TalkingVideoModule

    frames, _ = decode_video((shared_videos / "PC-AVS__Input_00098.mp4").read_bytes(), size=(64, 96))
    with ShardWriter(str(tmp_path / "raw"), max_count=2) as writer:
        for k in range(3):
            writer.write(_tiny_sample(f"e{k}", frames[10 * k : 10 * k + 9], 1 + k, f"p{k}"), "train")
    write_index(str(tmp_path / "raw"))
    encode_shards(str(tmp_path / "raw"), str(tmp_path / "enc"), str(TINY))

    config = load_run_config(TINY)
    module = TalkingVideoModule(config.model_dump(mode="json")).eval()
    reader = ReaderConfig(height=64, width=96, latent_grid=(4, 6), shuffle_buffer=0, shardshuffle=False)
    raw = {s["key"]: s for s in make_dataset(shard_urls(str(tmp_path / "raw"), "train"), reader)}
    enc = {s["key"]: s for s in make_dataset(shard_urls(str(tmp_path / "enc"), "train"), reader)}
    assert sorted(raw) == sorted(enc) == ["e0", "e1", "e2"]
    for key in raw:
        assert {"encoded.latents", "encoded.audiofeats", "encoded.facetokens"} <= set(enc[key])
        with torch.no_grad():
            on_the_fly = module.flow_matching_loss(collate([raw[key]]), torch.Generator().manual_seed(1))
            blank = collate([enc[key]])  # pixels, audio and faces blanked: only the stored members can give the loss
            blank.update(video=torch.zeros_like(blank["video"]), audio=torch.zeros_like(blank["audio"]),
                         faces=torch.zeros_like(blank["faces"]))  # fmt: skip
            stored = module.flow_matching_loss(blank, torch.Generator().manual_seed(1))
        torch.testing.assert_close(stored, on_the_fly, rtol=2e-3, atol=2e-3)
