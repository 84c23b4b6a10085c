"""vmed.imaging on raster files (PNG, JPEG, BMP, TIFF) made in the tests: modes, EXIF, budget, damage."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from vmed.errors import UserInputError
from vmed.imaging import (
    CorruptImage,
    ImageError,
    ImageTooLarge,
    UnsupportedImageFormat,
    load_image,
    sniff_format,
)


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def one_bit_png(path: Path, width: int, height: int) -> None:
    """A valid all-black 1-bit grayscale PNG, compressed row by row (never holds the image in memory)."""
    row = bytes(1 + (width + 7) // 8)  # filter byte 0 + packed zero pixels
    comp = zlib.compressobj(6)
    with path.open("wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)))
        block = row * 1000
        for _ in range(height // 1000):
            f.write(png_chunk(b"IDAT", comp.compress(block)))
        f.write(png_chunk(b"IDAT", comp.compress(row * (height % 1000)) + comp.flush()))
        f.write(png_chunk(b"IEND", b""))


def header_only_png(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with a tiny IDAT: cheap to make, huge if decoded."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + png_chunk(b"IEND", b"")


def test_sniff_format_reads_signatures_not_names():
    rgb = Image.new("RGB", (8, 8), (1, 2, 3))
    assert sniff_format(encode(rgb, "PNG")) == "png"
    assert sniff_format(encode(rgb, "JPEG")) == "jpeg"
    assert sniff_format(encode(rgb, "BMP")) == "bmp"
    assert sniff_format(encode(rgb, "TIFF")) == "tiff"
    assert sniff_format(encode(rgb, "GIF")) == "gif"
    assert sniff_format(b"\x00" * 128 + b"DICM" + b"\x02\x00") == "dicom"
    assert sniff_format(b"hello world") is None
    assert sniff_format(b"") is None


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF"])
def test_lossless_formats_round_trip_exactly(tmp_path, fmt):
    arr = np.random.default_rng(0).integers(0, 256, size=(12, 20, 3), dtype=np.uint8)
    path = tmp_path / f"img.{fmt.lower()}"
    path.write_bytes(encode(Image.fromarray(arr), fmt))
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (20, 12)
    np.testing.assert_array_equal(np.asarray(out), arr)
    np.testing.assert_array_equal(np.asarray(load_image(path.read_bytes())), arr)


def test_format_comes_from_content_not_extension(tmp_path):
    path = tmp_path / "scan.dcm"
    path.write_bytes(encode(Image.new("RGB", (4, 4), (9, 8, 7)), "PNG"))
    assert load_image(path).getpixel((0, 0)) == (9, 8, 7)


def test_16bit_grayscale_png_is_stretched_min_max_not_clipped(tmp_path):
    arr = np.array([[1000, 2000, 3000, 1500]], dtype=np.uint16).repeat(3, axis=0)
    path = tmp_path / "sixteen.png"
    Image.fromarray(arr).save(path)
    assert Image.open(path).mode in ("I;16", "I")  # really a 16-bit file
    out = np.asarray(load_image(path))
    expected = [np.floor((v - 1000) * 255 / 2000 + 0.5) for v in (1000, 2000, 3000, 1500)]
    assert expected == [0, 128, 255, 64]
    np.testing.assert_array_equal(out[0, :, 0], expected)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(path, quality=95)  # pure red in CMYK
    assert Image.open(path).mode == "CMYK"
    out = load_image(path)
    r, g, b = np.asarray(out).reshape(-1, 3).mean(axis=0)
    assert out.mode == "RGB" and r > 240 and g < 15 and b < 15


def test_exif_orientation_changes_the_pixel_layout(tmp_path):
    arr = np.zeros((20, 40), dtype=np.uint8)
    arr[:, 20:] = 255  # left half black, right half white
    image = Image.fromarray(arr).convert("RGB")
    plain, rotated = tmp_path / "plain.jpg", tmp_path / "rotated.jpg"
    image.save(plain, quality=95)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    image.save(rotated, quality=95, exif=exif)

    assert load_image(plain).size == (40, 20)
    out = np.asarray(load_image(rotated).convert("L")).astype(int)
    assert out.shape == (40, 20)  # now tall: 20 wide, 40 high
    assert out[:18].mean() < 20 and out[22:].mean() > 235  # the left (black) half is now on top


def test_palette_with_and_without_transparency(tmp_path):
    pal = Image.new("P", (4, 2))
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putdata([0, 1, 0, 1, 1, 0, 1, 0])
    out = np.asarray(load_image(encode(pal, "PNG")))
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[0, 1]) == (0, 0, 255)

    transparent = tmp_path / "transparent.png"
    pal.save(transparent, transparency=1)  # blue is transparent -> black background
    out = np.asarray(load_image(transparent))
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[0, 1]) == (0, 0, 0)


def test_alpha_is_composited_on_black():
    rgba = Image.new("RGBA", (3, 3), (200, 100, 50, 128))
    out = np.asarray(load_image(encode(rgba, "PNG"))).astype(int)
    expected = np.array([200, 100, 50]) * 128 / 255
    assert np.abs(out[1, 1] - expected).max() <= 1

    la = Image.new("LA", (3, 3), (240, 64))
    out = np.asarray(load_image(encode(la, "PNG"))).astype(int)
    assert abs(out[0, 0, 0] - 240 * 64 / 255) <= 1 and out[0, 0, 0] == out[0, 0, 2]


def test_multipage_tiff_frame_choice(tmp_path):
    pages = [Image.new("L", (6, 6), v) for v in (10, 20, 30)]
    path = tmp_path / "pages.tif"
    pages[0].save(path, save_all=True, append_images=pages[1:])
    assert load_image(path).getpixel((0, 0)) == (10, 10, 10)
    assert load_image(path, frame=2).getpixel((0, 0)) == (30, 30, 30)
    with pytest.raises(ImageError, match=r"frame 3 is out of range.*3 frame\(s\)"):
        load_image(path, frame=3)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_raises_corrupt_image_naming_it(tmp_path, fmt):
    arr = np.random.default_rng(1).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    data = encode(Image.fromarray(arr), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImage, match="cut"):
        load_image(path)
    with pytest.raises(CorruptImage, match="upload-7"):
        load_image(data[: len(data) // 2], name="upload-7")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_pixel_budget_refuses_before_decoding_with_both_numbers():
    with pytest.raises(ImageTooLarge, match=r"100x80 = 8,000 pixels.*limit of 1,000") as info:
        load_image(encode(Image.new("RGB", (100, 80)), "PNG"), max_pixels=1000)
    assert (info.value.pixels, info.value.limit) == (8000, 1000)
    assert isinstance(info.value, UserInputError)
    # 8000x8000 = 64 MP: above the default 50 MP budget, below Pillow's own limit. The IDAT is tiny,
    # so decoding would fail as corrupt: ImageTooLarge shows the size was refused first.
    with pytest.raises(ImageTooLarge, match="64,000,000 pixels.*50,000,000"):
        load_image(header_only_png(8000, 8000), name="big.png")


def test_pillow_decompression_bomb_becomes_image_too_large():
    with pytest.raises(ImageTooLarge, match=r"400,000,000 pixels.*limit of 50,000,000"):
        load_image(header_only_png(20000, 20000))
    with pytest.raises(ImageTooLarge, match=r"400,000,000 pixels.*MAX_IMAGE_PIXELS"):
        load_image(header_only_png(20000, 20000), max_pixels=10**12)
    # between Pillow's warning (89 MP) and error (179 MP) thresholds: the warning is refused too
    with pytest.raises(ImageTooLarge, match="100,000,000 pixels.*MAX_IMAGE_PIXELS"):
        load_image(header_only_png(10000, 10000), max_pixels=10**12)


_RSS_SCRIPT = """
import json, sys
from vmed.imaging import ImageTooLarge, load_image
def rss():
    # VmHWM: this process's peak RSS in KiB. (getrusage's ru_maxrss is not reset by exec on Linux,
    # so a child of a big pytest process would report the parent's peak.)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
