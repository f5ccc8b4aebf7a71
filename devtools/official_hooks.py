"""What devtools/official_reference.py records DURING the official Sonic run: thin wrappers around official
callables (each calls the original unchanged and keeps its inputs/outputs), forward hooks on the official modules,
and the pipeline's own `callback_on_step_end`. What they keep goes into a Capture; the records made from it after
the run are in official_records.py.

The official modules are passed in, never imported here: they are importable only once the driver has put the
official checkout on sys.path. Imports nothing from the project.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from safetensors.torch import save_file

# the window loop's locals the pipeline hands to callback_on_step_end (its official hook point)
STEP_END_KEYS = ["idx_list", "index_start", "batch", "latents", "noise_pred", "added_time_ids", "latents_all",
                 "motion_bucket", "latent_model_input"]


class Recorder:
    """Tensors by file and key, and each one's manifest entry (shape, dtype, what it is, which code produced it)."""

    def __init__(self):
        self.files: dict[str, dict] = {}
        self.manifest: dict[str, dict] = {}

    def put(self, file, key, tensor, what, producer):
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
        for file, tensors in self.files.items():
            save_file(tensors, os.path.join(out, file))


class Capture:
    """Everything kept during the run: the recorded tensors, the log of non-tensor facts (the manifest's "run"), and
    the raw calls that the post-run records are computed from."""

    def __init__(self):
        self.rec = Recorder()
        self.log: dict = {"windows": [], "unet_calls": [], "randn": [], "vae_encode": [], "rife_pairs": 0}
        self.test_data: dict = {}  # image_audio_to_tensor's result: ref_img, face_mask, clip_images, audio_feature...
        self.generated = None  # test()'s frames (1,3,N,H,W) in [0,1]
        self.saved: dict = {}  # what process() hands to save_videos_grid: video (1,3,2N-1,H,W) and fps
        self.whisper_outputs: list = []  # sonic.py::test: all hidden states, then last_hidden_state
        self.a2t_calls: list = []  # (input, output); cond and uncond alternate per frame
        self.a2b_calls: list = []  # (audio input, clip input, output), one per frame
        self.clip_embeds: list = []  # image_embeds: sonic.py::test, then the pipeline
        self.unet_audio_ctx_shapes: list = []  # the audio context's shape as each UNet call receives it
        self.face_detect_calls: list = []


def wrap_official_functions(cap: Capture, sonic_mod, pipeline_mod) -> None:
    """Installed before Sonic is built: module-level names that the official code looks up at call time."""
    R, log = cap.rec, cap.log

    orig_randn_tensor = pipeline_mod.randn_tensor

    def rec_randn_tensor(shape, *a, **k):
        r = orig_randn_tensor(shape, *a, **k)
        log["randn"].append({"shape": list(r.shape), "dtype": str(r.dtype), "generator": repr(k.get("generator"))})
        n = len(log["randn"]) - 1
        R.put("sampling.safetensors", f"randn_{n}", r,
              f"call {n} of diffusers randn_tensor inside SonicPipeline.__call__ (global torch RNG, generator=None)",
              "src/pipelines/pipeline_sonic.py: randn_tensor (wrapped)")
        return r

    pipeline_mod.randn_tensor = rec_randn_tensor

    orig_iat = sonic_mod.image_audio_to_tensor

    def rec_iat(*a, **k):
        d = orig_iat(*a, **k)
        cap.test_data.update(d)
        log["image_audio_to_tensor_kwargs"] = {kk: vv for kk, vv in k.items() if isinstance(vv, (int, float, str))}
        return d

    sonic_mod.image_audio_to_tensor = rec_iat

    orig_test = sonic_mod.test

    def rec_test(*a, **k):
        cap.generated = orig_test(*a, **k)
        return cap.generated

    sonic_mod.test = rec_test

    orig_svg = sonic_mod.save_videos_grid

    def rec_svg(videos, path, **k):
        cap.saved.update(video=videos.clone(), fps=k.get("fps"))
        return orig_svg(videos, path, **k)

    sonic_mod.save_videos_grid = rec_svg

    def on_window(pipe, i, t, kw):
        window = int(kw["batch"])
        log["windows"].append({
            "step": int(i),
            "window": window,
            "t": float(t),
            "index_start_after_shift": int(kw["index_start"]),
            "frames": [int(x) % kw["latents_all"].shape[1] for x in kw["idx_list"]],
            "added_time_ids_row": [float(x) for x in kw["added_time_ids"][0]],
        })
        tag = f"s{i}_w{window}"
        R.put("sampling.safetensors", f"guided_eps_{tag}", kw["noise_pred"],
              f"guided model output u + g1*(a-u) + g2*(c-a) for step {i}, window {window} (1,25,4,h,w)",
              "SonicPipeline.__call__ (callback_on_step_end locals: noise_pred)")
        R.put("sampling.safetensors", f"window_latents_after_step_{tag}", kw["latents"],
              f"scheduler.step(...).prev_sample for step {i}, window {window}, before averaging (1,25,4,h,w)",
              "SonicPipeline.__call__ (callback_on_step_end locals: latents)")
        if window == 0:
            R.put("sampling.safetensors", f"latents_all_before_step_{i}", kw["latents_all"],
                  f"all-frame latents entering denoising step {i} "
                  "(step 0: initial latents = add_noise(ref_latents, noise, t0))",
                  "SonicPipeline.__call__ (callback_on_step_end locals: latents_all)")
        return {}

    pipeline_cls = pipeline_mod.SonicPipeline
    orig_call = pipeline_cls.__call__

    def rec_call(self, *a, **k):
        log["pipeline_kwargs"] = {kk: (vv if isinstance(vv, (int, float, str, bool)) or vv is None else repr(type(vv)))
                                  for kk, vv in k.items()}
        k["callback_on_step_end"] = on_window
        k["callback_on_step_end_tensor_inputs"] = STEP_END_KEYS
        return orig_call(self, *a, **k)

    pipeline_cls.__call__ = rec_call


