"""SonicFlow Load Image and Load Audio: pick or upload a file from ComfyUI's input folder, checked by content."""
from __future__ import annotations

import hashlib
import os
import shutil

import folder_paths

from ..sonic_core import load_audio
from ..sonic_core import load_image
from .convert import audio_to_comfy, numpy_to_image
from .errors import user_errors


EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
EXAMPLE_INPUTS = {"portrait.png": "sonicflow_portrait.png", "speech.wav": "sonicflow_speech.wav"}


def install_examples() -> None:
    """Put the bundled example into the input folder (once) so the bundled templates run as opened."""
    root = folder_paths.get_input_directory()
    for src, name in EXAMPLE_INPUTS.items():
        if not os.path.exists(os.path.join(root, name)) and os.path.isfile(os.path.join(EXAMPLES, src)):
            os.makedirs(root, exist_ok=True)
            shutil.copyfile(os.path.join(EXAMPLES, src), os.path.join(root, name))


def _input_files(kinds: list[str]) -> list[str]:
    root = folder_paths.get_input_directory()
    files = [f for f in os.listdir(root) if os.path.isfile(os.path.join(root, f))]
    return sorted(folder_paths.filter_files_content_types(files, kinds))


def _file_hash(name: str) -> str:
    h = hashlib.sha256()
    with open(folder_paths.get_annotated_filepath(name), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _validate(name: str, what: str):
    if not folder_paths.exists_annotated_filepath(name):
        return f"{what} file not found in the input folder: {name}. Upload it or pick another one."
    return True


class SonicFlowLoadImage:
    TITLE = "Load Image"
    CATEGORY = "SonicFlow"
    DESCRIPTION = "Loads a portrait from the input folder, checked by content (real image, at most 40 MP)."
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("image",)
    OUTPUT_TOOLTIPS = ("The portrait as an RGB image batch of one.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": (_input_files(["image"]), {
            "image_upload": True, "tooltip": "A photo with one clearly visible face (PNG, JPEG or WebP)."})}}

    @user_errors
    def load(self, image):
        return (numpy_to_image(load_image(folder_paths.get_annotated_filepath(image))),)

    @classmethod
    def IS_CHANGED(cls, image):
        return _file_hash(image)

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        return _validate(image, "image")


class SonicFlowLoadAudio:
    TITLE = "Load Audio"
    CATEGORY = "SonicFlow"
    DESCRIPTION = "Loads speech from the input folder: wav, mp3, flac, ogg, m4a, or the sound of an mp4/mov (PyAV)."
    RETURN_TYPES = ("AUDIO", "FLOAT")
    RETURN_NAMES = ("audio", "duration")
    OUTPUT_TOOLTIPS = ("The decoded audio.", "Its length in seconds: the video will last exactly this long.")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"audio": (_input_files(["audio", "video"]), {
            "audio_upload": True, "tooltip": "A speech recording, or a video whose sound track is speech."})}}

    @user_errors
    def load(self, audio):
        decoded = load_audio(folder_paths.get_annotated_filepath(audio))
        return (audio_to_comfy(decoded), decoded.duration)

    @classmethod
    def IS_CHANGED(cls, audio):
        return _file_hash(audio)

    @classmethod
    def VALIDATE_INPUTS(cls, audio):
        return _validate(audio, "audio")
