"""Every file the Sonic engine needs: where it comes from, where it goes in each layout, its size, sha256 and licence.

The one declaration of these paths: `sonic_core.model_files.locate` derives what it looks for from here.

Sizes and sha256 are the published ones; None where none was found (then the size is taken from the server and the
file is not hashed). Small JSON configs are plain git files on `main` that upstream may edit, so they carry none.
  * LeonJoe13/Sonic: Git LFS pointers of the same five files in the mirror
    https://huggingface.co/RedbeardNZ/comfyui-sonic-models/commit/1cf858513a5ea35c94905eec5a2153e26fd59be6 ; the
    byte sizes match those other projects report for LeonJoe13/Sonic's own URLs.
  * stable-video-diffusion-img2vid-xt: the VAE's sha256 is on
    https://huggingface.co/stabilityai/stable-video-diffusion-img2vid-xt/blob/6613776d5d1418e4cef7230ec398de2815e6c850/vae/diffusion_pytorch_model.fp16.safetensors
    ; sizes and the image encoder's sha256 from peer projects' manifests pinned at revision 9e43909513c6 (main; the
    weights have not changed since "Add diffusers weights (#22)").
  * openai/whisper-tiny: model.safetensors as pinned by several peer projects (revision 169d4a4341b3).
"""
from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from urllib.parse import quote

DEFAULT_ENDPOINT = "https://huggingface.co"
REVISION = "main"


@dataclass(frozen=True)
class Source:
    name: str      # the key locate' messages use
    title: str     # how the licence line names it
    repo: str      # Hugging Face model repo
    folder: str    # where its files go in the official checkpoints/ layout ("" = the folder itself)
    licence: str   # one line, for the commands' output
    card: str      # model card: the licence and where to accept it when the repo is gated


SONIC = Source("sonic", "Sonic weights", "LeonJoe13/Sonic", "",
               "CC BY-NC-SA 4.0, non-commercial use only (https://github.com/jixiaozhong/Sonic)",
               "https://huggingface.co/LeonJoe13/Sonic")
SVD = Source("svd", "SVD-XT VAE + image encoder", "stabilityai/stable-video-diffusion-img2vid-xt",
             "stable-video-diffusion-img2vid-xt",
             "Stability AI Community License (commercial use: https://stability.ai/license)",
             "https://huggingface.co/stabilityai/stable-video-diffusion-img2vid-xt")
WHISPER = Source("whisper", "whisper-tiny", "openai/whisper-tiny", "whisper-tiny", "Apache-2.0",
                 "https://huggingface.co/openai/whisper-tiny")
SOURCES = (SONIC, SVD, WHISPER)


@dataclass(frozen=True)
class ModelFile:
    part: str                 # the model it belongs to (locate' names; "svd" = VAE + image encoder)
    source: Source
    path: str                 # path in the repo
    size: int | None          # bytes
    sha256: str | None
    comfyui_path: str | None = None   # in ComfyUI's models/sonic/ when it differs from the official path

    @property
    def official(self) -> str:
        """Path under the official checkpoints/ folder."""
        return posixpath.join(self.source.folder, self.path) if self.source.folder else self.path

    @property
    def comfyui(self) -> str:
        """Path under ComfyUI's models/sonic/ folder (ComfyUI_Sonic's layout)."""
        return self.comfyui_path or self.official

    def dest(self, layout: str) -> str:
        return self.comfyui if layout == "comfyui" else self.official

    def url(self, base: str) -> str:
        return f"{base}/{self.source.repo}/resolve/{REVISION}/{quote(self.path)}"


# The first file of each part is the one locate looks for (whisper: its config.json, the folder's marker).
MANIFEST = (
    ModelFile("unet", SONIC, "Sonic/unet.pth", 6_303_636_358,
              "2fb0b0b8fe07232f9c4e8af4ce64fc3b33593bf6dfd7c840b60585dc6017128b", "unet.pth"),
    ModelFile("audio2token", SONIC, "Sonic/audio2token.pth", 217_206_084,
              "68cf305813bf5e4682c4f6a80955233cfad6a5e194fd4a6963f27e4e8ee490d8", "audio2token.pth"),
    ModelFile("audio2bucket", SONIC, "Sonic/audio2bucket.pth", 87_050_998,
              "4af942fded37b70d0a0a7993b8c0f46b5b1e104bcf7b6316f7b509900db69d26", "audio2bucket.pth"),
    ModelFile("yoloface", SONIC, "yoloface_v5m.pt", 84_574_759,
              "5ef5928d2ee1350ea7050ad7524b26a2b55e5c69fee49cd499667bde6a215b17"),
    ModelFile("rife", SONIC, "RIFE/flownet.pkl", 12_186_817,
              "fe854fc8996547c953f732aaa3b78cae76cc0a12833ae856ea0749c4c570d7d8"),
    ModelFile("whisper", WHISPER, "config.json", None, None),
    ModelFile("whisper", WHISPER, "preprocessor_config.json", None, None),
    ModelFile("whisper", WHISPER, "model.safetensors", 151_061_672,
              "7ebd0e69e78190ffe1438491fa05cc1f5c1aa3a4c4db3bc1723adbb551ea2395"),
    ModelFile("svd", SVD, "vae/config.json", None, None),
    ModelFile("svd", SVD, "vae/diffusion_pytorch_model.fp16.safetensors", 195_531_910,
              "af602cd0eb4ad6086ec94fbf1438dfb1be5ec9ac03fd0215640854e90d6463a3"),
    ModelFile("svd", SVD, "image_encoder/config.json", None, None),
    ModelFile("svd", SVD, "image_encoder/model.fp16.safetensors", 1_264_217_240,
              "ae616c24393dd1854372b0639e5541666f7521cbe219669255e865cb7f89466a"),
)


def where_to_get(source: Source) -> str:
    """'<model card> (<what to take from it>)', for messages about missing files."""
    tops = sorted({f.path.split("/")[0] + ("/" if "/" in f.path else "") for f in MANIFEST if f.source is source})
    return f"{source.card} ({', '.join(tops)})"


def licences_line(files=MANIFEST) -> str:
    sources = [s for s in SOURCES if any(f.source is s for f in files)]
    return "Licences: " + "; ".join(f"{s.title}: {s.licence}" for s in sources) + "."


def base_url(mirror: str | None = None) -> str:
    """Where files are fetched from: --mirror, else $HF_ENDPOINT (as huggingface_hub), else huggingface.co."""
    return (mirror or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
