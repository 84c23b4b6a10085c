"""Display windowing: from modality values (HU for CT) to 8-bit grey levels.

Why not pydicom's ``apply_windowing``: it reads the window from the dataset and maps to the stored bit
range (BitsStored, rescale), while vmed needs caller windows and presets mapped to exactly 0..255; the
formulas below are the same standard's. VOI LUT *tables* do go through pydicom (``dicom.voi_table_to_uint8``).

The VOI window follows DICOM PS3.3 C.11.2.1.2 ("Window Center and Window Width"). With center ``c``,
width ``w`` (``w >= 1``) and the output range ``[y_min, y_max] = [0, 255]``, the default LINEAR
function is::

    x <= c - 0.5 - (w - 1) / 2   ->  y = y_min
    x >  c - 0.5 + (w - 1) / 2   ->  y = y_max
    otherwise                    ->  y = ((x - (c - 0.5)) / (w - 1) + 0.5) * (y_max - y_min) + y_min

A file may ask for LINEAR_EXACT (``y = ((x - c) / w + 0.5) * (y_max - y_min) + y_min``, clipped) or
SIGMOID (``y = (y_max - y_min) / (1 + exp(-4 (x - c) / w)) + y_min``) in VOILUTFunction
(C.11.2.1.3); named presets and explicit windows always use LINEAR. The result is rounded half
up to the nearest integer: ``floor(y + 0.5)``.

Without any window the values are stretched min-max to 0..255 (not clipped); a constant image
becomes all 0.
"""

from __future__ import annotations

import math

import numpy as np

from vmed.imaging.errors import ImageError

__all__ = ["WINDOW_PRESETS", "resolve_window", "apply_window", "minmax_to_uint8"]

WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "soft-tissue": (40.0, 400.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}
"""Named CT windows as (center, width) in Hounsfield units (the usual radiology values)."""

VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


def resolve_window(window: tuple[float, float] | None, preset: str | None) -> tuple[float, float] | None:
    """Validate the caller's window request and return (center, width), or None for "use the file's".

    Raises ``ImageError`` (a ``UserInputError``) for both given at once, an unknown preset, a non-finite value or a
    width below 1 (the DICOM minimum for the linear function).
    """
    if window is not None and preset is not None:
        raise ImageError("give either a window (center,width) or a preset, not both")
    if preset is not None:
        if preset not in WINDOW_PRESETS:
            known = ", ".join(WINDOW_PRESETS)
            raise ImageError(f"unknown window preset {preset!r}; expected one of: {known}")
        return WINDOW_PRESETS[preset]
    if window is None:
        return None
    try:
        center, width = (float(v) for v in window)
    except (TypeError, ValueError):
        raise ImageError(f"window must be two numbers (center, width), got {window!r}") from None
    if not (math.isfinite(center) and math.isfinite(width)):
        raise ImageError(f"window center and width must be finite numbers, got {center}, {width}")
    if width < 1:
        raise ImageError(f"window width must be at least 1 (DICOM PS3.3 C.11.2.1.2), got {width}")
    return center, width


def apply_window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """Map modality values to 0..255 with a VOI window.

    values: any shape, numeric (HU for CT). Returns uint8 of the same shape.
    ``function`` is LINEAR, LINEAR_EXACT or SIGMOID (see the module docstring); unknown names
    fall back to LINEAR, as the standard's default.
    """
    x = np.asarray(values, dtype=np.float64)
    y_min, y_max = 0.0, 255.0
    if function == "SIGMOID":
        y = (y_max - y_min) / (1.0 + np.exp(-4.0 * (x - center) / width)) + y_min
    elif function == "LINEAR_EXACT":
        y = np.clip(((x - center) / width + 0.5) * (y_max - y_min) + y_min, y_min, y_max)
    elif width <= 1:
        y = np.where(x <= center - 0.5, y_min, y_max)
    else:
        low = center - 0.5 - (width - 1) / 2
        high = center - 0.5 + (width - 1) / 2
        y = ((x - (center - 0.5)) / (width - 1) + 0.5) * (y_max - y_min) + y_min
        y = np.where(x <= low, y_min, np.where(x > high, y_max, y))
    return np.floor(np.clip(y, y_min, y_max) + 0.5).astype(np.uint8)


def minmax_to_uint8(values: np.ndarray) -> np.ndarray:
    """Stretch values linearly so that their minimum is 0 and their maximum 255 (no clipping).

    values: any shape, numeric; NaNs become 0. Returns uint8 of the same shape; a constant
    array becomes all 0.
    """
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    if not finite.any():
        return np.zeros(x.shape, dtype=np.uint8)
    lo, hi = float(x[finite].min()), float(x[finite].max())
    if hi <= lo:
        return np.zeros(x.shape, dtype=np.uint8)
    y = (np.where(finite, x, lo) - lo) * (255.0 / (hi - lo))
    return np.floor(y + 0.5).astype(np.uint8)
