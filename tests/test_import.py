"""Importing the released AnyTalker checkpoints: every official tensor has exactly one place in the
project's model, and an imported model computes a block as the README's equations say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import SHARED
from diffusers import WanTransformer3DModel

from model.config import load_run_config
from model.dit import IdentityAdapter, IdentityAwareDiT, identity_block
from model.official import ImportRefused, ImportShape, import_checkpoint, official_name

ROOT = Path(__file__).resolve().parents[1]
SHARED_ANYTALKER = SHARED / "anytalker"
TSV = SHARED_ANYTALKER / "official-1.3B-state-dict.tsv"


@pytest.fixture(scope="module")
def official_names() -> list[tuple[str, tuple[int, ...]]]:
    if not TSV.is_file():
        pytest.skip(f"../shared/anytalker is not here ({TSV}); CI has it, a user's machine may not")
    rows = [line.rstrip("\n").split("\t") for line in TSV.read_text().splitlines() if line.strip()]
    return [(name, tuple(int(d) for d in shape.strip("[]").split(","))) for name, shape in rows]


def test_every_official_tensor_maps_to_exactly_one_tensor_of_the_1_3b_model(official_names) -> None:
    config = load_run_config(ROOT / "configs" / "1.3B.yaml").model
    with torch.device("meta"):
        parts = {
            "transformer": WanTransformer3DModel(**config.backbone.model_dump()),
            "adapter": IdentityAdapter(dim=1536, num_layers=30, audio_layers=12, audio_channels=768, face_channels=1280),
        }
    ours = {(part, k): tuple(v.shape) for part, m in parts.items() for k, v in m.state_dict().items()}
    mapped = {}
    for name, shape in official_names:
        target = official_name(name)
        assert target not in mapped, f"{name} and {mapped.get(target)} map to one tensor"
        mapped[target] = name
        assert ours.get(target) == shape, (name, target, shape, ours.get(target))
    assert len(official_names) == 1299
    assert set(mapped) == set(ours), sorted(set(ours) ^ set(mapped))[:5]
    counts = {part: sum(p == part for p, _ in mapped) for part in parts}
    assert counts == {"transformer": 983, "adapter": 316}


# the 1.3B sizes -> small ones, every size distinct, so one table rescales every official shape
SMALL = {1536: 32, 4096: 24, 256: 16, 9216: 192, 1280: 40, 8960: 48, 46080: 80, 512: 20, 49152: 1024}


def _small_official_state_dict(official_names, layers: int = 2) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    state = {}
    for name, shape in official_names:
        if name.startswith("blocks.") and int(name.split(".")[1]) >= layers:
            continue
        shape = tuple(SMALL.get(d, d) for d in shape)
        if "norm" in name and name.endswith("weight"):
            state[name] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            state[name] = 0.2 * torch.randn(shape, generator=g)
    return state


def _rms(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    b, lq, d = q.shape
    split = lambda x: x.view(b, x.shape[1], heads, d // heads).transpose(1, 2)  # noqa: E731
    w = (split(q) @ split(k).transpose(-1, -2) / (d // heads) ** 0.5).softmax(-1)
    return (w @ split(v)).transpose(1, 2).reshape(b, lq, d)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, heads: int) -> torch.Tensor:
    b, l, d = x.shape
    pairs = torch.view_as_complex(x.view(b, l, heads, d // heads // 2, 2).double().contiguous())
    rot = torch.polar(torch.ones_like(cos[..., 0::2]), torch.atan2(sin[..., 0::2], cos[..., 0::2]))[:, None]  # (L, 1, d/2)
    return torch.view_as_real(pairs * rot).flatten(3).flatten(2).float()


def _readme_block(sd: dict, i: int, x, e, text, image, face, audio, masks, rotary, heads: int):
    """One block of the official model written from ../shared/anytalker/README.md and Wan's
    block: the cross attention's one query serves text, image and AFCA, one output projection."""
    p = lambda n: sd[f"blocks.{i}.{n}"]  # noqa: E731
    lin = lambda n, t: F.linear(t, p(f"{n}.weight"), p(f"{n}.bias"))  # noqa: E731
    shift, scale, gate, c_shift, c_scale, c_gate = (p("modulation") + e).chunk(6, dim=1)
    d = x.shape[-1]
    y = F.layer_norm(x, (d,), eps=1e-6) * (1 + scale) + shift
    q = _rope(_rms(lin("self_attn.q", y), p("self_attn.norm_q.weight")), *rotary, heads)
    k = _rope(_rms(lin("self_attn.k", y), p("self_attn.norm_k.weight")), *rotary, heads)
    x = x + lin("self_attn.o", _attend(q, k, lin("self_attn.v", y), heads)) * gate
    z = F.layer_norm(x, (d,), p("norm3.weight"), p("norm3.bias"), eps=1e-6)
    q = _rms(lin("cross_attn.q", z), p("cross_attn.norm_q.weight"))
    out = _attend(q, _rms(lin("cross_attn.k", text), p("cross_attn.norm_k.weight")), lin("cross_attn.v", text), heads)
    out = out + _attend(q, _rms(lin("cross_attn.k_img", image), p("cross_attn.norm_k_img.weight")),
                        lin("cross_attn.v_img", image), heads)  # fmt: skip
    hh, ww = masks.shape[2:]
    f = x.shape[1] // (hh * ww)
    qf = q.view(q.shape[0], f, hh * ww, d)
    for n in range(face.shape[1]):
        kf = _rms(lin("cross_attn.k_face", face[:, n]), p("cross_attn.norm_k_face.weight"))
        ka = _rms(lin("cross_attn.k_audio", audio[:, n]), p("cross_attn.norm_k_audio.weight"))
        vf, va = lin("cross_attn.v_face", face[:, n]), lin("cross_attn.v_audio", audio[:, n])
        for j in range(f):  # latent frame 0: all audio; j >= 1: video frames 4(j-1)+1 .. 4j
            span = slice(None) if j == 0 else slice(4 * (j - 1) + 1, 4 * j + 1)
            keys = torch.cat([kf, ka[:, span].flatten(1, 2)], 1)
            values = torch.cat([vf, va[:, span].flatten(1, 2)], 1)
            a = _attend(qf[:, j], keys, values, heads) * masks[:, n].flatten(1)[..., None]
            out = out + F.pad(a, (0, 0, j * hh * ww, (f - 1 - j) * hh * ww))
    x = x + lin("cross_attn.o", out)
    y = F.layer_norm(x, (d,), eps=1e-6) * (1 + c_scale) + c_shift
    return x + lin("ffn.2", F.gelu(lin("ffn.0", y), approximate="tanh")) * c_gate


