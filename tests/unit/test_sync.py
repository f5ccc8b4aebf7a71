"""The lip-sync meter on videos with KNOWN lags. The talking face is made here, not by an engine: a real photo whose
jaw drops (a warp of the lower face, a dark gap between the lips) by an amount following the speech's loudness,
frame by frame. The same frames are muxed with the sound advanced or delayed by whole frames, so the true offset
of each file is known exactly, and the meter (MediaPipe FaceMesh, in its side venv) must report exactly that."""
import os
import sys
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from sonic_core.errors import SyncMeterError
from sonic_core.media.audio import load_audio
from sonic_core.media.face import detect_face, face_landmarks
from sonic_core.sync import measure_sync, sync_from_arrays
from sonic_core.sync_venv import is_ready, venv_python

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FPS, SR = 25, 16000
HOP = SR // FPS   # audio samples per video frame


def write_mp4(path, frames, audio):
    """H.264 yuv420p + AAC. The audio frame gets pts 0 so the muxer writes an edit list for the AAC priming
    samples; without it every decoder hears the sound 1024 samples (64 ms) late."""
    with av.open(path, "w") as c:
        v = c.add_stream("libx264", rate=FPS, options={"preset": "ultrafast"})
        v.pix_fmt = "yuv420p"
        h, w = frames[0].shape[:2]
        v.width, v.height = w - w % 2, h - h % 2
        a = c.add_stream("aac", rate=SR)
        a.layout = "mono"
        for f in frames:
            c.mux(v.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f[:v.height, :v.width]), format="rgb24")))
        c.mux(v.encode())
        af = av.AudioFrame.from_ndarray(audio[None].astype(np.float32), format="fltp", layout="mono")
        af.sample_rate, af.pts, af.time_base = SR, 0, Fraction(1, SR)
        c.mux(a.encode(af))
        c.mux(a.encode(None))


def write_wav(path, audio):
    with av.open(path, "w") as c:
        s = c.add_stream("pcm_s16le", rate=SR)
        s.layout = "mono"
        f = av.AudioFrame.from_ndarray((audio[None] * 32767).astype(np.int16), format="s16", layout="mono")
        f.sample_rate = SR
        c.mux(s.encode(f))
        c.mux(s.encode(None))


def shifted(audio, frames_late):
    """The sound moved so that the picture is `frames_late` frames late (negative: early); same length."""
    k = frames_late * HOP
    pad = np.zeros(abs(k), audio.dtype)
    return np.concatenate([audio[k:], pad]) if k >= 0 else np.concatenate([pad, audio[:k]])


