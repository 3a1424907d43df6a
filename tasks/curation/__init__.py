"""Curation: from what the user names (files, URLs, playlists, manifests) to analysed clips with a
verdict each: ingest and scraping, probe, shot split, the per-source chain, the standard clip,
verdicts, takedowns and recuts. `analysis/` holds the per-clip stages together."""
