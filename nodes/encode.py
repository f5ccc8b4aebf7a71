"""SonicFlow Video Encode: frames + audio -> MP4 (H.264 yuv420p + AAC), streamed, previewed in the canvas."""
from __future__ import annotations

import os

import folder_paths
import numpy as np
from comfy_api.input_impl import VideoFromFile

from ..sonic_core import (LABEL_MODES, PRESETS, ArrayFrames, encode_mp4, label_frames_and_metadata,
                          provenance_metadata)
from .convert import Progress, audio_from_comfy, image_to_numpy
from .errors import SonicFlowNodeError, user_errors


def video_preview(filename: str, subfolder: str, kind: str) -> dict:
    """ComfyUI's frontend shows a video player for `images` entries flagged `animated`."""
    return {"images": [{"filename": filename, "subfolder": subfolder, "type": kind, "format": "video/mp4"}],
            "animated": (True,)}


class SonicFlowVideoEncode:
    TITLE = "Video Encode"
    CATEGORY = "SonicFlow"
    OUTPUT_NODE = True
    DESCRIPTION = ("Encodes frames and audio into an MP4 (H.264 + AAC) lasting exactly as long as the frames, "
                   "streaming one frame at a time. The file goes to ComfyUI's temp folder: connect Publish to keep it.")
    RETURN_TYPES = ("VIDEO", "STRING")
    RETURN_NAMES = ("video", "path")
    OUTPUT_TOOLTIPS = ("The MP4 as a core VIDEO.", "Path of the MP4 on the server.")
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "fps": ("FLOAT", {"default": 25.0, "min": 1.0, "max": 120.0, "step": 0.5,
                                  "tooltip": "Used for an IMAGE batch; a SonicFlow frame sequence carries its own fps."}),
                "crf": ("INT", {"default": 18, "min": 0, "max": 51,
                                "tooltip": "H.264 quality: lower is better and bigger (18 is visually lossless)."}),
                "preset": (list(PRESETS), {"default": "veryfast", "tooltip": "H.264 speed/size trade-off."}),
                "filename_prefix": ("STRING", {"default": "sonicflow/video", "tooltip": "Name of the file in the temp folder."}),
            },
            "optional": {
                "ai_label": (list(LABEL_MODES), {"default": LABEL_MODES[0], "tooltip":
                             "AI-content labels (GB 45438-2025): 'AI生成' shown for the first 2 s plus the AIGC "
                             "metadata field; turning the visible label off is logged."}),
                "frames": ("SONICFLOW_FRAMES", {"tooltip": "Frames from SonicFlow Generate (streamed)."}),
                "images": ("IMAGE", {"tooltip": "Or a core IMAGE batch (short clips)."}),
                "audio": ("AUDIO", {"tooltip": "Sound track; trimmed or padded to the video's length."}),
            },
        }

    @user_errors
    def encode(self, fps, crf, preset, filename_prefix, ai_label=LABEL_MODES[0], frames=None, images=None, audio=None):
        if frames is None and images is None:
            raise SonicFlowNodeError("SonicFlow Video Encode: frames: nothing to encode. Fix: connect frames or images.")
        if frames is None:
            frames = ArrayFrames(np.stack([image_to_numpy(images, i) for i in range(images.shape[0])]), fps)
        aud = audio_from_comfy(audio).fitted(frames.duration) if audio is not None else None
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
            filename_prefix, folder_paths.get_temp_directory(), frames.width, frames.height)
        filename = f"{name}_{counter:05}_.mp4"
        path = os.path.join(folder, filename)
        stream, meta = label_frames_and_metadata(ai_label, iter(frames), frames.fps, frames.width, frames.height,
                                                 who=f"Video Encode {filename}")
        meta.update(provenance_metadata(frames.engine, frames.info))
        encode_mp4(stream, path, fps=frames.fps, width=frames.width, height=frames.height,
                   n_frames=len(frames), audio=aud, crf=crf, preset=preset, metadata=meta,
                   progress=Progress(len(frames)))
        return {"ui": video_preview(filename, subfolder, "temp"), "result": (VideoFromFile(path), path)}
