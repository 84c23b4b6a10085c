"""Dialogue summaries: what a per-image dialogue established, in one or two sentences.

This is the public import point: ``Summarizer``, ``TemplateSummarizer``, ``template_summary``, ``LlmSummarizer``,
the backends and ``DEFAULT_LLM_PROMPT`` are all imported from here. The rules for one turn are in
``vmed.data.summary_template``; the prompt and the backends in ``vmed.data.summary_llm``.

``TemplateSummarizer`` (the default; offline, deterministic, rule-based) writes a clinician-style note
of at most two sentences, using only words from the dialogue plus a few function words:

1. an overview sentence from the modality, plane and body-region answers:
   ``"Axial MRI of the abdomen (T2-weighted)."`` (a "Which part of the body ...?" answer beats a
   "What organ is ...?" one; modality, plane and organ questions are not repeated as findings);
2. a findings sentence built from one ``Fact`` per turn (``summary_template.turn_fact``), in this order,
   clauses joined by ``;``: findings present (``"Is there a pneumothorax?" yes``, ``"What is abnormal?"
   cardiomegaly``, ``"What type of distributions is seen?" micronodular`` -> "micronodular distributions"),
   as ``"there is/are X"`` or, for several, ``"findings include X, Y and Z"``; other statements
   (``"the liver is visible"``, ``"the mass is in the right lower lobe"``, ``"there are 2 masses"``,
   ``"the mass is 2.5 cm"``); findings absent, merged (``"no fracture, effusion or lymphadenopathy is seen"``);
   negative statements (``"the heart is not enlarged"``).

Left out besides what ``turn_fact`` leaves out: generic findings ("abnormalities") when a specific one exists,
and paraphrases (same polarity, >= 50 % shared content stems). At most ``max_findings`` facts; whole facts
are dropped (least important first) to stay under ``max_words``. Only when no turn fits a pattern is the
first exchange stated as it is (``"Q? A."``).

``LlmSummarizer`` asks a language model (``summary_llm.OpenAIBackend`` or ``summary_llm.HFBackend``) with a
prompt file (``DEFAULT_LLM_PROMPT`` unless given), caches each summary in a JSONL file keyed by
sha256(dialogue turns + prompt + model) so that an interrupted run resumes where it stopped, caps the length
at ``max_words``, and falls back to the template (counted, with the reason) when the response is empty.
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
from vmed.data.summary_llm import DEFAULT_LLM_PROMPT, HFBackend, OpenAIBackend, dialogue_text
from vmed.data.summary_template import (
    DETAILS,
    MODALITIES,
    MRI_DETAILS,
    PLANES,
    REGIONS,
    Fact,
    answer_ok,
    be_for,
    noun_phrase,
    phrase_lower,
    sentence_case,
    statement,
    turn_fact,
)
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


# --- the template note: overview, facts in order, findings sentence -----------------------------

_STOP = {"the", "a", "an", "is", "are", "was", "were", "there", "this", "that", "of", "in", "on", "image", "seen",
         "present", "visible", "any", "be", "does", "do", "not", "no", "to", "with", "above", "shown"}
_GENERIC = {"abnormalities", "abnormality", "abnormal findings", "findings", "an abnormality", "any abnormalities", "lesions"}


def _overview(turns: Sequence[Turn]) -> tuple[str | None, set[int]]:
    """The overview sentence and the indexes of the turns it used."""
    modality = plane = region = None
    region_rank, region_turn = 2, -1
    details: list[str] = []
    used: set[int] = set()
    for i, t in enumerate(turns):
        q = t.question.lower()
        a = t.answer.strip()
        al = a.lower().rstrip(".")
        if al in ("yes", "no"):
            m = re.match(r"^(is|was) this (an? )?(.+?)( image| scan| study| film| cut| view| plane| section)?\??$", q)
            if m and al == "yes":
                thing = m.group(3).strip()
                head_words = thing.split()
                if (len(head_words) in (2, 3) and head_words[-1] in MODALITIES and region is None
                        and set(head_words[:-1]) <= REGIONS):
                    region, thing = " ".join(head_words[:-1]), head_words[-1]
                if modality is None and thing in MODALITIES:
                    modality, _ = MODALITIES[thing], used.add(i)
                elif plane is None and thing in PLANES:
                    plane, _ = PLANES[thing], used.add(i)
            continue
        tokens = al.replace(" - ", " ").replace("weighted", "").split()
        if any(k in q for k in ("modality", "type of imag", "kind of imag", "type of scan", "imaging technique", "what type of image",
                                "how was this", "type of mri", "kind of mri", "taken with")):
            if modality is None and al in MODALITIES:
                modality = MODALITIES[al]
                used.add(i)
            elif modality is None and set(tokens) & set(MODALITIES) and set(tokens) <= set(MODALITIES) | set(DETAILS):
                # "MR - T2 weighted"
                modality = next(MODALITIES[w] for w in tokens if w in MODALITIES)
                details += [DETAILS[w] for w in tokens if w in DETAILS]
                used.add(i)
            elif modality is None and (any(w in MODALITIES for w in al.replace("-", " ").split()) or re.search(r"x-?ray", al)):
                modality = a if not a[:1].isupper() or a.isupper() or "-" in a.split()[0] else phrase_lower(a)
                used.add(i)
            elif al in DETAILS:
                details.append(DETAILS[al])
                used.add(i)
        elif any(k in q for k in ("weight", "sequence", "contrast")) and al in DETAILS:
            details.append(DETAILS[al])
            used.add(i)
        elif any(k in q for k in ("plane", "view", "orientation", "projection")) and re.sub(r" (plane|view|section)$", "", al) in PLANES:
            al = re.sub(r" (plane|view|section)$", "", al)  # SLAKE: "Transverse Plane"
            if plane is None:
                plane = PLANES[al]
                used.add(i)
        elif re.search(r"(part of the body|body part|organ system|which organ|what organ|region|area of the body|location of the body|what part)", q) and " not " not in q:
            # "Which part of the body ..." beats "What organ is the gray part ...?" (an organ, not the region imaged)
            rank = 1 if re.search(r"(which|what) organ (?!system)", q) else 0
            if (region is None or rank < region_rank) and len(al.split()) <= 4:
                if region is not None:
                    used.discard(region_turn)
                region, region_rank, region_turn = phrase_lower(a.rstrip(".")), rank, i
                used.add(i)
    if modality is None and any(d.split("-")[0].lower() in MRI_DETAILS or d in ("FLAIR", "diffusion-weighted", "ADC map") for d in details):
        modality = "MRI"
    if not (modality or plane or region):
        return None, used
    head = " ".join(x for x in (plane, modality) if x) or "image"
    if not modality:
        head = f"{head} image" if plane else head
    text = sentence_case(head)
    if region:
        text += f" of the {region}" if not region.lower().startswith("the ") else f" of {region}"
    if details:
        text += " (" + ", ".join(dict.fromkeys(details)) + ")"
    return text + ".", used


def _content(text: str) -> set[str]:
    """Content-word stems (first five letters), so 'tracheal deviation' matches 'deviation in the trachea'."""
    return {w.strip(",;:-()").lower()[:5] for w in text.split()} - {s[:5] for s in _STOP} - {""}


def _similar(a: str, b: str, threshold: float = 0.5) -> bool:
    """Two findings that say nearly the same thing (paraphrased questions); same polarity only."""
    neg_a = bool(re.search(r"\b(no|not|none|nothing)\b", a.lower()))
    neg_b = bool(re.search(r"\b(no|not|none|nothing)\b", b.lower()))
    ca, cb = _content(a), _content(b)
    if neg_a != neg_b or not ca or not cb:
        return a.lower() == b.lower()
    return len(ca & cb) / len(ca | cb) >= threshold


def _facts(turns: Sequence[Turn], skip: set[int]) -> list[Fact]:
    """The facts of ``turns`` (but ``skip``), paraphrases dropped, in priority order: present, positive clauses,
    absent, negative clauses; within a group, in dialogue order."""
    kept: list[tuple[str, Fact]] = []
    for i, t in enumerate(turns):
        found = None if i in skip else turn_fact(t)
        for f in found if isinstance(found, list) else [found] if found else []:
            key = f"no {f.text}" if f.kind == "absent" else f"there is {f.text}" if f.kind == "present" else f.text
            if not any(_similar(key, k) for k, _ in kept):
                kept.append((key, f))
    facts = [f for _, f in kept]
    if any(f.kind == "present" and f.text.lower() not in _GENERIC for f in facts):  # "abnormalities" says less than "cardiomegaly"
        facts = [f for f in facts if not (f.kind == "present" and f.text.lower() in _GENERIC)]
    # A finding that another fact already names ("nephroblastomatosis" beside "the hypodensity ... is nephroblastomatosis").
    facts = [f for f in facts if not any(g is not f and f.kind == "present" and f.text.lower() in g.text.lower() for g in facts)]
    rank = {("present", False): 0, ("clause", False): 1, ("absent", False): 2, ("clause", True): 3}
    return sorted(facts, key=lambda f: rank[(f.kind, f.negative)])


def _series(items: Sequence[str], conj: str) -> str:
    """'a' / 'a and b' / 'a, b and c' (no serial comma), with ``conj`` before the last item."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {conj} {items[-1]}"


