"""Rows -> per-image dialogues: grouping, normalisation, dedup, image checks, leaks, split policy, report.

``convert(fmt, input, output, ...)`` is what ``vmed data convert`` runs. Nothing is lost silently:
every row read is either a turn in the output or counted in ``report.json`` under a skip reason.

- **Grouping.** Rows are grouped by (split, image) into one record per image; exact duplicate
  (question, answer) pairs are merged (``duplicate``); empty answers are dropped (``empty_answer``).
- **Images.** A row whose image file is missing (``image_missing``) or unreadable
  (``image_unreadable``) is skipped unless ``allow_missing_images``. Up to ``FULL_CHECK_LIMIT``
  distinct images are fully decoded with ``vmed.imaging.load_image``; above that (and for the
  streamed formats) only existence and the file header are checked, so that 500K images are
  not decoded during conversion.
- **Leaks.** Images that appear in more than one split are found by name (the dataset's image key)
  and by content (sha256 of the file). ``split_policy="image-disjoint"`` moves every leaked image,
  with all its rows, to the most held-out split it appears in (test > validation > train): the
  official evaluation questions all stay in evaluation, and training never sees an evaluation image.
- **Turn order and summaries**: see ``converters.ordering`` and ``vmed.data.summaries``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from vmed.constants import SPLITS
from vmed.data.converters import CONVERTERS
from vmed.data.converters.base import ConvertOptions, QARow, Tally
from vmed.data.converters.ordering import order_turns
from vmed.data.schema import Dialogue, JsonlWriter, Turn
from vmed.data.summaries import Summarizer, TemplateSummarizer
from vmed.errors import UserInputError

__all__ = ["convert", "ConvertReport", "check_image", "sha256_file", "SPLIT_POLICIES", "FULL_CHECK_LIMIT", "HOLD_OUT_RANK"]

SPLIT_POLICIES = ("keep", "image-disjoint")
FULL_CHECK_LIMIT = 5000
"""Distinct images up to which every image is fully decoded; above, existence + header only."""
HOLD_OUT_RANK = {"train": 0, "validation": 1, "test": 2}
"""image-disjoint moves a leaked image to its highest-ranked split."""
_EXAMPLES = 20


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
    missing_images_kept: dict[str, Any] = field(default_factory=dict)
    summaries: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def lines(self) -> list[str]:
        out = []
        for split, s in self.splits.items():
            skipped = ", ".join(f"{k} {v}" for k, v in sorted(s["skipped"].items())) or "none"
            out.append(
                f"{split}: {s['rows_read']} rows read, {s['rows_kept']} kept as turns in {s['records']} records "
                f"({s['images']} images); skipped: {skipped}"
            )
        leak = self.leaks
        if leak.get("images"):
            out.append(
                f"leaks: {leak['images']} images appear in more than one split "
                f"({leak['by_name']} by file name, {leak['by_content']} by content hash)"
            )
        if self.moved.get("images"):
            out.append(f"image-disjoint: moved {self.moved['images']} images ({self.moved['rows']} rows): {self.moved['by_direction']}")
        if self.missing_images_kept.get("count"):
            out.append(f"kept {self.missing_images_kept['count']} records whose image is missing or unreadable (--allow-missing-images)")
        sm = self.summaries
        if sm:
            out.append(f"summaries ({sm.get('summarizer')}): " + ", ".join(f"{k} {v}" for k, v in sm.items() if k != "summarizer"))
        return out


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_image(path: str | os.PathLike | None, full: bool) -> str | None:
    """None if the image is usable, else the skip reason ``image_missing`` or ``image_unreadable``.

    ``full`` decodes the image with ``vmed.imaging.load_image``; otherwise only the header is read.
    """
    if path is None or not os.path.isfile(path):
        return "image_missing"
    from vmed.imaging import SUPPORTED_FORMATS, ImageError, load_image, sniff_format

    if full:
        try:
            load_image(Path(path))
        except (ImageError, OSError):
            return "image_unreadable"
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return "image_unreadable"
    return None if sniff_format(head) in SUPPORTED_FORMATS else "image_unreadable"


class _ImageChecker:
    """Caches check results per path (bounded, so streaming memory stays flat)."""

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


def _progress(total: int | None, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=" rows", disable=not enabled or not sys.stderr.isatty(), mininterval=1.0)


def _record_id(source: str, key: str, variant: str | None) -> str:
    stem = key.rsplit(".", 1)[0] if "." in Path(key).name else key
    if stem.endswith("/source"):  # SLAKE: xmlabN/source.jpg
        stem = stem[: -len("/source")]
    stem = stem.replace("/", "_")
    return f"{source}/{stem}" + (f"-{variant}" if variant else "")


class _ImagePlacer:
    """Turns an image's dataset path into the record's ``image`` field (relative to the output dir)."""

    def __init__(self, out: Path, copy: bool):
        self.out = os.path.abspath(out)
        self.copy = copy
        self._rel_dirs: dict[str, str] = {}

    def __call__(self, key: str | None, path: str | Path | None) -> str | None:
        if path is None:
            return None
        if self.copy and key and os.path.isfile(path):
            dest = Path(self.out) / "images" / key
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


def _split_order(names: Iterable[str]) -> list[str]:
    return sorted(set(names), key=lambda s: (SPLITS.index(s) if s in SPLITS else len(SPLITS), s))


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

    ``keys_by_split``: split -> image keys; ``hash_of``: key -> sha256 (for the images that exist).
    Returns (the report's ``leaks`` section, component root -> keys of each leaked image group).
    """
    uf = _UnionFind()
    by_hash: dict[str, str] = {}
    for keys in keys_by_split.values():
        for k in keys:
            uf.find(k)
            h = hash_of.get(k)
            if h is not None:
                if h in by_hash:
                    uf.union(k, by_hash[h])
                else:
                    by_hash[h] = k
    splits_of: dict[str, set[str]] = {}
    members: dict[str, set[str]] = {}
    name_splits: dict[str, set[str]] = {}
    for split, keys in keys_by_split.items():
        for k in keys:
            root = uf.find(k)
            splits_of.setdefault(root, set()).add(split)
            members.setdefault(root, set()).add(k)
            name_splits.setdefault(k, set()).add(split)
    by_name = sorted(k for k, s in name_splits.items() if len(s) > 1)
    content_splits: dict[str, set[str]] = {}
    for split, keys in keys_by_split.items():
        for k in keys:
            if k in hash_of:
                content_splits.setdefault(hash_of[k], set()).add(split)
    leaked_hashes = {h for h, s in content_splits.items() if len(s) > 1}
    by_content = sorted(k for k in hash_of if hash_of[k] in leaked_hashes and any(k in keys for keys in keys_by_split.values()))
    groups = {root: sorted(members[root]) for root, s in splits_of.items() if len(s) > 1}
    pairs = Counter()
    for root in groups:
        s = _split_order(splits_of[root])
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


