"""ComfyUI adapters (V3 node schema): the only code in SonicFlow that imports comfy.* and folder_paths."""
from comfy_api.latest import ComfyExtension

from .generate import SonicFlowFramesToImages, SonicFlowGenerate, SonicFlowImagesToFrames
from .job import SonicFlowJobInput, SonicFlowJobResult
from .loaders import SonicFlowLoadAudio, SonicFlowLoadImage, install_sample_media
from .prepare import SonicFlowPreData
from .publish_video import SonicFlowPublish
from .video_encode import SonicFlowVideoEncode

NODES = [SonicFlowLoadImage, SonicFlowLoadAudio, SonicFlowPreData, SonicFlowGenerate, SonicFlowVideoEncode,
         SonicFlowPublish, SonicFlowFramesToImages, SonicFlowImagesToFrames, SonicFlowJobInput, SonicFlowJobResult]


class SonicFlowExtension(ComfyExtension):
    async def get_node_list(self):
        return NODES


install_sample_media()  # at import: ComfyUI 0.3.75 never calls ComfyExtension.on_load
