"""``vmed image preview``: writes the loader's RGB output; bad input is exit code 2 with one line."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from vmed.cli import main
from vmed.imaging import load_image

CT = get_testdata_file("CT_small.dcm")


def test_preview_writes_exactly_what_the_loader_returns(tmp_path, capsys):
    out = tmp_path / "sub" / "ct.png"
    assert main(["image", "preview", CT, "--output", str(out), "--window", "-600,1500"]) == 0
    assert "wrote" in capsys.readouterr().out
    written = Image.open(out)
    assert written.mode == "RGB" and written.size == (128, 128)
    np.testing.assert_array_equal(np.asarray(written), np.asarray(load_image(CT, window=(-600, 1500))))
    # the same as the lung preset
    lung = tmp_path / "lung.png"
    assert main(["image", "preview", CT, "--output", str(lung), "--preset", "lung"]) == 0
    np.testing.assert_array_equal(np.asarray(Image.open(lung)), np.asarray(written))


def test_size_shows_exactly_what_the_model_sees(tmp_path, capsys):
    """--size 64 is the tiny model's processor output (padded to a square with the mean colour), denormalised."""
    from vmed.model import build_preset

    src = tmp_path / "wide.png"
    Image.new("RGB", (120, 60), (10, 20, 30)).save(src)
    out = tmp_path / "small.png"
    assert main(["image", "preview", str(src), "-o", str(out), "--size", "64"]) == 0
    assert capsys.readouterr().err == ""
    shown = np.asarray(Image.open(out)).astype(float).transpose(2, 0, 1)
    ip = build_preset("tiny")[1].image_processor
    pixels = ip(images=Image.open(src), return_tensors="np")["pixel_values"][0]
    seen = (pixels * np.array(ip.image_std)[:, None, None] + np.array(ip.image_mean)[:, None, None]) * 255
    assert shown.shape == (3, 64, 64) and np.abs(shown - seen).max() <= 0.51
    assert tuple(shown[:, 0, 32]) == tuple(int(m * 255) for m in ip.image_mean)  # the padding band at the top
    assert tuple(shown[:, 32, 32]) == (10, 20, 30)
    # a window on a PNG changes nothing, and the user is told
    assert main(["image", "preview", str(src), "-o", str(out), "--preset", "bone"]) == 0
    assert "DICOM only" in capsys.readouterr().err
    assert Image.open(out).getpixel((0, 0)) == (10, 20, 30)


@pytest.mark.parametrize(
    "args, message",
    [
        (["{missing}"], "image file not found"),
        (["{text}"], "not a recognised image"),
        (["{ct}", "--window", "40"], "--window expects CENTER,WIDTH"),
        (["{ct}", "--preset", "liver"], "unknown window preset"),
        (["{ct}", "--frame", "4"], "frame 4 is out of range"),
    ],
)
def test_bad_input_is_exit_code_2_with_one_line(tmp_path, capsys, args, message):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    paths = {"missing": str(tmp_path / "missing.png"), "text": str(text), "ct": CT}
    argv = ["image", "preview", *[a.format(**paths) for a in args], "--output", str(tmp_path / "o.png")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o.png").exists()


def test_output_must_be_png_and_help_works(tmp_path, capsys):
    assert main(["image", "preview", CT, "--output", str(tmp_path / "o.jpg")]) == 2
    assert "must end with .png" in capsys.readouterr().err
    assert main(["image", "preview", "--help"]) == 0
    assert "--preset" in capsys.readouterr().out
