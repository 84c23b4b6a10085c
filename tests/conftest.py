"""Test-suite setup shared by ``tests/unit`` and ``tests/integration``.

Having a conftest here makes pytest put ``tests/`` on ``sys.path`` (its default "prepend" import mode),
so that test modules in either folder can import the shared builders in ``tests/_serve_helpers.py``.
"""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("VMED_SHARED_DATA", REPO.parent / "shared" / "data"))
"""The real datasets next to the repository (``../shared/data``); ``VMED_SHARED_DATA`` points elsewhere."""


def real_data(name: str, marker_file: str) -> Path:
    """The folder ``SHARED_DATA/name``, or skip the test when that data is absent (the only reason to skip).

    Tests that use it carry ``pytest.mark.real_data``. Anything that fails after the data was found
    (a converter error, say) fails the test: it never turns into a skip.
    """
    path = SHARED_DATA / name
    if not (path / marker_file).is_file():
        pytest.skip(f"real data absent: {path / marker_file} not found (set VMED_SHARED_DATA to the folder holding {name}/)")
    return path
