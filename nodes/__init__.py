"""ComfyUI adapters (V3 node schema): the only code in SonicFlow that imports comfy.* and folder_paths."""
from comfy_api.latest import ComfyExtension

from .encode import SonicFlowVideoEncode
from .generate import SonicFlowFramesToImages, SonicFlowGenerate, SonicFlowImagesToFrames
from .job import SonicFlowJobInput, SonicFlowJobResult
from .loaders import SonicFlowLoadAudio, SonicFlowLoadImage, install_sample_media
from .predata import SonicFlowPreData
from .publish import SonicFlowPublish

NODES = [SonicFlowLoadImage, SonicFlowLoadAudio, SonicFlowPreData, SonicFlowGenerate, SonicFlowVideoEncode,
         SonicFlowPublish, SonicFlowFramesToImages, SonicFlowImagesToFrames, SonicFlowJobInput, SonicFlowJobResult]


class SonicFlowExtension(ComfyExtension):
    async def get_node_list(self):
        return NODES


install_sample_media()  # at import: ComfyUI 0.3.75 never calls ComfyExtension.on_load
