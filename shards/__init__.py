"""The data contract between curation and training: sample schema, codecs, shard writer and
training reader (WebDataset). README.md in this folder is the contract in words."""
