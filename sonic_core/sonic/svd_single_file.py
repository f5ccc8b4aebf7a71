"""SVD's single-file checkpoint (`svd_xt.safetensors`, `svd_xt_1_1.safetensors`, as ComfyUI loads it) <-> the
diffusers VAE (`AutoencoderKLTemporalDecoder`) and transformers CLIP image encoder (`CLIPVisionModelWithProjection`)
key names that Sonic's official code uses.

In the single file the VAE lives under `first_stage_model.` with Stability's (LDM/SGM) names:
`encoder.down.{i}.block.{j}`, `decoder.up.{i}.block.{j}` (levels numbered from the full-resolution end, so diffusers'
`up_blocks.k` is `up.{n-1-k}`), temporal resnets as `time_stack.{in_layers.0, in_layers.2, out_layers.0, out_layers.3}`
plus `mix_factor`, mid attention as 1x1 convolutions `q, k, v, proj_out` (diffusers: linear `to_q ... to_out.0`), the
decoder's last temporal conv as `conv_out.time_mix_conv`. It has no `quant_conv` (SGM's AutoencodingEngine has none):
the diffusers model's is the identity. The CLIP tower is OpenCLIP's ViT under
`conditioner.embedders.0.open_clip.model.visual.`: fused `attn.in_proj_weight` (q, k, v stacked), `proj` as the
transposed projection matrix. The UNet part of the file is never read (Sonic's unet.pth is complete).
"""
from __future__ import annotations

import re

import torch

VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "conditioner.embedders.0.open_clip.model.visual."

_RES = {"norm1": "norm1", "conv1": "conv1", "norm2": "norm2", "conv2": "conv2", "conv_shortcut": "nin_shortcut"}
_TIME = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3"}
_CLIP_SIMPLE = {
    "vision_model.embeddings.class_embedding": "class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "positional_embedding",
    "vision_model.pre_layrnorm.weight": "ln_pre.weight",
    "vision_model.pre_layrnorm.bias": "ln_pre.bias",
    "vision_model.post_layernorm.weight": "ln_post.weight",
    "vision_model.post_layernorm.bias": "ln_post.bias",
}
_CLIP_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
               "self_attn.out_proj": "attn.out_proj"}
_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _resnet(rest: str, base: str) -> str | None:
    """diffusers resnet-relative key -> SGM key under `base` (encoder resnets and decoder spatial/temporal ones)."""
    m = re.fullmatch(r"(spatial_res_block\.)?(norm1|conv1|norm2|conv2|conv_shortcut)\.(weight|bias)", rest)
    if m:
        return f"{base}.{_RES[m.group(2)]}.{m.group(3)}"
    m = re.fullmatch(r"temporal_res_block\.(norm1|conv1|norm2|conv2)\.(weight|bias)", rest)
    if m:
        return f"{base}.time_stack.{_TIME[m.group(1)]}.{m.group(2)}"
    if rest == "time_mixer.mix_factor":
        return f"{base}.mix_factor"
    return None


def vae_key(key: str, levels: int) -> str | None:
    """diffusers AutoencoderKLTemporalDecoder key -> SGM key (without `first_stage_model.`); None for quant_conv."""
    if key.startswith("quant_conv."):
        return None
    part, rest = key.split(".", 1)
    if rest.startswith(("conv_in.", "conv_out.")):
        return f"{part}.{rest}"
    if rest.startswith("conv_norm_out."):
        return f"{part}.norm_out.{rest.split('.', 1)[1]}"
    if rest.startswith("time_conv_out."):
        return f"{part}.conv_out.time_mix_conv.{rest.split('.', 1)[1]}"
    m = re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", rest)
    if m:
        return _resnet(m.group(2), f"{part}.mid.block_{int(m.group(1)) + 1}")
    m = re.fullmatch(r"mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(weight|bias)", rest)
    if m:
        return f"{part}.mid.attn_1.{_ATTN[m.group(1)]}.{m.group(2)}"
    m = re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest)
    if m:
        return _resnet(m.group(3), f"{part}.down.{m.group(1)}.block.{m.group(2)}")
    m = re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(weight|bias)", rest)
    if m:
        return f"{part}.down.{m.group(1)}.downsample.conv.{m.group(2)}"
    m = re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", rest)
    if m:
        return _resnet(m.group(3), f"{part}.up.{levels - 1 - int(m.group(1))}.block.{m.group(2)}")
    m = re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(weight|bias)", rest)
    if m:
        return f"{part}.up.{levels - 1 - int(m.group(1))}.upsample.conv.{m.group(2)}"
    return None


