"""Bytes in and out of the shard members: H.264 mp4, 16-bit PCM wav, JPEG, npy, JSON.

The writer side (tasks/) encodes with these and the reader decodes with these, so the two can
never disagree on a format. Video is encoded in memory with PyAV (no temporary files); it is
H.264 yuv420p, which every decoder a trainer might use reads.
"""

from __future__ import annotations

import io
import json
import wave

import av
import cv2
import numpy as np


def encode_video(frames: np.ndarray, fps: float, crf: int = 20, preset: str = "veryfast") -> bytes:
    """(T, H, W, 3) uint8 RGB, H and W even, to an mp4 (H.264, yuv420p). Readers get the whole
    member from the tar, so the index at the end (no +faststart, which needs a file) costs nothing."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=_rate(fps))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": preset}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode(None))
    return buf.getvalue()


def _rate(fps: float):
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001)


def decode_video(data: bytes, size: tuple[int, int] | None = None, limit: int | None = None) -> tuple[np.ndarray, float]:
    """mp4 bytes to (T, H, W, 3) uint8 RGB and fps; `size` (H, W) scales in the decoder's scaler;
    `limit` stops after that many frames."""
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        kwargs = {"height": size[0], "width": size[1]} if size else {}
        frames = []
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24", **kwargs))
            if limit is not None and len(frames) >= limit:
                break
        fps = float(stream.average_rate or 25)
    return np.stack(frames), fps


def encode_wav(audio: np.ndarray, rate: int) -> bytes:
    """float32 mono in [-1, 1] to 16-bit PCM wav."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).round().astype("<i2").tobytes())
    return buf.getvalue()


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    with wave.open(io.BytesIO(data), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError("shard audio must be 16-bit mono PCM")
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32767, w.getframerate()


def encode_jpg(image: np.ndarray, quality: int = 92) -> bytes:
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(image[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return data.tobytes()


def decode_jpg(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1].copy()


def encode_npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def decode_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def encode_json(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, default=_plain).encode()


def _plain(value: object) -> object:
    """numpy scalars and arrays as JSON numbers and lists."""
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def decode_json(data: bytes) -> dict:
    return json.loads(data)
