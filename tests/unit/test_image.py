"""load_image: RGB uint8 out, EXIF orientation applied, oversize refused before decoding, clear errors."""
import time
import tracemalloc

import numpy as np
import pytest
from media_helpers import write_png_header_only, write_wav
from PIL import Image

from devtools import hostile_media
from sonic_core.errors import InputError
from sonic_core.media.image import load_image


def _bad(path):
    with pytest.raises(InputError) as e:
        load_image(path)
    assert str(e.value).startswith("image:") and "Fix:" in str(e.value) and e.value.input_name == "image"
    return e.value


def test_loads_the_example(example_image):
    img = load_image(example_image)
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8 and img.std() > 10


def test_grey_and_alpha_become_rgb(tmp_path):
    for mode in ("L", "RGBA"):
        path = str(tmp_path / f"{mode}.png")
        Image.new(mode, (80, 70), 200 if mode == "L" else (200, 10, 10, 0)).save(path)
        assert load_image(path).shape == (70, 80, 3)


def test_exif_orientation_is_applied(tmp_path):
    # Stored 200 wide x 120 high with a red block at the stored top-left; orientation 6 = display rotated 90 deg CW.
    a = np.full((120, 200, 3), 255, np.uint8)
    a[:40, :40] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = str(tmp_path / "rotated.jpg")
    Image.fromarray(a).save(path, exif=exif.tobytes(), quality=95)
    img = load_image(path)
    assert img.shape == (200, 120, 3)
    # After the rotation the stored top-left corner sits at the displayed top-right.
    assert tuple(img[5, -5]) == pytest.approx((255, 0, 0), abs=30)
    assert tuple(img[5, 5]) == pytest.approx((255, 255, 255), abs=30)


@pytest.mark.parametrize("side", [8000, 20000])  # 64 MP: our own limit; 400 MP: also over PIL's bomb limit
def test_oversize_is_refused_without_decoding(tmp_path, side):
    path = write_png_header_only(str(tmp_path / "huge.png"), side, side)
    assert (tmp_path / "huge.png").stat().st_size < 200
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        err = _bad(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err.code == "image_too_large", str(err)
    assert "40 MP limit" in str(err) and "downscale" in str(err)
    assert peak < 5_000_000  # decoding would need side*side bytes even as 1-bit-unpacked grey: 64 MB or more
    assert time.perf_counter() - t0 < 10  # generous: only a header is read


def test_truncated_png(tmp_path, example_image):
    data = open(example_image, "rb").read()
    path = tmp_path / "portrait.png"
    path.write_bytes(data[: len(data) // 2])
    err = _bad(str(path))
    assert err.code == "image_unreadable" and "corrupt" in str(err)


def test_wav_renamed_to_png(tmp_path):
    path = write_wav(str(tmp_path / "portrait.png"), np.zeros((1, 1600)), 16000)
    err = _bad(path)
    assert err.code == "image_unreadable" and "looks like WAV audio" in str(err) and "portrait.png" in str(err)


def test_tiny_image(tmp_path):
    path = str(tmp_path / "tiny.png")
    Image.new("RGB", (32, 200)).save(path)
    err = _bad(path)
    assert err.code == "image_too_small" and "32x200" in str(err)


def test_missing_file(tmp_path):
    assert "not found" in str(_bad(str(tmp_path / "nope.png")))


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    err = _bad(str(tmp_path / "empty.jpg"))
    assert err.code == "image_unreadable" and "empty file" in str(err)


def test_text_file(tmp_path):
    (tmp_path / "face.jpg").write_bytes(b"<!DOCTYPE html><html>Not Found</html>")
    assert "HTML page" in str(_bad(str(tmp_path / "face.jpg")))


def test_header_only_png_really_is_valid_enough(tmp_path):
    """Guard the helper: PIL reads its header, so the oversize test exercises the size check, not a parse error."""
    path = write_png_header_only(str(tmp_path / "small.png"), 300, 200)
    with Image.open(path) as im:
        assert im.size == (300, 200)


@pytest.mark.parametrize("fmt", ["TIFF", "BMP", "GIF", "PPM"])
def test_only_png_jpeg_and_webp_reach_a_decoder(tmp_path, fmt):
    """Pillow would open any of its formats; the loader runs only the decoder of the format the bytes are."""
    path = tmp_path / "portrait.png"
    path.write_bytes(hostile_media.image(fmt))
    err = _bad(str(path))
    assert err.code == "image_unreadable" and "is not a PNG, JPEG or WebP image" in str(err)
