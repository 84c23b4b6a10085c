"""The template note: the lead, then the findings, each said once, and what happened to every turn.

``plan(turns)`` reads each turn (``summary_template.read_turn``), takes the lead (``summary_lead.lead``), drops what is
said twice, orders and caps the statements, and returns the text with one disposition per turn, which the audit counts:

- ``stated``: in the summary (the lead, a statement, or merged into one);
- ``redundant``: its content is already carried by the lead or another statement (same polarity, content stems a subset,
  or more than half shared; different sides never match: "left kidney" is not "right kidney");
- ``unbuildable``: no sentence could be built with confidence; ``not_image_fact``: speculative, textbook or unsure;
- ``cut``: a fact beyond ``max_findings`` or the word cap (least important first).

Order: findings present ("There is a pneumothorax"; several: "Findings include ..."), other positive statements, the
organs seen ("Liver and spleen are visible; no kidney"), findings absent ("no fracture or effusion is seen"), negative
statements. An organ that another statement names is not listed as visible again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Sequence

from vmed.data.schema import Turn
from vmed.data.summary_lead import lead
from vmed.data.summary_template import Fact, read_turn
from vmed.data.summary_words import be_for, sentence_case, stems

__all__ = ["Plan", "plan", "DISPOSITIONS"]

DISPOSITIONS = ("stated", "redundant", "unbuildable", "not_image_fact", "cut")
_GENERIC = {"abnormalities", "abnormality", "abnormal findings", "findings", "an abnormality", "any abnormalities", "lesions"}
_GENERIC_SUBJECT = re.compile(r"^the (?:abnormality|abnormalities|lesion|lesions|disease|diseases|finding|pathology) (?:is|are) "
                              r"((?:in|on|at)\b.+)$", re.I)
_IDENTITY = re.compile(r"^the (?:\w+ )*?organs? .*\b(?:is|are) (?:the )?(.+)$", re.I)  # SLAKE "the organ on the left is X"
_RANK = {("present", False): 0, ("clause", False): 1, ("organ", False): 2, ("organ", True): 2, ("absent", False): 3,
         ("clause", True): 4}


@dataclass
class Plan:
    text: str
    dispositions: list[str]


def _key(f: Fact) -> str:
    if f.kind == "absent" or (f.kind == "organ" and f.negative):
        return f"no {f.text}"
    return f"there is {f.text} {f.where}" if f.kind == "present" else f.text


def _same(a: tuple[frozenset, bool], b: tuple[frozenset, bool]) -> bool:
    (sa, na), (sb, nb) = a, b
    if na != nb or not sa or not sb or (sa & SIDE_WORDS_STEMS) != (sb & SIDE_WORDS_STEMS):
        return False
    return sa <= sb or sb <= sa or len(sa & sb) / len(sa | sb) > 0.5


SIDE_WORDS_STEMS = frozenset({"left", "right"})  # laterality: "left kidney" never paraphrases "right kidney"


def _dedupe(found: list[tuple[int, Fact]], lead_stems: frozenset, disp: dict[int, str]) -> list[tuple[int, Fact]]:
    """Facts said once: a fact the lead carries, or a paraphrase of a kept one, is redundant (the more specific is kept)."""
    kept: list[tuple[int, Fact, tuple[frozenset, bool]]] = []
    for i, f in found:
        sig = stems(_key(f))
        if not sig[1] and f.kind != "absent" and sig[0] <= lead_stems:
            disp.setdefault(i, "redundant")  # "Does the picture contain brain?" under "MRI of the brain."
            continue
        match = next((k for k, (_, _, ks) in enumerate(kept) if _same(sig, ks)), None)
        if match is None:
            kept.append((i, f, sig))
        elif len(sig[0]) > len(kept[match][2][0]):  # the new one says more: it takes the old one's place
            disp.setdefault(kept[match][0], "redundant")
            kept[match] = (i, f, sig)
        else:
            disp.setdefault(i, "redundant")
    out = [(i, f) for i, f, _ in kept]
    specific = [f for _, f in out if f.kind == "present" and f.text.lower() not in _GENERIC]
    named = set().union(*(stems(_key(f))[0] for _, f in out if f.kind != "organ" and not f.negative)) if out else set()
    result = []
    for i, f in out:
        m = _IDENTITY.match(f.text) if f.kind == "clause" else None
        others = set().union(*(stems(_key(g))[0] for j, g in out if j != i and g.kind != "organ")) | lead_stems
        if m and stems(m.group(1))[0] <= others:  # "the largest organ is the liver" after "the liver is healthy"
            disp.setdefault(i, "redundant")
            continue
        generic = f.kind == "present" and f.text.lower() in _GENERIC and specific
        shadowed = f.kind == "organ" and not f.negative and stems(f.text)[0] <= named  # "the liver is on the left" says it
        inside = f.kind == "present" and any(g is not f and f.text.lower() in g.text.lower() for _, g in out)
        if generic or shadowed or inside:
            disp.setdefault(i, "redundant")
        else:
            result.append((i, f))
    return result


def _merge_place(facts: list[tuple[int, Fact]], disp: dict[int, str]) -> list[tuple[int, Fact]]:
    """One finding and 'the abnormality is in the left lung': 'Nodule is seen in the left lung.'"""
    present = [k for k, (_, f) in enumerate(facts) if f.kind == "present" and not f.where]
    places = [k for k, (_, f) in enumerate(facts) if f.kind == "clause" and _GENERIC_SUBJECT.match(f.text)]
    if len(present) != 1 or len(places) != 1:
        return facts
    p, w = present[0], places[0]
    facts[p] = (facts[p][0], replace(facts[p][1], where=_GENERIC_SUBJECT.match(facts[w][1].text).group(1)))
    disp[facts[w][0]] = "stated"  # said, inside the finding's sentence
    return [x for k, x in enumerate(facts) if k != w]


def _series(items: Sequence[str], conj: str) -> str:
    """'a' / 'a and b' / 'a, b and c' (no serial comma), with ``conj`` before the last item."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {conj} {items[-1]}"


