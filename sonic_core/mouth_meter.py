"""Mouth-opening track of a video, measured with MediaPipe FaceMesh. Runs in the meter's own venv, not SonicFlow's.

    python mouth_meter.py VIDEO   ->   one JSON object on stdout:
    {"fps": 25.0, "times": [seconds on the file's timeline, per frame], "mouth": [opening or null, per frame]}

This file imports nothing from SonicFlow: mediapipe 0.10.21 (the last release that ships FaceMesh's models in its
wheel) needs numpy<2 and protobuf<5, so it lives in a side venv (sonic_core/sync_venv.py) and this script is
started with that venv's Python. Face finding and landmarks thus come from a model no SonicFlow engine uses.

Per frame: a square crop around the face (where it was on the previous frame; on the first frame, and whenever it
is lost, found by MediaPipe's face detector on tiles of the frame, so a small face in a large frame is found), then
FaceMesh in static-image mode: each frame is measured on its own, with no tracking or smoothing that could delay
the track. The opening is the mouth aspect ratio: the mean gap of three inner-lip landmark pairs over the distance
between the inner mouth corners, so it does not depend on the face's size in the picture, and a mouth that
narrows as it opens (rounded vowels) reads as more open.
"""
from __future__ import annotations

import json
import sys

import av
import mediapipe as mp
import numpy as np

INNER_LIP_PAIRS = ((82, 87), (13, 14), (312, 317))   # upper / lower inner-lip points: left, centre, right
INNER_CORNERS = (78, 308)                             # the inner corners of the mouth
CROP_SCALE = 2.2        # crop side / face size: the whole head, with room to move for one frame
TILE_SCALES = (1.0, 0.5, 0.25)   # detector tiles, as a fraction of the frame's short side, largest first


def _starts(length: int, side: int) -> np.ndarray:
    """Tile origins along one axis: overlapping by half a tile, the last one flush with the far edge."""
    n = 1 if length <= side else int(np.ceil((length - side) / (side / 2))) + 1
    return np.linspace(0, max(0, length - side), n).astype(int)


def _detect(rgb: np.ndarray, detector) -> tuple[float, float, float] | None:
    """(centre x, centre y, size) in pixels of the most confident face, scanning ever smaller tiles."""
    H, W = rgb.shape[:2]
    for scale in TILE_SCALES:
        side = max(64, int(min(H, W) * scale))
        best = None
        for y in _starts(H, side):
            for x in _starts(W, side):
                tile = np.ascontiguousarray(rgb[y:y + side, x:x + side])
                th, tw = tile.shape[:2]
                for d in detector.process(tile).detections or []:
                    b = d.location_data.relative_bounding_box
                    if best is None or d.score[0] > best[0]:
                        best = (d.score[0], x + (b.xmin + b.width / 2) * tw, y + (b.ymin + b.height / 2) * th,
                                max(b.width * tw, b.height * th))
        if best is not None:
            return best[1:]
    return None


def _crop(rgb: np.ndarray, face: tuple[float, float, float]) -> tuple[np.ndarray, int, int]:
    cx, cy, size = face
    half = CROP_SCALE * size / 2
    H, W = rgb.shape[:2]
    x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
    x1, y1 = int(min(W, cx + half)), int(min(H, cy + half))
    return np.ascontiguousarray(rgb[y0:y1, x0:x1]), x0, y0


def _measure(rgb: np.ndarray, face, mesh) -> tuple[float, tuple[float, float, float]] | None:
    """(opening, face found in frame coordinates) from the crop around `face`, or None when FaceMesh finds none."""
    crop, x0, y0 = _crop(rgb, face)
    if crop.size == 0:
        return None
    found = mesh.process(crop).multi_face_landmarks
    if not found:
        return None
    h, w = crop.shape[:2]
    pts = np.array([(p.x * w, p.y * h) for p in found[0].landmark])
    width = np.linalg.norm(pts[INNER_CORNERS[0]] - pts[INNER_CORNERS[1]])
    gap = np.mean([np.linalg.norm(pts[a] - pts[b]) for a, b in INNER_LIP_PAIRS])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    return float(gap / max(width, 1e-6)), (x0 + (lo[0] + hi[0]) / 2, y0 + (lo[1] + hi[1]) / 2, float(max(hi - lo)))


def mouth_track(path: str) -> dict:
    with av.open(path) as container, \
            mp.solutions.face_detection.FaceDetection(model_selection=0, min_detection_confidence=0.5) as detector, \
            mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1) as mesh:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        face, times, mouth, t0, search_at = None, [], [], None, 0
        for i, frame in enumerate(container.decode(stream)):
            t = float(frame.time) if frame.time is not None else i / fps
            t0 = t if t0 is None else t0
            times.append(t - t0 + start)
            rgb = frame.to_ndarray(format="rgb24")
            result = _measure(rgb, face, mesh) if face is not None else None
            if result is None and i >= search_at:   # no face yet, or lost: look on the whole frame
                face = _detect(rgb, detector)
                result = _measure(rgb, face, mesh) if face is not None else None
                search_at = i if result is not None else i + max(1, round(fps))   # a tiled search is slow
            if result is None:
                face = None
                mouth.append(None)
            else:
                value, face = result
                mouth.append(value)
    return {"fps": fps, "times": times, "mouth": mouth}


if __name__ == "__main__":
    json.dump(mouth_track(sys.argv[1]), sys.stdout)
