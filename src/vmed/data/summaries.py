"""Dialogue summaries: what a per-image dialogue established, in one or two sentences.

``TemplateSummarizer`` (the default; offline, deterministic, rule-based) writes a clinician-style note
of at most two sentences, using only words from the dialogue plus a few function words:

1. an overview sentence from the modality, plane and body-region answers:
   ``"Axial MRI of the abdomen (T2-weighted)."`` (a "Which part of the body ...?" answer beats a
   "What organ is ...?" one; modality, plane and organ questions are not repeated as findings);
2. a findings sentence built from one ``Fact`` per turn, in this order, clauses joined by ``;``:
   findings present (``"Is there a pneumothorax?" yes``, ``"What is abnormal?" cardiomegaly``,
   ``"What type of distributions is seen?" micronodular`` -> "micronodular distributions"), as
   ``"there is/are X"`` or, for several, ``"findings include X, Y"``; other statements
   (``"the liver is visible"``, ``"the mass is in the right lower lobe"``, ``"there are 2 masses"``,
   ``"the mass is 2.5 cm"``); findings absent, merged (``"there is no fracture, no effusion"``);
   negative statements (``"the heart is not enlarged"``).

The verb agrees with the subject it ends up with (``"cardiomegaly"`` -> is, ``"the kidneys"`` -> are);
an answer that is a sentence already is used as it is. Left out: speculative or textbook questions
(would, should, you, why, how, treatment, effect of), unsure answers (``"Air?"``, ``"not sure"``),
"normal"/"none" answers to "what is abnormal", picks from a list, generic findings ("abnormalities")
when a specific one exists, and paraphrases (same polarity, >= 50 % shared content stems). At most
``max_findings`` facts; whole facts are dropped (least important first) to stay under ``max_words``.
Only when no turn fits a pattern is the first exchange stated as it is (``"Q? A."``).

``LlmSummarizer`` asks a language model (an OpenAI-compatible endpoint, or a Hugging Face causal LM
id/path run with transformers) with a prompt file (``DEFAULT_LLM_PROMPT`` unless given), caches
each summary in a JSONL file keyed by sha256(dialogue turns + prompt + model) so that an
interrupted run resumes where it stopped, caps the length at ``max_words``, and falls back to the
template (counted, with the reason) when the response is empty.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

from vmed.data.schema import Dialogue, Turn
from vmed.errors import UserInputError

__all__ = [
    "Summarizer",
    "TemplateSummarizer",
    "LlmSummarizer",
    "OpenAIBackend",
    "HFBackend",
    "DEFAULT_LLM_PROMPT",
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


# --- vocabularies -------------------------------------------------------------------------------

_MODALITIES = {
    "mri": "MRI", "mr": "MRI", "ct": "CT", "x-ray": "X-ray", "xray": "X-ray", "radiograph": "radiograph",
    "ultrasound": "ultrasound", "us": "ultrasound", "pet": "PET", "mammogram": "mammogram", "angiogram": "angiogram",
    "fluoroscopy": "fluoroscopy", "cta": "CT angiogram", "mra": "MR angiogram",
}
_DETAILS = {"t1": "T1-weighted", "t2": "T2-weighted", "flair": "FLAIR", "dwi": "diffusion-weighted", "adc": "ADC map",
            "contrast": "with contrast", "with contrast": "with contrast", "noncontrast": "without contrast"}
_PLANES = {"axial": "axial", "transverse": "transverse", "coronal": "coronal", "sagittal": "sagittal", "pa": "PA", "ap": "AP",
           "lateral": "lateral", "oblique": "oblique", "posteroanterior": "PA", "anteroposterior": "AP"}
_BE = {"is": "is", "are": "are", "was": "was", "were": "were", "is/are": "is"}
_MODALS = {"can", "could", "will", "would", "should", "may", "might", "must"}
_DO = {"does": "does", "do": "do", "did": "did"}
_HAVE = {"has", "have", "had"}
_DETERMINERS = {"the", "this", "that", "these", "those", "its", "their", "a", "an", "any", "both", "his", "her", "each"}
_PRED_START = {
    "a", "an", "no", "not", "in", "on", "at", "within", "inside", "outside", "located", "seen", "present", "visible",
    "normal", "abnormal", "enlarged", "larger", "smaller", "bigger", "well", "more", "less", "consistent", "compatible",
    "suggestive", "likely", "found", "shown", "identified", "noted", "evident", "affected", "involved", "near", "above",
    "below", "behind", "under", "over", "between", "to", "from", "with", "without", "hyperdense", "hypodense",
    "hyperintense", "hypointense", "bright", "dark", "white", "black", "gray", "grey", "symmetric", "symmetrical",
    "asymmetric", "asymmetrical", "unilateral", "bilateral", "midline", "mobile", "homogeneous", "heterogeneous",
    "round", "irregular", "smooth", "large", "small", "big", "thick", "thin", "dilated", "wider", "narrow", "same",
    "similar", "different", "part", "one", "two", "there", "taken", "obtained", "able", "unable", "sufficient",
    "enough", "adequate", "appropriate", "possible", "useful", "for", "uniform", "patent", "higher", "lower", "greater",
    "denser", "brighter", "darker", "clear", "intact", "free", "located", "midline",
}
_WHERE_PREPS = {"in", "on", "at", "within", "inside", "outside", "near", "above", "below", "behind", "under", "over",
                "between", "along", "throughout", "around", "beside"}
_DIRECTIONS = {"anterior", "posterior", "superior", "inferior", "medial", "lateral", "proximal", "distal", "adjacent", "next"}
_REGIONS = {"chest", "abdomen", "abdominal", "head", "brain", "pelvis", "pelvic", "spine", "neck", "knee", "hand", "foot",
            "lung", "kidney", "liver", "skull", "cervical", "lumbar", "thoracic", "shoulder", "hip", "renal", "cardiac"}
_MRI_DETAILS = {"t1", "t2", "flair", "dwi", "adc"}
_STOP = {"the", "a", "an", "is", "are", "was", "were", "there", "this", "that", "of", "in", "on", "image", "seen",
         "present", "visible", "any", "be", "does", "do", "not", "no", "to", "with", "above", "shown"}
_VERBS = {
    "have", "contain", "show", "display", "appear", "demonstrate", "include", "involve", "cross", "extend", "enhance",
    "affect", "look", "represent", "exhibit", "suggest", "indicate", "reveal", "belong", "lie", "occupy", "compress",
    "cause", "measure", "exist", "depict", "visualize", "be", "see", "help", "communicate", "originate", "arise",
    "deviate", "displace", "obstruct", "abut", "invade", "impinge", "surround", "enter", "reach", "follow", "use",
    "receive", "undergo", "need", "require", "get",
}
_IRREGULAR_PAST = {"have": "had", "show": "showed", "see": "saw", "be": "was", "lie": "lay", "take": "took", "go": "went"}
_PLURALS = {"feet", "teeth", "children", "women", "men", "data", "vertebrae", "bronchi", "sulci", "gyri", "ganglia", "foramina"}
_SINGULARS = {"pancreas", "lens", "ascites", "diabetes", "series", "facies", "plexus", "corpus", "atlas", "pons", "iris"}
_ORGANS = {"organ", "organs", "structure", "structures", "part", "side", "lobe", "bone", "bones", "vessel", "region", "area"}
_WH = {"what", "which", "where", "how", "who", "why", "when"}
_UNSURE = {"not sure", "unsure", "unknown", "cannot tell", "can't tell", "n/a", "none"}
_NORMAL_ANSWERS = {"normal", "none", "nothing", "no abnormality", "not seen", "no"}
_OR_CHOICE = re.compile(r"\b([\w-]+) or ([\w-]+)\b", re.I)


def _words(text: str) -> list[str]:
    text = re.sub(r"\s*-\s*yes/no\s*$", "", text.strip(), flags=re.I).rstrip(" ?.")
    return text.replace("Is/Are", "Is").replace("is/are", "is").split()


def _sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _soft_lower(word: str) -> str:
    """'Chest' -> 'chest'; acronyms and mixed case ('MRI', 'T2', 'X-ray') stay."""
    return word.lower() if word[:1].isupper() and word[1:].islower() else word


def _phrase_lower(text: str) -> str:
    return " ".join(_soft_lower(w) for w in text.split())


def _third_person(verb: str) -> str:
    v = verb.lower()
    if v == "have":
        return "has"
    if v == "be":
        return "is"
    if v.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if v.endswith("y") and len(v) > 1 and v[-2] not in "aeiou":
        return verb[:-1] + "ies"
    return verb + "s"


def _past(verb: str) -> str:
    v = verb.lower()
    if v in _IRREGULAR_PAST:
        return _IRREGULAR_PAST[v]
    if v.endswith("e"):
        return verb + "d"
    if v.endswith("y") and len(v) > 1 and v[-2] not in "aeiou":
        return verb[:-1] + "ied"
    return verb + "ed"


def _split_subject(words: list[str]) -> tuple[list[str], list[str]] | None:
    """Split 'the heart enlarged' into (['the', 'heart'], ['enlarged']); None if no split is found."""
    if not words:
        return None
    start = 2 if words[0].lower() in _DETERMINERS and len(words) > 2 else 1
    if words[0].lower() == "it" or (words[0].lower() in {"this", "that"} and len(words) > 1
                                     and words[1].lower() in _PRED_START | {"the", "a", "an"}):
        return words[:1], words[1:]  # "is it difficult to ...", "is this the small bowel"
    for i in range(start, len(words)):
        w = words[i].lower()
        prev = words[i - 1].lower()
        if prev in {"of", "'s", "and"}:
            continue
        if w in _PRED_START or (w.endswith("ed") and len(w) > 4) or (w.endswith("ing") and len(w) > 5) or (w.endswith("ly") and len(w) > 4) or (w == "the" and i > 1):
            return words[:i], words[i:]
    return None


def _resolve_choice(question: str, answer: str) -> str | None:
    """'Is the lesion on the right or left side?' + 'Right' -> 'Is the lesion on the right side?'."""
    m = _OR_CHOICE.search(question)
    if not m:
        return None
    a = answer.strip().lower()
    for opt in (m.group(1), m.group(2)):
        if opt.lower() == a:
            return question[: m.start()] + opt.lower() + question[m.end():]
    return None


def statement(turn: Turn) -> str | None:
    """The fact a question/answer pair establishes, as a clause without final stop; None if no pattern fits."""
    q, a = turn.question.strip(), turn.answer.strip()
    yn = a.lower()
    if yn not in ("yes", "no"):
        choice = _resolve_choice(q, a)
        if choice is not None:
            q, yn = choice, "yes"
    text = _yes_no_statement(_words(q), yn == "yes") if yn in ("yes", "no") else _open_statement(_words(q), a)
    return _soft_lower(text.split()[0]) + text[len(text.split()[0]):] if text else None


def _yes_no_statement(words: list[str], yes: bool) -> str | None:
    if len(words) < 2:
        return None
    aux, rest = words[0].lower(), words[1:]
    if aux in _BE:
        be = _BE[aux]
        if rest[0].lower() == "there":
            pred = rest[1:]
            if not pred:
                return None
            if pred[0].lower() in ("anything", "something"):
                return f"there {be} {'something' if yes else 'nothing'} " + " ".join(pred[1:])
            if not yes:
                while pred and pred[0].lower() in {"any", "a", "an", "some"}:
                    pred = pred[1:]
                return f"there {be} no " + " ".join(pred) if pred else None
            if pred[0].lower() == "any":
                pred = pred[1:]
            return f"there {be} " + " ".join(pred)
        split = _split_subject(rest)
        if split is None:
            return None
        subj, pred = split
        if not yes and subj[0].lower() == "any":  # "Are any of the ribs fractured?" no
            return f"none{' ' + ' '.join(subj[1:]) if len(subj) > 1 else ''} {be} {' '.join(pred)}"
        neg = "" if yes else " not"
        if be in ("is", "are") and subj[0].lower() not in ("this", "that", "it", "these", "those"):
            be = _be_for(" ".join(subj))  # "Are the kidney present?" -> "the kidney is present"
        return f"{' '.join(subj)} {be}{neg} {' '.join(pred)}"
    if aux in _DO or aux in _MODALS or aux in _HAVE:
        idx = next((i for i, w in enumerate(rest) if i > 0 and w.lower() in _VERBS), None)
        if aux in _HAVE:
            idx = next((i for i, w in enumerate(rest) if i > 0 and w.lower().endswith(("ed", "en"))), None)
        if idx is None:
            return None
        subj, verb, tail = rest[:idx], rest[idx], rest[idx + 1:]
        tail_s = (" " + " ".join(tail)) if tail else ""
        if aux in _MODALS or aux in _HAVE:
            return f"{' '.join(subj)} {aux}{'' if yes else ' not'} {verb}{tail_s}"
        if yes:
            conj = {"does": _third_person, "do": lambda v: v, "did": _past}[aux](verb)
            return f"{' '.join(subj)} {conj}{tail_s}"
        return f"{' '.join(subj)} {aux} not {verb}{tail_s}"
    return None


def _plural(np: str) -> bool:
    """A rough number for a noun phrase: lists and '-s' heads are plural ('bones', 'ribs'), '-sis'/'-us'/'-ss' are not."""
    words = re.sub(r"\([^)]*\)", "", np).replace(",", " , ").split()
    if not words:
        return False
    head = next((w for w in words if w.lower() in _WHERE_PREPS | {"of", "with", "as", "showing", "that", "which", "to", "from"}), None)
    before = words[:words.index(head)] if head else words
    if "," in before or "and" in [w.lower() for w in before]:  # "the heart and lungs"; not "evidence of fluid and fat"
        return True
    head_word = words[words.index(head) - 1] if head and words.index(head) > 0 else words[-1]
    h = head_word.lower()
    if re.fullmatch(r"\d+", words[0]) and words[0] != "1":
        return True
    return (len(h) > 3 and h.endswith("s") and not h.endswith(("ss", "us", "is", "ous", "ics")) and h not in _SINGULARS) or h in _PLURALS


def _be_for(np: str) -> str:
    return "are" if _plural(np) else "is"


def _np(answer: str) -> str:
    """An answer as a noun phrase inside a sentence: 'Spleen' -> 'spleen', 'MRI' stays."""
    return _phrase_lower(answer.strip().rstrip("."))


def _the(np: str) -> str:
    """'pancreas' -> 'the pancreas'; phrases that start with a determiner, a number or a preposition stay."""
    first = np.split()[0].lower() if np.split() else ""
    ordinal = re.fullmatch(r"\d+(st|nd|rd|th)", first)
    if first in _DETERMINERS | _WHERE_PREPS | {"no", "both", "all"} or (first[:1].isdigit() and not ordinal) or np[:1].isupper():
        return np
    return "the " + np


def _open_statement(words: list[str], answer: str) -> str | None:
    if len(words) < 2:
        return None
    lw = [w.lower() for w in words]
    ans = _np(answer)
    if not _answer_ok(answer):
        return None
    if lw[:4] == ["what", "is", "the", "location"] and len(lw) > 5 and lw[4] == "of":  # "What is the location of the mass?"
        return _location(words[5:], _be_for(" ".join(words[5:])), ans)
    if lw[0] in ("what", "which") and lw[1] in _BE and len(words) > 2:
        subject = words[2:]
        if lw[2] in _PRED_START or lw[2].endswith(("ed", "ing")):  # "What is enlarged?" spleen
            return f"{_the(ans)} {_be_for(ans)} {' '.join(subject)}"
        split = _split_subject(subject)
        if split and split[1][-1].lower() in _WHERE_PREPS | {"with", "by", "of", "as"}:  # "What was this image taken with?"
            return f"{' '.join(split[0])} {_BE[lw[1]]} {' '.join(split[1])} {ans}"
        return f"{' '.join(subject)} {_BE[lw[1]]} {ans}"
    if lw[0] == "where" and lw[1] in _BE and len(words) > 2:
        return _location([w for w in words[2:] if w.lower() != "located"], _BE[lw[1]], ans)
    if lw[0] == "where" and lw[1] in ("does", "do") and len(words) > 3:  # "Where does the L renal vein connect to?" IVC
        prep = lw[-1] if lw[-1] in _WHERE_PREPS | {"to", "into"} else None
        verb_i = len(words) - (2 if prep else 1)
        verb = words[verb_i] if lw[1] == "do" else _third_person(words[verb_i])
        return f"{' '.join(words[2:verb_i])} {verb} {prep or 'in'} {_the(ans)}" if verb_i > 2 else None
    if lw[:2] == ["location", "of"] and len(words) > 2:
        return _location(words[2:], _be_for(" ".join(words[2:])), ans)
    if lw[:2] == ["how", "many"] and len(words) > 2:
        noun = []
        for w in words[2:]:
            if w.lower() in _BE or w.lower() in _DO or w.lower() in {"can", "could", "in", "on", "have", "has"}:
                break
            noun.append(w)
        if not noun or not re.fullmatch(r"\d+", ans) or (ans == "1" and _plural(" ".join(noun))):
            return None  # '1' with a plural noun would need a singular the dialogue does not give
        return f"there {'is' if ans == '1' else 'are'} {'no' if ans == '0' else ans} {' '.join(noun)}"
    if lw[0] == "how" and lw[1] in ("big", "large", "wide", "long") and len(lw) > 3 and lw[2] in _BE:  # "How big is the mass?"
        return f"{' '.join(words[3:])} {_BE[lw[2]]} {ans}"
    if lw[0] in ("in", "on") and len(lw) > 3 and lw[1] in ("which", "what"):  # "In which lobe is the lesion (located)?"
        be_idx = next((i for i in range(2, len(lw)) if lw[i] in _BE), None)
        if be_idx is not None and be_idx + 1 < len(words):
            subj = [w for w in words[be_idx + 1:] if w.lower() not in ("located", "present", "seen", "found")]
            return f"{' '.join(subj)} {_BE[lw[be_idx]]} {lw[0]} {_the(ans)}" if subj else None
    if lw[0] in ("what", "which") and lw[-1] in ("in", "on", "within") and len(words) > 4:
        # "Which ventricle is the mass located in?"
        be_idx = next((i for i in range(2, len(lw)) if lw[i] in _BE), None)
        subj = [w for w in words[be_idx + 1:-1] if w.lower() not in _PRESENCE | {"located", "found"}] if be_idx else []
        if subj:
            side = ans.lower() in ("left", "right", "bilateral", "midline")
            return _location(subj, _BE[lw[be_idx]], ans if side else f"{lw[-1]} {_the(ans)}")
    if lw[0] in ("what", "which") and len(words) > 3:
        be_idx = next((i for i in range(2, len(lw)) if lw[i] in _BE), None)
        if be_idx is not None and be_idx + 1 < len(words):
            rest = words[be_idx + 1:]
            if rest[0].lower() in _PRED_START or rest[0].lower().endswith("ed"):
                return f"{_the(ans) if lw[1] in _ORGANS else ans} {_be_for(ans)} {' '.join(rest)}"
            if lw[1] in ("color", "colour", "size", "shape", "density", "big", "large", "wide", "long"):
                return f"{' '.join(rest)} {_BE[lw[be_idx]]} {ans}"
        if lw[1] in _DO and len(words) > 3 and lw[-1] in _VERBS:  # "What does the hypodensity suggest?"
            return f"{' '.join(words[2:-1])} {_third_person(lw[-1]) if lw[1] == 'does' else lw[-1]} {ans}"
    wh = next((i for i, w in enumerate(lw) if w in ("what", "which") and i > 1), None)
    if wh is not None and lw[0] not in _WH and (lw[0] in _DETERMINERS or lw[0] == "there"):
        # A declarative question: "The calcification is located in what vessel?" -> put the answer in its place.
        end = wh + 2 if wh + 1 < len(lw) and lw[wh + 1] not in _BE else wh + 1
        if end < len(lw) and (lw[end] == "of" or not set(lw[end:]) & (set(_BE) | set(_DO))):
            end = len(lw)  # "... in which part of the pancreas?" the pancreatic head; "... for what lung pathology?"
        if end == len(lw) and wh + 1 < len(lw) and lw[wh + 1] in ("direction", "side"):
            lead = words[:wh - 1] if lw[wh - 1] in _WHERE_PREPS | {"to"} else words[:wh]
            return " ".join(lead) + (f" on {_the(ans)}" if lw[wh + 1] == "side" else f" {ans}")  # "deviated right"
        if end == len(lw):
            return " ".join(words[:wh]) + f" {_the(ans) if lw[wh - 1] in _WHERE_PREPS else ans}"
    return None


def _location(subject: list[str], be: str, ans: str) -> str | None:
    if not subject:
        return None
    first = ans.split()[0].lower() if ans else ""
    second = ans.split()[1].lower() if len(ans.split()) > 1 else ""
    prep = "" if first in _WHERE_PREPS or first == "the" or (first in _DIRECTIONS and second == "to") else "in the "
    if ans.lower() in ("left", "right", "bilateral", "midline", "diffuse"):
        prep = {"left": "on the ", "right": "on the ", "midline": "in the "}.get(ans.lower(), "")
    subject = [w for w in subject if w.lower() not in _PRESENCE]
    split = _split_subject(subject)
    participle = split and len(split[1]) == 1 and split[1][0].lower().endswith("ed") and split[0][-1].lower() not in _DETERMINERS
    if participle:  # "Where is the hemidiaphragm elevated?"
        return f"{' '.join(split[0])} {be} {split[1][0]} {prep}{ans}"
    return f"{' '.join(subject)} {be} {prep}{ans}" if subject else None


def _answer_ok(answer: str) -> bool:
    """An answer worth stating: not unsure ('Air?', 'not sure'), not a long free-text sentence."""
    a = answer.strip().lower()
    if not a or a.endswith("?") or a in _UNSURE or len(a.split()) > 14:
        return False
    return not re.match(r"^(it|they|there|this|you|we|i|because|imagine|yes|no)\b", a)


# --- facts: one per turn, rendered in groups ----------------------------------------------------

@dataclass(frozen=True)
class Fact:
    """What one turn established. ``kind``: ``present`` (a finding NP), ``absent`` (an NP not seen) or ``clause``."""

    kind: str
    text: str
    negative: bool = False


_CONTEXT = re.compile(
    r"\s+(?:in|on|within|from)\s+(?:this|the|these)\s+(?:above\s+)?(?:image|images|film|scan|picture|study|radiograph|"
    r"x-ray|xray|ct|mri|cut|section|slice|patient|exam|case)(?:\s+(?:scan|shown|above))?\b(?!['\w])", re.I)
_PRESENCE = {"present", "seen", "visible", "noted", "identified", "evident", "shown", "visualized", "demonstrated", "observed",
             "existing", "exist"}
_GENERIC = {"abnormalities", "abnormality", "abnormal findings", "findings", "an abnormality", "any abnormalities", "lesions"}
_FINDING_Q = re.compile(
    r"^(?:what|which)\s+(?:is|are)\s+(?:the\s+)?(?:abnormal(?:ity|ities)?|findings?|pathology|wrong)\b|"
    r"^(?:what|which)\s+(?:abnormal(?:ity|ities)|pathology|patholog(?:y|ies)|findings?|lesions?|diseases?)\s+(?:is|are|does|do)\b|"
    r"^what\s+(?:is|are)\s+(?:seen|shown|present|visible)\b", re.I)
_TYPE_Q = re.compile(r"^(?:what|which)\s+(?:type|types|kind|kinds|sort)\s+of\s+(.+?)\s+(?:is|are|was|were)\s+"
                     r"(?:seen|shown|present|visible|noted|depicted|demonstrated|found|displayed)\b", re.I)
_SPECULATIVE = re.compile(r"\b(you|we|i|would|will|should|might|may|could|likely|probabl[ey]|possible|why|how)\b", re.I)
_KNOWLEDGE_Q = re.compile(r"\b(effect of|function of|treat|treatment|prevent|symptoms?|causes? of|differential)\b", re.I)
_OVERVIEW_Q = re.compile(r"\b(modality|plane|organ system|which organ|what organ|part of the body|body part|type of imag|"
                         r"kind of imag|imaging technique|how was this|type of mri|weighting|sequence|taken with|view)\b", re.I)
_OVERVIEW_WORDS = set(_MODALITIES) | set(_PLANES) | set(_DETAILS) | {"this", "image", "scan", "film", "study", "an", "a", "the",
                                                                       "taken", "is", "not", "view", "plane", "section", "cut"}


def _fact(turn: Turn) -> Fact | list[Fact] | None:
    """The fact of one turn (see the module docstring), or None when the turn fits no pattern or is speculative."""
    q = _CONTEXT.sub("", re.sub(r"\s+", " ", turn.question.replace('"', "").strip()).rstrip(" ?."))
    a = turn.answer.strip().rstrip(".")
    al = a.lower()
    if "?" in q or _KNOWLEDGE_Q.search(q) or ("," in q and al not in ("yes", "no")):
        return None  # two questions in one, a textbook question, a pick from a list ("smallest, rectum, small bowel or bladder")
    if _SPECULATIVE.search(q) and not re.match(r"(?i)^how (many|big|large|wide|long)\b", q):
        return None
    if al not in ("yes", "no") and _OVERVIEW_Q.search(q):
        return None  # a modality/plane/organ question: the overview sentence states it (or it did not fit one)
    if al not in ("yes", "no") and _resolve_choice(q, a) is None:
        if re.match(r"^(there (is|are)|the \w+( \w+)? (is|are)) \w+", al) and len(al.split()) <= 14:
            return Fact("clause", _soft_lower(a.split()[0]) + a[len(a.split()[0]):])  # the answer is a sentence already
        if not _answer_ok(a):
            return None
        if al in _NORMAL_ANSWERS and _FINDING_Q.search(q):
            return None
        if _FINDING_Q.search(q):
            about = re.search(r"\b(?:about|with|in|of)\s+((?:the|this|these)\s+.+)$", q, re.I)
            if len(al.split()) == 1 and al.endswith(("ed", "al", "ic", "ous", "ive")):
                # an adjective: "What is abnormal about the pancreas?" enlarged
                return Fact("clause", f"{_phrase_lower(about.group(1))} {_be_for(about.group(1))} {al}") if about else None
            return [Fact("present", _np(x)) for x in a.split(", ") if x.strip()]  # "Brain Edema, Brain Tumor": two findings
        m = _TYPE_Q.match(q)
        if m:
            kind = _CONTEXT.sub("", m.group(1))
            head = kind.split()[-1].lower()
            return Fact("present", _np(a) if head.rstrip("s") in al else f"{_np(a)} {_phrase_lower(kind)}")
    m = re.match(r"(?i)^(?:does|do|is|are) there (?:seem|appear)s? to be (an? |any )?(.+)$", q)
    if m and al in ("yes", "no"):  # "Does there seem to be a mass effect?"
        article = m.group(1) if al == "yes" and m.group(1) and m.group(1).lower() != "any " else ""
        return Fact("present" if al == "yes" else "absent", article + m.group(2))
    w = _words(q)
    lw = [x.lower() for x in w]
    if al in ("yes", "no") and len(w) > 2 and lw[0] in _BE:
        rest, yes = w[1:], al == "yes"
        if lw[1] == "there":  # "Is there (a|any) X (present)?"
            np = rest[1:]
            while np and np[-1].lower() in _PRESENCE:
                np = np[:-1]
            if not yes:
                while np and np[0].lower() in {"any", "a", "an", "some"}:
                    np = np[1:]
            elif np and np[0].lower() in {"any", "some"}:
                np = np[1:]
            np = [x for j, x in enumerate(np) if not (x.lower() in _PRESENCE and j + 1 < len(np) and np[j + 1].lower() in _WHERE_PREPS)]
            if np and np[0].lower() not in ("anything", "something"):
                return Fact("present" if yes else "absent", re.sub(r"\s+as well$", "", " ".join(np)))
        elif lw[-1] in _PRESENCE and (lw[1] == "any" or lw[1] not in _DETERMINERS | {"it"}):  # "Is lymphadenopathy present?"
            np = w[2:-1] if lw[1] == "any" else w[1:-1]
            return Fact("present" if yes else "absent", " ".join(np)) if np else None
        if lw[1] in ("anything", "something"):  # "Is anything not normal?" no: a double negative, better left out
            return None
        if set(lw[1:]) <= _OVERVIEW_WORDS | _REGIONS:  # "Is this an MRI?" no: the overview says what it is
            return None
    text = statement(Turn(q, a))
    if not text or re.search(r"\bany\b", text, re.I):  # "any of the organs belong to ...": no statement says which
        return None
    return Fact("clause", text, negative=bool(re.search(r"\b(not|no|none|nothing)\b", text)))


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
                if (len(head_words) in (2, 3) and head_words[-1] in _MODALITIES and region is None
                        and set(head_words[:-1]) <= _REGIONS):
                    region, thing = " ".join(head_words[:-1]), head_words[-1]
                if modality is None and thing in _MODALITIES:
                    modality, _ = _MODALITIES[thing], used.add(i)
                elif plane is None and thing in _PLANES:
                    plane, _ = _PLANES[thing], used.add(i)
            continue
        tokens = al.replace(" - ", " ").replace("weighted", "").split()
        if any(k in q for k in ("modality", "type of imag", "kind of imag", "type of scan", "imaging technique", "what type of image",
                                "how was this", "type of mri", "kind of mri", "taken with")):
            if modality is None and al in _MODALITIES:
                modality = _MODALITIES[al]
                used.add(i)
            elif modality is None and set(tokens) & set(_MODALITIES) and set(tokens) <= set(_MODALITIES) | set(_DETAILS):
                # "MR - T2 weighted"
                modality = next(_MODALITIES[w] for w in tokens if w in _MODALITIES)
                details += [_DETAILS[w] for w in tokens if w in _DETAILS]
                used.add(i)
            elif modality is None and (any(w in _MODALITIES for w in al.replace("-", " ").split()) or re.search(r"x-?ray", al)):
                modality = a if not a[:1].isupper() or a.isupper() or "-" in a.split()[0] else _phrase_lower(a)
                used.add(i)
            elif al in _DETAILS:
                details.append(_DETAILS[al])
                used.add(i)
        elif any(k in q for k in ("weight", "sequence", "contrast")) and al in _DETAILS:
            details.append(_DETAILS[al])
            used.add(i)
        elif any(k in q for k in ("plane", "view", "orientation", "projection")) and re.sub(r" (plane|view|section)$", "", al) in _PLANES:
            al = re.sub(r" (plane|view|section)$", "", al)  # SLAKE: "Transverse Plane"
            if plane is None:
                plane = _PLANES[al]
                used.add(i)
        elif re.search(r"(part of the body|body part|organ system|which organ|what organ|region|area of the body|location of the body|what part)", q) and " not " not in q:
            # "Which part of the body ..." beats "What organ is the gray part ...?" (an organ, not the region imaged)
            rank = 1 if re.search(r"(which|what) organ (?!system)", q) else 0
            if (region is None or rank < region_rank) and len(al.split()) <= 4:
                if region is not None:
                    used.discard(region_turn)
                region, region_rank, region_turn = _phrase_lower(a.rstrip(".")), rank, i
                used.add(i)
    if modality is None and any(d.split("-")[0].lower() in _MRI_DETAILS or d in ("FLAIR", "diffusion-weighted", "ADC map") for d in details):
        modality = "MRI"
    if not (modality or plane or region):
        return None, used
    head = " ".join(x for x in (plane, modality) if x) or "image"
    if not modality:
        head = f"{head} image" if plane else head
    text = _sentence_case(head)
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
        found = None if i in skip else _fact(t)
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


def _findings_sentence(facts: Sequence[Fact]) -> str:
    """'There is a pneumothorax; the mass is in the right lobe; there is no fracture, no effusion.'"""
    present = [f.text for f in facts if f.kind == "present"]
    absent = [f.text for f in facts if f.kind == "absent"]
    clauses = []
    if len(present) == 1:
        clauses.append(f"there {_be_for(present[0])} {present[0]}")
    elif present:
        clauses.append("findings include " + ", ".join(present))
    clauses += [f.text for f in facts if f.kind == "clause" and not f.negative]
    if absent:
        clauses.append(f"there {_be_for(absent[0])} no " + ", no ".join(absent))
    clauses += [f.text for f in facts if f.kind == "clause" and f.negative]
    return _sentence_case("; ".join(clauses)) + "." if clauses else ""


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
            (f"findings include {_np(t.answer)}" for t in turns if _answer_ok(t.answer)
             and re.search(r"(?i)\b(finding|sign|term|patholog|abnormal|diagnos|condition)", t.question)), None)
        text = (_sentence_case(clause) + ".") if clause else \
            f"{turns[0].question.strip().rstrip('?. ')}? {_sentence_case(turns[0].answer.strip().rstrip('?.'))}." if turns else ""
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


DEFAULT_LLM_PROMPT = """You are a radiologist writing a short note about one medical image.
Below are questions a clinician asked about the image and the answers that were confirmed.
Write one or two fluent sentences, like a clinician's note, that state what these answers establish.
Use only facts from the answers; do not add diagnoses, measurements or advice that are not there.
Do not list the questions. At most {max_words} words.

