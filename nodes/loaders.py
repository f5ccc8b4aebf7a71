"""SonicFlow Load Image and Load Audio: pick or upload a file from ComfyUI's input folder, checked by content."""
from __future__ import annotations

import os
import shutil

import folder_paths
from comfy_api.latest import io

from ..sonic_core import InputError, load_audio, load_image, sha256_file
from .base import SonicFlowNode, user_errors
from .tensors import audio_to_comfy, numpy_to_image

SAMPLE_MEDIA = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "sample_media")
SAMPLE_INPUTS = {"portrait.png": "sonicflow_portrait.png", "speech.wav": "sonicflow_speech.wav"}


def install_sample_media() -> None:
    """Put the bundled sample into the input folder (once) so the bundled templates run as opened."""
    root = folder_paths.get_input_directory()
    for src, name in SAMPLE_INPUTS.items():
        if not os.path.exists(os.path.join(root, name)) and os.path.isfile(os.path.join(SAMPLE_MEDIA, src)):
            os.makedirs(root, exist_ok=True)
            shutil.copyfile(os.path.join(SAMPLE_MEDIA, src), os.path.join(root, name))


def _input_files(kinds: list[str]) -> list[str]:
    root = folder_paths.get_input_directory()
    files = [f for f in os.listdir(root) if os.path.isfile(os.path.join(root, f))]
    return sorted(folder_paths.filter_files_content_types(files, kinds))


def input_path(name: str) -> str | None:
    """The file a prompt's `name` means, only if, once links are resolved, it is a regular file under ComfyUI's input
    folder (or its output/temp folder for the annotated `name [output]` / `name [temp]` forms); else None. A prompt
    may come from anyone who can reach ComfyUI: it must not read /etc/passwd, follow a link out, or hang on
    /dev/zero, and the answer must not tell whether such a path exists."""
    rel, base = folder_paths.annotated_filepath(name)
    base = os.path.realpath(base or folder_paths.get_input_directory())
    path = os.path.realpath(os.path.join(base, rel))
    if os.path.commonpath([path, base]) != base or not os.path.isfile(path):
        return None
    return path


def _not_found(name: str, what: str) -> InputError:
    return InputError(what, f"{name!r} is not a file in ComfyUI's input folder", "upload it, or pick one from the "
                      "list (files outside the input folder cannot be used)", code="input_not_found")


def _resolve(name: str, what: str) -> str:
    """The file's path (called inside @user_errors, which names the node)."""
    path = input_path(name)
    if path is None:
        raise _not_found(name, what)
    return path


def _file_hash(name: str) -> str:
    path = input_path(name)
    return name if path is None else sha256_file(path)  # refused by validate_inputs: nothing outside is read


def _validate(name: str, what: str):
    return True if input_path(name) is not None else str(_not_found(name, what))


class SonicFlowLoadImage(SonicFlowNode):
    TITLE = "Load Image"

    @classmethod
    def define_schema(cls):
        return cls.schema(
            "Loads a portrait from the input folder, checked by content (real image, at most 40 MP).",
            inputs=[io.Combo.Input("image", options=_input_files(["image"]), upload=io.UploadType.image,
                                   tooltip="A photo with one clearly visible face (PNG, JPEG or WebP).")],
            outputs=[io.Image.Output(display_name="image", tooltip="The portrait as an RGB image batch of one.")])

    @classmethod
    @user_errors
    def execute(cls, image):
        return io.NodeOutput(numpy_to_image(load_image(_resolve(image, "image"))))

    @classmethod
    def fingerprint_inputs(cls, image):
        return _file_hash(image)

    @classmethod
    def validate_inputs(cls, image):
        return _validate(image, "image")


class SonicFlowLoadAudio(SonicFlowNode):
    TITLE = "Load Audio"

    @classmethod
    def define_schema(cls):
        return cls.schema(
            "Loads speech from the input folder: wav, mp3, flac, ogg, m4a, or the sound of an mp4/mov (PyAV).",
            inputs=[io.Combo.Input("audio", options=_input_files(["audio", "video"]), upload=io.UploadType.audio,
                                   tooltip="A speech recording, or a video whose sound track is speech.")],
            outputs=[io.Audio.Output(display_name="audio", tooltip="The decoded audio."),
                     io.Float.Output(display_name="duration",
                                     tooltip="Its length in seconds: the video will last exactly this long.")])

    @classmethod
    @user_errors
    def execute(cls, audio):
        decoded = load_audio(_resolve(audio, "audio"))
        return io.NodeOutput(audio_to_comfy(decoded), decoded.duration)

    @classmethod
    def fingerprint_inputs(cls, audio):
        return _file_hash(audio)

    @classmethod
    def validate_inputs(cls, audio):
        return _validate(audio, "audio")
