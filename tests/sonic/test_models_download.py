"""`sonicflow models download|check` against a real HTTP server on 127.0.0.1 serving the tiny official-layout
checkpoint under Hugging Face's URL paths, with a manifest carrying the tiny files' sizes and sha256."""
from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace

import pytest

from sonic_core.model_files import commands
from sonic_core.model_files.fetch import MAX_RESUMES, DownloadError
from sonic_core.model_files.locate import FILES, WHERE_TO_GET, find_weights, locate_weights
from sonic_core.model_files.manifest import MANIFEST, SVD, licences_line

from .conftest import ROOT, TINY_SVD_CONFIG
from .hf_server import HFServer, closed_port, file_map


def _sha(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture(scope="module")
def tiny(tiny_root):
    """The manifest with the tiny files' sizes and sha256 (None stays None, as in the real manifest)."""
    out = []
    for f in MANIFEST:
        local = os.path.join(tiny_root, *f.official.split("/"))
        out.append(replace(f, size=os.path.getsize(local) if f.size is not None else None,
                           sha256=_sha(local) if f.sha256 else None))
    return tuple(out)


@pytest.fixture()
def server(tiny_root):
    with HFServer(file_map(tiny_root, MANIFEST)) as srv:
        yield srv


def _one(tiny, official: str):
    return next(f for f in tiny if f.official == official)


def _url_path(f) -> str:
    return f.url("")


def _parts(folder: str) -> list[str]:
    return [os.path.join(d, n) for d, _, names in os.walk(folder) for n in names if n.endswith(".part")]


def test_manifest_declares_each_file_once_with_its_source_and_licence():
    for f in MANIFEST:
        assert f.url("https://huggingface.co") == f"https://huggingface.co/{f.source.repo}/resolve/main/{f.path}"
        assert f.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", f.sha256)
        assert (f.size is None) == (f.sha256 is None)  # the weights carry both; the small JSON configs neither
    for layout in ("official", "comfyui"):
        assert len({f.dest(layout) for f in MANIFEST}) == len(MANIFEST)
    # locate derives what it looks for from the manifest: the same names as before it did
    assert FILES == {
        "unet": ("Sonic/unet.pth", "unet.pth", "sonic"),
        "audio2token": ("Sonic/audio2token.pth", "audio2token.pth", "sonic"),
        "audio2bucket": ("Sonic/audio2bucket.pth", "audio2bucket.pth", "sonic"),
        "yoloface": ("yoloface_v5m.pt", "yoloface_v5m.pt", "sonic"),
        "rife": ("RIFE/flownet.pkl", "RIFE/flownet.pkl", "sonic"),
        "whisper": ("whisper-tiny/config.json", "whisper-tiny/config.json", "whisper"),
    }
    assert WHERE_TO_GET["sonic"] == "https://huggingface.co/LeonJoe13/Sonic (RIFE/, Sonic/, yoloface_v5m.pt)"
    line = licences_line()
    assert "\n" not in line
    for words in ("CC BY-NC-SA 4.0", "non-commercial", "Stability AI Community License", "Apache-2.0"):
        assert words in line


@pytest.mark.parametrize("layout", ["official", "comfyui"])
def test_download_then_the_engine_finds_and_loads_everything(tiny, tiny_root, server, tmp_path, layout):
    dest = str(tmp_path / ("checkpoints" if layout == "official" else "ComfyUI/models/sonic"))
    out = io.StringIO()
    assert commands.download(dest, layout, mirror=server.base, files=tiny, out=out) == 0
    assert "Licences: Sonic weights: CC BY-NC-SA 4.0" in out.getvalue()
    for f in tiny:
        got, sent = os.path.join(dest, *f.dest(layout).split("/")), os.path.join(tiny_root, *f.official.split("/"))
        assert _sha(got) == _sha(sent)
    assert _parts(dest) == []
    paths = find_weights([dest]).paths
    unet = "unet.pth" if layout == "comfyui" else os.path.join("Sonic", "unet.pth")
    assert paths["unet"] == os.path.join(dest, unet) and paths["svd"] == os.path.join(dest, SVD.folder)
    if layout == "comfyui":  # the renamed files load: the engine takes the downloaded tree as it is
        from sonic_core.sonic.loading import load_sonic

        models = load_sonic(dest, config_dir=TINY_SVD_CONFIG)
        assert models.paths["audio2token"] == os.path.join(dest, "audio2token.pth") and models.rife is not None
    out = io.StringIO()
    assert commands.check(dest, layout, files=tiny, out=out) == 0
    report = out.getvalue()
    assert report.count("  present ") == len(tiny) and f"All {len(tiny)} files present and verified." in report
    requests_before = len(server.log)
    assert commands.download(dest, layout, mirror=server.base, files=tiny, out=io.StringIO()) == 0
    assert len(server.log) == requests_before  # nothing fetched twice


def test_a_dropped_connection_resumes_within_the_run(tiny, tiny_root, server, tmp_path):
    rife = _one(tiny, "RIFE/flownet.pkl")
    server.drops[_url_path(rife)] = [3_000_000]
    assert commands.download(str(tmp_path), "official", mirror=server.base, files=[rife], out=io.StringIO()) == 0
    first, second = server.requests_for(_url_path(rife))
    assert (first["range"], first["status"], first["sent"]) == (None, 200, 3_000_000)
    start = int(re.fullmatch(r"bytes=(\d+)-", second["range"]).group(1))  # what arrived whole (a broken read is lost)
    assert 0 < start <= 3_000_000 and (second["status"], second["sent"]) == (206, rife.size - start)
    assert _sha(tmp_path / "RIFE" / "flownet.pkl") == rife.sha256


def test_an_interrupted_download_resumes_on_the_next_run_and_its_part_is_never_loaded(tiny, server, tmp_path):
    unet = _one(tiny, "Sonic/unet.pth")
    dest = str(tmp_path)
    server.drops[_url_path(unet)] = [3_000_000] * (MAX_RESUMES + 1)
    with pytest.raises(DownloadError) as e:
        commands.download(dest, "official", mirror=server.base, files=[unet], out=io.StringIO())
    assert len(server.requests_for(_url_path(unet))) == MAX_RESUMES + 1  # each attempt made progress, then gave up
    kept = os.path.getsize(tmp_path / "Sonic" / "unet.pth.part")
    assert 0 < kept < unet.size and "Sonic/unet.pth" in str(e.value) and "the next run resumes" in str(e.value)
    assert not os.path.exists(tmp_path / "Sonic" / "unet.pth")
    weights, missing = locate_weights([dest])
    assert "unet" not in weights.paths and any("Sonic/unet.pth" in m for m in missing)
    out = io.StringIO()
    assert commands.check(dest, "official", files=[unet], out=out) == 1
    assert f"{kept / 1e6:.2f} MB downloaded so far" in out.getvalue()

    server.log.clear()  # the network is back: the next run asks for the rest only
    assert commands.download(dest, "official", mirror=server.base, files=[unet], out=io.StringIO()) == 0
    (again,) = server.requests_for(_url_path(unet))
    assert again["range"] == f"bytes={kept}-" and again["status"] == 206
    assert again["sent"] == unet.size - kept < unet.size
    assert _sha(tmp_path / "Sonic" / "unet.pth") == unet.sha256 and _parts(dest) == []


@pytest.mark.parametrize("mode, words", [("flip", "sha256 does not match"), ("short", "the server offers")])
def test_a_wrong_file_is_refused_and_never_takes_the_final_name(tiny, server, tmp_path, mode, words):
    rife = _one(tiny, "RIFE/flownet.pkl")
    server.corrupt[_url_path(rife)] = mode
    with pytest.raises(DownloadError) as e:
        commands.download(str(tmp_path), "official", mirror=server.base, files=[rife], out=io.StringIO())
    assert words in str(e.value) and str(e.value).startswith("RIFE/flownet.pkl: ")
    assert not os.path.exists(tmp_path / "RIFE" / "flownet.pkl") and _parts(str(tmp_path)) == []
    assert "rife" not in locate_weights([str(tmp_path)])[0].paths
    del server.corrupt[_url_path(rife)]
    assert commands.download(str(tmp_path), "official", mirror=server.base, files=[rife], out=io.StringIO()) == 0


def test_the_token_is_sent_only_when_given_and_never_shown(tiny, server, tmp_path, monkeypatch, capsys):
    cfg = _one(tiny, "whisper-tiny/config.json")
    path = _url_path(cfg)
    server.token = "hf_s3cret"
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(DownloadError) as e:
        commands.download(str(tmp_path), "official", mirror=server.base, files=[cfg], out=io.StringIO())
    assert "HTTP 401" in str(e.value) and "HF_TOKEN" in str(e.value) and cfg.source.card in str(e.value)
    assert [r["auth"] for r in server.requests_for(path)] == [None]

    server.log.clear()
    server.redirect.add(path)  # like huggingface.co: a redirect to another host, which must not get the token
    monkeypatch.setenv("HF_TOKEN", "hf_s3cret")
    out = io.StringIO()
    assert commands.download(str(tmp_path), "official", mirror=server.base, files=[cfg], out=out) == 0
    endpoint, cdn = server.requests_for(path)
    assert (endpoint["auth"], endpoint["status"]) == ("Bearer hf_s3cret", 302)
    assert cdn["path"].startswith("/cdn/") and cdn["auth"] is None and cdn["status"] == 200
    assert "hf_s3cret" not in out.getvalue() + "".join(capsys.readouterr())


def test_check_names_each_problem_and_download_repairs_it(tiny, server, tmp_path):
    small = [_one(tiny, p) for p in ("RIFE/flownet.pkl", "yoloface_v5m.pt", "whisper-tiny/config.json",
                                     f"{SVD.folder}/vae/diffusion_pytorch_model.fp16.safetensors")]
    dest = str(tmp_path)
    assert commands.download(dest, "official", mirror=server.base, files=small, out=io.StringIO()) == 0
    with open(tmp_path / "yoloface_v5m.pt", "r+b") as f:  # same size, one byte changed
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 1]))
    vae = tmp_path / SVD.folder / "vae" / "diffusion_pytorch_model.fp16.safetensors"
    with open(vae, "r+b") as f:
        f.truncate(999)
    os.replace(tmp_path / "RIFE" / "flownet.pkl", tmp_path / "RIFE" / "flownet.pkl.part")
    os.truncate(tmp_path / "RIFE" / "flownet.pkl.part", 5_000_000)  # as an interrupted download leaves it
    out = io.StringIO()
    assert commands.check(dest, "official", files=small, out=out) == 1
    text = out.getvalue()
    assert re.search(r"checksum mismatch +yoloface_v5m\.pt", text)
    assert re.search(r"size mismatch +\S+/vae/diffusion_pytorch_model\.fp16\.safetensors +999 B found", text)
    assert re.search(r"missing +RIFE/flownet\.pkl .*5\.00 MB downloaded so far", text)
    assert re.search(r"present +whisper-tiny/config\.json", text)
    assert f"3 of 4 files missing or damaged. Fix: sonicflow models download --dest {dest} --layout official" in text
    assert "Licences: " in text

    server.log.clear()
    assert commands.download(dest, "official", mirror=server.base, files=small, out=io.StringIO()) == 0
    # the three bad files are fetched again (RIFE from where its .part ends), the intact config is not
    assert sorted(e["path"] for e in server.log) == sorted(_url_path(f) for f in small if f.size)
    assert server.requests_for(_url_path(small[0]))[0]["range"] == "bytes=5000000-"
    assert commands.check(dest, "official", files=small, out=io.StringIO()) == 0


