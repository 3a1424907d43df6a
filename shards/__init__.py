"""The data contract between curation and training (WebDataset shards). Built in a later issue."""
