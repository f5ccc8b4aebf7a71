"""A weight-free lip-sync meter: how far a talking-head video's mouth is from its sound, in frames.

Method
------
1. Mouth track (one value per video frame): the face is found once on the first frames (detect_face +
   face_landmarks); a mouth ROI is set around the lip line, generous enough to hold an open mouth. Each frame
   the ROI is re-centred by template-matching the nose-to-upper-lip patch of the first face (that patch does
   not deform when the jaw moves), so head motion does not read as speech. The value is the mean darkness
   below a threshold (a fraction of the ROI's median brightness on the first frame): an open mouth shows a
   dark cavity, a closed one does not. Frames are decoded one at a time (bounded memory).
2. Speech envelope (one value per video frame): the RMS of the audio (the file's own track, or audio_path) over
   each frame's display interval [t_i, t_i + 1/fps), in dB, floored 45 dB below the loudest frame.
3. Both tracks are detrended (minus a 1 s moving average) and, for each lag k in [-max, +max], the Pearson
   correlation of mouth[t] with envelope[t - k] is taken over their overlap.

Sign convention: offset_frames is the lag with the highest correlation. Positive = the video LAGS the audio
(the mouth moves k frames after the sound); negative = the video leads. `peak` is that correlation (-1..1);
above ~0.5 the mouth clearly follows the sound, below ~0.3 it does not.
"""
from __future__ import annotations

from dataclasses import dataclass

import av
import cv2
import numpy as np
from scipy.ndimage import uniform_filter1d

from .errors import InputError
from .media.audio import load_audio
from .media.face import centre_face, detect_face, face_landmarks

_SR = 16000


@dataclass
class SyncReport:
    offset_frames: int
    peak: float
    fps: float
    n_frames: int
    mouth: np.ndarray
    envelope: np.ndarray

    def to_dict(self) -> dict:
        return {"offset_frames": self.offset_frames, "peak": self.peak, "fps": self.fps, "n_frames": self.n_frames,
                "offset_ms": 1000.0 * self.offset_frames / self.fps if self.fps else 0.0}


def _detrend(x: np.ndarray, fps: float) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x - uniform_filter1d(x, max(1, int(round(fps))), mode="nearest")


def sync_from_arrays(mouth: np.ndarray, envelope: np.ndarray, fps: float, max_offset_frames: int = 10) -> SyncReport:
    """Offset (positive = video lags) and peak Pearson correlation between per-frame mouth and envelope tracks."""
    n = min(len(mouth), len(envelope))
    m, e = _detrend(mouth[:n], fps), _detrend(envelope[:n], fps)
    best_k, best = 0, None
    for k in range(-max_offset_frames, max_offset_frames + 1):
        a, b = (m[k:], e[:n - k]) if k >= 0 else (m[:n + k], e[-k:])   # mouth[t] vs envelope[t - k]
        if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
            continue
        r = float(np.corrcoef(a, b)[0, 1])
        if best is None or r > best:
            best_k, best = k, r
    return SyncReport(best_k, 0.0 if best is None else best, float(fps), n,
                      np.asarray(mouth[:n], np.float32), np.asarray(envelope[:n], np.float32))


