"""AI-generated-content labels for SonicFlow's videos (China's GB 45438-2025; see shared/specs/aigc-labels.md).

* Visible (explicit) label: the text "AI生成" (white on a dark outline) in the top-left corner of the first
  `seconds` (default 2 s, the standard's minimum), its height 6 % of the frame's shorter side (standard: >= 5 %).
  The glyphs come pre-rendered in aigc_label.png (Noto Sans CJK SC Bold, SIL OFL), so no CJK font is needed.
* Implicit (metadata) label: the MP4 metadata key `AIGC` holding the seven-field JSON (written with
  movflags=use_metadata_tags by encode_mp4).
`check_labels` reads both back. SonicFlow never strips labels it did not write.
"""
from __future__ import annotations

import json
import logging
import os
import re
import uuid
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Iterable, Iterator

import av
import cv2
import numpy as np

LABEL_MODES = ("visible+metadata", "metadata", "off")
AIGC_KEY = "AIGC"
LABEL_HEIGHT = 0.06     # of the shorter side
MARGIN = 0.02           # of the shorter side
SECONDS = 2.0
log = logging.getLogger("sonicflow.labels")


@lru_cache(maxsize=1)
def _glyphs() -> tuple[np.ndarray, np.ndarray]:
    """(fill, coverage) in [0, 1] at the rendered size: white text where fill=1, dark outline elsewhere in coverage."""
    la = cv2.imread(os.path.join(os.path.dirname(__file__), "aigc_label.png"), cv2.IMREAD_UNCHANGED)
    gray, alpha = (la[..., 0], la[..., 1]) if la.ndim == 3 else (la, la)
    return gray.astype(np.float32) / 255, alpha.astype(np.float32) / 255


@dataclass(frozen=True)
class Overlay:
    x: int
    y: int
    colour: np.ndarray  # (h, w, 3) float32 0..255
    alpha: np.ndarray   # (h, w, 1) float32 0..1


@lru_cache(maxsize=8)
def overlay_for(width: int, height: int) -> Overlay:
    fill, cover = _glyphs()
    short = min(width, height)
    h = max(12, int(round(LABEL_HEIGHT * short)))
    w = max(1, int(round(fill.shape[1] * h / fill.shape[0])))
    fill = cv2.resize(fill, (w, h), interpolation=cv2.INTER_AREA)
    cover = cv2.resize(cover, (w, h), interpolation=cv2.INTER_AREA)
    colour = np.repeat((fill * 255)[..., None], 3, axis=2)  # white glyphs, black outline
    margin = max(2, int(round(MARGIN * short)))
    return Overlay(margin, margin, colour, cover[..., None])


def stamp(frame: np.ndarray, ov: Overlay) -> np.ndarray:
    out = frame.copy()
    h, w = ov.alpha.shape[:2]
    region = out[ov.y:ov.y + h, ov.x:ov.x + w].astype(np.float32)
    out[ov.y:ov.y + h, ov.x:ov.x + w] = (ov.colour * ov.alpha + region * (1 - ov.alpha)).round().astype(np.uint8)
    return out


def labelled(frames: Iterable[np.ndarray], fps: float, width: int, height: int,
             seconds: float = SECONDS) -> Iterator[np.ndarray]:
    """The frames with the visible label on the first `seconds` (at least 2 s, or the whole clip if shorter)."""
    ov, n = overlay_for(width - width % 2, height - height % 2), int(np.ceil(max(seconds, SECONDS) * fps))
    for i, frame in enumerate(frames):
        yield stamp(frame, ov) if i < n else frame


def _ascii_field(value: str) -> str:
    """The standard wants printable ASCII without spaces in every field."""
    return re.sub(r"[^\x21-\x7e]", "_", value)


def aigc_metadata(producer: str = "SonicFlow", produce_id: str | None = None, propagator: str = "",
                  propagate_id: str = "") -> dict:
    fields = {"Label": "1", "ContentProducer": producer, "ProduceID": produce_id or uuid.uuid4().hex,
              "ReservedCode1": "", "ContentPropagator": propagator, "PropagateID": propagate_id, "ReservedCode2": ""}
    return {AIGC_KEY: json.dumps({k: _ascii_field(v) for k, v in fields.items()}, separators=(",", ":"))}


def label_frames_and_metadata(mode: str, frames: Iterable[np.ndarray], fps: float, width: int, height: int,
                              who: str = "") -> tuple[Iterable[np.ndarray], dict]:
    """Apply a label mode: what to encode and which metadata to add. Turning the visible label off is logged,
    as the rules ask (Art. 9)."""
    if mode not in LABEL_MODES:
        raise ValueError(f"label mode must be one of {LABEL_MODES}")
    if mode != "visible+metadata":
        log.warning("AI-content label: visible label turned off on request (mode %r%s)", mode, f", {who}" if who else "")
    meta = aigc_metadata() if mode != "off" else {}
    return (labelled(frames, fps, width, height) if mode == "visible+metadata" else frames), meta


@dataclass
class LabelReport:
    implicit: dict | None   # the AIGC JSON, parsed, or None
    visible: bool
    visible_score: float    # best correlation of the label's pattern in the first 2 s (1 = exact)
    frames_checked: int

    def to_dict(self) -> dict:
        return asdict(self)


def check_labels(path: str, threshold: float = 0.6) -> LabelReport:
    """Read both labels back from an MP4: the AIGC metadata, and SonicFlow's visible label in the first 2 s."""
    with av.open(path) as c:
        raw = c.metadata.get(AIGC_KEY)
        try:
            implicit = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            implicit = {"unparsed": raw}
        stream = c.streams.video[0]
        fps = float(stream.average_rate or 25)
        best, n = -1.0, 0
        for frame in c.decode(stream):
            rgb = frame.to_ndarray(format="rgb24")
            ov = overlay_for(rgb.shape[1], rgb.shape[0])
            h, w = ov.alpha.shape[:2]
            inside = ov.alpha[..., 0] > 0.5  # the label's own pixels: white glyphs on their dark outline
            patch = cv2.cvtColor(rgb[ov.y:ov.y + h, ov.x:ov.x + w], cv2.COLOR_RGB2GRAY).astype(np.float32)[inside]
            want = ov.colour[..., 0][inside]
            if patch.std() > 1e-3:
                best = max(best, float(np.corrcoef(patch, want)[0, 1]))
            n += 1
            if n >= int(SECONDS * fps):
                break
    return LabelReport(implicit=implicit, visible=best >= threshold, visible_score=round(best, 3), frames_checked=n)
