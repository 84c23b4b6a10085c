"""``vmed data stats``: what a dialogue dataset holds, per split, and whether its splits share images.

Reads one JSONL file or every ``*.jsonl`` in a folder (the split is the record's ``split`` field),
streaming the records. Reports images, turns per dialogue (histogram), closed/open answers, the top
answers, question types, summary lengths in words, and images found in more than one split by
path and by content (sha256 of the image files that exist), and the summary audit per split, source and
summarizer (``vmed.data.summary_audit``: words, coverage, redundant, left out, repeats and fragments).
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from vmed._io import sha256_file
from vmed.data.build import find_leaks
from vmed.data.schema import Dialogue, iter_jsonl, resolve_image
from vmed.data.summary_audit import format_audit, summary_audit
from vmed.errors import UserInputError

__all__ = ["compute_stats", "format_stats"]

_TOP = 10


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if files:
            return files
        raise UserInputError(f"{path}: no *.jsonl files in this folder")
    raise UserInputError(f"{path}: no such file or folder")


def _lengths(values: list[int]) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    return {"count": len(values), "min": min(values), "mean": round(statistics.fmean(values), 1),
            "median": statistics.median(values), "max": max(values)}


def compute_stats(path: str | os.PathLike, hash_images: bool = True) -> dict[str, Any]:
    """Statistics of the dialogue records under ``path`` (a JSONL file or a folder of them)."""
    path = Path(path)
    splits: dict[str, dict[str, Any]] = {}
    keys_by_split: dict[str, set[str]] = {}
    image_files: dict[str, Path] = {}
    records: dict[str, list[Dialogue]] = {}
    for file in _files(path):
        for d in iter_jsonl(file):
            records.setdefault(d.split, []).append(d)
            s = splits.setdefault(d.split, {"records": 0, "turns": 0, "turns_hist": Counter(), "answer_types": Counter(),
                                            "answers": Counter(), "question_types": Counter(), "summary_words": [],
                                            "no_summary": 0, "images": set(), "files": set()})
            s["files"].add(str(file))
            s["records"] += 1
            s["turns"] += len(d.turns)
            s["turns_hist"][len(d.turns)] += 1
            for t in d.turns:
                s["answer_types"][t.answer_type] += 1
                s["answers"][t.answer.strip().lower()] += 1
                s["question_types"][t.question_type or "(none)"] += 1
            if d.summary:
                s["summary_words"].append(len(d.summary.split()))
            else:
                s["no_summary"] += 1
            img = resolve_image(d, file)
            if img is not None:
                key = str(img.resolve())
                s["images"].add(key)
                keys_by_split.setdefault(d.split, set()).add(key)
                image_files[key] = img
    hashes = {}
    if hash_images and len(keys_by_split) > 1:
        hashes = {k: sha256_file(p) for k, p in image_files.items() if p.is_file()}
    leaks, _ = find_leaks(keys_by_split, hashes)
    out: dict[str, Any] = {"path": str(path), "splits": {}, "leaks": leaks}
    for name, s in splits.items():
        closed = s["answer_types"].get("closed", 0)
        out["splits"][name] = {
            "files": sorted(s["files"]),
            "records": s["records"],
            "images": len(s["images"]),
            "turns": s["turns"],
            "turns_per_dialogue": dict(sorted(s["turns_hist"].items())),
            "closed": closed,
            "open": s["answer_types"].get("open", 0),
            "closed_fraction": round(closed / s["turns"], 3) if s["turns"] else 0.0,
            "top_answers": s["answers"].most_common(_TOP),
            "question_types": dict(s["question_types"].most_common()),
            "summary_words": _lengths(s["summary_words"]),
            "records_without_summary": s["no_summary"],
            "summary_audit": summary_audit(records.get(name, [])),
        }
    return out


def _histogram(hist: dict[int, int], width: int = 30) -> list[str]:
    top = max(hist.values()) if hist else 1
    return [f"    {k:>3} turns | {'#' * max(1, round(v / top * width))} {v}" for k, v in hist.items()]


def format_stats(stats: dict[str, Any]) -> str:
    """The stats as readable text (what ``vmed data stats`` prints without ``--json``)."""
    lines = [f"{stats['path']}"]
    for name, s in stats["splits"].items():
        lines.append(f"[{name}] {s['records']} records, {s['images']} images, {s['turns']} turns "
                     f"(closed {s['closed']} / open {s['open']}, {s['closed_fraction']:.0%} closed)")
        lines.append("  turns per dialogue:")
        lines.extend(_histogram(s["turns_per_dialogue"]))
        lines.append("  top answers: " + ", ".join(f"{a!r} {n}" for a, n in s["top_answers"]))
        qt = list(s["question_types"].items())[:12]
        lines.append("  question types: " + ", ".join(f"{k} {v}" for k, v in qt))
        sw = s["summary_words"]
        if sw.get("count"):
            lines.append(f"  summary words: min {sw['min']}, mean {sw['mean']}, median {sw['median']}, max {sw['max']}"
                         f" ({s['records_without_summary']} records without summary)")
        else:
            lines.append(f"  no summaries ({s['records_without_summary']} records)")
        if s.get("summary_audit"):
            lines.append("  summary audit:")
            lines.extend("  " + line for line in format_audit(s["summary_audit"]))
    leak = stats["leaks"]
    if leak.get("images"):
        lines.append(f"LEAK: {leak['images']} images appear in more than one split "
                     f"({leak['by_name']} by path, {leak['by_content']} by content): {leak['split_pairs']}")
    else:
        lines.append("no image appears in more than one split")
    return "\n".join(lines)
