"""The summary audit: how much of each dialogue a summary states, and whether it reads as a note.

``summary_audit(records)`` groups records by source and summarizer and reports, per group: summaries, mean words,
facts in the dialogue (turns) and facts stated (coverage), statements dropped as redundant, questions left out
because no sentence could be built (and those left out as speculative/textbook), facts cut for length, and the two
checks of ``summary_issues`` over the written text. For a template summary the per-turn counts are exact (the
summary is planned again, ``summary_note.plan``, and must equal the record's); for any other summary (LLM, caption)
a turn counts as stated when at least half of its content stems (the answer's, or a yes/no question's) occur in it.

``summary_issues(text)`` is a deliberately simple checker, independent of the rules that wrote the text:

- ``repeated``: two statements (split at ``.`` and ``;``) with the same polarity (a negation word in both or in neither)
  and the same sides (``left``/``right``) share at least two content stems and 60 % of the shorter one's (5-letter
  prefixes, stop words out), or one modality/plane word occurs in two statements. Statements of opposite polarity or
  about different sides ("mass is seen in the lower left lung"; "mass can not be observed on the lower right lung")
  cannot say the same thing;
- ``fragment``: a statement keeps a question stem (``the picture``, ``this image``, ``is there``, ``shows in``,
  a wh-word, ``is/are``, ``?``), ends on a preposition/article/conjunction, or keeps a raw list tail (``, right``).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Any, Iterable

from vmed.data.schema import Dialogue
from vmed.data.summary_note import DISPOSITIONS, plan
from vmed.data.summary_words import MODALITIES, PLANES

__all__ = ["summary_issues", "summary_audit", "format_audit"]

_STOP = {"the", "a", "an", "is", "are", "was", "were", "there", "of", "in", "on", "at", "to", "and", "or", "with", "no",
         "not", "be", "seen", "visible", "present", "this", "that", "it", "as", "by", "for", "from", "has", "have", "does",
         "do", "can", "findings", "include", "image", "both"}
_FRAGMENT = re.compile(r"\b(?:the picture|this picture|the image|this image|is there|are there|shows? in|what|which|where|"
                       r"how|who|why|whose)\b|\bis/are\b|\?|\b(?:in|on|of|to|with|by|for|at|from|the|a|an|and|or)$|"
                       r", (?:left|right|upper|lower|top|bottom)\b", re.I)
_NEGATION = {"no", "not", "none", "nothing", "without", "cannot", "never"}
_OVERVIEW_WORDS = {w for w in set(MODALITIES) | set(PLANES) if len(w) > 2} | {"x-ray", "xray"}


def _statements(text: str) -> list[str]:
    return [s.strip(" .;") for s in re.split(r"(?<=[.;])\s+", text.strip()) if s.strip(" .;")]


def _content(text: str) -> set[str]:
    return {w[:5] for w in re.findall(r"[a-z0-9-]+", text.lower()) if w not in _STOP and len(w) > 1}


def summary_issues(text: str) -> list[str]:
    """The checks ``text`` fails: a subset of ['repeated', 'fragment'] (see the module docstring)."""
    parts = _statements(text)
    issues = []
    sets = [_content(p) for p in parts]
    tokens = [set(re.findall(r"[a-z0-9-]+", p.lower())) for p in parts]
    words = [t & _OVERVIEW_WORDS for t in tokens]
    polarity = [bool(t & _NEGATION) for t in tokens]
    sides = [t & {"left", "right"} for t in tokens]
    for i in range(len(parts)):
        for j in range(i + 1, len(parts)):
            small = min(len(sets[i]), len(sets[j]))
            shared = len(sets[i] & sets[j])
            comparable = polarity[i] == polarity[j] and sides[i] == sides[j]
            if (comparable and shared >= 2 and shared / small >= 0.6) or words[i] & words[j]:
                issues.append("repeated")
                break
        if issues:
            break
    if any(_FRAGMENT.search(p) for p in parts):
        issues.append("fragment")
    return issues


def _text_stated(d: Dialogue) -> int:
    summary = _content(d.summary or "")
    stated = 0
    for t in d.turns:
        key = _content(t.question if t.answer.strip().lower() in ("yes", "no") else t.answer)
        key -= {"what", "which", "where", "how", "is", "are", "does", "do"}
        stated += bool(key) and len(key & summary) * 2 >= len(key)
    return stated


def summary_audit(records: Iterable[Dialogue], max_findings: int = 5, max_words: int = 60) -> dict[str, dict[str, Any]]:
    """The audit of ``records``, keyed ``"<source>/<summarizer>"`` (see the module docstring)."""
    groups: dict[str, Counter] = defaultdict(Counter)
    for d in records:
        if not d.summary:
            groups[f"{d.source or '?'}/none"]["records_without_summary"] += 1
            continue
        p = plan(d.turns, max_findings, max_words)
        name = str(d.meta.get("summarizer") or ("template" if p.text == d.summary else "other"))
        g = groups[f"{d.source or '?'}/{name}"]
        g["summaries"] += 1
        g["words"] += len(d.summary.split())
        g["facts_in_dialogue"] += len(d.turns)
        if name == "template":
            g.update(Counter(p.dispositions))
        else:
            g["stated"] += _text_stated(d)
        for issue in summary_issues(d.summary):
            g[issue] += 1
    return {k: _row(g, k.endswith("/template")) for k, g in sorted(groups.items())}


def _row(g: Counter, exact: bool) -> dict[str, Any]:
    if not g["summaries"]:
        return {"summaries": 0, "records_without_summary": g["records_without_summary"]}
    facts = g["facts_in_dialogue"]
    row: dict[str, Any] = {
        "summaries": g["summaries"], "mean_words": round(g["words"] / g["summaries"], 1), "facts_in_dialogue": facts,
        "facts_stated": g["stated"], "coverage": round(g["stated"] / facts, 3) if facts else 0.0,
        "summaries_with_repeats": g["repeated"], "summaries_with_fragments": g["fragment"],
    }
    if exact:
        row.update({"redundant_dropped": g["redundant"], "left_out_unbuildable": g["unbuildable"],
                    "left_out_not_image_fact": g["not_image_fact"], "cut_for_length": g["cut"]})
    return row


def format_audit(audit: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for key, r in audit.items():
        if not r.get("summaries"):
            lines.append(f"  {key}: {r.get('records_without_summary', 0)} records without summary")
            continue
        line = (f"  {key}: {r['summaries']} summaries, {r['mean_words']} words on average, facts stated "
                f"{r['facts_stated']}/{r['facts_in_dialogue']} ({r['coverage']:.0%})")
        if "redundant_dropped" in r:
            line += (f", redundant dropped {r['redundant_dropped']}, left out (no sentence) {r['left_out_unbuildable']}, "
                     f"left out (not an image fact) {r['left_out_not_image_fact']}, cut for length {r['cut_for_length']}")
        lines.append(line + f"; checker: {r['summaries_with_repeats']} with repeats, {r['summaries_with_fragments']} with fragments")
    return lines

