"""PreData: everything the engines need from one portrait and one speech track, decided once.

The video lasts exactly as long as the audio it carries: `duration` only shortens the audio (0 = all of it),
and the frame count is derived from what remains.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .media.audio import Audio, check_speech
from .media.face import FaceBox, centre_face, detect_face
from .media.image import check_dimensions

FPS = 25.0  # Sonic's output rate (12.5 fps generated, RIFE x2); the lite engine uses the same

NO_FACE_MODES = ("error", "animate_centre")


@dataclass
class PreData:
    image: np.ndarray  # full portrait, RGB uint8, even width and height (H.264 4:2:0 needs them)
    face: FaceBox  # in `image` coordinates
    face_found: bool  # False when the centre of the image stands in for a face nobody found
    crop: tuple[int, int, int, int]  # official square crop around the face (x0, y0, x1, y1)
    working_size: tuple[int, int]  # (w, h) the crop is resized to for Sonic: short side = min_resolution
    audio: Audio  # exactly what the video carries
    fps: float
    n_frames: int
    min_resolution: int
    expand_ratio: float
    info: dict = field(default_factory=dict)  # provenance carried to the sidecar

    @property
    def duration(self) -> float:
        return self.audio.duration


def square_crop(box: tuple[float, float, float, float], width: int, height: int,
                expand_ratio: float) -> tuple[int, int, int, int]:
    """The official crop (process_bbox) around a face box (x0, y0, x1, y1), floats allowed: the box grown by
    expand_ratio per side (clamped to the image), then the largest square inside it, its centre moved toward the
    face centre by at most the slack. Each edge is rounded on its own, so the box can be 1 px off square, as
    officially."""
    fx1, fy1, fx2, fy2 = (float(v) for v in box)
    w, h = fx2 - fx1, fy2 - fy1
    ex1, ey1 = max(fx1 - expand_ratio * w, 0), max(fy1 - expand_ratio * h, 0)
    ex2, ey2 = min(fx2 + expand_ratio * w, width), min(fy2 + expand_ratio * h, height)
    ew, eh = ex2 - ex1, ey2 - ey1
    cx, cy = (ex1 + ex2) / 2, (ey1 + ey2) / 2
    half, slack = min(ew, eh) / 2, abs(eh - ew) / 2
    if ew < eh:  # only the longer axis has room to move toward the face
        fc = (fy1 + fy2) / 2
        cy += min(slack, abs(fc - cy)) * (1 if fc > cy else -1)
    else:
        fc = (fx1 + fx2) / 2
        cx += min(slack, abs(fc - cx)) * (1 if fc > cx else -1)
    return round(cx - half), round(cy - half), round(cx + half), round(cy + half)


def working_size(width: int, height: int, min_resolution: int) -> tuple[int, int]:
    """Official resolution rule: short side -> min_resolution, each side rounded to a multiple of 64."""
    scale = min_resolution / min(width, height)
    return (max(64, int(round(width * scale / 64)) * 64), max(64, int(round(height * scale / 64)) * 64))


def frame_count(duration: float, fps: float) -> int:
    return max(1, int(round(duration * fps)))


def prepare(image: np.ndarray, audio: Audio, *, min_resolution: int = 512, expand_ratio: float = 0.5,
            duration: float = 0.0, no_face: str = "error", fps: float = FPS) -> PreData:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError("image", f"expected an RGB picture, got an array of shape {image.shape}", "connect an IMAGE")
    h, w = image.shape[:2]
    check_dimensions(w, h)
    if no_face not in NO_FACE_MODES:
        raise InputError("no_face", f"unknown mode {no_face!r}", f"use one of {', '.join(NO_FACE_MODES)}")
    if duration < 0:
        raise InputError("duration", f"{duration} is negative", "use 0 for the whole audio, or a length in seconds")
    check_speech(audio)
    if duration and duration < audio.duration:
        audio = audio.trimmed(duration)
        check_speech(audio)
    image = image[: h - h % 2, : w - w % 2]
    face = detect_face(image)
    found = face is not None
    if not found:
        if no_face != "animate_centre":
            raise InputError("image", "no face found in the portrait",
                             "use a photo with one clearly visible frontal face, or set no_face to animate_centre",
                             code="no_face")
        face = centre_face(image)
    crop = square_crop((face.x0, face.y0, face.x1, face.y1), image.shape[1], image.shape[0], expand_ratio)
    return PreData(image=np.ascontiguousarray(image), face=face, face_found=found, crop=crop,
                   working_size=working_size(crop[2] - crop[0], crop[3] - crop[1], min_resolution), audio=audio,
                   fps=fps, n_frames=frame_count(audio.duration, fps), min_resolution=min_resolution,
                   expand_ratio=expand_ratio)
