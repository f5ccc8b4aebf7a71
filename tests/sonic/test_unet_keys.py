"""The UNet built from SVD-XT's real config has exactly the official unet.pth's tensors (names, shapes, order)."""
from __future__ import annotations

import os

import pytest

from sonic_core.sonic.configs import SVD_XT_UNET as SVD_XT_UNET_CONFIG  # what production builds

from .conftest import ROOT, SPECS

KEYS = os.path.join(SPECS, "sonic_unet_state_dict_keys.tsv")
IP_KEYS = os.path.join(SPECS, "sonic_unet_ip_adapter_keys.tsv")

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
    """configs.py against a separate copy of SVD-XT's unet/config.json (the full-size benchmark's)."""
    import json

    with open(os.path.join(ROOT, "bench", "sonic_full_config", "stable-video-diffusion-img2vid-xt", "unet",
                           "config.json")) as f:
        real = json.load(f)

    def plain(config):
        return {k: v for k, v in config.items() if not k.startswith("_")}

    assert plain(SVD_XT_UNET_CONFIG) == plain(real)
