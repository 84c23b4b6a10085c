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
    "_io": 0,
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


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _import_graph() -> dict[str, set[str]]:
    """Module -> the vmed modules it imports (at any depth of the file, functions included).

    ``from vmed.a import b`` counts as importing ``vmed.a.b`` when that is a module, else ``vmed.a``.
    Importing a submodule is not counted as importing its parent package (as import-linter and pydeps
    count), so a package ``__init__`` that re-exports its modules is no cycle by itself.
    """
    names = {_module_name(p): p for p in MODULES}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        edges: set[str] = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                       for stmt in block.body for n in ast.walk(stmt)}  # `if TYPE_CHECKING:` imports never run
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    edges.add(target if target in names else base)
        graph[name] = {e for e in edges if e in names and e != name}
    return graph


def test_no_import_cycle_between_modules() -> None:
    """No module imports itself through others (functions' imports count: they run in the same process)."""
    graph = _import_graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


LONG_FUNCTION_LINES = 80


def test_long_functions_say_why() -> None:
    """A function over ~80 lines carries a `# long: <reason>` comment just above its def (or its decorators)."""
    unexplained = []
    for path in MODULES:
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                first = min([node.lineno] + [d.lineno for d in node.decorator_list])
                k, comments = first - 2, []
                while k >= 0 and lines[k].strip().startswith("#"):  # the comment block just above
                    comments.append(lines[k].strip())
                    k -= 1
                if length > LONG_FUNCTION_LINES and not any(c.startswith("# long:") for c in comments):
                    unexplained.append(f"{path.relative_to(SRC)}:{node.lineno} {node.name} ({length} lines)")
    assert not unexplained, "functions over 80 lines without a `# long:` reason above them:\n" + "\n".join(unexplained)


OWNED_STRINGS = {
    "run_manifest.json": "_io.py",  # MANIFEST_NAME
    "vmed-run/1": "_io.py",  # RUN_FORMAT
}
OWNED_SUBSTRINGS = {tok: "data/template.py" for tok in
                    ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|end_of_text|>")}
OWNED_CALLS = {"os.replace": "_io.py"}  # atomic writes go through vmed._io


def _code_strings(tree: ast.AST) -> list[tuple[str, int]]:
    """String constants of a module that are not docstrings (f-string pieces included)."""
    docs = {id(node.body[0].value) for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
            and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(n.value, n.lineno) for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_shared_meanings_have_one_home() -> None:
    """The manifest file name, the run format, the Llama-3 control tokens and the atomic rename are spelled in their
    owner module only (the architecture guide's "One owner per rule"); everyone else imports them."""
    stray = []
    for path in MODULES:
        rel = str(path.relative_to(SRC))
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for value, lineno in _code_strings(tree):
            owner = OWNED_STRINGS.get(value)
            if owner and rel != owner:
                stray.append(f"{rel}:{lineno} spells {value!r} (import it from vmed.{owner[:-3].replace('/', '.')})")
            for tok, owner in OWNED_SUBSTRINGS.items():
                if tok in value and rel != owner:
                    stray.append(f"{rel}:{lineno} spells {tok!r} (import it from vmed.data.template)")
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and ast.unparse(node.func) in OWNED_CALLS and rel != OWNED_CALLS[ast.unparse(node.func)]:
                stray.append(f"{rel}:{node.lineno} calls {ast.unparse(node.func)} (write through vmed._io.atomic_open / write_json_atomic)")
    assert not stray, "shared meanings spelled outside their owner:\n" + "\n".join(stray)
