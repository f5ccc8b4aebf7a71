"""The lip-sync meter: how far a talking-head video's mouth is from its sound, in frames.

Method
------
1. Mouth track (one value per video frame): the mouth aspect ratio of MediaPipe FaceMesh's inner-lip landmarks,
   measured by mouth_meter.py in a side venv (sync_venv.py). That face model belongs to no SonicFlow engine, so
   the meter does not grade the lite engine with its own face finder. Frames where it finds no face take the
   value of their neighbours (interpolated); `face_frames` says how many frames had a face.
2. Speech envelope (one value per video frame): the RMS of the audio (the file's own track, or audio_path) over
   each frame's display interval [t_i, t_i + 1/fps), linear (the wide-band amplitude envelope, which mouth
   opening follows in natural speech: Chandrasekaran et al. 2009, PLoS Comput Biol 5(7) e1000436).
3. Both tracks are detrended (minus a 1 s moving average) and, for each lag k in [-max, +max], the Pearson
   correlation of mouth[t] with envelope[t - k] is taken over their overlap.

Sign convention: offset_frames is the lag with the highest correlation. Positive = the video LAGS the audio
(the mouth moves k frames after the sound); negative = the video leads. `peak` is that correlation (-1..1);
above ~0.5 the mouth clearly follows the sound, below ~0.3 it does not.
"""
from __future__ import annotations

from dataclasses import dataclass

import av
import numpy as np
from scipy.ndimage import uniform_filter1d

from .errors import InputError
from .media.audio import load_audio
from .sync_venv import run_meter

_SR = 16000


@dataclass
class SyncReport:
    offset_frames: int
    peak: float
    fps: float
    n_frames: int
    mouth: np.ndarray
    envelope: np.ndarray
    face_frames: int | None = None   # frames where FaceMesh found the face (None: tracks given as arrays)

    def to_dict(self) -> dict:
        return {"offset_frames": self.offset_frames, "peak": self.peak, "fps": self.fps, "n_frames": self.n_frames,
                "face_frames": self.face_frames,
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


def _check_video(video_path: str) -> None:
    try:
        with av.open(video_path) as container:
            has_video = bool(container.streams.video)
    except (av.FFmpegError, OSError) as e:
        raise InputError("video", f"cannot open '{video_path}' ({e})", "pass an MP4/MOV/MKV video file") from e
    if not has_video:
        raise InputError("video", f"'{video_path}' has no video track", "pass a video file")


def _mouth_track(video_path: str) -> tuple[np.ndarray, np.ndarray, float, int]:
    """Mouth openings (gaps filled in), frame start times (s, on the file's timeline), fps, frames with a face."""
    track = run_meter(video_path)
    if not track["times"]:
        raise InputError("video", f"'{video_path}' holds no decodable frames", "pass a non-empty video")
    mouth = np.array([np.nan if v is None else v for v in track["mouth"]], np.float64)
    seen = np.flatnonzero(~np.isnan(mouth))
    if len(seen) == 0:
        raise InputError("video", f"FaceMesh found no face in '{video_path}'", "pass a video of a visible face")
    mouth = np.interp(np.arange(len(mouth)), seen, mouth[seen])  # frames without a face: from their neighbours
    return mouth.astype(np.float32), np.asarray(track["times"]), float(track["fps"]), len(seen)


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
    return env.astype(np.float32)


def measure_sync(video_path: str, audio_path: str | None = None, max_offset_frames: int = 10) -> SyncReport:
    """Lip-sync offset of a talking-head video against its own sound track (or audio_path). See the module doc."""
    _check_video(video_path)
    audio, audio_start = _audio_from_file(audio_path or video_path)   # bad audio fails before the slow part
    mouth, times, fps, face_frames = _mouth_track(video_path)
    if audio_path is not None:
        audio_start = times[0]  # a separate sound file starts with the video
    report = sync_from_arrays(mouth, _envelope(audio, audio_start, times, fps), fps, max_offset_frames)
    report.face_frames = face_frames
    return report
