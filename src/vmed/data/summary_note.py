"""The template note: the lead, then the findings, each said once, and what happened to every turn.

``plan(turns)`` reads each turn (``summary_template.read_turn``), takes the lead (``summary_lead.lead``), drops what is
said twice, orders and caps the statements, and returns the text with one disposition per turn, which the audit counts:

- ``stated``: in the summary (the lead, a statement, or merged into one);
- ``redundant``: its content is already carried by the lead or another statement (same polarity, content stems a subset,
  or more than half shared; different sides never match: "left kidney" is not "right kidney"; "than the left" is a
  comparison, not a side; "no abnormalities with X" = "X is not abnormal", "altered" and "loss of normal" = "abnormal");
  a place inside another one says more ("the lesion is in the right lung" / "... in the right upper lobe": a lobe,
  apex, base or field of a lung is in that lung, and SLAKE's "right lobe" is the right lung) and is kept, unless the
  general one names more sides ("in both lungs"); linking clauses with one complement whose subjects differ only by an
  attribute noun ("the shape of the liver" / "nodular liver" suggests cirrhosis); an "abnormality here" whose every
  place ("in the liver and the kidney"; the lead's region names none) a finding there names ("liver cancer");
- ``unbuildable``: no sentence could be built with confidence; ``not_image_fact``: speculative, textbook or unsure;
- ``cut``: a fact beyond ``max_findings`` or the word cap (least important first).

Order: findings present ("There is a pneumothorax"; several: "Findings include ..."), other positive statements, the
organs seen ("Liver and spleen are visible; no kidney"), findings absent ("no fracture or effusion is seen"), negative
statements. An organ that another statement names is not listed as visible again. A finding and its place said apart
become one ("pleural effusion" + "the effusion is on the left" -> "Pleural effusion is seen on the left").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Sequence

from vmed.data.schema import Turn
from vmed.data.summary_lead import lead
from vmed.data.summary_template import Fact, read_turn
from vmed.data.summary_words import ANATOMY, LEVEL_STEMS, LUNG_PARTS, be_for, is_anatomy, sentence_case, stems

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


_LINK = re.compile(r"^(?P<subject>.+?) (?:is|are|was|were|represents?|indicates?|suggests?|shows?|depicts?|can be (?:observed|seen))"
                   r"(?: not)?(?: (?:indicative|suggestive|consistent) (?:of|with))? (?P<complement>.+)$", re.I)


# Nouns that name an attribute of the subject, not another subject: "the shape of the liver suggests cirrhosis" is about
# the liver ("nodular liver suggests cirrhosis").
_ATTRIBUTE_STEMS = frozenset({"shape", "borde", "textu", "confi", "morph", "junct", "appea"})


def _parts(f: Fact) -> tuple[frozenset, frozenset] | None:
    """(subject stems, complement stems) of a linking clause ("X is / represents Y"), None for other facts; attribute
    nouns (shape, contour, ...) are not part of the subject."""
    m = _LINK.match(f.text) if f.kind == "clause" else None
    return (stems(m.group("subject"))[0] - _ATTRIBUTE_STEMS, stems(m.group("complement"))[0]) if m else None


_OTHER_ORGANS = frozenset().union(*(stems(a)[0] for a in ANATOMY)) - {"lung", "left", "right"} - LEVEL_STEMS - LUNG_PARTS
_PLACE_NOISE = frozenset({"near", "field", "zone"})


def _expand(s: frozenset) -> frozenset:
    """A place's stems with what they imply: a lobe, apex or base with no other organ is in the lung; a lung place is
    also SLAKE's "lobe" (its word for a lung); a side of the chest is that lung's."""
    if (s & LUNG_PARTS and not s & _OTHER_ORGANS) or "chest" in s:  # "the lower left chest": the left lung's place
        s = s | {"lung"}
    return s | {"lobe"} if "lung" in s else s


def _contains(general: frozenset, specific: frozenset) -> bool:
    """Does a positive statement say less than another one about the same thing in a place inside its place: "the lesion
    is in the right lung" / "... in the right upper lobe"; "pneumonia in both lungs" / "... in the lower right lung"
    (sides: the general one's include the specific one's; no side is any side)."""
    gs, ps = general & SIDE_WORDS_STEMS, specific & SIDE_WORDS_STEMS
    if "norma" in general | specific or (gs and not gs >= ps):
        return False  # "normal" statements: the general one says more; never another side
    g, p = general - SIDE_WORDS_STEMS - _PLACE_NOISE, specific - SIDE_WORDS_STEMS - _PLACE_NOISE
    place_words = LEVEL_STEMS | LUNG_PARTS | _OTHER_ORGANS | {"lung"}
    # a finding (not a bare organ) in both, and the specific one adds only a place
    return bool(g - place_words) and g <= _expand(p) and p - g <= place_words and general != specific


def _same(a: tuple[frozenset, bool], b: tuple[frozenset, bool], pa=None, pb=None) -> bool:
    """Content equivalence (the rule, in order): same polarity; a finding present whose stems (no side) are a strict
    subset of a linking clause's is said by it ("there is a pulmonary mass" by "the mass is in the right lung"); else
    the same sides, and the content stems (synonyms folded, ``stems``) of one a subset of the other's or sharing more
    than half of their union; or, two linking clauses ("X is / represents Y"), one complement the other's and the
    subjects sharing at least half of the smaller one (with a complement of two stems or more; more than half for a
    one-stem complement): "the hyperintensities surrounding the aorta are calcified atherosclerosis" = "the hyperdense
    lesions at the edges of the aorta are calcified atherosclerosis"."""
    (sa, na), (sb, nb) = a, b
    if na != nb or not sa or not sb:
        return False
    (small, p_small), (large, p_large) = sorted(((sa, pa), (sb, pb)), key=lambda x: len(x[0]))
    if not na and not small & SIDE_WORDS_STEMS and len(small) > 1 and small < large and p_small is None and p_large:
        return True  # "there is a pulmonary mass" is said by "the mass is in the right lung"
    if not na and (_contains(sa, sb) or _contains(sb, sa)):
        return True  # one place inside the other: "the lesion is in the right lung" / "... in the right upper lobe"
    if (sa & SIDE_WORDS_STEMS) != (sb & SIDE_WORDS_STEMS):
        return False
    side = {" sides"} if sa & SIDE_WORDS_STEMS else set()  # the sides are equal: they count once ("both" = left right)
    ca, cb = sa - SIDE_WORDS_STEMS | side, sb - SIDE_WORDS_STEMS | side
    if sa <= sb or sb <= sa or (ca | cb and len(ca & cb) / len(ca | cb) > 0.5):
        return True
    if pa and pb and pa[1] and pb[1] and pa[0] and pb[0] and (pa[1] <= pb[1] or pb[1] <= pa[1]):
        shared = len(pa[0] & pb[0]) / min(len(pa[0]), len(pb[0]))
        return shared > 0.5 if pa[1] == pb[1] and len(pa[1]) < 2 else shared >= 0.5 and min(len(pa[1]), len(pb[1])) >= 2
    return False


