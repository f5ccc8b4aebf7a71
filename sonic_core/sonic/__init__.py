"""The Sonic model (CVPR 2025) for SonicFlow's `sonic` engine: our own implementation of the model side,
loading the official weight files unchanged. Imports torch, diffusers and transformers lazily where it can; never
imports ComfyUI.

    loading   load_sonic(roots, device=, dtype=, config_dir=) -> SonicModels; WeightsError; the per-file loaders
    pipeline  SonicParams, resolve_memory, image_inputs, detect_official (the stages are listed there)
    audio     audio_features(samples_16k, feature_extractor, encoder) -> AudioFeatures;
              audio_conditioning(feats, audio2token, audio2bucket, image_embeds) -> AudioConditioning
    sampler   sample_latents(models, image, samples_16k, params) -> denoised latents
    decoding  iter_frames(models, latents, params) -> uint8 frames
    compiling unet_runner, vae_decoder_runner, load_compile_cache / save_compile_cache
    memory    plan_memory -> MemoryPlan; place
    unet      build_unet(config, device), unet_forward(unet, sample, t, clip_ctx, audio_ctx, added_time_ids,
              face_mask, ip_scale), downsample_mask
    adapters  AudioProjModel (audio2token), Audio2bucketModel (audio2bucket)
    rife      IFNet (.middle(img0, img1))
    yoloface  YoloFace(path).detect(rgb) -> boxes [x, y, w, h], landmarks, scores; official_face_index
    svd_single_file   svd_xt*.safetensors <-> diffusers/transformers keys
"""
