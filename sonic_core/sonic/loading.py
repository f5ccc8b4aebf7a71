"""Load Sonic's official files unchanged and strictly, from either layout, with one clear message on failure.

Layouts (found by `sonic_core.model_files.locate.find_weights`):
  * official `checkpoints/`: Sonic/{unet,audio2token,audio2bucket}.pth, RIFE/flownet.pkl, yoloface_v5m.pt,
    whisper-tiny/, stable-video-diffusion-img2vid-xt/ (a diffusers folder: vae/, image_encoder/, and the unet/ and
    scheduler/ configs);
  * ComfyUI_Sonic `models/sonic/` (same file names without `Sonic/`) plus SVD's single file
    `models/checkpoints/svd_xt*.safetensors` for the VAE and CLIP image encoder. Configs missing from a layout
    come from `configs.py` (SVD-XT's real ones) unless `config_dir` names a folder laid out like the diffusers one.

Every model is built from its config (on the meta device, so nothing is allocated twice), its file is read
(`torch.load(weights_only=True)`, memory-mapped when the file allows; safetensors directly; yoloface with
`torch.jit.load`), and the key/shape sets are compared before `load_state_dict(strict=True, assign=True)`. Any
problem, with any file, becomes one `WeightsError` that lists every file at fault, what is wrong, and the fix,
never a traceback from inside torch.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import zipfile
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import MissingWeightsError
from ..model_files.locate import WHERE_TO_GET, SonicWeights, locate_weights, missing_message
from . import configs

log = logging.getLogger(__name__)


class WeightsError(MissingWeightsError):
    """A weight file is missing, unreadable, or does not fit the model built from its config."""

    code = "bad_weights"


class _FileProblem(Exception):
    def __init__(self, path: str, problem: str, fix: str = ""):
        self.path, self.problem, self.fix = path, problem, fix
        super().__init__(f"{path}: {problem}")


def _lines(problems: list[_FileProblem]) -> list[str]:
    return [f"  {p.path}: {p.problem}" + (f" ({p.fix})" if p.fix else "") for p in problems]


def _raise(problems: list[_FileProblem]) -> None:
    lines = _lines(problems)
    raise WeightsError("Sonic weights cannot be used:\n" + "\n".join(lines) +
                       "\nReplace the files listed (downloads: " + "; ".join(WHERE_TO_GET.values()) + ").")


# ----------------------------------------------------------------------------------------------- reading files

_REDOWNLOAD = "download it again"


def sniff(path: str) -> None:
    """Cheap format check, before anything big is read: catches empty files, Git LFS pointers, HTML error pages
    and files whose first bytes are not of the expected format."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as e:
        raise _FileProblem(path, f"cannot be read ({e.strerror})") from None
    if size == 0:
        raise _FileProblem(path, "is empty", _REDOWNLOAD)
    if head.startswith(b"version https://git-lfs"):
        raise _FileProblem(path, "is a Git LFS pointer, not the weights",
                           "fetch the real file: git lfs pull, or download it directly")
    if head.lstrip().lower().startswith((b"<!doctype", b"<html")):
        raise _FileProblem(path, "is a web page, not the weights", _REDOWNLOAD)
    if path.endswith(".safetensors"):
        n = int.from_bytes(head[:8], "little") if len(head) >= 8 else 0
        if len(head) < 9 or head[8:9] != b"{" or n <= 0 or 8 + n > size:
            raise _FileProblem(path, "is not a valid safetensors file (truncated or corrupt)", _REDOWNLOAD)
    elif path.endswith((".pth", ".pkl", ".pt", ".bin", ".ckpt")):
        if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
            raise _FileProblem(path, "is not a PyTorch file", _REDOWNLOAD)
        if head.startswith(b"PK") and not zipfile.is_zipfile(path):
            raise _FileProblem(path, "is a truncated or corrupt PyTorch file", _REDOWNLOAD)


def read_state_dict(path: str) -> dict:
    """A state dict from a .safetensors or torch file, as tensors (weights_only, memory-mapped where possible)."""
    sniff(path)
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = _torch_load(path)
    except _FileProblem:
        raise
    except Exception as e:  # noqa: BLE001 - every reader error becomes one line about the file
        raise _FileProblem(path, f"cannot be read ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:160] if str(e) else ''})", _REDOWNLOAD) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise _FileProblem(path, "does not hold a state dict of tensors", _REDOWNLOAD)
    return state


