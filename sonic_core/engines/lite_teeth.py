"""Where the lite engine splits the jaw: under the upper teeth when the photo shows them.

The mouth opens between the upper teeth, which stay with the skull, and whatever lies below them: in a closed
mouth that is the lip line, in a smile or an open mouth the upper teeth's biting edge. The shared face finder
places the lip line by the lips' redness, which in a wide smile can land on the lower lip (the upper lip is thin
and the teeth are not red); so this looks for the upper teeth themselves: far less colourful than skin and lips,
and lighter than the mouth's dark inside.
"""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from ..media.face import FaceBox, FaceLandmarks

TEETH_CHROMA = 0.45   # teeth: Lab chroma below this fraction of the lower face's median (skin)
TEETH_LIGHT = 0.6     # ... and lightness above this fraction of it (the mouth's inside is darker)
MIN_SKIN_CHROMA = 8.0  # below this the photo is (nearly) grey: colour cannot tell teeth from skin


def split_at_upper_teeth(image: np.ndarray, face: FaceBox, lm: FaceLandmarks) -> FaceLandmarks:
    """lm with its lip line moved to the upper teeth's lower edge, and the mouth's centre and width taken from
    the teeth, when the photo shows upper teeth; lm unchanged otherwise."""
    w, h = face.width, face.height
    cx = lm.mouth[0]
    x0, x1 = int(max(0, cx - 0.32 * w)), int(min(image.shape[1], cx + 0.32 * w))
    y0, y1 = int(max(0, face.y0 + 0.55 * h)), int(min(image.shape[0], face.y0 + 0.95 * h))
    if x1 - x0 < 10 or y1 - y0 < 10:
        return lm
    lab = cv2.cvtColor(np.ascontiguousarray(image[y0:y1, x0:x1, :3]), cv2.COLOR_RGB2LAB).astype(np.float32)
    light, chroma = lab[..., 0], np.hypot(lab[..., 1] - 128.0, lab[..., 2] - 128.0)
    skin_chroma, skin_light = float(np.median(chroma)), float(np.median(light))
    if skin_chroma < MIN_SKIN_CHROMA:
        return lm
    mask = ((chroma < TEETH_CHROMA * skin_chroma) & (light > TEETH_LIGHT * skin_light)).astype(np.uint8)
    # Join neighbouring teeth across the dark seams between them.
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((1, max(3, int(0.02 * w) | 1)), np.uint8))
    n, labels, stats, cents = cv2.connectedComponentsWithStats(mask)
    # A row of teeth: wide, flat, centred on the mouth; the upper row is the higher one.
    rows = [k for k in range(1, n) if stats[k, 2] > 0.15 * w and stats[k, 3] < 0.6 * stats[k, 2]
            and abs(cents[k][0] + x0 - cx) < 0.12 * w and stats[k, 4] > 0.3 * stats[k, 2] * stats[k, 3]]
    if not rows:
        return lm
    k = min(rows, key=lambda r: stats[r, 1])
    bx, by, bw, bh = (int(v) for v in stats[k, :4])
    cols = np.arange(bx + int(0.1 * bw), bx + int(0.9 * bw))
    row = labels[by:by + bh, cols] == k
    has = row.any(axis=0)
    if has.sum() < 3:
        return lm
    # One row below each column's lowest tooth pixel: the blurred biting edge stays with the teeth.
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
