"""Audio features and audio conditioning, as Sonic computes them (sonic-reference.md 1.4 and 1.5).

16 kHz mono samples -> 30-s chunks (480000 samples) -> WhisperFeatureExtractor log-mel (1, 80, 3000) per chunk
(normalised per chunk), concatenated -> whisper-tiny encoder per 3000-frame window, keeping all 5 hidden states
(embeddings, after layers 1-3, final = after layer 4 and the final LayerNorm) -> 50 tokens/s.
audio_len = samples // 640 (25-fps frames, capped at `limit`); tokens truncated to 2*audio_len and zero-padded:
`prompts` 4 before / 6 after (1, 2L+10, 5, 384), `last_prompts` 24 / 26 (1, 2L+50, 1, 384).
Generated frame i (12.5 fps, step 2) takes prompts[4i : 4i+10] for audio2token and last_prompts[4i : 4i+50] for
audio2bucket.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SAMPLE_RATE = 16000
CHUNK = 750 * 640          # 480000 samples = 30 s
MEL_WINDOW = 3000          # mel frames per whisper encoder call
SAMPLES_PER_FRAME = 640    # one 25-fps frame
STEP = 2                   # audio frames per generated frame (12.5 fps)
FRAME_LIMIT = 10000        # the official config's frame_num (400 s)


@dataclass
class AudioFeatures:
    prompts: torch.Tensor        # (1, 2L+10, 5, 384)
    last_prompts: torch.Tensor   # (1, 2L+50, 1, 384)
    audio_len: int               # L, 25-fps frames
    step: int = STEP

    @property
    def n_frames(self) -> int:
        """Generated frames (12.5 fps): audio_len // step."""
        return self.audio_len // self.step

    def token_clip(self, i: int) -> torch.Tensor:
        """audio2token input of generated frame i: (1, 1, 10, 5, 384)."""
        s = i * 2 * self.step
        return self.prompts[:, s:s + 10].unsqueeze(0)

    def bucket_clip(self, i: int) -> torch.Tensor:
        """audio2bucket input of generated frame i: (1, 1, 50, 1, 384)."""
        s = i * 2 * self.step
        return self.last_prompts[:, s:s + 50].unsqueeze(0)

    def token_clips(self) -> torch.Tensor:
        """All frames' audio2token inputs at once: (1, N, 10, 5, 384)."""
        return torch.cat([self.token_clip(i) for i in range(self.n_frames)], dim=1)

    def bucket_clips(self) -> torch.Tensor:
        """All frames' audio2bucket inputs at once: (1, N, 50, 1, 384)."""
        return torch.cat([self.bucket_clip(i) for i in range(self.n_frames)], dim=1)


def log_mel(samples: np.ndarray, feature_extractor) -> torch.Tensor:
    """(1, 80, 3000 * n_chunks) log-mel, one WhisperFeatureExtractor call per 30-s chunk (each padded to 30 s)."""
    samples = np.asarray(samples, dtype=np.float32)
    feats = [feature_extractor(samples[i:i + CHUNK], sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
             for i in range(0, len(samples), CHUNK)]
    if not feats:
        raise ValueError("no audio samples")
    return torch.cat(feats, dim=-1)


@torch.no_grad()
def encode(encoder, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """whisper encoder over 3000-frame windows -> (hidden (1, T, 5, 384), last (1, T, 1, 384)), T = 1500 per window.
    `last` is the final hidden state (equal to hidden[..., -1, :]), as the official second encoder call gives."""
    p = next(encoder.parameters())
    hidden, last = [], []
    for i in range(0, mel.shape[-1], MEL_WINDOW):
        x = mel[:, :, i:i + MEL_WINDOW].to(device=p.device, dtype=p.dtype)
        out = encoder(x, output_hidden_states=True)
        hs = torch.stack(tuple(out.hidden_states), dim=2)
        hidden.append(hs)
        last.append(out.last_hidden_state.unsqueeze(-2))
    return torch.cat(hidden, dim=1), torch.cat(last, dim=1)


def audio_features(samples: np.ndarray, feature_extractor, encoder, limit: int = FRAME_LIMIT,
                   step: int = STEP) -> AudioFeatures:
    """16-kHz mono float samples -> padded whisper features (see module doc)."""
    audio_len = min(limit, len(samples) // SAMPLES_PER_FRAME)
    hidden, last = encode(encoder, log_mel(samples, feature_extractor))
    hidden, last = hidden[:, :audio_len * 2], last[:, :audio_len * 2]
    prompts = torch.cat([torch.zeros_like(hidden[:, :4]), hidden, torch.zeros_like(hidden[:, :6])], 1)
    last_prompts = torch.cat([torch.zeros_like(last[:, :24]), last, torch.zeros_like(last[:, :26])], 1)
    return AudioFeatures(prompts, last_prompts, audio_len, step)


@dataclass
class AudioConditioning:
    cond: torch.Tensor           # (N, 32, 1024) audio2token(clip)
    uncond: torch.Tensor         # (N, 32, 1024) audio2token(zeros): the adapter's output for silence, not zeros
    motion_buckets: torch.Tensor  # (N, 2, 1) audio2bucket * 16 + 16


@torch.no_grad()
def audio_conditioning(feats: AudioFeatures, audio2token, audio2bucket, image_embeds: torch.Tensor,
                       batch: int = 64) -> AudioConditioning:
    """Per generated frame: audio tokens, 'unconditional' tokens and motion buckets, batched over frames.
    image_embeds: CLIP image_embeds (1, 1024). All in the adapters' dtype/device (fp32 officially)."""
    p = next(audio2token.parameters())
    tokens = feats.token_clips().to(p.device, p.dtype)      # (1, N, 10, 5, 384)
    buckets_in = feats.bucket_clips().to(p.device, p.dtype)  # (1, N, 50, 1, 384)
    emb = image_embeds.to(p.device, p.dtype).reshape(1, -1)
    n = tokens.shape[1]
    cond, uncond, buckets = [], [], []
    zero_token = audio2token(torch.zeros_like(tokens[:, :1]))[0, 0]
    for s in range(0, n, batch):
        t = tokens[:, s:s + batch]
        f = t.shape[1]
        cond.append(audio2token(t)[0])
        uncond.append(zero_token.expand(f, -1, -1))
        b = audio2bucket(buckets_in[:, s:s + batch], emb.expand(f, -1))
        buckets.append(b[0] * 16 + 16)
    return AudioConditioning(torch.cat(cond), torch.cat(uncond), torch.cat(buckets))
