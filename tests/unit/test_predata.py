"""PreData: the official square crop and resolution rule, frame counts, and prepare()'s decisions and errors."""
import numpy as np
import pytest
from media_helpers import grey_image

from sonic_core.errors import InputError
from sonic_core.media.audio import load_audio
from sonic_core.media.face import FaceBox
from sonic_core.media.image import load_image
from sonic_core.predata import frame_count, prepare, square_crop, working_size


@pytest.fixture(scope="module")
def portrait(example_image):
    return load_image(example_image)


@pytest.fixture(scope="module")
def speech(example_audio):
    return load_audio(example_audio)


def test_square_crop_centred_face():
    assert square_crop((200, 200, 300, 300), 512, 512, 0.5) == (150, 150, 350, 350)


def test_square_crop_clamped_at_edges():
    x0, y0, x1, y1 = square_crop((0, 100, 100, 200), 512, 512, 0.5)
    assert (x0, x1) == (0, 150) and y1 - y0 == 150 and y0 <= 100 and y1 >= 200
    x0, y0, x1, y1 = square_crop((440, 450, 512, 512), 512, 512, 1.0)
    assert (x1, y1) == (512, 512) and x1 - x0 == y1 - y0 == 124


def test_square_crop_properties():
    rng = np.random.default_rng(0)
    contained = 0
    for _ in range(3000):
        w, h = (int(v) for v in rng.integers(64, 2000, 2))
        fx0, fy0 = int(rng.integers(0, w - 16)), int(rng.integers(0, h - 16))  # faces of at least 16 px
        face = FaceBox(fx0, fy0, int(rng.integers(fx0 + 16, w + 1)), int(rng.integers(fy0 + 16, h + 1)))
        x0, y0, x1, y1 = crop = square_crop((face.x0, face.y0, face.x1, face.y1), w, h,
                                            float(rng.choice([0.0, 0.3, 0.5, 1.0])))
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (w, h, face, crop)
        assert abs((x1 - x0) - (y1 - y0)) <= 1, (w, h, face, crop)  # edges rounded one by one, as officially
        if min(x1 - x0, y1 - y0) >= max(face.width, face.height) + 1:  # room for a square around the face
            contained += 1
            inside = x0 <= face.x0 + 1 and y0 <= face.y0 + 1 and x1 >= face.x1 - 1 and y1 >= face.y1 - 1
            assert inside, (w, h, face, crop)
    assert contained > 300  # the containment branch really ran


@pytest.mark.parametrize("w,h,res,expected", [
    (512, 512, 512, (512, 512)), (300, 300, 512, (512, 512)), (1000, 500, 512, (1024, 512)),
    (720, 1280, 512, (512, 896)), (100, 333, 256, (256, 832)), (2000, 2000, 576, (576, 576)),
])
def test_working_size(w, h, res, expected):
    ws = working_size(w, h, res)
    assert ws == expected and ws[0] % 64 == 0 and ws[1] % 64 == 0 and min(ws) == res


@pytest.mark.parametrize("duration,fps,n", [(9.9105625, 25, 248), (2.0, 25, 50), (0.01, 25, 1), (0.0, 25, 1),
                                            (3.0, 12.5, 38)])
def test_frame_count(duration, fps, n):
    assert frame_count(duration, fps) == n


def test_prepare_the_example(portrait, speech):
    pre = prepare(portrait, speech)
    assert pre.face_found and pre.face.width > 50
    x0, y0, x1, y1 = pre.crop
    assert x0 <= pre.face.x0 and y0 <= pre.face.y0 and x1 >= pre.face.x1 and y1 >= pre.face.y1
    assert pre.n_frames == round(speech.duration * 25) == 248 and pre.fps == 25
    assert pre.duration == pytest.approx(speech.duration)
    assert pre.working_size == (512, 512) and pre.image.shape == (512, 512, 3)


def test_duration_trims_the_audio(portrait, speech):
    pre = prepare(portrait, speech, duration=3.0)
    assert pre.audio.duration == pytest.approx(3.0) and pre.n_frames == 75
    assert pre.audio.samples.shape[1] == 3 * speech.sample_rate


def test_duration_longer_than_audio_is_clamped(portrait, speech):
    pre = prepare(portrait, speech, duration=60.0)
    assert pre.audio.duration == pytest.approx(speech.duration) and pre.n_frames == 248


def test_negative_duration(portrait, speech):
    with pytest.raises(InputError) as e:
        prepare(portrait, speech, duration=-1.0)
    assert e.value.input_name == "duration" and "negative" in str(e.value) and "Fix:" in str(e.value)


def test_no_face_is_an_error_by_default(speech):
    with pytest.raises(InputError) as e:
        prepare(grey_image(), speech)
    msg = str(e.value)
    assert e.value.code == "no_face" and msg.startswith("image:") and "Fix:" in msg
    assert "no_face" in msg and "animate_centre" in msg


def test_no_face_animate_centre(speech):
    img = grey_image(320, 256)
    pre = prepare(img, speech, no_face="animate_centre")
    assert not pre.face_found
    cx, cy = pre.face.centre
    assert abs(cx - 160) < 40 and abs(cy - 128) < 80
    x0, y0, x1, y1 = pre.crop
    assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 256 and x1 - x0 == y1 - y0


def test_unknown_no_face_mode(portrait, speech):
    with pytest.raises(InputError) as e:
        prepare(portrait, speech, no_face="ignore")
    assert e.value.input_name == "no_face"


def test_odd_sized_image_is_made_even(portrait, speech):
    odd = np.ascontiguousarray(np.pad(portrait, ((0, 0), (0, 1), (0, 0)), mode="edge")[:511])  # 511 x 513
    pre = prepare(odd, speech)
    assert pre.image.shape == (510, 512, 3) and pre.face_found
    assert pre.crop[2] <= 512 and pre.crop[3] <= 510


def test_silent_audio_is_refused(portrait, speech):
    from sonic_core.media.audio import Audio

    with pytest.raises(InputError) as e:
        prepare(portrait, Audio(np.zeros((1, 16000), np.float32), 16000))
    assert e.value.code == "audio_silent"
    # speech that only starts after the kept part: trimmed to silence
    late = Audio(np.concatenate([np.zeros((1, 32000), np.float32), speech.samples], axis=1), speech.sample_rate)
    with pytest.raises(InputError) as e:
        prepare(portrait, late, duration=1.0)
    assert e.value.code == "audio_silent"


def test_not_an_rgb_array(speech):
    with pytest.raises(InputError) as e:
        prepare(np.zeros((256, 256), np.uint8), speech)
    assert e.value.input_name == "image"
