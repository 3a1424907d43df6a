"""Who is who across clips: identity clusters from the face embeddings, and a train/validation
split by identity, so that no person is in both (a model must be judged on faces it never saw)."""

from __future__ import annotations

import hashlib

import numpy as np

from tasks.dataset.clip_library import LibraryClip


def assign_identities(clips: list[LibraryClip], threshold: float) -> dict[str, str]:
    """Clip id -> identity id. Clips whose embeddings have cosine >= `threshold` are joined
    (transitively); an identity is named after its first clip id, so names are stable."""
    with_emb = [c for c in clips if c.embedding is not None]
    parent = list(range(len(with_emb)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if with_emb:
        emb = np.stack([c.embedding / (np.linalg.norm(c.embedding) + 1e-9) for c in with_emb])
        sim = emb @ emb.T
        for i, j in zip(*np.nonzero(np.triu(sim >= threshold, k=1)), strict=True):
            parent[root(int(i))] = root(int(j))
    groups: dict[int, list[str]] = {}
    for i, clip in enumerate(with_emb):
        groups.setdefault(root(i), []).append(clip.clip_id)
    names = {}
    for members in groups.values():
        name = f"id-{min(members)}"
        names.update({m: name for m in members})
    for clip in clips:
        clip.identity = names.get(clip.clip_id, f"id-{clip.clip_id}")
    return {c.clip_id: c.identity for c in clips}


def _unit(identity: str, seed: int) -> float:
    return int.from_bytes(hashlib.sha256(f"{seed}:{identity}".encode()).digest()[:8], "big") / 2**64


def split_identities(identities: set[str], val_share: float, seed: int) -> dict[str, str]:
    """Identity -> 'train' or 'val'. An identity's side depends only on its name and the seed
    (a new clip never moves an old person across), with at least one validation identity when
    there are two or more and `val_share` > 0."""
    sides = {i: "val" if _unit(i, seed) < val_share else "train" for i in identities}
    if val_share > 0 and len(identities) >= 2 and "val" not in sides.values():
        sides[min(identities, key=lambda i: _unit(i, seed))] = "val"
    if len(identities) >= 2 and "train" not in sides.values():
        sides[max(identities, key=lambda i: _unit(i, seed))] = "train"
    return sides
