"""Engine choice: sonic needs its weights (and says which and where), auto falls back to lite and says why."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from sonic_core.engines import generate
from sonic_core.errors import InputError, MissingWeightsError
from sonic_core.media.audio import load_audio
from sonic_core.media.image import load_image
from sonic_core.model_files.locate import find_weights
from sonic_core.options import GenerateOptions
from sonic_core.predata import prepare

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SONIC_FILES = ["unet.pth", "audio2token.pth", "audio2bucket.pth", "yoloface_v5m.pt", "RIFE/flownet.pkl",
               "whisper-tiny/config.json"]


@pytest.fixture(scope="module")
def pre(example_image, example_audio):
    return prepare(load_image(example_image), load_audio(example_audio), duration=1.0)


def _touch(root, *rels):
    for rel in rels:
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "wb").close()


def _official(tmp_path):
    root = str(tmp_path / "checkpoints")
    _touch(root, *[("Sonic/" + f if f.endswith(".pth") else f) for f in SONIC_FILES],
           "stable-video-diffusion-img2vid-xt/vae/config.json",
           "stable-video-diffusion-img2vid-xt/image_encoder/config.json")
    return root


def _comfy(tmp_path):
    models = tmp_path / "ComfyUI" / "models"
    _touch(str(models / "sonic"), *SONIC_FILES)
    _touch(str(models / "checkpoints"), "svd_xt.safetensors")
    return str(models / "sonic")


def test_sonic_without_weights_lists_what_is_missing(pre, tmp_path):
    with pytest.raises(MissingWeightsError) as e:
        generate(pre, GenerateOptions(engine="sonic", weight_roots=(str(tmp_path),)))
    msg = str(e.value)
    assert e.value.code == "missing_weights" and str(tmp_path) in msg
    for name in SONIC_FILES[:-1] + ["whisper-tiny", "stable-video-diffusion", "svd_xt"]:
        assert name in msg, name
    for url in ("huggingface.co/LeonJoe13/Sonic", "huggingface.co/openai/whisper-tiny",
                "huggingface.co/stabilityai/stable-video-diffusion-img2vid-xt"):
        assert url in msg
    assert "models/sonic" in msg and "--checkpoints" in msg


def test_no_roots_at_all():
    with pytest.raises(MissingWeightsError, match="no folder configured"):
        find_weights([])


def test_find_weights_official_layout(tmp_path):
    root = _official(tmp_path)
    w = find_weights(["", str(tmp_path / "elsewhere"), root])
    assert w.paths["unet"] == os.path.join(root, "Sonic", "unet.pth")
    assert w.paths["rife"] == os.path.join(root, "RIFE", "flownet.pkl")
    assert w.paths["whisper"] == os.path.join(root, "whisper-tiny")
    assert w.paths["svd"] == os.path.join(root, "stable-video-diffusion-img2vid-xt")
    assert set(w.paths) == {"unet", "audio2token", "audio2bucket", "yoloface", "rife", "whisper", "svd"}


def test_find_weights_comfyui_layout(tmp_path):
    root = _comfy(tmp_path)
    w = find_weights([root])
    assert w.paths["audio2bucket"] == os.path.join(root, "audio2bucket.pth")
    assert w.paths["yoloface"] == os.path.join(root, "yoloface_v5m.pt")
    assert os.path.realpath(w.paths["svd"]) == os.path.realpath(
        str(tmp_path / "ComfyUI" / "models" / "checkpoints" / "svd_xt.safetensors"))


def test_only_the_missing_file_is_listed(tmp_path):
    root = _comfy(tmp_path)
    os.remove(os.path.join(root, "audio2token.pth"))
    with pytest.raises(MissingWeightsError) as e:
        find_weights([root])
    missing = [line for line in str(e.value).splitlines() if line.startswith("  ")]
    assert len(missing) == 1 and "audio2token.pth" in missing[0]


def test_auto_falls_back_to_lite(pre, tmp_path):
    frames = generate(pre, GenerateOptions(engine="auto", weight_roots=(str(tmp_path),)))
    assert frames.engine == "lite" and frames.info["engine"] == "lite"
    note = frames.info["note"]
    assert note.startswith("auto: used the lite engine") and "Sonic weights are missing" in note
    assert len(frames) == pre.n_frames == 25 and frames.fps == 25
    first = frames.frame(0)
    assert first.shape == (pre.image.shape[0], pre.image.shape[1], 3) and first.dtype == np.uint8
    assert frames.info["face_found"] is True and frames.info["params"]["seed"] == 0


def test_auto_with_unusable_weights_falls_back_and_sonic_says_why(pre, tmp_path):
    root = _official(tmp_path)  # every file present, but empty
    frames = generate(pre, GenerateOptions(engine="auto", weight_roots=(root,)))
    assert frames.engine == "lite" and "unusable" in frames.info["note"]
    with pytest.raises(MissingWeightsError, match="unet.pth"):
        generate(pre, GenerateOptions(engine="sonic", weight_roots=(root,)))


def test_lite_is_plain_lite(pre):
    frames = generate(pre, GenerateOptions(engine="lite"))
    assert frames.engine == "lite" and frames.info["note"] == "lite engine"


def test_unknown_engine(pre):
    with pytest.raises(InputError) as e:
        generate(pre, GenerateOptions(engine="wav2lip"))
    assert e.value.input_name == "engine" and "auto, sonic, lite" in str(e.value) and "Fix:" in str(e.value)


def test_without_the_sonic_libraries_auto_says_so_and_sonic_names_the_fix(tmp_path):
    """Installed without diffusers (an old `pip install -r requirements.txt`): auto falls back to lite and says why;
    sonic names the package and the command. The package is made unimportable in a child process."""
    root = _official(tmp_path)
    code = f"""
import sys, json
sys.modules["diffusers"] = None  # as if it were not installed
from sonic_core.engines import generate
from sonic_core.errors import MissingDependencyError
from sonic_core.options import GenerateOptions
from sonic_core.media.audio import load_audio
from sonic_core.media.image import load_image
from sonic_core.predata import prepare
pre = prepare(load_image({os.path.join(ROOT, "sample_media", "portrait.png")!r}),
              load_audio({os.path.join(ROOT, "sample_media", "speech.wav")!r}), duration=0.5)
frames = generate(pre, GenerateOptions(engine="auto", weight_roots=({root!r},)))
try:
    generate(pre, GenerateOptions(engine="sonic", weight_roots=({root!r},)))
    error = None
except MissingDependencyError as e:
    error = str(e)
print(json.dumps([frames.engine, frames.info["note"], error]))
"""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    engine, note, error = json.loads(r.stdout.splitlines()[-1])
    assert engine == "lite" and "diffusers is not installed" in note and "pip install" in note
    assert "'diffusers'" in error and "Fix: pip install -r requirements.txt" in error
