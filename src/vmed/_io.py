"""Small file helpers and file-name constants shared by every layer (imports nothing from vmed).

One owner each: the sha256 of a file, the atomic write (temp file in the same folder, fsync, rename), the
run-manifest file name and the run-format tag it carries.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "MANIFEST_NAME", "RUN_FORMAT", "atomic_open", "commit_atomic", "sha256_file", "tmp_path", "write_json_atomic",
    "write_text_atomic",
]

MANIFEST_NAME = "run_manifest.json"
"""The file that makes a folder a vmed training run (or an export of one)."""
RUN_FORMAT = "vmed-run/1"
"""The ``format`` value of a run manifest."""


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in ``chunk``-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def tmp_path(path: str | os.PathLike) -> Path:
    """The temp file an atomic write of ``path`` goes through: ``path.tmp`` in the same folder."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


def commit_atomic(f: IO[str], tmp: Path, path: Path) -> None:
    """Flush and fsync the open temp file ``f`` (at ``tmp``), close it and rename it onto ``path``."""
    f.flush()
    os.fsync(f.fileno())
    f.close()
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[IO[str]]:
    """Open ``path`` for writing text so that readers see the old file or the whole new one, never a part.

    Writes go to ``path.tmp`` in the same folder; on a clean exit it is fsynced and renamed onto ``path``;
    on an error the temp file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    tmp = tmp_path(path)
    f = tmp.open("w", encoding="utf-8")
    try:
        yield f
        commit_atomic(f, tmp, path)
    finally:
        f.close()
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see ``atomic_open``); returns the path."""
    with atomic_open(path) as f:
        f.write(text)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any, **dumps: Any) -> Path:
    """Write ``obj`` as indented JSON plus a newline to ``path`` atomically; ``dumps`` go to ``json.dumps``."""
    return write_text_atomic(path, json.dumps(obj, **{"indent": 2, **dumps}) + "\n")
