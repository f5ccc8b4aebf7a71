"""SonicFlow Generate, and the bridges between its frame sequences and core IMAGE batches."""
from __future__ import annotations

import numpy as np

from ..sonic_core import ENGINES, MEMORY_MODES, SONIC_DTYPES, ArrayFrames, generate
from .convert import Progress, audio_to_comfy, image_to_numpy, numpy_to_image
from .errors import SonicFlowNodeError, user_errors
from .models import sonic_model_roots


class SonicFlowGenerate:
    TITLE = "Generate"
    CATEGORY = "SonicFlow"
    DESCRIPTION = ("Animates the portrait with the speech. engine: 'sonic' (the Sonic model; needs its weights), "
                   "'lite' (built in, no weights, real time on a CPU), 'auto' (sonic when its weights are found).")
    RETURN_TYPES = ("SONICFLOW_FRAMES", "FLOAT", "AUDIO", "STRING")
    RETURN_NAMES = ("frames", "fps", "audio", "engine_info")
    OUTPUT_TOOLTIPS = ("The frames, streamed (never all in memory).", "Frames per second.",
                       "The audio the video carries.", "Which engine made the frames, and why.")
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "predata": ("SONICFLOW_PREDATA", {"tooltip": "From SonicFlow PreData."}),
            "engine": (list(ENGINES), {"default": "auto", "tooltip": "auto: sonic when its weights are installed, else lite."}),
            "inference_steps": ("INT", {"default": 25, "min": 1, "max": 100,
                                        "tooltip": "Sonic denoising steps (official 25). The lite engine ignores it."}),
            "dynamic_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3.0, "step": 0.05,
                                        "tooltip": "Strength of the motion driven by the audio (lips and face)."}),
            "motion_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3.0, "step": 0.05,
                                       "tooltip": "Head motion on top of dynamic_scale; 1.0 = the model's own; 0 = still head."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFF,
                             "tooltip": "Same seed + same inputs = the same video. 0 is a seed like any other."}),
        }, "optional": {
            "ip_audio_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 3.0, "step": 0.1,
                                         "tooltip": "Sonic: strength of the audio attention (official 1.0)."}),
            "interpolate": ("BOOLEAN", {"default": True, "tooltip": "Sonic: RIFE frame interpolation, 12.5 -> 25 fps."}),
            "dtype": (list(SONIC_DTYPES), {"default": "auto",
                                           "tooltip": "Sonic: model precision (auto = fp16 on a GPU, fp32 on a CPU)."}),
            "paste_back": ("BOOLEAN", {"default": False, "tooltip": "Sonic: put the animated face back into the full "
                                       "picture (off = the official output, the face crop). The lite engine always does."}),
            "memory_mode": (list(MEMORY_MODES), {"default": "auto", "tooltip": "Sonic GPU memory: gpu keeps every model "
                            "on the GPU (fastest); offload keeps them in RAM and moves each to the GPU only for its "
                            "stage (for small GPUs; a little slower); auto picks from the memory available."}),
            "vram_budget_gb": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1024.0, "step": 0.5,
                                         "tooltip": "Sonic: GPU memory (GiB) it may use; 0 = what is free. A small "
                                         "budget offloads models and may decode fewer frames at a time (then the "
                                         "frames deviate slightly from the official ones; engine_info says so)."}),
            "compile": ("BOOLEAN", {"default": False, "tooltip": "Sonic on a GPU: torch.compile the UNet and VAE "
                                    "decoder. The first run compiles for a few minutes; later runs in the same "
                                    "ComfyUI are about 1.5x faster (for queue workers and batches)."}),
        }}

    @user_errors
    def generate(self, predata, engine, inference_steps, dynamic_scale, motion_scale, seed, ip_audio_scale=1.0,
                 interpolate=True, dtype="auto", paste_back=False, memory_mode="auto", vram_budget_gb=0.0,
                 compile=False):
        frames = generate(predata, engine, inference_steps=inference_steps, dynamic_scale=dynamic_scale,
                          motion_scale=motion_scale, seed=seed, weight_roots=sonic_model_roots(),
                          ip_audio_scale=ip_audio_scale, interpolate=interpolate, dtype=dtype, paste_back=paste_back,
                          memory_mode=memory_mode, vram_budget_gb=vram_budget_gb, compile=compile,
                          progress=Progress(1))
        frames.info["inputs"] = predata.info.get("inputs", {})
        return (frames, frames.fps, audio_to_comfy(predata.audio), frames.info["note"])


class SonicFlowFramesToImages:
    TITLE = "Frames to Images"
    CATEGORY = "SonicFlow"
    DESCRIPTION = "Turns a short frame sequence into a core IMAGE batch (for core and VideoHelperSuite nodes)."
    RETURN_TYPES = ("IMAGE", "FLOAT")
    RETURN_NAMES = ("images", "fps")
    OUTPUT_TOOLTIPS = ("All frames as one IMAGE batch.", "Frames per second.")
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "frames": ("SONICFLOW_FRAMES", {"tooltip": "From SonicFlow Generate."}),
            "max_frames": ("INT", {"default": 750, "min": 1, "max": 100000,
                                   "tooltip": "Refuse longer sequences: an IMAGE batch holds every frame as float32."}),
        }}

    def convert(self, frames, max_frames):
        gb = len(frames) * frames.width * frames.height * 3 * 4 / 1e9
        if len(frames) > max_frames:
            raise SonicFlowNodeError(
                f"SonicFlow Frames to Images: frames: {len(frames)} frames would need {gb:.1f} GB as an IMAGE batch. "
                "Fix: connect the frames straight to SonicFlow Video Encode, or raise max_frames if you have the memory.")
        return (numpy_to_image(np.stack(list(frames))), frames.fps)


class SonicFlowImagesToFrames:
    TITLE = "Images to Frames"
    CATEGORY = "SonicFlow"
    DESCRIPTION = "Wraps a core IMAGE batch as a SonicFlow frame sequence."
    RETURN_TYPES = ("SONICFLOW_FRAMES",)
    RETURN_NAMES = ("frames",)
    OUTPUT_TOOLTIPS = ("The same frames as a sequence.",)
    FUNCTION = "convert"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "Frames as an IMAGE batch."}),
            "fps": ("FLOAT", {"default": 25.0, "min": 1.0, "max": 120.0, "step": 0.5, "tooltip": "Frames per second."}),
        }}

    def convert(self, images, fps):
        frames = np.stack([image_to_numpy(images, i) for i in range(images.shape[0])])
        return (ArrayFrames(frames, fps),)
