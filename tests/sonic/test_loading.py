"""Official files load strictly from both layouts; a missing or damaged file gives one clear message."""
from __future__ import annotations

import os
import shutil

import pytest
import torch

from sonic_core.errors import MissingWeightsError
from sonic_core.sonic.loading import WeightsError, load_sonic, read_state_dict

from .conftest import TINY_SVD_CONFIG


@pytest.fixture(scope="module")
def official(tiny_root):
    return load_sonic(tiny_root)


@pytest.fixture(scope="module")
def comfy(tiny_root):
    return load_sonic(os.path.join(tiny_root, "comfyui", "models", "sonic"), config_dir=TINY_SVD_CONFIG)


def _same(a: torch.nn.Module, b: dict) -> bool:
    sa = a.state_dict()
    return set(sa) == set(b) and all(torch.equal(sa[k].float(), b[k].float()) for k in sa)


def test_official_layout_loads_every_file_unchanged(tiny_root, official):
    assert _same(official.unet, read_state_dict(os.path.join(tiny_root, "Sonic", "unet.pth")))
    assert _same(official.audio2token, read_state_dict(os.path.join(tiny_root, "Sonic", "audio2token.pth")))
    assert _same(official.audio2bucket, read_state_dict(os.path.join(tiny_root, "Sonic", "audio2bucket.pth")))
    rife = read_state_dict(os.path.join(tiny_root, "RIFE", "flownet.pkl"))
    assert all(k.startswith("module.") for k in rife) and len(rife) == 160
    assert _same(official.rife, {k[len("module."):]: v for k, v in rife.items()})
    assert sum(p.numel() for p in official.rife.parameters()) == 3_038_015
    svd = os.path.join(tiny_root, "stable-video-diffusion-img2vid-xt")
    assert _same(official.vae, read_state_dict(os.path.join(svd, "vae", "diffusion_pytorch_model.fp16.safetensors")))
    assert _same(official.image_encoder, read_state_dict(os.path.join(svd, "image_encoder", "model.fp16.safetensors")))
    whisper = read_state_dict(os.path.join(tiny_root, "whisper-tiny", "model.safetensors"))
    enc = {k[len("model.encoder."):]: v for k, v in whisper.items() if k.startswith("model.encoder.")}
    assert _same(official.whisper, enc)
    # dtypes as the official code: UNet/VAE/CLIP in the requested dtype, the rest fp32
    assert {p.dtype for p in official.unet.parameters()} == {torch.float32}
    assert official.scheduler.config.prediction_type == "v_prediction"
    assert official.scheduler.config.use_karras_sigmas
    assert official.configs["unet"]["block_out_channels"] == [32, 64, 64]


def test_comfyui_layout_gives_the_same_models(official, comfy, tiny_root):
    assert comfy.paths["svd"].endswith(os.path.join("models", "checkpoints", "svd_xt.safetensors"))
    for name in ("vae", "image_encoder", "unet", "audio2token", "audio2bucket", "whisper", "rife"):
        assert _same(getattr(comfy, name), getattr(official, name).state_dict()), name


def test_dtype_applies_to_unet_vae_clip_only(tiny_root):
    m = load_sonic(tiny_root, dtype=torch.float16, load_rife_model=False, load_face_detector=False)
    assert {p.dtype for p in m.unet.parameters()} == {torch.float16}
    assert {p.dtype for p in m.vae.parameters()} == {torch.float16}
    assert {p.dtype for p in m.audio2token.parameters()} == {torch.float32}
    assert {p.dtype for p in m.whisper.parameters()} == {torch.float32}
    assert m.rife is None and m.face_detector is None


def _message(exc_info) -> str:
    msg = str(exc_info.value)
    assert "Traceback" not in msg and "site-packages" not in msg
    return msg


def test_missing_files_listed_in_one_message(tiny_copy):
    os.remove(os.path.join(tiny_copy, "Sonic", "audio2token.pth"))
    shutil.rmtree(os.path.join(tiny_copy, "RIFE"))
    with pytest.raises(MissingWeightsError) as e:
        load_sonic(tiny_copy)
    msg = _message(e)
    assert "Sonic/audio2token.pth" in msg and "RIFE/flownet.pkl" in msg
    assert "huggingface.co/LeonJoe13/Sonic" in msg


def test_corrupt_files_listed_in_one_message(tiny_copy):
    unet = os.path.join(tiny_copy, "Sonic", "unet.pth")
    with open(unet, "rb") as f:
        data = f.read()
    with open(unet, "wb") as f:
        f.write(data[: len(data) // 2])  # truncated download
    with open(os.path.join(tiny_copy, "Sonic", "audio2bucket.pth"), "w") as f:
        f.write("version https://git-lfs.github.com/spec/v1\noid sha256:4af9\nsize 87050998\n")
    vae = os.path.join(tiny_copy, "stable-video-diffusion-img2vid-xt", "vae",
                       "diffusion_pytorch_model.fp16.safetensors")
    with open(vae, "r+b") as f:
        f.truncate(100)
    with pytest.raises(WeightsError) as e:
        load_sonic(tiny_copy)
    msg = _message(e)
    assert "unet.pth" in msg and "corrupt" in msg
    assert "audio2bucket.pth" in msg and "Git LFS pointer" in msg
    assert "diffusion_pytorch_model.fp16.safetensors" in msg


def test_wrong_tensor_shape_is_named(tiny_copy):
    path = os.path.join(tiny_copy, "Sonic", "audio2token.pth")
    state = torch.load(path, weights_only=True)
    state["proj3.bias"] = state["proj3.bias"][:100]
    del state["norm.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, path)
    with pytest.raises(WeightsError) as e:
        load_sonic(tiny_copy)
    msg = _message(e)
    assert "audio2token.pth" in msg and "norm.weight" in msg and "extra.weight" in msg and "proj3.bias" in msg


def test_not_a_detector(tiny_copy):
    torch.save({"a": torch.zeros(1)}, os.path.join(tiny_copy, "yoloface_v5m.pt"))
    with pytest.raises(WeightsError) as e:
        load_sonic(tiny_copy)
    assert "yoloface_v5m.pt" in _message(e)


def test_whisper_weights_in_either_naming(tiny_copy):
    """openai/whisper-tiny names tensors `model.encoder...`; a WhisperModel save names them `encoder...`."""
    from safetensors.torch import load_file, save_file

    from sonic_core.sonic.loading import load_whisper

    path = os.path.join(tiny_copy, "whisper-tiny", "model.safetensors")
    state = load_file(path)
    save_file({k[len("model."):]: v for k, v in state.items()}, path)
    _, enc = load_whisper(os.path.dirname(path))
    assert enc.embed_positions.weight.shape == (1500, 384)