def _findings_sentence(facts: Sequence[Fact]) -> str:
    """'There is a pneumothorax; the mass is in the right lobe; no fracture or effusion is seen; the heart is not enlarged.'"""
    present = [f.text for f in facts if f.kind == "present"]
    absent = [f.text for f in facts if f.kind == "absent"]
    clauses = []
    if len(present) == 1:
        clauses.append(f"there {be_for(present[0])} {present[0]}")
    elif present:
        clauses.append("findings include " + _series(present, "and"))
    clauses += [f.text for f in facts if f.kind == "clause" and not f.negative]
    if absent:  # the verb agrees with the nearest item: "no fracture or effusions are seen"
        clauses.append(f"no {_series(absent, 'or')} {be_for(absent[-1])} seen")
    clauses += [f.text for f in facts if f.kind == "clause" and f.negative]
    return sentence_case("; ".join(clauses)) + "." if clauses else ""


def template_summary(turns: Sequence[Turn], max_findings: int = 4, max_words: int = 60) -> str:
    """One or two sentences stating what ``turns`` established (see the module docstring)."""
    overview, used = _overview(turns)
    facts = _facts(turns, used)[:max_findings]
    while True:
        text = " ".join(s for s in (overview, _findings_sentence(facts)) if s)
        if len(text.split()) <= max_words or len(facts) <= 1:
            break
        facts = facts[:-1]  # drop the least important finding rather than cut a sentence
    if not text:  # nothing fits a fact pattern: the first exchange that reads as a statement, else as it is
        clause = next((c for c in (statement(t) for t in turns) if c), None) or next(
            (f"findings include {noun_phrase(t.answer)}" for t in turns if answer_ok(t.answer)
             and re.search(r"(?i)\b(finding|sign|term|patholog|abnormal|diagnos|condition)", t.question)), None)
        text = (sentence_case(clause) + ".") if clause else \
            f"{turns[0].question.strip().rstrip('?. ')}? {sentence_case(turns[0].answer.strip().rstrip('?.'))}." if turns else ""
    text = re.sub(r"\b(\w+) \1\b", r"\1", text, flags=re.I)  # "the GI tract is is highlighted"
    return cap_words(text, max_words)


class TemplateSummarizer:
    """The offline, deterministic summarizer (the default)."""

    name = "template"

    def __init__(self, max_words: int = 60, max_findings: int = 4):
        self.max_words = max_words
        self.max_findings = max_findings
        self.count = 0

    def summarize(self, dialogue: Dialogue) -> str:
        self.count += 1
        return template_summary(dialogue.turns, self.max_findings, self.max_words)

    def stats(self) -> dict:
        return {"summarizer": self.name, "template": self.count}


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
        self.cache[k] = text
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        with self.cache_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"key": k, "summary": text}, ensure_ascii=False) + "\n")
        self.counts["llm"] += 1
        return text

    def stats(self) -> dict:
        return {"summarizer": self.name, "model": self.model, "llm": self.counts["llm"], "cached": self.counts["cached"],
                "fallbacks": self.counts["fallbacks"], "fallback_reasons": dict(self.fallback_reasons)}
