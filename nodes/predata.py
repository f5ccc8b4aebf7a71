"""SonicFlow PreData: face, crop and frame count, decided once from the portrait and the speech."""
from __future__ import annotations

from ..sonic_core import NO_FACE_MODES, prepare
from .convert import audio_from_comfy, digest, image_to_numpy
from .errors import user_errors


class SonicFlowPreData:
    TITLE = "PreData"
    CATEGORY = "SonicFlow"
    DESCRIPTION = ("Finds the face, plans the crop and derives the frame count from the audio: the video always lasts "
                   "exactly as long as the audio it carries.")
    RETURN_TYPES = ("SONICFLOW_PREDATA", "FLOAT", "INT")
    RETURN_NAMES = ("predata", "duration", "frames")
    OUTPUT_TOOLTIPS = ("Everything Generate needs.", "Video length in seconds (= the audio's).", "Number of video frames.")
    FUNCTION = "prepare"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "The portrait (the first image of a batch is used)."}),
            "audio": ("AUDIO", {"tooltip": "The speech that drives the face."}),
            "min_resolution": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 64,
                                       "tooltip": "Short side of the face crop Sonic works at (official 512)."}),
            "expand_ratio": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 2.0, "step": 0.05,
                                       "tooltip": "How far the crop reaches beyond the face box, per side (official 0.5)."}),
            "duration": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 3600.0, "step": 0.1,
                                   "tooltip": "Seconds of audio to use; 0 = the whole audio. Never longer than the audio."}),
            "no_face": (list(NO_FACE_MODES), {"default": "error",
                        "tooltip": "When no face is found: stop with an error, or animate the centre of the image."}),
        }}

    @user_errors
    def prepare(self, image, audio, min_resolution, expand_ratio, duration, no_face):
        img, aud = image_to_numpy(image), audio_from_comfy(audio)
        pre = prepare(img, aud, min_resolution=min_resolution, expand_ratio=expand_ratio, duration=duration, no_face=no_face)
        pre.info["inputs"] = {"image_sha256": digest(img), "audio_sha256": digest(aud.samples),
                              "min_resolution": min_resolution, "expand_ratio": expand_ratio, "duration": duration}
        return (pre, pre.duration, pre.n_frames)
