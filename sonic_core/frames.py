"""Frame sequences: what Generate hands to Video Encode.

A 10-minute 1080p video is 15000 frames, over 300 GB as one float32 tensor, so frames are never held together:
a sequence yields uint8 RGB frames one at a time. Rendered sequences recompute frames on demand from their
engine state (deterministic for a seed), so a sequence ComfyUI keeps in its output cache stays valid.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np


class FrameSequence:
    """`n_frames` RGB uint8 frames of `width` x `height` at `fps`, produced by `engine`."""

    def __init__(self, n_frames: int, fps: float, width: int, height: int, engine: str, info: dict | None = None):
        self.n_frames, self.fps, self.width, self.height, self.engine = n_frames, fps, width, height, engine
        self.info = dict(info or {})

    def __len__(self) -> int:
        return self.n_frames

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps

    def frame(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(self.n_frames):
            yield self.frame(i)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.engine} {self.n_frames} frames {self.width}x{self.height} "
                f"@ {self.fps} fps>")


class RenderedFrames(FrameSequence):
    """Frames computed on demand by `render(i)`."""

    def __init__(self, render: Callable[[int], np.ndarray], n_frames: int, fps: float, width: int, height: int,
                 engine: str, info: dict | None = None):
        super().__init__(n_frames, fps, width, height, engine, info)
        self._render = render

    def frame(self, i: int) -> np.ndarray:
        if not 0 <= i < self.n_frames:
            raise IndexError(i)
        return self._render(i)


class ArrayFrames(FrameSequence):
    """Frames already in memory (a short clip from another node), as uint8 (N, H, W, 3)."""

    def __init__(self, frames: np.ndarray, fps: float, engine: str = "external", info: dict | None = None):
        if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 (N, H, W, 3) frames, got {frames.dtype} {frames.shape}")
        super().__init__(frames.shape[0], fps, frames.shape[2], frames.shape[1], engine, info)
        self._frames = frames

    def frame(self, i: int) -> np.ndarray:
        return self._frames[i]
