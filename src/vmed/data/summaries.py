"""Dialogue summaries: what a per-image dialogue established, in one or two sentences.

This is the public import point: ``Summarizer``, ``TemplateSummarizer``, ``template_summary``, ``LlmSummarizer``,
the backends and ``DEFAULT_LLM_PROMPT`` are all imported from here. The rules for one turn are in
``vmed.data.summary_template``; the prompt and the backends in ``vmed.data.summary_llm``.

``TemplateSummarizer`` (the default; offline, deterministic, rule-based) writes a radiologist's one-line impression:
a lead saying what the image is (``"Transverse MRI of the head (T2-weighted)."``, ``summary_lead``), then the findings,
each said once (``"Liver and kidneys are visible; no spleen."``, ``summary_note``), using only words from the dialogue
plus a few function words. A turn that cannot become a sentence with confidence is left out and counted, never forced
into broken grammar; ``stats()`` carries the audit (``summary_audit`` computes the same from records).

``LlmSummarizer`` asks a language model (``summary_llm.OpenAIBackend`` or ``summary_llm.HFBackend``) with a
prompt file (``DEFAULT_LLM_PROMPT`` unless given), caches each summary in a JSONL file keyed by
sha256(dialogue turns + prompt + model) so that an interrupted run resumes where it stopped, caps the length
at ``max_words``, and falls back to the template (counted, with the reason) when the response is empty or the model
fails. A summary ``summary_guard.check_summary`` rejects (a flipped closed answer, a finding the dialogue does not
contain) is replaced by the template summary and counted as ``guard_replaced`` with its reasons.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Callable, Protocol, Sequence

from vmed.data.schema import Dialogue, Turn
from vmed.data.summary_guard import check_summary
from vmed.data.summary_llm import DEFAULT_LLM_PROMPT, HFBackend, OpenAIBackend, dialogue_text
from vmed.data.summary_note import DISPOSITIONS, plan
from vmed.data.summary_template import Fact, statement
from vmed.errors import UserInputError

__all__ = [
    "Summarizer",
    "TemplateSummarizer",
    "LlmSummarizer",
    "OpenAIBackend",
    "HFBackend",
    "DEFAULT_LLM_PROMPT",
    "dialogue_text",
    "template_summary",
    "statement",
    "Fact",
    "cap_words",
]


class Summarizer(Protocol):
    name: str

    def summarize(self, dialogue: Dialogue) -> str: ...

    def stats(self) -> dict: ...


def cap_words(text: str, max_words: int) -> str:
    """Cut ``text`` to at most ``max_words`` words, ending the cut text with a full stop."""
    words = text.split()
    if max_words <= 0 or len(words) <= max_words:
        return text.strip()
    cut = " ".join(words[:max_words]).rstrip(",;:")
    return cut if cut.endswith((".", "!", "?")) else cut + "."


def template_summary(turns: Sequence[Turn], max_findings: int = 5, max_words: int = 60) -> str:
    """The template note for ``turns``: the lead, then the findings (see ``vmed.data.summary_note``); '' if nothing
    in the dialogue can be stated with confidence."""
    return plan(turns, max_findings, max_words).text


class TemplateSummarizer:
    """The offline, deterministic summarizer (the default). ``stats()`` carries the audit of what it wrote: per turn,
    stated / redundant / unbuildable / not_image_fact / cut (see ``vmed.data.summary_note``)."""

    name = "template"

    def __init__(self, max_words: int = 60, max_findings: int = 5):
        self.max_words = max_words
        self.max_findings = max_findings
        self.count = 0
        self.words = 0
        self.empty = 0
        self.turns: Counter = Counter({k: 0 for k in DISPOSITIONS})

    def summarize(self, dialogue: Dialogue) -> str:
        p = plan(dialogue.turns, self.max_findings, self.max_words)
        self.count += 1
        self.words += len(p.text.split())
        self.empty += not p.text
        self.turns.update(p.dispositions)
        return p.text

    def stats(self) -> dict:
        facts = sum(self.turns.values())
        return {"summarizer": self.name, "template": self.count, "mean_words": round(self.words / self.count, 1) if self.count else 0.0,
                "empty": self.empty, "facts_in_dialogue": facts, "facts_stated": self.turns["stated"],
                "coverage": round(self.turns["stated"] / facts, 3) if facts else 0.0,
                "redundant_dropped": self.turns["redundant"], "left_out_unbuildable": self.turns["unbuildable"],
                "left_out_not_image_fact": self.turns["not_image_fact"], "cut_for_length": self.turns["cut"]}


class LlmSummarizer:
    """Summaries from a language model, cached in a JSONL file, with the template as fallback."""

    name = "llm"

    def __init__(self, backend: Callable[[str, int], str], model: str, cache_path: str | os.PathLike,
                 prompt: str = DEFAULT_LLM_PROMPT, max_words: int = 60):
        if "{dialogue}" not in prompt:
            raise UserInputError("the summary prompt must contain '{dialogue}' where the questions and answers go")
        self.backend = backend
        self.model = model
        self.prompt = prompt
        self.max_words = max_words
        self.cache_path = Path(cache_path)
        self.cache: dict[str, str] = {}
        if self.cache_path.is_file():
            for line in self.cache_path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                    self.cache[entry["key"]] = entry["summary"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # a line cut by an interruption
        self.template = TemplateSummarizer(max_words=max_words)
        self.counts: Counter = Counter()
        self.fallback_reasons: Counter = Counter()
        self.guard_reasons: Counter = Counter()

    def key(self, turns: Sequence[Turn]) -> str:
        payload = json.dumps({"turns": [[t.question, t.answer] for t in turns], "prompt": self.prompt, "model": self.model},
                             ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def summarize(self, dialogue: Dialogue) -> str:
        k = self.key(dialogue.turns)
        if k in self.cache:
            self.counts["cached"] += 1
            return self.cache[k]
        prompt = self.prompt.replace("{dialogue}", dialogue_text(dialogue.turns)).replace("{max_words}", str(self.max_words))
        try:
            raw = self.backend(prompt, max(16, self.max_words * 2))
        except UserInputError:
            raise
        except Exception as e:  # an HTTP error status or a model failure: this record falls back
            self.fallback_reasons[f"error: {type(e).__name__}"] += 1
            self.counts["fallbacks"] += 1
            return self.template.summarize(dialogue)
        text = " ".join(raw.replace("Note:", " ").split()).strip().strip('"').strip()
        if not text:
            self.fallback_reasons["empty_response"] += 1
            self.counts["fallbacks"] += 1
            return self.template.summarize(dialogue)
        text = cap_words(text, self.max_words)
        reason = check_summary(text, dialogue.turns)
        if reason:  # a flipped closed answer or a finding the dialogue lacks: the template says it instead (not cached)
            self.guard_reasons[reason] += 1
            self.counts["guard_replaced"] += 1
            return self.template.summarize(dialogue)
        self.cache[k] = text
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        with self.cache_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"key": k, "summary": text}, ensure_ascii=False) + "\n")
        self.counts["llm"] += 1
        return text

    def stats(self) -> dict:
        return {"summarizer": self.name, "model": self.model, "llm": self.counts["llm"], "cached": self.counts["cached"],
                "fallbacks": self.counts["fallbacks"], "fallback_reasons": dict(self.fallback_reasons),
                "guard_replaced": self.counts["guard_replaced"], "guard_reasons": dict(self.guard_reasons)}
