"""The template summarizer's rules for one turn: a question/answer pair as ``Fact``s, or a reason it gives none.

``vmed.data.summaries`` composes the note from these (lead, fact order, redundancy, word cap); the lead (modality,
plane, region) is ``vmed.data.summary_lead``; the words are ``vmed.data.summary_words``. This module knows English
just well enough to turn one exchange into a statement, and refuses when it cannot do so with confidence:

- ``statement(turn)``: the clause a yes/no or open question establishes, without final stop.
  ``"Is the heart enlarged?" No`` -> ``"the heart is not enlarged"``; ``"Where is the mass located?"
  Pineal gland`` -> ``"the mass is in the pineal gland"``; ``"How many masses are there?" 2`` ->
  ``"there are 2 masses"``; an "X or Y" question answered with one option becomes a yes/no question.
- ``read_turn(turn)``: ``(facts, reason)``. Facts: a finding present (``"Is there a pneumothorax?" yes``,
  ``"What is abnormal?" cardiomegaly``), a finding absent (``"Is lymphadenopathy present?" no``), an organ seen or not
  (``"Does the picture contain liver?" yes``: the image is the subject, so the fact is about the organ), or another
  clause. No facts, with the reason counted by the audit: ``overview`` (modality/plane/region: the lead's),
  ``not_image_fact`` (speculative or textbook question, unsure answer), ``unbuildable`` (no sentence with
  confidence: the statement would keep the image as its subject, a question word, a dangling word or a list
  it cannot phrase).

The verb agrees with the subject (``be_for``); where the question's own verb ("Are ...") disagrees with the subject
the split found, the subject is shortened until they agree ("Are the hepatic lesions ring enhancing?" no ->
"the hepatic lesions are not ring enhancing").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vmed.data.schema import Turn
from vmed.data.summary_lead import mentions_overview, overview_terms
from vmed.data.summary_words import (
    BE,
    DETERMINERS,
    DIRECTIONS,
    DO,
    HAVE,
    MODALS,
    NORMAL_ANSWERS,
    OR_CHOICE,
    ORGANS,
    PRED_START,
    SIDE_WORDS,
    VERBS,
    WH,
    WHERE_PREPS,
    answer_items,
    answer_ok,
    answer_phrase,
    be_for,
    fix_typos,
    is_anatomy,
    noun_phrase,
    past,
    phrase_lower,
    place_phrase,
    plural,
    soft_lower,
    the,
    third_person,
)

__all__ = ["Fact", "statement", "read_turn", "confident", "IMAGE_SUBJECT"]

def _words(text: str) -> list[str]:
    text = re.sub(r"\s*-\s*yes/no\s*$", "", text.strip(), flags=re.I).rstrip(" ?.")
    return text.replace("Is/Are", "Is").replace("is/are", "is").split()



def _split_subject(words: list[str]) -> tuple[list[str], list[str]] | None:
    """Split 'the heart enlarged' into (['the', 'heart'], ['enlarged']); None if no split is found."""
    if not words:
        return None
    start = 2 if words[0].lower() in DETERMINERS and len(words) > 2 else 1
    if words[0].lower() == "it" or (words[0].lower() in {"this", "that"} and len(words) > 1
                                     and words[1].lower() in PRED_START | {"the", "a", "an"}):
        return (words[:1], words[1:]) if len(words) > 1 else None  # "is it difficult to ...", "is this the small bowel"
    for i in range(start, len(words)):
        w = words[i].lower()
        prev = words[i - 1].lower()
        if prev in {"of", "'s", "and"}:
            continue
        participle = w in ("given", "taken", "shown", "seen", "broken", "swollen", "drawn")
        if w in PRED_START or participle or (w.endswith("ed") and len(w) > 4) or (w.endswith("ing") and len(w) > 5) or (w.endswith("ly") and len(w) > 4) or (w == "the" and i > 1):
            if w not in _ADJECTIVES:  # a phrase inside the subject may come first:
                for j in range(i + 1, len(words)):       # "the fat surrounding the pancreas | normal"
                    later, before = words[j].lower(), words[j - 1].lower()
                    if later in _ADJECTIVES and before not in DETERMINERS | WHERE_PREPS | {"of", "and", "more", "less", "most"}:
                        return words[:j], words[j:]
            return words[:i], words[i:]
    return None


# Predicate adjectives a yes/no question may end its subject with ("Is the mass in the liver irregular in contour?").
_ADJECTIVES = {"normal", "abnormal", "enlarged", "larger", "smaller", "irregular", "smooth", "heterogeneous", "homogeneous",
               "heterogenous", "homogenous", "pathologic", "pathological", "symmetric", "symmetrical", "asymmetric",
               "calcified", "hyperdense", "hypodense", "hyperintense", "hypointense", "dilated", "thickened", "patent",
               "equivalent", "equal", "healthy", "unhealthy", "benign", "malignant", "cystic", "solid", "intact"}


def _agree(subj: list[str], pred: list[str], aux: str) -> tuple[list[str], list[str]]:
    """Move trailing subject words into the predicate until the subject agrees with the question's verb
    ("Are the hepatic lesions | ring enhancing"); the split as found when no shorter subject agrees."""
    if aux not in ("is", "are") or plural(" ".join(subj)) == (aux == "are"):
        return subj, pred
    for k in range(len(subj) - 1, 0, -1):
        if subj[k - 1].lower() in DETERMINERS | {"of", "and"}:
            break
        if plural(" ".join(subj[:k])) == (aux == "are"):
            return subj[:k], subj[k:] + pred
    return subj, pred


def _resolve_choice(question: str, answer: str) -> str | None:
    """'Is the lesion on the right or left side?' + 'Right' -> 'Is the lesion on the right side?'."""
    m = OR_CHOICE.search(question)
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
    return soft_lower(text.split()[0]) + text[len(text.split()[0]):] if text else None


def _yes_no_statement(words: list[str], yes: bool) -> str | None:
    if len(words) < 2:
        return None
    aux, rest = words[0].lower(), words[1:]
    if aux in BE:
        be = BE[aux]
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
        subj, pred = _agree(*split, aux)
        if not yes and subj[0].lower() == "any":  # "Are any of the ribs fractured?" no
            rest = subj[1:] if len(subj) > 1 and subj[1].lower() == "of" else subj[1:]
            lead = "none" if rest and rest[0].lower() == "of" else "no"  # "none of the ribs are", "no ribs are"
            return f"{lead}{' ' + ' '.join(rest) if rest else ''} {be} {' '.join(pred)}" if rest or lead == "none" else None
        neg = "" if yes else " not"
        if be in ("is", "are") and subj[0].lower() not in ("this", "that", "it", "these", "those"):
            be = be_for(" ".join(subj))  # "Are the kidney present?" -> "the kidney is present"
        return f"{' '.join(subj)} {be}{neg} {' '.join(pred)}"
    if aux in DO or aux in MODALS or aux in HAVE:
        idx = next((i for i, w in enumerate(rest) if i > 0 and w.lower() in VERBS), None)
        if aux in HAVE:
            idx = next((i for i, w in enumerate(rest) if i > 0 and w.lower().endswith(("ed", "en"))), None)
        if idx is None:
            return None
        subj, verb, tail = rest[:idx], rest[idx], rest[idx + 1:]
        tail_s = (" " + " ".join(tail)) if tail else ""
        if aux in MODALS or aux in HAVE:
            return f"{' '.join(subj)} {aux}{'' if yes else ' not'} {verb}{tail_s}"
        if yes:
            conj = {"does": third_person, "do": lambda v: v, "did": past}[aux](verb)
            return f"{' '.join(subj)} {conj}{tail_s}"
        return f"{' '.join(subj)} {aux} not {verb}{tail_s}"
    return None


# long: one ordered table of open-question shapes ("Where is X?", "What is the X of Y?", ...), tried top to
# bottom; splitting it would hide the order that decides which shape wins.
def _open_statement(words: list[str], answer: str) -> str | None:
    if len(words) < 2:
        return None
    lw = [w.lower() for w in words]
    if not answer_ok(answer):
        return None
    ans = noun_phrase(answer)
    if "," in ans and lw[0] != "where":  # "Colon, Small Bowel" -> "colon and small bowel" ("Where" answers: place_phrase)
        ans = answer_phrase(answer, article=False)
        if ans is None:
            return None
    if lw[:4] == ["what", "is", "the", "location"] and len(lw) > 5 and lw[4] == "of":  # "What is the location of the mass?"
        return _location(words[5:], be_for(" ".join(words[5:])), ans)
    if lw[0] in ("what", "which") and lw[1] in BE and len(words) > 2:
        subject = words[2:]
        if lw[2] in PRED_START or lw[2].endswith(("ed", "ing")):  # "What is enlarged?" spleen
            return f"{the(ans)} {be_for(ans)} {' '.join(subject)}"
        split = _split_subject(subject)
        if lw[2] == "the" and len(lw) > 4 and lw[3] in ("shape", "color", "colour") and lw[4] == "of":  # "... the shape of X?"
            return f"{the(' '.join(words[5:]))} {be_for(' '.join(words[5:]))} {ans}" if len(words) > 5 else None
        if split and split[1][-1].lower() in WHERE_PREPS | {"with", "by", "of", "as"}:  # "What was this image taken with?"
            return f"{' '.join(split[0])} {BE[lw[1]]} {' '.join(split[1])} {ans}"
        if len(subject) > 2 and lw[-1] in ("of", "with", "for", "to") and lw[-2] not in DETERMINERS:  # "... indicative of?"
            return f"{' '.join(subject[:-2])} {BE[lw[1]]} {' '.join(subject[-2:])} {the(ans) if is_anatomy(ans) else ans}"
        return f"{' '.join(subject)} {BE[lw[1]]} {the(ans) if is_anatomy(ans) else ans}"
    if lw[0] == "what" and lw[1] in ("color", "colour", "shape") and len(words) > 3 and (lw[2] in BE or lw[2] in DO):
        subject = words[3:-1] if lw[-1] in ("show", "look", "appear", "have") and lw[2] in DO else words[3:]
        return f"{' '.join(subject)} {be_for(' '.join(subject))} {ans}" if subject else None  # "What color are the teeth?"
    if lw[0] == "where" and lw[1] in BE and len(words) > 2:
        return _location([w for w in words[2:] if w.lower() != "located"], BE[lw[1]], ans)
    if lw[0] == "where" and lw[1] in ("does", "do") and len(words) > 3:  # "Where does the L renal vein connect to?" IVC
        prep = lw[-1] if lw[-1] in WHERE_PREPS | {"to", "into"} else None
        verb_i = len(words) - (2 if prep else 1)
        verb = words[verb_i] if lw[1] == "do" else third_person(words[verb_i])
        return f"{' '.join(words[2:verb_i])} {verb} {prep or 'in'} {the(ans)}" if verb_i > 2 else None
    if lw[:2] == ["location", "of"] and len(words) > 2:
        return _location(words[2:], be_for(" ".join(words[2:])), ans)
    if lw[:2] == ["how", "many"] and len(words) > 2:
        noun = []
        for w in words[2:]:
            if w.lower() in BE or w.lower() in DO or w.lower() in {"can", "could", "in", "on", "have", "has"}:
                break
            noun.append(w)
        if not noun or not re.fullmatch(r"\d+", ans) or (ans == "1" and plural(" ".join(noun))):
            return None  # '1' with a plural noun would need a singular the dialogue does not give
        return f"there {'is' if ans == '1' else 'are'} {'no' if ans == '0' else ans} {' '.join(noun)}"
    if lw[0] == "how" and lw[1] in ("big", "large", "wide", "long") and len(lw) > 3 and lw[2] in BE:  # "How big is the mass?"
        return f"{' '.join(words[3:])} {BE[lw[2]]} {ans}"
    if lw[0] in ("in", "on") and len(lw) > 3 and lw[1] in ("which", "what"):  # "In which lobe is the lesion (located)?"
        be_idx = next((i for i in range(2, len(lw)) if lw[i] in BE), None)
        if be_idx is not None and be_idx + 1 < len(words):
            subj = [w for w in words[be_idx + 1:] if w.lower() not in ("located", "present", "seen", "found")]
            if len(subj) > 2 and _participle(subj[-1]) and ans.lower() in SIDE_WORDS:  # "... is the hemidiaphragm elevated?"
                return f"{' '.join(subj[:-1])} {BE[lw[be_idx]]} {subj[-1]} {place_phrase(ans)}"
            return f"{' '.join(subj)} {BE[lw[be_idx]]} {lw[0]} {the(ans)}" if subj else None
    if lw[0] in ("what", "which") and lw[-1] in ("in", "on", "within") and len(words) > 4:
        # "Which ventricle is the mass located in?"
        be_idx = next((i for i in range(2, len(lw)) if lw[i] in BE), None)
        subj = [w for w in words[be_idx + 1:-1] if w.lower() not in _PRESENCE | {"located", "found"}] if be_idx else []
        if subj:
            side = ans.lower() in ("left", "right", "bilateral", "midline")
            return _location(subj, BE[lw[be_idx]], ans if side else f"{lw[-1]} {the(ans)}")
    if lw[0] in ("what", "which") and len(words) > 3:
        be_idx = next((i for i in range(2, len(lw)) if lw[i] in BE), None)
        if be_idx is not None and be_idx + 1 < len(words):
            rest = words[be_idx + 1:]
            if rest[0].lower() in PRED_START or rest[0].lower().endswith("ed"):
                subject = _answer_subject(ans, words[1:be_idx])
                return f"{subject} {be_for(subject)} {' '.join(rest)}"
            if lw[1] in ("color", "colour", "size", "shape", "density", "big", "large", "wide", "long"):
                return f"{' '.join(rest)} {BE[lw[be_idx]]} {ans}"
        verb = "have" if lw[2] == "has" else lw[2][:-1] if lw[2].endswith("s") and lw[2][:-1] in VERBS else lw[2]
        if verb in VERBS | {"belong"} and verb != "be" and len(words) > 3:  # "Which organs belong to X?" lung
            subject = _answer_subject(ans, words[1:2])
            return f"{subject} {verb if plural(subject) else third_person(verb)} {' '.join(words[3:])}"
        if lw[1] in DO and len(words) > 3 and lw[-1] in VERBS:  # "What does the hypodensity suggest?"
            return f"{' '.join(words[2:-1])} {third_person(lw[-1]) if lw[1] == 'does' else lw[-1]} {ans}"
    wh = next((i for i, w in enumerate(lw) if w in ("what", "which") and i > 1), None)
    if wh is not None and lw[0] not in WH and (lw[0] in DETERMINERS or lw[0] == "there"):
        # A declarative question: "The calcification is located in what vessel?" -> put the answer in its place.
        end = wh + 2 if wh + 1 < len(lw) and lw[wh + 1] not in BE else wh + 1
        if end < len(lw) and (lw[end] == "of" or not set(lw[end:]) & (set(BE) | set(DO))):
            end = len(lw)  # "... in which part of the pancreas?" the pancreatic head; "... for what lung pathology?"
        if end == len(lw) and wh + 1 < len(lw) and lw[wh + 1] in ("direction", "side"):
            lead = words[:wh - 1] if lw[wh - 1] in WHERE_PREPS | {"to"} else words[:wh]
            return " ".join(lead) + (f" on {the(ans)}" if lw[wh + 1] == "side" else f" {ans}")  # "deviated right"
        if end == len(lw):
            return " ".join(words[:wh]) + f" {the(ans) if lw[wh - 1] in WHERE_PREPS else ans}"
    return None


def _answer_subject(ans: str, asked: list[str]) -> str:
    """The subject an answer makes for 'Which NOUN (of X) is ...?': 'Left' for 'side of the cardiac border' ->
    'the left cardiac border'; 'Right parietal' for 'lobe' -> 'the right parietal lobe'; 'Spleen' for 'organ' -> 'the spleen'."""
    low = [w.lower() for w in asked]
    head = low[:low.index("of")] if "of" in low else low
    of = [w for w in asked[len(head) + 1:] if w.lower() not in DETERMINERS] if "of" in low else []
    last = ans.split()[-1].lower() if ans.split() else ""
    if " and " in ans:
        return ans
    if not (last in SIDE_WORDS or last.endswith(("al", "ar", "ic", "ior"))):  # the answer names the thing itself
        return the(ans) if head and head[-1] in ORGANS | {"vessel", "organ", "lobe", "artery", "vein"} else ans
    if of:
        noun = " ".join(of)
    elif head and head[-1] not in ("side", "part", "area", "region", "organ", "structure", "one"):
        noun = " ".join(asked[:len(head)])
    else:
        noun = "side"
    return f"the {ans} {noun}" if noun.split()[-1].lower() not in ans.lower().split() else the(ans)


def _location(subject: list[str], be: str, ans: str) -> str | None:
    """'the mass' + 'Right lower lobe' -> 'the mass is in the right lower lobe' (``place_phrase`` words the answer)."""
    subject = [w for w in subject if w.lower() not in _PRESENCE | {"located", "found"}]
    place = place_phrase(ans)
    if not subject or place is None or subject[0].lower() == "there":  # "Where is there evidence of ...?"
        return None
    split = _split_subject(subject)
    participle = split and len(split[1]) == 1 and split[1][0].lower().endswith("ed") and split[0][-1].lower() not in DETERMINERS
    if participle:  # "Where is the hemidiaphragm elevated?"
        return f"{' '.join(split[0])} {be} {split[1][0]} {place}"
    return f"{' '.join(subject)} {be} {place}"



@dataclass(frozen=True)
class Fact:
    """What one turn established. ``kind``: ``present`` (a finding NP), ``absent`` (an NP not seen), ``organ`` (an organ
    or structure seen, or with ``negative`` not seen) or ``clause`` (a statement without final stop)."""

    kind: str
    text: str
    negative: bool = False
    where: str = ""  # a present finding's place, when a location answer about "the abnormality" was merged into it


_CONTEXT = re.compile(
    r"\s+(?:in|on|within|from|of|about)\s+(?:this|the|these)\s+(?:above\s+|axial\s+|coronal\s+|sagittal\s+|chest\s+)?(?:image|images|film|scan|picture|study|radiograph|"
    r"x-ray|xray|ct|mri|cut|section|slice|patient|exam|case)(?:\s+(?:scan|shown|above))?\b(?!['\w])", re.I)
_PRESENCE = {"present", "seen", "pictured", "visible", "noted", "identified", "evident", "shown", "visualized", "demonstrated",
             "observed", "existing", "exist", "included", "appear", "appears", "depicted", "displayed"}
_FINDING_Q = re.compile(
    r"^(?:what|which)\s+(?:is|are)\s+(?:the\s+)?(?:abnormal(?:ity|ities)?|findings?|pathology|wrong)\b|"
    r"^(?:what|which)\s+(?:abnormal(?:ity|ities)|pathology|patholog(?:y|ies)|findings?|lesions?|diseases?)\s+(?:is|are|does|do)\b|"
    r"^what\s+(?:is|are)\s+(?:seen|shown|present|visible)\b", re.I)
_TYPE_Q = re.compile(r"^(?:what|which)\s+(?:type|types|kind|kinds|sort)\s+of\s+(.+?)\s+(?:is|are|was|were)\s+"
                     r"(?:seen|shown|present|visible|noted|depicted|demonstrated|found|displayed)\b", re.I)
_SPECULATIVE = re.compile(r"\b(you|we|i|would|will|should|might|may|could|likely|probabl[ey]|possible|why|how)\b", re.I)
_KNOWLEDGE_Q = re.compile(r"\b(effect of|function of|treat|treatment|prevent|symptoms?|causes? of|differential|damage|"
                          r"(?:organs?|tissues?|structures?) (?:that|which) (?:can|could|is|are|has|have))\b", re.I)
_IMAGE_NOUNS = r"(?:picture|pictures|image|images|scan|film|study|radiograph|slice|section|ct|mri|x-?ray)"
_NOT_IMAGE = r"(?:patient|lesion|lucency|mass|structure|finding|organ|area|region|density|opacity|hypodensity|hyperdensity|nodule)"
_IMG = rf"(?:(?:the|this)\s+(?:chest\s+)?{_IMAGE_NOUNS}|this(?!\s+{_NOT_IMAGE}\b)|it)"  # "this patient", "this lesion": not the image
IMAGE_SUBJECT = re.compile(rf"^{_IMG}\b(?!\s+(?:is|was)\s+(?:not\s+)?(?:difficult|possible|hard|easy)\s+to\b)", re.I)
_IMG_SHOWS = re.compile(rf"^(?:does|do|did)\s+{_IMG}\s+(?:contain|show|include|have|display|depict|demonstrate|reveal)\s+(.+)$", re.I)
_IMG_NORMAL = re.compile(rf"^(?:is|does)\s+{_IMG}\s+(?:look\s+|appear\s+)?(normal|abnormal|healthy)$|"
                         rf"^is\s+this\s+(?:an?\s+)?(normal|abnormal)\s+(?:image|film|study|scan|x-?ray|ct|mri|cxr|radiograph)$", re.I)
_IMG_IS_A = re.compile(r"^is\s+this\s+(an?\s+.+)$", re.I)
_IMG_SUGGESTS = re.compile(rf"^(?:{_IMG}\s+(?:is\s+)?(?:suspicious|concerning|suggestive|consistent|typical|diagnostic|indicative)"
                           rf"|what\s+does\s+{_IMG}\s+(?:represent|suggest|indicate|depict)$"
                           rf"|what\s+is\s+{_IMG}\s+(?:suspicious|concerning|suggestive|consistent|typical|indicative))\b", re.I)
_NOT_OVERVIEW = re.compile(r"\b(\w+ system\b(?! is imaged)(?=.*\b(?:belong|part)\b)|(?:belong|part of) (?:to )?the \w+ system|abnormal|normal|affected|enlarged|disease|lesion|mass|wrong|patholog|largest|smallest|gray|grey|"
                           r"black|white|bright|dark|left|right|top|bottom|center|rightmost|leftmost)", re.I)
_OVERVIEW_Q = re.compile(r"\b(modality|plane|organ system|which organ|what organ|main organ|part of the (?:human )?body|body part|"
                         r"type of imag|kind of imag|imaging technique|how was this|type of mri|weighting|sequence|taken with|"
                         r"view|where does the (?:image|picture)|what (?:image|type of image) is|imaging method|contrast)", re.I)
_IMAGE_WORDS = re.compile(r"\b(?:this|the) (?:image|picture)|\bimage's\b", re.I)
_SPECIAL = re.compile(r"<\|[^|>]*\|>|<image>", re.I)
_QUESTION_LEFT = re.compile(r"\b(?:what|which|where|how|who|why|when|whose|is/are)\b|[?/]", re.I)
_DANGLING = re.compile(r"\b(?:in|on|of|to|with|by|for|at|from|and|or|the|a|an|as|than|into|is|are|does)$", re.I)
_BROKEN = re.compile(r"\b(is|are|was|were|does|do) (?:is|are|was|were|does|do)\b|\bin the (?:top|bottom)\b|"
                     r", (?:left|right|upper|lower|top|bottom)\b|;|\(s\)|"
                     r"\band (?:is|are|was|were|does|do|can) (?:it|they|there|the|this|these)\b|\w this (?:is|are)\b", re.I)


def confident(text: str) -> bool:
    """A statement the note may carry: not about the image itself, no question word, nothing dangling or doubled."""
    return bool(text.strip()) and not (IMAGE_SUBJECT.search(text) or _IMAGE_WORDS.search(text) or _QUESTION_LEFT.search(text) or _DANGLING.search(text)
                                       or _BROKEN.search(text) or re.search(r"\bany\b", text, re.I))


def _participle(word: str) -> bool:
    """'placed', 'used' (but not 'bleed', 'bed'): a verb form after a noun phrase."""
    w = word.lower()
    return len(w) > 3 and w.endswith("ed") and not w.endswith("eed")


def _presence(np: str, yes: bool) -> Fact:
    """'the liver' seen -> an organ fact; 'a pneumothorax' -> a finding present or absent."""
    np = re.sub(r"\s+as well$", "", np.strip())
    if is_anatomy(np):
        return Fact("organ", re.sub(r"^(?:the|a|an|any|some)\s+", "", np, flags=re.I), negative=not yes)
    if not yes or np.lower().startswith("the "):
        np = re.sub(r"^(?:any|a|an|some|the)\s+", "", np, flags=re.I)
    elif np.lower().startswith(("any ", "some ")):
        np = np.split(" ", 1)[1]
    return Fact("present" if yes else "absent", np)


def _clean(question: str) -> str:
    q = fix_typos(re.sub(r"\s+", " ", question.replace('"', "").strip()))
    q = re.sub(r"\s*-\s*yes/no\s*$", "", q, flags=re.I).rstrip(" ?.")
    q = re.sub(r"(?i)\b(is|are)/(is|are)\b", lambda m: m.group(1), q)  # SLAKE "Where is/are ...", "Are/Is there ..."
    q = re.sub(r"\b([A-Za-z]+)/[A-Za-z]+\b", r"\1", q)  # "Which organs/organ ..." -> "Which organs ..."
    return _CONTEXT.sub("", q).strip()


def read_turn(turn: Turn) -> tuple[list[Fact], str | None]:
    """The facts of one turn, or no facts and the reason (see the module docstring)."""
    q = _clean(turn.question)
    a = fix_typos(turn.answer.strip().rstrip("."))
    al = a.lower()
    if not re.search(r"\w", q) or not re.search(r"\w", a) or _SPECIAL.search(f"{q} {a}"):
        return [], "unbuildable"  # nothing to say, or a chat-template token ("<image>", "<|eot_id|>") a note must not carry
    yes_no = al in ("yes", "no")
    if not yes_no and re.search(r"\bor\b", q, re.I) and al in q.lower() and set(overview_terms(a) or ()) - {"region"}:
        return [], "overview"  # "Is this an MRI or a CT scan?" MRI: the lead states it
    choice = None if yes_no or mentions_overview(a) or not re.match(r"(?i)^(?:is|are|was|were|does|do)\b", q) else _resolve_choice(q, a)
    if choice is not None:  # "Is this image normal or abnormal?" Abnormal -> "Is this image abnormal?" yes
        q, a, al, yes_no = choice, "yes", "yes", True
    m = re.match(r"(?i)^(?:do|can|could) (?:we|you) see (?!(?:all|both|each|every)\b)(.+)$", q) if yes_no else None
    if m:  # "Do we see diffuse cerebral edema in this MRI?" no: a presence question
        return [_presence(m.group(1), al == "yes")], None
    if not yes_no and _OVERVIEW_Q.search(q) and not _NOT_OVERVIEW.search(q):
        return [], "overview"  # modality/plane/region: the lead states it ("..., MRI, CT or X-Ray?" included)
    if "?" in q or _KNOWLEDGE_Q.search(q) or ("," in q and not yes_no):
        return [], "not_image_fact"  # two questions in one, a textbook question, a pick from a list
    if _SPECULATIVE.search(q) and not re.match(r"(?i)^how (many|big|large|wide|long)\b", q):
        return [], "not_image_fact"
    if not yes_no and not answer_ok(a) and not re.match(r"^(there (is|are)|the \w+( \w+)? (is|are)) \w+", al):
        return [], "not_image_fact"  # unsure ("Air?", "not sure") or free text
    facts = _image_subject(q, a) if yes_no else _open_facts(q, a)
    if facts is not None:
        return (facts, None) if facts else ([], "unbuildable")
    text = statement(Turn(q, a))
    if text:  # "this lucency ...", "this patient ...": the subject is not the image
        text = re.sub(rf"^this (?!{_IMAGE_NOUNS}\b|(?:is|was|are|were|has|had|can|does|did)\b)(?=[a-z])", "the ", text, flags=re.I)
    if not text or not confident(text):
        return [], "unbuildable"
    return [Fact("clause", text, negative=bool(re.search(r"\b(not|no|none|nothing)\b", text)))], None


def _image_subject(q: str, a: str) -> list[Fact] | None:
    """Yes/no questions about presence, and those whose subject is the image: facts, [] (unbuildable) or None."""
    yes = a.lower() == "yes"
    m = re.match(r"(?i)^(?:does|do|is|are) there (?:seem|appear)s? to be (an? |any )?(.+)$", q)
    if m:  # "Does there seem to be a mass effect?"
        return [_presence((m.group(1) or "") + m.group(2), yes)]
    m = _IMG_SHOWS.match(q)
    if m and not IMAGE_SUBJECT.match(m.group(1)):  # "Does the picture contain liver?"
        return [_presence(m.group(1), yes)]
    m = re.match(r"(?i)^(?:does|do|did) (?:this|the) patient (?:have|has|show) (.+)$", q)
    if m:  # "Does this patient have pneumomediastinum?" no
        return [_presence(m.group(1), yes)]
    m = _IMG_NORMAL.match(q)
    if m:  # "Is this image normal?" no -> an abnormality; "Does this image look abnormal?" no -> none seen
        abnormal = (m.group(1) or m.group(2)).lower() == "abnormal"
        return [Fact("present" if abnormal == yes else "absent", "abnormality")]
    w = q.split()
    lw = [x.lower() for x in w]
    if len(w) > 2 and lw[0] in BE and lw[1] == "there":  # "Is there (a|any) X (present)?"
        np = w[2:]
        while np and np[-1].lower() in _PRESENCE:
            np = np[:-1]
        np = [x for j, x in enumerate(np) if not (x.lower() in _PRESENCE and j + 1 < len(np) and np[j + 1].lower() in WHERE_PREPS)]
        # "Is there a chest tube placed?" no: "no chest tube placed is seen" misreads; the statement says it
        if np and np[0].lower() not in ("anything", "something") and not (not yes and len(np) > 1 and _participle(np[-1])):
            return [_presence(" ".join(np), yes)]
        return None
    if len(w) > 2 and (lw[0] in BE or lw[0] in DO) and lw[-1] in _PRESENCE and lw[1] not in ("it", "there"):
        # "Is lymphadenopathy present?", "Does the rectum appear?", "Is the liver visible?"
        np = " ".join(w[2:-1] if lw[1] == "any" else w[1:-1])
        determiner = lw[1] in DETERMINERS and lw[1] != "any"
        if np and lw[1] not in ("all", "both", "each", "every") and not IMAGE_SUBJECT.match(np) and not np.endswith("ly") and (is_anatomy(np) or not determiner):
            return [_presence(np, yes)]  # "Are fat pads prominently visualized?", "Is the mass seen?": statements
    m = _IMG_IS_A.match(q)
    if m and not re.search(r"\bor\b", q, re.I):  # "Is this a hepatic mass?" yes; "Is this a tension pneumothorax?" no
        return [] if mentions_overview(m.group(1)) else [_presence(m.group(1), yes)]  # "Is this a standing CXR?"
    if len(w) > 1 and lw[1] in ("anything", "something"):  # "Is anything not normal?" no: a double negative, better left out
        return []
    if len(w) > 1 and IMAGE_SUBJECT.match(" ".join(w[1:])) and not re.match(r"(?i)^(is|was)\s+(it|this)\s+(?:not\s+)?(difficult|possible|hard|easy)", q):
        return []  # any other question about the image itself ("Is this image best taken on expiration?")
    return None


def _open_facts(q: str, a: str) -> list[Fact] | None:
    """Open questions whose answer is a finding (or a list of them): facts, or None for the statement rules."""
    al = a.lower()
    if OR_CHOICE.search(q) and _resolve_choice(q, a) is not None:
        return None  # "Is this a solid or cystic lesion?" Solid: a yes/no statement
    if re.match(r"^(there (is|are)|the \w+( \w+)? (is|are)) \w+", al) and len(al.split()) <= 14:
        return [Fact("clause", soft_lower(a.split()[0]) + a[len(a.split()[0]):])]  # the answer is a sentence already
    if _FINDING_Q.search(q) or _IMG_SUGGESTS.search(q):
        if al in NORMAL_ANSWERS:
            return [Fact("absent", "abnormality")]  # "What diseases are included?" None
        about = re.search(r"\b(?:about|with|in|of)\s+((?:the|this|these)\s+.+)$", q, re.I)
        if len(al.split()) == 1 and al.endswith(("ed", "al", "ic", "ous", "ive")):
            # an adjective: "What is abnormal about the pancreas?" enlarged
            return [Fact("clause", f"{phrase_lower(about.group(1))} {be_for(about.group(1))} {al}")] if about else []
        items = answer_items(a)
        both = answer_phrase(a, article=False) if items and len(items) == 2 else None
        items = [both] if both and both.startswith("both ") else items  # "Left Lung, Right": both lungs, one phrase
        return [Fact("present", x) for x in items] if items else []  # "Brain Edema, Brain Tumor": two findings
    m = _TYPE_Q.match(q)
    if m:
        kind = _CONTEXT.sub("", m.group(1))
        head = kind.split()[-1].lower()
        return [Fact("present", noun_phrase(a) if head.rstrip("s") in al else f"{noun_phrase(a)} {phrase_lower(kind)}")]
    if IMAGE_SUBJECT.match(q) or re.match(rf"(?i)^(?:what|where|which)\s+(?:\w+\s+)?(?:is|does|do)\s+{_IMG}\b", q):
        return []  # "Where does the picture show?" answered with something the lead did not take
    return None
