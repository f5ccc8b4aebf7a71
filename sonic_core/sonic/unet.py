"""Sonic's UNet: diffusers' `UNetSpatioTemporalConditionModel` (unchanged parameters) plus the audio cross-attention
Sonic adds on every `attn2`, run by a forward of our own (the official
src/models/base/unet_spatio_temporal_condition.py).

Parameters. `build_unet(config)` builds the diffusers module tree and gives every `attn2` (spatial and
temporal) a child module `processor` holding `to_k_ip` / `to_v_ip`, each a one-element ModuleList of a bias-free
`Linear(cross_attention_dim, C)`, so `unet.state_dict()` has exactly the keys of the official `unet.pth`
(1492 tensors at the SVD-XT size).

Forward. `unet_forward` walks the diffusers blocks itself rather than calling their `forward`s, because Sonic's
differ from diffusers' in three places:
  * every `attn2` attends to the CLIP context (1 token) with `to_q/to_k/to_v` and, with the same queries and
    heads, to the audio tokens with `to_k_ip/to_v_ip`; `out = clip_attn + scale * (audio_attn * mask)`, then
    `to_out` (with one CLIP token, `clip_attn` is that token's value for every query: it is taken as such);
  * the spatial `attn2` multiply the audio branch by the face mask, bicubic-downsampled to the query grid
    (`downsample_mask`, the exact size rule of diffusers' IPAdapterMaskProcessor); the temporal ones take no mask;
  * the temporal transformer's context (CLIP and audio) is the mean over the window's frames, the same for every
    spatial position (diffusers uses the first frame's). It is the same for all h*w positions, so its keys and
    values are computed once per video in the batch, not once per position (identical results, far less memory).
Leaf modules (resnets, down/upsamplers, norms, feed-forwards, linear layers, embeddings) are diffusers' own.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class AudioAttnProcessor(nn.Module):
    """Holds the audio key/value projections of one attn2 (state-dict names `to_k_ip.0`, `to_v_ip.0`).

    The computation lives in `unet_forward`; this module only carries the parameters at the official path."""

    def __init__(self, hidden_size: int, cross_attention_dim: int = 1024, num_tokens: int = 32):
        super().__init__()
        self.hidden_size, self.cross_attention_dim, self.num_tokens = hidden_size, cross_attention_dim, num_tokens
        self.to_k_ip = nn.ModuleList([nn.Linear(cross_attention_dim, hidden_size, bias=False)])
        self.to_v_ip = nn.ModuleList([nn.Linear(cross_attention_dim, hidden_size, bias=False)])

    def forward(self, *args, **kwargs):  # pragma: no cover - guard against diffusers' own forward
        raise RuntimeError("Sonic's UNet must be run with sonic_core.sonic.unet.unet_forward")


def _clean_config(config: dict) -> dict:
    return {k: v for k, v in config.items() if not k.startswith("_")}


def install_audio_attention(unet: nn.Module) -> int:
    """Give every attn2 of `unet` an AudioAttnProcessor sized from its own projections; returns how many."""
    n = 0
    for name, module in list(unet.named_modules()):
        if name.endswith("attn2") and hasattr(module, "to_k"):
            proc = AudioAttnProcessor(module.to_k.out_features, module.to_k.in_features)
            proc.to(device=module.to_k.weight.device, dtype=module.to_k.weight.dtype)
            if hasattr(module, "set_processor"):
                module.set_processor(proc)
            else:  # pragma: no cover
                module.processor = proc
            n += 1
    return n


def build_unet(config: dict, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> nn.Module:
    """The diffusers UNetSpatioTemporalConditionModel for `config` (a unet/config.json dict) with Sonic's audio
    attention installed. `device="meta"` builds it without allocating (for loading with `assign=True`)."""
    from diffusers import UNetSpatioTemporalConditionModel

    with torch.device(device):
        unet = UNetSpatioTemporalConditionModel(**_clean_config(config))
        install_audio_attention(unet)
    if str(device) != "meta" and dtype != torch.float32:
        nn.Module.to(unet, dtype=dtype)
    return unet.eval().requires_grad_(False)


# --------------------------------------------------------------------------------------------------------------
# forward

def downsample_mask(mask: torch.Tensor, num_queries: int) -> torch.Tensor:
    """Face mask (1, 1, H, W) -> (1, num_queries, 1), the size rule and bicubic resize of IPAdapterMaskProcessor:
    mask_h = floor(sqrt(q / (W/H))) (+1 when it does not divide q), mask_w = q // mask_h, then padded with zeros or
    truncated to q values."""
    o_h, o_w = mask.shape[-2], mask.shape[-1]
    ratio = o_w / o_h
    # float32 square root, as the official code takes it, but in NumPy: a tensor-to-int here would split a
    # torch.compile graph (both are IEEE square roots, so the result is the same)
    mask_h = int(np.sqrt(np.float32(num_queries / ratio)))
    mask_h = mask_h + int(num_queries % mask_h != 0)
    mask_w = num_queries // mask_h
    m = F.interpolate(mask.reshape(1, 1, o_h, o_w), size=(mask_h, mask_w), mode="bicubic").reshape(1, -1)
    if m.shape[1] < num_queries:
        m = F.pad(m, (0, num_queries - m.shape[1]), value=0.0)
    elif m.shape[1] > num_queries:
        m = m[:, :num_queries]
    return m.reshape(1, num_queries, 1)


@dataclass
class _Ctx:
    batch: int
    frames: int
    clip: torch.Tensor                 # (B*F, Tc, D) per-frame CLIP context
    audio: torch.Tensor | None         # (B*F, Ta, D) per-frame audio tokens
    clip_t: torch.Tensor               # (B, Tc, D) frame mean, temporal context
    audio_t: torch.Tensor | None       # (B, Ta, D)
    mask: torch.Tensor | None          # (1, 1, H, W)
    ip_scale: float
    image_only_indicator: torch.Tensor
    masks: dict = field(default_factory=dict)

    def mask_for(self, q: int, dtype: torch.dtype) -> torch.Tensor:
        if q not in self.masks:
            self.masks[q] = downsample_mask(self.mask, q).to(dtype)
        return self.masks[q]


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, c = x.shape
    return x.view(b, n, heads, c // heads).transpose(1, 2)


def _merge(x: torch.Tensor) -> torch.Tensor:
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    out = F.scaled_dot_product_attention(_heads(q, heads), _heads(k, heads), _heads(v, heads), dropout_p=0.0,
                                         is_causal=False)
    return _merge(out).to(q.dtype)


def _context_attention(q: torch.Tensor, attn: nn.Module, context: torch.Tensor) -> torch.Tensor:
    """Attention of q to `context` through attn's to_k/to_v. Sonic's CLIP context is one token: the softmax over a
    single key is exactly 1, so every query receives that token's value. That value is returned unexpanded
    (broadcast by the caller's add), which skips an attention pass over every query and gives the same numbers."""
    if context.shape[1] == 1:
        return attn.to_v(context).to(q.dtype)
    return _sdpa(q, attn.to_k(context), attn.to_v(context), attn.heads)


def _self_attention(attn: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = _sdpa(attn.to_q(x), attn.to_k(x), attn.to_v(x), attn.heads)
    return attn.to_out[1](attn.to_out[0](out))


def _spatial_cross_attention(attn: nn.Module, x: torch.Tensor, ctx: _Ctx) -> torch.Tensor:
    """x (B*F, h*w, C) attends to the per-frame CLIP context and (masked) audio tokens."""
    q = attn.to_q(x)
    out = _context_attention(q, attn, ctx.clip)
    if ctx.audio is not None and ctx.ip_scale != 0:
        proc = attn.processor
        ip = _sdpa(q, proc.to_k_ip[0](ctx.audio), proc.to_v_ip[0](ctx.audio), attn.heads)
        if ctx.mask is not None:
            out = out + ctx.ip_scale * (ip * ctx.mask_for(x.shape[1], q.dtype))
        else:
            out = out + ctx.ip_scale * ip
    return attn.to_out[1](attn.to_out[0](out))


def _temporal_cross_attention(attn: nn.Module, x: torch.Tensor, ctx: _Ctx) -> torch.Tensor:
    """x (B*h*w, F, C) attends to the frame-mean context of its video. The context is the same for all h*w
    positions of one video, so queries are grouped per video: (B, h*w*F, C) against (B, T, D)."""
    bhw, f, c = x.shape
    b = ctx.batch
    q = attn.to_q(x).reshape(b, (bhw // b) * f, c)
    out = _context_attention(q, attn, ctx.clip_t)
    if ctx.audio_t is not None and ctx.ip_scale != 0:
        proc = attn.processor
        ip = _sdpa(q, proc.to_k_ip[0](ctx.audio_t), proc.to_v_ip[0](ctx.audio_t), attn.heads)
        out = out + ctx.ip_scale * ip
    out = out.expand(b, q.shape[1], c).reshape(bhw, f, c)
    return attn.to_out[1](attn.to_out[0](out))


def _spatial_block(block: nn.Module, x: torch.Tensor, ctx: _Ctx) -> torch.Tensor:
    x = _self_attention(block.attn1, block.norm1(x)) + x
    x = _spatial_cross_attention(block.attn2, block.norm2(x), ctx) + x
    return block.ff(block.norm3(x)) + x


def _temporal_block(block: nn.Module, x: torch.Tensor, frames: int, ctx: _Ctx) -> torch.Tensor:
    bf, seq, c = x.shape
    b = bf // frames
    x = x.reshape(b, frames, seq, c).permute(0, 2, 1, 3).reshape(b * seq, frames, c)
    residual = x
    x = block.ff_in(block.norm_in(x))
    if block.is_res:
        x = x + residual
    x = _self_attention(block.attn1, block.norm1(x)) + x
    x = _temporal_cross_attention(block.attn2, block.norm2(x), ctx) + x
    ff = block.ff(block.norm3(x))
    x = ff + x if block.is_res else ff
    return x.reshape(b, seq, frames, c).permute(0, 2, 1, 3).reshape(b * frames, seq, c)


def _transformer(tr: nn.Module, x: torch.Tensor, ctx: _Ctx) -> torch.Tensor:
    bf, _, h, w = x.shape
    frames = ctx.frames
    residual = x
    x = tr.norm(x)
    inner = x.shape[1]
    x = tr.proj_in(x.permute(0, 2, 3, 1).reshape(bf, h * w, inner))
    frame_ids = torch.arange(frames, device=x.device).repeat(bf // frames, 1).reshape(-1)
    emb = tr.time_pos_embed(tr.time_proj(frame_ids).to(dtype=x.dtype))[:, None, :]
    for block, tblock in zip(tr.transformer_blocks, tr.temporal_transformer_blocks):
        x = _spatial_block(block, x, ctx)
        mix = _temporal_block(tblock, x + emb, frames, ctx)
        x = tr.time_mixer(x_spatial=x, x_temporal=mix, image_only_indicator=ctx.image_only_indicator)
    x = tr.proj_out(x)
    x = x.reshape(bf, h, w, inner).permute(0, 3, 1, 2).contiguous()
    return x + residual


def unet_forward(unet: nn.Module, sample: torch.Tensor, timestep, clip_ctx: torch.Tensor,
                 audio_ctx: torch.Tensor | None, added_time_ids: torch.Tensor, face_mask: torch.Tensor | None = None,
                 ip_scale: float = 1.0) -> torch.Tensor:
    """One UNet evaluation, as Sonic's `unet(sample, t, encoder_hidden_states=(clip, [audio]),
    cross_attention_kwargs={'ip_adapter_masks': [face_mask]}, added_time_ids=...)`.

    sample (B, F, in_channels, h, w); timestep a scalar (tensor or number, the continuous 0.25*ln(sigma));
    clip_ctx (B*F, 1, D) per frame, or (B, 1, D) for all frames; audio_ctx (B*F, 32, D) or None (no audio branch);
    added_time_ids (B, 3) = [fps, bucket0, bucket1]; face_mask (1, 1, H, W) full-resolution mask in [0, 1] (its
    first channel) or None; ip_scale = ip_audio_scale. Returns (B, F, out_channels, h, w).
    """
    b, frames = sample.shape[:2]
    t = timestep
    if not torch.is_tensor(t):
        t = torch.tensor([t], dtype=torch.float64 if isinstance(t, float) else torch.int64, device=sample.device)
    elif t.ndim == 0:
        t = t[None].to(sample.device)
    t = t.expand(b)
    emb = unet.time_embedding(unet.time_proj(t).to(dtype=sample.dtype))
    time_embeds = unet.add_time_proj(added_time_ids.flatten()).reshape(b, -1).to(emb.dtype)
    emb = (emb + unet.add_embedding(time_embeds)).repeat_interleave(frames, dim=0)

    if clip_ctx.shape[0] == b and frames > 1:
        clip_ctx = clip_ctx.repeat_interleave(frames, dim=0)

    def frame_mean(c: torch.Tensor | None) -> torch.Tensor | None:
        return None if c is None else c.reshape(b, frames, c.shape[-2], c.shape[-1]).mean(dim=1)

    ioi = torch.zeros(b, frames, dtype=sample.dtype, device=sample.device)
    ctx = _Ctx(b, frames, clip_ctx, audio_ctx, frame_mean(clip_ctx), frame_mean(audio_ctx),
               None if face_mask is None else face_mask[:, :1], ip_scale, ioi)

    x = unet.conv_in(sample.flatten(0, 1))
    skips = [x]
    for block in unet.down_blocks:
        attns = getattr(block, "attentions", None)
        for i, resnet in enumerate(block.resnets):
            x = resnet(x, emb, image_only_indicator=ioi)
            if attns is not None:
                x = _transformer(attns[i], x, ctx)
            skips.append(x)
        if block.downsamplers is not None:
            for down in block.downsamplers:
                x = down(x)
            skips.append(x)

    mid = unet.mid_block
    x = mid.resnets[0](x, emb, image_only_indicator=ioi)
    for attn, resnet in zip(mid.attentions, mid.resnets[1:]):
        x = _transformer(attn, x, ctx)
        x = resnet(x, emb, image_only_indicator=ioi)

    for block in unet.up_blocks:
        attns = getattr(block, "attentions", None)
        for i, resnet in enumerate(block.resnets):
            x = resnet(torch.cat([x, skips.pop()], dim=1), emb, image_only_indicator=ioi)
            if attns is not None:
                x = _transformer(attns[i], x, ctx)
        if block.upsamplers is not None:
            for up in block.upsamplers:
                x = up(x)

    x = unet.conv_out(unet.conv_act(unet.conv_norm_out(x)))
    return x.reshape(b, frames, *x.shape[1:])
