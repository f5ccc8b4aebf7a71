"""Golden reference data from the OFFICIAL Sonic implementation (jixiaozhong/Sonic).

Run with the official implementation's own virtual environment (torch 2.14.1 CPU, diffusers 0.29.0,
transformers 4.43.2, huggingface_hub 0.23.4), with a checkout of the official repository OUTSIDE this project:

    /tmp/official-venv/bin/python devtools/official_reference.py \
        --official /tmp/sonic-official --checkpoints /tmp/sonic_tiny --out tests/data/sonic_golden

Nothing of the official code is copied here: this driver imports it, runs `Sonic(device_id=-1).process(...)`
exactly as the official code does it, and records intermediate tensors through forward hooks, thin wrappers
around official callables (they call the original and keep its inputs/outputs) and the pipeline's own
`callback_on_step_end` hook. A few stand-alone calls of official modules (one UNet forward on a small input,
`Sonic.preprocess` for the crop box) are made after the run. See tests/data/sonic_golden/README.md.

This file imports nothing from the project and is not collected by pytest.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import wave

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--official", required=True, help="checkout of jixiaozhong/Sonic (outside the project)")
    ap.add_argument("--checkpoints", required=True, help="official-layout checkpoints folder (tiny, random weights)")
    ap.add_argument("--out", required=True, help="output folder (tests/data/sonic_golden)")
    ap.add_argument("--image", default=os.path.join(ROOT, "sample_media", "portrait.png"))
    ap.add_argument("--audio", default=os.path.join(ROOT, "sample_media", "speech.wav"))
    ap.add_argument("--input-size", type=int, default=128, help="the portrait is first downscaled to this square size")
    ap.add_argument("--min-resolution", type=int, default=64, help="official process(min_resolution=...)")
    ap.add_argument("--seconds", type=float, default=2.4, help="leading seconds of the audio used")
    ap.add_argument("--steps", type=int, default=2, help="official process(inference_steps=...)")
    ap.add_argument("--seed", type=int, default=42, help="official process(seed=...) (must be non-zero: `if seed:`)")
    ap.add_argument("--dynamic-scale", type=float, default=1.0)
    ap.add_argument("--expand-ratio", type=float, default=0.5, help="only for the recorded Sonic.preprocess crop box")
    ap.add_argument("--threads", type=int, default=2)
    return ap.parse_args()


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def make_inputs(args, out):
    """Writes the exact inputs the official code reads: a downscaled PNG and a 16 kHz mono int16 WAV."""
    from PIL import Image

    img = Image.open(args.image).convert("RGB")
    small = img.resize((args.input_size, args.input_size), Image.LANCZOS)
    img_path = os.path.join(out, "input_image.png")
    small.save(img_path)

    with wave.open(args.audio, "rb") as w:
        sr, ch, sw = w.getframerate(), w.getnchannels(), w.getsampwidth()
        assert (sr, ch, sw) == (16000, 1, 2), (sr, ch, sw)
        n = int(round(args.seconds * sr))
        data = w.readframes(n)
    wav_path = os.path.join(out, "input_audio.wav")
    with wave.open(wav_path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(data)
    return img_path, wav_path, n


class Recorder:
    def __init__(self):
        self.files: dict[str, dict] = {}
        self.manifest: dict[str, dict] = {}

    def put(self, file, key, tensor, what, producer):
        import torch

        t = tensor.detach().cpu() if isinstance(tensor, torch.Tensor) else torch.as_tensor(np.asarray(tensor))
        if t.dtype == torch.float64:
            t = t.float()
        t = t.contiguous().clone()
        self.files.setdefault(file, {})[key] = t
        self.manifest[f"{file}:{key}"] = {
            "file": file,
            "key": key,
            "shape": list(t.shape),
            "dtype": str(t.dtype).replace("torch.", ""),
            "what": what,
            "producer": producer,
        }

    def save(self, out):
        from safetensors.torch import save_file

        for file, tensors in self.files.items():
            save_file(tensors, os.path.join(out, file))


def check_loads(S, ckpt):
    """from_pretrained (diffusers without accelerate, transformers) is NOT strict: missing keys are only warned
    about and left randomly initialised. Compare every loaded tensor with the file to be sure nothing was."""
    import torch
    from safetensors.torch import load_file

    svd = os.path.join(ckpt, "stable-video-diffusion-img2vid-xt")
    checks = {
        "vae": (S.pipe.vae, os.path.join(svd, "vae", "diffusion_pytorch_model.fp16.safetensors"), ""),
        "image_encoder": (S.image_encoder, os.path.join(svd, "image_encoder", "model.fp16.safetensors"), ""),
        "whisper": (S.whisper, os.path.join(ckpt, "whisper-tiny", "model.safetensors"), "model."),
    }
    res = {}
    for name, (mod, path, prefix) in checks.items():
        sd = {k[len(prefix):] if prefix and k.startswith(prefix) else k: v for k, v in load_file(path).items()}
        msd = mod.state_dict()
        missing = sorted(set(msd) - set(sd))
        unexpected = sorted(set(sd) - set(msd))
        bad = [k for k in msd if k in sd and not torch.equal(msd[k].float(), sd[k].float())]
        res[name] = {"file": os.path.relpath(path, ckpt), "file_dtypes": sorted({str(v.dtype) for v in sd.values()}),
                     "n_module": len(msd), "n_file": len(sd), "missing_in_file": missing[:20],
                     "unexpected_in_file": unexpected[:20], "value_mismatch": bad[:20]}
        assert not missing and not bad, (name, res[name])
    for name, mod, fn in (("unet", S.pipe.unet, "Sonic/unet.pth"), ("audio2token", S.audio2token, "Sonic/audio2token.pth"),
                          ("audio2bucket", S.audio2bucket, "Sonic/audio2bucket.pth")):
        sd = torch.load(os.path.join(ckpt, fn), map_location="cpu", weights_only=True)
        msd = mod.state_dict()
        res[name] = {"file": fn, "n_tensors": len(sd), "strict_load_in_official": True,
                     "n_params": int(sum(v.numel() for v in sd.values())),
                     "all_equal": all(torch.equal(msd[k], sd[k]) for k in sd)}
    rife_sd = torch.load(os.path.join(ckpt, "RIFE", "flownet.pkl"), map_location="cpu", weights_only=True)
    res["rife"] = {"n_tensors": len(rife_sd), "all_keys_module_prefixed": all(k.startswith("module.") for k in rife_sd),
                   "strict_load_in_official": True}
    return res


def main():
    args = parse_args()
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    official = os.path.abspath(args.official)
    ckpt = os.path.abspath(args.checkpoints)
    t_start = time.time()

    img_path, wav_path, n_samples = make_inputs(args, out)

    # The official Sonic.__init__ reads checkpoints/ next to sonic.py (whisper-tiny, yoloface, RIFE are
    # hard-coded relative to it), so point <official>/checkpoints at the given folder.
    link = os.path.join(official, "checkpoints")
    if os.path.islink(link):
        os.unlink(link)
    elif os.path.exists(link):
        raise SystemExit(f"{link} exists and is not a symlink; remove it or pass that folder as --checkpoints")
    os.symlink(ckpt, link)

    import torch

    torch.set_num_threads(args.threads)
    sys.path.insert(0, official)
    import sonic as off_sonic  # noqa: E402  (official module)
    import src.pipelines.pipeline_sonic as off_pipe_mod  # noqa: E402
    from src.pipelines.pipeline_sonic import SonicPipeline  # noqa: E402

    R = Recorder()
    log: dict = {"windows": [], "unet_calls": [], "randn": [], "vae_encode": [], "rife_pairs": 0}

    # fp32 everywhere (the yaml default is fp16 for GPU); everything else from config/inference/sonic.yaml.
    off_sonic.Sonic.config.weight_dtype = "fp32"

    # ---- wrappers installed BEFORE construction / run (each calls the original unchanged) ----
    orig_randn_tensor = off_pipe_mod.randn_tensor

    def rec_randn_tensor(shape, *a, **k):
        r = orig_randn_tensor(shape, *a, **k)
        log["randn"].append({"shape": list(r.shape), "dtype": str(r.dtype), "generator": repr(k.get("generator"))})
        R.put("sampling.safetensors", f"randn_{len(log['randn']) - 1}", r,
              f"call {len(log['randn']) - 1} of diffusers randn_tensor inside SonicPipeline.__call__ (global torch RNG, generator=None)",
              "src/pipelines/pipeline_sonic.py: randn_tensor (wrapped)")
        return r

    off_pipe_mod.randn_tensor = rec_randn_tensor

    orig_iat = off_sonic.image_audio_to_tensor
    test_data_holder = {}

    def rec_iat(*a, **k):
        d = orig_iat(*a, **k)
        test_data_holder.update(d)
        log["image_audio_to_tensor_kwargs"] = {kk: vv for kk, vv in k.items() if isinstance(vv, (int, float, str))}
        return d

    off_sonic.image_audio_to_tensor = rec_iat

    orig_test = off_sonic.test
    video_holder = {}

    def rec_test(*a, **k):
        v = orig_test(*a, **k)
        video_holder["video"] = v
        return v

    off_sonic.test = rec_test

    saved = {}
    orig_svg = off_sonic.save_videos_grid

    def rec_svg(videos, path, **k):
        saved["video"] = videos.clone()
        saved["fps"] = k.get("fps")
        saved["path"] = path
        return orig_svg(videos, path, **k)

    off_sonic.save_videos_grid = rec_svg

    # pipeline: add a callback_on_step_end to read the window loop's locals (official hook point)
    orig_call = SonicPipeline.__call__
    cb_keys = ["idx_list", "index_start", "batch", "latents", "noise_pred", "added_time_ids", "latents_all",
               "motion_bucket", "latent_model_input"]

    def on_window(pipe, i, t, kw):
        w = {
            "step": int(i),
            "window": int(kw["batch"]),
            "t": float(t),
            "index_start_after_shift": int(kw["index_start"]),
            "frames": [int(x) % kw["latents_all"].shape[1] for x in kw["idx_list"]],
            "added_time_ids_row": [float(x) for x in kw["added_time_ids"][0]],
        }
        log["windows"].append(w)
        tag = f"s{i}_w{int(kw['batch'])}"
        R.put("sampling.safetensors", f"guided_eps_{tag}", kw["noise_pred"],
              f"guided model output u + g1*(a-u) + g2*(c-a) for step {i}, window {int(kw['batch'])} (1,25,4,h,w)",
              "SonicPipeline.__call__ (callback_on_step_end locals: noise_pred)")
        R.put("sampling.safetensors", f"window_latents_after_step_{tag}", kw["latents"],
              f"scheduler.step(...).prev_sample for step {i}, window {int(kw['batch'])}, before averaging (1,25,4,h,w)",
              "SonicPipeline.__call__ (callback_on_step_end locals: latents)")
        if kw["batch"] == 0:
            R.put("sampling.safetensors", f"latents_all_before_step_{i}", kw["latents_all"],
                  f"all-frame latents entering denoising step {i} (step 0: initial latents = add_noise(ref_latents, noise, t0))",
                  "SonicPipeline.__call__ (callback_on_step_end locals: latents_all)")
        return {}

    def rec_call(self, *a, **k):
        k["callback_on_step_end"] = on_window
        k["callback_on_step_end_tensor_inputs"] = cb_keys
        log["pipeline_kwargs"] = {kk: (vv if isinstance(vv, (int, float, str, bool)) or vv is None else repr(type(vv)))
                                  for kk, vv in k.items() if kk not in ("callback_on_step_end", "callback_on_step_end_tensor_inputs")}
        return orig_call(self, *a, **k)

    SonicPipeline.__call__ = rec_call

    # ---- build the official model (strict loads happen inside) ----
    t0 = time.time()
    S = off_sonic.Sonic(device_id=-1, enable_interpolate_frame=True)
    log["load_s"] = round(time.time() - t0, 2)
    pipe = S.pipe
    log["load_check"] = check_loads(S, ckpt)

    # hooks on module instances
    whisper_calls = []
    S.whisper.encoder.register_forward_hook(
        lambda m, a, k, o: whisper_calls.append((a[0] if a else k.get("input_features"), dict(k), o)), with_kwargs=True)
    a2t_calls = []
    S.audio2token.register_forward_hook(lambda m, a, o: a2t_calls.append((a[0].clone(), o.clone())))
    a2b_calls = []
    S.audio2bucket.register_forward_hook(lambda m, a, o: a2b_calls.append((a[0].clone(), a[1].clone(), o.clone())))
    clip_calls = []
    S.image_encoder.register_forward_hook(
        lambda m, a, k, o: clip_calls.append(((a[0] if a else k["pixel_values"]).clone(), o.image_embeds.clone())),
        with_kwargs=True)
    unet_calls = []

    def unet_hook(m, a, k, o):
        sample = a[0] if a else k["sample"]
        t = a[1] if len(a) > 1 else k["timestep"]
        ehs = k["encoder_hidden_states"]
        idx = len(unet_calls)
        out = o[0] if isinstance(o, tuple) else o.sample
        unet_calls.append(1)
        log["unet_calls"].append({
            "call": idx, "sample_shape": list(sample.shape), "t": float(t),
            "clip_ctx_shape": list(ehs[0].shape), "audio_ctx_shape_in": pre_shapes[-1],
            "audio_ctx_shape_after_forward": list(ehs[1][0].shape),
            "added_time_ids": k["added_time_ids"].tolist(),
            "mask_shape": list(k["cross_attention_kwargs"]["ip_adapter_masks"][0].shape),
            "audio_ctx_sum": float(ehs[1][0].double().sum()), "clip_ctx_sum": float(ehs[0].double().sum()),
        })
        if idx == 0:
            R.put("unet.safetensors", "pipe_call0_sample", sample,
                  "UNet input of the first pipeline call (step 0, window 0): cat([scale_model_input(cat([lat]*3)), image_latents[idx]], dim=2)",
                  "UNetSpatioTemporalConditionModel.forward (forward hook)")
            R.put("unet.safetensors", "pipe_call0_timestep", torch.as_tensor(t).float().reshape(1),
                  "UNet timestep input of the first call (0.25*ln(sigma))", "forward hook")
            R.put("unet.safetensors", "pipe_call0_added_time_ids", k["added_time_ids"],
                  "added_time_ids (3,3) of the first call: [fps, mean bucket0, mean bucket1] per CFG row", "forward hook")
            e = clip_calls[0][1].repeat(25, 1)[:, None]
            log["pipe_call0_clip_ctx_is_zeros_emb_emb"] = bool(torch.equal(ehs[0], torch.cat([torch.zeros_like(e), e, e])))
            R.put("unet.safetensors", "pipe_call0_output", out,
                  "UNet output (3,25,4,h,w) of the first call, unguided (rows: uncond, drop-audio, cond)", "forward hook")

    pipe.unet.register_forward_hook(unet_hook, with_kwargs=True)
    pre_shapes = []
    # the IP-adapter processors unsqueeze the audio context in place inside the caller's list (3-d -> 4-d), so
    # the input shape is read before the forward
    pipe.unet.register_forward_pre_hook(
        lambda m, a, k: pre_shapes.append(list(k["encoder_hidden_states"][1][0].shape)), with_kwargs=True)

    orig_encode = pipe.vae.encode

    def rec_encode(x, *a, **k):
        r = orig_encode(x, *a, **k)
        n = len(log["vae_encode"])
        log["vae_encode"].append(list(x.shape))
        log.setdefault("vae_encode_input_equals_ref_img", []).append(bool(torch.equal(x[0], test_data_holder["ref_img"].to(x))) if "ref_img" in test_data_holder else None)
        R.put("sampling.safetensors", f"vae_encode{n}_mean", r.latent_dist.mean, f"latent_dist.mean of vae.encode call {n} (unscaled)", "AutoencoderKLTemporalDecoder.encode")
        R.put("sampling.safetensors", f"vae_encode{n}_mode", r.latent_dist.mode(), f"latent_dist.mode() of vae.encode call {n} (unscaled)", "AutoencoderKLTemporalDecoder.encode")
        return r

    pipe.vae.encode = rec_encode

    orig_set_timesteps = pipe.scheduler.set_timesteps

    def rec_set_timesteps(*a, **k):
        r = orig_set_timesteps(*a, **k)
        R.put("sampling.safetensors", "scheduler_sigmas", pipe.scheduler.sigmas, "EulerDiscreteScheduler.sigmas after set_timesteps(steps) (Karras, + final 0)", "EulerDiscreteScheduler.set_timesteps")
        R.put("sampling.safetensors", "scheduler_timesteps", pipe.scheduler.timesteps, "EulerDiscreteScheduler.timesteps (continuous: 0.25*ln(sigma))", "EulerDiscreteScheduler.set_timesteps")
        log["init_noise_sigma"] = float(pipe.scheduler.init_noise_sigma)
        return r

    pipe.scheduler.set_timesteps = rec_set_timesteps

    orig_add_noise = pipe.scheduler.add_noise

    def rec_add_noise(x0, noise, ts):
        r = orig_add_noise(x0, noise, ts)
        R.put("sampling.safetensors", "add_noise_original", x0, "ref_image_latents.unsqueeze(1) (1,1,4,h,w) = vae mean * 0.18215", "EulerDiscreteScheduler.add_noise input")
        R.put("sampling.safetensors", "add_noise_timestep", ts, "timestep passed to add_noise (timesteps[:1])", "EulerDiscreteScheduler.add_noise input")
        R.put("sampling.safetensors", "initial_latents", r, "initial latents (1,N,4,h,w) = x0 + sigma_max * noise", "EulerDiscreteScheduler.add_noise output")
        return r

    pipe.scheduler.add_noise = rec_add_noise

    orig_decode = pipe.decode_latents

    def rec_decode(latents, num_frames, decode_chunk_size=14):
        R.put("decode.safetensors", "final_latents", latents, "latents after the last denoising step (1,N,4,h,w), decode input", "SonicPipeline.decode_latents input")
        fr = orig_decode(latents, num_frames, decode_chunk_size)
        log["decode_chunk_size"] = decode_chunk_size
        c = decode_chunk_size
        last0 = ((num_frames - 1) // c) * c
        R.put("decode.safetensors", "vae_decoded_head", fr[:, :, :c], f"decoded frames 0..{c - 1} (first decode chunk) (1,3,{c},H,W) in [-1,1] (before *0.5+0.5)", "SonicPipeline.decode_latents output")
        R.put("decode.safetensors", "vae_decoded_tail", fr[:, :, last0:], f"decoded frames {last0}..{num_frames - 1} (last, partial decode chunk) in [-1,1]", "SonicPipeline.decode_latents output")
        log["vae_decoded_tail_first_frame"] = last0
        return fr

    pipe.decode_latents = rec_decode

    if getattr(S, "rife", None) is not None:
        orig_rife = S.rife.inference

        def rec_rife(I1, I2, scale=1.0):
            m = orig_rife(I1, I2, scale)
            if log["rife_pairs"] == 0:
                log["rife_pair0_inputs"] = "frames 0 and 1 of (vae_decoded_head*0.5+0.5).clamp(0,1)"
                R.put("decode.safetensors", "rife_pair0_middle", m, "RIFE middle frame for pair (0,1), before clamp(0,1)", "RIFEModel.inference output (merged[2])")
            if log["rife_pairs"] == 1:
                R.put("decode.safetensors", "rife_pair1_middle", m, "RIFE middle frame for pair (1,2), before clamp(0,1)", "RIFEModel.inference output")
            log["rife_pairs"] += 1
            return m

        S.rife.inference = rec_rife

    # ---- the recorded crop box (demo.py: preprocess(image, expand_ratio=0.5); crop is OFF in this run) ----
    det_calls = []
    orig_det = S.face_det.facedet.detect

    def rec_detect(img):
        r = orig_det(img)
        det_calls.append({"input_hw": list(img.shape[:2]), "bboxes_xywh": r[0].tolist(), "kps": r[1].tolist(), "scores": r[2].tolist()})
        return r

    S.face_det.facedet.detect = rec_detect
    face_info = S.preprocess(img_path, expand_ratio=args.expand_ratio)
    log["preprocess"] = {"expand_ratio": args.expand_ratio, "face_num": int(face_info["face_num"]),
                         "crop_bbox_x1y1x2y2": [int(v) for v in face_info["crop_bbox"]]}

    # ---- the official run ----
    run_dir = "/tmp/sonic_golden_run"
    os.makedirs(run_dir, exist_ok=True)
    t0 = time.time()
    rc = S.process(img_path, wav_path, os.path.join(run_dir, "out.mp4"), min_resolution=args.min_resolution,
                   inference_steps=args.steps, dynamic_scale=args.dynamic_scale, seed=args.seed)
    log["process_s"] = round(time.time() - t0, 2)
    log["process_rc"] = rc
    assert rc == 0, "official process() returned -1 (no face found)"
    log["face_detect_calls"] = det_calls

    # ---- record image / audio conditioning ----
    td = test_data_holder
    R.put("image.safetensors", "ref_img", td["ref_img"], "ref image (3,H,W) in [-1,1] = Normalize(0.5,0.5)(ToTensor(resized RGB))", "src/dataset/test_preprocess.py::image_audio_to_tensor")
    R.put("image.safetensors", "face_mask", td["face_mask"][:1], "face mask channel 0 (1,H,W) in [0,1] (after LANCZOS resize of the 0/255 box mask)", "image_audio_to_tensor")
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])[:, None, None]
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])[:, None, None]
    u8f = (td["clip_images"] * std + mean) * 255
    log["clip_u8_inversion_max_err"] = float((u8f - u8f.round()).abs().max())
    assert log["clip_u8_inversion_max_err"] < 1e-3
    R.put("image.safetensors", "clip_input_u8", u8f.round().clamp(0, 255).to(torch.uint8),
          "the 224x224 RGB image (3,224,224) uint8 given to CLIPImageProcessor() = resized image .resize((224,224), LANCZOS); "
          "pixel_values = (u8/255 - CLIP mean)/CLIP std (recovered exactly from the processor output)", "image_audio_to_tensor")
    R.put("image.safetensors", "clip_pixel_values_sum", td["clip_images"].double().sum(dim=(1, 2)).float(), "per-channel sum of the CLIP pixel_values (3,)", "image_audio_to_tensor")
    pix, emb = clip_calls[0]
    R.put("image.safetensors", "clip_image_embeds", emb, "image_encoder(clip_img).image_embeds (1,1024), as used by audio2bucket (sonic.py::test)", "CLIPVisionModelWithProjection (forward hook)")
    if len(clip_calls) > 1:
        log["clip_second_call_equal"] = bool(torch.equal(clip_calls[0][1], clip_calls[1][1]))

    mel = td["audio_feature"]  # (80, 3000*k)
    audio_len = int(td["audio_len"])
    n_frames = audio_len // int(off_sonic.Sonic.config.step)
    n_mel_keep = min(mel.shape[-1], ((n_samples // 160) + 64) // 32 * 32)
    tail = mel[:, n_mel_keep:]
    tail_const = float(tail[0, 0]) if tail.numel() else None
    log["mel"] = {"shape": list(mel.shape), "kept_columns": n_mel_keep,
                  "tail_is_constant": bool(tail.numel() == 0 or torch.all(tail == tail[0, 0]).item()),
                  "tail_value": tail_const}
    R.put("audio.safetensors", "mel_head", mel[:, :n_mel_keep],
          f"whisper log-mel input_features (80, first {n_mel_keep} of {mel.shape[-1]} columns); the remaining columns all equal mel_tail_value (see manifest extra)",
          "src/dataset/test_preprocess.py::get_audio_feature (WhisperFeatureExtractor, transformers 4.43.2)")

    # whisper: call 0 = output_hidden_states=True, call 1 = last_hidden_state
    hs = whisper_calls[0][2].hidden_states
    last = whisper_calls[1][2].last_hidden_state
    stacked = torch.stack(hs, dim=2)  # (1,1500,5,384)
    log["whisper"] = {"n_hidden_states": len(hs), "hidden_shape": list(hs[0].shape),
                      "last_equals_hidden_states_minus1": bool(torch.equal(last, hs[-1])),
                      "max_abs_last_minus_hs_minus1": float((last - hs[-1]).abs().max())}
    used = 2 * audio_len
    R.put("audio.safetensors", "whisper_hidden_used", stacked[:, :used],
          f"torch.stack(encoder(mel, output_hidden_states=True).hidden_states, 2)[:, :2*audio_len] (1,{used},5,384): the tokens audio_prompts is built from",
          "transformers WhisperEncoder (called by sonic.py::test)")
    stride_idx = torch.arange(used, stacked.shape[1], 100)
    R.put("audio.safetensors", "whisper_hidden_strided_tail_index", stride_idx, "token indices of whisper_hidden_strided_tail", "driver")
    R.put("audio.safetensors", "whisper_hidden_strided_tail", stacked[:, stride_idx],
          "the same stacked hidden states at tokens 2*audio_len, +100, ... (beyond the used range, for a whole-sequence check)", "WhisperEncoder")

    # audio2token (cond/uncond alternate per frame) and audio2bucket
    assert len(a2t_calls) == 2 * n_frames and len(a2b_calls) == n_frames, (len(a2t_calls), len(a2b_calls), n_frames)
    sel = [0, 1, n_frames - 1]
    R.put("audio.safetensors", "a2t_frames", torch.tensor(sel), "frame indices of a2t_cond (also the stand-alone UNet audio context)", "driver")
    # inputs are not stored (size): audio_clip(f) = pad(whisper_hidden_used, 4 before, 6 after)[:, 4f:4f+10];
    # bucket_clip(f) = pad(whisper_hidden_used[:, :, 4:5], 24 before, 26 after)[:, 4f:4f+50]. Verified here:
    hu = stacked[:, :used]
    ap_ = torch.cat([torch.zeros_like(hu[:, :4]), hu, torch.zeros_like(hu[:, :6])], 1)
    lp_ = torch.cat([torch.zeros_like(hu[:, :24, 4:5]), hu[:, :, 4:5], torch.zeros_like(hu[:, :26, 4:5])], 1)
    log["a2t_input_derivation_exact"] = all(torch.equal(a2t_calls[2 * f][0][0], ap_[:, 4 * f:4 * f + 10]) for f in range(n_frames))
    log["a2b_input_derivation_exact"] = all(torch.equal(a2b_calls[f][0][0], lp_[:, 4 * f:4 * f + 50]) for f in range(n_frames))
    log["audio_prompts_shape"] = list(ap_.shape)
    log["last_audio_prompts_shape"] = list(lp_.shape)
    R.put("audio.safetensors", "audio_prompts_slice", ap_[:, :14, :, :8],
          "audio_prompts[:, 0:14, :, 0:8] (4 zero tokens, then whisper tokens 0..9); audio_prompts = cat([0]*4, whisper_hidden_used, [0]*6) on dim 1 "
          "(built here; equal, frame by frame, to the audio2token inputs recorded by hook)", "sonic.py::test (re-derived, verified)")
    R.put("audio.safetensors", "last_audio_prompts_slice", lp_[:, 20:34, :, :8],
          "last_audio_prompts[:, 20:34, :, 0:8] (zeros 20..23, then last-layer tokens 0..9); last_audio_prompts = cat([0]*24, hidden_states[-1] tokens, [0]*26) "
          "(built here; equal to the audio2bucket inputs recorded by hook)", "sonic.py::test (re-derived, verified)")
    log["a2t_uncond_input_all_zero"] = all(not a2t_calls[2 * f + 1][0].any() for f in range(n_frames))
    R.put("audio.safetensors", "a2t_cond", torch.cat([a2t_calls[2 * f][1] for f in sel], 1),
          "audio2token(audio_clip) (1,3,32,1024) for frames a2t_frames; audio_clip(f) = cat([0]*4, whisper_hidden_used, [0]*6)[:, 4f:4f+10].unsqueeze(0)", "AudioProjModel (forward hook)")
    R.put("audio.safetensors", "a2t_uncond", a2t_calls[1][1], "audio2token(zeros_like(audio_clip)) (1,1,32,1024) (identical for every frame)", "AudioProjModel (forward hook)")
    log["a2t_uncond_identical_all_frames"] = all(torch.equal(a2t_calls[1][1], a2t_calls[2 * f + 1][1]) for f in range(n_frames))
    cond_all = torch.cat([a2t_calls[2 * f][1] for f in range(n_frames)], 1)[0]  # (N,32,1024)
    R.put("audio.safetensors", "a2t_cond_all_sum", cond_all.double().sum(dim=(1, 2)).float(), "per-frame sum of audio2token cond tokens (N,)", "AudioProjModel")
    R.put("audio.safetensors", "a2t_cond_all_slice", cond_all[:, :, :16], "audio2token cond tokens, every frame, first 16 channels (N,32,16)", "AudioProjModel")
    R.put("audio.safetensors", "a2b_clip_input", a2b_calls[0][1], "audio2bucket clip input = image_embeds (1,1024)", "Audio2bucketModel (forward hook)")
    R.put("audio.safetensors", "a2b_raw", torch.cat([c[2] for c in a2b_calls], 1),
          "audio2bucket raw output for every frame (1,N,2,1) (before *16+16)", "Audio2bucketModel (forward hook)")
    R.put("audio.safetensors", "motion_buckets", torch.cat([c[2] for c in a2b_calls], 1) * 16 + 16,
          "motion buckets (1,N,2,1) = raw*16+16 (sonic.py::test); the pipeline multiplies by dynamic_scale", "sonic.py::test")

    # ---- stand-alone UNet forward on a small input (B=1, F=3) ----
    unet = pipe.unet
    sel3 = sel
    g = torch.Generator().manual_seed(1234)
    h8, w8 = td["ref_img"].shape[-2] // 8, td["ref_img"].shape[-1] // 8
    sample = torch.randn(1, 3, 8, h8, w8, generator=g)
    sig = pipe.scheduler.sigmas
    t_in = pipe.scheduler.timesteps[0].reshape(1)
    clip_ctx = emb.repeat(3, 1).unsqueeze(1)  # (3,1,1024)
    audio_ctx = cond_all[sel3]  # (3,32,1024)
    mb = (torch.cat([c[2] for c in a2b_calls], 1)[0, sel3] * 16 + 16).mean(0).squeeze() * args.dynamic_scale
    ati = torch.tensor([[float(off_sonic.Sonic.config.fps), float(mb[0]), float(mb[1])]])
    mask = td["face_mask"][:1].unsqueeze(0)  # (1,1,H,W)
    with torch.no_grad():
        o = unet(sample, t_in, encoder_hidden_states=(clip_ctx, [audio_ctx]),
                 cross_attention_kwargs={"ip_adapter_masks": [mask]}, added_time_ids=ati, return_dict=False)[0]
    R.put("unet.safetensors", "solo_sample", sample, "stand-alone UNet input sample (1,3,8,h,w): torch.randn(generator=manual_seed(1234)). Call: unet(solo_sample, solo_timestep, encoder_hidden_states=(solo_clip_ctx, [audio.safetensors:a2t_cond[0]]), cross_attention_kwargs={'ip_adapter_masks': [image.safetensors:face_mask[None]]}, added_time_ids=solo_added_time_ids)", "driver")
    R.put("unet.safetensors", "solo_timestep", t_in, "its timestep = scheduler.timesteps[0]", "driver")
    R.put("unet.safetensors", "solo_clip_ctx", clip_ctx, "clip context (3,1,1024) = clip_image_embeds repeated", "driver")
    assert torch.equal(audio_ctx, R.files["audio.safetensors"]["a2t_cond"][0])
    R.put("unet.safetensors", "solo_added_time_ids", ati, "added_time_ids (1,3) = [12.5, mean bucket0, mean bucket1] over those frames", "driver")
    R.put("unet.safetensors", "solo_output", o, "UNet output (1,3,4,h,w), official UNetSpatioTemporalConditionModel with audio adapters", "UNetSpatioTemporalConditionModel.forward")

    # ---- the 25-step schedule of the same scheduler config (official default steps) ----
    from diffusers.schedulers import EulerDiscreteScheduler
    sch = EulerDiscreteScheduler.from_pretrained(os.path.join(ckpt, "stable-video-diffusion-img2vid-xt"), subfolder="scheduler")
    sch.set_timesteps(25)
    R.put("sampling.safetensors", "scheduler_sigmas_25", sch.sigmas, "sigmas for 25 steps (official default), same scheduler config", "EulerDiscreteScheduler.set_timesteps(25)")
    R.put("sampling.safetensors", "scheduler_timesteps_25", sch.timesteps, "timesteps for 25 steps", "EulerDiscreteScheduler.set_timesteps(25)")

    # ---- outputs ----
    video = video_holder["video"]  # (1,3,N,H,W) in [0,1]
    fin = saved["video"]  # (1,3,2N-1,H,W)
    u8 = (fin[0].permute(1, 2, 3, 0) * 255).numpy().astype(np.uint8)  # what save_videos_grid writes (truncation)
    R.put("decode.safetensors", "final_frames_u8", torch.from_numpy(u8),
          "every output frame (2N-1,H,W,3) uint8 as save_videos_grid converts it: (x*255).astype(uint8) (truncation, no rounding)", "sonic.py::process -> save_videos_grid")
    log["final"] = {"n_generated_frames": int(video.shape[2]), "n_output_frames": int(fin.shape[2]), "fps": saved["fps"],
                    "height": int(fin.shape[-2]), "width": int(fin.shape[-1])}

    # ---- RNG reproduction check: the noise must equal manual_seed(seed) then two plain torch.randn calls ----
    torch.manual_seed(args.seed)
    r0 = torch.randn(*log["randn"][0]["shape"])
    r1 = torch.randn(*log["randn"][1]["shape"])
    log["rng_check"] = {
        "randn0_equals_manual_seed_then_randn": bool(torch.equal(r0, R.files["sampling.safetensors"]["randn_0"])),
        "randn1_equals_second_randn": bool(torch.equal(r1, R.files["sampling.safetensors"]["randn_1"])),
    }

    R.save(out)

    # ---- manifest ----
    import diffusers
    import transformers
    import huggingface_hub
    import librosa
    import PIL

    def git_head(path):
        try:
            import subprocess
            return subprocess.check_output(["git", "-C", path, "rev-parse", "HEAD"], text=True, stderr=subprocess.DEVNULL).strip()
        except Exception:
            return None

    ckpt_files = {}
    for dp, _, fns in os.walk(ckpt, followlinks=True):
        for fn in sorted(fns):
            p = os.path.join(dp, fn)
            ckpt_files[os.path.relpath(p, ckpt)] = {"bytes": os.path.getsize(p), "sha256": sha256(p)}
    def git_log1(path, *paths):
        try:
            import subprocess
            return subprocess.check_output(["git", "-C", path, "log", "-1", "--format=%H %s", "--", *paths], text=True,
                                           stderr=subprocess.DEVNULL).strip()
        except Exception:
            return None

    official_commit = git_head(official)

    manifest = {
        "about": "Golden reference tensors from the official Sonic implementation (jixiaozhong/Sonic), CPU fp32, tiny random weights. See README.md.",
        "official_commit": official_commit,
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__, "huggingface_hub": huggingface_hub.__version__,
                     "librosa": librosa.__version__, "numpy": np.__version__, "pillow": PIL.__version__},
        "settings": {
            "input_image": "input_image.png", "input_image_source": "sample_media/portrait.png resized with PIL LANCZOS",
            "input_image_size": [args.input_size, args.input_size],
            "input_audio": "input_audio.wav", "input_audio_source": "sample_media/speech.wav, leading samples",
            "audio_samples": n_samples, "audio_seconds": n_samples / 16000,
            "min_resolution": args.min_resolution, "inference_steps": args.steps, "seed": args.seed,
            "dynamic_scale": args.dynamic_scale, "crop": False, "expand_ratio_for_preprocess_record": args.expand_ratio,
            "keep_resolution": False, "weight_dtype": "fp32", "device": "cpu", "enable_interpolate_frame": True,
            "torch_threads": args.threads,
            "sonic_yaml": {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in off_sonic.Sonic.config.items()},
        },
        "derived": {"audio_len_25fps": audio_len, "n_frames_12_5fps": n_frames,
                    "height": int(td["ref_img"].shape[-2]), "width": int(td["ref_img"].shape[-1]),
                    "latent_hw": [h8, w8]},
        "run": log,
        "checkpoints": {"path_used": ckpt, "files": ckpt_files,
                        "made_by": "devtools/make_tiny_checkpoints.py (project venv) with tests/data/sonic_tiny_config; see README.md",
                        "generator_last_commit": git_log1(ROOT, "devtools/make_tiny_checkpoints.py", "tests/data/sonic_tiny_config")},
        "command": " ".join([os.path.relpath(sys.executable, ROOT) if sys.executable.startswith(ROOT) else sys.executable]
                            + [os.path.relpath(sys.argv[0], ROOT) if os.path.isabs(sys.argv[0]) else sys.argv[0]] + sys.argv[1:]),
        "tensors": R.manifest,
        "elapsed_s": round(time.time() - t_start, 1),
    }
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    sizes = {fn: os.path.getsize(os.path.join(out, fn)) for fn in sorted(os.listdir(out))}
    print(json.dumps(sizes, indent=1))
    print("total bytes", sum(sizes.values()), "elapsed", round(time.time() - t_start, 1), "s")


if __name__ == "__main__":
    main()
