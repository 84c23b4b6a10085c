"""Conversion of the streamed formats (LLaVA JSON, ROCO / LLaVA-Med alignment captions).

Records are written as they are read, so memory stays flat whatever the input size: no grouping
across records, turn order kept as given, duplicate (question, answer) pairs merged only within a
record, and images checked by existence + header only (bounded cache). Leaks across splits are
found by image name. Counts are per record here: ``rows_read``/``rows_kept`` are records, and
turns merged or dropped inside a record are counted under ``turns_dropped``. Leaks are found by image name (content hashes are not computed for these large inputs); the image-name sets
are kept only when the input has more than one split. ``image-disjoint`` reads the input twice:
once for the names, once to write.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from vmed.data.build import HOLD_OUT_RANK, ConvertReport, _fill_split_stats, _ImageChecker, _progress, find_leaks
from vmed.data.converters.base import ConvertOptions, RecordRow, Tally, normalise_answer_type
from vmed.data.schema import Dialogue, JsonlWriter, Turn

__all__ = ["convert_stream"]


def convert_stream(conv, src: Path, out: Path, opts: ConvertOptions, report: ConvertReport, summarizer, split_policy: str,
                   allow_missing: bool, place, progress: bool) -> None:
    splits = conv.splits(src, opts)
    multi = len(splits) > 1
    target: dict[str, str] = {}
    checker = _ImageChecker(full=False)
    if multi:
        keys_by_split: dict[str, set[str]] = {}
        for row in conv.read(src, opts, Tally()):
            if row.image_key and (allow_missing or checker(row.image_path) is None):
                keys_by_split.setdefault(row.split, set()).add(row.image_key)
        report.leaks, leaked = find_leaks(keys_by_split, {})
        if split_policy == "image-disjoint":
            for keys in leaked.values():
                dests = {s for s, ks in keys_by_split.items() if any(k in ks for k in keys)}
                dest = max(dests, key=lambda s: HOLD_OUT_RANK.get(s, -1))
                for k in keys:
                    target[k] = dest
        del keys_by_split
    else:
        report.leaks = {"images": 0, "by_name": 0, "by_content": 0, "split_pairs": {}, "names": [], "content_groups": []}

    tally = Tally()
    writers: dict[str, JsonlWriter] = {}
    kept = Counter()
    images: dict[str, set[str]] = {}
    moved = Counter()
    moved_images: set[str] = set()
    missing_kept = 0
    missing_examples: list[str] = []
    caption_summaries = 0
    turns_dropped: dict[str, Counter] = {}
    try:
        with _progress(None, f"converting {conv.name}", progress) as bar:
            for row in conv.read(src, opts, tally):
                bar.update(1)
                d = _to_dialogue(row, conv.name, turns_dropped.setdefault(row.split, Counter()))
                if d is None:
                    tally.skip(row.split, "empty_answer", where=row.where)
                    continue
                problem = checker(row.image_path)
                if problem is not None:
                    if not allow_missing:
                        tally.skip(row.split, problem, where=row.where)
                        continue
                    missing_kept += 1
                    if len(missing_examples) < 20:
                        missing_examples.append(row.image_key or row.id)
                    d.meta["image_problem"] = problem
                split = target.get(row.image_key or "", row.split)
                if split != row.split:
                    moved[f"{row.split}->{split}"] += 1  # records (the rows of the streamed formats)
                    moved_images.add(row.image_key or "")
                d.split = split
                d.image = place(row.image_key, row.image_path)
                if row.summary:
                    d.summary = row.summary
                    caption_summaries += 1
                else:
                    d.summary = summarizer.summarize(d) if summarizer.name != "template" or _summarizable(d) else None
                if split not in writers:
                    writers[split] = JsonlWriter(out / f"{split}.jsonl")
                writers[split].write(_record_dict(d))
                kept[split] += 1
                if multi and row.image_key:
                    images.setdefault(split, set()).add(row.image_key)
    except BaseException:
        for w in writers.values():
            w.__exit__(RuntimeError, None, None)
        raise
    for split, w in writers.items():
        w.close()
        report.files[split] = str(w.path)
    if split_policy == "image-disjoint" and multi:
        report.moved = {
            "rule": "a leaked image moves, with all its rows, to the most held-out split it appears in (test > validation > train)",
            "images": len(moved_images),
            "rows": sum(moved.values()),
            "by_direction": dict(moved),
            "list": [],
        }
    if missing_kept:
        report.missing_images_kept = {"count": missing_kept, "examples": missing_examples}
    _fill_split_stats(report, tally, kept, {})
    for split, stats in report.splits.items():
        stats["records"] = kept.get(split, 0)
        stats["images"] = len(images[split]) if split in images else kept.get(split, 0)
        stats["turns_dropped"] = dict(turns_dropped.get(split, {}))
    report.options["caption_summaries"] = caption_summaries


def _record_dict(d: Dialogue) -> dict:
    """``Dialogue.to_dict`` without ``dataclasses.asdict`` (which deep-copies; a third of the time per record)."""
    turns = []
    for t in d.turns:
        td = {"question": t.question, "answer": t.answer, "answer_type": t.answer_type}
        for k in ("question_type", "qid", "alternatives"):
            v = getattr(t, k)
            if v is not None:
                td[k] = v
        turns.append(td)
    return {"id": d.id, "source": d.source, "split": d.split, "image": d.image, "turns": turns, "summary": d.summary, "meta": d.meta}


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
