"""The weight-free lite engine: determinism, locality of the warp, and the tracks it follows."""
import os
from dataclasses import replace

import cv2
import matplotlib
import numpy as np
import pytest

from sonic_core.engines.lite import LiteAnimator
from sonic_core.engines.lite_jaw import jaw_split
from sonic_core.media.audio import load_audio
from sonic_core.media.face import detect_face, face_landmarks

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FPS = 25


@pytest.fixture(scope="module")
def portrait():
    image = cv2.cvtColor(cv2.imread(os.path.join(ROOT, "sample_media", "portrait.png")), cv2.COLOR_BGR2RGB)
    return image, detect_face(image)


@pytest.fixture(scope="module")
def speech():
    audio = load_audio(os.path.join(ROOT, "sample_media", "speech.wav")).mono_at(16000)
    n = int(len(audio) / 16000 * FPS)
    return audio[: int(round(n / FPS * 16000))], n


def make(portrait, speech, **kw):
    (image, face), (audio, n) = portrait, speech
    return LiteAnimator(image, face, audio, FPS, n, **kw)


def grace_hopper():
    """A closed-mouth portrait (public domain, shipped with matplotlib)."""
    image = cv2.cvtColor(cv2.imread(os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")),
                         cv2.COLOR_BGR2RGB)
    return image, detect_face(image)


def test_deterministic_per_seed(portrait, speech):
    a, b, c = make(portrait, speech, seed=3), make(portrait, speech, seed=3), make(portrait, speech, seed=4)
    idx = range(0, a.n_frames, 17)
    assert all(np.array_equal(a.frame(i), b.frame(i)) for i in idx)
    assert any(not np.array_equal(a.frame(i), c.frame(i)) for i in idx)


def test_frames_keep_size_and_change_only_near_the_face(portrait, speech):
    image, face = portrait
    anim = make(portrait, speech)
    i = int(np.argmax(anim.mouth_open))
    frame = anim.frame(i)
    assert frame.shape == image.shape and frame.dtype == np.uint8
    for ys, xs in [(slice(0, 40), slice(0, 40)), (slice(-40, None), slice(-40, None)),
                   (slice(0, 40), slice(-40, None)), (slice(-40, None), slice(0, 40))]:
        assert np.array_equal(frame[ys, xs], image[ys, xs])
    lm = anim.landmarks
    y0, x0 = int(lm.lip_y - 0.05 * face.height), int(lm.mouth[0] - lm.mouth_half_width)
    mouth = np.s_[y0:int(lm.lip_y + 0.15 * face.height), x0:int(lm.mouth[0] + lm.mouth_half_width)]
    assert np.abs(frame[mouth].astype(int) - image[mouth]).mean() > 15   # the mouth visibly opened
    assert 0.8 < anim.mouth_open.max() <= 1.0 and anim.mouth_open.min() >= 0.0


def test_still_head_keeps_upper_face(portrait, speech):
    image, face = portrait
    anim = make(portrait, speech, motion_scale=0.0)
    forehead = np.s_[face.y0:face.y0 + int(0.2 * face.height), face.x0:face.x1]   # above the eyes' blink zone
    frames = [anim.frame(i) for i in range(0, anim.n_frames, 10)]
    assert all(np.array_equal(f[forehead], image[forehead]) for f in frames)
    moving = make(portrait, speech, motion_scale=1.0)
    assert any(not np.array_equal(moving.frame(i)[forehead], image[forehead]) for i in range(0, anim.n_frames, 10))


def test_open_mouth_is_a_warm_lens_shaped_cavity(speech):
    """On a closed-mouth portrait the opened gap is dark warm red-brown (never black or grey) and lens-shaped:
    rounding makes it narrower."""
    image, face = grace_hopper()
    anim = make((image, face), speech, motion_scale=0.0)
    mouth, lm = anim._mouth, anim.landmarks
    b, fh = mouth.box, face.height
    reach = 1.3 * lm.mouth_half_width
    lips = np.s_[int(lm.lip_y - 0.1 * fh) - b.y0:int(lm.lip_y + 0.15 * fh) - b.y0,
                 int(lm.mouth[0] - reach) - b.x0:int(lm.mouth[0] + reach) - b.x0]

    def dark(patch):   # the cavity: much darker than the skin around the mouth
        lum = patch.astype(np.float32).mean(axis=2)
        return lum < 0.35 * np.median(lum)

    spread, rounded = (mouth.render(image, 0.9, r)[lips] for r in (0.0, 1.0))
    px = spread[dark(spread)].astype(np.float32)
    deepest = px[np.argsort(px.mean(axis=1))[:50]]
    assert len(px) > 200 and deepest[:, 0].min() >= 30                          # not black
    assert np.all(deepest[:, 0] > 1.6 * deepest[:, 1])                           # warm, not grey
    width = [np.count_nonzero(dark(p).any(axis=0)) for p in (spread, rounded)]
    assert width[1] < 0.8 * width[0]


@pytest.mark.parametrize("which", ["smile with teeth", "closed mouth"])
def test_jaw_drops_below_the_upper_teeth(portrait, which):
    """Fully open: the upper lip and upper teeth stay where the photo has them (the skull does not move), the
    lower lip moves down with the jaw, and between them a shaded cavity opens, darker than the lips but not a
    flat black slit. The rows are placed by the shared face finder, not by the engine under test."""
    image, face = portrait if which == "smile with teeth" else grace_hopper()
    anim = LiteAnimator(image, face, np.zeros(16000, np.float32), FPS, 1, motion_scale=0.0)
    opened = image.copy()
    opened[anim._mouth.box.sl()] = anim._mouth.render(image, 1.0, 0.0)
    lm, fh = face_landmarks(image, face), face.height
    cx, hw = lm.mouth[0], lm.mouth_half_width
    gray = [cv2.cvtColor(im, cv2.COLOR_RGB2GRAY)[:, int(cx - 0.5 * hw):int(cx + 0.5 * hw)].astype(np.float32)
            for im in (image, opened)]
    # Upper lip / upper teeth rows, just above the lip line: unchanged.
    upper = slice(int(lm.lip_y - 0.1 * fh), int(lm.lip_y - 0.01 * fh))
    assert np.abs(gray[1][upper] - gray[0][upper]).mean() < 2.0
    # The lower lip's lower edge and the skin under it: found again lower down, by at least 6% of the face.
    y0, y1 = int(lm.lower_lip_bottom - 0.03 * fh), int(lm.lower_lip_bottom + 0.1 * fh)
    err = [np.abs(gray[1][y0 + k:y1 + k] - gray[0][y0:y1]).mean() for k in range(int(0.2 * fh))]
    drop = int(np.argmin(err))
    assert drop >= 0.06 * fh and err[drop] < 0.5 * err[0]
    # The gap between: dark, but shaded.
    gap = gray[1][int(lm.lip_y + 2):int(lm.lip_y + drop - 2)]
    lips = gray[0][int(lm.lip_y):int(lm.lower_lip_bottom)]
    assert gap.mean() < 0.6 * lips.mean() and gap.std() > 3.0 and gap.min() > 5


def test_jaw_split_finds_the_upper_teeth_and_the_lip_line(portrait):
    """Smile: the split lies under the upper teeth (bright above, lip below). Closed mouth placed by proportions
    only: the split moves to the darkest line, where the colour-based finder puts it. Grey photo: left alone."""
    image, face = portrait
    lm = jaw_split(image, face, face_landmarks(image, face))
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    y, x = int(round(lm.lip_y)), int(lm.mouth[0])
    assert lm.teeth_visible and "teeth" in lm.refined
    assert gray[y - 3:y, x - 5:x + 5].mean() > gray[y + 1:y + 4, x - 5:x + 5].mean() + 15

    image, face = grace_hopper()
    lm = face_landmarks(image, face)
    assert "mouth" in lm.refined and jaw_split(image, face, lm) == lm
    guessed = replace(lm, lip_y=lm.lip_y + 0.04 * face.height, refined=())
    assert abs(jaw_split(image, face, guessed).lip_y - lm.lip_y) < 0.015 * face.height
    grey = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
    assert jaw_split(grey, face, guessed) == guessed


def test_dynamic_scale_scales_the_mouth(portrait, speech):
    full, half = make(portrait, speech).mouth_open, make(portrait, speech, dynamic_scale=0.5).mouth_open
    unclipped = full < 0.999
    np.testing.assert_allclose(half[unclipped], 0.5 * full[unclipped], atol=1e-5)
    assert half.max() <= 0.5 + 1e-6


def test_silence_closes_the_mouth(portrait, speech):
    image, face = portrait
    audio, _ = speech
    padded = np.concatenate([np.zeros(3 * 16000, np.float32), audio[: 3 * 16000]])
    anim = LiteAnimator(image, face, padded, FPS, 6 * FPS)
    assert anim.mouth_open[: int(2.8 * FPS)].max() < 0.02
    assert anim.mouth_open[3 * FPS:].max() > 0.5
    closed = anim.frame(10)
    lm = anim.landmarks
    mouth = np.s_[int(lm.lip_y - 10):int(lm.lip_y + 10), int(lm.mouth[0] - 15):int(lm.mouth[0] + 15)]
    # Only head motion moves it: the lips stay shut (no dark gap opens).
    assert closed[mouth].mean() > image[mouth].mean() - 10


def test_blinks_are_seeded_and_natural(portrait, speech):
    blinks = [make(portrait, speech, seed=s)._blink for s in range(4)]
    per_min = [60 * (np.diff((b > 0.5).astype(int)) == 1).sum() / (len(b) / FPS) for b in blinks]
    assert 6 <= np.mean(per_min) <= 30
    assert not np.array_equal(blinks[0], blinks[1])


def test_large_image_any_face_position(speech):
    audio, n = speech
    image = np.full((1080, 1920, 3), 90, np.uint8)
    face_img = cv2.cvtColor(cv2.imread(os.path.join(ROOT, "sample_media", "portrait.png")), cv2.COLOR_BGR2RGB)
    image[-512:, -512:] = face_img                      # the face near the bottom-right corner
    face = detect_face(image)
    assert face is not None and face.x0 > 1400
    anim = LiteAnimator(image, face, audio[:16000], FPS, FPS)
    assert anim.frame(FPS - 1).shape == image.shape
    assert np.array_equal(anim.frame(5)[:500, :1000], image[:500, :1000])


def test_bad_inputs_are_named(portrait):
    image, face = portrait
    with pytest.raises(ValueError, match="image"):
        LiteAnimator(image.astype(np.float32), face, np.zeros(16000, np.float32), FPS, FPS)
    anim = LiteAnimator(image, face, np.zeros(100, np.float32), FPS, 3)   # short audio is padded
    with pytest.raises(IndexError):
        anim.frame(3)