SIDE_WORDS_STEMS = frozenset({"left", "right"})  # laterality: "left kidney" never paraphrases "right kidney"
_ABNORMAL_IS = re.compile(r"^(?P<place>.+?) (?:is|are|looks?|appears?|(?:does|do) not (?:look|appear)|(?:is|are) not) "
                          r"(?:abnormal|not normal|normal|not healthy|unhealthy|affected|altered)$", re.I)
_FINDING_AT = re.compile(r"^(?P<what>.+?) (?:is|are|can be observed|can be seen) (?:in|on|at|within|under|above|below|near)\b", re.I)


def _abnormal_places(f: Fact, region: frozenset = frozenset()) -> list[frozenset] | None:
    """The places an "abnormality here" fact names ("the left lung is abnormal", "the abnormality is in the liver and the
    kidney", "abnormalities in the patient's left chest are seen"), one per place; None for other facts. The image's
    region (the lead's "chest") names no place; an empty set: somewhere."""
    if re.search(r"\b(?:other|besides|another|additional)\b", f.text, re.I):
        return None  # "other abnormalities besides the mass": more than the finding
    if f.kind == "present" and f.text.lower().startswith("abnormalit"):
        text = f"{f.text} {f.where}"
    elif f.kind != "clause":
        return None
    elif _GENERIC_SUBJECT.match(f.text):
        text = _GENERIC_SUBJECT.match(f.text).group(1)  # type: ignore[union-attr]
    else:
        m = _ABNORMAL_IS.match(f.text)
        if not (m and stems(f.text)[1]):  # "abnormal" / "not normal": polarity negative
            return None
        text = m.group("place")
    # attribute nouns name no other place: "the contrast between white and grey matter" = "the gray-white matter junction"
    return [stems(part)[0] - {"lesio", "contr", "betwe"} - _ATTRIBUTE_STEMS - region for part in re.split(r",\s*|\s+and\s+", text)]