class _MouthMeter:
    """Per-frame mouth darkness in a ROI that follows the face (template match on the nose/upper lip)."""

    def __init__(self, rgb: np.ndarray):
        face = detect_face(rgb) or centre_face(rgb)
        lm = face_landmarks(rgb, face)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        H, W = gray.shape
        fw, fh = face.width, face.height
        cx, ly = lm.mouth[0], lm.lip_y
        self.roi = self._clip(cx - 1.25 * lm.mouth_half_width, ly - 0.06 * fh, cx + 1.25 * lm.mouth_half_width,
                              ly + 0.14 * fh, W, H)
        self.tpl_box = self._clip(cx - 0.22 * fw, ly - 0.32 * fh, cx + 0.22 * fw, ly - 0.06 * fh, W, H)
        x0, y0, x1, y1 = self.tpl_box
        self.tpl = gray[y0:y1, x0:x1].copy()
        self.search = int(max(4, 0.12 * fw))
        x0, y0, x1, y1 = self.roi
        self.threshold = 0.6 * float(np.median(gray[y0:y1, x0:x1]))

    @staticmethod
    def _clip(x0, y0, x1, y1, W, H) -> tuple[int, int, int, int]:
        x0, y0 = int(max(0, x0)), int(max(0, y0))
        return x0, y0, int(min(W, max(x0 + 2, x1))), int(min(H, max(y0 + 2, y1)))

    def _shift(self, gray: np.ndarray) -> tuple[int, int]:
        x0, y0, x1, y1 = self.tpl_box
        s = self.search
        sx0, sy0 = max(0, x0 - s), max(0, y0 - s)
        win = gray[sy0:min(gray.shape[0], y1 + s), sx0:min(gray.shape[1], x1 + s)]
        if win.shape[0] < self.tpl.shape[0] or win.shape[1] < self.tpl.shape[1] or self.tpl.size < 16:
            return 0, 0
        _, _, _, (mx, my) = cv2.minMaxLoc(cv2.matchTemplate(win, self.tpl, cv2.TM_CCOEFF_NORMED))
        return sx0 + mx - x0, sy0 + my - y0

    def __call__(self, gray: np.ndarray) -> float:
        dx, dy = self._shift(gray)
        x0, y0, x1, y1 = self.roi
        H, W = gray.shape
        patch = gray[max(0, y0 + dy):min(H, y1 + dy), max(0, x0 + dx):min(W, x1 + dx)].astype(np.float32)
        return float(np.maximum(self.threshold - patch, 0.0).mean()) if patch.size else 0.0


def _mouth_track(video_path: str) -> tuple[np.ndarray, np.ndarray, float]:
    """Mouth values, frame start times (s, from the video stream's start) and fps, decoding frame by frame."""
    try:
        container = av.open(video_path)
    except (av.FFmpegError, OSError) as e:
        raise InputError("video", f"cannot open '{video_path}' ({e})", "pass an MP4/MOV/MKV video file") from e
    with container:
        if not container.streams.video:
            raise InputError("video", f"'{video_path}' has no video track", "pass a video file")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        fps = float(stream.average_rate or stream.guessed_rate or 25)
        meter, values, times, t0 = None, [], [], None
        for frame in container.decode(stream):
            t = float(frame.time) if frame.time is not None else len(times) / fps
            t0 = t if t0 is None else t0
            if meter is None:
                meter = _MouthMeter(frame.to_ndarray(format="rgb24"))
            values.append(meter(frame.to_ndarray(format="gray")))
            times.append(t - t0)
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    return np.asarray(values, np.float32), np.asarray(times) + start, fps


def _audio_from_file(path: str) -> tuple[np.ndarray, float]:
    """16 kHz mono samples and the time (s) of the first sample on the file's timeline."""
    with av.open(path) as c:
        s = c.streams.audio[0] if c.streams.audio else None
        start = float(s.start_time * s.time_base) if s is not None and s.start_time is not None else 0.0
    return load_audio(path).mono_at(_SR), max(start, 0.0)


def _envelope(audio: np.ndarray, audio_start: float, times: np.ndarray, fps: float) -> np.ndarray:
    env = np.empty(len(times), np.float64)
    for i, t in enumerate(times):
        a, b = int(round((t - audio_start) * _SR)), int(round((t - audio_start + 1.0 / fps) * _SR))
        seg = audio[max(0, a):max(0, b)]
        env[i] = np.sqrt(np.mean(seg.astype(np.float64) ** 2)) if seg.size else 0.0
    db = 20 * np.log10(env + 1e-9)
    return np.maximum(db, db.max() - 45.0).astype(np.float32)


def measure_sync(video_path: str, audio_path: str | None = None, max_offset_frames: int = 10) -> SyncReport:
    """Lip-sync offset of a talking-head video against its own sound track (or audio_path). See the module doc."""
    mouth, times, fps = _mouth_track(video_path)
    if len(mouth) == 0:
        raise InputError("video", f"'{video_path}' holds no decodable frames", "pass a non-empty video")
    audio, audio_start = _audio_from_file(audio_path or video_path)
    if audio_path is not None:
        audio_start = times[0]  # a separate sound file starts with the video
    return sync_from_arrays(mouth, _envelope(audio, audio_start, times, fps), fps, max_offset_frames)
