"""SonicFlow Publish: the finished video into ComfyUI's output folder or an S3-compatible store, content-addressed,
with a JSON provenance sidecar. S3 credentials come from the environment or a config file, never from widgets."""
from __future__ import annotations

import os
import tempfile

import folder_paths

from ..sonic_core import InputError
from ..sonic_core import probe_video
from ..sonic_core import read_provenance
from ..sonic_core import SINKS, publish_local
from ..sonic_core import publish_s3
from .encode import video_preview
from .errors import user_errors


def _video_file(video) -> tuple[str, bool]:
    """A path to the video's MP4 and whether it is a temporary copy."""
    source = video.get_stream_source() if hasattr(video, "get_stream_source") else None
    if isinstance(source, str) and os.path.isfile(source):
        return source, False
    fd, tmp = tempfile.mkstemp(suffix=".mp4", dir=folder_paths.get_temp_directory())
    os.close(fd)
    video.save_to(tmp, format="mp4", codec="h264")
    return tmp, True


class SonicFlowPublish:
    TITLE = "Publish"
    CATEGORY = "SonicFlow"
    OUTPUT_NODE = True
    DESCRIPTION = ("Stores the video under its content hash with a .json provenance sidecar, in ComfyUI's output folder "
                   "(sink local) or an S3-compatible bucket (sink s3; credentials from SONICFLOW_S3_* or "
                   "~/.config/sonicflow/s3.json).")
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("url", "sha256")
    OUTPUT_TOOLTIPS = ("Where the video is now.", "SHA-256 of the MP4 bytes.")
    FUNCTION = "publish"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "video": ("VIDEO", {"tooltip": "From SonicFlow Video Encode (or any core VIDEO)."}),
            "sink": (list(SINKS), {"default": "local", "tooltip": "local: ComfyUI's output folder; s3: an S3-compatible bucket."}),
            "prefix": ("STRING", {"default": "sonicflow/", "tooltip": "Subfolder (local) or key prefix (s3)."}),
            "bucket": ("STRING", {"default": "", "tooltip": "Bucket name (s3 only)."}),
            "endpoint": ("STRING", {"default": "", "tooltip": "S3 endpoint URL, e.g. http://minio:9000 (s3 only; "
                                                              "empty = from the environment or config file)."}),
        }}

    @user_errors
    def publish(self, video, sink, prefix, bucket, endpoint):
        path, temporary = _video_file(video)
        try:
            prov = read_provenance(probe_video(path).metadata)
            if sink == "s3":
                pub = publish_s3(path, bucket, prov, prefix=prefix, endpoint=endpoint)
                ui = {"text": [pub.url]}
            else:
                out = folder_paths.get_output_directory()
                folder = os.path.normpath(os.path.join(out, os.path.dirname(prefix)))
                if os.path.commonpath([folder, out]) != out:
                    raise InputError("prefix", f"{prefix!r} points outside the output folder",
                                     "use a relative subfolder such as sonicflow/")
                pub = publish_local(path, folder, prov, prefix=os.path.basename(prefix))
                subfolder = os.path.relpath(folder, out)
                ui = video_preview(pub.key, "" if subfolder == "." else subfolder, "output")
        finally:
            if temporary:
                os.remove(path)
        return {"ui": ui, "result": (pub.url, pub.sha256)}
