"""Audio features and audio conditioning, as Sonic computes them, streamed so that any length fits.

16 kHz mono samples -> 30-s chunks (480000 samples) -> WhisperFeatureExtractor log-mel (1, 80, 3000) per chunk
(normalised per chunk) -> whisper-tiny encoder per chunk, keeping all 5 hidden states (embeddings, after layers
1-3, final = after layer 4 and the final LayerNorm) -> 50 tokens/s.
audio_len = samples // 640 (25-fps frames); tokens truncated to 2*audio_len and zero-padded: `prompts` 4 before /
6 after (1, 2L+10, 5, 384), `last_prompts` 24 / 26 (1, 2L+50, 1, 384).
Generated frame i (12.5 fps, step 2) takes prompts[4i : 4i+10] for audio2token and last_prompts[4i : 4i+50] for
audio2bucket.

The official code caps audio_len at its config's frame_num (10000 frames, 400 s) and holds the whole audio's
features and adapter inputs on the GPU. Here nothing caps the length: each chunk's hidden states go to the CPU as
soon as they are computed, and the adapters run on batches of frames whose inputs are cut from them, so the GPU
holds one chunk or one batch at a time, whatever the length. The values are the same: chunking is the official.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SAMPLE_RATE = 16000
CHUNK = 750 * 640          # 480000 samples = 30 s = one whisper window of 3000 mel frames
TOKENS_PER_CHUNK = 1500    # whisper's positions per window
SAMPLES_PER_FRAME = 640    # one 25-fps frame
STEP = 2                   # audio frames per generated frame (12.5 fps)
TOKEN_PAD = (4, 6)         # zeros before / after the tokens for audio2token's 10-token clips
BUCKET_PAD = (24, 26)      # ... and for audio2bucket's 50-token clips
# Generated frames of the longest audio the official config animates (frame_num = 10000 25-fps frames, 400 s).
# Nothing here caps the length; the sampler draws device noise at most this many frames at a time.
OFFICIAL_MAX_FRAMES = 10000 // STEP
# RAM the features take per generated frame: 2 * STEP tokens of 5 + 1 hidden states of 384 channels, fp32
FEATURE_BYTES_PER_FRAME = 2 * STEP * (5 + 1) * 384 * 4


@dataclass
class AudioFeatures:
    """Padded whisper features of the whole audio, on the CPU (FEATURE_BYTES_PER_FRAME, 36 KB, per frame)."""
    prompts: torch.Tensor        # (1, 2L+10, 5, 384)
    last_prompts: torch.Tensor   # (1, 2L+50, 1, 384)
    audio_len: int               # L, 25-fps frames
    step: int = STEP

    @property
    def n_frames(self) -> int:
        """Generated frames (12.5 fps): audio_len // step."""
        return self.audio_len // self.step

    def token_clips(self, start: int, stop: int) -> torch.Tensor:
        """audio2token inputs of generated frames start..stop-1: (1, f, 10, 5, 384)."""
        return _clips(self.prompts, start, stop, 10, 2 * self.step)

    def bucket_clips(self, start: int, stop: int) -> torch.Tensor:
        """audio2bucket inputs of generated frames start..stop-1: (1, f, 50, 1, 384)."""
        return _clips(self.last_prompts, start, stop, 50, 2 * self.step)


def _clips(padded: torch.Tensor, start: int, stop: int, length: int, stride: int) -> torch.Tensor:
    """Clips of `length` tokens every `stride` tokens (frame i starts at token stride*i), as one (1, f, length, ...)
    tensor: what the official per-frame slices stack to."""
    span = padded[:, stride * start: stride * (stop - 1) + length]
    return span.unfold(1, length, stride).movedim(-1, 2).contiguous()


def log_mel(samples: np.ndarray, feature_extractor, start: int) -> torch.Tensor:
    """(1, 80, 3000) log-mel of the 30-s chunk at `start` (padded to 30 s by the extractor, normalised per chunk)."""
    return feature_extractor(samples[start:start + CHUNK], sampling_rate=SAMPLE_RATE,
                             return_tensors="pt").input_features


@torch.no_grad()
def audio_features(samples: np.ndarray, feature_extractor, encoder, step: int = STEP) -> AudioFeatures:
    """16-kHz mono float samples -> padded whisper features (see module doc), written chunk by chunk into
    CPU tensors allocated once. `last_prompts` holds the final hidden state, which is the official second encoder
    call's `last_hidden_state` exactly (the same computation)."""
    samples = np.asarray(samples, dtype=np.float32)
    if len(samples) == 0:
        raise ValueError("no audio samples")
    audio_len = len(samples) // SAMPLES_PER_FRAME
    tokens = 2 * audio_len
    p = next(encoder.parameters())
    prompts = torch.zeros(1, tokens + sum(TOKEN_PAD), 5, 384)
    last_prompts = torch.zeros(1, tokens + sum(BUCKET_PAD), 1, 384)
    for k, start in enumerate(range(0, len(samples), CHUNK)):
        first = k * TOKENS_PER_CHUNK
        if first >= tokens:
            break  # the tail after the last whole 25-fps frame: its tokens are cut off anyway
        mel = log_mel(samples, feature_extractor, start).to(device=p.device, dtype=p.dtype)
        hidden = torch.stack(tuple(encoder(mel, output_hidden_states=True).hidden_states), dim=2)
        used = hidden[:, :tokens - first].float().cpu()
        prompts[:, TOKEN_PAD[0] + first: TOKEN_PAD[0] + first + used.shape[1]] = used
        last_prompts[:, BUCKET_PAD[0] + first: BUCKET_PAD[0] + first + used.shape[1]] = used[:, :, -1:]
    return AudioFeatures(prompts, last_prompts, audio_len, step)


@dataclass
class AudioConditioning:
    cond: torch.Tensor           # (N, 32, 1024) audio2token(clip), where and in the dtype the caller asked
    uncond: torch.Tensor         # (32, 1024) audio2token(zeros), the same for every frame: the adapter's output
                                 # for silence, not zeros
    motion_buckets: torch.Tensor  # (N, 2, 1) audio2bucket * 16 + 16, float32 on the CPU


@torch.no_grad()
def audio_conditioning(feats: AudioFeatures, audio2token, audio2bucket, image_embeds: torch.Tensor,
                       batch: int = 64, device=None, dtype=None) -> AudioConditioning:
    """Per generated frame: audio tokens and motion buckets, batched over frames, and the 'unconditional' tokens.
    The adapters run where their parameters are (fp32 officially); image_embeds: CLIP image_embeds (1, 1024).
    `device`/`dtype`: where the tokens are kept (default: the adapters'); each batch goes there as it is made."""
    p = next(audio2token.parameters())
    device, dtype = device or p.device, dtype or p.dtype
    emb = image_embeds.to(p.device, p.dtype).reshape(1, -1)
    n = feats.n_frames
    uncond = audio2token(torch.zeros(1, 1, 10, 5, 384, device=p.device, dtype=p.dtype))[0, 0]
    cond = torch.empty(n, 32, 1024, device=device, dtype=dtype)
    buckets = torch.empty(n, 2, 1)
    for s in range(0, n, batch):
        e = min(n, s + batch)
        cond[s:e] = audio2token(feats.token_clips(s, e).to(p.device, p.dtype))[0].to(device, dtype)
        b = audio2bucket(feats.bucket_clips(s, e).to(p.device, p.dtype), emb.expand(e - s, -1))
        buckets[s:e] = (b[0] * 16 + 16).float().cpu()
    return AudioConditioning(cond, uncond.to(device, dtype), buckets)