{dialogue}

Note:"""
"""The default prompt; a prompt file replaces it. ``{dialogue}`` and ``{max_words}`` are filled in."""


class OpenAIBackend:
    """An OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp server, vmed serve, OpenAI)."""

    def __init__(self, url: str, model: str, timeout: float = 60.0, api_key: str | None = None):
        import httpx

        base = url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.model = model
        key = api_key or os.environ.get("VMED_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY")
        self._client = httpx.Client(timeout=timeout, headers={"Authorization": f"Bearer {key}"} if key else {})

    def __call__(self, prompt: str, max_tokens: int) -> str:
        import httpx

        body = {"model": self.model, "messages": [{"role": "user", "content": prompt}], "temperature": 0, "max_tokens": max_tokens}
        try:
            r = self._client.post(self.url, json=body)
        except httpx.TransportError as e:
            raise UserInputError(f"--llm-url {self.url}: cannot reach the endpoint ({e}). Start the server or fix the URL; "
                                 "summaries made so far are cached and reused on the next run.") from None
        r.raise_for_status()
        data = r.json()
        try:
            return str(data["choices"][0]["message"]["content"] or "")
        except (KeyError, IndexError, TypeError):
            return ""


class HFBackend:
    """A Hugging Face causal LM (hub id or local path), greedy decoding with its chat template."""

    def __init__(self, model: str):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_name = model
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModelForCausalLM.from_pretrained(model)
        self.model.eval()

    def __call__(self, prompt: str, max_tokens: int) -> str:
        import torch

        tok = self.tokenizer
        if tok.chat_template:
            ids = tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True)["input_ids"]
        else:
            ids = tok(prompt, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = self.model.generate(ids, max_new_tokens=max_tokens, do_sample=False, pad_token_id=tok.pad_token_id or tok.eos_token_id)
        return tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)


def dialogue_text(turns: Sequence[Turn]) -> str:
    """The dialogue as the prompt shows it: one ``Q: ... / A: ...`` pair per line."""
    return "\n".join(f"Q: {t.question}\nA: {t.answer}" for t in turns)


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
