"""The conversion core shared by the grouped (``vmed.data.build``) and streamed
(``vmed.data.converters.streaming``) paths: the job, the report, image checks and placement, leak finding.

- ``ConvertJob``: every option of one ``vmed data convert`` run, checked once (``check``), never mutated.
- ``ConvertReport``: what ``report.json`` holds and what the CLI prints; it alone writes the leak warning,
  the image-disjoint rule and the example caps.
- ``ImageChecker`` / ``check_image``: is an image usable (full decode or header only).
- ``ImagePlacer``: the record's ``image`` field; ``--copy-images`` copies only to paths that resolve inside
  ``OUTPUT/images`` (an image name such as ``../../x/evil.jpg``, an absolute path, or a symlink that leads
  out is refused, and the caller skips and counts the row as ``image_path_unsafe``).
- ``find_leaks`` / ``hold_out_targets``: images in more than one split, by name and by content, and where
  image-disjoint moves them.
- ``summarize_safely``: one record's summarizer failure is counted, not fatal.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from vmed._io import sha256_file
from vmed.constants import SPLITS
from vmed.data.converters.base import ConvertOptions, Tally
from vmed.errors import UserInputError, VmedError
from vmed.imaging import SUPPORTED_FORMATS, ImageError, load_image, sniff_format

if TYPE_CHECKING:
    from vmed.data.schema import Dialogue
    from vmed.data.summaries import Summarizer

# lazy: tqdm is imported only when a progress bar is drawn

__all__ = [
    "ConvertJob",
    "Conversion",
    "ConvertReport",
    "ImageChecker",
    "ImagePlacer",
    "check_image",
    "find_leaks",
    "hold_out_targets",
    "split_order",
    "summarize_safely",
    "progress",
    "SPLIT_POLICIES",
    "FULL_CHECK_LIMIT",
    "HOLD_OUT_RANK",
    "EXAMPLES",
    "DEFAULT_VALIDATION_FRACTION",
]

SPLIT_POLICIES = ("keep", "image-disjoint")
FULL_CHECK_LIMIT = 5000
"""Distinct images up to which every image is fully decoded; above, existence + header only."""
HOLD_OUT_RANK = {"train": 0, "validation": 1, "test": 2}
"""image-disjoint moves a leaked image to its highest-ranked split."""
EXAMPLES = 20
"""Cap on the lists of examples (images, records) in report.json."""
DEFAULT_VALIDATION_FRACTION = 0.1
"""Share of the train images carved into a validation split where the dataset has none."""
MOVE_RULE = "a leaked image moves, with all its rows, to the most held-out split it appears in (test > validation > train)"


@dataclass(frozen=True)
class ConvertJob:
    """One conversion: the dataset, where it goes, and every choice that shapes the output."""

    format: str
    input: Path
    output: Path
    options: ConvertOptions = field(default_factory=ConvertOptions)  # type: ignore[assignment]  # None -> defaults
    """What the dataset converter acts on (language, frames, split, image root)."""
    summarizer: "Summarizer | None" = None
    """None: the template summarizer."""
    split_policy: str = "keep"
    allow_missing_images: bool = False
    copy_images: bool = False
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION
    """Grouped formats without a validation split (VQA-RAD, ...): share of train images carved out; 0 disables."""
    seed: int = 0
    """Seed of the validation carve."""
    progress: bool = True

    def __post_init__(self) -> None:
        if self.options is None:  # convert(..., options=None) means the defaults
            object.__setattr__(self, "options", ConvertOptions())

    def check(self, formats: Iterable[str]) -> None:
        """Raise UserInputError for an option or path that cannot work, before anything is written."""
        formats = list(formats)
        if self.format not in formats:
            raise UserInputError(f"--format {self.format!r} is not known; choose one of {', '.join(formats)}")
        if self.split_policy not in SPLIT_POLICIES:
            raise UserInputError(f"--split-policy {self.split_policy!r}: choose one of {', '.join(SPLIT_POLICIES)}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise UserInputError(f"--validation-fraction {self.validation_fraction}: give a share in [0, 1), e.g. 0.1 (0 disables)")
        if not self.input.exists():
            raise UserInputError(f"--input {self.input}: no such file or folder")
        out = self.output
        if out.exists() and not out.is_dir():
            raise UserInputError(f"--output {out}: is a file; give a folder (it will hold train.jsonl, test.jsonl, report.json)")
        for parent in out.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise UserInputError(f"--output {out}: {parent} is a file, so the folder cannot be made there")
                break

    def report_options(self, summarizer_name: str) -> dict[str, Any]:
        return {
            "split_policy": self.split_policy,
            "lang": self.options.lang,
            "include_frames": self.options.include_frames,
            "allow_missing_images": self.allow_missing_images,
            "copy_images": self.copy_images,
            "summarizer": summarizer_name,
            "validation_fraction": self.validation_fraction,
            "seed": self.seed,
        }


@dataclass
class Conversion:
    """One run in progress, handed to the grouped and the streamed paths: the job and what it resolved to."""

    job: ConvertJob
    converter: Any
    """The dataset converter (``vmed.data.converters.CONVERTERS[job.format]``)."""
    options: ConvertOptions
    """The job's converter options, with ``images_dir`` set to ``OUTPUT/images`` (a copy; the job is unchanged)."""
    report: "ConvertReport"
    summarizer: "Summarizer"
    place: "ImagePlacer"

    def summarize(self, d: "Dialogue") -> str | None:
        return summarize_safely(self.summarizer, d, self.report)