def convert(
    fmt: str,
    input_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    summarizer: Summarizer | None = None,
    split_policy: str = "keep",
    options: ConvertOptions | None = None,
    allow_missing_images: bool = False,
    copy_images: bool = False,
    progress: bool = True,
) -> ConvertReport:
    """Convert a dataset into ``output_dir/{split}.jsonl`` + ``report.json``; return the report."""
    if fmt not in CONVERTERS:
        raise UserInputError(f"--format {fmt!r} is not known; choose one of {', '.join(CONVERTERS)}")
    if split_policy not in SPLIT_POLICIES:
        raise UserInputError(f"--split-policy {split_policy!r}: choose one of {', '.join(SPLIT_POLICIES)}")
    src = Path(input_path)
    if not src.exists():
        raise UserInputError(f"--input {src}: no such file or folder")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    opts = options or ConvertOptions()
    opts.images_dir = out / "images"
    summarizer = summarizer or TemplateSummarizer()
    conv = CONVERTERS[fmt]
    report = ConvertReport(
        format=fmt,
        input=str(src),
        output=str(out),
        options={
            "split_policy": split_policy,
            "lang": opts.lang,
            "include_frames": opts.include_frames,
            "allow_missing_images": allow_missing_images,
            "copy_images": copy_images,
            "summarizer": summarizer.name,
        },
    )
    place = _ImagePlacer(out, copy_images)
    if conv.streaming:
        from vmed.data.converters.streaming import convert_stream

        convert_stream(conv, src, out, opts, report, summarizer, split_policy, allow_missing_images, place, progress)
    else:
        _convert_grouped(conv, src, out, opts, report, summarizer, split_policy, allow_missing_images, place, progress)
    report.summaries = summarizer.stats()
    if report.leaks.get("images") and split_policy == "keep":
        pairs = ", ".join(f"{k} {v}" for k, v in report.leaks.get("split_pairs", {}).items())
        report.warnings.append(
            f"{report.leaks['images']} images appear in more than one split ({pairs}): evaluation on these images is "
            "not on unseen images. The official split is kept; use --split-policy image-disjoint to remove the leak."
        )
    import json

    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return report


