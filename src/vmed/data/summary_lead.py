"""The lead of a template summary: what the image is (plane, modality, region, weighting), from the dialogue.

``lead(turns)`` reads the modality, plane, weighting and body-region answers (open: "What modality is used?" MRI; and
yes/no: "Is this image taken via MRI?" yes, "Is this a study of the chest?" yes, "Is this a T2 weighted image?" yes)
and writes ``"Transverse MRI of the head (T2-weighted)."``. It returns which turns it stated, and which overview turns
say nothing the lead does not already carry (a second modality question, "Is this a CT?" no when the lead says MRI):
those are redundant, never stated again. An overview turn it can neither state nor discard is left out and counted.

A "Which part of the body ...?" answer beats a "What organ ...?" one; an organ-system adjective becomes a system
("Cardiovascular" -> "the cardiovascular system").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from vmed.data.schema import Turn
from vmed.data.summary_words import ANATOMY, DETAILS, MODALITIES, MRI_DETAILS, PLANES, REGIONS, fix_typos, phrase_lower, sentence_case

__all__ = ["Lead", "lead", "overview_terms", "mentions_overview"]

_FILLER = {"this", "is", "was", "a", "an", "the", "image", "images", "scan", "study", "film", "view", "plane", "section", "cut",
           "taken", "via", "with", "using", "by", "in", "of", "on", "it", "done", "obtained", "shown", "picture", "slice",
           "weighted", "imaging", "oriented", "above", "an", "type", "modality", "scanned", "shot", "from", "enhanced",
           "showing", "shows", "show", "depicting", "depicts", "map"}
_EXTRA_REGIONS = {"pelvic cavity", "abdomen", "chest", "head", "neck", "brain", "pelvis", "lung", "lungs", "spine",
                  "cerebellum", "lumbar spine", "cervical spine", "thoracic spine", "abdominal cavity"}
_REGION_Q = re.compile(r"(part of the (?:human )?body|body part|organ system|which organ|what organ|main organ|region|area of the body|"
                       r"location of the body|what part|where does the (?:image|picture)|study of)")
_MODALITY_Q = ("modality", "type of imag", "kind of imag", "type of scan", "imaging technique", "what type of image",
               "how was this", "type of mri", "kind of mri", "taken with", "what image is", "image type", "imaging method")


def _tokens(text: str) -> list[str]:
    t = fix_typos(text.lower()).replace("x-ray", "xray").replace("x ray", "xray")
    t = re.sub(r"\bposterior[- ]anterior\b|\bposteroanterior\b", "pa", t)
    t = re.sub(r"\banterior[- ]posterior\b|\banteroposterior\b", "ap", t)
    t = re.sub(r"\bnon[- ]?contrast\b", "noncontrast", t)
    return re.findall(r"[a-z0-9]+", t.replace("-", " "))


def overview_terms(text: str) -> dict[str, str] | None:
    """'an axial T2 MRI of the head' -> {'plane': 'axial', 'modality': 'MRI', 'detail': 'T2-weighted', 'region': 'head'};
    None when a word is not overview vocabulary (the text says something else)."""
    out: dict[str, str] = {}
    rest: list[str] = []
    for w in _tokens(text):
        if w in _FILLER:
            continue
        if w == "cxr":
            out.setdefault("modality", "X-ray")
            out.setdefault("region", "chest")
        elif w in MODALITIES and "modality" not in out:
            out["modality"] = MODALITIES[w]
        elif w in PLANES and "plane" not in out:
            out["plane"] = PLANES[w]
        elif w in DETAILS:
            out["detail"] = DETAILS[w]
        else:
            rest.append(w)
    if rest:
        region = " ".join(rest)
        if region not in REGIONS | ANATOMY | _EXTRA_REGIONS:
            return None
        out["region"] = region
    return out or None


def mentions_overview(text: str) -> bool:
    """True if a noun phrase names the kind of image ('a standing CXR', 'an AP film'): not a finding."""
    words = set(_tokens(text))
    return bool(words & (set(MODALITIES) | set(PLANES) | {"cxr", "film", "image", "view", "scan", "kub", "radiograph"}))


@dataclass
class Lead:
    text: str | None = None
    attrs: dict[str, str] = field(default_factory=dict)
    stated: set[int] = field(default_factory=set)
    redundant: set[int] = field(default_factory=set)
    left_out: set[int] = field(default_factory=set)


def _system(answer: str) -> str:
    a = phrase_lower(answer.strip().rstrip("."))
    return f"{a} system" if re.search(r"(al|ar|ic|ary|ous)$", a.lower()) and "system" not in a.lower() else a


def _yes_no_overview(q: str) -> dict[str, str] | None:
    m = re.match(r"^do(?:es)? the organs? (?:in (?:the|this) (?:image|picture) )?exist in (?:the )?(.+?)\??$", q)
    if m:  # SLAKE "Do the organs in the image exist in the chest?"
        terms = overview_terms(m.group(1))
        return terms if terms and set(terms) == {"region"} else None
    m = re.match(r"^(?:is|was|does) (?:this|the image|this image|it)\b(.*?)\??$", q)
    return overview_terms(m.group(1)) if m and m.group(1).strip() else None


def _open_overview(q: str, a: str, attrs: dict[str, str], region_rank: list[int]) -> bool:
    """Fill ``attrs`` from an open overview answer; True if the turn was an overview question it used."""
    al = a.lower().rstrip(".")
    terms = overview_terms(a) if re.search(r"\bor\b", q) and al in q else None
    if terms and set(terms) - {"region"}:  # "Is this an MRI or a CT scan?" MRI
        for k, v in terms.items():
            attrs.setdefault(k, v)
        return True
    if any(k in q for k in _MODALITY_Q) or re.search(r"\b(weight|sequence|contrast)", q):
        terms = overview_terms(a)
        if terms is None:
            if "modality" not in attrs and re.search(r"x-?ray|\b(ct|mri|mr|ultrasound|pet)\b", al) and len(al.split()) <= 4:
                attrs["modality"] = a if a.isupper() else phrase_lower(a)
                return True
            return False
        for k, v in terms.items():
            if k == "region":
                if region_rank[0] > 0:
                    attrs["region"], region_rank[0] = v, 0
            else:
                attrs.setdefault(k, v)
        return True
    if re.search(r"\b(plane|view|orientation|projection)\b", q):
        terms = overview_terms(a)
        if terms and "plane" in terms:
            attrs.setdefault("plane", terms["plane"])
            return True
        return False
    if _REGION_Q.search(q) and " not " not in q and len(al.split()) <= 4 and "," not in al:
        rank = 1 if re.search(r"(which|what) organ (?!system)|main organ", q) else 0
        if rank < region_rank[0]:
            attrs["region"], region_rank[0] = (_system(a) if "system" in q else phrase_lower(fix_typos(a.rstrip(".")))), rank
        return True
    return False


def lead(turns: Sequence[Turn], overview: set[int]) -> Lead:
    """The lead of ``turns``; ``overview`` holds the indexes of the turns ``read_turn`` called overview questions."""
    out = Lead()
    region_rank = [2]
    negatives: list[tuple[int, dict[str, str]]] = []
    for i, t in enumerate(turns):
        q, a = t.question.strip().lower(), t.answer.strip()
        if a.lower() in ("yes", "no"):
            terms = _yes_no_overview(q)
            if terms is None:
                continue
            if a.lower() == "no":
                negatives.append((i, terms))
                continue
            new = {k: v for k, v in terms.items() if k not in out.attrs}
            out.attrs.update(new)
            (out.stated if new else out.redundant).add(i)
        elif i in overview:
            before = dict(out.attrs)
            if _open_overview(q, a, out.attrs, region_rank):
                (out.stated if out.attrs != before else out.redundant).add(i)
            else:
                out.left_out.add(i)
    if "modality" not in out.attrs and out.attrs.get("detail", "").split("-")[0].lower() in MRI_DETAILS | {"flair", "diffusion", "adc map"}:
        out.attrs["modality"] = "MRI"  # a T2 weighting says MRI
    for i, terms in negatives:  # "Is this a CT?" no: nothing to add when the lead names the modality
        (out.redundant if all(k in out.attrs and out.attrs[k] != v for k, v in terms.items()) else out.left_out).add(i)
    out.text = _text(out.attrs)
    return out


def _text(attrs: dict[str, str]) -> str | None:
    modality, plane, region, detail = (attrs.get(k) for k in ("modality", "plane", "region", "detail"))
    if not (modality or plane or region):
        return f"Image ({detail})." if detail else None  # "Is this a contrast enhanced image?" yes
    head = " ".join(x for x in (plane, modality) if x) or "image"
    if not modality and plane:
        head += " image"
    text = sentence_case(head)
    if region:
        text += f" of the {region}" if not region.lower().startswith("the ") else f" of {region}"
    if detail:
        text += f" ({detail})"
    return text + "."
