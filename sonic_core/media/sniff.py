"""What a file really is, from its first bytes, for error messages that catch renamed files."""
from __future__ import annotations

_SIGNATURES = [
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"ID3", "MP3 audio"),
    (b"fLaC", "FLAC audio"),
    (b"OggS", "Ogg audio"),
    (b"\x1a\x45\xdf\xa3", "a Matroska/WebM file"),
    (b"<!DOCTYPE", "an HTML page"),
    (b"<html", "an HTML page"),
]


def sniff(head: bytes) -> str:
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "WAV audio"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image"
    if head[4:8] == b"ftyp":
        return "an MP4/MOV/M4A file"
    for magic, what in _SIGNATURES:
        if head.startswith(magic):
            return what
    if not head:
        return "an empty file"
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head[:64]):
        return "a text file"
    return "unknown binary data"


def describe_file(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return "it looks like " + sniff(f.read(64))
    except OSError as e:
        return f"unreadable: {e}"
