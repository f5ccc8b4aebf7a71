"""Sonic's two audio adapters, with the attribute names of the official checkpoints.

`AudioProjModel` (audio2token.pth) turns 10 whisper tokens x 5 hidden states x 384 channels around one video frame into
32 context tokens of 1024 channels; `Audio2bucketModel` (audio2bucket.pth) turns 50 tokens of the last hidden state plus
the CLIP image embedding into two motion-bucket scalars (the official src/models/audio_adapter/audio_proj.py).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class AudioProjModel(nn.Module):
    def __init__(self, seq_len: int = 10, blocks: int = 5, channels: int = 384, intermediate_dim: int = 1024,
                 output_dim: int = 1024, context_tokens: int = 32):
        super().__init__()
        self.seq_len, self.blocks, self.channels = seq_len, blocks, channels
        self.output_dim, self.context_tokens = output_dim, context_tokens
        self.input_dim = seq_len * blocks * channels
        self.proj1 = nn.Linear(self.input_dim, intermediate_dim)
        self.proj2 = nn.Linear(intermediate_dim, intermediate_dim)
        self.proj3 = nn.Linear(intermediate_dim, context_tokens * output_dim)
        self.norm = nn.LayerNorm(output_dim)

    def forward(self, audio_embeds: torch.Tensor) -> torch.Tensor:
        """(batch, frames, seq_len, blocks, channels) -> (batch, frames, context_tokens, output_dim)."""
        bz, f = audio_embeds.shape[:2]
        x = audio_embeds.reshape(bz * f, self.input_dim)
        x = F.relu(self.proj1(x))
        x = F.relu(self.proj2(x))
        x = self.proj3(x).reshape(bz * f, self.context_tokens, self.output_dim)
        return self.norm(x).reshape(bz, f, self.context_tokens, self.output_dim)


class Audio2bucketModel(nn.Module):
    def __init__(self, seq_len: int = 50, blocks: int = 1, channels: int = 384, clip_channels: int = 1024,
                 intermediate_dim: int = 1024, output_dim: int = 1, context_tokens: int = 2):
        super().__init__()
        self.seq_len, self.blocks, self.channels = seq_len, blocks, channels
        self.output_dim, self.context_tokens = output_dim, context_tokens
        self.audio_dim = seq_len * blocks * channels
        self.proj1 = nn.Linear(self.audio_dim + clip_channels, intermediate_dim)
        self.proj2 = nn.Linear(intermediate_dim, intermediate_dim)
        self.proj3 = nn.Linear(intermediate_dim, context_tokens * output_dim)
        self.act = nn.SiLU()

    def forward(self, audio_embeds: torch.Tensor, clip_embeds: torch.Tensor) -> torch.Tensor:
        """audio (batch, frames, seq_len, blocks, channels), clip (batch*frames, clip_channels)
        -> (batch, frames, 2, 1)."""
        bz, f = audio_embeds.shape[:2]
        x = torch.cat([audio_embeds.reshape(bz * f, self.audio_dim), clip_embeds.reshape(bz * f, -1)], dim=-1)
        x = self.act(self.proj1(x))
        x = self.act(self.proj2(x))
        x = self.proj3(x).reshape(bz * f, self.context_tokens, self.output_dim)
        return x.reshape(bz, f, self.context_tokens, self.output_dim)


def build_audio2token() -> AudioProjModel:
    from .configs import AUDIO2TOKEN
    return AudioProjModel(**AUDIO2TOKEN)


def build_audio2bucket() -> Audio2bucketModel:
    from .configs import AUDIO2BUCKET
    return Audio2bucketModel(**AUDIO2BUCKET)
