"""ComfyUI adapters: the only code in SonicFlow that imports comfy.* and folder_paths."""
from .encode import SonicFlowVideoEncode
from .generate import SonicFlowFramesToImages, SonicFlowGenerate, SonicFlowImagesToFrames
from .job import SonicFlowJobInput, SonicFlowJobResult
from .loaders import SonicFlowLoadAudio, SonicFlowLoadImage, install_examples
from .predata import SonicFlowPreData
from .publish import SonicFlowPublish

_NODES = [SonicFlowLoadImage, SonicFlowLoadAudio, SonicFlowPreData, SonicFlowGenerate, SonicFlowVideoEncode,
          SonicFlowPublish, SonicFlowFramesToImages, SonicFlowImagesToFrames, SonicFlowJobInput, SonicFlowJobResult]

NODE_CLASS_MAPPINGS = {cls.__name__: cls for cls in _NODES}
NODE_DISPLAY_NAME_MAPPINGS = {cls.__name__: f"SonicFlow {cls.TITLE}" for cls in _NODES}

install_examples()
