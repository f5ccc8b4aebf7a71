"""SonicFlow Generate, and the bridges between its frame sequences and core IMAGE batches."""
from __future__ import annotations

import numpy as np

from ..sonic_core import ArrayFrames, GenerateOptions, generate, option_fields
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
        required = {"predata": ("SONICFLOW_PREDATA", {"tooltip": "From SonicFlow PreData."})}
        optional = {}
        for f in option_fields():
            if f.metadata["canvas"]:
                (optional if f.metadata["sonic"] else required)[f.name] = _widget(f)
        return {"required": required, "optional": optional}

    @user_errors
    def generate(self, predata, **inputs):
        options = GenerateOptions(weight_roots=tuple(sonic_model_roots()), **inputs)
        frames = generate(predata, options, progress=Progress(1))
        frames.info["inputs"] = predata.info.get("inputs", {})
        return (frames, frames.fps, audio_to_comfy(predata.audio), frames.info["note"])


def _widget(f) -> tuple:
    """A ComfyUI input from an option's declaration (sonic_core.options)."""
    m = f.metadata
    tip = m["help"][0].upper() + m["help"][1:] + "." + (" Sonic only." if m["sonic"] else "")
    if m["choices"]:
        return (list(m["choices"]), {"default": f.default, "tooltip": tip})
    kind = {bool: "BOOLEAN", int: "INT", float: "FLOAT"}[type(f.default)]
    spec = {"default": f.default, "tooltip": tip}
    spec.update({k: m[k] for k in ("min", "max", "step") if m[k] is not None})
    return (kind, spec)


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
