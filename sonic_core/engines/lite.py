"""The `lite` engine: a weight-free talking head made by classical image warping.

Sound -> tracks (per video frame): jaw opening from loudness x an F1 estimate, lip rounding from the F2 /
low-band balance, forced closures on short energy dips (bilabials), fast-attack / slow-release smoothing.
Tracks -> picture: displacement fields are built once in small boxes (mouth+jaw, each eye) and, per frame,
scaled and applied with one cv2.remap per box. The lower jaw drops below the upper teeth (or the lip line when
the photo shows none), which stay with the skull, and the gap it opens gets a shaded mouth interior. Head motion
is one more remap over a head-sized region whose displacement fades to zero at its edge, so nothing is pasted
with a seam. Only that region is touched per frame.
"""
from __future__ import annotations

import cv2
import numpy as np
from scipy.ndimage import maximum_filter1d, uniform_filter1d

from ..errors import InputError
from ..media.face import FaceBox, FaceLandmarks, face_landmarks
from .lite_jaw import jaw_split

SR = 16000
HOP = 160                 # feature hop: 10 ms
WIN = 400                 # 25 ms analysis window
ATTACK_S, RELEASE_S = 0.04, 0.10
LEAD_S = 0.03             # sample the (lagging) smoothed tracks this much ahead: the picture leads slightly
OPEN_FULL = 0.11          # full jaw drop at the lips, as a fraction of the face-box height
ROUND_FULL = 0.22         # full rounding pulls the mouth corners in by this fraction of the half-width
ROUND_GAP = 0.4           # ... and shortens the lips' opening by this fraction of it
TEETH_RGB = np.array([232, 220, 194], np.float32)   # off-white, a little warm
TOOTH_EDGES = np.array([0.0, 0.34, 0.6, 0.8], np.float32)   # incisor/canine edges, in mouth half-widths


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / max(e1 - e0, 1e-6), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


# ----------------------------------------------------------------------------------------------- sound -> tracks

