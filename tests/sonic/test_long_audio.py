"""Audio longer than the official code's cap (400 s, its config's frame_num): the Sonic sampler animates all of it,
and its memory grows by no more than the per-frame latents and audio tokens it must keep (the device holds one
window, the whisper features and adapter inputs are streamed)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from .conftest import ROOT

LONG_S = 410.0      # the official code stops animating at 400 s and the old engine held the last frame after it
SHORT_S = 20.0
TAIL = 16           # latent frames decoded at the end: two VAE chunks, aligned as the whole video's


def _run_lengths(root: str, out: str) -> None:
    """In a fresh process (its peak RSS is this run's): the short audio, then the long one, each sampled with one
    step at 64x64; the peak RSS after each, the frame count, and the long video's last frames decoded."""
    import resource

    import torch
    from PIL import Image

    from sonic_core.media.audio import load_audio
    from sonic_core.sonic.decoding import iter_frames
    from sonic_core.sonic.loading import load_sonic
    from sonic_core.sonic.pipeline import SonicParams, detect_official, image_inputs
    from sonic_core.sonic.sampler import sample_latents

    torch.set_num_threads(2)
    golden = os.path.join(ROOT, "tests", "data", "sonic_golden")
    models = load_sonic(root, device="cpu", dtype=torch.float32, load_rife_model=False)
    rgb = np.asarray(Image.open(os.path.join(golden, "input_image.png")).convert("RGB"))
    image = image_inputs(rgb, detect_official(models, rgb), 64)
    speech = load_audio(os.path.join(golden, "input_audio.wav")).mono()
    params = SonicParams(inference_steps=1, seed=3, interpolate=False)
    res = {}
    for seconds in (SHORT_S, LONG_S):
        n = int(seconds * 16000)
        latents = sample_latents(models, image, np.tile(speech, -(-n // len(speech)))[:n], params)
        res[str(seconds)] = {"frames": int(latents.shape[0]),
                             "maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    start = (latents.shape[0] - TAIL) // 8 * 8
    tail = np.stack(list(iter_frames(models, latents[start:], params))).astype(np.float32)
    res["tail_frames"] = len(tail)
    res["tail_step_diffs"] = [float(np.abs(a - b).mean()) for a, b in zip(tail[1:], tail[:-1])]
    res["tail_from_last"] = [float(np.abs(f - tail[-1]).mean()) for f in tail[:-1]]
    with open(out, "w") as f:
        json.dump(res, f)


@pytest.mark.slow
def test_audio_longer_than_the_official_cap_is_animated_to_its_end_in_flat_memory(tiny_root, tmp_path):
    from sonic_core.sonic.audio_features import FEATURE_BYTES_PER_FRAME
    from sonic_core.sonic.memory import store_bytes_per_frame

    out = tmp_path / "long.json"
    code = f"import sys; sys.path.insert(0, {ROOT!r}); from tests.sonic.test_long_audio import _run_lengths; " \
           f"_run_lengths({tiny_root!r}, {str(out)!r})"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    short, long_ = res[str(SHORT_S)], res[str(LONG_S)]
    # every 80 ms of the audio has its generated frame: 5125 of them, past the official 5000
    assert long_["frames"] == int(LONG_S * 16000) // 640 // 2 == 5125
    # the end moves: no frame of the last two decode chunks repeats another (the old engine held one frame there)
    assert res["tail_frames"] >= TAIL
    assert min(res["tail_step_diffs"]) > 1.0 and min(res["tail_from_last"]) > 1.0, res
    # RAM per extra frame: at most 1.5x what must be kept per frame, the whisper features while the adapters run
    # (36 KB) and the latents and audio tokens the sampler keeps (1 + 128 KB at 64x64 in fp32); measured 179 KB.
    # The old engine, which held the whole audio's adapter inputs and copies of its tokens and latents, grew by
    # about 700 KB per frame (530 MB per minute of audio).
    per_frame = (long_["maxrss_bytes"] - short["maxrss_bytes"]) / (long_["frames"] - short["frames"])
    assert per_frame <= 1.5 * (store_bytes_per_frame((64, 64), 4) + FEATURE_BYTES_PER_FRAME), per_frame