def test_comfyui_single_svd_file_counts_as_present(tiny, tiny_root, server, tmp_path):
    """ComfyUI_Sonic users keep SVD as models/checkpoints/svd_xt.safetensors: nothing to fetch for SVD."""
    comfy = tmp_path / "ComfyUI" / "models"
    (comfy / "checkpoints").mkdir(parents=True)
    shutil.copy(os.path.join(tiny_root, "comfyui", "models", "checkpoints", "svd_xt.safetensors"),
                comfy / "checkpoints")
    svd = [f for f in tiny if f.part == "svd"]
    out = io.StringIO()
    assert commands.check(str(comfy / "sonic"), "comfyui", files=svd, out=out) == 0
    assert out.getvalue().count("the engine uses " + str(comfy / "checkpoints" / "svd_xt.safetensors")) == len(svd)
    assert commands.download(str(comfy / "sonic"), "comfyui", mirror=server.base, files=svd, out=io.StringIO()) == 0
    assert server.log == []


def test_clear_errors_for_network_404_and_disk(tiny, server, tmp_path):
    rife = _one(tiny, "RIFE/flownet.pkl")
    with pytest.raises(DownloadError, match=r"^RIFE/flownet.pkl: cannot reach 127\.0\.0\.1:\d+ \(\[Errno 111\] "
                                            r"Connection refused\)\. Fix: check the network"):
        commands.download(str(tmp_path), "official", mirror=f"http://127.0.0.1:{closed_port()}", files=[rife],
                          out=io.StringIO())
    with pytest.raises(DownloadError, match=r"^RIFE/nope.pkl: not found \(HTTP 404\) at http://127.0.0.1:\d+/"
                                            r"LeonJoe13/Sonic/resolve/main/RIFE/nope.pkl\. Fix: check --mirror"):
        commands.download(str(tmp_path), "official", mirror=server.base, files=[replace(rife, path="RIFE/nope.pkl")],
                          out=io.StringIO())
    server.log.clear()
    with pytest.raises(DownloadError, match=r"^not enough disk space in .*: 1000000000.00 GB to download"):
        commands.download(str(tmp_path), "official", mirror=server.base, files=[replace(rife, size=10**18)],
                          out=io.StringIO())
    assert server.log == []  # refused before any transfer
    assert not os.path.exists(tmp_path / "RIFE" / "flownet.pkl")


