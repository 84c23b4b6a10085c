"""Conversion of the streamed formats (LLaVA JSON, ROCO / LLaVA-Med alignment captions).

Records are written as they are read, so memory stays flat whatever the input size: no grouping
across records, turn order kept as given, duplicate (question, answer) pairs merged only within a
record, and images checked by existence + header only (bounded cache). Counts are per record here:
``rows_read``/``rows_kept`` are records, and turns merged or dropped inside a record are counted under
``turns_dropped``. Leaks across splits are found by image name (content hashes are not computed for
these large inputs); the image-name sets are kept only when the input has more than one split.
``image-disjoint`` reads the input twice: once for the names, once to write.
"""

from __future__ import annotations

from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field

from vmed.data.conversion import EXAMPLES, Conversion, ImageChecker, find_leaks, hold_out_targets, progress
from vmed.data.converters.base import RecordRow, Tally, normalise_answer_type
from vmed.data.schema import Dialogue, JsonlWriter, Turn

__all__ = ["convert_stream"]


@dataclass
class _Counts:
    kept: Counter = field(default_factory=Counter)
    images: dict[str, set[str]] = field(default_factory=dict)
    moved: Counter = field(default_factory=Counter)
    moved_images: set[str] = field(default_factory=set)
    missing_kept: int = 0
    missing_examples: list[str] = field(default_factory=list)
    caption_summaries: int = 0
    turns_dropped: dict[str, Counter] = field(default_factory=dict)


def convert_stream(run: Conversion) -> None:
    """Read, check and write every record of a streamed input; fill ``run.report``."""
    conv, job, report = run.converter, run.job, run.report
    multi = len(conv.splits(job.input, run.options)) > 1
    checker = ImageChecker(full=False)
    target = _leak_targets(run, checker) if multi else {}
    if not multi:
        report.leaks = {"images": 0, "by_name": 0, "by_content": 0, "split_pairs": {}, "names": [], "content_groups": []}
    tally = Tally()
    counts = _Counts()
    with ExitStack() as stack, progress(None, f"converting {conv.name}", job.progress) as bar:
        writers: dict[str, JsonlWriter] = {}
        for row in conv.read(job.input, run.options, tally):
            bar.update(1)
            d = _record(run, row, checker, target, tally, counts)
            if d is None:
                continue
            if d.split not in writers:
                writers[d.split] = stack.enter_context(JsonlWriter(job.output / f"{d.split}.jsonl"))
            writers[d.split].write(d)
            counts.kept[d.split] += 1
            if multi and row.image_key:
                counts.images.setdefault(d.split, set()).add(row.image_key)
    for split, w in writers.items():
        report.files[split] = str(w.path)
    if job.split_policy == "image-disjoint" and multi:
        report.set_moved(len(counts.moved_images), counts.moved, [])
    report.set_missing_kept(counts.missing_kept, counts.missing_examples)
    images = {s: len(counts.images[s]) if s in counts.images else counts.kept.get(s, 0) for s in counts.kept}
    extra = {s: {"turns_dropped": dict(counts.turns_dropped.get(s, {}))} for s in set(tally.read) | set(counts.kept)}
    report.fill_splits(tally, counts.kept, counts.kept, images, extra)
    report.options["caption_summaries"] = counts.caption_summaries


def _leak_targets(run: Conversion, checker: ImageChecker) -> dict[str, str]:
    """First pass (inputs with several splits): leaks by image name; image-disjoint's destination per image."""
    keys_by_split: dict[str, set[str]] = {}
    for row in run.converter.read(run.job.input, run.options, Tally()):
        if row.image_key and (run.job.allow_missing_images or checker(row.image_path) is None):
            keys_by_split.setdefault(row.split, set()).add(row.image_key)
    run.report.leaks, leaked = find_leaks(keys_by_split, {})
    return hold_out_targets(leaked, keys_by_split) if run.job.split_policy == "image-disjoint" else {}


def _record(run: Conversion, row: RecordRow, checker: ImageChecker, target: dict[str, str], tally: Tally,
            counts: _Counts) -> Dialogue | None:
    """The record to write for one row, or None when the row is skipped (counted in ``tally``)."""
    d = _to_dialogue(row, run.converter.name, counts.turns_dropped.setdefault(row.split, Counter()))
    if d is None:
        tally.skip(row.split, "empty_answer", where=row.where)
        return None
    if run.place.unsafe(row.image_key):
        tally.skip(row.split, "image_path_unsafe", where=f"{row.where}: image {row.image_key!r} would be copied outside the output folder")
        return None
    problem = checker(row.image_path)
    if problem is not None:
        if not run.job.allow_missing_images:
            tally.skip(row.split, problem, where=row.where)
            return None
        counts.missing_kept += 1
        if len(counts.missing_examples) < EXAMPLES:
            counts.missing_examples.append(row.image_key or row.id)
        d.meta["image_problem"] = problem
    split = target.get(row.image_key or "", row.split)
    if split != row.split:
        counts.moved[f"{row.split}->{split}"] += 1  # records (the rows of the streamed formats)
        counts.moved_images.add(row.image_key or "")
    d.split = split
    d.image = run.place(row.image_key, row.image_path)
    if row.summary:
        d.summary = row.summary
        counts.caption_summaries += 1
    elif run.summarizer.name != "template" or _summarizable(d):
        d.summary = run.summarize(d)
    return d


def _summarizable(d: Dialogue) -> bool:
    """Instruction data (long free-text answers) gets no template summary; short-answer VQA does."""
    return all(len(t.answer.split()) <= 12 for t in d.turns)


def _to_dialogue(row: RecordRow, source: str, dropped: Counter) -> Dialogue | None:
    """The record's dialogue (None if no turn has an answer); turn-level drops are counted in ``dropped``."""
    seen: set[tuple[str, str]] = set()
    turns: list[Turn] = []
    for q, a in row.turns:
        if not a:
            dropped["empty_answer"] += 1
            continue
        if (q, a) in seen:
            dropped["duplicate"] += 1
            continue
        seen.add((q, a))
        turns.append(Turn(q, a, normalise_answer_type(None, a)))
    if not turns:
        return None
    return Dialogue(id=row.id, image=None, turns=turns, source=source, split=row.split, meta=dict(row.meta))