def _convert_grouped(conv, src, out, opts, report, summarizer, split_policy, allow_missing, place, progress) -> None:
    tally = Tally()
    groups: dict[tuple[str, str, str | None], list[QARow]] = {}
    with _progress(None, f"reading {conv.name}", progress) as bar:
        for row in conv.read(src, opts, tally):
            bar.update(1)
            if not row.answer:
                tally.skip(row.split, "empty_answer", where=_where(row))
                continue
            if not row.question:
                tally.skip(row.split, "empty_question", where=_where(row))
                continue
            groups.setdefault((row.split, row.image_key, row.variant), []).append(row)

    paths = {key: rows[0].image_path for (_, key, _), rows in groups.items()}
    checker = _ImageChecker(full=len(paths) <= FULL_CHECK_LIMIT)
    problem = {key: checker(p) for key, p in paths.items()}
    kept_missing: list[str] = []
    for gkey in list(groups):
        split, key, _ = gkey
        if problem[key] is not None:
            if allow_missing:
                kept_missing.append(key)
            else:
                tally.skip(split, problem[key], len(groups.pop(gkey)), where=f"image {key}")
    hash_of = {k: sha256_file(p) for k, p in paths.items() if problem[k] is None and p is not None}

    keys_by_split: dict[str, set[str]] = {}
    for split, key, _ in groups:
        keys_by_split.setdefault(split, set()).add(key)
    report.leaks, leaked = find_leaks(keys_by_split, hash_of)

    target: dict[str, str] = {}
    if split_policy == "image-disjoint":
        for keys in leaked.values():
            splits = {s for s, k, _ in groups if k in keys}
            dest = max(splits, key=lambda s: HOLD_OUT_RANK.get(s, -1))
            for k in keys:
                target[k] = dest
    moved_list, by_dir = [], Counter()
    final: dict[tuple[str, str, str | None], list[QARow]] = {}
    for (split, key, variant), rows in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")):
        rows = _dedup(rows, split, tally)
        dest = target.get(key, split)
        if dest != split:
            moved_list.append({"image": key, "from": split, "to": dest, "rows": len(rows)})
            by_dir[f"{split}->{dest}"] += len(rows)
        final.setdefault((dest, key, variant), []).extend(rows)
    if split_policy == "image-disjoint":
        report.moved = {
            "rule": "a leaked image moves, with all its rows, to the most held-out split it appears in (test > validation > train)",
            "images": len({m["image"] for m in moved_list}),
            "rows": sum(m["rows"] for m in moved_list),
            "by_direction": dict(by_dir),
            "list": moved_list,
        }
    if kept_missing:
        report.missing_images_kept = {"count": len(set(kept_missing)), "examples": sorted(set(kept_missing))[:_EXAMPLES]}

    source = conv.name
    per_split: dict[str, list[Dialogue]] = {s: [] for s in tally.read}
    kept = Counter()
    for (split, key, variant), rows in final.items():
        ordered = order_turns(_dedup(rows, split, tally))  # again: a moved image may repeat a pair across splits
        meta: dict[str, Any] = {}
        for r in rows:
            for k, v in r.meta.items():
                meta.setdefault(k, v)
        if problem.get(key) is not None:
            meta["image_problem"] = problem[key]
        turns = [
            Turn(r.question, r.answer, r.answer_type, r.question_type, r.qid, r.alternatives) for r in ordered
        ]
        kept[split] += len(turns)
        d = Dialogue(
            id=_record_id(source, key, variant),
            image=place(key, rows[0].image_path),
            turns=turns,
            source=source,
            split=split,
            meta={"image_key": key, **meta},
        )
        per_split.setdefault(split, []).append(d)

    with _progress(sum(len(v) for v in per_split.values()), "summaries", progress) as bar:
        for split in _split_order(per_split):
            records = sorted(per_split[split], key=lambda d: d.id)
            with JsonlWriter(out / f"{split}.jsonl") as w:
                for d in records:
                    d.summary = summarizer.summarize(d)
                    w.write(d)
                    bar.update(1)
            report.files[split] = str(out / f"{split}.jsonl")
    _fill_split_stats(report, tally, kept, per_split)


def _where(row: QARow) -> str:
    return row.where + (f" (qid {row.qid})" if row.qid is not None else "")


def _dedup(rows: list[QARow], split: str, tally: Tally) -> list[QARow]:
    """Drop exact duplicate (question, answer) pairs, keeping the first; count them as ``duplicate``."""
    seen: set[tuple[str, str]] = set()
    out = []
    for r in rows:
        if (r.question, r.answer) in seen:
            tally.skip(split, "duplicate", where=_where(r))
            continue
        seen.add((r.question, r.answer))
        out.append(r)
    return out


def _fill_split_stats(report: ConvertReport, tally: Tally, kept: Counter, per_split: dict[str, list[Dialogue]]) -> None:
    total = Counter()
    for split in _split_order(set(tally.read) | set(per_split)):
        skipped = dict(sorted(tally.skipped.get(split, Counter()).items()))
        total.update(skipped)
        recs = per_split.get(split, [])
        report.splits[split] = {
            "rows_read": tally.read.get(split, 0),
            "rows_kept": kept.get(split, 0),
            "records": len(recs),
            "images": len({d.meta.get("image_key", d.image) for d in recs}),
            "skipped": skipped,
        }
        if tally.examples.get(split):
            report.splits[split]["skipped_examples"] = tally.examples[split]
    report.skipped = dict(sorted(total.items()))
