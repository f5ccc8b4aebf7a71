"""Weight-free face finding (placeholder signature; implemented with OpenCV's Haar cascades)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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


def detect_face(image: np.ndarray) -> FaceBox | None:
    """Largest face in an RGB uint8 image (H, W, 3), or None."""
    raise NotImplementedError
