"""Checking uploaded media by content, before anything is stored or queued (the front door's first gate).

Light on purpose (Pillow headers and PyAV, never torch): the front door runs beside the queue, not beside a GPU.
The format comes from the bytes (`sonicflow_contract.media_format`, the same sniffing the worker applies), never from
the file name or the declared Content-Type; a declared type or extension that disagrees with the bytes is refused as
mislabelled.

Checks, in order of cost: size limit -> magic bytes -> structure (trailing bytes after the image's end marker: a
polyglot; RIFF size of WAV/WebP) -> header dimensions and pixel count (before any pixel is decoded: decompression
bombs) -> full decode (truncated or corrupt data) -> audio duration by decoding, stopping as soon as it exceeds the
limit (a tiny FLAC of hours of silence is a bomb too), and refusing a sample rate or channel count no decoder should
be asked to hold (sonicflow_contract.audio_over_limits: a 210 KB FLAC may declare 655,350 Hz x 8 channels).
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass

from sonicflow_contract import FORMAT_TYPES, MAX_PIXELS, MAX_SIDE, MEDIA_EXT, MIN_SIDE, audio_over_limits, media_format

# What a client may declare for each format (Content-Type of the part, and the file name's extension).
DECLARED_TYPES = {
    "png": {"image/png", "image/x-png"}, "jpeg": {"image/jpeg", "image/jpg", "image/pjpeg"}, "webp": {"image/webp"},
    "wav": {"audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave"}, "mp3": {"audio/mpeg", "audio/mp3"},
    "flac": {"audio/flac", "audio/x-flac"}, "ogg": {"audio/ogg", "application/ogg", "audio/opus"},
    "mp4": {"audio/mp4", "audio/x-m4a", "audio/m4a", "audio/aac", "video/mp4"}}
EXTENSIONS = {"png": {".png"}, "jpeg": {".jpg", ".jpeg", ".jfif"}, "webp": {".webp"}, "wav": {".wav", ".wave"},
              "mp3": {".mp3"}, "flac": {".flac"}, "ogg": {".ogg", ".oga", ".opus"},
              "mp4": {".m4a", ".mp4", ".aac", ".mov"}}
GENERIC_TYPES = {"", "application/octet-stream", "binary/octet-stream"}


class MediaRejected(Exception):
    """An upload refused by content: `code` and HTTP `status` for the JSON error."""

    def __init__(self, code: str, message: str, status: int = 422, field: str | None = None):
        self.code, self.message, self.status, self.field = code, message, status, field
        super().__init__(f"{code}: {message}")


@dataclass
class Checked:
    kind: str  # image | audio
    format: str  # png, jpeg, webp, wav, mp3, flac, ogg, mp4
    content_type: str
    ext: str
    size: int
    width: int = 0
    height: int = 0
    duration_s: float = 0.0
    sample_rate: int = 0
    channels: int = 0


def check_filename(name: str | None, field: str) -> None:
    """A client's file name is never used to store anything, but one that tries to climb out of a folder is an attack,
    not a name: refuse it so it is seen (and logged) rather than silently dropped."""
    if not name:
        return
    if len(name) > 255 or any(c in name for c in "/\\:") or name.startswith("..") or name == "." \
            or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise MediaRejected("bad_filename", f"{field}: file name {name[:80]!r} contains a path, '..', or control "
                                            "characters; send a plain name such as face.png", 400, field)


def _check_declared(fmt: str, field: str, filename: str | None, content_type: str | None) -> None:
    ct = (content_type or "").split(";")[0].strip().lower()
    if ct not in GENERIC_TYPES and ct not in DECLARED_TYPES[fmt]:
        raise MediaRejected("media_type_mismatch", f"{field}: declared as {ct} but the bytes are {fmt}; send the file "
                                                   "with its real type", 415, field)
    if filename and "." in filename:
        ext = "." + filename.rsplit(".", 1)[1].lower()
        if ext not in EXTENSIONS[fmt]:
            raise MediaRejected("media_type_mismatch", f"{field}: named *{ext} but the bytes are {fmt}; rename it "
                                                       f"(*{sorted(EXTENSIONS[fmt])[0]})", 415, field)


# --- structure: where the file says it ends ---------------------------------------------------------------------------

def _png_end(data: bytes) -> int:
    pos = 8
    while pos + 8 <= len(data):
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        pos += 12 + length
        if ctype == b"IEND":
            return pos
    raise MediaRejected("media_corrupt", "PNG without an IEND chunk (truncated)")


def _jpeg_end(data: bytes) -> int:
    pos, n = 2, len(data)
    while pos < n:
        if data[pos] != 0xFF:
            raise MediaRejected("media_corrupt", f"JPEG: no marker at byte {pos}")
        while pos < n and data[pos] == 0xFF:
            pos += 1
        if pos >= n:
            break
        marker = data[pos]
        pos += 1
        if marker == 0xD9:
            return pos
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue
        if pos + 2 > n:
            break
        length = struct.unpack(">H", data[pos:pos + 2])[0]
        pos += length
        if marker == 0xDA:  # entropy-coded data follows until a marker that is not a stuffed 00 or a restart
            while pos + 1 < n:
                if data[pos] == 0xFF and data[pos + 1] != 0x00 and not (0xD0 <= data[pos + 1] <= 0xD7):
                    break
                pos += 1
    raise MediaRejected("media_corrupt", "JPEG without an end-of-image marker (truncated)")


def _riff_end(data: bytes) -> int:
    size = struct.unpack("<I", data[4:8])[0] + 8
    return size + (size & 1)


def _check_trailing(fmt: str, data: bytes, field: str) -> None:
    end = {"png": _png_end, "jpeg": _jpeg_end, "webp": _riff_end, "wav": _riff_end}.get(fmt)
    if end is None:
        return
    stop = end(data)
    if stop > len(data) + 1:
        raise MediaRejected("media_corrupt", f"{field}: {fmt} says it is {stop} bytes long but only {len(data)} "
                                             "arrived (truncated)", 422, field)
    tail = data[stop:]
    if tail.strip(b"\x00\r\n"):
        raise MediaRejected("polyglot", f"{field}: {len(tail)} bytes follow the end of the {fmt} data (a file "
                                        "hidden inside another); re-export the image or audio", 422, field)


# --- decoders ---------------------------------------------------------------------------------------------------------

def check_image(data: bytes, fmt: str, field: str) -> tuple[int, int]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data), formats=[fmt.upper()]) as im:  # Pillow's name: PNG, JPEG, WEBP
            w, h = im.size  # header only
            if w * h > MAX_PIXELS or max(w, h) > MAX_SIDE:
                raise MediaRejected("image_too_large", f"{field}: {w}x{h} ({w * h / 1e6:.0f} MP) is over the "
                                    f"{MAX_PIXELS / 1e6:.0f} MP / {MAX_SIDE} px limit; a portrait needs about 2000 px "
                                    "a side", 422, field)
            if min(w, h) < MIN_SIDE:
                raise MediaRejected("image_too_small", f"{field}: {w}x{h}; use at least {MIN_SIDE} px a side", 422,
                                    field)
            if getattr(im, "n_frames", 1) > 1:
                raise MediaRejected("unsupported_media", f"{field}: animated {fmt}; send a still photo", 415, field)
            im.load()  # every pixel decoded: truncated or corrupt data fails here
    except MediaRejected:
        raise
    except Image.DecompressionBombError as e:
        raise MediaRejected("image_too_large", f"{field}: {e}", 422, field) from None
    except Exception as e:  # noqa: BLE001 - any decoder error means the bytes are not a usable image
        raise MediaRejected("media_corrupt", f"{field}: the {fmt} image does not decode ({e})"[:300], 422, field) \
            from None
    return w, h


def _audio_too_large(field: str, why: str) -> MediaRejected:
    return MediaRejected("audio_too_large", f"{field}: {why}; re-export the speech as mono or stereo at 16-48 kHz",
                         422, field)


def check_audio(data: bytes, fmt: str, field: str, max_seconds: float, min_seconds: float) -> tuple[float, int, int]:
    import av

    seconds = 0.0
    try:
        with av.open(io.BytesIO(data), mode="r", format=fmt) as c:
            if not c.streams.audio:
                raise MediaRejected("unsupported_media", f"{field}: the {fmt} file has no audio stream", 415, field)
            stream = c.streams.audio[0]
            rate, channels = stream.rate or 0, stream.channels or 0
            why = audio_over_limits(rate, channels)  # from the header, before anything is decoded
            if why:
                raise _audio_too_large(field, why)
            for frame in c.decode(stream):  # count what really decodes, and stop at the limits: bounded work
                seconds += frame.samples / float(frame.sample_rate or rate)
                if seconds > max_seconds:
                    raise MediaRejected("audio_too_long", f"{field}: longer than the {max_seconds:.0f} s limit", 422,
                                        field)
                why = audio_over_limits(frame.sample_rate, frame.layout.nb_channels, seconds)  # it may change
                if why:
                    raise _audio_too_large(field, why)
    except MediaRejected:
        raise
    except Exception as e:  # noqa: BLE001 - FFmpeg's errors: the bytes are not decodable audio
        raise MediaRejected("media_corrupt", f"{field}: the {fmt} audio does not decode ({e})"[:300], 422, field) \
            from None
    if seconds < min_seconds:
        raise MediaRejected("audio_too_short", f"{field}: {seconds:.2f} s of audio; at least {min_seconds} s is "
                                               "needed", 422, field)
    return seconds, rate, channels


def check_media(data: bytes, kind: str, field: str, *, filename: str | None = None, content_type: str | None = None,
                max_bytes: int, max_audio_s: float = 600.0, min_audio_s: float = 0.2) -> Checked:
    """Check one upload; MediaRejected (with the HTTP status and a code) on the first problem."""
    check_filename(filename, field)
    if len(data) > max_bytes:
        raise MediaRejected("payload_too_large", f"{field}: {len(data)} bytes, over the {max_bytes} byte limit", 413,
                            field)
    if not data:
        raise MediaRejected("unsupported_media", f"{field}: empty file", 415, field)
    fmt = media_format(data)
    allowed = list(MEDIA_EXT[kind])
    if fmt not in allowed:
        raise MediaRejected("unsupported_media", f"{field}: expected {kind} ({', '.join(allowed)}), got "
                                                 f"{fmt or 'unknown bytes'}", 415, field)
    _check_declared(fmt, field, filename, content_type)
    _check_trailing(fmt, data, field)
    out = Checked(kind, fmt, FORMAT_TYPES[fmt], MEDIA_EXT[kind][fmt], len(data))
    if kind == "image":
        out.width, out.height = check_image(data, fmt, field)
    else:
        out.duration_s, out.sample_rate, out.channels = check_audio(data, fmt, field, max_audio_s, min_audio_s)
    return out
