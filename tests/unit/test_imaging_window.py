"""vmed.imaging.window: the DICOM VOI functions and min-max scaling, against hand-worked values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vmed.errors import UserInputError
from vmed.imaging import WINDOW_PRESETS
from vmed.imaging.window import apply_window, minmax_to_uint8, resolve_window


def test_presets_are_center_width_in_hu():
    assert WINDOW_PRESETS == {
        "lung": (-600.0, 1500.0),
        "soft-tissue": (40.0, 400.0),
        "bone": (400.0, 1800.0),
        "brain": (40.0, 80.0),
    }


def test_linear_window_edges_and_middle():
    # center 40, width 80 (brain): bottom edge c - 0.5 - 39.5 = 0, top edge c - 0.5 + 39.5 = 79
    x = np.array([-1000.0, 0.0, 0.01, 39.5, 79.0, 79.01, 3000.0])
    out = apply_window(x, 40, 80)
    middle = math.floor(((39.5 - 39.5) / 79 + 0.5) * 255 + 0.5)
    assert list(out) == [0, 0, 0, middle, 255, 255, 255]
    assert middle == 128
    assert out.dtype == np.uint8 and out.shape == x.shape


def test_width_one_is_a_threshold_and_other_functions():
    assert list(apply_window(np.array([9.5, 9.51]), 10, 1)) == [0, 255]
    # LINEAR_EXACT: ((x - c) / w + 0.5) * 255, clipped
    assert list(apply_window(np.array([-60.0, 0.0, 60.0]), 0, 100, "LINEAR_EXACT")) == [0, 128, 255]
    # SIGMOID: 255 / (1 + exp(-4 (x - c) / w))
    expected = math.floor(255 / (1 + math.exp(-4 * 25 / 100)) + 0.5)
    assert apply_window(np.array([25.0]), 0, 100, "SIGMOID")[0] == expected == 186


def test_minmax_handles_constant_and_nan():
    assert list(minmax_to_uint8(np.array([5.0, 6.0, 7.0]))) == [0, 128, 255]
    assert list(minmax_to_uint8(np.array([3, 3, 3]))) == [0, 0, 0]
    assert list(minmax_to_uint8(np.array([np.nan, 0.0, 10.0]))) == [0, 0, 255]


def test_resolve_window_validates():
    assert resolve_window(None, None) is None
    assert resolve_window(None, "bone") == (400.0, 1800.0)
    assert resolve_window(("40", 400), None) == (40.0, 400.0)
    for window, preset, message in [
        ((40, 400), "lung", "not both"),
        (None, "Lung", "unknown window preset"),
        ((40, 0.5), None, "at least 1"),
        ((float("nan"), 10), None, "finite"),
        ((1, 2, 3), None, "two numbers"),
    ]:
        with pytest.raises(UserInputError, match=message):
            resolve_window(window, preset)
