"""The identity-aware DiT (Wan2.1 + Audio-Face Cross Attention) and its flow-matching training
with Lightning on Ray Train (DESIGN.md section 6). One file per part, diffusers style."""
