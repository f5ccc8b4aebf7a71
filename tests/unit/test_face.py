"""Face finding and landmarks on real portraits, and refusal on images with no face."""
import os

import cv2
import matplotlib
import numpy as np
import pytest

from sonic_core.media.face import FaceBox, centre_face, detect_face, face_landmarks

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PORTRAITS = [os.path.join(ROOT, "sample_media", "portrait.png"),
             os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")]


def load_rgb(path):
    return cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("path", PORTRAITS)
def test_face_found_and_landmarks_ordered(path):
    image = load_rgb(path)
    face = detect_face(image)
    assert face is not None
    h, w = image.shape[:2]
    assert 0 <= face.x0 < face.x1 <= w and 0 <= face.y0 < face.y1 <= h
    assert face.width > 0.15 * min(h, w)            # the portrait's face, not a small false hit
    lm = face_landmarks(image, face)
    assert "mouth" in lm.refined                     # both portraits have visible lips
    for x, y in (lm.left_eye, lm.right_eye, lm.mouth):
        assert face.x0 <= x <= face.x1 and face.y0 <= y <= face.y1
    assert lm.left_eye[0] < lm.mouth[0] < lm.right_eye[0]
    assert max(lm.left_eye[1], lm.right_eye[1]) < lm.upper_lip_top < lm.lip_y < lm.lower_lip_bottom < lm.chin_y
    assert abs(lm.mouth[0] - (face.x0 + face.x1) / 2) < 0.1 * face.width


def test_teeth_seen_only_on_the_smile():
    smile, closed = (face_landmarks(im, detect_face(im)) for im in map(load_rgb, PORTRAITS))
    assert smile.teeth_visible and not closed.teeth_visible


def test_found_on_large_image_in_full_coordinates():
    image = load_rgb(PORTRAITS[0])
    small = detect_face(image)
    big = detect_face(cv2.resize(image, None, fx=4, fy=4))
    assert big is not None and abs(big.x0 - 4 * small.x0) < 0.1 * big.width
    assert abs(big.width - 4 * small.width) < 0.15 * big.width


@pytest.mark.parametrize("image", [np.full((480, 640, 3), 128, np.uint8),
                                   np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8),
                                   np.zeros((5, 5, 3), np.uint8), np.zeros((100, 100), np.float32)])
def test_no_face_on_flat_noise_or_odd_inputs(image):
    assert detect_face(image) is None


def test_landmarks_fall_back_to_geometry_without_a_face():
    image = np.full((300, 300, 3), 128, np.uint8)
    box = centre_face(image)
    assert isinstance(box, FaceBox) and box.score == 0.0
    assert box.width > 0 and abs((box.x0 + box.x1) / 2 - 150) <= 1
    lm = face_landmarks(image, box)
    assert lm.refined == ()
    assert lm.left_eye[1] < lm.lip_y < lm.chin_y


def test_landmarks_survive_a_box_at_the_image_edge():
    image = load_rgb(PORTRAITS[0])
    lm = face_landmarks(image, FaceBox(-40, 480, 30, 560))
    assert np.isfinite(lm.lip_y) and lm.left_eye[1] < lm.chin_y