def _findings_sentence(facts: Sequence[Fact]) -> str:
    present = [f for f in facts if f.kind == "present"]
    clauses = []
    if len(present) == 1:
        f = present[0]
        article = f.text.split()[0].lower() in ("a", "an", "some", "evidence", "no") if f.text.split() else False
        where = f" {f.where}" if f.where else ""
        clauses.append(f"there {be_for(f.text)} {f.text}{where}" if article else f"{f.text} {be_for(f.text)} seen{where}")
    elif present:
        clauses.append("findings include " + _series([f.text + (f" {f.where}" if f.where else "") for f in present], "and"))
    clauses += [f.text for f in facts if f.kind == "clause" and not f.negative]
    seen = [f.text for f in facts if f.kind == "organ" and not f.negative]
    unseen = [f.text for f in facts if f.kind == "organ" and f.negative]
    organs = ([f"{_series(seen, 'and')} {'are' if len(seen) > 1 else be_for(seen[0])} visible"] if seen else []) + \
             ([f"no {_series(unseen, 'or')}"] if unseen else [])
    clauses += organs
    absent = [f.text for f in facts if f.kind == "absent"]
    if absent:  # the verb agrees with the nearest item: "no fracture or effusions are seen"
        clauses.append(f"no {_series(absent, 'or')} {be_for(absent[-1])} seen")
    clauses += [f.text for f in facts if f.kind == "clause" and f.negative]
    return sentence_case("; ".join(clauses)) + "." if clauses else ""


def _groups(facts: list[tuple[int, Fact]]) -> list[list[tuple[int, Fact]]]:
    """Statements in priority order; the organs seen or not make one statement together."""
    organs = [x for x in facts if x[1].kind == "organ"]
    rest = sorted((x for x in facts if x[1].kind != "organ"), key=lambda x: _RANK[(x[1].kind, x[1].negative)])
    groups = [[x] for x in rest if _RANK[(x[1].kind, x[1].negative)] < 2]
    groups += [organs] if organs else []
    return groups + [[x] for x in rest if _RANK[(x[1].kind, x[1].negative)] > 2]


def plan(turns: Sequence[Turn], max_findings: int = 5, max_words: int = 60) -> Plan:
    """The note for ``turns`` and what happened to each turn (see the module docstring)."""
    readings = [read_turn(t) for t in turns]
    ld = lead(turns, {i for i, (_, reason) in enumerate(readings) if reason == "overview"})
    disp: dict[int, str] = {i: "stated" for i in ld.stated}
    disp.update({i: "redundant" for i in ld.redundant})
    disp.update({i: "unbuildable" for i in ld.left_out})
    found: list[tuple[int, Fact]] = []
    for i, (facts, reason) in enumerate(readings):
        if i in disp:
            continue
        if reason:
            disp[i] = "unbuildable" if reason == "overview" else reason
        found += [(i, f) for f in facts]
    lead_stems = stems(ld.text or "")[0]
    groups = _groups(_dedupe(_merge_place(_dedupe(found, lead_stems, disp), disp), lead_stems, disp))
    while True:
        chosen = groups[:max_findings]
        text = " ".join(s for s in (ld.text, _findings_sentence([f for g in chosen for _, f in g])) if s)
        # dataset text sometimes doubles a word ("the the"): never carried into a summary
        text = re.sub(r"\b(\w+) \1\b", r"\1", text, flags=re.IGNORECASE)
        if len(text.split()) <= max_words or len(chosen) <= 1:
            break
        max_findings = len(chosen) - 1  # drop the least important statement rather than cut a sentence
    for k, g in enumerate(groups):
        for i, _ in g:
            disp.setdefault(i, "stated" if k < len(chosen) else "cut")
    if len(text.split()) > max_words:  # one statement alone over the cap: cut at a word, end with a stop
        text = " ".join(text.split()[:max_words]).rstrip(",;:") + ("" if text.split()[max_words - 1].endswith(".") else ".")
    return Plan(text=text, dispositions=[disp.get(i, "unbuildable") for i in range(len(turns))])
