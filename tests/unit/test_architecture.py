"""The dependency direction of docs/architecture.md, held as a test.

constants/errors/config <- imaging <- {data, model} <- {training, inference} <- evaluation <- serve <- app (cli, demo).
A module may import only packages of its own layer or a lower one; ``training`` and ``inference`` are
siblings and must not import each other (shared code lives below them). Imports inside functions count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "vmed"

LAYER = {
    "constants": 0,
    "errors": 0,
    "config": 0,
    "imaging": 1,
    "data": 2,
    "model": 2,
    "training": 3,
    "inference": 3,
    "evaluation": 4,
    "serve": 5,
    "demo": 6,
    "cli": 7,
    "__init__": 0,
    "__main__": 7,
}
SIBLINGS_APART = {("training", "inference"), ("inference", "training")}


def _area(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imported_areas(path: Path) -> set[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "vmed" and len(parts) > 1:
                found.add((parts[1], node.lineno))
    return found


MODULES = sorted(p for p in SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(SRC)) for p in MODULES])
def test_module_respects_dependency_direction(path: Path) -> None:
    area = _area(path)
    assert area in LAYER, f"{path}: new top-level area {area!r}: add it to LAYER in this test and to the architecture guide"
    bad = []
    for target, lineno in _imported_areas(path):
        assert target in LAYER, f"{path}:{lineno}: imports unknown area vmed.{target}"
        if LAYER[target] > LAYER[area] or (area, target) in SIBLINGS_APART:
            bad.append(f"{path.relative_to(SRC)}:{lineno} ({area}) imports vmed.{target}")
    assert not bad, "dependency direction violated:\n" + "\n".join(bad)


def test_no_module_is_too_long() -> None:
    long = [f"{p.relative_to(SRC)}: {n} lines" for p in MODULES if (n := len(p.read_text().splitlines())) > 600]
    assert not long, "modules over 600 lines (split them; see the architecture guide):\n" + "\n".join(long)
