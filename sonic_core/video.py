"""The whole job without ComfyUI: portrait + speech files -> MP4 (what `sonicflow generate` runs)."""
from __future__ import annotations

import os

import cv2

from .engines import generate
from .media.audio import load_audio
from .media.encode import VideoInfo, encode_mp4
from .media.image import load_image
from .options import GenerateOptions
from .predata import prepare
from .provenance import provenance_metadata
from .publish import sha256_file
from .publish.labels import label_frames_and_metadata


def make_video(image_path: str, audio_path: str, out_path: str, options: GenerateOptions | None = None, *,
               min_resolution: int = 512, expand_ratio: float = 0.5, duration: float = 0.0, no_face: str = "error",
               crf: int = 18, preset: str = "veryfast", frames_dir: str | None = None,
               labels: str = "visible+metadata", progress=None) -> VideoInfo:
    image, audio = load_image(image_path), load_audio(audio_path)
    pre = prepare(image, audio, min_resolution=min_resolution, expand_ratio=expand_ratio, duration=duration,
                  no_face=no_face)
    frames = generate(pre, options)
    frames.info["inputs"] = {"image_sha256": sha256_file(image_path), "audio_sha256": sha256_file(audio_path),
                             "min_resolution": min_resolution, "expand_ratio": expand_ratio, "duration": duration}
    stream, meta = label_frames_and_metadata(labels, iter(frames) if not frames_dir else _saving(frames, frames_dir),
                                             frames.fps, frames.width, frames.height)
    meta.update(provenance_metadata(frames.engine, frames.info))
    info = encode_mp4(stream, out_path, fps=frames.fps, width=frames.width, height=frames.height,
                      n_frames=len(frames), audio=pre.audio.fitted(frames.duration), crf=crf, preset=preset,
                      metadata=meta, progress=progress)
    return info


def _saving(frames, folder: str):
    """Pass frames through while writing each as a lossless PNG (for exact comparisons)."""
    os.makedirs(folder, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(os.path.join(folder, f"{i:06d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        yield frame
