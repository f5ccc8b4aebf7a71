"""The whole job without ComfyUI: portrait + speech files -> MP4 (what `sonicflow generate` runs)."""
from __future__ import annotations

import os

import cv2

from .engines import generate
from .media.audio import load_audio
from .media.encode import VideoInfo, encode_mp4
from .media.image import load_image
from .predata import prepare
from .provenance import provenance_metadata
from .publish.labels import label_frames_and_metadata
from .publish import sha256_file


def make_video(image_path: str, audio_path: str, out_path: str, *, engine: str = "auto", min_resolution: int = 512,
               expand_ratio: float = 0.5, duration: float = 0.0, no_face: str = "error", inference_steps: int = 25,
               dynamic_scale: float = 1.0, motion_scale: float = 1.0, seed: int = 0, crf: int = 18,
               preset: str = "veryfast", weight_roots: list[str] | None = None, ip_audio_scale: float = 1.0,
               interpolate: bool = True, dtype: str = "auto", device: str = "auto", paste_back: bool = False,
               crop_face: bool = True,
               frames_dir: str | None = None, labels: str = "visible+metadata", memory_mode: str = "auto",
               vram_budget_gb: float = 0.0, compile: bool | str = False, progress=None) -> VideoInfo:
    image, audio = load_image(image_path), load_audio(audio_path)
    pre = prepare(image, audio, min_resolution=min_resolution, expand_ratio=expand_ratio, duration=duration,
                  no_face=no_face)
    frames = generate(pre, engine, inference_steps=inference_steps, dynamic_scale=dynamic_scale,
                      motion_scale=motion_scale, seed=seed, weight_roots=weight_roots, ip_audio_scale=ip_audio_scale,
                      interpolate=interpolate, dtype=dtype, device=device, paste_back=paste_back, crop_face=crop_face,
                      memory_mode=memory_mode, vram_budget_gb=vram_budget_gb, compile=compile)
    frames.info["inputs"] = {"image_sha256": sha256_file(image_path), "audio_sha256": sha256_file(audio_path),
                             "min_resolution": min_resolution, "expand_ratio": expand_ratio, "duration": duration}
    stream, meta = label_frames_and_metadata(labels, iter(frames) if not frames_dir else _saving(frames, frames_dir),
                                             frames.fps, frames.width, frames.height)
    meta.update(provenance_metadata(frames.engine, frames.info))
    info = encode_mp4(stream, out_path, fps=frames.fps, width=frames.width, height=frames.height,
                      n_frames=len(frames), audio=pre.audio.fitted(frames.duration), crf=crf, preset=preset,
                      metadata=meta,
                      progress=progress)
    return info


def _saving(frames, folder: str):
    """Pass frames through while writing each as a lossless PNG (for exact comparisons)."""
    os.makedirs(folder, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(os.path.join(folder, f"{i:06d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        yield frame
