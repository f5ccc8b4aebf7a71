"""SonicFlow Generate, and the bridges between its frame sequences and core IMAGE batches."""
from __future__ import annotations

import numpy as np
from comfy_api.latest import io

from ..sonic_core import ArrayFrames, GenerateOptions, generate, option_fields
from .base import SonicFlowNode, SonicFlowNodeError, user_errors
from .models import ComfyModelHost, comfy_placement, sonic_model_roots
from .tensors import FRAMES, PREDATA, Progress, audio_to_comfy, image_to_numpy, numpy_to_image


def _input(f) -> io.Input:
    """A node input from an option's declaration (sonic_core.options); the options only the sonic engine reads are
    optional inputs."""
    m = f.metadata
    tip = m["help"][0].upper() + m["help"][1:] + "." + (" Sonic only." if m["sonic"] else "")
    if m["choices"]:
        return io.Combo.Input(f.name, options=list(m["choices"]), default=f.default, tooltip=tip, optional=m["sonic"])
    kind = {bool: io.Boolean, int: io.Int, float: io.Float}[type(f.default)]
    limits = {k: m[k] for k in ("min", "max", "step") if m[k] is not None}
    return kind.Input(f.name, default=f.default, tooltip=tip, optional=m["sonic"], **limits)


class SonicFlowGenerate(SonicFlowNode):
    TITLE = "Generate"

    @classmethod
    def define_schema(cls):
        return cls.schema(
            "Animates the portrait with the speech. engine: 'sonic' (the Sonic model; needs its weights), "
            "'lite' (built in, no weights, real time on a CPU), 'auto' (sonic when its weights are found).",
            inputs=[PREDATA.Input("predata", tooltip="From SonicFlow PreData."),
                    *(_input(f) for f in option_fields() if f.metadata["canvas"])],
            outputs=[FRAMES.Output(display_name="frames", tooltip="The frames, streamed (never all in memory)."),
                     io.Float.Output(display_name="fps", tooltip="Frames per second."),
                     io.Audio.Output(display_name="audio", tooltip="The audio the video carries."),
                     io.String.Output(display_name="engine_info", tooltip="Which engine made the frames, and why.")])

    @classmethod
    @user_errors
    def execute(cls, predata, **inputs):
        placement = comfy_placement(inputs.pop("memory_mode", GenerateOptions.memory_mode))
        options = GenerateOptions(weight_roots=tuple(sonic_model_roots()), **placement, **inputs)
        frames = generate(predata, options, progress=Progress(1), host=ComfyModelHost())
        frames.info["inputs"] = predata.info.get("inputs", {})
        return io.NodeOutput(frames, frames.fps, audio_to_comfy(predata.audio), frames.info["note"])


class SonicFlowFramesToImages(SonicFlowNode):
    TITLE = "Frames to Images"

    @classmethod
    def define_schema(cls):
        return cls.schema(
            "Turns a short frame sequence into a core IMAGE batch (for core and VideoHelperSuite nodes).",
            inputs=[FRAMES.Input("frames", tooltip="From SonicFlow Generate."),
                    io.Int.Input("max_frames", default=750, min=1, max=100000,
                                 tooltip="Refuse longer sequences: an IMAGE batch holds every frame as float32.")],
            outputs=[io.Image.Output(display_name="images", tooltip="All frames as one IMAGE batch."),
                     io.Float.Output(display_name="fps", tooltip="Frames per second.")])

    @classmethod
    def execute(cls, frames, max_frames):
        gb = len(frames) * frames.width * frames.height * 3 * 4 / 1e9
        if len(frames) > max_frames:
            raise SonicFlowNodeError(
                f"SonicFlow Frames to Images: frames: {len(frames)} frames would need {gb:.1f} GB as an IMAGE batch. "
                "Fix: connect the frames straight to SonicFlow Video Encode, or raise max_frames if you have the "
                "memory.")
        return io.NodeOutput(numpy_to_image(np.stack(list(frames))), frames.fps)


class SonicFlowImagesToFrames(SonicFlowNode):
    TITLE = "Images to Frames"

    @classmethod
    def define_schema(cls):
        return cls.schema(
            "Wraps a core IMAGE batch as a SonicFlow frame sequence.",
            inputs=[io.Image.Input("images", tooltip="Frames as an IMAGE batch."),
                    io.Float.Input("fps", default=25.0, min=1.0, max=120.0, step=0.5, tooltip="Frames per second.")],
            outputs=[FRAMES.Output(display_name="frames", tooltip="The same frames as a sequence.")])

    @classmethod
    def execute(cls, images, fps):
        frames = np.stack([image_to_numpy(images, i) for i in range(images.shape[0])])
        return io.NodeOutput(ArrayFrames(frames, fps))
