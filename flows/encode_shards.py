"""The encode_shards flow: run the frozen encoders once over a shard set and write a copy with
their outputs as extra members, so training reads latents and features instead of decoding
and encoding every step (DESIGN.md section 6; shards.schema.ENCODED).

Samples are read in shard order, decoded at the training size of the config (as the training
reader decodes them), encoded on the first GPU when there is one, and written to a new set
with the same keys and splits; the new set is atomic and resumable like any other.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from flows.progress import RunProgress
from shards.writer import ShardWriter, read_index, shard_urls, write_index


@flow(name="encode_shards", log_prints=True, persist_result=False)
def encode_shards(src: str, out: str, config_path: str) -> dict:
    import torch

    from model.config import load_run_config
    from model.flow_matching import TalkingVideoModule
    from shards.reader import DecodeSample, ReaderConfig, collate, iter_raw_samples
    from shards.schema import from_members

    logger = get_run_logger()
    config = load_run_config(config_path)
    module = TalkingVideoModule(config.model_dump(mode="json")).eval()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    module.to(device)
    d = config.data
    patch = module.model.patch_size
    decode = DecodeSample(ReaderConfig(height=d.height, width=d.width,
                                       latent_grid=(d.height // 8 // patch[1], d.width // 8 // patch[2])))  # fmt: skip
    index = read_index(src)
    total = sum(s["samples"] for s in index["splits"].values())
    progress = RunProgress(total, key="encode-progress", desc="samples", unit="sample",
                           description="Samples encoded, in percent")  # fmt: skip
    with ShardWriter(out) as writer, torch.no_grad():
        for split in index["splits"]:
            for key, members in iter_raw_samples(shard_urls(src, split)):
                if key not in writer.done_keys:
                    batch = collate([decode({"__key__": key, **members})])
                    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                    sample = from_members(key, members)
                    sample.encoded = {k: v.cpu().numpy() for k, v in module.encode_sample(batch).items()}
                    sample.meta["encoded"] = {"config": config_path, "height": d.height, "width": d.width}
                    writer.write(sample, split)
                progress.input_done()
    progress.close()
    result = write_index(out, {"encoded_from": src, "encoded_with": config.model.model_dump(mode="json")})
    logger.info("encoded %d samples into %s", total, out)
    return result
