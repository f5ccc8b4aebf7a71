"""Where the lite engine splits the jaw: everything above the line stays with the skull, everything below drops.

The mouth opens between the upper teeth and whatever lies below them: in a closed mouth that is the lip line,
in a smile or an open mouth the upper teeth's biting edge. The shared face finder places the lip line by the
lips' redness, which in a wide smile can land on the lower lip (the upper lip is thin and the teeth are not
red), and without colour contrast it falls back to the face's proportions, which can put the line on the upper
lip. So this looks for the upper teeth themselves (far less colourful than skin and lips, lighter than the
mouth's dark inside) and, failing both, for the darkest line between the lips.
"""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from ..media.face import FaceBox, FaceLandmarks

TEETH_CHROMA = 0.45   # teeth: Lab chroma below this fraction of the lower face's median (skin)
TEETH_LIGHT = 0.6     # ... and lightness above this fraction of it (the mouth's inside is darker)
MIN_SKIN_CHROMA = 8.0  # below this the photo is (nearly) grey: colour cannot tell teeth from skin


def jaw_split(image: np.ndarray, face: FaceBox, lm: FaceLandmarks) -> FaceLandmarks:
    """lm with its lip line where the jaw opens: under the upper teeth when the photo shows them, else on the
    darkest line between the lips where the face finder placed the mouth by proportions only, else lm's own.
    A grey photo keeps lm's: without colour the darkest line of a smile is the upper lip's shadow above the
    teeth, and the teeth cannot be told from skin."""
    w, h = face.width, face.height
    x0, x1 = int(max(0, lm.mouth[0] - 0.32 * w)), int(min(image.shape[1], lm.mouth[0] + 0.32 * w))
    y0, y1 = int(max(0, face.y0 + 0.55 * h)), int(min(image.shape[0], face.y0 + 0.95 * h))
    if x1 - x0 < 10 or y1 - y0 < 10:
        return lm
    lab = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1, :3]), cv2.COLOR_RGB2LAB).astype(np.float32)
    light, chroma = lab[..., 0], np.hypot(lab[..., 1] - 128.0, lab[..., 2] - 128.0)
    if np.median(chroma) < MIN_SKIN_CHROMA:
        return lm
    teeth = _under_upper_teeth(light, chroma, x0, y0, face, lm)
    if teeth is not None:
        return teeth
    return lm if "mouth" in lm.refined else _darkest_line(light, x0, y0, face, lm)


def _under_upper_teeth(light: np.ndarray, chroma: np.ndarray, x0: int, y0: int, face: FaceBox,
                       lm: FaceLandmarks) -> FaceLandmarks | None:
    """The lip line moved to the upper teeth's lower edge, and the mouth's centre and width taken from the
    teeth; None when the lower-face window (Lab lightness and chroma, from x0, y0) shows no upper teeth."""
    w, h, cx = face.width, face.height, lm.mouth[0]
    skin_chroma, skin_light = float(np.median(chroma)), float(np.median(light))
    mask = ((chroma < TEETH_CHROMA * skin_chroma) & (light > TEETH_LIGHT * skin_light)).astype(np.uint8)
    # Join neighbouring teeth across the dark seams between them.
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((1, max(3, int(0.02 * w) | 1)), np.uint8))
    n, labels, stats, cents = cv2.connectedComponentsWithStats(mask)
    # A row of teeth: wide, flat, centred on the mouth; the upper row is the higher one.
    rows = [k for k in range(1, n) if stats[k, 2] > 0.15 * w and stats[k, 3] < 0.6 * stats[k, 2]
            and abs(cents[k][0] + x0 - cx) < 0.12 * w and stats[k, 4] > 0.3 * stats[k, 2] * stats[k, 3]]
    if not rows:
        return None
    k = min(rows, key=lambda r: stats[r, 1])
    bx, by, bw, bh = (int(v) for v in stats[k, :4])
    cols = np.arange(bx + int(0.1 * bw), bx + int(0.9 * bw))
    row = labels[by:by + bh, cols] == k
    has = row.any(axis=0)
    if has.sum() < 3:
        return None
    # Two rows below each column's lowest tooth pixel: the blurred biting edge stays with the teeth.
    bottom = by + bh + 1 - np.argmax(row[::-1], axis=0)
    mid = x0 + bx + bw / 2.0
    half = 0.6 * bw                                           # the lip corners reach past the last (lit) teeth
    if "mouth" in lm.refined:                                 # ... and past teeth in shadow: trust the lips' width
        half = max(half, lm.mouth_half_width)
    u = (cols[has] + x0 - mid) / half
    curve, lip = np.polyfit(u * u, bottom[has] + y0, 1)
    lip = float(lip)
    return replace(lm, mouth=(float(mid), lip), mouth_half_width=float(half),
                   lip_y=lip, lip_curve=float(np.clip(curve, -0.08 * h, 0.05 * h)),
                   upper_lip_top=float(min(lm.upper_lip_top, y0 + by - 0.02 * h)),
                   lower_lip_bottom=float(max(lm.lower_lip_bottom, lip + 0.03 * h)),
                   chin_y=float(max(lm.chin_y, lip + 0.2 * h)), teeth_visible=True, refined=lm.refined + ("teeth",))


def _darkest_line(light: np.ndarray, x0: int, y0: int, face: FaceBox, lm: FaceLandmarks) -> FaceLandmarks:
    """The line between closed lips is the darkest row near where the face's proportions put it; its median
    height over the mouth's middle half moves the whole mouth (the corners' rows are too noisy to fit a curve)."""
    h, cx, hw = face.height, lm.mouth[0], lm.mouth_half_width
    c0, c1 = int(max(0, cx - 0.5 * hw - x0)), int(min(light.shape[1], cx + 0.5 * hw - x0))
    r0, r1 = int(max(0, lm.lip_y - 0.08 * h - y0)), int(min(light.shape[0], lm.lip_y + 0.08 * h - y0))
    if c1 - c0 < 3 or r1 - r0 < 5:
        return lm
    band = cv2.GaussianBlur(np.ascontiguousarray(light[r0:r1, c0:c1]), (0, 0), max(1.0, 0.01 * h))
    lip = y0 + r0 + float(np.median(np.argmin(band, axis=0)))
    shift = lip - lm.lip_y
    return replace(lm, mouth=(cx, lip), lip_y=lip, upper_lip_top=lm.upper_lip_top + shift,
                   lower_lip_bottom=lm.lower_lip_bottom + shift, chin_y=lm.chin_y + shift,
                   refined=lm.refined + ("lip line",))