def _finding(f: Fact) -> frozenset | None:
    """The stems of a finding a fact states with its place ("the mass is in the right lung", "nodule can be observed
    on the upper right lung", a finding present), None for facts that state no finding."""
    if f.kind == "present" and f.text.lower() not in _GENERIC and not f.text.lower().startswith("abnormalit"):
        return stems(f"{f.text} {f.where}")[0]
    m = _FINDING_AT.match(f.text) if f.kind == "clause" and not f.negative else None
    if m and not is_anatomy(m.group("what")) and not _GENERIC_SUBJECT.match(f.text):
        return stems(f.text)[0]
    return None


def _implied(i: int, facts: list[Fact], region: frozenset = frozenset()) -> bool:
    """Is ``facts[i]`` an "abnormality here" fact other ones already carry: each of its places ("the abnormality is in
    the liver and the kidney": two) named by a finding there ("the lung is abnormal" after "the mass is in the right
    lung"; "the liver" by "liver cancer"; "the findings are not normal" after any finding), or by a more specific
    "abnormality here" ("the abnormality is in the lower left lung" carries "the lung is abnormal"; of two with the same
    place the first is kept). A lobe, apex or base of a lung is in that lung (``_expand``)."""
    places = _abnormal_places(facts[i], region)
    if places is None:
        return False
    def said(place: frozenset) -> bool:
        for k, g in enumerate(facts):
            if k == i:
                continue
            found = _finding(g)
            others = _abnormal_places(g, region)
            if found is not None and place <= _expand(found):
                return True
            if others and any(place <= _expand(o) and (place != o or k < i) for o in others):
                return True
        return False
    sided = [q - {side} if q >= SIDE_WORDS_STEMS else q for q in places for side in SIDE_WORDS_STEMS]
    return all(said(p) for p in sided)  # "both lungs": the left one and the right one


def _says_more(new: tuple[frozenset, bool], old: tuple[frozenset, bool]) -> bool:
    """Of two equivalent statements, does ``new`` say more: of a place and a place inside it the more specific one,
    unless the general one names more sides ("both lungs"); else the one with more stems."""
    (n, neg), o = new, old[0]
    if not neg and _contains(o, n) != _contains(n, o):
        sides_n, sides_o = n & SIDE_WORDS_STEMS, o & SIDE_WORDS_STEMS
        return sides_n > sides_o if _contains(n, o) else not sides_o > sides_n
    return len(n) > len(o)


def _dedupe(found: list[tuple[int, Fact]], lead_stems: frozenset, disp: dict[int, str]) -> list[tuple[int, Fact]]:
    """Facts said once: a fact the lead carries, or a paraphrase of a kept one, is redundant (the more specific is kept)."""
    kept: list[tuple[int, Fact, tuple[frozenset, bool]]] = []
    for i, f in found:
        sig = stems(_key(f))
        parts = _parts(f)
        if not sig[1] and f.kind != "absent" and sig[0] <= lead_stems:
            disp.setdefault(i, "redundant")  # "Does the picture contain brain?" under "MRI of the brain."
            continue
        match = next((k for k, (_, g, ks) in enumerate(kept) if _same(sig, ks, parts, _parts(g))), None)
        if match is None:
            kept.append((i, f, sig))
        elif _says_more(sig, kept[match][2]):  # the new one says more: it takes the old one's place
            disp.setdefault(kept[match][0], "redundant")
            kept[match] = (i, f, sig)
        else:
            disp.setdefault(i, "redundant")
    out = [(i, f) for i, f, _ in kept]
    specific = [f for _, f in out if f.kind == "present" and f.text.lower() not in _GENERIC]
    named = set().union(*(stems(_key(f))[0] for _, f in out if f.kind != "organ" and not f.negative)) if out else set()
    result = []
    for k, (i, f) in enumerate(out):
        m = _IDENTITY.match(f.text) if f.kind == "clause" else None
        others = set().union(*(stems(_key(g))[0] for j, g in out if j != i and g.kind != "organ")) | lead_stems
        if m and stems(m.group(1))[0] <= others:  # "the largest organ is the liver" after "the liver is healthy"
            disp.setdefault(i, "redundant")
            continue
        generic = f.kind == "present" and f.text.lower() in _GENERIC and specific
        shadowed = f.kind == "organ" and not f.negative and stems(f.text)[0] <= named  # "the liver is on the left" says it
        inside = f.kind == "present" and any(g is not f and f.text.lower() in g.text.lower() for _, g in out)
        if generic or shadowed or inside or _implied(k, [g for _, g in out], lead_stems):
            disp.setdefault(i, "redundant")
        else:
            result.append((i, f))
    return result


_LOCATED = re.compile(r"^(?:the )?(?P<what>.+?) (?:is|are) (?P<where>(?:in|on|at|within)\b.+)$", re.I)