def test_cli_models_check_and_download_errors(tmp_path, capsys):
    from sonicflow_cli import main

    assert main(["models", "check", "--dest", str(tmp_path), "--layout", "comfyui"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"missing +unet\.pth +6\.30 GB", out) and f"{SVD.folder}/vae/config.json" in out
    assert "Disk: 8.32 GB for all files (+ 4 small files of unknown size)" in out
    assert f"Fix: sonicflow models download --dest {tmp_path} --layout comfyui" in out
    assert "Licences: Sonic weights: CC BY-NC-SA 4.0" in out

    assert main(["models", "download", "--dest", str(tmp_path), "--mirror", "ftp://mirror.example"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sonicflow models: --mirror 'ftp://mirror.example': not an http(s) URL")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_default_folder_inside_and_outside_comfyui(tmp_path):
    pack = tmp_path / "ComfyUI" / "custom_nodes" / "SonicFlow"
    pack.mkdir(parents=True)
    (tmp_path / "ComfyUI" / "models").mkdir()
    assert commands.default_target(None, None, str(pack)) == ("comfyui", str(tmp_path / "ComfyUI" / "models" / "sonic"))
    assert commands.default_target("official", None, str(pack)) == ("official", os.path.abspath("checkpoints"))
    outside = str(tmp_path / "src" / "SonicFlow")
    assert commands.default_target(None, None, outside) == ("official", os.path.abspath("checkpoints"))
    with pytest.raises(DownloadError, match="pass --dest ComfyUI/models/sonic"):
        commands.default_target("comfyui", None, outside)


def test_models_commands_never_import_torch(tmp_path):
    code = ("import io, sys; from sonic_core.model_files import commands; "
            f"assert commands.check({str(tmp_path)!r}, 'official', out=io.StringIO()) == 1; "
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
