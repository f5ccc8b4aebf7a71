"""RIFE frame interpolation (Practical-RIFE "HDv3" IFNet), with the module names of RIFE/flownet.pkl.

flownet.pkl holds the IFNet state dict with every key prefixed by `module.` (a DataParallel save). Three IFBlocks
refine the flow coarse to fine (scales 4, 2, 1); a fourth, `block_tea`, is the training-time teacher: it is in
the checkpoint (so it is built, to load strictly) but never run. Sonic inserts one middle frame between every
pair: `middle(f0, f1)` is merged[2] of the forward below (as the official pipeline interpolates).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _conv(cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding, bias=True), nn.PReLU(cout))


class IFBlock(nn.Module):
    def __init__(self, in_planes: int, c: int = 90):
        super().__init__()
        self.conv0 = nn.Sequential(_conv(in_planes, c // 2, 3, 2, 1), _conv(c // 2, c, 3, 2, 1))
        self.convblock0 = nn.Sequential(_conv(c, c), _conv(c, c))
        self.convblock1 = nn.Sequential(_conv(c, c), _conv(c, c))
        self.convblock2 = nn.Sequential(_conv(c, c), _conv(c, c))
        self.convblock3 = nn.Sequential(_conv(c, c), _conv(c, c))
        self.conv1 = nn.Sequential(nn.ConvTranspose2d(c, c // 2, 4, 2, 1), nn.PReLU(c // 2),
                                   nn.ConvTranspose2d(c // 2, 4, 4, 2, 1))
        self.conv2 = nn.Sequential(nn.ConvTranspose2d(c, c // 2, 4, 2, 1), nn.PReLU(c // 2),
                                   nn.ConvTranspose2d(c // 2, 1, 4, 2, 1))

    def forward(self, x: torch.Tensor, flow: torch.Tensor, scale: float = 1.0):
        def resize(t: torch.Tensor, factor: float) -> torch.Tensor:
            return F.interpolate(t, scale_factor=factor, mode="bilinear", align_corners=False,
                                 recompute_scale_factor=False)

        x = resize(x, 1.0 / scale)
        flow = resize(flow, 1.0 / scale) * (1.0 / scale)
        feat = self.conv0(torch.cat((x, flow), 1))
        for blk in (self.convblock0, self.convblock1, self.convblock2, self.convblock3):
            feat = blk(feat) + feat
        flow = resize(self.conv1(feat), scale) * scale
        mask = resize(self.conv2(feat), scale)
        return flow, mask


def warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp `img` by `flow` (pixels), bilinear, border padding, align_corners=True."""
    n, _, h, w = flow.shape
    gx = torch.linspace(-1.0, 1.0, w, device=flow.device, dtype=flow.dtype).view(1, 1, 1, w).expand(n, -1, h, -1)
    gy = torch.linspace(-1.0, 1.0, h, device=flow.device, dtype=flow.dtype).view(1, 1, h, 1).expand(n, -1, -1, w)
    norm = torch.cat([flow[:, 0:1] / ((img.shape[3] - 1.0) / 2.0), flow[:, 1:2] / ((img.shape[2] - 1.0) / 2.0)], 1)
    grid = (torch.cat([gx, gy], 1) + norm).permute(0, 2, 3, 1)
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True)


class IFNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.block0 = IFBlock(7 + 4, c=90)
        self.block1 = IFBlock(7 + 4, c=90)
        self.block2 = IFBlock(7 + 4, c=90)
        self.block_tea = IFBlock(10 + 4, c=90)  # teacher: in the checkpoint, unused at inference

    def forward(self, x: torch.Tensor, scale_list=(4, 2, 1)):
        """x = cat(img0, img1) on channels, each (n, 3, h, w) in [0, 1]. Returns (flows, last mask, merged[3])."""
        c = x.shape[1] // 2
        img0, img1 = x[:, :c], x[:, c:]
        warped0, warped1 = img0, img1
        flow = x[:, :4] * 0
        mask = x[:, :1] * 0
        flows, masks, merged = [], [], []
        for i, block in enumerate((self.block0, self.block1, self.block2)):
            f0, m0 = block(torch.cat((warped0[:, :3], warped1[:, :3], mask), 1), flow, scale=scale_list[i])
            f1, m1 = block(torch.cat((warped1[:, :3], warped0[:, :3], -mask), 1),
                           torch.cat((flow[:, 2:4], flow[:, :2]), 1), scale=scale_list[i])
            flow = flow + (f0 + torch.cat((f1[:, 2:4], f1[:, :2]), 1)) / 2
            mask = mask + (m0 + (-m1)) / 2
            masks.append(mask)
            flows.append(flow)
            warped0 = warp(img0, flow[:, :2])
            warped1 = warp(img1, flow[:, 2:4])
            merged.append((warped0, warped1))
        out = []
        for i in range(3):
            m = torch.sigmoid(masks[i])
            out.append(merged[i][0] * m + merged[i][1] * (1 - m))
        return flows, torch.sigmoid(masks[2]), out

    @torch.no_grad()
    def middle(self, img0: torch.Tensor, img1: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """The frame halfway between img0 and img1 ((n, 3, h, w), [0, 1]), clamped to [0, 1] as Sonic does."""
        _, _, merged = self(torch.cat((img0, img1), 1), (4 / scale, 2 / scale, 1 / scale))
        return merged[2].clamp(0, 1)


def rife_state_dict_from_checkpoint(sd: dict) -> dict:
    """flownet.pkl -> IFNet keys: keep the `module.`-prefixed keys and strip the prefix (as the official loader)."""
    return {k.replace("module.", ""): v for k, v in sd.items() if "module." in k}
