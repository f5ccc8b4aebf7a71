"""What SonicFlow's parts exchange, declared once: the nodes, the inference core, the bridge and the front door all
import these names from here. Dependency-free on purpose (standard library only): the bridge and the front door
must not load torch, OpenCV or the ComfyUI runtime to learn a limit or a header name.
"""
from __future__ import annotations

import re

# --- engines ----------------------------------------------------------------------------------------------------------
ENGINES = ("auto", "sonic", "lite")

# --- what a job may ask of the template (the nodes' widgets and the front door's API check the same ranges) ----------
SEED_MAX = 0xFFFFFFFF
MIN_RESOLUTION = (64, 2048, 64)   # the face crop's short side: smallest, largest, step (official 512)
MAX_URL = 2048                    # longest input or webhook URL accepted

# --- a workflow's batch-job interface (nodes/job.py declares it, queue_bridge/template.py fills it) -------------------
JOB_INPUT_NODE = "SonicFlowJobInput"
JOB_RESULT_NODE = "SonicFlowJobResult"
INPUT_KINDS = ("image", "audio", "video", "file", "string", "int", "float", "boolean")
FILE_KINDS = ("image", "audio", "video", "file")
RESULT_KEY = "sonicflow_result"  # key of the Job Result node's ui dict, read back from ComfyUI's /history

# --- AMQP message headers ---------------------------------------------------------------------------------------------
ATTEMPT_HEADER = "x-sonicflow-attempt"            # 1-based attempt of a job (retries add one)
LAST_ERROR_HEADER = "x-sonicflow-last-error"      # code of the failure that caused a retry
LAST_MESSAGE_HEADER = "x-sonicflow-last-message"
ERROR_CODE_HEADER = "x-sonicflow-error-code"      # on a dead letter the worker made
ERROR_MESSAGE_HEADER = "x-sonicflow-error-message"
WORKER_HEADER = "x-sonicflow-worker"              # which worker dead-lettered it
DEAD_AT_HEADER = "x-sonicflow-dead-at"            # when (seconds since the epoch)
REPLAYED_HEADER = "x-sonicflow-replayed"

# --- media ------------------------------------------------------------------------------------------------------------
MAX_PIXELS = 40_000_000       # 40 MP covers any camera portrait; 400 MP would need 1.2 GB as RGB
MIN_SIDE = 64
MAX_SIDE = 16384
MAX_AUDIO_SECONDS = 3600.0    # one hour; longer inputs are almost always a mistake (a whole podcast)
# A decoder's memory is seconds x rate x channels: bound all three, so a tiny file that declares an absurd rate or
# channel count (FLAC allows 655,350 Hz and 8 channels: 210 KB of silence can ask for 6 GB) cannot ask for gigabytes.
MAX_AUDIO_RATE = 192_000
MAX_AUDIO_CHANNELS = 2 * 4    # up to 7.1 surround (mixed down to mono/stereo on decode)
MAX_AUDIO_SAMPLES = int(MAX_AUDIO_SECONDS * 48_000 * 2)  # seconds x rate x channels: an hour of 48 kHz stereo


def audio_over_limits(rate: int, channels: int, seconds: float = 0.0) -> str | None:
    """Why audio of this rate, channel count and length is refused (None if it is not): what a decoder would need."""
    if not 0 < rate <= MAX_AUDIO_RATE:
        return f"a sample rate of {rate} Hz (at most {MAX_AUDIO_RATE} Hz)"
    if not 0 < channels <= MAX_AUDIO_CHANNELS:
        return f"{channels} channels (at most {MAX_AUDIO_CHANNELS})"
    if seconds * rate * channels > MAX_AUDIO_SAMPLES:
        return (f"{seconds:.0f} s x {rate} Hz x {channels} channels of samples (at most {MAX_AUDIO_SAMPLES:,}: "
                "an hour of 48 kHz stereo)")
    return None

# What each kind of file input accepts: format (media_format below) -> the extension it is stored under.
MEDIA_EXT = {"image": {"png": ".png", "jpeg": ".jpg", "webp": ".webp"},
             "audio": {"wav": ".wav", "mp3": ".mp3", "flac": ".flac", "ogg": ".ogg", "mp4": ".m4a"},
             "video": {"mp4": ".mp4", "webm": ".webm"}}
FORMAT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp", "wav": "audio/wav",
                "mp3": "audio/mpeg", "flac": "audio/flac", "ogg": "audio/ogg", "mp4": "audio/mp4",
                "webm": "video/webm"}
# Content types of files the bridge stores, by extension.
CONTENT_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".png": "image/png", ".jpg": "image/jpeg",
                 ".wav": "audio/wav", ".json": "application/json", ".txt": "text/plain"}


def media_format(head: bytes) -> str | None:
    """The container format of a file from its first bytes (a key of FORMAT_TYPES), or None."""
    head = head[:64]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return "mp3"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "webm"
    return None


# --- errors that cross the ComfyUI boundary ---------------------------------------------------------------------------
# A node's error reaches the bridge only as text in ComfyUI's history; the code travels in a fixed, parseable prefix.
_CODE = re.compile(r"\[sonicflow:([a-z0-9_]+)\]")


# Codes of node errors that say the worker's environment failed (an object store that is down, weights or libraries
# this ComfyUI lacks), not the job's inputs: the bridge retries those (elsewhere, later) instead of refusing the job.
ENVIRONMENT_ERRORS = ("storage_error", "missing_weights", "missing_dependency")


def tag_error(code: str, message: str) -> str:
    """`message` with its machine-readable code, as a node raises it: '[sonicflow:no_face] SonicFlow PreData: ...'."""
    return f"[sonicflow:{code}] {message}"


def error_code(text: str) -> str | None:
    """The code of a tagged node error (see tag_error) found anywhere in `text`, else None."""
    m = _CODE.search(text or "")
    return m.group(1) if m else None
