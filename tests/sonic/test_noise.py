"""Where the starting noise comes from (GenerateOptions.noise): 'device' draws as the official pipeline does
(diffusers' randn_tensor with no generator: the device's global generator, in the model dtype, the noise_aug draw
first), 'cpu' draws on the CPU generator in float32. On a CPU in fp32 both are the same draws (the golden tests'
case); on a GPU 'device' is what the official code gets from the same seed."""
from __future__ import annotations

import pytest
import torch
from diffusers.utils.torch_utils import randn_tensor

from sonic_core.sonic.audio_features import OFFICIAL_MAX_FRAMES
from sonic_core.sonic.sampler import draw_noise, seed_everything

REF, CHW = (1, 3, 16, 16), (4, 2, 2)
CPU = torch.device("cpu")


def _official(n: int, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The official pipeline's two draws after seed_everything: noise_aug noise on the VAE's device and dtype, then
    the latent noise in the CLIP embeddings' dtype (both the weight dtype)."""
    seed_everything(42)
    return randn_tensor(REF, device=CPU, dtype=dtype), randn_tensor((1, n, *CHW), device=CPU, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_device_noise_is_the_official_draw(dtype):
    want_ref, want = _official(30, dtype)
    seed_everything(42)
    ref, latent = draw_noise(REF, 30, CHW, CPU, dtype, "device", CPU)
    assert torch.equal(ref, want_ref) and ref.dtype == dtype
    assert latent.dtype == torch.float32 and torch.equal(latent, want.float())


def test_cpu_noise_equals_device_noise_on_a_cpu_in_fp32_and_is_float32_whatever_the_model_dtype():
    seed_everything(7)
    a = draw_noise(REF, 30, CHW, CPU, torch.float32, "cpu", CPU)
    seed_everything(7)
    b = draw_noise(REF, 30, CHW, CPU, torch.float32, "device", CPU)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    seed_everything(7)
    _, half_model = draw_noise(REF, 30, CHW, CPU, torch.float16, "cpu", CPU)
    assert torch.equal(half_model, a[1])  # the latent noise does not depend on the model dtype


def test_device_noise_longer_than_the_official_code_goes_is_drawn_in_pieces():
    """Up to the official cap one draw, as officially; past it (no official counterpart) pieces of that length,
    so the device holds one piece at a time."""
    n = OFFICIAL_MAX_FRAMES + 3
    _, want = _official(OFFICIAL_MAX_FRAMES, torch.float16)
    seed_everything(42)
    _, latent = draw_noise(REF, n, CHW, CPU, torch.float16, "device", CPU)
    assert latent.shape == (1, n, *CHW)
    assert torch.equal(latent[:, :OFFICIAL_MAX_FRAMES], want.float())
    assert not torch.equal(latent[:, OFFICIAL_MAX_FRAMES:], latent[:, :3])


def test_unknown_noise_source_is_refused():
    with pytest.raises(ValueError, match="noise must be"):
        draw_noise(REF, 3, CHW, CPU, torch.float32, "gpu", CPU)


def test_the_option_reaches_the_sampler():
    from sonic_core.engines.sonic_engine import sampler_params
    from sonic_core.options import GenerateOptions

    assert GenerateOptions().noise == "device"
    assert sampler_params(GenerateOptions(noise="cpu")).noise == "cpu"
