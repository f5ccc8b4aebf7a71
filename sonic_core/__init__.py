"""SonicFlow's inference core: media in and out, PreData, engines, publishing. Never imports ComfyUI.

Other parts import these names from here, not from the modules below.
"""
from .engines import ENGINES, MEMORY_MODES, SONIC_DTYPES, free_models, generate
from .errors import InputError, MissingWeightsError, SonicFlowError, StorageError
from .frames import ArrayFrames, FrameSequence, RenderedFrames
from .media.audio import Audio, load_audio
from .media.encode import PRESETS, VideoInfo, encode_mp4, probe_video
from .media.image import load_image
from .pipeline import make_video
from .predata import NO_FACE_MODES, PreData, prepare
from .provenance import provenance_metadata, read_provenance
from .publish import SINKS, Published, publish_local
from .publish.labels import LABEL_MODES, check_labels, label_frames_and_metadata
from .publish.s3 import publish_s3, s3_client
from .sync import SyncReport, measure_sync

__all__ = ["ENGINES", "MEMORY_MODES", "SONIC_DTYPES", "free_models", "generate", "InputError", "MissingWeightsError", "SonicFlowError", "StorageError", "ArrayFrames",
           "FrameSequence", "RenderedFrames", "Audio", "load_audio", "PRESETS", "VideoInfo", "encode_mp4",
           "probe_video", "load_image", "make_video", "NO_FACE_MODES", "PreData", "prepare", "provenance_metadata",
           "read_provenance", "SINKS", "Published", "publish_local", "publish_s3", "s3_client", "LABEL_MODES", "check_labels", "label_frames_and_metadata", "SyncReport", "measure_sync"]
