"""``vmed image preview``: write the RGB picture the model would be given for an image file.

Adds its command to ``vmed.cli._apps.image_app``; the loader is imported inside the command so
that ``vmed --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vmed.cli._apps import image_app
from vmed.errors import UserInputError

# lazy: keeps vmed --help fast (each command imports what it runs inside its function)
__all__ = ["preview", "parse_window"]


def parse_window(text: str) -> tuple[float, float]:
    """Parse ``"center,width"`` (e.g. ``"-600,1500"``) into two floats, or raise UserInputError."""
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        return float(parts[0]), float(parts[1])
    except ValueError:
        raise UserInputError(f"--window expects CENTER,WIDTH (two numbers, e.g. -600,1500), got {text!r}") from None


def _as_model_sees(image, size: int):
    """``image`` through the image processor a vmed model saves (pad to square with the CLIP mean colour,
    bicubic resize to ``size``), stopping before rescaling and normalisation, as an RGB picture."""
    import numpy as np
    from PIL import Image
    from transformers import LlavaImageProcessorPil

    processor = LlavaImageProcessorPil(
        do_pad=True, size={"shortest_edge": size}, crop_size={"height": size, "width": size},
        do_rescale=False, do_normalize=False,
    )
    pixels = processor(images=image, return_tensors="np")["pixel_values"][0]  # (3, size, size)
    return Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8).transpose(1, 2, 0), "RGB")


@image_app.command("preview")
def preview(
    input: Path = typer.Argument(..., help="Image file: PNG, JPEG, BMP, TIFF or DICOM (format read from the content)."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the preview; must end with .png (lossless)."),
    window: Optional[str] = typer.Option(None, "--window", help="DICOM window CENTER,WIDTH in modality units (HU for CT), e.g. -600,1500."),
    preset: Optional[str] = typer.Option(None, "--preset", help="Named DICOM window: lung, soft-tissue, bone or brain."),
    frame: Optional[int] = typer.Option(
        None, "--frame", min=0, help="0-based frame of a multi-frame DICOM (default: middle) or TIFF page (default: first)."
    ),
    size: Optional[int] = typer.Option(
        None, "--size", min=1,
        help="Show exactly what the model sees at N px: padded to a square with the mean colour, then resized to NxN, "
        "as vmed's processors do (N is the model's image size, e.g. 336 for CLIP-L/336; default: no resize).",
    ),
) -> None:
    """Write the RGB image the model would be given (before the processor's resize, unless --size).

    --window and --preset change grayscale DICOM only; for other images a note says so.
    """
    from vmed.imaging import load_image, sniff_format

    if output.suffix.lower() != ".png":
        raise UserInputError(f"--output {output}: must end with .png, so that the preview is lossless")
    image = load_image(input, window=parse_window(window) if window is not None else None, preset=preset, frame=frame)
    if window is not None or preset is not None:
        with input.open("rb") as f:
            fmt = sniff_format(f.read(132))
        if fmt != "dicom":
            typer.echo(f"note: --window/--preset change grayscale DICOM only; {input} is {str(fmt).upper()}, written as is", err=True)
    if size is not None:
        image = _as_model_sees(image, size)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        image.save(output, format="PNG")
    except OSError as e:
        raise UserInputError(f"--output {output}: cannot write the preview ({e.strerror or type(e).__name__})") from None
    typer.echo(f"wrote {output} ({image.width}x{image.height} RGB)")
