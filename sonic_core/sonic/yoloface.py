"""Sonic's face detector: the TorchScript YOLOv5m-face in yoloface_v5m.pt, run as the official code runs it: short
side to 416, both sides rounded up to a multiple of 32 (independent x/y scale, no letterbox), bilinear resize, RGB
in [0, 1]; the model takes (img, grids) and returns (1, N, 16) rows [cx, cy, w, h, obj, 5 x (x, y), cls] in
resized pixels; confidence = obj * cls > 0.5, NMS at IoU 0.45; boxes scaled back and returned as [x, y, w, h].
"""
from __future__ import annotations

import cv2
import numpy as np
import torch


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
    """Indices kept by greedy NMS, highest score first (torchvision.ops.nms when available)."""
    try:
        import torchvision

        return torchvision.ops.nms(boxes, scores, iou)
    except Exception:  # noqa: BLE001 - torchvision missing or without its C++ ops
        pass
    order = torch.argsort(scores, descending=True)
    keep = []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order.numel():
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        lt = torch.maximum(boxes[i, :2], boxes[rest, :2])
        rb = torch.minimum(boxes[i, 2:], boxes[rest, 2:])
        inter = (rb - lt).clamp(min=0).prod(1)
        order = rest[inter / (area[i] + area[rest] - inter) <= iou]
    return torch.tensor(keep, dtype=torch.long)


def _filter(pred: torch.Tensor, conf_thres: float, iou_thres: float) -> torch.Tensor:
    """(N, 16) raw rows -> (M, 16) rows [x1, y1, x2, y2, conf, 10 landmarks, cls] after threshold and NMS."""
    x = pred[pred[:, 4] > conf_thres].clone()
    if not x.shape[0]:
        return x
    x[:, 15:] *= x[:, 4:5]
    box = torch.stack([x[:, 0] - x[:, 2] / 2, x[:, 1] - x[:, 3] / 2, x[:, 0] + x[:, 2] / 2, x[:, 1] + x[:, 3] / 2], 1)
    conf, j = x[:, 15:].max(1, keepdim=True)
    x = torch.cat((box, conf, x[:, 5:15], j.float()), 1)[conf.view(-1) > conf_thres]
    if not x.shape[0]:
        return x
    offset = x[:, 15:16] * 4096
    return x[nms(x[:, :4] + offset, x[:, 4], iou_thres)]


class YoloFace:
    def __init__(self, path: str, device: str | torch.device = "cpu", conf_thres: float = 0.5, iou_thres: float = 0.45,
                 input_size: int = 416):
        self.device = torch.device(device)
        self.model = torch.jit.load(path, map_location=self.device).eval()
        self.conf_thres, self.iou_thres, self.input_size = conf_thres, iou_thres, input_size
        self._grids: tuple | None = None

    def _grids_for(self, h: int, w: int) -> list[torch.Tensor]:
        if self._grids is None or self._grids[0] != (h, w):
            grids = []
            for s in (8, 16, 32):
                ny, nx = h // s, w // s
                yv, xv = torch.meshgrid(torch.arange(ny), torch.arange(nx), indexing="ij")
                grids.append(torch.stack((xv, yv), 2).view(1, 1, ny, nx, 2).float().to(self.device))
            self._grids = ((h, w), grids)
        return self._grids[1]

    @torch.no_grad()
    def detect(self, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """rgb (H, W, 3) uint8 -> bboxes (n, 4) [x, y, w, h], landmarks (n, 5, 2), scores (n,), original pixels."""
        h0, w0 = rgb.shape[:2]
        r = self.input_size / min(h0, w0)
        h1 = int(h0 * r + 31) // 32 * 32
        w1 = int(w0 * r + 31) // 32 * 32
        img = cv2.resize(np.ascontiguousarray(rgb), (w1, h1), interpolation=cv2.INTER_LINEAR)
        x = torch.from_numpy(img).to(self.device).permute(2, 0, 1).float().div(255).unsqueeze(0)
        pred = self.model(x, self._grids_for(h1, w1)).cpu()
        det = _filter(pred[0], self.conf_thres, self.iou_thres).numpy()
        n = det.shape[0]
        boxes = np.zeros((n, 4))
        kps = np.zeros((n, 5, 2))
        scores = np.zeros(n)
        for j in range(n):
            boxes[j, 0] = det[j, 0] * w0 / w1
            boxes[j, 1] = det[j, 1] * h0 / h1
            boxes[j, 2] = det[j, 2] * w0 / w1 - boxes[j, 0]
            boxes[j, 3] = det[j, 3] * h0 / h1 - boxes[j, 1]
            scores[j] = det[j, 4]
            kps[j] = det[j, 5:15].reshape(5, 2) * np.array([[w0 / w1, h0 / h1]])
        return boxes, kps, scores


def official_face_index(boxes: np.ndarray) -> int:
    """The face the official AlignImage(maxface=True) keeps: the LAST face whose area exceeds the FIRST face's
    (its running maximum is never updated), else the first: kept, as it decides the official crop."""
    idx = 0
    first = boxes[0, 2] * boxes[0, 3]
    for i in range(1, len(boxes)):
        if boxes[i, 2] * boxes[i, 3] > first:
            idx = i
    return idx

