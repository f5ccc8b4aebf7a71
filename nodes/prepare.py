"""SonicFlow PreData: face, crop and frame count, decided once from the portrait and the speech."""
from __future__ import annotations

from comfy_api.latest import io

from sonicflow_contract import MIN_RESOLUTION

from ..sonic_core import NO_FACE_MODES, prepare
from .base import SonicFlowNode, user_errors
from .tensors import PREDATA, audio_from_comfy, digest, image_to_numpy

LOWEST, HIGHEST, STEP = MIN_RESOLUTION


class SonicFlowPreData(SonicFlowNode):
    TITLE = "PreData"

    @classmethod
    def define_schema(cls):
        return cls.schema(
            "Finds the face, plans the crop and derives the frame count from the audio: the video always lasts "
            "exactly as long as the audio it carries.",
            inputs=[
                io.Image.Input("image", tooltip="The portrait (the first image of a batch is used)."),
                io.Audio.Input("audio", tooltip="The speech that drives the face."),
                io.Int.Input("min_resolution", default=512, min=LOWEST, max=HIGHEST, step=STEP,
                             tooltip="Short side of the face crop Sonic works at (official 512)."),
                io.Float.Input("expand_ratio", default=0.5, min=0.0, max=2.0, step=0.05,
                               tooltip="How far the crop reaches beyond the face box, per side (official 0.5)."),
                io.Float.Input("duration", default=0.0, min=0.0, max=3600.0, step=0.1,
                               tooltip="Seconds of audio to use; 0 = the whole audio. Never longer than the audio."),
                io.Combo.Input("no_face", options=list(NO_FACE_MODES), default="error", tooltip=
                               "When no face is found: stop with an error, or animate the centre of the image."),
            ],
            outputs=[PREDATA.Output(display_name="predata", tooltip="Everything Generate needs."),
                     io.Float.Output(display_name="duration", tooltip="Video length in seconds (= the audio's)."),
                     io.Int.Output(display_name="frames", tooltip="Number of video frames.")])

    @classmethod
    @user_errors
    def execute(cls, image, audio, min_resolution, expand_ratio, duration, no_face):
        img, aud = image_to_numpy(image), audio_from_comfy(audio)
        pre = prepare(img, aud, min_resolution=min_resolution, expand_ratio=expand_ratio, duration=duration,
                      no_face=no_face)
        pre.info["inputs"] = {"image_sha256": digest(img), "audio_sha256": digest(aud.samples),
                              "min_resolution": min_resolution, "expand_ratio": expand_ratio, "duration": duration}
        return io.NodeOutput(pre, pre.duration, pre.n_frames)