@dataclass
class ConvertReport:
    """What ``report.json`` holds (``to_dict``) and what the CLI prints (``lines``)."""

    format: str
    input: str
    output: str
    options: dict[str, Any]
    splits: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    leaks: dict[str, Any] = field(default_factory=dict)
    moved: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] = field(default_factory=dict)
    """The carved validation split (rule, fraction, seed, images, rows), when one was carved."""
    missing_images_kept: dict[str, Any] = field(default_factory=dict)
    summaries: dict[str, Any] = field(default_factory=dict)
    summary_errors: dict[str, Any] = field(default_factory=dict)
    """Records whose summarizer raised: count and the first examples; their summary is null."""
    warnings: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    def set_moved(self, images: int, by_direction: Counter, moves: list[dict[str, Any]]) -> None:
        self.moved = {"rule": MOVE_RULE, "images": images, "rows": sum(by_direction.values()),
                      "by_direction": dict(by_direction), "list": moves}

    def set_missing_kept(self, count: int, examples: Iterable[str]) -> None:
        if count:
            self.missing_images_kept = {"count": count, "examples": sorted(set(examples))[:EXAMPLES]}

    def note_summary_error(self, record_id: str, exc: Exception) -> None:
        errors = self.summary_errors.setdefault("count", 0)
        self.summary_errors["count"] = errors + 1
        examples = self.summary_errors.setdefault("examples", [])
        if len(examples) < EXAMPLES:
            examples.append(f"{record_id}: {type(exc).__name__}: {exc}")

    def fill_splits(self, tally: Tally, kept: Counter, records: Counter, images: dict[str, int],
                    extra: dict[str, dict[str, Any]] | None = None) -> None:
        """Per-split counts (rows read/kept, records, images, skipped by reason) and the total skipped."""
        total: Counter = Counter()
        for split in split_order(set(tally.read) | set(records) | set(tally.skipped)):
            skipped = dict(sorted(tally.skipped.get(split, Counter()).items()))
            total.update(skipped)
            self.splits[split] = {"rows_read": tally.read.get(split, 0), "rows_kept": kept.get(split, 0),
                                  "records": records.get(split, 0), "images": images.get(split, 0), "skipped": skipped,
                                  **(extra or {}).get(split, {})}
            if tally.examples.get(split):
                self.splits[split]["skipped_examples"] = tally.examples[split]
        self.skipped = dict(sorted(total.items()))

    def finish(self, split_policy: str) -> None:
        """Add the warnings that follow from the counts (leaks kept, summarizer errors)."""
        if self.leaks.get("images") and split_policy == "keep":
            pairs = ", ".join(f"{k} {v}" for k, v in self.leaks.get("split_pairs", {}).items())
            self.warnings.append(
                f"{self.leaks['images']} images appear in more than one split ({pairs}): evaluation on these images is "
                "not on unseen images. The official split is kept; use --split-policy image-disjoint to remove the leak."
            )
        if self.summary_errors.get("count"):
            self.warnings.append(
                f"the summarizer failed on {self.summary_errors['count']} records (first: {self.summary_errors['examples'][0]}); "
                "they are kept with summary null (report.json -> summary_errors). This is a bug in the summarizer: please report it."
            )

    def lines(self) -> list[str]:
        out = []
        for split, s in self.splits.items():
            skipped = ", ".join(f"{k} {v}" for k, v in sorted(s["skipped"].items())) or "none"
            out.append(
                f"{split}: {s['rows_read']} rows read, {s['rows_kept']} kept as turns in {s['records']} records "
                f"({s['images']} images); skipped: {skipped}"
            )
            for reason in _MALFORMED:
                first = s.get("skipped_examples", {}).get(reason)
                if first:
                    out.append(f"  {reason}: first at {first[0]}")
        leak = self.leaks
        if leak.get("images"):
            out.append(
                f"leaks: {leak['images']} images appear in more than one split "
                f"({leak['by_name']} by file name, {leak['by_content']} by content hash)"
            )
        if self.moved.get("images"):
            out.append(f"image-disjoint: moved {self.moved['images']} images ({self.moved['rows']} rows): {self.moved['by_direction']}")
        if self.validation.get("images"):
            v = self.validation
            out.append(f"validation: carved {v['images']} of {v['candidates']} train-only images ({v['rows']} rows), "
                       f"fraction {v['fraction']}, seed {v['seed']}")
        if self.missing_images_kept.get("count"):
            out.append(f"kept {self.missing_images_kept['count']} records whose image is missing or unreadable (--allow-missing-images)")
        sm = self.summaries
        if sm:
            out.append(f"summaries ({sm.get('summarizer')}): " + ", ".join(f"{k} {v}" for k, v in sm.items() if k != "summarizer"))
        return out


