"""SonicFlow Video Encode: frames + audio -> MP4 (H.264 yuv420p + AAC), streamed, previewed in the canvas, with the
graph embedded like core SaveVideo does (drop the MP4 on a canvas to get the workflow back)."""
from __future__ import annotations

import json
import os

import folder_paths
import numpy as np
from comfy.cli_args import args
from comfy_api.input_impl import VideoFromFile
from comfy_api.latest import io, ui

from ..sonic_core import LABEL_MODES, PRESETS, ArrayFrames, encode_mp4, label_frames_and_metadata, provenance_metadata
from .base import SonicFlowNode, SonicFlowNodeError, user_errors
from .tensors import FRAMES, Progress, audio_from_comfy, image_to_numpy


def graph_metadata(prompt: dict | None, extra_pnginfo: dict | None) -> dict:
    """The MP4 tags core SaveVideo writes: each extra_pnginfo entry (the frontend puts the canvas graph under
    `workflow`) and the API-format `prompt`, as JSON; none with ComfyUI's --disable-metadata."""
    if args.disable_metadata:
        return {}
    meta = {key: json.dumps(value) for key, value in (extra_pnginfo or {}).items()}
    if prompt is not None:
        meta["prompt"] = json.dumps(prompt)
    return meta


class SonicFlowVideoEncode(SonicFlowNode):
    TITLE = "Video Encode"

    @classmethod
    def define_schema(cls):
        return cls.schema(
            "Encodes frames and audio into an MP4 (H.264 + AAC) lasting exactly as long as the frames, streaming one "
            "frame at a time. The file goes to ComfyUI's temp folder: connect Publish to keep it.",
            inputs=[
                io.Float.Input("fps", default=25.0, min=1.0, max=120.0, step=0.5,
                               tooltip="Used for an IMAGE batch; a SonicFlow frame sequence carries its own fps."),
                io.Int.Input("crf", default=18, min=0, max=51,
                             tooltip="H.264 quality: lower is better and bigger (18 is visually lossless)."),
                io.Combo.Input("preset", options=list(PRESETS), default="veryfast",
                               tooltip="H.264 speed/size trade-off."),
                io.String.Input("filename_prefix", default="sonicflow/video",
                                tooltip="Name of the file in the temp folder."),
                io.Combo.Input("ai_label", options=list(LABEL_MODES), default=LABEL_MODES[0], optional=True, tooltip=
                               "AI-content labels (GB 45438-2025): 'AI生成' shown for the first 2 s plus the AIGC "
                               "metadata field; turning the visible label off is logged."),
                FRAMES.Input("frames", optional=True, tooltip="Frames from SonicFlow Generate (streamed)."),
                io.Image.Input("images", optional=True, tooltip="Or a core IMAGE batch (short clips)."),
                io.Audio.Input("audio", optional=True, tooltip="Sound track; trimmed or padded to the video's length."),
            ],
            outputs=[io.Video.Output(display_name="video", tooltip="The MP4 as a core VIDEO."),
                     io.String.Output(display_name="path", tooltip="Path of the MP4 on the server.")],
            hidden=[io.Hidden.prompt, io.Hidden.extra_pnginfo],
            is_output_node=True)

    @classmethod
    @user_errors
    def execute(cls, fps, crf, preset, filename_prefix, ai_label=LABEL_MODES[0], frames=None, images=None, audio=None):
        if frames is None and images is None:
            raise SonicFlowNodeError("SonicFlow Video Encode: frames: nothing to encode. "
                                     "Fix: connect frames or images.")
        if frames is None:
            frames = ArrayFrames(np.stack([image_to_numpy(images, i) for i in range(images.shape[0])]), fps)
        aud = audio_from_comfy(audio).fitted(frames.duration) if audio is not None else None
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_temp_directory(), frames.width, frames.height)
        filename = f"{name}_{counter:05}_.mp4"
        path = os.path.join(folder, filename)
        stream, labels = label_frames_and_metadata(ai_label, iter(frames), frames.fps, frames.width, frames.height,
                                                   who=f"Video Encode {filename}")
        meta = {**graph_metadata(cls.hidden.prompt, cls.hidden.extra_pnginfo), **labels,
                **provenance_metadata(frames.engine, frames.info)}
        encode_mp4(stream, path, fps=frames.fps, width=frames.width, height=frames.height,
                   n_frames=len(frames), audio=aud, crf=crf, preset=preset, metadata=meta,
                   progress=Progress(len(frames)))
        preview = ui.PreviewVideo([ui.SavedResult(filename, subfolder, io.FolderType.temp)])
        return io.NodeOutput(VideoFromFile(path), path, ui=preview)
