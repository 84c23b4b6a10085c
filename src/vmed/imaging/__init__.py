"""vmed.imaging: the one medical image loader (PNG, JPEG, BMP, TIFF, DICOM) that feeds every path.

``load_image(path_or_bytes) -> RGB PIL.Image`` applies the rules documented in
docs/imaging.md: a pixel budget checked before decoding, DICOM modality LUT + VOI window +
MONOCHROME1 inversion, EXIF orientation, 16-bit min-max scaling and conversion of every mode to RGB.
"""

from vmed.imaging.errors import CorruptImage, ImageError, ImageTooLarge, MissingDecoder, UnsupportedImageFormat
from vmed.imaging.loader import SUPPORTED_FORMATS, load_dicom_hu, load_image, sniff_format
from vmed.imaging.window import WINDOW_PRESETS

__all__ = [
    "load_image",
    "load_dicom_hu",
    "sniff_format",
    "SUPPORTED_FORMATS",
    "WINDOW_PRESETS",
    "ImageError",
    "ImageTooLarge",
    "UnsupportedImageFormat",
    "CorruptImage",
    "MissingDecoder",
]