def _merge_place(facts: list[tuple[int, Fact]], disp: dict[int, str]) -> list[tuple[int, Fact]]:
    """A finding and its place said apart become one: one finding and "the abnormality is in the left lung" -> "Nodule
    is seen in the left lung"; "pleural effusion" and "the effusion is on the left" -> "Pleural effusion is seen on the
    left" (the place's subject is that one finding's head noun; the finding has no place and no side of its own)."""
    present = [k for k, (_, f) in enumerate(facts) if f.kind == "present" and not f.where]
    places = [k for k, (_, f) in enumerate(facts) if f.kind == "clause" and _GENERIC_SUBJECT.match(f.text)]
    if len(present) == 1 and len(places) == 1:
        p, w = present[0], places[0]
        place = _GENERIC_SUBJECT.match(facts[w][1].text)
        assert place is not None  # w was chosen because it matches
        facts[p] = (facts[p][0], replace(facts[p][1], where=place.group(1)))
        disp[facts[w][0]] = "stated"  # said, inside the finding's sentence
        return [x for k, x in enumerate(facts) if k != w]
    drop = set()
    for w, (i, f) in enumerate(facts):
        m = _LOCATED.match(f.text) if f.kind == "clause" and not f.negative and not stems(f.text)[1] else None
        what = stems(m.group("what"))[0] if m and not is_anatomy(m.group("what")) else frozenset()
        if not what or what & SIDE_WORDS_STEMS:
            continue
        owners = [k for k in present if k not in drop and what <= stems(facts[k][1].text)[0]
                  and stems(facts[k][1].text.split()[-1])[0] <= what  # its head noun: "pleural effusion"
                  and not re.search(r"\bnon\b", facts[k][1].text, re.I)  # "non-enhancing tumor" is no "enhancing tumor"
                  and not stems(facts[k][1].text)[0] & SIDE_WORDS_STEMS and not stems(facts[k][1].text)[1]]
        if len(owners) == 1 and not facts[owners[0]][1].where:
            k = owners[0]
            facts[k] = (facts[k][0], replace(facts[k][1], where=m.group("where")))  # type: ignore[union-attr]
            disp[i] = "stated"
            drop.add(w)
    return [x for k, x in enumerate(facts) if k not in drop]


def _series(items: Sequence[str], conj: str) -> str:
    """'a' / 'a and b' / 'a, b and c' (no serial comma), with ``conj`` before the last item."""
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {conj} {items[-1]}"


_PREDICATE = re.compile(r"^(?P<subject>.+?) (?P<verb>is|are|looks|look|appears|appear)(?P<rest> .+)$")
_PLURAL_VERB = {"is": "are", "are": "are", "looks": "look", "look": "look", "appears": "appear", "appear": "appear"}


def _shared_predicates(texts: list[str]) -> list[str]:
    """Statements that say the same of different subjects become one: "the liver looks normal", "the spleen looks
    normal" -> "the liver and the spleen look normal" (at the place of the first; nothing else changes)."""
    groups: dict[str, list[tuple[str, str | None]]] = {}  # predicate key -> (statement, subject)
    for t in texts:
        m = _PREDICATE.match(t)
        if m and " and " not in m.group("subject") and m.group("subject").lower() not in ("there", "it", "this"):
            groups.setdefault(f"{_PLURAL_VERB[m.group('verb')]}{m.group('rest')}".lower(), []).append((t, m.group("subject")))
        else:
            groups.setdefault(t, []).append((t, None))
    out = []
    for members in groups.values():
        if len(members) == 1:
            out.append(members[0][0])
            continue
        m = _PREDICATE.match(members[0][0])
        assert m is not None  # statements share a group only under a predicate key, which needs the match
        out.append(f"{_series([str(subject) for _, subject in members], 'and')} {_PLURAL_VERB[m.group('verb')]}{m.group('rest')}")
    return out


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
    clauses += _shared_predicates([f.text for f in facts if f.kind == "clause" and not f.negative])
    seen = [f.text for f in facts if f.kind == "organ" and not f.negative]
    unseen = [f.text for f in facts if f.kind == "organ" and f.negative]
    organs = ([f"{_series(seen, 'and')} {'are' if len(seen) > 1 else be_for(seen[0])} visible"] if seen else []) + \
             ([f"no {_series(unseen, 'or')}"] if unseen else [])
    clauses += organs
    absent = [f.text for f in facts if f.kind == "absent"]
    if absent:  # the verb agrees with the nearest item: "no fracture or effusions are seen"
        clauses.append(f"no {_series(absent, 'or')} {be_for(absent[-1])} seen")
    clauses += _shared_predicates([f.text for f in facts if f.kind == "clause" and f.negative])
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
