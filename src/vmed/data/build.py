"""Rows -> per-image dialogues: grouping, normalisation, dedup, image checks, validation carve, leaks, report.

``convert(fmt, input, output, ...)`` (or ``run(ConvertJob(...))``) is what ``vmed data convert`` runs.
Nothing is lost silently: every row read is either a turn in the output or counted in ``report.json``
under a skip reason, and a malformed row costs only itself (see ``converters.reading``).

- **Grouping.** Rows are grouped by (split, image) into one record per image, named by the converter
  (``record_id``); exact duplicate (question, answer) pairs are merged (``duplicate``); empty answers are
  dropped (``empty_answer``).
- **Images.** A row whose image file is missing (``image_missing``) or unreadable
  (``image_unreadable``) is skipped unless ``allow_missing_images``; with ``copy_images``, an image name
  that would be copied outside ``OUTPUT/images`` is skipped (``image_path_unsafe``). Up to
  ``FULL_CHECK_LIMIT`` distinct images are fully decoded with ``vmed.imaging.load_image``; above that (and
  for the streamed formats) only existence and the file header are checked.
- **Validation carve.** A dataset without a validation split whose converter allows it (VQA-RAD, PathVQA
  without val, HF parquet) gets one: ``validation_fraction`` of the train images that appear in no other
  split (same content = same image), drawn with ``seed``, move with all their rows to ``validation``.
- **Leaks.** Images that appear in more than one split are found by name and by content (sha256).
  ``split_policy="image-disjoint"`` moves every leaked image, with all its rows, to the most held-out split
  it appears in (test > validation > train).
- **Turn order and summaries**: see ``converters.ordering`` and ``vmed.data.summaries``.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from vmed.data.conversion import (
    FULL_CHECK_LIMIT,
    HOLD_OUT_RANK,
    SPLIT_POLICIES,
    Conversion,
    ConvertJob,
    ConvertReport,
    ImageChecker,
    ImagePlacer,
    check_image,
    find_leaks,
    hold_out_targets,
    progress,
    split_order,
)
from vmed._io import sha256_file
from vmed.data.converters import CONVERTERS
from vmed.data.converters.base import QARow, Tally
from vmed.data.converters.ordering import order_turns
from vmed.data.converters.streaming import convert_stream
from vmed.data.schema import Dialogue, JsonlWriter, Turn
from vmed.data.summaries import TemplateSummarizer
from vmed.errors import UserInputError

__all__ = ["convert", "run", "ConvertJob", "ConvertReport", "check_image", "find_leaks",
           "SPLIT_POLICIES", "FULL_CHECK_LIMIT", "HOLD_OUT_RANK"]

GroupKey = tuple[str, str, "str | None"]
"""(split, image key, variant)."""


def convert(fmt: str, input_path: str | Path, output_dir: str | Path, **options: Any) -> ConvertReport:
    """Convert a dataset into ``output_dir/{split}.jsonl`` + ``report.json``; return the report.

    ``options`` are the other ``ConvertJob`` fields (summarizer, split_policy, options, allow_missing_images,
    copy_images, validation_fraction, seed, progress).
    """
    return run(ConvertJob(format=fmt, input=Path(input_path), output=Path(output_dir), **options))


def run(job: ConvertJob) -> ConvertReport:
    """Run one conversion job (see the module docstring); the job is not modified."""
    job.check(CONVERTERS)
    out = job.output
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserInputError(f"--output {out}: cannot create the folder ({e.strerror or type(e).__name__})") from None
    summarizer = job.summarizer or TemplateSummarizer()
    conv = CONVERTERS[job.format]
    report = ConvertReport(format=job.format, input=str(job.input), output=str(out),
                           options=job.report_options(summarizer.name))
    conversion = Conversion(job=job, converter=conv, options=replace(job.options, images_dir=out / "images"),
                            report=report, summarizer=summarizer, place=ImagePlacer(out, job.copy_images))
    if conv.streaming:
        convert_stream(conversion)
    else:
        _convert_grouped(conversion)
    report.summaries = summarizer.stats()
    report.finish(job.split_policy)
    report.write(out / "report.json")
    return report


def _convert_grouped(run: Conversion) -> None:
    tally = Tally()
    groups = _read_groups(run, tally)
    problem, hash_of = _check_images(run, groups, tally)
    groups = {k: _dedup(rows, k[0], tally) for k, rows in sorted(groups.items(), key=_group_order)}
    _carve_validation(run, groups, hash_of)
    keys_by_split: dict[str, set[str]] = {}
    for split, key, _ in groups:
        keys_by_split.setdefault(split, set()).add(key)
    run.report.leaks, leaked = find_leaks(keys_by_split, hash_of)
    target = hold_out_targets(leaked, keys_by_split) if run.job.split_policy == "image-disjoint" else {}
    moves, by_dir = [], Counter()
    final: dict[GroupKey, list[QARow]] = {}
    for (split, key, variant), rows in groups.items():
        dest = target.get(key, split)
        if dest != split:
            moves.append({"image": key, "from": split, "to": dest, "rows": len(rows)})
            by_dir[f"{split}->{dest}"] += len(rows)
        final.setdefault((dest, key, variant), []).extend(rows)
    if run.job.split_policy == "image-disjoint":
        run.report.set_moved(len({m["image"] for m in moves}), by_dir, moves)
    run.report.set_missing_kept(sum(1 for p in problem.values() if p is not None),
                                (k for k, p in problem.items() if p is not None))
    per_split, kept = _records(run, final, problem, tally)
    _write(run, per_split)
    records = Counter({s: len(v) for s, v in per_split.items()})
    images = {s: len({d.meta.get("image_key", d.image) for d in v}) for s, v in per_split.items()}
    run.report.fill_splits(tally, kept, records, images)


def _group_order(item: tuple[GroupKey, list[QARow]]) -> tuple[str, str, str]:
    (split, key, variant), _ = item
    return split, key, variant or ""


def _read_groups(run: Conversion, tally: Tally) -> dict[GroupKey, list[QARow]]:
    groups: dict[GroupKey, list[QARow]] = {}
    with progress(None, f"reading {run.converter.name}", run.job.progress) as bar:
        for row in run.converter.read(run.job.input, run.options, tally):
            bar.update(1)
            if not row.answer:
                tally.skip(row.split, "empty_answer", where=_where(row))
            elif not row.question:
                tally.skip(row.split, "empty_question", where=_where(row))
            else:
                groups.setdefault((row.split, row.image_key, row.variant), []).append(row)
    return groups


def _check_images(run: Conversion, groups: dict[GroupKey, list[QARow]], tally: Tally) -> tuple[dict[str, str | None], dict[str, str]]:
    """Check every image once; drop (and count) the groups whose image cannot be used.

    Returns (image key -> problem of the images kept in spite of one, image key -> sha256 of usable images).
    """
    paths = {key: rows[0].image_path for (_, key, _), rows in groups.items()}
    checker = ImageChecker(full=len(paths) <= FULL_CHECK_LIMIT)
    problem = {key: checker(p) for key, p in paths.items()}
    for gkey in list(groups):
        split, key, _ = gkey
        if run.place.unsafe(key):
            rows = groups.pop(gkey)
            tally.skip(split, "image_path_unsafe", len(rows),
                       where=f"{_where(rows[0])}: image {key!r} would be copied outside the output folder")
        elif problem[key] is not None and not run.job.allow_missing_images:
            tally.skip(split, problem[key], len(groups.pop(gkey)), where=f"image {key}")
    present = {key for _, key, _ in groups}
    kept_problem = {k: p for k, p in problem.items() if p is not None and k in present}
    hash_of = {k: sha256_file(p) for k, p in paths.items() if problem[k] is None and p is not None}
    return kept_problem, hash_of


def _carve_validation(run: Conversion, groups: dict[GroupKey, list[QARow]], hash_of: dict[str, str]) -> None:
    """Move a seeded share of the train-only images, with all their rows, to a new validation split.

    Done only where the converter allows it, the input has no validation rows, and the fraction is > 0.
    The unit is the image content (sha256; the name where the file is missing), so that no picture ends
    up in both train and validation; images that also appear in another split are not candidates.
    """
    job = run.job
    splits = {s for s, _, _ in groups}
    if not getattr(run.converter, "carves_validation", False) or job.validation_fraction <= 0 or "validation" in splits:
        return
    unit = {k: hash_of.get(k, k) for _, k, _ in groups}
    elsewhere = {unit[k] for s, k, _ in groups if s != "train"}
    candidates = sorted({unit[k] for s, k, _ in groups if s == "train"} - elsewhere)
    n = int(job.validation_fraction * len(candidates) + 0.5)
    if n == 0 or n >= len(candidates):
        return
    random.Random(job.seed).shuffle(candidates)
    chosen = set(candidates[:n])
    moved_images, rows = set(), 0
    for gkey in [g for g in groups if g[0] == "train" and unit[g[1]] in chosen]:
        group = groups.pop(gkey)
        groups[("validation", gkey[1], gkey[2])] = group
        moved_images.add(gkey[1])
        rows += len(group)
    run.report.validation = {
        "rule": "carved from train by image (same content = same image; only images in no other split), seeded",
        "from": "train", "fraction": job.validation_fraction, "seed": job.seed, "candidates": len(candidates),
        "images": len(moved_images), "rows": rows, "list": sorted(moved_images),
    }


def _records(run: Conversion, final: dict[GroupKey, list[QARow]], problem: dict[str, str | None],
             tally: Tally) -> tuple[dict[str, list[Dialogue]], Counter]:
    """One Dialogue per (split, image, variant), turns in conversation order; turns kept per split."""
    per_split: dict[str, list[Dialogue]] = {s: [] for s in tally.read if s != "unsplit"}  # a file per split read
    kept: Counter = Counter()
    for (split, key, variant), rows in final.items():
        ordered = order_turns(_dedup(rows, split, tally))  # again: a moved image may repeat a pair across splits
        meta: dict[str, Any] = {}
        for r in rows:
            for k, v in r.meta.items():
                meta.setdefault(k, v)
        if problem.get(key) is not None:
            meta["image_problem"] = problem[key]
        turns = [Turn(r.question, r.answer, r.answer_type, r.question_type, r.qid, r.alternatives) for r in ordered]
        kept[split] += len(turns)
        per_split.setdefault(split, []).append(Dialogue(
            id=run.converter.record_id(key, variant),
            image=run.place(key, rows[0].image_path),
            turns=turns,
            source=run.converter.name,
            split=split,
            meta={"image_key": key, **meta},
        ))
    return per_split, kept


def _write(run: Conversion, per_split: dict[str, list[Dialogue]]) -> None:
    out = run.job.output
    with progress(sum(len(v) for v in per_split.values()), "summaries", run.job.progress) as bar:
        for split in split_order(per_split):
            records = sorted(per_split[split], key=lambda d: d.id)
            with JsonlWriter(out / f"{split}.jsonl") as w:
                for d in records:
                    d.summary = run.summarize(d)
                    w.write(d)
                    bar.update(1)
            run.report.files[split] = str(out / f"{split}.jsonl")


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