def open_mouth(image, lm, amount):
    """The lower face moved down by `amount` px under the lip line (tapering out below the chin and towards the
    mouth corners); the gap that opens between the lips is shaded dark, as a mouth cavity."""
    H, W = image.shape[:2]
    reach = 1.1 * lm.mouth_half_width
    chin, end = lm.chin_y, lm.chin_y + 0.6 * (lm.chin_y - lm.lip_y)
    x0, x1 = max(0, int(lm.mouth[0] - reach)), min(W, int(lm.mouth[0] + reach) + 1)
    y0, y1 = max(0, int(lm.lip_y + min(0.0, lm.lip_curve)) - 1), min(H, int(end) + 1)   # all that moves
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    line = lm.lip_line(xs)
    below = ys > line
    across = np.sqrt(np.clip(1.0 - ((xs - lm.mouth[0]) / reach) ** 2, 0.0, 1.0))
    src_y = ys - amount * across * np.clip((end - ys) / (end - chin), 0.0, 1.0) * below
    out = image.copy()
    part = cv2.remap(image, xs, src_y.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    gap = below & (src_y < line)
    part[gap] = (0.2 * part[gap] + [25, 8, 8]).astype(np.uint8)
    out[y0:y1, x0:x1] = part
    return out


def talking_frames(image, audio):
    """One frame per 1/FPS of audio; the jaw opens with the frame's loudness over a 30 dB range (as a speaker's
    does, roughly), up to 0.7 of the mouth's half width."""
    lm = face_landmarks(image, detect_face(image))
    n = len(audio) // HOP
    rms = np.sqrt(np.mean(audio[:n * HOP].reshape(n, HOP).astype(np.float64) ** 2, axis=1))
    db = 20 * np.log10(rms + 1e-9)
    level = np.clip((db - (db.max() - 30.0)) / 24.0, 0.0, 1.0)
    return [open_mouth(image, lm, a * 0.7 * lm.mouth_half_width) for a in level]


@pytest.fixture(scope="module")
def talking(grace_hopper, tmp_path_factory):
    """(frames, audio, folder): Grace Hopper saying the example speech."""
    audio = load_audio(os.path.join(ROOT, "sample_media", "speech.wav")).mono_at(SR)
    audio = audio[:len(audio) // HOP * HOP]
    image = cv2.cvtColor(cv2.imread(grace_hopper), cv2.COLOR_BGR2RGB)
    return talking_frames(image, audio), audio, tmp_path_factory.mktemp("sync")


@pytest.mark.parametrize("frames_late", [0, 3, -3])
def test_meter_reports_the_known_lag(talking, frames_late):
    frames, audio, tmp = talking
    path = str(tmp / f"late{frames_late}.mp4")
    write_mp4(path, frames, shifted(audio, frames_late))
    report = measure_sync(path)
    assert report.offset_frames == frames_late and report.peak >= 0.6, report.to_dict()
    assert report.n_frames == len(frames) and report.face_frames == len(frames) and report.fps == FPS


def test_separate_audio_file(talking):
    """--audio: the sound file starts with the video. The speech 3 frames ahead reads as +3; the same speech cut
    into 0.4 s pieces and shuffled (speech-like loudness, unrelated timing) reads as no sync at all."""
    frames, audio, tmp = talking
    write_mp4(str(tmp / "own.mp4"), frames, audio)
    write_wav(str(tmp / "late3.wav"), shifted(audio, 3))
    report = measure_sync(str(tmp / "own.mp4"), audio_path=str(tmp / "late3.wav"))
    assert report.offset_frames == 3 and report.peak >= 0.6, report.to_dict()
    pieces = audio[:len(audio) // (10 * HOP) * 10 * HOP].reshape(-1, 10 * HOP)
    write_wav(str(tmp / "shuffled.wav"), pieces[np.random.default_rng(0).permutation(len(pieces))].ravel())
    report = measure_sync(str(tmp / "own.mp4"), audio_path=str(tmp / "shuffled.wav"))
    assert report.peak < 0.3, report.to_dict()


@pytest.mark.slow
def test_still_face_has_no_sync(talking):
    frames, audio, tmp = talking
    write_mp4(str(tmp / "still.mp4"), [frames[0]] * len(frames), audio)
    report = measure_sync(str(tmp / "still.mp4"))
    assert report.face_frames == len(frames) and report.peak < 0.3, report.to_dict()


@pytest.mark.slow
def test_small_face_in_a_large_frame_that_leaves_for_a_second(example_image, tmp_path):
    """A ~100 px face in a 1920x1080 frame (MediaPipe's face detector misses it on the whole frame), gone from
    frame 50 to 74: found again when it is back, and the frames without it do not shift the verdict."""
    audio = load_audio(os.path.join(ROOT, "sample_media", "speech.wav")).mono_at(SR)[:5 * SR]
    image = cv2.cvtColor(cv2.imread(example_image), cv2.COLOR_BGR2RGB)
    frames = []
    for i, f in enumerate(talking_frames(image, audio)):
        canvas = np.full((1080, 1920, 3), 90, np.uint8)
        if not 50 <= i < 75:
            canvas[500:1012, 1300:1812] = f
        frames.append(canvas)
    write_mp4(str(tmp_path / "wide.mp4"), frames, shifted(audio, -2))
    report = measure_sync(str(tmp_path / "wide.mp4"))
    assert report.face_frames == len(frames) - 25 and report.offset_frames == -2 and report.peak >= 0.6, \
        report.to_dict()


def test_meter_venv_from_older_requirements_is_refused(tmp_path, monkeypatch):
    venv = tmp_path / "old"
    os.makedirs(os.path.dirname(venv_python(str(venv))))
    os.symlink(sys.executable, venv_python(str(venv)))
    (venv / ".sonicflow-sync").write_text("sha256 of requirements that have changed since")
    monkeypatch.setenv("SONICFLOW_SYNC_VENV", str(venv))
    assert not is_ready(str(venv))
    video = str(tmp_path / "v.mp4")
    write_mp4(video, [np.zeros((64, 64, 3), np.uint8)] * 5, np.zeros(5 * HOP, np.float32))
    with pytest.raises(SyncMeterError, match="older .*sonicflow sync-check --setup"):
        measure_sync(video)


def test_sync_from_arrays_sign_and_peak():
    rng = np.random.default_rng(1)
    env = np.convolve(rng.random(300), np.ones(3) / 3, "same")
    late = np.concatenate([np.full(4, env[0]), env[:-4]])       # mouth = envelope 4 frames later
    r = sync_from_arrays(late, env, 25)
    assert r.offset_frames == 4 and r.peak > 0.95
    r = sync_from_arrays(env[4:], env[:-4], 25)                 # mouth 4 frames early
    assert r.offset_frames == -4
    assert sync_from_arrays(rng.random(300), env, 25).peak < 0.3
    assert sync_from_arrays(np.ones(50), env[:50], 25).peak == 0.0
