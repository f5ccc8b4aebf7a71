"""MP4 writing with PyAV: H.264 yuv420p + AAC, frames streamed into the encoder one at a time.

The file is written under a temporary name and renamed when complete, so a cancelled or failed encode never
leaves a half-written MP4 behind. Audio is interleaved with the video as it goes, so the muxer holds no more
than a frame's worth of either in memory.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Iterable

import av
import numpy as np

from .audio import Audio, resample

AAC_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@dataclass(frozen=True)
class VideoInfo:
    path: str
    width: int
    height: int
    fps: float
    n_frames: int
    duration: float  # of the video stream
    video_codec: str
    pix_fmt: str
    audio_codec: str | None
    audio_duration: float | None
    metadata: dict


def encode_mp4(frames: Iterable[np.ndarray], path: str, *, fps: float, width: int, height: int, n_frames: int,
               audio: Audio | None = None, crf: int = 18, preset: str = "medium", metadata: dict | None = None,
               progress: Callable[[int, int], None] | None = None) -> VideoInfo:
    """Encode `n_frames` RGB uint8 frames (any size >= width x height; cropped to even width x height)."""
    width, height = width - width % 2, height - height % 2
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.part"
    rate = Fraction(fps).limit_denominator(1001)
    try:
        with av.open(tmp, mode="w", format="mp4", options={"movflags": "+faststart+use_metadata_tags"}) as out:
            out.metadata.update(metadata or {})
            video = out.add_stream("libx264", rate=rate)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            video.codec_context.time_base = 1 / rate
            video.options = {"crf": str(int(crf)), "preset": preset}
            feeder = _AudioFeeder(out, audio) if audio is not None else None
            done = 0
            for i, rgb in enumerate(frames):
                if i >= n_frames:
                    break
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:height, :width]), format="rgb24")
                frame.pts = i
                out.mux(video.encode(frame))
                done = i + 1
                if feeder:
                    feeder.feed_until((i + 1) / fps)
                if progress:
                    progress(done, n_frames)
            if done != n_frames:
                raise ValueError(f"expected {n_frames} frames, got {done}")
            out.mux(video.encode(None))
            if feeder:
                feeder.finish()
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return probe_video(path)


class _AudioFeeder:
    """Feeds an Audio to an AAC stream in slices that keep pace with the video."""

    CHUNK = 4096

    def __init__(self, out: av.container.OutputContainer, audio: Audio):
        samples, rate = audio.samples, audio.sample_rate
        if samples.shape[0] > 2:
            samples = samples[:2]
        if rate not in AAC_RATES:
            samples, rate = resample(samples, rate, 48000), 48000
        self.samples, self.rate = np.ascontiguousarray(samples, dtype=np.float32), rate
        self.layout = "mono" if samples.shape[0] == 1 else "stereo"
        self.stream = out.add_stream("aac", rate=rate, layout=self.layout)
        self.stream.codec_context.time_base = Fraction(1, rate)
        self.out, self.pos = out, 0

    def feed_until(self, seconds: float) -> None:
        end = min(self.samples.shape[1], int(round(seconds * self.rate)))
        while self.pos < end:
            n = min(self.CHUNK, end - self.pos)
            frame = av.AudioFrame.from_ndarray(self.samples[:, self.pos:self.pos + n], format="fltp",
                                               layout=self.layout)
            frame.sample_rate, frame.pts = self.rate, self.pos
            self.out.mux(self.stream.encode(frame))
            self.pos += n

    def finish(self) -> None:
        self.feed_until(self.samples.shape[1] / self.rate)
        self.out.mux(self.stream.encode(None))


def probe_video(path: str) -> VideoInfo:
    with av.open(path) as c:
        v = c.streams.video[0]
        a = c.streams.audio[0] if c.streams.audio else None
        fps = float(v.average_rate or v.guessed_rate or 0)
        n = v.frames or sum(1 for _ in c.demux(v) if _.size)
        vdur = float(v.duration * v.time_base) if v.duration else n / fps
        adur = float(a.duration * a.time_base) if a is not None and a.duration else None
        return VideoInfo(path=path, width=v.codec_context.width, height=v.codec_context.height, fps=fps, n_frames=n,
                         duration=vdur, video_codec=v.codec_context.name, pix_fmt=str(v.codec_context.pix_fmt),
                         audio_codec=a.codec_context.name if a is not None else None, audio_duration=adur,
                         metadata=dict(c.metadata))
