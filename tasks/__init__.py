"""The work of the pipeline: plain typed functions on plain records, usable without Prefect.

Three programs: `curation` (inputs -> analysed clips with verdicts), `dataset` (clips -> shard
plans) and `evaluation` (videos -> scores -> promotion). What they share lives here: the config,
the records, the catalog, the paths inside a work directory (`workdir`) and the models a process
loads once (`models`). Import direction (see DESIGN.md): flows -> tasks -> shards; nothing here
imports `flows` or `model`.
"""
