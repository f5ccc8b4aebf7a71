"""Weight-free face finding: OpenCV Haar cascades for the face box, image-refined geometric landmarks.

Nothing here needs model weights (the cascades ship inside opencv-python). Every function is total: bad or
odd images give None (detect_face) or geometric fallbacks (face_landmarks), never an exception.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

# Cascades, most precise first: alt2 has far fewer false positives; default finds more tilted/dim faces.
_FACE_CASCADES = ("haarcascade_frontalface_alt2.xml", "haarcascade_frontalface_default.xml")
_DETECT_SIDE = 640  # detect on a copy whose longer side is at most this: Haar cost grows with pixel count


@dataclass(frozen=True)
class FaceBox:
    """A face in pixel coordinates of the image it was found in (x1, y1 exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int
    score: float = 1.0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2.0, (self.y0 + self.y1) / 2.0


@dataclass(frozen=True)
class FaceLandmarks:
    """Coarse landmarks in image pixels. The lip line is y = lip_y + lip_curve * ((x - mouth_x) / mouth_half_width)**2
    (lip_curve < 0: corners higher than the centre, a smile)."""

    left_eye: tuple[float, float]   # the eye on the image's left
    right_eye: tuple[float, float]
    eye_half_width: float
    eye_half_height: float          # half the visible eye opening
    mouth: tuple[float, float]      # centre of the lips
    mouth_half_width: float
    lip_y: float                    # the dark line between the lips, at the mouth centre
    lip_curve: float
    upper_lip_top: float            # vermilion extent above / below the lip line
    lower_lip_bottom: float
    chin_y: float
    teeth_visible: bool = False     # the photo already shows the upper teeth (open smile)
    refined: tuple[str, ...] = ()   # which parts the image refined ("eyes", "mouth"); the rest is geometry

    def lip_line(self, x: np.ndarray | float) -> np.ndarray | float:
        u = (np.asarray(x, dtype=np.float32) - self.mouth[0]) / max(self.mouth_half_width, 1.0)
        return self.lip_y + self.lip_curve * np.minimum(u * u, 1.0)


@lru_cache(maxsize=None)
def _cascade(name: str) -> cv2.CascadeClassifier | None:
    c = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    return None if c.empty() else c


def _gray(image: np.ndarray) -> np.ndarray | None:
    """uint8 grayscale of an RGB/RGBA/gray image, or None for anything unusable."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or a.shape[0] < 16 or a.shape[1] < 16 or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        return None
    if a.dtype != np.uint8:
        a = np.clip(a * 255.0 if a.dtype.kind == "f" and a.max(initial=0) <= 1.0 else a, 0, 255).astype(np.uint8)
    return a if a.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(a[..., :3]), cv2.COLOR_RGB2GRAY)


def detect_face(image: np.ndarray) -> FaceBox | None:
    """Largest frontal face in an RGB uint8 image (H, W, 3), or None. score = cascade votes / 30, capped at 1."""
    gray = _gray(image)
    if gray is None:
        return None
    h, w = gray.shape
    # Small copy first (fast); a face that is small in a big picture needs the finer copy.
    for side in (_DETECT_SIDE, 2 * _DETECT_SIDE):
        s = min(1.0, side / max(h, w))
        small = (cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
                 if s < 1 else gray)
        box = _detect_largest(cv2.equalizeHist(small))
        if box is not None:
            x, y, bw, bh, votes = box
            return FaceBox(int(round(x / s)), int(round(y / s)), int(round((x + bw) / s)), int(round((y + bh) / s)),
                           score=float(min(1.0, votes / 30.0)))
        if s == 1.0:
            break
    return None


def _detect_largest(small: np.ndarray) -> tuple[float, float, float, float, float] | None:
    min_side = max(20, int(0.06 * min(small.shape)))
    for name in _FACE_CASCADES:
        cascade = _cascade(name)
        if cascade is None:
            continue
        boxes, votes = cascade.detectMultiScale2(small, scaleFactor=1.08, minNeighbors=5, minSize=(min_side, min_side))
        if len(boxes):
            i = int(np.argmax([bw * bh for _, _, bw, bh in boxes]))
            return (*(float(v) for v in boxes[i]), float(votes[i]))
    return None


def centre_face(image: np.ndarray) -> FaceBox:
    """A plausible face box for an image with no detectable face: centred a little above the middle,
    about 40% of the shorter side (a typical head-and-shoulders framing)."""
    h, w = np.asarray(image).shape[:2]
    side = max(8, int(0.4 * min(h, w)))
    cx, cy = w / 2.0, h * 0.42
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    return FaceBox(x0, y0, min(w, x0 + side), min(h, y0 + side), score=0.0)


def _geometric(face: FaceBox) -> dict:
    """Proportions of a Haar frontal-face box (measured on typical portraits): eyes at 40% of the box height,
    lips at 77%, chin just below the box."""
    x0, y0, w, h = face.x0, face.y0, face.width, face.height
    cx = x0 + 0.5 * w
    lip = y0 + 0.775 * h
    return dict(left_eye=(x0 + 0.31 * w, y0 + 0.40 * h), right_eye=(x0 + 0.69 * w, y0 + 0.40 * h),
                eye_half_width=0.10 * w, eye_half_height=0.028 * h, mouth=(cx, lip), mouth_half_width=0.17 * w,
                lip_y=lip, lip_curve=0.0, upper_lip_top=lip - 0.045 * h, lower_lip_bottom=lip + 0.06 * h,
                chin_y=y0 + 1.05 * h)


def _refine_eyes(gray: np.ndarray, face: FaceBox, geo: dict) -> bool:
    """Eye cascade inside the upper half of the face; keeps one eye per side, each near where geometry puts it."""
    x0, y0, w, h = face.x0, face.y0, face.width, face.height
    roi = gray[max(0, y0 + int(0.18 * h)):max(0, y0 + int(0.58 * h)), max(0, x0):max(0, face.x1)]
    if roi.size == 0 or min(roi.shape) < 12:
        return False
    roi = cv2.equalizeHist(roi)
    oy, ox = max(0, y0 + int(0.18 * h)), max(0, x0)
    found: dict[str, tuple[float, float, float]] = {}
    for name in ("haarcascade_eye_tree_eyeglasses.xml", "haarcascade_eye.xml"):
        cascade = _cascade(name)
        if cascade is None:
            continue
        for ex, ey, ew, eh in cascade.detectMultiScale(roi, 1.08, 3, minSize=(max(6, w // 10), max(6, w // 10)),
                                                       maxSize=(w // 3, w // 3)):
            c = (ox + ex + ew / 2.0, oy + ey + eh / 2.0)
            side = "left_eye" if c[0] < x0 + w / 2 else "right_eye"
            gx, gy = geo[side]
            err = np.hypot(c[0] - gx, c[1] - gy)
            if err < 0.15 * w and (side not in found or err < found[side][2]):
                found[side] = (c[0], c[1], err)
        if len(found) == 2:
            break
    if len(found) != 2 or abs(found["left_eye"][1] - found["right_eye"][1]) > 0.08 * h:
        return False
    geo["left_eye"], geo["right_eye"] = found["left_eye"][:2], found["right_eye"][:2]
    return True


def _refine_mouth(rgb: np.ndarray, face: FaceBox, geo: dict) -> bool:
    """Lips are redder than skin (high a* in Lab) and the line between them is the darkest band there.
    The redness mask gives the mouth's width and vertical extent; the darkest row per column, fitted by a
    parabola, gives the lip line and its curve (a smile bends it)."""
    x0, y0, w, h = face.x0, face.y0, face.width, face.height
    cx = x0 + 0.5 * w
    rx0, rx1 = int(max(0, cx - 0.3 * w)), int(min(rgb.shape[1], cx + 0.3 * w))
    ry0, ry1 = int(max(0, y0 + 0.6 * h)), int(min(rgb.shape[0], y0 + 0.95 * h))
    if rx1 - rx0 < 10 or ry1 - ry0 < 10:
        return False
    patch = np.ascontiguousarray(rgb[ry0:ry1, rx0:rx1, :3])
    lab = cv2.cvtColor(patch, cv2.COLOR_RGB2LAB).astype(np.float32)
    a = cv2.GaussianBlur(lab[..., 1], (0, 0), max(1.0, 0.01 * w))
    lum = cv2.GaussianBlur(lab[..., 0], (0, 0), max(1.0, 0.008 * w))
    # Redness relative to the patch: lips are the top ~12% of a* in the lower face.
    thr = np.percentile(a, 88)
    if thr - np.median(a) < 2.0:  # no colour contrast (grey image): geometry only
        return False
    mask = (a >= thr).astype(np.uint8)
    n, labels, stats, cents = cv2.connectedComponentsWithStats(mask)
    if n < 2:
        return False
    # The lip blob: large, near the horizontal centre.
    best, best_score = 0, -1.0
    for k in range(1, n):
        bx, by, bw, bh, area = stats[k]
        off = abs(cents[k][0] + rx0 - cx) / w
        score = area * (1.0 - min(off / 0.15, 1.0))
        if bw > 0.12 * w and score > best_score:
            best, best_score = k, score
    if best == 0:
        return False
    bx, by, bw, bh, _ = stats[best]
    if not (0.18 * w < bw < 0.62 * w and 0.03 * h < bh < 0.3 * h):
        return False
    cols = np.arange(bx + int(0.15 * bw), bx + int(0.85 * bw))
    # Teeth showing (a smile): bright, not red, inside the lips' box. The jaw splits below the upper teeth,
    # so the lip line is the teeth's lower edge; otherwise it is the darkest row of each column.
    box_a, box_l = a[by:by + bh, cols], lum[by:by + bh, cols]
    teeth = (box_l > np.percentile(lum, 75)) & (box_a < thr - 4.0)
    teeth_visible = teeth.mean() > 0.08
    if teeth_visible:
        rows = np.arange(bh)[:, None]
        has = teeth.any(axis=0)
        ys = by + np.where(has, np.max(np.where(teeth, rows, -1), axis=0), np.argmin(box_l, axis=0)) + 1
    else:
        ys = by + np.argmin(box_l, axis=0)
    mid = bx + bw / 2.0
    u = (cols - mid) / (bw / 2.0)
    curve, lip = np.polyfit(u * u, ys, 1) if len(cols) >= 3 else (0.0, float(np.median(ys)))
    lip_y = ry0 + float(lip)
    if not (y0 + 0.62 * h < lip_y < y0 + 0.95 * h):
        return False
    half = 0.55 * bw  # redness fades before the corners: the mouth is a little wider than the red blob
    geo.update(mouth=(rx0 + mid, lip_y), mouth_half_width=half, lip_y=lip_y,
               lip_curve=float(np.clip(curve, -0.08 * h, 0.05 * h)),
               upper_lip_top=float(min(ry0 + by, lip_y - 0.02 * h)),
               lower_lip_bottom=float(max(ry0 + by + bh, lip_y + 0.03 * h)), teeth_visible=bool(teeth_visible))
    geo["chin_y"] = lip_y + 0.25 * h
    return True


def face_landmarks(image: np.ndarray, face: FaceBox) -> FaceLandmarks:
    """Landmarks from the box's proportions, refined by the image where that works (see FaceLandmarks.refined)."""
    geo = _geometric(face)
    refined = []
    try:
        a = np.asarray(image)
        gray = _gray(a)
        if gray is not None and face.width >= 24 and face.height >= 24:
            if _refine_eyes(gray, face, geo):
                refined.append("eyes")
            if a.ndim == 3 and a.shape[2] >= 3 and a.dtype == np.uint8 and _refine_mouth(a, face, geo):
                refined.append("mouth")
    except cv2.error:  # refinement is best-effort; the geometric answer stands
        geo = _geometric(face)
        refined = []
    eye_dist = geo["right_eye"][0] - geo["left_eye"][0]
    if refined and "eyes" in refined:
        geo["eye_half_width"] = 0.27 * eye_dist
        geo["eye_half_height"] = 0.075 * eye_dist
    geo = {k: tuple(float(c) for c in v) if isinstance(v, tuple) else v if isinstance(v, bool) else float(v)
           for k, v in geo.items()}
    return FaceLandmarks(refined=tuple(refined), **geo)
