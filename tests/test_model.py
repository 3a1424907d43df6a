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
from conftest import session_prefect_env

from model.afca import AudioFaceKV, afca_loop, afca_packed
from model.config import load_run_config
from model.dit import IdentityAwareDiT
from model.encoders import FrozenEncoders
from model.flow_matching import build_model
from model.folder import init_model
from model.text import TEXT_TOKENS

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"


def _afca_inputs(n: int, b: int = 1, f: int = 3, h: int = 6, w: int = 8, dim: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    t = 4 * (f - 1) + 1
    q = torch.randn(b, f * h * w, dim, generator=g)
    face = torch.randn(b, n, 5, dim, generator=g)
    audio = torch.randn(b, n, t, 8, dim, generator=g)
    masks = torch.zeros(b, n, h, w)
    for i in range(n):  # side by side, as in a composite; neighbours overlap by one column
        masks[:, i, :, i * w // n : min(w, (i + 1) * w // n + 1)] = 1.0
    return q, (f, h, w), face, audio, masks


def _kv(dim: int = 32) -> AudioFaceKV:
    torch.manual_seed(0)
    return AudioFaceKV(dim).eval()


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_afca_runs_for_any_identity_count_and_matches_the_papers_loop(n: int) -> None:
    kv = _kv()
    q, grid, face, audio, masks = _afca_inputs(n, b=2)
    with torch.no_grad():
        packed = afca_packed(q, kv, 4, grid, face, audio, masks)
        loop = afca_loop(q, kv, 4, grid, face, audio, masks)
    assert packed.shape == q.shape and packed.abs().max() > 0
    torch.testing.assert_close(packed, loop, rtol=1e-5, atol=1e-5)


def test_identity_audio_changes_output_only_inside_its_mask() -> None:
    kv = _kv()
    q, grid, face, audio, masks = _afca_inputs(3)
    other = audio.clone()
    other[:, 1] = torch.randn_like(other[:, 1])
    with torch.no_grad():
        delta = (afca_packed(q, kv, 4, grid, face, other, masks) - afca_packed(q, kv, 4, grid, face, audio, masks)).abs().sum(-1)
    inside = masks[0, 1].flatten().bool().repeat(grid[0])
    assert delta[0, ~inside].max() == 0, "identity 1's audio leaked outside its mask"
    assert (delta[0, inside] > 1e-4).all()


def test_frame_zero_sees_all_audio_and_frame_j_only_its_window() -> None:
    kv = _kv()
    q, grid, face, audio, masks = _afca_inputs(1, f=4)
    f, h, w = grid
    for k in range(audio.shape[2]):  # perturb the audio of video frame k
        other = audio.clone()
        other[:, :, k] += 1.0
        with torch.no_grad():
            delta = (afca_packed(q, kv, 4, grid, face, other, masks) - afca_packed(q, kv, 4, grid, face, audio, masks)).abs()
        changed = {j for j in range(f) if delta[0, j * h * w : (j + 1) * h * w].max() > 0}
        expected = {0} if k == 0 else {0, (k + 3) // 4}
        assert changed == expected, (k, changed)


def _dit_inputs(model: IdentityAwareDiT, n: int = 2, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    cfg = model.backbone.config
    f, h, w = 3, 8, 12
    latents = torch.randn(1, cfg.in_channels, f, h, w, generator=g)
    text = torch.randn(1, TEXT_TOKENS, cfg.text_dim, generator=g)
    text[:, 20:] = 0  # a prompt of 20 tokens, zero-padded as umT5 embeddings are
    image = torch.randn(1, 257, cfg.image_dim, generator=g)  # as many image tokens as CLIP ViT-H gives
    audio = torch.randn(1, n, 9, 5, model.adapter.config.audio_layers, model.adapter.config.audio_channels, generator=g)
    faces = torch.randn(1, n, 17, model.adapter.config.face_channels, generator=g)
    masks = torch.zeros(1, n, h // 2, w // 2)
    masks[:, 0, :, :3], masks[:, 1, :, 3:] = 1, 1
    return latents, torch.tensor([500.0]), text, image, audio, faces, masks


def _tiny_model(live: bool) -> IdentityAwareDiT:
    config = load_run_config(TINY)
    torch.manual_seed(0)
    model = build_model(config, FrozenEncoders(config.model)).eval()
    if live:  # past step 0: AFCA's values have learnt
        for kv in model.adapter.afca:
            torch.nn.init.normal_(kv.v_face.weight, std=0.2)
            torch.nn.init.normal_(kv.v_audio.weight, std=0.2)
    return model


def test_a_new_adapter_leaves_the_backbone_unchanged_bit_for_bit() -> None:
    """AFCA contributing nothing (zero values, as a start from a bare Wan backbone): the model's
    own block loop computes exactly what diffusers' WanTransformer3DModel computes."""
    model = _tiny_model(live=False)
    latents, t, text, image, *_ = inputs = _dit_inputs(model)
    with torch.no_grad():
        with_afca = model(*inputs)
        backbone_only = model.backbone(latents, t, text, encoder_hidden_states_image=image, return_dict=False)[0]
    torch.testing.assert_close(with_afca, backbone_only, rtol=0, atol=0)


def _image_token_effect(model: IdentityAwareDiT, token: int) -> float:
    inputs = list(_dit_inputs(model))
    with torch.no_grad():
        before = model(*inputs)
        inputs[3] = inputs[3].clone()
        inputs[3][:, token] = 3 * torch.randn(inputs[3].shape[-1], generator=torch.Generator().manual_seed(token))
        return float((model(*inputs) - before).abs().max())


@pytest.mark.parametrize("token", [0, 200, 256])
def test_every_image_token_reaches_the_image_keys_and_only_them(token: int) -> None:
    """257 image tokens beside 512 text tokens: each image token changes the output, and only
    through the image keys and values (with the image values zeroed it changes nothing; the
    hooked model of before sent tokens 34..256 through the text branch instead)."""
    model = _tiny_model(live=True)
    assert _image_token_effect(model, token) > 1e-4
    for block in model.backbone.blocks:
        torch.nn.init.zeros_(block.attn2.add_v_proj.weight)
        torch.nn.init.zeros_(block.attn2.add_v_proj.bias)
    assert _image_token_effect(model, token) == 0.0


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    grads = []
    for checkpointing in (False, True):
        model = _tiny_model(live=True).train()
        if checkpointing:
            model.enable_gradient_checkpointing()
        model(*_dit_inputs(model)).square().mean().backward()
        grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 50
    assert any(k.startswith("adapter.afca.") for k in grads[0])
    for k in grads[0]:
        torch.testing.assert_close(grads[1][k], grads[0][k], rtol=1e-5, atol=1e-6)


def test_model_folder_and_encoders_round_trip_in_their_real_formats(tmp_path: Path) -> None:
    from model.pipeline import TalkingVideoPipeline

    config = load_run_config(TINY)
    init_model(config, tmp_path / "model")
    for part in ("transformer/config.json", "adapter/diffusion_pytorch_model.safetensors", "anytalker.yaml"):
        assert (tmp_path / "model" / part).is_file(), part
    first = TalkingVideoPipeline.from_pretrained(tmp_path / "model")
    again = TalkingVideoPipeline.from_pretrained(tmp_path / "model")
    inputs = _dit_inputs(first.model)
    with torch.no_grad():
        torch.testing.assert_close(again.model(*inputs), first.model(*inputs), rtol=0, atol=0)
    # frozen encoders: saved as diffusers / transformers folders, loaded back through `pretrained`
    encoders = first.encoders
    encoders.vae.save_pretrained(tmp_path / "vae")
    encoders.audio.save_pretrained(tmp_path / "wav2vec2")
    encoders.face.save_pretrained(tmp_path / "image_encoder")
    folders = {"vae": {"pretrained": str(tmp_path / "vae")}, "audio_encoder": {"pretrained": str(tmp_path / "wav2vec2")},
               "face_encoder": {"pretrained": str(tmp_path / "image_encoder")}}  # fmt: skip
    reloaded = FrozenEncoders(config.model.model_copy(update={k: type(config.model.vae)(**v) for k, v in folders.items()}))
    video = torch.randint(0, 255, (1, 9, 3, 64, 96), dtype=torch.uint8)
    audio = torch.randn(1, 2, 5760)
    torch.testing.assert_close(reloaded.latents(video), encoders.latents(video))
    torch.testing.assert_close(reloaded.audio_windows(audio, 9), encoders.audio_windows(audio, 9))
    torch.testing.assert_close(reloaded.image_tokens(video[:, 0]), encoders.image_tokens(video[:, 0]))


def test_text_is_umt5_padded_to_512_and_cached(tmp_path: Path) -> None:
    from transformers import ByT5Tokenizer, UMT5Config, UMT5EncoderModel

    from model.config import TextEncoderConfig
    from model.text import prompt_embeddings

    config = load_run_config(TINY).model
    torch.manual_seed(1)  # a real umT5 folder and tokenizer folder, loaded with from_pretrained
    UMT5EncoderModel(UMT5Config(**config.text_encoder.random_config)).save_pretrained(tmp_path / "text_encoder")
    ByT5Tokenizer().save_pretrained(tmp_path / "tokenizer")
    config = config.model_copy(update={"text_encoder": TextEncoderConfig(pretrained=str(tmp_path / "text_encoder"))})
    first = prompt_embeddings(config, tmp_path / "cache")
    assert set(first) == {"null", "talking", "negative"}
    length = len(config.prompts.talking.encode()) + 1  # bytes + </s>
    assert first["talking"].shape == (TEXT_TOKENS, 32)
    assert first["talking"][:length].abs().sum(-1).min() > 0 and first["talking"][length:].abs().max() == 0
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 1
    torch.testing.assert_close(prompt_embeddings(config, tmp_path / "cache")["negative"], first["negative"])


@pytest.fixture(scope="module")
def tiny_shards(shared_curated: Path, tmp_path_factory) -> Path:
    """A tiny shard set from the real accepted clips: 9-frame samples, small cells."""
    from flows.build_shards import build_shards

    folder = tmp_path_factory.mktemp("tiny-shards")
    config = folder / "shards.yaml"
    config.write_text("compose:\n  frames: 9\n  cell_width: 96\n  cell_height: 112\n  single_windows: 4\n"
                      "shards:\n  max_samples: 8\n  val_share: 0.3\n")  # fmt: skip
    build_shards(str(shared_curated), str(folder / "set"), None, 0, str(config))
    return folder / "set"


def _train(shards: Path, out: Path, steps: int) -> subprocess.Popen:
    """`anytalker train` in its own process group, on the session's Prefect server."""
    environ = session_prefect_env()
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
    import csv

    rows = [r for p in sorted((out / "logs").glob("version_*/metrics.csv")) for r in csv.DictReader(open(p))]
    val = [float(r["val/loss"]) for r in rows if r.get("val/loss")]
    assert val and all(np.isfinite(val)), "validation never ran on the val split"
    assert (out / "model" / "anytalker.yaml").is_file()


def test_encoded_shards_give_the_same_loss_as_encoding_on_the_fly(prefect_server, shared_videos: Path, tmp_path: Path) -> None:
    """`anytalker shards encode` stores the frozen encoders' outputs; training on them computes
    the same flow-matching loss as encoding in the step (float16 features: a small tolerance)."""
    from test_shards import _tiny_sample

    from flows.encode_shards import encode_shards
    from model.flow_matching import TalkingVideoModule
    from shards.codec import decode_video
    from shards.reader import ReaderConfig, collate, make_dataset
    from shards.writer import ShardWriter, shard_urls, write_index

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


RUN_CONFIGS = sorted(p.name for p in (ROOT / "configs").glob("*.yaml") if p.name != "evaluate.yaml")  # tests/test_evaluation.py


@pytest.mark.parametrize("name", RUN_CONFIGS)
def test_every_shipped_config_is_valid(name: str) -> None:
    config = load_run_config(ROOT / "configs" / name)
    assert config.model.fps == 24 and config.train.val_timesteps
