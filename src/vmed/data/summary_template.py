"""The template summarizer's rules for one turn: a question/answer pair as a clause or a ``Fact``.

``vmed.data.summaries`` composes the note from these (overview sentence, fact order, findings sentence,
word cap); this module knows English just well enough to turn one exchange into a statement:

- ``statement(turn)``: the clause a yes/no or open question establishes, without final stop.
  ``"Is the heart enlarged?" No`` -> ``"the heart is not enlarged"``; ``"Where is the mass located?"
  Pineal gland`` -> ``"the mass is in the pineal gland"``; ``"How many masses are there?" 2`` ->
  ``"there are 2 masses"``; an "X or Y" question answered with one option becomes a yes/no question.
- ``turn_fact(turn)``: the ``Fact`` of a turn, or None for a speculative or textbook question, an unsure
  answer, a "normal" answer to "what is abnormal", a pick from a list, or an overview (modality/plane/organ)
  question: a finding present (``"Is there a pneumothorax?" yes``, ``"What is abnormal?" cardiomegaly``),
  a finding absent (``"Is lymphadenopathy present?" no``) or another clause. A negative that ends in a verb form
  or an adverb stays a clause, since "no X is seen" would misread it (``"Is there a chest tube placed?" no`` ->
  ``"there is no chest tube placed"``).

The verb agrees with the subject it ends up with (``be_for``: ``"cardiomegaly"`` -> is, ``"the kidneys"`` -> are).
The vocabularies are plain sets; ``MODALITIES``, ``PLANES``, ``DETAILS``, ``REGIONS`` and ``MRI_DETAILS`` are
shared with the overview sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vmed.data.schema import Turn

__all__ = [
    "Fact",
    "statement",
    "turn_fact",
    "answer_ok",
    "be_for",
    "noun_phrase",
    "phrase_lower",
    "sentence_case",
    "MODALITIES",
    "DETAILS",
    "PLANES",
    "REGIONS",
    "MRI_DETAILS",
]

# --- vocabularies -------------------------------------------------------------------------------

MODALITIES = {
    "mri": "MRI", "mr": "MRI", "ct": "CT", "x-ray": "X-ray", "xray": "X-ray", "radiograph": "radiograph",
    "ultrasound": "ultrasound", "us": "ultrasound", "pet": "PET", "mammogram": "mammogram", "angiogram": "angiogram",
    "fluoroscopy": "fluoroscopy", "cta": "CT angiogram", "mra": "MR angiogram",
}
DETAILS = {"t1": "T1-weighted", "t2": "T2-weighted", "flair": "FLAIR", "dwi": "diffusion-weighted", "adc": "ADC map",
            "contrast": "with contrast", "with contrast": "with contrast", "noncontrast": "without contrast"}
PLANES = {"axial": "axial", "transverse": "transverse", "coronal": "coronal", "sagittal": "sagittal", "pa": "PA", "ap": "AP",
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
REGIONS = {"chest", "abdomen", "abdominal", "head", "brain", "pelvis", "pelvic", "spine", "neck", "knee", "hand", "foot",
            "lung", "kidney", "liver", "skull", "cervical", "lumbar", "thoracic", "shoulder", "hip", "renal", "cardiac"}
MRI_DETAILS = {"t1", "t2", "flair", "dwi", "adc"}
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


def sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _soft_lower(word: str) -> str:
    """'Chest' -> 'chest'; acronyms and mixed case ('MRI', 'T2', 'X-ray') stay."""
    return word.lower() if word[:1].isupper() and word[1:].islower() else word


def phrase_lower(text: str) -> str:
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
            be = be_for(" ".join(subj))  # "Are the kidney present?" -> "the kidney is present"
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


def be_for(np: str) -> str:
    return "are" if _plural(np) else "is"


def noun_phrase(answer: str) -> str:
    """An answer as a noun phrase inside a sentence: 'Spleen' -> 'spleen', 'MRI' stays."""
    return phrase_lower(answer.strip().rstrip("."))


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
    ans = noun_phrase(answer)
    if not answer_ok(answer):
        return None
    if lw[:4] == ["what", "is", "the", "location"] and len(lw) > 5 and lw[4] == "of":  # "What is the location of the mass?"
        return _location(words[5:], be_for(" ".join(words[5:])), ans)
    if lw[0] in ("what", "which") and lw[1] in _BE and len(words) > 2:
        subject = words[2:]
        if lw[2] in _PRED_START or lw[2].endswith(("ed", "ing")):  # "What is enlarged?" spleen
            return f"{_the(ans)} {be_for(ans)} {' '.join(subject)}"
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
        return _location(words[2:], be_for(" ".join(words[2:])), ans)
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
                return f"{_the(ans) if lw[1] in _ORGANS else ans} {be_for(ans)} {' '.join(rest)}"
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


def answer_ok(answer: str) -> bool:
    """An answer worth stating: not unsure ('Air?', 'not sure'), not a long free-text sentence."""
    a = answer.strip().lower()
    if not a or a.endswith("?") or a in _UNSURE or len(a.split()) > 14:
        return False
    return not re.match(r"^(it|they|there|this|you|we|i|because|imagine|yes|no)\b", a)


# --- facts: what one turn established ---------------------------------------------------------

@dataclass(frozen=True)
class Fact:
    """What one turn established. ``kind``: ``present`` (a finding NP), ``absent`` (an NP not seen) or ``clause``."""

    kind: str
    text: str
    negative: bool = False


_CONTEXT = re.compile(
    r"\s+(?:in|on|within|from)\s+(?:this|the|these)\s+(?:above\s+)?(?:image|images|film|scan|picture|study|radiograph|"
    r"x-ray|xray|ct|mri|cut|section|slice|patient|exam|case)(?:\s+(?:scan|shown|above))?\b(?!['\w])", re.I)
_PRESENCE = {"present", "seen", "pictured", "visible", "noted", "identified", "evident", "shown", "visualized", "demonstrated",
             "observed", "existing", "exist"}
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
_OVERVIEW_WORDS = set(MODALITIES) | set(PLANES) | set(DETAILS) | {"this", "image", "scan", "film", "study", "an", "a", "the",
                                                                       "taken", "is", "not", "view", "plane", "section", "cut"}


def _participle(word: str) -> bool:
    """'placed', 'used' (but not 'bleed', 'bed'): a verb form after a noun phrase."""
    w = word.lower()
    return len(w) > 3 and w.endswith("ed") and not w.endswith("eed")


def turn_fact(turn: Turn) -> Fact | list[Fact] | None:
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
        if not answer_ok(a):
            return None
        if al in _NORMAL_ANSWERS and _FINDING_Q.search(q):
            return None
        if _FINDING_Q.search(q):
            about = re.search(r"\b(?:about|with|in|of)\s+((?:the|this|these)\s+.+)$", q, re.I)
            if len(al.split()) == 1 and al.endswith(("ed", "al", "ic", "ous", "ive")):
                # an adjective: "What is abnormal about the pancreas?" enlarged
                return Fact("clause", f"{phrase_lower(about.group(1))} {be_for(about.group(1))} {al}") if about else None
            return [Fact("present", noun_phrase(x)) for x in a.split(", ") if x.strip()]  # "Brain Edema, Brain Tumor": two findings
        m = _TYPE_Q.match(q)
        if m:
            kind = _CONTEXT.sub("", m.group(1))
            head = kind.split()[-1].lower()
            return Fact("present", noun_phrase(a) if head.rstrip("s") in al else f"{noun_phrase(a)} {phrase_lower(kind)}")
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
            # "Is there a chest tube placed?" no: "no chest tube placed is seen" misreads; the statement says it
            participle = not yes and len(np) > 1 and _participle(np[-1])
            if np and np[0].lower() not in ("anything", "something") and not participle:
                return Fact("present" if yes else "absent", re.sub(r"\s+as well$", "", " ".join(np)))
        elif lw[-1] in _PRESENCE and (lw[1] == "any" or lw[1] not in _DETERMINERS | {"it"}):  # "Is lymphadenopathy present?"
            np = w[2:-1] if lw[1] == "any" else w[1:-1]
            if np and not (len(np) > 1 and np[-1].lower().endswith("ly")):  # "Are fat pads prominently visualized?": a statement
                return Fact("present" if yes else "absent", " ".join(np))
            if not np:
                return None
        if lw[1] in ("anything", "something"):  # "Is anything not normal?" no: a double negative, better left out
            return None
        if set(lw[1:]) <= _OVERVIEW_WORDS | REGIONS:  # "Is this an MRI?" no: the overview says what it is
            return None
    text = statement(Turn(q, a))
    if not text or re.search(r"\bany\b", text, re.I):  # "any of the organs belong to ...": no statement says which
        return None
    return Fact("clause", text, negative=bool(re.search(r"\b(not|no|none|nothing)\b", text)))