_MALFORMED = ("bad_row", "bad_record", "bad_json", "not_utf8", "image_path_unsafe", "unreadable_row_group")
"""Skip reasons whose first example the CLI prints, so that a user can find and fix the input."""


def split_order(names: Iterable[str]) -> list[str]:
    """train, validation, test, then any other split name alphabetically."""
    return sorted(set(names), key=lambda s: (SPLITS.index(s) if s in SPLITS else len(SPLITS), s))


def check_image(path: str | os.PathLike | None, full: bool) -> str | None:
    """None if the image is usable, else the skip reason ``image_missing`` or ``image_unreadable``.

    ``full`` decodes the image with ``vmed.imaging.load_image``; otherwise only the header is read.
    """
    if path is None or not os.path.isfile(path):
        return "image_missing"

    if full:
        try:
            load_image(Path(path))
        except ImageError:  # vmed.imaging types every decoder failure (vmed.imaging.guard)
            return "image_unreadable"
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return "image_unreadable"
    return None if sniff_format(head) in SUPPORTED_FORMATS else "image_unreadable"


class ImageChecker:
    """``check_image`` with a per-path cache (bounded, so that streaming memory stays flat)."""

    def __init__(self, full: bool, maxsize: int = 65536):
        self.full = full
        self.maxsize = maxsize
        self._cache: OrderedDict[str | Path, str | None] = OrderedDict()

    def __call__(self, path: str | Path | None) -> str | None:
        if path is None:
            return "image_missing"
        if path in self._cache:
            self._cache.move_to_end(path)
            return self._cache[path]
        result = check_image(path, self.full)
        self._cache[path] = result
        if len(self._cache) > self.maxsize:
            self._cache.popitem(last=False)
        return result


class ImagePlacer:
    """Turns an image's dataset path into the record's ``image`` field (relative to the output dir).

    With ``copy``, the image is copied to ``OUTPUT/images/<key>``; ``unsafe(key)`` says whether that
    destination would resolve outside ``OUTPUT/images`` (the caller then skips the row).
    """

    def __init__(self, out: Path, copy: bool):
        self.out = os.path.abspath(out)
        self.copy = copy
        self._images = Path(self.out) / "images"
        self._images_real = self._images.resolve()
        self._rel_dirs: dict[str, str] = {}

    def unsafe(self, key: str | None) -> bool:
        """True when copying ``key`` would write outside ``OUTPUT/images`` (absolute, ``..``, NUL, symlinks)."""
        if not self.copy or not key:
            return False
        if "\x00" in key or os.path.isabs(key) or Path(key).drive:
            return True
        dest = (self._images / key).resolve()
        return dest == self._images_real or not dest.is_relative_to(self._images_real)

    def __call__(self, key: str | None, path: str | Path | None) -> str | None:
        if path is None:
            return None
        if self.copy and key and os.path.isfile(path) and not self.unsafe(key):
            dest = self._images / key
            if not dest.exists():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
            return f"images/{key}"
        parent, name = os.path.split(os.path.abspath(path))
        rel = self._rel_dirs.get(parent)
        if rel is None:  # one relpath per folder: streamed inputs have 500K images in a few folders
            rel = os.path.relpath(parent, self.out)
            if len(self._rel_dirs) < 4096:
                self._rel_dirs[parent] = rel
        return name if rel == "." else os.path.join(rel, name)


