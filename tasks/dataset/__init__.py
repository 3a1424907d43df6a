"""Dataset building: the catalog's clips as a library, identities and their split, stage-1
composites, stage-2 real multi-person clips, and the plan of a shard set."""
