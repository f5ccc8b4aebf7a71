"""Small media-making helpers shared by the unit tests (PyAV encoders, hand-made WAV/PNG files)."""
from __future__ import annotations

import os
import struct
import wave
import zlib

import av
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE_AUDIO = os.path.join(ROOT, "sample_media", "speech.wav")
EXAMPLE_IMAGE = os.path.join(ROOT, "sample_media", "portrait.png")
EXAMPLE_DURATION = 9.91  # seconds of sample_media/speech.wav

# extension -> (container format, audio codec) for the audio files load_audio must read
AUDIO_FORMATS = {
    "wav": ("wav", "pcm_s16le"),
    "mp3": ("mp3", "libmp3lame"),
    "flac": ("flac", "flac"),
    "ogg": ("ogg", "libopus"),
    "m4a": ("ipod", "aac"),
}


def read_wav(path: str = EXAMPLE_AUDIO) -> tuple[np.ndarray, int]:
    """(channels, n) float32 samples and the rate of a 16-bit PCM WAV."""
    with wave.open(path, "rb") as w:
        raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        return (raw.reshape(-1, w.getnchannels()).T / 32768.0).astype(np.float32), w.getframerate()


def write_wav(path: str, samples: np.ndarray, rate: int) -> str:
    """16-bit PCM WAV of (channels, n) float samples (n may be 0: a valid header with no samples)."""
    samples = np.atleast_2d(samples)
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2").T.copy()
    with wave.open(path, "wb") as w:
        w.setnchannels(samples.shape[0])
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


def _add_audio(container, codec: str, samples: np.ndarray, rate: int):
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    return container.add_stream(codec, rate=rate, layout=layout)


def _encode_audio(container, stream, samples: np.ndarray, rate: int):
    layout = stream.layout.name
    resampler = av.AudioResampler(format=stream.format.name, layout=layout, rate=rate,
                                  frame_size=stream.codec_context.frame_size or 1024)
    pos = 0
    src = np.ascontiguousarray(samples, dtype=np.float32)
    while pos < src.shape[1]:
        chunk = np.ascontiguousarray(src[:, pos:pos + 4096])
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
        frame.sample_rate, frame.pts = rate, pos
        pos += chunk.shape[1]
        for f in resampler.resample(frame):
            container.mux(stream.encode(f))
    for f in resampler.resample(None):
        container.mux(stream.encode(f))
    container.mux(stream.encode(None))


def write_audio(path: str, samples: np.ndarray, rate: int, ext: str | None = None) -> str:
    """Encode (channels, n) float samples with the container/codec that `ext` (or the path's extension) stands for."""
    ext = ext or os.path.splitext(path)[1].lstrip(".")
    fmt, codec = AUDIO_FORMATS[ext]
    if codec == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
        raise ValueError("opus needs 8, 12, 16, 24 or 48 kHz")
    with av.open(path, "w", format=fmt) as c:
        _encode_audio(c, _add_audio(c, codec, samples, rate), samples, rate)
    return path


def write_video(path: str, n_frames: int = 25, size: tuple[int, int] = (64, 48), fps: int = 25,
                audio: tuple[np.ndarray, int] | None = None) -> str:
    """An MP4 of moving gradient frames (H.264), with an AAC track when `audio` = (samples, rate) is given."""
    w, h = size
    with av.open(path, "w", format="mp4") as c:
        v = c.add_stream("libx264", rate=fps)
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        v.options = {"preset": "ultrafast"}
        a = _add_audio(c, "aac", *audio) if audio is not None else None  # every stream before the first packet
        for i in range(n_frames):
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = (np.arange(w) * 4 + i * 8) % 256
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            c.mux(v.encode(frame))
        c.mux(v.encode(None))
        if a is not None:
            _encode_audio(c, a, *audio)
    return path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png_header_only(path: str, width: int, height: int) -> str:
    """A PNG that claims width x height (1-bit grey) with a tiny IDAT: costs bytes, not pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
                + _chunk(b"IEND", b""))
    return path


def grey_image(width: int = 256, height: int = 256, level: int = 128) -> np.ndarray:
    return np.full((height, width, 3), level, np.uint8)
