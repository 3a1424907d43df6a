"""Curation stages: plain typed functions on plain records, usable without Prefect.

Import direction (see DESIGN.md): flows -> tasks -> shards. Nothing here imports `flows` or `model`.
"""