@pytest.fixture(scope="module")
def imported(official_names, tmp_path_factory) -> tuple[dict, Path]:
    state = _small_official_state_dict(official_names)
    folder = tmp_path_factory.mktemp("import")
    torch.save({"model": state}, folder / "small-official.pth")
    encoders = load_run_config(ROOT / "configs" / "tiny.yaml").model
    result = import_checkpoint(folder / "small-official.pth", folder / "model", encoders, ImportShape(head_dim=8, audio_layers=2))
    assert sum(result["tensors"].values()) == len(state)
    return state, folder / "model"


def test_an_imported_model_computes_a_block_as_the_readme_says(imported) -> None:
    state, folder = imported
    model = IdentityAwareDiT.from_pretrained(folder).eval()
    d, heads = 32, 4
    g = torch.Generator().manual_seed(1)
    f, h, w, n = 3, 4, 6, 2
    x = torch.randn(1, f * h * w, d, generator=g)
    e = 0.3 * torch.randn(1, 6, d, generator=g)
    text, image = torch.randn(1, 512, d, generator=g), torch.randn(1, 257, d, generator=g)
    face = torch.randn(1, n, 257, d, generator=g)
    audio = torch.randn(1, n, 4 * (f - 1) + 1, 32, d, generator=g)
    masks = torch.zeros(1, n, h, w)
    masks[:, 0, :, :4], masks[:, 1, :, 2:] = 0.7, 1.0  # soft and overlapping, as their masks are
    rotary = model.backbone.rope(torch.zeros(1, 36, f, 2 * h, 2 * w))
    diffs = []
    with torch.no_grad():
        for i in range(2):
            ours = identity_block(model.backbone.blocks[i], model.adapter.afca[i], x, text, image, e, rotary, face,
                                  audio, masks, (f, h, w))  # fmt: skip
            cos, sin = (r[0, :, 0] for r in rotary)
            ref = _readme_block(state, i, x, e, text, image, face, audio, masks, (cos, sin), heads)
            diffs.append(float((ours - ref).abs().max()))
    print(f"imported block vs README equations: max abs difference {max(diffs):.2e}")
    assert max(diffs) < 1e-4, diffs


def test_imported_projections_are_theirs(imported) -> None:
    state, folder = imported
    adapter = IdentityAdapter.from_pretrained(folder / "adapter").eval()
    g = torch.Generator().manual_seed(2)
    windows = torch.randn(1, 7, 5, 2, 8, generator=g)
    lin = lambda n, t: F.linear(t, state[f"{n}.weight"], state[f"{n}.bias"])  # noqa: E731
    a = F.relu(lin("audio_emb.proj2", F.relu(lin("audio_emb.proj1", windows.flatten(-3)))))
    a = F.layer_norm(lin("audio_emb.proj3", a).unflatten(-1, (32, 32)), (32,), state["audio_emb.norm.weight"],
                     state["audio_emb.norm.bias"])  # fmt: skip
    tokens = torch.randn(1, 257, 40, generator=g)
    r = F.layer_norm(tokens, (40,), state["audio_ref_emb.proj.0.weight"], state["audio_ref_emb.proj.0.bias"])
    r = lin("audio_ref_emb.proj.3", F.gelu(lin("audio_ref_emb.proj.1", r)))
    r = F.layer_norm(r, (32,), state["audio_ref_emb.proj.4.weight"], state["audio_ref_emb.proj.4.bias"])
    with torch.no_grad():
        torch.testing.assert_close(adapter.audio_proj(windows), a, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(adapter.face_proj(tokens), r, rtol=1e-5, atol=1e-5)


def test_the_14b_layout_and_other_files_are_refused_clearly(tmp_path: Path) -> None:
    torch.save({"model": {"patch_embedding.weight": torch.zeros(1), "blocks.0.audio_cross_attn.q_linear.weight": torch.zeros(1)}},
               tmp_path / "14b.pth")  # fmt: skip
    encoders = load_run_config(ROOT / "configs" / "tiny.yaml").model
    with pytest.raises(ImportRefused, match="14B layout.*audio_cross_attn"):
        import_checkpoint(tmp_path / "14b.pth", tmp_path / "out", encoders)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ImportRefused, match="not a torch checkpoint"):
        import_checkpoint(tmp_path / "junk.pth", tmp_path / "out2", encoders)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


def test_the_import_command_says_what_is_wrong_without_a_traceback(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "anytalker", "model", "import", str(tmp_path / "missing.pth"),
                           "--out", str(tmp_path / "m"), "-c", str(ROOT / "configs" / "tiny.yaml")],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 2 and "checkpoint not found" in proc.stderr and "Traceback" not in proc.stderr