def _is_attn_matrix(key: str) -> bool:
    return ".mid_block.attentions." in key and key.endswith(".weight") and ".group_norm." not in key


def vae_from_single_file(single: dict, model_keys: dict, levels: int) -> dict:
    """Build the diffusers VAE state dict for `model_keys` (key -> shape) from the single file's tensors.
    Keys that cannot be found are simply absent (the strict loader reports them)."""
    out = {}
    for key, shape in model_keys.items():
        if key.startswith("quant_conv."):
            c = shape[0]
            out[key] = (torch.eye(c).reshape(c, c, 1, 1) if key.endswith("weight") else torch.zeros(c))
            continue
        src = vae_key(key, levels)
        if src is None or VAE_PREFIX + src not in single:
            continue
        t = single[VAE_PREFIX + src]
        if _is_attn_matrix(key) and t.ndim == 4:
            t = t[:, :, 0, 0]
        out[key] = t
    return out


def clip_from_single_file(single: dict, model_keys: dict) -> dict:
    """Build the transformers CLIPVisionModelWithProjection state dict from the OpenCLIP visual tower."""
    p = CLIP_PREFIX
    out = {}
    simple, layer = _CLIP_SIMPLE, _CLIP_LAYER
    qkv = {"q_proj": 0, "k_proj": 1, "v_proj": 2}
    for key in model_keys:
        src, part = None, None
        if key in simple:
            src = simple[key]
        elif key == "visual_projection.weight":
            if p + "proj" in single:
                out[key] = single[p + "proj"].t().contiguous()
            continue
        else:
            m = re.fullmatch(r"vision_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", key)
            if not m:
                continue
            i, name, kind = m.groups()
            if name in layer:
                src = f"transformer.resblocks.{i}.{layer[name]}.{kind}"
            elif name.startswith("self_attn.") and name.split(".")[1] in qkv:
                src, part = f"transformer.resblocks.{i}.attn.in_proj_{kind}", qkv[name.split(".")[1]]
        if src is None or p + src not in single:
            continue
        t = single[p + src]
        if part is not None:
            n = t.shape[0] // 3
            t = t[part * n:(part + 1) * n]
        out[key] = t
    return out


def to_single_file(vae: dict, clip: dict) -> dict:
    """The inverse (for test data): diffusers VAE + transformers CLIP state dicts -> single-file keys.
    The VAE's quant_conv must be the identity (it has no place in the single file)."""
    levels = 1 + max(int(m.group(1)) for k in vae for m in [re.match(r"encoder\.down_blocks\.(\d+)\.", k)] if m)
    out = {}
    for key, t in vae.items():
        src = vae_key(key, levels)
        if src is None:
            continue
        out[VAE_PREFIX + src] = t[:, :, None, None].contiguous() if _is_attn_matrix(key) else t
    p = CLIP_PREFIX
    simple, layer = _CLIP_SIMPLE, _CLIP_LAYER
    fused: dict = {}
    for key, t in clip.items():
        if key in simple:
            out[p + simple[key]] = t
        elif key == "visual_projection.weight":
            out[p + "proj"] = t.t().contiguous()
        else:
            m = re.fullmatch(r"vision_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)", key)
            if not m:
                continue
            i, name, kind = m.groups()
            if name in layer:
                out[p + f"transformer.resblocks.{i}.{layer[name]}.{kind}"] = t
            elif name in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                fused.setdefault((i, kind), {})[name.split(".")[1]] = t
    for (i, kind), parts in fused.items():
        out[p + f"transformer.resblocks.{i}.attn.in_proj_{kind}"] = torch.cat(
            [parts["q_proj"], parts["k_proj"], parts["v_proj"]], 0).contiguous()
    return out
