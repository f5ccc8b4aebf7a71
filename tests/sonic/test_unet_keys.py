"""The UNet built from SVD-XT's real config has exactly the official unet.pth's tensors (names, shapes, order)."""
from __future__ import annotations

import os

import pytest

from .conftest import SPECS

KEYS = os.path.join(SPECS, "sonic_unet_state_dict_keys.tsv")
IP_KEYS = os.path.join(SPECS, "sonic_unet_ip_adapter_keys.tsv")

# SVD-XT's unet/config.json (sonic-reference.md 1.7), written out here so the test does not trust configs.py.
SVD_XT_UNET_CONFIG = {
    "_class_name": "UNetSpatioTemporalConditionModel",
    "addition_time_embed_dim": 256,
    "block_out_channels": [320, 640, 1280, 1280],
    "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal",
                         "CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"],
    "in_channels": 8,
    "layers_per_block": 2,
    "num_attention_heads": [5, 10, 20, 20],
    "num_frames": 25,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 768,
    "sample_size": 96,
    "transformer_layers_per_block": 1,
    "up_block_types": ["UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal",
                       "CrossAttnUpBlockSpatioTemporal"],
}


def _tsv(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.strip():
                k, shape = line.rstrip("\n").split("\t")
                rows.append((k, shape))
    return rows


@pytest.fixture(scope="module")
def real_unet():
    from sonic_core.sonic.unet import build_unet

    return build_unet(SVD_XT_UNET_CONFIG, device="meta")


def test_real_unet_state_dict_matches_official_list(real_unet):
    expected = _tsv(KEYS)
    got = [(k, str(tuple(v.shape))) for k, v in real_unet.state_dict().items()]
    assert len(expected) == 1492
    assert set(got) == set(expected), sorted(set(got) ^ set(expected))[:10]
    assert got == expected  # same order as the official module tree
    assert sum(v.numel() for v in real_unet.state_dict().values()) == 1_575_741_162


def test_audio_attention_keys(real_unet):
    expected = _tsv(IP_KEYS)
    got = [(k, str(tuple(v.shape))) for k, v in real_unet.state_dict().items() if ".processor." in k]
    assert got == expected and len(got) == 64


def test_builtin_config_is_svd_xt():
    from sonic_core.sonic import configs

    assert configs.SVD_XT_UNET == SVD_XT_UNET_CONFIG