def _torch_load(path: str):
    mmap = zipfile.is_zipfile(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        if "weights_only" not in str(e) and "Weights only" not in str(e):
            raise
    # The file holds Python objects beyond tensors; the official code loads it with weights_only=False. Only
    # files found in the configured weight folders reach this point.
    log.warning("%s needs full unpickling (weights_only=False); loading it that way", path)
    return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            return json.load(f)
    except OSError as e:
        raise _FileProblem(path, f"cannot be read ({e.strerror})") from None
    except ValueError as e:
        raise _FileProblem(path, f"is not valid JSON ({e})", _REDOWNLOAD) from None


# ----------------------------------------------------------------------------------------------- strict loading

def _fix_meta_buffers(module: nn.Module) -> None:
    for mod_name, mod in module.named_modules():
        for name, buf in list(mod.named_buffers(recurse=False)):
            if buf is None or not buf.is_meta:
                continue
            if name == "position_ids":
                n = buf.shape[-1]
                mod.register_buffer(name, torch.arange(n).expand((1, -1)), persistent=False)
            else:
                raise RuntimeError(f"buffer {mod_name}.{name} has no value after loading")


def strict_load(module: nn.Module, state: dict, path: str) -> nn.Module:
    """Compare keys and shapes, then load with assign=True (the module may live on the meta device)."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}" for k in expected
             if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape (file vs model)", wrong)):
            if items:
                parts.append(f"{len(items)} {label}: " + ", ".join(items[:3]) + (", ..." if len(items) > 3 else ""))
        raise _FileProblem(path, "does not match the model built from its config: " + "; ".join(parts),
                           "it is not the expected file, or the config beside it belongs to another model")
    module.load_state_dict(state, strict=True, assign=True)
    _fix_meta_buffers(module)
    return module.eval().requires_grad_(False)


def _finish(module: nn.Module, device, dtype) -> nn.Module:
    return nn.Module.to(module, device=device, dtype=dtype)


# ----------------------------------------------------------------------------------------------- models

def load_unet(path: str, config: dict, device="cpu", dtype=torch.float32) -> nn.Module:
    """unet.pth (a complete UNet state dict, base SVD weights + audio attention) into the UNet of `config`."""
    from .unet import build_unet

    unet = build_unet(config, device="meta")
    return _finish(strict_load(unet, read_state_dict(path), path), device, dtype)


def load_audio2token(path: str, device="cpu") -> nn.Module:
    from .adapters import build_audio2token

    with torch.device("meta"):
        m = build_audio2token()
    return _finish(strict_load(m, read_state_dict(path), path), device, torch.float32)


def load_audio2bucket(path: str, device="cpu") -> nn.Module:
    from .adapters import build_audio2bucket

    with torch.device("meta"):
        m = build_audio2bucket()
    return _finish(strict_load(m, read_state_dict(path), path), device, torch.float32)


def load_rife(path: str, device="cpu") -> nn.Module:
    """RIFE/flownet.pkl: keys with `module.` are kept and the prefix stripped, as the official loader does."""
    from .rife import IFNet, rife_state_dict_from_checkpoint

    with torch.device("meta"):
        m = IFNet()
    state = rife_state_dict_from_checkpoint(read_state_dict(path))
    return _finish(strict_load(m, state, path), device, torch.float32)


def load_yoloface(path: str, device="cpu"):
    from .yoloface import YoloFace

    sniff(path)
    try:
        return YoloFace(path, device=device)
    except Exception as e:  # noqa: BLE001
        raise _FileProblem(path, f"is not a loadable TorchScript face detector ({type(e).__name__})",
                           _REDOWNLOAD) from None


def _first(folder: str, names: tuple[str, ...]) -> str:
    for n in names:
        p = os.path.join(folder, n)
        if os.path.isfile(p):
            return p
    raise _FileProblem(os.path.join(folder, names[0]), "is missing",
                       "download it (or one of: " + ", ".join(names[1:]) + ")")


def load_whisper(folder: str, device="cpu"):
    """whisper-tiny/: (WhisperFeatureExtractor, WhisperEncoder in fp32). Only the encoder is built and loaded
    (strictly: every encoder tensor of the file, `model.encoder.` or `encoder.` prefixed); decoder tensors of the
    file are not used."""
    from transformers import WhisperConfig, WhisperFeatureExtractor
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg_path = os.path.join(folder, "config.json")
    pre_path = os.path.join(folder, "preprocessor_config.json")
    cfg = _read_json(cfg_path)
    pre = _read_json(pre_path)
    if cfg.get("d_model") != 384 or cfg.get("num_mel_bins", 80) != 80:
        raise _FileProblem(cfg_path, f"is not whisper-tiny's (d_model {cfg.get('d_model')}; Sonic needs 384)",
                           "use openai/whisper-tiny")
    fe = WhisperFeatureExtractor(**{k: v for k, v in pre.items() if k in (
        "feature_size", "sampling_rate", "hop_length", "chunk_length", "n_fft", "padding_value")})
    weights = _first(folder, ("model.safetensors", "pytorch_model.bin"))
    state = read_state_dict(weights)
    enc_state = {}
    for k, v in state.items():
        for prefix in ("model.encoder.", "encoder."):
            if k.startswith(prefix):
                enc_state[k[len(prefix):]] = v
                break
    config = WhisperConfig(**{k: v for k, v in cfg.items() if not k.startswith("_")})
    with torch.device("meta"):
        enc = WhisperEncoder(config)
    enc = strict_load(enc, enc_state, weights)
    return fe, _finish(enc, device, torch.float32)


def _svd_configs(svd: str, config_dir: str | None) -> dict:
    """unet / vae / image_encoder / scheduler configs: config_dir, else the diffusers folder's, else SVD-XT's."""
    folders = [d for d in (config_dir, svd if os.path.isdir(svd) else None) if d]
    rel = {"unet": "unet/config.json", "vae": "vae/config.json", "image_encoder": "image_encoder/config.json",
           "scheduler": "scheduler/scheduler_config.json"}
    builtin = {"unet": configs.SVD_XT_UNET, "vae": configs.SVD_XT_VAE, "image_encoder": configs.SVD_XT_IMAGE_ENCODER,
               "scheduler": configs.SVD_XT_SCHEDULER}
    out = {}
    for name, r in rel.items():
        hit = next((os.path.join(d, r) for d in folders if os.path.isfile(os.path.join(d, r))), None)
        out[name] = _read_json(hit) if hit else dict(builtin[name])
    return out


_SVD_FILES = {
    "vae": ("diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.safetensors",
            "diffusion_pytorch_model.fp16.bin", "diffusion_pytorch_model.bin"),
    "image_encoder": ("model.fp16.safetensors", "model.safetensors", "pytorch_model.fp16.bin", "pytorch_model.bin"),
}


def load_vae_and_image_encoder(svd: str, cfg: dict, device="cpu", dtype=torch.float32):
    """SVD's VAE (AutoencoderKLTemporalDecoder) and CLIP image encoder (CLIPVisionModelWithProjection) from a
    diffusers folder (fp16 variant or plain file names) or from a single svd_xt*.safetensors file."""
    from diffusers import AutoencoderKLTemporalDecoder
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    with torch.device("meta"):
        vae = AutoencoderKLTemporalDecoder(**{k: v for k, v in cfg["vae"].items() if not k.startswith("_")})
        clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**{k: v for k, v in cfg["image_encoder"].items()
                                                                 if not k.startswith("_")}))
    if os.path.isdir(svd):
        vae_path = _first(os.path.join(svd, "vae"), _SVD_FILES["vae"])
        clip_path = _first(os.path.join(svd, "image_encoder"), _SVD_FILES["image_encoder"])
        vae_state, clip_state = read_state_dict(vae_path), read_state_dict(clip_path)
    else:
        from .svd_single_file import clip_from_single_file, vae_from_single_file

        vae_path = clip_path = svd
        single = read_state_dict(svd)
        levels = len(cfg["vae"]["block_out_channels"])
        vae_state = vae_from_single_file(single, {k: tuple(v.shape) for k, v in vae.state_dict().items()}, levels)
        clip_state = clip_from_single_file(single, {k: tuple(v.shape) for k, v in clip.state_dict().items()})
        del single
    problems = []
    for module, state, path in ((vae, vae_state, vae_path), (clip, clip_state, clip_path)):
        try:
            strict_load(module, state, path)
        except _FileProblem as p:
            problems.append(p)
    if problems:
        raise _Several(problems)
    return _finish(vae, device, dtype), _finish(clip, device, dtype)


class _Several(Exception):
    def __init__(self, problems: list[_FileProblem]):
        self.problems = problems


def load_scheduler(cfg: dict):
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler.from_config({k: v for k, v in cfg.items() if not k.startswith("_")})


# ----------------------------------------------------------------------------------------------- everything

@dataclass
class SonicModels:
    unet: nn.Module
    vae: nn.Module
    image_encoder: nn.Module
    scheduler: object
    feature_extractor: object
    whisper: nn.Module             # WhisperEncoder, fp32
    audio2token: nn.Module         # fp32
    audio2bucket: nn.Module        # fp32
    rife: nn.Module | None         # IFNet, fp32 (None when not loaded)
    face_detector: object | None   # YoloFace (None when not loaded)
    configs: dict                  # unet / vae / image_encoder / scheduler config dicts used
    paths: dict                    # what was loaded from where
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32
    move: object = None            # move(module, device): who places modules (None: module.to; ComfyUI: its manager)


def resolve(roots: list[str] | str) -> SonicWeights:
    """Find every file (both layouts); one WeightsError listing each missing file and each found-but-bad one."""
    roots = [roots] if isinstance(roots, str) else list(roots)
    weights, missing = locate_weights(roots)
    bad = _sniff_all(weights)
    if missing or bad:
        msg = missing_message(roots, missing) if missing else "Sonic weights cannot be used:"
        if bad:
            msg += ("\nAlso unusable:" if missing else "") + "\n" + "\n".join(_lines(bad))
            if not missing:
                msg += "\nReplace the files listed (downloads: " + "; ".join(WHERE_TO_GET.values()) + ")."
        raise WeightsError(msg)
    return weights


def _source(name: str) -> str:
    return WHERE_TO_GET["whisper" if name == "whisper" else "svd" if name == "svd" else "sonic"]


def _sniff_all(weights: SonicWeights) -> list[_FileProblem]:
    """Sniff every found file; the problems of those that are bad."""
    problems = []
    for name, path in weights.paths.items():
        files = [path]
        if name == "whisper":
            files = [os.path.join(path, "config.json"), os.path.join(path, "preprocessor_config.json")]
            files += [p for p in (os.path.join(path, "model.safetensors"), os.path.join(path, "pytorch_model.bin"))
                      if os.path.isfile(p)][:1] or [os.path.join(path, "model.safetensors")]
        elif name == "svd" and os.path.isdir(path):
            files = [next((os.path.join(path, sub, n) for n in names if os.path.isfile(os.path.join(path, sub, n))),
                          os.path.join(path, sub, names[0])) for sub, names in _SVD_FILES.items()]
        for f in files:
            if not os.path.isfile(f):
                problems.append(_FileProblem(f, "is missing", f"download it from {_source(name)}"))
                continue
            try:
                if not f.endswith(".json"):
                    sniff(f)
            except _FileProblem as p:
                problems.append(p)
    return problems


def check_files(weights: SonicWeights) -> None:
    """Sniff every found file; raise one WeightsError listing all that are bad."""
    problems = _sniff_all(weights)
    if problems:
        _raise(problems)


def load_sonic(roots: list[str] | str | SonicWeights, *, device="cpu", dtype=torch.float32,
               config_dir: str | None = None, load_rife_model: bool = True,
               load_face_detector: bool = True) -> SonicModels:
    """Load every Sonic model. `dtype` applies to the UNet, VAE and CLIP (the official weight_dtype); whisper,
    audio2token, audio2bucket and RIFE stay fp32 as in the official code. Raises one WeightsError for any
    missing/corrupt/mismatched file (all bad files listed when they can be found before loading)."""
    if isinstance(roots, SonicWeights):
        weights = roots
        check_files(weights)
    else:
        weights = resolve(roots)
    p = weights.paths
    device = torch.device(device)
    problems: list[_FileProblem] = []

    def attempt(fn, *a, **kw):
        try:
            return fn(*a, **kw)
        except _FileProblem as e:
            problems.append(e)
        except _Several as e:
            problems.extend(e.problems)
        return None

    cfg = attempt(_svd_configs, p["svd"], config_dir) or {}
    if problems:
        _raise(problems)
    a2t = attempt(load_audio2token, p["audio2token"], device)
    a2b = attempt(load_audio2bucket, p["audio2bucket"], device)
    wh = attempt(load_whisper, p["whisper"], device)
    rife = attempt(load_rife, p["rife"], device) if load_rife_model else None
    det = attempt(load_yoloface, p["yoloface"], device) if load_face_detector else None
    ve = attempt(load_vae_and_image_encoder, p["svd"], cfg, device, dtype)
    unet = attempt(load_unet, p["unet"], cfg["unet"], device, dtype)
    if problems:
        _raise(problems)
    return SonicModels(unet=unet, vae=ve[0], image_encoder=ve[1], scheduler=load_scheduler(cfg["scheduler"]),
                       feature_extractor=wh[0], whisper=wh[1], audio2token=a2t, audio2bucket=a2b, rife=rife,
                       face_detector=det, configs=cfg, paths=dict(p), device=device, dtype=dtype)

