"""SonicFlow Publish: the finished video into ComfyUI's output folder or an S3-compatible store, content-addressed,
with a JSON provenance sidecar. S3 credentials come from the environment or a config file, never from widgets."""
from __future__ import annotations

import os
import tempfile

import folder_paths
from comfy_api.latest import io, ui

from ..sonic_core import SINKS, InputError, probe_video, publish_local, publish_s3, read_provenance
from .base import SonicFlowNode, user_errors


def _video_file(video) -> tuple[str, bool]:
    """A path to the video's MP4 and whether it is a temporary copy."""
    source = video.get_stream_source() if hasattr(video, "get_stream_source") else None
    if isinstance(source, str) and os.path.isfile(source):
        return source, False
    fd, tmp = tempfile.mkstemp(suffix=".mp4", dir=folder_paths.get_temp_directory())
    os.close(fd)
    video.save_to(tmp, format="mp4", codec="h264")
    return tmp, True


class SonicFlowPublish(SonicFlowNode):
    TITLE = "Publish"

    @classmethod
    def define_schema(cls):
        return cls.schema(
            "Stores the video under its content hash with a .json provenance sidecar, in ComfyUI's output folder "
            "(sink local) or an S3-compatible bucket (sink s3; credentials from SONICFLOW_S3_* or "
            "~/.config/sonicflow/s3.json).",
            inputs=[
                io.Video.Input("video", tooltip="From SonicFlow Video Encode (or any core VIDEO)."),
                io.Combo.Input("sink", options=list(SINKS), default="local",
                               tooltip="local: ComfyUI's output folder; s3: an S3-compatible bucket."),
                io.String.Input("prefix", default="sonicflow/", tooltip="Subfolder (local) or key prefix (s3)."),
                io.String.Input("bucket", default="", tooltip="Bucket name (s3 only)."),
                io.String.Input("endpoint", default="", tooltip="S3 endpoint URL, e.g. http://minio:9000 (s3 only; "
                                                                 "empty = from the environment or config file)."),
            ],
            outputs=[io.String.Output(display_name="url", tooltip="Where the video is now."),
                     io.String.Output(display_name="sha256", tooltip="SHA-256 of the MP4 bytes.")],
            is_output_node=True)

    @classmethod
    @user_errors
    def execute(cls, video, sink, prefix, bucket, endpoint):
        path, temporary = _video_file(video)
        try:
            prov = read_provenance(probe_video(path).metadata)
            if sink == "s3":
                pub = publish_s3(path, bucket, prov, prefix=prefix, endpoint=endpoint)
                preview = ui.PreviewText(pub.url)
            else:
                out = os.path.realpath(folder_paths.get_output_directory())
                # resolved through links: a subfolder that is a link out of the output folder is outside it
                folder = os.path.realpath(os.path.join(out, os.path.dirname(prefix)))
                if os.path.commonpath([folder, out]) != out:
                    raise InputError("prefix", f"{prefix!r} points outside the output folder",
                                     "use a relative subfolder such as sonicflow/")
                pub = publish_local(path, folder, prov, prefix=os.path.basename(prefix))
                subfolder = os.path.relpath(folder, out)
                preview = ui.PreviewVideo([ui.SavedResult(pub.key, "" if subfolder == "." else subfolder,
                                                          io.FolderType.output)])
        finally:
            if temporary:
                os.remove(path)
        return io.NodeOutput(pub.url, pub.sha256, ui=preview)