def _features(audio: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per 10 ms: level in dB, F1 proxy in [0,1] (centroid of 250-1000 Hz), spread in dB (1.5-3 kHz over
    250-1000 Hz)."""
    x = np.pad(audio.astype(np.float32), (WIN // 2, WIN // 2))
    n = max(1, 1 + (len(x) - WIN) // HOP)
    frames = np.lib.stride_tricks.as_strided(x, (n, WIN), (x.strides[0] * HOP, x.strides[0]))
    db = 10.0 * np.log10(np.mean(frames * frames, axis=1) + 1e-10)
    spec = np.abs(np.fft.rfft(frames * np.hanning(WIN).astype(np.float32), n=512, axis=1)) ** 2
    f = np.fft.rfftfreq(512, 1.0 / SR)
    low, high = (f >= 250) & (f < 1000), (f >= 1500) & (f < 3000)
    e_low = spec[:, low].sum(axis=1) + 1e-12
    f1 = (spec[:, low] * f[low]).sum(axis=1) / e_low
    spread = 10.0 * np.log10((spec[:, high].sum(axis=1) + 1e-12) / e_low)
    return db, np.clip((f1 - 350.0) / 350.0, 0.0, 1.0), spread


def _attack_release(target: np.ndarray, fast: np.ndarray) -> np.ndarray:
    """One-pole smoothing, quick when rising (or when `fast` marks a closure), slow when falling."""
    a_att, a_rel = 1 - np.exp(-HOP / SR / ATTACK_S), 1 - np.exp(-HOP / SR / RELEASE_S)
    out = np.empty_like(target)
    y = 0.0
    for k, (t, f) in enumerate(zip(target.tolist(), fast.tolist())):
        y += (a_att if (t > y or f) else a_rel) * (t - y)
        out[k] = y
    return out


def _speech_tracks(audio: np.ndarray, fps: float, n_frames: int) -> dict[str, np.ndarray]:
    """jaw, rounding and emphasis in [0,1], one value per video frame."""
    db, f1, spread = _features(audio)
    ref = np.percentile(db, 95)
    if ref < -55.0:  # a silent clip: nothing to say
        z = np.zeros(n_frames, np.float32)
        return {"jaw": z, "round": z, "emphasis": z}
    level = np.clip((db - (ref - 30.0)) / 26.0, 0.0, 1.0)
    voiced = level > 0.15
    jaw = level ** 0.8 * (0.45 + 0.55 * f1)
    # Bilabials and other closures: a dip well below the surrounding syllables (+-100 ms) shuts the mouth.
    closure = db < maximum_filter1d(db, 21) - 15.0
    jaw = np.where(closure, 0.0, jaw)
    rounding = np.clip((-spread - 4.0) / 14.0, 0.0, 1.0) * voiced
    # Emphasis: rises in loudness (syllable onsets), doubled after a pause (phrase starts).
    dbs = uniform_filter1d(np.maximum(db, ref - 40.0), 5)
    onset = np.maximum(dbs - np.roll(dbs, 5), 0.0)
    onset[:5] = 0.0
    pause = uniform_filter1d((~voiced).astype(np.float32), 30, origin=14) > 0.9  # the last 300 ms were quiet
    onset = onset * np.where(pause, 2.0, 1.0) / (np.percentile(onset[onset > 0], 95) if np.any(onset > 0) else 1.0)
    t_k = np.arange(0, 0.6, HOP / SR)
    kernel = (t_k / 0.12) * np.exp(1 - t_k / 0.12)  # a nod peaks ~120 ms after the onset and settles
    emphasis = np.convolve(np.clip(onset, 0, 2), kernel)[: len(onset)]
    emphasis = np.clip(emphasis / max(1.0, np.percentile(emphasis, 98)), 0.0, 1.0)

    tracks = {"jaw": _attack_release(jaw, closure), "round": _attack_release(rounding, np.zeros_like(closure)),
              "emphasis": emphasis}
    t = (np.arange(n_frames) + 0.5) / fps + LEAD_S
    tf = np.arange(len(db)) * HOP / SR
    return {k: np.interp(t, tf, v).astype(np.float32) for k, v in tracks.items()}


def _blinks(rng: np.random.Generator, fps: float, n_frames: int) -> np.ndarray:
    """Eyelid closure per frame: ~17 blinks/min at gamma-distributed intervals, 120-300 ms, closing faster than
    opening."""
    dur_total = n_frames / fps
    out = np.zeros(n_frames, np.float32)
    t = rng.uniform(0.4, 2.5)
    times = (np.arange(n_frames) + 0.5) / fps
    while t < dur_total:
        dur = max(rng.uniform(0.12, 0.3), 3.0 / fps)  # at least 3 frames, or it flickers
        close = 0.4 * dur
        ph = times - t
        shape = np.where(ph < close, ph / close, 1.0 - (ph - close) / (dur - close))
        out = np.maximum(out, np.where((ph >= 0) & (ph <= dur), np.clip(shape, 0, 1) ** 0.7, 0.0))
        t += dur + max(0.8, rng.gamma(3.0, 3.5 / 3.0))
    return out


def _head_motion(rng: np.random.Generator, fps: float, n_frames: int, emphasis: np.ndarray) -> np.ndarray:
    """(n, 4): roll in degrees, x and y shift in face widths/heights, nod (0..1), before motion_scale."""
    t = np.arange(n_frames) / fps

    def drift(amp: float) -> np.ndarray:
        fr, ph, w = rng.uniform(0.05, 0.35, 3), rng.uniform(0, 2 * np.pi, 3), rng.uniform(0.5, 1.0, 3)
        return amp * (w[:, None] * np.sin(2 * np.pi * fr[:, None] * t + ph[:, None])).sum(0) / w.sum()

    side = np.sign(rng.uniform(-1, 1)) or 1.0
    roll = drift(1.6) + side * 1.0 * emphasis
    return np.stack([roll, drift(0.015), drift(0.01) + 0.012 * emphasis, emphasis], axis=1).astype(np.float32)


# ----------------------------------------------------------------------------------------------- tracks -> picture

class _Box:
    """An axis-aligned box clipped to the image, with its absolute pixel-centre grids."""

    def __init__(self, x0: float, y0: float, x1: float, y1: float, w: int, h: int):
        self.x0, self.y0 = int(max(0, np.floor(x0))), int(max(0, np.floor(y0)))
        self.x1, self.y1 = int(min(w, np.ceil(x1))), int(min(h, np.ceil(y1)))
        self.X, self.Y = np.meshgrid(np.arange(self.x0, self.x1, dtype=np.float32),
                                     np.arange(self.y0, self.y1, dtype=np.float32))

    @property
    def empty(self) -> bool:
        return self.x1 - self.x0 < 2 or self.y1 - self.y0 < 2

    def sl(self, ox: int = 0, oy: int = 0) -> tuple[slice, slice]:
        return slice(self.y0 - oy, self.y1 - oy), slice(self.x0 - ox, self.x1 - ox)


class _Mouth:
    """Jaw drop and lip rounding as inverse-map fields over the mouth-and-jaw box, plus the mouth's inside in the
    gap the drop opens. The jaw splits at the lip line, which lies under the upper teeth when the photo shows
    them: above it (upper lip, upper teeth) the skull stays put; below it the lower lip, lower teeth and chin
    drop, the lip by a lens that closes at the mouth corners, the chin rigidly."""

    def __init__(self, image: np.ndarray, face: FaceBox, lm: FaceLandmarks):
        H, W = image.shape[:2]
        fw, fh = face.width, face.height
        cx, hw = lm.mouth[0], max(lm.mouth_half_width, 2.0)
        self.cx, self.hw, self.lm = cx, hw, lm
        self.open_px = OPEN_FULL * fh
        self.box = b = _Box(cx - 0.62 * fw, lm.upper_lip_top - 0.14 * fh, cx + 0.62 * fw, lm.chin_y + 0.3 * fh, W, H)
        if b.empty:
            return
        d = b.Y - lm.lip_line(b.X)                      # signed distance below the lip line
        below = d >= 0
        s = _smoothstep(0.0, 0.25 * fh, d)              # lower lip (lens-shaped) blends into the rigid jaw
        jaw = 1.0 - _smoothstep(0.25 * fw, 0.6 * fw, np.abs(b.X - cx))
        vert = 1.0 - _smoothstep(lm.chin_y - 0.02 * fh, lm.chin_y + 0.28 * fh, b.Y)   # the neck takes up the drop
        self.below_px = d.astype(np.float32)            # the gap never reaches above the lip line
        self.C = np.where(below, -vert * (1 - s), 0.0).astype(np.float32)
        self.B = np.where(below, -vert * jaw * s, 0.0).astype(np.float32)
        gx = 1.0 - _smoothstep(1.0, 1.9, np.abs(b.X - cx) / hw)
        gy = 1.0 - _smoothstep(0.0, 0.2 * fh, np.abs(d))
        if lm.teeth_visible:   # the lips round over the upper teeth, which stay: only the lower lip is pulled in
            gy = np.where(below, gy, gy * _smoothstep(0.7, 1.2, np.abs(b.X - cx) / hw))
        self.RX = (((b.X - cx) / hw) * gx * gy * ROUND_FULL * hw).astype(np.float32)
        self.feather = max(1.0, 0.006 * fh)     # the gap's edge: soft, ~1-2 px
        self.rim = max(2, round(0.3 * (lm.lower_lip_bottom - lm.lip_y)))   # into the lower lip, past its edge
        # The inside of the mouth: the lip colour pulled toward a generic mucosa red (grey photos stay plausible).
        self.inner_rgb = 0.3 * self._lip_colour(image, lm) + 0.7 * np.array([165, 46, 38], np.float32)
        # A fixed, soft mottling so the inside is not a flat computer-graphics gradient.
        noise = np.random.default_rng(7).standard_normal(b.X.shape).astype(np.float32)
        self.mottle = 1.0 + 0.08 * cv2.GaussianBlur(noise, (0, 0), max(1.0, 0.01 * fh)) / 0.25
        self.teeth = not lm.teeth_visible   # draw a hint of upper teeth only when the photo shows none

    @staticmethod
    def _lip_colour(image: np.ndarray, lm: FaceLandmarks) -> np.ndarray:
        y, x, r = (int(lm.lower_lip_bottom - 0.3 * (lm.lower_lip_bottom - lm.lip_y)), int(lm.mouth[0]),
                   int(max(1, lm.mouth_half_width * 0.3)))
        patch = image[max(0, y - 1):y + 2, max(0, x - r):x + r + 1].reshape(-1, 3)
        return np.median(patch, axis=0).astype(np.float32) if len(patch) else np.array([150, 80, 80], np.float32)

    def render(self, image: np.ndarray, jaw: float, rounding: float) -> np.ndarray | None:
        b = self.box
        if b.empty or (jaw < 1e-3 and rounding < 1e-3):
            return None
        op = jaw * self.open_px
        sx = b.X + rounding * self.RX
        u2 = ((sx - self.cx) / self.hw) ** 2
        # The lips part over a lens that ends short of the corners; rounding shortens it and blunts its ends,
        # so a rounded mouth opens narrower and more circular.
        uw2 = u2 / (1.0 - ROUND_GAP * rounding) ** 2
        lens = np.maximum(1.0 - uw2, 0.0) ** (1.0 - 0.4 * rounding)
        sy = b.Y + op * (lens * self.C + self.B)
        out = cv2.remap(image, sx, sy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if op * lens.max() > 0.5:
            self._cavity(out, sy, u2, uw2, lens, op)
        return out

    def _cavity(self, out: np.ndarray, sy: np.ndarray, u2: np.ndarray, uw2: np.ndarray, lens: np.ndarray,
                op: float) -> None:
        """Pixels below the lip line whose source lies above it are the opened gap. Shade them as the mouth's
        inside: the upper rim (lip or teeth) rolling into shadow, the lower lip's wet inner rim, a warm
        red-brown throat, darkest under the upper jaw and toward the corners, lighter over the tongue; and,
        when the photo shows no teeth, a faint shaded band of upper teeth at wide openings."""
        b, lm = self.box, self.lm
        lip_src = lm.lip_y + lm.lip_curve * np.minimum(u2, 1.0)
        depth = np.minimum(lip_src - sy, self.below_px)             # >0 inside the gap (source pixels)
        alpha = np.clip(depth / self.feather + 0.5, 0.0, 1.0) * (lens > 0)
        rows, cols = np.nonzero(alpha.max(axis=1) > 0)[0], np.nonzero(alpha.max(axis=0) > 0)[0]
        if len(rows) == 0:
            return
        win = np.s_[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
        a, ln, X, Y = alpha[win], lens[win], b.X[win], b.Y[win]
        gap = np.maximum(op * ln, 1.0)                              # the gap's height in each column
        dt = np.clip(Y - lm.lip_line(X), 0.0, gap)                  # px below the upper jaw
        db = gap - dt                                               # px above the lower lip
        v, lat = dt / gap, np.sqrt(np.minimum(uw2[win], 1.0))       # 0..1 down the gap, 0..1 out to the corner
        wide = min(1.0, op / self.open_px)
        inner = self.inner_rgb
        # Inner rims: the lips' own colour, taken just outside the gap in each column.
        m = a > 0.5
        k = np.arange(X.shape[1])
        first, last = np.argmax(m, axis=0), m.shape[0] - 1 - np.argmax(m[::-1], axis=0)
        H = out.shape[0]
        up = out[np.clip(rows[0] + first - 2, 0, H - 1), cols[0] + k].astype(np.float32)
        lo = out[np.clip(rows[0] + last + self.rim, 0, H - 1), cols[0] + k].astype(np.float32)
        up, lo = (cv2.blur(c[None], (5, 1))[0] for c in (up, lo))   # the lips' colour, not their pores
        # Throat: deep shadow under the upper lip, lighter toward the lower lip, darker into the cheeks.
        shade = (0.25 + 0.2 * _smoothstep(0.15, 1.0, v)) * (1.0 - 0.5 * lat * lat) * self.mottle[win]
        col = inner * shade[..., None]
        # Tongue: a low hump in wider openings, lit from above, with a soft 1 px edge.
        hump = 1.0 - 0.55 * wide * np.sqrt(np.maximum(1.0 - (lat / 0.8) ** 2, 0.0))
        tongue = (_smoothstep(-1.0, 1.0, (v - hump) * gap) * _smoothstep(0.2, 0.6, wide) * 0.85)[..., None]
        col += (inner * (0.55 - 0.2 * lat - 0.1 * v)[..., None] - col) * tongue
        if self.teeth:
            # Upper incisors and canines in shadow, only at wide openings: dark 1 px seams, rounded biting edges,
            # shorter and darker toward the corners where the arch turns away.
            ux = np.abs(X - self.cx)[..., None] / self.hw - TOOTH_EDGES          # tooth edges, in half-widths
            seam = np.abs(ux).min(axis=-1) * self.hw                           # px to the nearest edge
            th = 0.3 * self.open_px * (1.0 - 0.35 * lat) * (1.0 - 0.25 * np.exp(-seam * seam / 4.0))
            t = _smoothstep(0.5, 1.5, dt) * (1.0 - _smoothstep(-1.0, 0.5, dt - th))
            t *= (1.0 - _smoothstep(0.3, 0.85, lat)) * (1.0 - 0.45 * np.exp(-seam * seam))
            t = (t * 0.7 * _smoothstep(0.55, 0.95, wide))[..., None]
            col += (TEETH_RGB * (0.92 - 0.45 * lat - 0.25 * np.exp(-dt / 1.5))[..., None] - col) * t
        # The upper lip's underside faces down and rolls quickly into shadow (1-2 px); the lower lip's wet
        # inside faces up into the light and stays lip-coloured a little longer (1-3 px).
        col += (0.6 * up - col) * np.exp(-dt / np.clip(0.08 * gap, 0.7, 1.5))[..., None]
        col += (0.85 * lo - col) * np.exp(-db / np.clip(0.15 * gap, 1.0, 3.0))[..., None]
        region = out[win].astype(np.float32)
        out[win] = (region + (col - region) * a[..., None]).astype(np.uint8)


class _Eye:
    """Blink: the upper-lid skin slides down over the eye; the eye itself is squeezed into the lash line."""

    def __init__(self, gray: np.ndarray, centre: tuple[float, float], hw: float, hh: float):
        H, W = gray.shape
        ex, ey = centre
        hh = max(hh, 1.0)
        R = self._lid_room(gray, ex, ey - hh, hw, 1.6 * 2.3 * hh)
        self.D = min(2.3 * hh, R / 1.15)        # lid travel: from above the opening to its bottom
        Q = 0.7 * hh                            # the lid skin is stretched over R above; the eye squeezed into Q
        self.box = b = _Box(ex - 1.7 * hw, ey - hh - R - 1, ex + 1.7 * hw, ey + hh + Q + 1, W, H)
        if b.empty:
            return
        y = b.Y - ey
        prof = np.where(y < -hh, _smoothstep(-hh - R, -hh, y), 1.0 - _smoothstep(hh, hh + Q, y))
        lat = 1.0 - _smoothstep(0.8, 1.7, np.abs(b.X - ex) / max(hw, 1.0))
        self.F = (-(prof * lat)).astype(np.float32)

    @staticmethod
    def _lid_room(gray: np.ndarray, ex: float, top: float, hw: float, want: float) -> float:
        """How far above the eye the lid skin may stretch: up to the first strong horizontal edge (a glasses
        rim, a dark brow), which must not be dragged over the eye."""
        x0, x1 = int(max(0, ex - 0.7 * hw)), int(min(gray.shape[1], ex + 0.7 * hw))
        y0, y1 = int(max(0, top - want)), int(max(0, top - 2))
        if x1 - x0 < 2 or y1 - y0 < 3:
            return want
        rows = gray[y0:y1, x0:x1].astype(np.float32).mean(axis=1)
        dark = np.nonzero(rows < 0.6 * np.percentile(rows, 90))[0]  # rows much darker than the lid skin
        return float(min(want, top - (y0 + dark[-1] + 1))) if len(dark) else want

    def render(self, image: np.ndarray, blink: float) -> np.ndarray | None:
        b = self.box
        if b.empty or blink < 1e-3:
            return None
        return cv2.remap(image, b.X, b.Y + blink * self.D * self.F, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


class _Head:
    """A similarity transform about the neck, weighted 1 over the head and fading to 0 at the region's edge."""

    def __init__(self, face: FaceBox, lm: FaceLandmarks, W: int, H: int):
        fw, fh = face.width, face.height
        cx, cy = face.centre[0], face.y0 + 0.38 * fh
        ax, ay, grow = 0.8 * fw, 1.0 * fh, 1.45
        self.box = b = _Box(cx - ax * grow, cy - ay * grow, cx + ax * grow, cy + ay * grow, W, H)
        self.pivot = (cx, lm.chin_y + 0.15 * fh)
        r = np.sqrt(((b.X - cx) / ax) ** 2 + ((b.Y - cy) / ay) ** 2)
        w = (1.0 - _smoothstep(1.0, grow, r)).astype(np.float32)
        self.w, self.wX, self.wY = w, w * (b.X - self.pivot[0]), w * (b.Y - self.pivot[1])
        self.lx, self.ly = b.X - b.x0, b.Y - b.y0          # region-local grid
        self.fw, self.fh = fw, fh

    def maps(self, roll_deg: float, dx: float, dy: float, nod: float) -> tuple[np.ndarray, np.ndarray]:
        """Inverse map: src = pivot + M (p - pivot) - t, with M = R(-roll) / scale; written as p + w * (...)."""
        th, s = np.deg2rad(roll_deg), 1.0 - 0.012 * nod
        c, si = float(np.cos(th) / s), float(np.sin(th) / s)  # python floats keep the maps float32
        tx, ty = dx * self.fw, dy * self.fh
        mx = self.lx + (c - 1) * self.wX + si * self.wY - tx * self.w
        my = self.ly - si * self.wX + (c - 1) * self.wY - ty * self.w
        return mx, my


class LiteAnimator:
    """Animates one portrait from speech; frame(i) is deterministic for the same inputs and seed."""

    def __init__(self, image: np.ndarray, face: FaceBox, audio_16k: np.ndarray, fps: float, n_frames: int,
                 seed: int = 0, dynamic_scale: float = 1.0, motion_scale: float = 1.0):
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
            raise InputError("image", f"expected an RGB uint8 array (H, W, 3), got {image.dtype} {image.shape}",
                             "pass the portrait as 8-bit RGB")
        if fps <= 0 or n_frames < 1:
            raise InputError("fps", f"fps={fps}, n_frames={n_frames}",
                             "use a positive frame rate and at least one frame")
        self.image = np.ascontiguousarray(image[..., :3])
        self.n_frames, self.fps = int(n_frames), float(fps)
        H, W = self.image.shape[:2]
        audio = np.asarray(audio_16k, np.float32).reshape(-1)
        n_audio = int(round(n_frames / fps * SR))
        audio = np.pad(audio[:n_audio], (0, max(0, n_audio - len(audio))))

        rng = np.random.default_rng(seed)
        tracks = _speech_tracks(audio, fps, n_frames)
        self._jaw = np.clip(tracks["jaw"] * dynamic_scale, 0.0, 1.0)
        self._round = np.clip(tracks["round"] * min(dynamic_scale, 1.5), 0.0, 1.0) * (1.0 - 0.5 * self._jaw)
        self._blink = _blinks(rng, fps, n_frames)
        self._motion = _head_motion(rng, fps, n_frames, tracks["emphasis"]) * np.float32(motion_scale)

        self.landmarks = lm = jaw_split(self.image, face, face_landmarks(self.image, face))
        self._mouth = _Mouth(self.image, face, lm)
        gray = cv2.cvtColor(self.image, cv2.COLOR_RGB2GRAY)
        self._eyes = [_Eye(gray, c, lm.eye_half_width, lm.eye_half_height) for c in (lm.left_eye, lm.right_eye)]
        self._head = _Head(face, lm, W, H)

    @property
    def mouth_open(self) -> np.ndarray:
        return self._jaw.copy()

    def frame(self, i: int) -> np.ndarray:
        if not 0 <= i < self.n_frames:
            raise IndexError(f"frame {i} outside 0..{self.n_frames - 1}")
        img, head = self.image, self._head
        hb = head.box
        out = img.copy()
        parts = [(self._mouth.box, self._mouth.render(img, float(self._jaw[i]), float(self._round[i])))]
        parts += [(e.box, e.render(img, float(self._blink[i]))) for e in self._eyes]
        for box, patch in parts:
            if patch is not None:
                out[box.sl()] = patch
        roll, dx, dy, nod = (float(v) for v in self._motion[i])
        if abs(roll) + abs(dx) * 100 + abs(dy) * 100 + abs(nod) > 1e-4 and not hb.empty:
            mx, my = head.maps(roll, dx, dy, nod)
            out[hb.sl()] = cv2.remap(np.ascontiguousarray(out[hb.sl()]), mx, my, cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT)
        return out
