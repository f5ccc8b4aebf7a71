"""The lip-sync meter: renders lite videos to MP4 and checks it finds sync, a known shift, and no sync."""
import os
from fractions import Fraction

import av
import cv2
import matplotlib
import numpy as np
import pytest

from sonic_core.engines.lite import LiteAnimator
from sonic_core.media.audio import load_audio
from sonic_core.media.face import detect_face
from sonic_core.sync import measure_sync, sync_from_arrays

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PORTRAITS = {"astronaut": os.path.join(ROOT, "sample_media", "portrait.png"),
             "grace_hopper": os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")}
FPS, SR = 25, 16000


def write_mp4(path, frames, fps, audio):
    """H.264 yuv420p + AAC. The audio frame gets pts 0 so the muxer writes an edit list for the AAC priming
    samples; without it every decoder hears the sound 1024 samples (64 ms) late."""
    with av.open(path, "w") as c:
        v = c.add_stream("libx264", rate=fps)
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


@pytest.fixture(scope="module")
def speech():
    audio = load_audio(os.path.join(ROOT, "sample_media", "speech.wav")).mono_at(SR)
    n = int(len(audio) / SR * FPS)
    return audio[: int(round(n / FPS * SR))], n


@pytest.fixture(scope="module", params=list(PORTRAITS))
def rendered(request, speech, tmp_path_factory):
    """(image, frames, audio) for one portrait animated over the example speech."""
    image = cv2.cvtColor(cv2.imread(PORTRAITS[request.param]), cv2.COLOR_BGR2RGB)
    audio, n = speech
    anim = LiteAnimator(image, detect_face(image), audio, FPS, n, seed=0)
    return image, [anim.frame(i) for i in range(n)], audio, tmp_path_factory.mktemp(request.param)


def test_lite_video_is_in_sync(rendered):
    image, frames, audio, tmp = rendered
    write_mp4(str(tmp / "lite.mp4"), frames, FPS, audio)
    report = measure_sync(str(tmp / "lite.mp4"))
    assert abs(report.offset_frames) <= 1 and report.peak >= 0.5, report.to_dict()
    assert report.n_frames == len(frames) and report.fps == FPS
    assert set(report.to_dict()) >= {"offset_frames", "peak", "fps", "n_frames"}
    # The same audio given as a separate file measures the same.
    wav = str(tmp / "speech.wav")
    write_wav(wav, audio)
    assert abs(measure_sync(str(tmp / "lite.mp4"), audio_path=wav).offset_frames - report.offset_frames) <= 1


def test_meter_sees_a_three_frame_lag(rendered):
    image, frames, audio, tmp = rendered
    write_mp4(str(tmp / "late.mp4"), [frames[0]] * 3 + frames[:-3], FPS, audio)   # picture 3 frames late
    report = measure_sync(str(tmp / "late.mp4"))
    assert abs(report.offset_frames - 3) <= 1 and report.peak >= 0.5, report.to_dict()


def test_still_face_has_no_sync(rendered):
    image, frames, audio, tmp = rendered
    write_mp4(str(tmp / "still.mp4"), [image] * len(frames), FPS, audio)
    assert measure_sync(str(tmp / "still.mp4")).peak < 0.3


def write_wav(path, audio):
    with av.open(path, "w") as c:
        s = c.add_stream("pcm_s16le", rate=SR)
        s.layout = "mono"
        f = av.AudioFrame.from_ndarray((audio[None] * 32767).astype(np.int16), format="s16", layout="mono")
        f.sample_rate = SR
        c.mux(s.encode(f))
        c.mux(s.encode(None))


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
