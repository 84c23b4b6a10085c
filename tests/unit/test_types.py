"""mypy over src/vmed, held to the recorded baseline tests/mypy_baseline.txt.

A new type error fails with its text; a fixed one fails too, until the baseline is rewritten, so the
baseline only ever shrinks by hand-checked steps. Entries are ``path: error: message [code]`` without line
numbers, so that edits above an old error do not count as a new one. Rewrite the baseline with
``python tests/unit/test_types.py --update`` (settings: ``[tool.mypy]`` in pyproject.toml).
"""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BASELINE = ROOT / "tests" / "mypy_baseline.txt"
_ERROR = re.compile(r"^(?P<path>[^:\s]+\.py):\d+(?::\d+)?: error: (?P<message>.*)$")


def mypy_errors() -> list[str]:
    """The errors mypy reports for the ``files`` of ``[tool.mypy]``, one ``path: error: message [code]`` each."""
    cache = Path(tempfile.gettempdir()) / "vmed-mypy-cache"  # warm runs take about 2 s instead of about 30
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(cache),
         "--no-error-summary", "--show-error-codes", "--no-pretty", "--no-color-output"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    if proc.returncode not in (0, 1):  # 2: mypy itself failed (bad config, crash)
        raise RuntimeError(f"mypy exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    found = []
    for line in proc.stdout.splitlines():
        m = _ERROR.match(line.strip())
        if m:
            found.append(f"{m['path']}: error: {' '.join(m['message'].split())}")
    return sorted(found)


def read_baseline() -> list[str]:
    return [line for line in BASELINE.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]


def test_no_new_type_errors() -> None:
    pytest.importorskip("mypy", reason="mypy is not installed (pip install -e '.[dev]')")
    found, baseline = collections.Counter(mypy_errors()), collections.Counter(read_baseline())
    new, fixed = sorted((found - baseline).elements()), sorted((baseline - found).elements())
    assert not new, (
        f"{len(new)} type error(s) not in {BASELINE.name}; fix them (or, for a deliberate case, a `# type: ignore[code]` "
        "with its reason):\n" + "\n".join(new)
    )
    assert not fixed, (
        f"{len(fixed)} error(s) of {BASELINE.name} are fixed; shrink the baseline with "
        "`python tests/unit/test_types.py --update`:\n" + "\n".join(fixed)
    )


if __name__ == "__main__":
    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/unit/test_types.py --update   (rewrites tests/mypy_baseline.txt)")
    errors = mypy_errors()
    BASELINE.write_text(
        "# mypy errors accepted for now (tests/unit/test_types.py); only ever remove lines.\n" + "".join(e + "\n" for e in errors),
        encoding="utf-8",
    )
    print(f"{BASELINE}: {len(errors)} errors")