def progress(total: int | None, desc: str, enabled: bool):
    """A tqdm bar on a terminal only."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=" rows", disable=not enabled or not sys.stderr.isatty(), mininterval=1.0)


def summarize_safely(summarizer: "Summarizer", d: "Dialogue", report: ConvertReport) -> str | None:
    """The record's summary, or None when the summarizer fails on it (counted in ``report.summary_errors``).

    A summarizer is a plug-in (template rules, an LLM behind an endpoint, a user's prompt): one record it
    cannot handle must not cost the other records of the run. Its own user-facing errors (``VmedError``:
    an unreachable endpoint, a bad prompt) still stop the run; any other exception is a summarizer bug,
    kept with its type and message in report.json and printed as a warning.
    """
    try:
        return summarizer.summarize(d)
    except VmedError:
        raise
    except Exception as e:  # noqa: BLE001 - a plug-in boundary, counted and reported (see the docstring)
        report.note_summary_error(d.id, e)
        return None


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def find_leaks(
    keys_by_split: dict[str, set[str]], hash_of: dict[str, str]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Images in more than one split, by name and by content.

    ``keys_by_split``: split -> image keys; ``hash_of``: key -> sha256 (for the images that exist; empty for
    the streamed formats, which match by name only).
    Returns (the report's ``leaks`` section, component root -> keys of each leaked image group).
    """
    uf = _UnionFind()
    by_hash: dict[str, str] = {}
    splits_of: dict[str, set[str]] = {}
    members: dict[str, set[str]] = {}
    name_splits: dict[str, set[str]] = {}
    content_splits: dict[str, set[str]] = {}
    for split, keys in keys_by_split.items():
        for k in keys:
            uf.find(k)
            name_splits.setdefault(k, set()).add(split)
            h = hash_of.get(k)
            if h is not None:
                content_splits.setdefault(h, set()).add(split)
                if h in by_hash:
                    uf.union(k, by_hash[h])
                else:
                    by_hash[h] = k
    for split, keys in keys_by_split.items():
        for k in keys:
            root = uf.find(k)
            splits_of.setdefault(root, set()).add(split)
            members.setdefault(root, set()).add(k)
    by_name = sorted(k for k, s in name_splits.items() if len(s) > 1)
    leaked_hashes = {h for h, s in content_splits.items() if len(s) > 1}
    groups = {root: sorted(members[root]) for root, s in splits_of.items() if len(s) > 1}
    pairs: Counter = Counter()
    for root in groups:
        s = split_order(splits_of[root])
        for i in range(len(s)):
            for j in range(i + 1, len(s)):
                pairs[f"{s[i]}/{s[j]}"] += 1
    section = {
        "images": len(groups),
        "by_name": len(by_name),
        "by_content": len(leaked_hashes),
        "split_pairs": dict(sorted(pairs.items())),
        "names": by_name,
        "content_groups": sorted(sorted({k for k in hash_of if hash_of[k] == h}) for h in leaked_hashes),
    }
    return section, groups


def hold_out_targets(leaked: dict[str, list[str]], keys_by_split: dict[str, set[str]]) -> dict[str, str]:
    """image key -> the split image-disjoint moves it to: the most held-out split its group appears in."""
    target: dict[str, str] = {}
    for keys in leaked.values():
        dests = {s for s, ks in keys_by_split.items() if any(k in ks for k in keys)}
        dest = max(dests, key=lambda s: HOLD_OUT_RANK.get(s, -1))
        for k in keys:
            target[k] = dest
    return target
