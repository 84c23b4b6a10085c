"""PathVQA (He et al. 2020, https://github.com/UCSD-AI4H/PathVQA): the official pickles.

Layout: ``qas/{train,val,test}/{split}_qa.pkl`` (a list of dicts with ``image``, ``question``,
``answer``) and ``images/{split}/{image}.jpg``. A closed question is one whose answer is yes or no.

Pickles can run code when loaded. ``safe_load_pickle`` uses an unpickler that resolves no class
or function at all except the plain builtins ``list``, ``dict``, ``str``, ``int``, ``float`` and
``bool``, so a pickle that tries anything else (``os.system``, ...) is refused before it runs.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any, Iterator

from vmed.data.converters.base import ConvertOptions, DataFormatError, QARow, Tally, image_stem, record_id
from vmed.data.converters.reading import RowGuard, iter_question_rows
from vmed.errors import UserInputError

__all__ = ["PathVqaConverter", "safe_load_pickle", "UnsafePickleError"]

_SPLITS = {"train": "train", "val": "validation", "test": "test"}
_ALLOWED = {("builtins", n) for n in ("list", "dict", "str", "int", "float", "bool")}
_PLAIN = (list, dict, str, int, float, bool, type(None))
_REQUIRED = ("image", "question", "answer")


class UnsafePickleError(DataFormatError):
    """A pickle that asks for something other than plain lists, dicts, strings and numbers."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"{self._path}: refused to load: the pickle asks for {module}.{name}, but a PathVQA pickle holds only "
            "lists and dicts of strings. Nothing was executed. Re-download the file from the official release."
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self._path}: refused to load: the pickle uses persistent ids. Nothing was executed.")


def _check_plain(obj: Any, path: Path) -> None:
    """Refuse anything but plain lists, dicts, strings, numbers and None, at any depth (iteratively: a row
    nested thousands of levels deep is data, rejected later as a bad row, not a crash or a refused file)."""
    stack = [obj]
    while stack:
        x = stack.pop()
        if not isinstance(x, _PLAIN):
            raise UnsafePickleError(f"{path}: refused: found a {type(x).__name__}; expected lists and dicts of strings")
        if isinstance(x, list):
            stack.extend(x)
        elif isinstance(x, dict):
            stack.extend(x.keys())
            stack.extend(x.values())


def safe_load_pickle(path: Path) -> Any:
    """Load a pickle of plain builtins only; raise UnsafePickleError (without executing it) otherwise."""
    data = path.read_bytes()
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), path).load()
    except UnsafePickleError:
        raise
    except Exception as e:  # a truncated or non-pickle file
        raise DataFormatError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None
    _check_plain(obj, path)
    return obj


class PathVqaConverter:
    name = "pathvqa"
    streaming = False
    carves_validation = True
    """The official release has train/val/test; a copy without val gets one carved from train by ``build``."""

    def record_id(self, image_key: str, variant: str | None) -> str:
        return record_id(self.name, image_stem(image_key), variant)

    def _files(self, path: Path) -> dict[str, Path]:
        if path.is_file():
            path = path.parents[2] if path.parent.parent.name == "qas" else path.parent
        root = path if (path / "qas").is_dir() else next((p.parent for p in path.glob("*/qas") if p.is_dir()), path)
        files = {
            split: root / "qas" / name / f"{name}_qa.pkl"
            for name, split in _SPLITS.items()
            if (root / "qas" / name / f"{name}_qa.pkl").is_file()
        }
        if not files:
            raise UserInputError(f"{path}: not a PathVQA folder. Expected qas/{{train,val,test}}/{{split}}_qa.pkl and images/{{split}}/.")
        return files

    def splits(self, path: Path, opts: ConvertOptions) -> list[str]:
        return list(self._files(path))

    def read(self, path: Path, opts: ConvertOptions, tally: Tally) -> Iterator[QARow]:
        for split, file in self._files(path).items():
            root = file.parents[2]
            folder = file.parent.name
            expected = f"PathVQA rows have {', '.join(_REQUIRED)}"
            guard = RowGuard(file, tally)
            for i, row in iter_question_rows(file, safe_load_pickle(file), _REQUIRED, expected, guard, split):
                image = str(row["image"] if row["image"] is not None else "").strip()
                if not image:
                    guard.reject(split, "bad_row", f"{file}, row {i}", "field 'image' is empty", late=True)
                    continue
                tally.saw(split)
                name = image if Path(image).suffix else f"{image}.jpg"
                key = f"{folder}/{name}"
                # the path is the key under images/, so that an absolute name cannot point the row elsewhere
                yield QARow.from_raw(
                    split, key, Path(root, "images", *key.split("/")), row["question"], row["answer"],
                    qid=i,
                    where=f"{file}, row {i}",
                )
            guard.finish()
