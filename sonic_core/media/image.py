"""Portrait loading with the checks a server needs: real image content in a format we accept (sniffed from the bytes:
only that format's decoder runs, never whichever of Pillow's decoders claims the file), bounded pixel count, EXIF
orientation."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sonicflow_contract import MAX_PIXELS, MEDIA_EXT, MIN_SIDE, media_format

from ..errors import InputError
from .sniff import describe_file


def check_dimensions(width: int, height: int, input_name: str = "image") -> None:
    if width * height > MAX_PIXELS:
        raise InputError(input_name, f"image is {width}x{height} ({width * height / 1e6:.0f} MP), over the "
                         f"{MAX_PIXELS / 1e6:.0f} MP limit",
                         "downscale it (a portrait needs no more than about 2000 px a side)", code="image_too_large")
    if min(width, height) < MIN_SIDE:
        raise InputError(input_name, f"image is only {width}x{height}",
                         f"use an image at least {MIN_SIDE} px on each side", code="image_too_small")


def load_image(path: str, input_name: str = "image") -> np.ndarray:
    """Decode an image file to RGB uint8 (H, W, 3), refusing oversize images before decoding their pixels."""
    if not os.path.isfile(path):
        raise InputError(input_name, f"file not found: {path}", "pick an existing file from the input folder")
    fix = "use a PNG, JPEG or WebP photo of a face"
    with open(path, "rb") as f:
        fmt = media_format(f.read(64))
    if fmt not in MEDIA_EXT["image"]:
        raise InputError(input_name, f"'{os.path.basename(path)}' is not a PNG, JPEG or WebP image "
                         f"({describe_file(path)})", fix, code="image_unreadable")
    try:
        with Image.open(path, formats=[fmt.upper()]) as im:  # Pillow's name of the sniffed format
            check_dimensions(im.width, im.height, input_name)  # reads the header only
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except InputError:
        raise
    except Image.DecompressionBombError as e:  # PIL refuses > 2x its own limit (179 MP) inside Image.open
        raise InputError(input_name, f"'{os.path.basename(path)}' is over the {MAX_PIXELS / 1e6:.0f} MP limit ({e})",
                         "downscale it (a portrait needs no more than about 2000 px a side)",
                         code="image_too_large") from e
    except UnidentifiedImageError as e:
        raise InputError(input_name, f"'{os.path.basename(path)}' is not a readable image ({describe_file(path)})", fix,
                         code="image_unreadable") from e
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt pixel data
        raise InputError(input_name, f"'{os.path.basename(path)}' is corrupt ({e})", fix,
                         code="image_unreadable") from e
