"""load_audio reads every common speech format and refuses bad input with a message that names it and says the fix."""
import os

import numpy as np
import pytest
from media_helpers import AUDIO_FORMATS, EXAMPLE_DURATION, read_wav, write_audio, write_video, write_wav

from devtools import hostile_media
from sonic_core.errors import InputError
from sonic_core.media.audio import Audio, check_speech, load_audio


@pytest.fixture(scope="module")
def speech():
    return read_wav()


@pytest.mark.parametrize("ext", sorted(AUDIO_FORMATS))
def test_decodes_each_format(tmp_path, speech, ext):
    samples, rate = speech
    path = write_audio(str(tmp_path / f"speech.{ext}"), samples, rate)
    audio = load_audio(path)
    assert audio.channels == 1
    assert abs(audio.duration - EXAMPLE_DURATION) < 0.05, f"{ext}: {audio.duration:.3f} s"
    assert audio.samples.dtype == np.float32 and np.abs(audio.samples).max() > 0.05


def test_decodes_the_sound_track_of_a_video(tmp_path, speech):
    path = write_video(str(tmp_path / "clip.mp4"), n_frames=250, audio=speech)
    audio = load_audio(path)
    assert abs(audio.duration - EXAMPLE_DURATION) < 0.05


def test_stereo_is_kept_and_mono_at_resamples(tmp_path, speech):
    samples, rate = speech
    stereo = np.stack([samples[0], -0.5 * samples[0]])
    audio = load_audio(write_wav(str(tmp_path / "stereo.wav"), stereo, rate))
    assert audio.channels == 2 and audio.sample_rate == rate
    np.testing.assert_allclose(audio.samples[1], -0.5 * audio.samples[0], atol=2e-4)
    for target in (16000, 8000, 44100):
        mono = audio.mono_at(target)
        assert mono.ndim == 1 and mono.dtype == np.float32
        assert abs(len(mono) - audio.duration * target) <= 1


def _bad(path, input_name="audio"):
    with pytest.raises(InputError) as e:
        check_speech(load_audio(path, input_name))
    msg = str(e.value)
    assert msg.startswith(f"{input_name}:") and "Fix:" in msg and e.value.input_name == input_name
    return e.value


def test_missing_file(tmp_path):
    err = _bad(str(tmp_path / "nope.wav"))
    assert "not found" in str(err) and err.code == "bad_input"


def test_corrupt_file(tmp_path):
    path = tmp_path / "speech.wav"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    err = _bad(str(path))
    assert err.code == "audio_unreadable" and "speech.wav" in str(err)


def test_png_renamed_to_mp3(tmp_path, example_image):
    path = tmp_path / "speech.mp3"
    path.write_bytes(open(example_image, "rb").read())
    err = _bad(str(path))
    assert err.code == "audio_unreadable" and "looks like a PNG image" in str(err)


def test_zero_length_wav(tmp_path):
    path = write_wav(str(tmp_path / "empty.wav"), np.zeros((1, 0), np.float32), 16000)
    assert os.path.getsize(path) == 44  # header only
    err = _bad(path)
    assert err.code == "audio_empty" and "zero length" in str(err)


def test_silent_wav(tmp_path):
    path = write_wav(str(tmp_path / "silence.wav"), np.zeros((1, 32000), np.float32), 16000)
    assert load_audio(path).duration == pytest.approx(2.0)
    err = _bad(path)
    assert err.code == "audio_silent" and "silent" in str(err)


def test_video_without_sound_track(tmp_path):
    err = _bad(write_video(str(tmp_path / "mute.mp4")), input_name="speech")
    assert err.code == "audio_unreadable" and "no audio track" in str(err)


def test_fitted_pads_and_trims_exactly():
    rate = 16000
    audio = Audio(np.ones((2, rate), np.float32), rate)  # 1 s of stereo
    longer = audio.fitted(1.5)
    assert longer.samples.shape == (2, 24000) and longer.duration == 1.5
    assert np.all(longer.samples[:, :rate] == 1) and np.all(longer.samples[:, rate:] == 0)
    shorter = audio.fitted(0.25)
    assert shorter.samples.shape == (2, 4000) and np.all(shorter.samples == 1)
    assert audio.fitted(1.0).samples.shape == (2, rate)
    assert audio.fitted(3 / 25).samples.shape[1] == 1920  # one frame count at 25 fps, rounded exactly


@pytest.mark.parametrize("make, why", [
    (lambda: hostile_media.flac(655350, 8, declared_s=590), "655350 Hz"),  # 9 KB asking for 590 s x 655 kHz x 8
    (lambda: hostile_media.flac(192000, 2, declared_s=3000), "3000 s x 192000 Hz x 2 channels"),
    (lambda: hostile_media.wav(16000, channels=64), "64 channels"),
], ids=["rate-655350", "samples-3000s-192kHz", "channels-64"])
def test_audio_that_asks_for_gigabytes_is_refused(tmp_path, make, why):
    path = tmp_path / "speech.flac"
    path.write_bytes(make())
    err = _bad(str(path))
    assert err.code == "audio_too_large" and why in str(err) and "16-48 kHz" in str(err)


@pytest.mark.parametrize("name, data", [("speech.wav", hostile_media.aiff), ("speech.mp3", hostile_media.aiff)])
def test_only_the_accepted_containers_are_decoded(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data())
    err = _bad(str(path))
    assert err.code == "audio_unreadable" and "is not wav, mp3, flac, ogg, m4a" in str(err)