def hook_model(cap: Capture, S) -> None:
    """Installed on the built Sonic instance: forward hooks on its modules and wrappers around its pipeline's VAE,
    scheduler, decoder, RIFE and face detector."""
    R, log = cap.rec, cap.log
    S.whisper.encoder.register_forward_hook(lambda m, a, o: cap.whisper_outputs.append(o))
    S.audio2token.register_forward_hook(lambda m, a, o: cap.a2t_calls.append((a[0].clone(), o.clone())))
    S.audio2bucket.register_forward_hook(
        lambda m, a, o: cap.a2b_calls.append((a[0].clone(), a[1].clone(), o.clone())))
    S.image_encoder.register_forward_hook(lambda m, a, o: cap.clip_embeds.append(o.image_embeds.clone()))
    pipe = S.pipe

    def unet_hook(m, a, k, o):
        sample = a[0] if a else k["sample"]
        t = a[1] if len(a) > 1 else k["timestep"]
        ehs = k["encoder_hidden_states"]
        idx = len(log["unet_calls"])
        log["unet_calls"].append({
            "call": idx, "sample_shape": list(sample.shape), "t": float(t),
            "clip_ctx_shape": list(ehs[0].shape), "audio_ctx_shape_in": cap.unet_audio_ctx_shapes[-1],
            "audio_ctx_shape_after_forward": list(ehs[1][0].shape),
            "added_time_ids": k["added_time_ids"].tolist(),
            "mask_shape": list(k["cross_attention_kwargs"]["ip_adapter_masks"][0].shape),
            "audio_ctx_sum": float(ehs[1][0].double().sum()), "clip_ctx_sum": float(ehs[0].double().sum()),
        })
        if idx == 0:
            R.put("unet.safetensors", "pipe_call0_sample", sample,
                  "UNet input of the first pipeline call (step 0, window 0): "
                  "cat([scale_model_input(cat([lat]*3)), image_latents[idx]], dim=2)",
                  "UNetSpatioTemporalConditionModel.forward (forward hook)")
            R.put("unet.safetensors", "pipe_call0_timestep", torch.as_tensor(t).float().reshape(1),
                  "UNet timestep input of the first call (0.25*ln(sigma))", "forward hook")
            R.put("unet.safetensors", "pipe_call0_added_time_ids", k["added_time_ids"],
                  "added_time_ids (3,3) of the first call: [fps, mean bucket0, mean bucket1] per CFG row",
                  "forward hook")
            e = cap.clip_embeds[0].repeat(25, 1)[:, None]
            log["pipe_call0_clip_ctx_is_zeros_emb_emb"] = bool(
                torch.equal(ehs[0], torch.cat([torch.zeros_like(e), e, e])))
            R.put("unet.safetensors", "pipe_call0_output", o[0] if isinstance(o, tuple) else o.sample,
                  "UNet output (3,25,4,h,w) of the first call, unguided (rows: uncond, drop-audio, cond)",
                  "forward hook")

    pipe.unet.register_forward_hook(unet_hook, with_kwargs=True)
    # the IP-adapter processors unsqueeze the audio context in place inside the caller's list (3-d -> 4-d), so
    # the shape it came in with is read before the forward
    pipe.unet.register_forward_pre_hook(
        lambda m, a, k: cap.unet_audio_ctx_shapes.append(list(k["encoder_hidden_states"][1][0].shape)),
        with_kwargs=True)

    orig_encode = pipe.vae.encode

    def rec_encode(x, *a, **k):
        r = orig_encode(x, *a, **k)
        n = len(log["vae_encode"])
        log["vae_encode"].append(list(x.shape))
        ref = cap.test_data.get("ref_img")
        log.setdefault("vae_encode_input_equals_ref_img", []).append(
            bool(torch.equal(x[0], ref.to(x))) if ref is not None else None)
        R.put("sampling.safetensors", f"vae_encode{n}_mean", r.latent_dist.mean,
              f"latent_dist.mean of vae.encode call {n} (unscaled)", "AutoencoderKLTemporalDecoder.encode")
        R.put("sampling.safetensors", f"vae_encode{n}_mode", r.latent_dist.mode(),
              f"latent_dist.mode() of vae.encode call {n} (unscaled)", "AutoencoderKLTemporalDecoder.encode")
        return r

    pipe.vae.encode = rec_encode

    orig_set_timesteps = pipe.scheduler.set_timesteps

    def rec_set_timesteps(*a, **k):
        r = orig_set_timesteps(*a, **k)
        R.put("sampling.safetensors", "scheduler_sigmas", pipe.scheduler.sigmas,
              "EulerDiscreteScheduler.sigmas after set_timesteps(steps) (Karras, + final 0)",
              "EulerDiscreteScheduler.set_timesteps")
        R.put("sampling.safetensors", "scheduler_timesteps", pipe.scheduler.timesteps,
              "EulerDiscreteScheduler.timesteps (continuous: 0.25*ln(sigma))", "EulerDiscreteScheduler.set_timesteps")
        log["init_noise_sigma"] = float(pipe.scheduler.init_noise_sigma)
        return r

    pipe.scheduler.set_timesteps = rec_set_timesteps

    orig_add_noise = pipe.scheduler.add_noise

    def rec_add_noise(x0, noise, ts):
        r = orig_add_noise(x0, noise, ts)
        R.put("sampling.safetensors", "add_noise_original", x0,
              "ref_image_latents.unsqueeze(1) (1,1,4,h,w) = vae mean * 0.18215",
              "EulerDiscreteScheduler.add_noise input")
        R.put("sampling.safetensors", "add_noise_timestep", ts, "timestep passed to add_noise (timesteps[:1])",
              "EulerDiscreteScheduler.add_noise input")
        R.put("sampling.safetensors", "initial_latents", r, "initial latents (1,N,4,h,w) = x0 + sigma_max * noise",
              "EulerDiscreteScheduler.add_noise output")
        return r

    pipe.scheduler.add_noise = rec_add_noise

    orig_decode = pipe.decode_latents

    def rec_decode(latents, num_frames, decode_chunk_size=14):
        R.put("decode.safetensors", "final_latents", latents,
              "latents after the last denoising step (1,N,4,h,w), decode input", "SonicPipeline.decode_latents input")
        fr = orig_decode(latents, num_frames, decode_chunk_size)
        log["decode_chunk_size"] = decode_chunk_size
        c = decode_chunk_size
        last0 = ((num_frames - 1) // c) * c
        R.put("decode.safetensors", "vae_decoded_head", fr[:, :, :c],
              f"decoded frames 0..{c - 1} (first decode chunk) (1,3,{c},H,W) in [-1,1] (before *0.5+0.5)",
              "SonicPipeline.decode_latents output")
        R.put("decode.safetensors", "vae_decoded_tail", fr[:, :, last0:],
              f"decoded frames {last0}..{num_frames - 1} (last, partial decode chunk) in [-1,1]",
              "SonicPipeline.decode_latents output")
        log["vae_decoded_tail_first_frame"] = last0
        return fr

    pipe.decode_latents = rec_decode

    if getattr(S, "rife", None) is not None:
        orig_rife = S.rife.inference

        def rec_rife(I1, I2, scale=1.0):
            m = orig_rife(I1, I2, scale)
            if log["rife_pairs"] == 0:
                log["rife_pair0_inputs"] = "frames 0 and 1 of (vae_decoded_head*0.5+0.5).clamp(0,1)"
                R.put("decode.safetensors", "rife_pair0_middle", m,
                      "RIFE middle frame for pair (0,1), before clamp(0,1)",
                      "RIFEModel.inference output (merged[2])")
            if log["rife_pairs"] == 1:
                R.put("decode.safetensors", "rife_pair1_middle", m,
                      "RIFE middle frame for pair (1,2), before clamp(0,1)",
                      "RIFEModel.inference output")
            log["rife_pairs"] += 1
            return m

        S.rife.inference = rec_rife

    orig_det = S.face_det.facedet.detect

    def rec_detect(img):
        r = orig_det(img)
        cap.face_detect_calls.append({"input_hw": list(img.shape[:2]), "bboxes_xywh": r[0].tolist(),
                                      "kps": r[1].tolist(), "scores": r[2].tolist()})
        return r

    S.face_det.facedet.detect = rec_detect
