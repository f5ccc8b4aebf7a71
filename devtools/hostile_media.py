"""Hostile inputs for the tests: audio that asks a decoder for gigabytes, images in formats we do not accept under
names we do, JSON nested past any parser's stack. Each is small and made here from real encoders."""
from __future__ import annotations

import io
import struct

import numpy as np

LAYOUTS = {1: "mono", 2: "stereo", 8: "7.1"}


def flac(rate: int, channels: int, seconds: int = 1, declared_s: float | None = None) -> bytes:
    """`seconds` of FLAC silence at `rate` Hz (FLAC allows up to 655,350) and `channels` (1, 2 or 8); the header's
    sample count says `declared_s` seconds when given (a header that lies)."""
    import av

    layout = LAYOUTS[channels]
    buf = io.BytesIO()
    with av.open(buf, "w", format="flac") as c:
        s = c.add_stream("flac", rate=rate, layout=layout)
        block = np.zeros((1, rate * channels), dtype=np.int16)
        for i in range(seconds):
            f = av.AudioFrame.from_ndarray(block, format="s16", layout=layout)
            f.sample_rate, f.pts = rate, i * rate
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    data = bytearray(buf.getvalue())
    if declared_s is not None:  # STREAMINFO: rate(20) channels-1(3) bits-1(5) total samples(36), at byte 18
        packed = struct.unpack(">Q", data[18:26])[0]
        packed = (packed & ~((1 << 36) - 1)) | int(declared_s * rate)
        data[18:26] = struct.pack(">Q", packed)
    return bytes(data)


def wav(rate: int = 16000, channels: int = 1, seconds: float = 1.0) -> bytes:
    """A PCM WAV of quiet noise with any channel count (the format allows 65,535)."""
    import wave

    n = int(rate * seconds)
    pcm = (np.random.default_rng(0).standard_normal((n, channels)) * 300).astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def image(fmt: str, size: int = 256) -> bytes:
    """A real image in a Pillow format we do not accept (TIFF, BMP, GIF, ...)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (180, 140, 120)).save(buf, fmt)
    return buf.getvalue()


def aiff(rate: int = 16000, seconds: float = 1.0) -> bytes:
    """AIFF speech-like noise: audio FFmpeg reads, in a container we do not accept."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="aiff") as c:
        s = c.add_stream("pcm_s16be", rate=rate, layout="mono")
        f = av.AudioFrame.from_ndarray(wav_samples(rate, seconds), format="s16", layout="mono")
        f.sample_rate, f.pts = rate, 0
        for p in s.encode(f):
            c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return buf.getvalue()


def wav_samples(rate: int, seconds: float) -> np.ndarray:
    n = int(rate * seconds)
    t = np.arange(n) / rate
    return (np.sin(2 * np.pi * 220 * t) * 8000).astype(np.int16)[None, :]


def nested_json(depth: int, key: str | None = None) -> bytes:
    """JSON nested `depth` deep: an array, or an object chain under `key`."""
    if key is None:
        return b"[" * depth + b"]" * depth
    return (f'{{"{key}":' * depth + "1" + "}" * depth).encode()