result = {}
for key, path in (("huge", sys.argv[1]), ("over_budget", sys.argv[2])):
    before = rss()
    try:
        load_image(path)
        result[key] = None
    except ImageTooLarge:
        result[key] = rss() - before
before = rss()
result["control_size"] = load_image(sys.argv[3]).size
result["control"] = rss() - before
print(json.dumps(result))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="reads VmHWM from /proc/self/status (Linux)")
def test_huge_png_is_refused_without_allocating_it(tmp_path):
    huge, over, control = tmp_path / "huge.png", tmp_path / "over.png", tmp_path / "control.png"
    one_bit_png(huge, 20000, 20000)  # a real, decodable 400 MP image (~60 KB on disk): Pillow's limit refuses it
    one_bit_png(over, 8000, 8000)  # 64 MP: under Pillow's limit, over the 50 MP budget: vmed's header check refuses it
    one_bit_png(control, 5000, 5000)  # 25 MP: decodes, to show that the measurement sees allocations
    assert huge.stat().st_size < 2_000_000
    run = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(huge), str(over), str(control)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["control_size"] == [5000, 5000]
    assert result["control"] > 50_000  # decoding 25 MP (mode 1 + RGB) raises the peak by ~100 MB
    assert result["huge"] is not None and result["huge"] < 20_000  # refused; 400 MB were never allocated
    assert result["over_budget"] is not None and result["over_budget"] < 20_000  # refused; 64 MB were never allocated


def test_unsupported_formats_name_the_file_and_list_supported(tmp_path):
    gif = tmp_path / "anim.gif"
    Image.new("RGB", (4, 4)).save(gif)
    with pytest.raises(UnsupportedImageFormat, match=r"anim\.gif: a GIF file; supported formats are PNG, JPEG, BMP, TIFF and DICOM"):
        load_image(gif)
    with pytest.raises(UnsupportedImageFormat, match="notes: not a recognised image"):
        load_image(b"just some text", name="notes")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(UnsupportedImageFormat, match="empty"):
        load_image(empty)


def test_missing_file_and_bad_arguments():
    with pytest.raises(ImageError, match="nope.png: image file not found"):
        load_image("/definitely/missing/nope.png")
    png = encode(Image.new("RGB", (4, 4)), "PNG")
    # windows only change grayscale DICOM; one session setting serves PNG too
    assert load_image(png, preset="lung").tobytes() == load_image(png).tobytes()
    with pytest.raises(UserInputError, match="unknown window preset 'liver'"):
        load_image(png, preset="liver")
    with pytest.raises(ImageError, match="frame must be 0 or more"):
        load_image(png, frame=-1)
