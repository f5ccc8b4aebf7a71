"""Parity with the official implementation: the same tiny official-layout folder, inputs and seed give the
official tensors and frames (recorded by devtools/official_reference.py into tests/data/sonic_golden/, fp32, CPU).
Tolerances: the official code's own noise floor between 1 and 2 threads (see that folder's README)."""
from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from sonic_core.media.audio import load_audio
from sonic_core.predata import square_crop
from sonic_core.sonic.audio_features import audio_conditioning, audio_features
from sonic_core.sonic.decoding import decode, iter_frames
from sonic_core.sonic.loading import load_sonic
from sonic_core.sonic.pipeline import CLIP_MEAN, CLIP_STD, SonicParams, detect_official, image_inputs
from sonic_core.sonic.sampler import sample_latents, sigmas_for, window_indices
from sonic_core.sonic.unet import unet_forward

GOLDEN = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "sonic_golden")


def golden(name: str) -> torch.Tensor:
    file, key = name.split(":")
    return load_file(os.path.join(GOLDEN, file))[key]


@pytest.fixture(scope="module")
def manifest():
    with open(os.path.join(GOLDEN, "manifest.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def models(tiny_root, manifest):
    # The golden data is only valid for the very checkpoint files it was made from.
    for rel, meta in manifest["checkpoints"]["files"].items():
        if rel.endswith(".pt"):  # the TorchScript stand-in detector: its archive records where it was written
            continue
        with open(os.path.join(tiny_root, rel), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == meta["sha256"], f"{rel} differs from the golden run's"
    torch.set_num_threads(2)
    return load_sonic(tiny_root, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def inputs(models):
    rgb = np.asarray(Image.open(os.path.join(GOLDEN, "input_image.png")).convert("RGB"))
    box = detect_official(models, rgb)
    return image_inputs(rgb, box, 64), load_audio(os.path.join(GOLDEN, "input_audio.wav")).mono()


@pytest.fixture(scope="module")
def traced(models, inputs):
    """Our sampling with its intermediates recorded under the golden names."""
    image, audio = inputs
    seen = {}
    final = sample_latents(models, image, audio, SonicParams(inference_steps=2, seed=42),
                           trace=lambda name, x: seen.__setitem__(name, x.clone()))
    return final, seen


@pytest.fixture(scope="module")
def latents(traced):
    return traced[0]


@pytest.fixture(scope="module")
def conditioning(models, inputs):
    _, audio = inputs
    feats = audio_features(audio, models.feature_extractor, models.whisper)
    return audio_conditioning(feats, models.audio2token, models.audio2bucket,
                              golden("image.safetensors:clip_image_embeds"))


def test_face_box_and_crop(models, manifest):
    rgb = np.asarray(Image.open(os.path.join(GOLDEN, "input_image.png")).convert("RGB"))
    box = detect_official(models, rgb)
    want = manifest["run"]["face_detect_calls"][0]["bboxes_xywh"][0]
    np.testing.assert_allclose(box, want, atol=1e-4, rtol=0)
    pre = manifest["run"]["preprocess"]
    xyxy = (box[0], box[1], box[0] + box[2], box[1] + box[3])
    assert list(square_crop(xyxy, 128, 128, pre["expand_ratio"])) == pre["crop_bbox_x1y1x2y2"]


def test_image_inputs(models, inputs):
    image, _ = inputs
    torch.testing.assert_close(image.ref[0], golden("image.safetensors:ref_img"), atol=1e-6, rtol=0)
    torch.testing.assert_close(image.mask[0], golden("image.safetensors:face_mask"), atol=1e-6, rtol=0)
    u8 = golden("image.safetensors:clip_input_u8").float() / 255
    mean, std = torch.tensor(CLIP_MEAN)[:, None, None], torch.tensor(CLIP_STD)[:, None, None]
    torch.testing.assert_close(image.clip[0], (u8 - mean) / std, atol=1e-5, rtol=0)
    embeds = models.image_encoder(image.clip).image_embeds
    torch.testing.assert_close(embeds, golden("image.safetensors:clip_image_embeds"), atol=1e-4, rtol=1e-4)


def test_audio_conditioning(conditioning):
    frames = golden("audio.safetensors:a2t_frames")
    torch.testing.assert_close(conditioning.cond[frames], golden("audio.safetensors:a2t_cond")[0],
                               atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(conditioning.cond[..., :16], golden("audio.safetensors:a2t_cond_all_slice"),
                               atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(conditioning.uncond, golden("audio.safetensors:a2t_uncond")[0, 0],
                               atol=1e-5, rtol=0)
    torch.testing.assert_close(conditioning.motion_buckets, golden("audio.safetensors:motion_buckets")[0],
                               atol=1e-4, rtol=1e-5)


def test_sigmas_and_windows(models, manifest):
    torch.testing.assert_close(sigmas_for(models.scheduler, 25), golden("sampling.safetensors:scheduler_sigmas_25"),
                               atol=0, rtol=1e-6)
    torch.testing.assert_close(sigmas_for(models.scheduler, 2), golden("sampling.safetensors:scheduler_sigmas"),
                               atol=0, rtol=1e-6)
    for w in manifest["run"]["windows"]:
        assert window_indices(30, w["step"])[w["window"]] == w["frames"]


def test_first_unet_call(models, conditioning):
    """The pipeline's first call with the official inputs: CFG rows (uncond, drop-audio, cond), each 25 frames."""
    emb = golden("image.safetensors:clip_image_embeds")
    clip = torch.cat([torch.zeros_like(emb), emb, emb]).repeat_interleave(25, 0)[:, None]
    unc = conditioning.uncond.expand(25, -1, -1)
    audio = torch.cat([unc, unc, conditioning.cond[:25]])
    out = unet_forward(models.unet, golden("unet.safetensors:pipe_call0_sample"),
                       golden("unet.safetensors:pipe_call0_timestep"), clip, audio,
                       golden("unet.safetensors:pipe_call0_added_time_ids"),
                       golden("image.safetensors:face_mask")[None])
    torch.testing.assert_close(out, golden("unet.safetensors:pipe_call0_output"), atol=2e-5, rtol=1e-5)


def test_sampling_intermediates(traced):
    """Initial latents, every window's guided eps and Euler-stepped latents, and the averaged latents per step."""
    _, seen = traced
    want = load_file(os.path.join(GOLDEN, "sampling.safetensors"))
    names = ["initial_latents"] + [k for k in want if k.startswith(("guided_eps_", "window_latents_", "latents_all_"))]
    assert len(names) == 1 + 4 + 4 + 2 and set(names) <= set(seen)
    for name in names:
        torch.testing.assert_close(seen[name], want[name], atol=1e-3, rtol=1e-4, msg=lambda m: f"{name}: {m}")


def test_final_latents(latents):
    torch.testing.assert_close(latents[None], golden("decode.safetensors:final_latents"), atol=1e-3, rtol=1e-4)


def test_decode_and_rife(models):
    """VAE decode of the official final latents (first chunk, partial last chunk) and the first RIFE middles."""
    lat = golden("decode.safetensors:final_latents")[0]
    head = decode(models, lat[:8])
    tail = decode(models, lat[24:])
    as_frames = lambda x: (x[0].transpose(0, 1) * 0.5 + 0.5).clamp(0, 1)
    torch.testing.assert_close(head, as_frames(golden("decode.safetensors:vae_decoded_head")), atol=1e-4, rtol=0)
    torch.testing.assert_close(tail, as_frames(golden("decode.safetensors:vae_decoded_tail")), atol=1e-4, rtol=0)
    mids = models.rife.middle(head[:2], head[1:3])
    want = torch.cat([golden("decode.safetensors:rife_pair0_middle"), golden("decode.safetensors:rife_pair1_middle")])
    torch.testing.assert_close(mids, want.clamp(0, 1), atol=1e-4, rtol=0)


def test_frames(models, latents):
    frames = np.stack(list(iter_frames(models, latents, SonicParams(inference_steps=2, seed=42))))
    want = golden("decode.safetensors:final_frames_u8").numpy()
    assert frames.shape == want.shape == (59, 64, 64, 3)
    diff = np.abs(frames.astype(np.int16) - want)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())


def test_windows_of_a_short_video_accumulate_every_copy():
    """N < 25: a window holds frames twice or three times; the official per-frame loop adds each copy in order."""
    from sonic_core.sonic.sampler import accumulate

    n, idx = 10, window_indices(10, 3)[0]
    window = torch.randn(1, 25, 4, 2, 2)
    acc = torch.randn(1, n, 4, 2, 2)
    want = acc.clone()
    for j, frame in enumerate(idx):
        want[:, frame] += window[:, j]
    accumulate(acc, idx, window)
    assert max(idx.count(f) for f in idx) == 3
    assert torch.equal(acc, want)  # the same adds in the same order: bit for bit


def test_cli_generate_gives_the_official_frames(tiny_root, tmp_path):
    """`sonicflow generate --engine sonic` on the tiny official-layout folder writes, frame for frame, what the
    official implementation wrote for the same folder, inputs and seed (no crop, as the golden run; fp32, CPU)."""
    import subprocess
    import sys

    frames_dir = tmp_path / "frames"
    r = subprocess.run([sys.executable, "-m", "sonicflow_cli", "generate", "--engine", "sonic", "--checkpoints",
                        tiny_root, "--image", os.path.join(GOLDEN, "input_image.png"), "--audio",
                        os.path.join(GOLDEN, "input_audio.wav"), "--out", str(tmp_path / "out.mp4"),
                        "--min-resolution", "64", "--steps", "2", "--seed", "42", "--dtype", "fp32", "--device",
                        "cpu", "--no-crop", "--frames-dir", str(frames_dir)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    want = golden("decode.safetensors:final_frames_u8").numpy()
    names = sorted(os.listdir(frames_dir))
    # The official 2N-1 frames, then the last one held so the video lasts as long as its audio (2.4 s = 60 frames).
    assert len(names) == 60
    got = np.stack([np.asarray(Image.open(frames_dir / n).convert("RGB")) for n in names])
    diff = np.abs(got[:59].astype(np.int16) - want)
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (diff.max(), (diff > 0).mean())
    assert (got[59] == got[58]).all()
