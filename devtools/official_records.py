"""What devtools/official_reference.py records AFTER building and running the official Sonic: the load check of
every weight file, the conditioning tensors derived from the calls that official_hooks.py kept, one stand-alone
UNet forward, the 25-step schedule, the output frames and the RNG check. Imports nothing from the project.
"""
from __future__ import annotations

import os

import numpy as np
import torch
from diffusers.schedulers import EulerDiscreteScheduler
from official_hooks import Capture
from safetensors.torch import load_file

# CLIPImageProcessor's normalisation, to recover the uint8 image it was given
CLIP_MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073])[:, None, None]
CLIP_STD = torch.tensor([0.26862954, 0.26130258, 0.27577711])[:, None, None]


def check_loads(S, ckpt):
    """from_pretrained (diffusers without accelerate, transformers) is NOT strict: missing keys are only warned
    about and left randomly initialised. Compare every loaded tensor with the file to be sure nothing was."""
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
    for name, mod, fn in (("unet", S.pipe.unet, "Sonic/unet.pth"),
                          ("audio2token", S.audio2token, "Sonic/audio2token.pth"),
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


def record_after_run(cap: Capture, S, ckpt, n_samples, dynamic_scale, seed) -> dict:
    """Records everything that is read off the finished run, in the manifest's order; returns its derived sizes."""
    record_image(cap)
    audio_len, n_frames, sel, cond_all = record_audio(cap, n_samples, int(S.config.step))
    h8, w8 = record_solo_unet(cap, S, sel, cond_all, dynamic_scale)
    record_schedule_25(cap, ckpt)
    record_outputs(cap)
    record_rng_check(cap, seed)
    ref = cap.test_data["ref_img"]
    return {"audio_len_25fps": audio_len, "n_frames_12_5fps": n_frames,
            "height": int(ref.shape[-2]), "width": int(ref.shape[-1]), "latent_hw": [h8, w8]}


def record_image(cap: Capture) -> None:
    R, log, td = cap.rec, cap.log, cap.test_data
    R.put("image.safetensors", "ref_img", td["ref_img"],
          "ref image (3,H,W) in [-1,1] = Normalize(0.5,0.5)(ToTensor(resized RGB))",
          "src/dataset/test_preprocess.py::image_audio_to_tensor")
    R.put("image.safetensors", "face_mask", td["face_mask"][:1],
          "face mask channel 0 (1,H,W) in [0,1] (after LANCZOS resize of the 0/255 box mask)", "image_audio_to_tensor")
    u8f = (td["clip_images"] * CLIP_STD + CLIP_MEAN) * 255
    log["clip_u8_inversion_max_err"] = float((u8f - u8f.round()).abs().max())
    assert log["clip_u8_inversion_max_err"] < 1e-3
    R.put("image.safetensors", "clip_input_u8", u8f.round().clamp(0, 255).to(torch.uint8),
          "the 224x224 RGB image (3,224,224) uint8 given to CLIPImageProcessor() = resized image "
          ".resize((224,224), LANCZOS); "
          "pixel_values = (u8/255 - CLIP mean)/CLIP std (recovered exactly from the processor output)",
          "image_audio_to_tensor")
    R.put("image.safetensors", "clip_pixel_values_sum", td["clip_images"].double().sum(dim=(1, 2)).float(),
          "per-channel sum of the CLIP pixel_values (3,)", "image_audio_to_tensor")
    R.put("image.safetensors", "clip_image_embeds", cap.clip_embeds[0],
          "image_encoder(clip_img).image_embeds (1,1024), as used by audio2bucket (sonic.py::test)",
          "CLIPVisionModelWithProjection (forward hook)")
    if len(cap.clip_embeds) > 1:
        log["clip_second_call_equal"] = bool(torch.equal(cap.clip_embeds[0], cap.clip_embeds[1]))


def record_audio(cap: Capture, n_samples, step):
    """Mel, whisper, audio2token and audio2bucket; returns (audio_len, n_frames, the a2t_cond frames, every frame's
    audio2token cond tokens) for the stand-alone UNet call."""
    R, log, td = cap.rec, cap.log, cap.test_data
    mel = td["audio_feature"]  # (80, 3000*k)
    audio_len = int(td["audio_len"])
    n_frames = audio_len // step
    n_mel_keep = min(mel.shape[-1], ((n_samples // 160) + 64) // 32 * 32)
    tail = mel[:, n_mel_keep:]
    log["mel"] = {"shape": list(mel.shape), "kept_columns": n_mel_keep,
                  "tail_is_constant": bool(tail.numel() == 0 or torch.all(tail == tail[0, 0]).item()),
                  "tail_value": float(tail[0, 0]) if tail.numel() else None}
    R.put("audio.safetensors", "mel_head", mel[:, :n_mel_keep],
          f"whisper log-mel input_features (80, first {n_mel_keep} of {mel.shape[-1]} columns); "
          "the remaining columns all equal mel_tail_value (see manifest extra)",
          "src/dataset/test_preprocess.py::get_audio_feature (WhisperFeatureExtractor, transformers 4.43.2)")

    # whisper: call 0 = output_hidden_states=True, call 1 = last_hidden_state
    hs = cap.whisper_outputs[0].hidden_states
    last = cap.whisper_outputs[1].last_hidden_state
    stacked = torch.stack(hs, dim=2)  # (1,1500,5,384)
    log["whisper"] = {"n_hidden_states": len(hs), "hidden_shape": list(hs[0].shape),
                      "last_equals_hidden_states_minus1": bool(torch.equal(last, hs[-1])),
                      "max_abs_last_minus_hs_minus1": float((last - hs[-1]).abs().max())}
    used = 2 * audio_len
    R.put("audio.safetensors", "whisper_hidden_used", stacked[:, :used],
          "torch.stack(encoder(mel, output_hidden_states=True).hidden_states, 2)[:, :2*audio_len] "
          f"(1,{used},5,384): the tokens audio_prompts is built from",
          "transformers WhisperEncoder (called by sonic.py::test)")
    stride_idx = torch.arange(used, stacked.shape[1], 100)
    R.put("audio.safetensors", "whisper_hidden_strided_tail_index", stride_idx,
          "token indices of whisper_hidden_strided_tail", "driver")
    R.put("audio.safetensors", "whisper_hidden_strided_tail", stacked[:, stride_idx],
          "the same stacked hidden states at tokens 2*audio_len, +100, ... "
          "(beyond the used range, for a whole-sequence check)", "WhisperEncoder")

    # audio2token (cond/uncond alternate per frame) and audio2bucket
    a2t, a2b = cap.a2t_calls, cap.a2b_calls
    assert len(a2t) == 2 * n_frames and len(a2b) == n_frames, (len(a2t), len(a2b), n_frames)
    sel = [0, 1, n_frames - 1]
    R.put("audio.safetensors", "a2t_frames", torch.tensor(sel),
          "frame indices of a2t_cond (also the stand-alone UNet audio context)", "driver")
    # inputs are not stored (size): audio_clip(f) = pad(whisper_hidden_used, 4 before, 6 after)[:, 4f:4f+10];
    # bucket_clip(f) = pad(whisper_hidden_used[:, :, 4:5], 24 before, 26 after)[:, 4f:4f+50]. Verified here:
    hu = stacked[:, :used]
    ap_ = torch.cat([torch.zeros_like(hu[:, :4]), hu, torch.zeros_like(hu[:, :6])], 1)
    lp_ = torch.cat([torch.zeros_like(hu[:, :24, 4:5]), hu[:, :, 4:5], torch.zeros_like(hu[:, :26, 4:5])], 1)
    log["a2t_input_derivation_exact"] = all(torch.equal(a2t[2 * f][0][0], ap_[:, 4 * f:4 * f + 10])
                                            for f in range(n_frames))
    log["a2b_input_derivation_exact"] = all(torch.equal(a2b[f][0][0], lp_[:, 4 * f:4 * f + 50])
                                            for f in range(n_frames))
    log["audio_prompts_shape"] = list(ap_.shape)
    log["last_audio_prompts_shape"] = list(lp_.shape)
    R.put("audio.safetensors", "audio_prompts_slice", ap_[:, :14, :, :8],
          "audio_prompts[:, 0:14, :, 0:8] (4 zero tokens, then whisper tokens 0..9); "
          "audio_prompts = cat([0]*4, whisper_hidden_used, [0]*6) on dim 1 "
          "(built here; equal, frame by frame, to the audio2token inputs recorded by hook)",
          "sonic.py::test (re-derived, verified)")
    R.put("audio.safetensors", "last_audio_prompts_slice", lp_[:, 20:34, :, :8],
          "last_audio_prompts[:, 20:34, :, 0:8] (zeros 20..23, then last-layer tokens 0..9); "
          "last_audio_prompts = cat([0]*24, hidden_states[-1] tokens, [0]*26) "
          "(built here; equal to the audio2bucket inputs recorded by hook)", "sonic.py::test (re-derived, verified)")
    log["a2t_uncond_input_all_zero"] = all(not a2t[2 * f + 1][0].any() for f in range(n_frames))
    R.put("audio.safetensors", "a2t_cond", torch.cat([a2t[2 * f][1] for f in sel], 1),
          "audio2token(audio_clip) (1,3,32,1024) for frames a2t_frames; "
          "audio_clip(f) = cat([0]*4, whisper_hidden_used, [0]*6)[:, 4f:4f+10].unsqueeze(0)",
          "AudioProjModel (forward hook)")
    R.put("audio.safetensors", "a2t_uncond", a2t[1][1],
          "audio2token(zeros_like(audio_clip)) (1,1,32,1024) (identical for every frame)",
          "AudioProjModel (forward hook)")
    log["a2t_uncond_identical_all_frames"] = all(torch.equal(a2t[1][1], a2t[2 * f + 1][1]) for f in range(n_frames))
    cond_all = torch.cat([a2t[2 * f][1] for f in range(n_frames)], 1)[0]  # (N,32,1024)
    R.put("audio.safetensors", "a2t_cond_all_sum", cond_all.double().sum(dim=(1, 2)).float(),
          "per-frame sum of audio2token cond tokens (N,)", "AudioProjModel")
    R.put("audio.safetensors", "a2t_cond_all_slice", cond_all[:, :, :16],
          "audio2token cond tokens, every frame, first 16 channels (N,32,16)", "AudioProjModel")
    R.put("audio.safetensors", "a2b_clip_input", a2b[0][1], "audio2bucket clip input = image_embeds (1,1024)",
          "Audio2bucketModel (forward hook)")
    R.put("audio.safetensors", "a2b_raw", torch.cat([c[2] for c in a2b], 1),
          "audio2bucket raw output for every frame (1,N,2,1) (before *16+16)", "Audio2bucketModel (forward hook)")
    R.put("audio.safetensors", "motion_buckets", torch.cat([c[2] for c in a2b], 1) * 16 + 16,
          "motion buckets (1,N,2,1) = raw*16+16 (sonic.py::test); the pipeline multiplies by dynamic_scale",
          "sonic.py::test")
    return audio_len, n_frames, sel, cond_all


def record_solo_unet(cap: Capture, S, sel, cond_all, dynamic_scale):
    """One self-contained UNet forward on a small input (B=1, F=3 frames `sel`); returns the latent (h, w)."""
    R, td = cap.rec, cap.test_data
    pipe = S.pipe
    g = torch.Generator().manual_seed(1234)
    h8, w8 = td["ref_img"].shape[-2] // 8, td["ref_img"].shape[-1] // 8
    sample = torch.randn(1, 3, 8, h8, w8, generator=g)
    t_in = pipe.scheduler.timesteps[0].reshape(1)
    clip_ctx = cap.clip_embeds[0].repeat(3, 1).unsqueeze(1)  # (3,1,1024)
    audio_ctx = cond_all[sel]  # (3,32,1024)
    mb = (torch.cat([c[2] for c in cap.a2b_calls], 1)[0, sel] * 16 + 16).mean(0).squeeze() * dynamic_scale
    ati = torch.tensor([[float(S.config.fps), float(mb[0]), float(mb[1])]])
    mask = td["face_mask"][:1].unsqueeze(0)  # (1,1,H,W)
    with torch.no_grad():
        o = pipe.unet(sample, t_in, encoder_hidden_states=(clip_ctx, [audio_ctx]),
                      cross_attention_kwargs={"ip_adapter_masks": [mask]}, added_time_ids=ati, return_dict=False)[0]
    R.put("unet.safetensors", "solo_sample", sample,
          "stand-alone UNet input sample (1,3,8,h,w): torch.randn(generator=manual_seed(1234)). "
          "Call: unet(solo_sample, solo_timestep, "
          "encoder_hidden_states=(solo_clip_ctx, [audio.safetensors:a2t_cond[0]]), "
          "cross_attention_kwargs={'ip_adapter_masks': [image.safetensors:face_mask[None]]}, "
          "added_time_ids=solo_added_time_ids)", "driver")
    R.put("unet.safetensors", "solo_timestep", t_in, "its timestep = scheduler.timesteps[0]", "driver")
    R.put("unet.safetensors", "solo_clip_ctx", clip_ctx, "clip context (3,1,1024) = clip_image_embeds repeated",
          "driver")
    assert torch.equal(audio_ctx, R.files["audio.safetensors"]["a2t_cond"][0])
    R.put("unet.safetensors", "solo_added_time_ids", ati,
          "added_time_ids (1,3) = [12.5, mean bucket0, mean bucket1] over those frames", "driver")
    R.put("unet.safetensors", "solo_output", o,
          "UNet output (1,3,4,h,w), official UNetSpatioTemporalConditionModel with audio adapters",
          "UNetSpatioTemporalConditionModel.forward")
    return h8, w8


def record_schedule_25(cap: Capture, ckpt) -> None:
    """The schedule of the official default step count, from the same scheduler config."""
    sch = EulerDiscreteScheduler.from_pretrained(os.path.join(ckpt, "stable-video-diffusion-img2vid-xt"),
                                                 subfolder="scheduler")
    sch.set_timesteps(25)
    cap.rec.put("sampling.safetensors", "scheduler_sigmas_25", sch.sigmas,
                "sigmas for 25 steps (official default), same scheduler config",
                "EulerDiscreteScheduler.set_timesteps(25)")
    cap.rec.put("sampling.safetensors", "scheduler_timesteps_25", sch.timesteps, "timesteps for 25 steps",
                "EulerDiscreteScheduler.set_timesteps(25)")


def record_outputs(cap: Capture) -> None:
    video = cap.generated  # (1,3,N,H,W) in [0,1]
    fin = cap.saved["video"]  # (1,3,2N-1,H,W)
    u8 = (fin[0].permute(1, 2, 3, 0) * 255).numpy().astype(np.uint8)  # what save_videos_grid writes (truncation)
    cap.rec.put("decode.safetensors", "final_frames_u8", torch.from_numpy(u8),
                "every output frame (2N-1,H,W,3) uint8 as save_videos_grid converts it: "
                "(x*255).astype(uint8) (truncation, no rounding)", "sonic.py::process -> save_videos_grid")
    cap.log["final"] = {"n_generated_frames": int(video.shape[2]), "n_output_frames": int(fin.shape[2]),
                        "fps": cap.saved["fps"], "height": int(fin.shape[-2]), "width": int(fin.shape[-1])}


def record_rng_check(cap: Capture, seed) -> None:
    """The noise must equal manual_seed(seed) then two plain torch.randn calls."""
    torch.manual_seed(seed)
    r0 = torch.randn(*cap.log["randn"][0]["shape"])
    r1 = torch.randn(*cap.log["randn"][1]["shape"])
    recorded = cap.rec.files["sampling.safetensors"]
    cap.log["rng_check"] = {
        "randn0_equals_manual_seed_then_randn": bool(torch.equal(r0, recorded["randn_0"])),
        "randn1_equals_second_randn": bool(torch.equal(r1, recorded["randn_1"])),
    }
