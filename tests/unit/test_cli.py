"""The `sonicflow` command end to end, in a subprocess: exit codes, JSON on stdout, messages on stderr."""
import json
import os
import subprocess
import sys

import pytest
from media_helpers import ROOT

from sonic_core.media.encode import probe_video


def sonicflow(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "sonicflow_cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def lite_video(tmp_path_factory, example_image, example_audio):
    out = str(tmp_path_factory.mktemp("cli") / "X.mp4")
    r = sonicflow("generate", "--engine", "lite", "--image", example_image, "--audio", example_audio, "--out", out,
                  "--duration", "3", "--preset", "ultrafast")
    return r, out


def test_generate_lite(lite_video):
    r, out = lite_video
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert report["engine"] == "lite" and report["out"] == out and report["frames"] == 75
    assert report["size"] == [512, 512] and report["fps"] == 25
    assert "100% (75/75 frames)" in r.stderr
    info = probe_video(out)
    assert (info.video_codec, info.pix_fmt, info.audio_codec) == ("h264", "yuv420p", "aac")
    assert abs(info.duration - 3.0) <= 1 / 25 and abs(info.audio_duration - 3.0) <= 1 / 25
    prov = json.loads(info.metadata["sonicflow"])
    assert prov["engine"] == "lite" and len(prov["inputs"]["image_sha256"]) == 64
    assert sorted(os.listdir(os.path.dirname(out))) == ["X.mp4"]


def test_generate_sonic_without_weights(tmp_path, example_image, example_audio):
    out = str(tmp_path / "Y.mp4")
    r = sonicflow("generate", "--engine", "sonic", "--image", example_image, "--audio", example_audio, "--out", out,
                  "--checkpoints", str(tmp_path / "ckpt"))
    assert r.returncode == 2 and r.stdout == ""
    for name in ("unet.pth", "audio2token.pth", "audio2bucket.pth", "yoloface_v5m.pt", "RIFE/flownet.pkl",
                 "whisper-tiny", "stable-video-diffusion-img2vid-xt"):
        assert name in r.stderr, name
    assert "Traceback" not in r.stderr and not os.path.exists(out)


def test_generate_corrupt_image(tmp_path, example_image, example_audio):
    bad = tmp_path / "face.png"
    bad.write_bytes(open(example_image, "rb").read()[:2000])
    r = sonicflow("generate", "--engine", "lite", "--image", str(bad), "--audio", example_audio, "--out",
                  str(tmp_path / "Z.mp4"))
    assert r.returncode == 2, r.stderr
    assert "image" in r.stderr and "Fix:" in r.stderr and "Traceback" not in r.stderr
    assert os.listdir(tmp_path) == ["face.png"]


def test_sync_check(lite_video):
    _, out = lite_video
    r = sonicflow("sync-check", out)
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert isinstance(report["offset_frames"], int) and abs(report["offset_frames"]) <= 10
    assert -1.0 <= report["peak"] <= 1.0 and report["n_frames"] == 75 and report["fps"] == 25
    in_sync = abs(report["offset_frames"]) <= 1 and report["peak"] >= 0.5  # the defaults: --tolerance 1 --min-peak 0.5
    assert r.returncode == (0 if in_sync else 1), r.stderr
    assert sonicflow("sync-check", out, "--min-peak", "1.01").returncode == 1  # no correlation exceeds 1


def test_sync_check_setup_and_missing_venv(lite_video, tmp_path):
    _, out = lite_video
    r = sonicflow("sync-check", "--setup")   # the venv `make` built is up to date: nothing to install
    assert r.returncode == 0 and "installing" not in r.stderr, r.stderr
    assert os.path.isfile(os.path.join(json.loads(r.stdout)["sync_venv"], "bin", "python"))
    env = dict(os.environ, SONICFLOW_SYNC_VENV=str(tmp_path / "nowhere"))
    r = subprocess.run([sys.executable, "-m", "sonicflow_cli", "sync-check", out], cwd=ROOT, capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 2 and r.stdout == "" and "Traceback" not in r.stderr
    assert "sonicflow sync-check --setup" in r.stderr and str(tmp_path / "nowhere") in r.stderr
    assert not os.path.exists(tmp_path / "nowhere")
    assert sonicflow("sync-check").returncode == 2   # neither a video nor --setup


@pytest.mark.parametrize("command, package, extra", [(["worker", "--comfy", "http://127.0.0.1:9"], "pika", "bridge"),
                                                     (["api"], "aiohttp", "api")])
def test_a_missing_extra_is_named_with_its_install_command(command, package, extra):
    """A canvas user's install has no bridge or front-door packages: the command says which and how, no traceback."""
    code = (f"import sys; sys.modules[{package!r}] = None; import sonicflow_cli; "
            f"sys.exit(sonicflow_cli.main({command!r}))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    assert f"'{package}'" in r.stderr and f"pip install 'sonicflow[{extra}]'" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("command", [["status"], ["dlq", "list"], ["dlq", "replay"],
                                     ["submit", "--template", "talking_head", "--image", "https://example.com/a.png"]])
def test_a_broker_that_does_not_answer_is_one_line_not_a_traceback(command):
    r = sonicflow(*command, "--amqp", "amqp://guest:guest@127.0.0.1:1/%2F", timeout=60)
    assert r.returncode == 2 and "RabbitMQ did not answer" in r.stderr and "Fix:" in r.stderr
    assert "Traceback" not in r.stderr
