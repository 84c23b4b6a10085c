"""The template summarizer's vocabulary and phrase helpers: words it knows, and how an answer becomes a phrase.

Shared by ``summary_template`` (one turn -> a statement), ``summary_lead`` (the modality/plane/region lead) and
``summaries`` (the note). Everything here is a plain set or a pure function of strings.

- ``answer_phrase("Left Lung, Right")`` -> ``"both lungs"``; ``"Rectum, Small Bowel"`` -> ``"the rectum and the small bowel"``
  (a later list item without its noun borrows the first item's: "Left Lung, Lower Right" -> "the left lung and the lower
  right lung");
- ``place_phrase(answer)`` -> the prepositional phrase a "Where is X?" answer gives: ``"Top"`` -> ``"at the top"``,
  ``"Left"`` -> ``"on the left"``, ``"Right lower lobe"`` -> ``"in the right lower lobe"``;
- ``is_anatomy(np)``: an organ or structure ("small bowel", "left kidney") rather than a finding;
- ``stems(text)``: the content stems two statements are compared by (synonyms folded: "larger" ~ "enlarged",
  "healthy" ~ "normal", "abnormal" = not normal, with the polarity it implies).
"""

from __future__ import annotations

import re

MODALITIES = {
    "mri": "MRI", "mr": "MRI", "ct": "CT", "x-ray": "X-ray", "xray": "X-ray", "radiograph": "radiograph",
    "ultrasound": "ultrasound", "us": "ultrasound", "pet": "PET", "mammogram": "mammogram", "angiogram": "angiogram",
    "fluoroscopy": "fluoroscopy", "cta": "CT angiogram", "mra": "MR angiogram",
}
DETAILS = {"t1": "T1-weighted", "t2": "T2-weighted", "flair": "FLAIR", "dwi": "diffusion-weighted", "adc": "ADC map",
           "diffusion": "diffusion-weighted",
            "contrast": "with contrast", "with contrast": "with contrast", "noncontrast": "without contrast"}
PLANES = {"axial": "axial", "transverse": "transverse", "coronal": "coronal", "sagittal": "sagittal", "pa": "PA", "ap": "AP",
           "lateral": "lateral", "oblique": "oblique", "posteroanterior": "PA", "anteroposterior": "AP"}
BE = {"is": "is", "are": "are", "was": "was", "were": "were", "is/are": "is"}
MODALS = {"can", "could", "will", "would", "should", "may", "might", "must"}
DO = {"does": "does", "do": "do", "did": "did"}
HAVE = {"has", "have", "had"}
DETERMINERS = {"the", "this", "that", "these", "those", "its", "their", "a", "an", "any", "both", "his", "her", "each"}
PRED_START = {
    "a", "an", "no", "not", "in", "on", "at", "within", "inside", "outside", "located", "seen", "present", "visible",
    "normal", "abnormal", "enlarged", "larger", "smaller", "bigger", "well", "more", "less", "consistent", "compatible",
    "suggestive", "likely", "found", "shown", "identified", "noted", "evident", "affected", "involved", "near", "above",
    "below", "behind", "under", "over", "between", "to", "from", "with", "without", "hyperdense", "hypodense",
    "hyperintense", "hypointense", "bright", "dark", "white", "black", "gray", "grey", "symmetric", "symmetrical",
    "asymmetric", "asymmetrical", "unilateral", "bilateral", "midline", "mobile", "homogeneous", "heterogeneous",
    "round", "irregular", "smooth", "large", "small", "big", "thick", "thin", "dilated", "wider", "narrow", "same",
    "similar", "different", "part", "one", "two", "there", "taken", "obtained", "able", "unable", "sufficient",
    "enough", "adequate", "appropriate", "possible", "useful", "for", "uniform", "patent", "higher", "lower", "greater",
    "denser", "brighter", "darker", "clear", "intact", "free", "located", "midline", "healthy", "unhealthy", "solid", "cystic",
    "prominent", "dense", "opaque", "lucent", "hollow", "fine", "functional", "diseased", "benign", "malignant", "ok",
    "heterogenous", "homogenous", "pathologic", "pathological", "hyper", "hypo", "distended", "equivalent", "equal",
}
WHERE_PREPS = {"in", "on", "at", "within", "inside", "outside", "near", "above", "below", "behind", "under", "over",
                "between", "along", "throughout", "around", "beside"}
DIRECTIONS = {"anterior", "posterior", "superior", "inferior", "medial", "lateral", "proximal", "distal", "adjacent", "next"}
REGIONS = {"chest", "abdomen", "abdominal", "head", "brain", "pelvis", "pelvic", "spine", "neck", "knee", "hand", "foot",
            "lung", "kidney", "liver", "skull", "cervical", "lumbar", "thoracic", "shoulder", "hip", "renal", "cardiac"}
MRI_DETAILS = {"t1", "t2", "flair", "dwi", "adc"}
VERBS = {
    "have", "contain", "show", "display", "appear", "demonstrate", "include", "involve", "cross", "extend", "enhance",
    "affect", "look", "represent", "exhibit", "suggest", "indicate", "reveal", "belong", "lie", "occupy", "compress",
    "cause", "measure", "exist", "depict", "visualize", "be", "see", "help", "communicate", "originate", "arise",
    "deviate", "displace", "obstruct", "abut", "invade", "impinge", "surround", "enter", "reach", "follow", "use",
    "receive", "undergo", "need", "require", "get",
}
IRREGULAR_PAST = {"have": "had", "show": "showed", "see": "saw", "be": "was", "lie": "lay", "take": "took", "go": "went"}
PLURALS = {"feet", "teeth", "children", "women", "men", "data", "vertebrae", "bronchi", "sulci", "gyri", "ganglia", "foramina"}
SINGULARS = {"pancreas", "lens", "ascites", "diabetes", "series", "facies", "plexus", "corpus", "atlas", "pons", "iris"}
ORGANS = {"organ", "organs", "structure", "structures", "part", "side", "lobe", "bone", "bones", "vessel", "region", "area"}
WH = {"what", "which", "where", "how", "who", "why", "when"}
UNSURE = {"not sure", "unsure", "unknown", "cannot tell", "can't tell", "n/a", "none"}
NORMAL_ANSWERS = {"normal", "none", "nothing", "no abnormality", "not seen", "no"}
OR_CHOICE = re.compile(r"\b([\w-]+) or ([\w-]+)\b", re.I)




def sentence_case(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def soft_lower(word: str) -> str:
    """'Chest' -> 'chest'; acronyms and mixed case ('MRI', 'T2', 'X-ray') stay."""
    return word.lower() if word[:1].isupper() and word[1:].islower() else word


def phrase_lower(text: str) -> str:
    return " ".join(soft_lower(w) for w in text.split())


def third_person(verb: str) -> str:
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


def past(verb: str) -> str:
    v = verb.lower()
    if v in IRREGULAR_PAST:
        return IRREGULAR_PAST[v]
    if v.endswith("e"):
        return verb + "d"
    if v.endswith("y") and len(v) > 1 and v[-2] not in "aeiou":
        return verb[:-1] + "ied"
    return verb + "ed"



def plural(np: str) -> bool:
    """A rough number for a noun phrase: lists and '-s' heads are plural ('bones', 'ribs'), '-sis'/'-us'/'-ss' are not."""
    words = re.sub(r"\([^)]*\)", "", np).replace(",", " , ").split()
    if not words:
        return False
    head = next((w for w in words if w.lower() in WHERE_PREPS | {"of", "with", "as", "showing", "that", "which", "to", "from"}), None)
    before = words[:words.index(head)] if head else words
    if "," in before or "and" in [w.lower() for w in before]:  # "the heart and lungs"; not "evidence of fluid and fat"
        return True
    head_word = words[words.index(head) - 1] if head and words.index(head) > 0 else words[-1]
    h = head_word.lower()
    if re.fullmatch(r"\d+", words[0]) and words[0] != "1":
        return True
    return (len(h) > 3 and h.endswith("s") and not h.endswith(("ss", "us", "is", "ous", "ics")) and h not in SINGULARS) or h in PLURALS


def be_for(np: str) -> str:
    return "are" if plural(np) else "is"


def noun_phrase(answer: str) -> str:
    """An answer as a noun phrase inside a sentence: 'Spleen' -> 'spleen', 'MRI' stays."""
    return phrase_lower(answer.strip().rstrip("."))


def answer_ok(answer: str) -> bool:
    """An answer worth stating: not unsure ('Air?', 'not sure'), not a long free-text sentence."""
    a = answer.strip().lower()
    if not a or a.endswith("?") or a in UNSURE or len(a.split()) > 14:
        return False
    return not re.match(r"^(it|they|there|this|you|we|i|because|imagine|yes|no)\b", a)


# --- facts: what one turn established ---------------------------------------------------------


# Organs and structures: a presence question about one of these says what the image shows, not a finding.
ANATOMY = {
    "liver", "spleen", "kidney", "kidneys", "heart", "lung", "lungs", "brain", "bladder", "rectum", "colon", "bowel",
    "small bowel", "large bowel", "duodenum", "stomach", "pancreas", "gallbladder", "esophagus", "oesophagus", "trachea",
    "spinal cord", "spine", "cord", "eye", "eyes", "lens", "ear", "ears", "parotid", "parotids", "thyroid", "aorta", "vena cava",
    "femoral head", "femur", "humerus", "humerus head", "rib", "ribs", "vertebra", "vertebrae", "skull", "mandible", "tooth",
    "teeth", "tongue", "larynx", "pharynx", "nose", "brain stem", "brainstem", "cerebellum", "cerebrum", "ventricle",
    "ventricles", "diaphragm", "hemidiaphragm", "breast", "breasts", "prostate", "uterus", "ovary", "ovaries", "adrenal",
    "adrenal gland", "appendix", "ileum", "jejunum", "cecum", "sigmoid", "gland", "temporal lobe", "frontal lobe",
    "occipital lobe", "parietal lobe", "thalamus", "thalami", "basal ganglia", "pons", "medulla", "sinus", "sinuses",
    "orbit", "orbits", "clavicle", "scapula", "sternum", "pelvis", "hip", "muscle", "vessel", "vessels", "artery", "vein",
}
ANATOMY_MODIFIERS = {"left", "right", "upper", "lower", "middle", "both", "bilateral", "main", "entire"}
# Known misspellings in public datasets (SLAKE asks "Does the picture contain brian?" 100+ times).
TYPOS = {"brian": "brain", "saggital": "sagittal", "veterbral": "vertebral"}
_POSITIONS = {"top": "at the top", "bottom": "at the bottom", "center": "in the center", "centre": "in the centre",
              "middle": "in the middle", "left": "on the left", "right": "on the right", "midline": "in the midline"}
SIDE_WORDS = {"left", "right", "upper", "lower", "middle", "top", "bottom", "center", "central", "anterior", "posterior",
               "superior", "inferior", "medial", "lateral", "mid"}
# Words two statements may share without saying the same thing, and the lead's stock words.
FUNCTION_WORDS = {
    "the", "a", "an", "is", "are", "was", "were", "there", "this", "that", "of", "in", "on", "at", "image", "seen", "present",
    "visible", "any", "be", "does", "do", "not", "no", "to", "with", "above", "shown", "and", "or", "none", "nothing", "can",
    "has", "have", "it", "its", "picture", "findings", "include", "appears", "appear", "some", "both", "by", "as", "than",
}
_WORD_SYNONYMS = {"larger": "enlar", "bigger": "enlar", "enlarged": "enlar", "enlargement": "enlar", "large": "enlar",
                  "abnormality": "lesio", "abnormalities": "lesio", "lesion": "lesio", "lesions": "lesio",
                  "pathology": "lesio", "altered": "norma", "unaltered": "norma"}
_SYNONYMS = {"healt": "norma", "abnor": "norma", "unhea": "norma",
             "patho": "norma", "disea": "norma", "organ": "", "syste": "", "main": "", "part": "", "regio": "", "area": "",
             "exist": "", "locat": "", "study": "", "obser": "", "appea": "", "looks": "", "look": "", "show": "",
             "shows": "", "conta": "", "inclu": "", "affec": "norma"}
# Content equivalence (issue 10): words two statements about the same thing use interchangeably in the datasets, folded
# to one stem so that "the gallbladder appears distended" and "the gallbladder is enlarged", or "the hyperdensities
# represent infarct" and "the hyperdensities are indicative of infarct", compare equal. Each row is a plain synonym
# (or a verb that only links subject and complement), never a finding for another finding.
EQUIVALENT_WORDS = {
    "enlar": ("distended", "distension", "distention", "increased"),         # size: folded with larger/enlarged above
    "air": ("air", "gas"),
    "elev": ("elevated", "elevation", "raised", "higher"),                   # "hemidiaphragm elevation" = "... is higher"
    "defin": ("defined", "well-defined", "circumscribed", "well-circumscribed"),
    "liver": ("liver", "hepatic"), "kidne": ("kidney", "kidneys", "renal"), "heart": ("heart", "cardiac"),
    "brigh": ("white", "bright", "brighter", "hyperdense", "hyperdensity", "hyperdensities", "hyperintense",
              "hyperintensity", "hyperintensities", "hyperattenuating", "hyperattenuated", "hyperattenuation",
              "radiopaque", "radioopaque"),                                    # bright on the image, whatever the modality
    "dark": ("dark", "darker", "black", "hypodense", "hypodensity", "hypodensities", "hypointense", "hypointensity",
             "hypointensities", "hypoattenuating", "hypoattenuated", "hypoattenuation", "lucent", "lucency",
             "hyperlucent", "radiolucent"),                                    # dark on the image
    "borde": ("border", "borders", "contour", "contours", "outline", "margin", "margins"),
    "surro": ("surrounding", "surrounds", "surround", "surrounded", "encompassing", "encompassed", "encompasses",
              "encircling", "encircled", "encasing", "encased"),
    "flat": ("flat", "flattened", "flattening"),
    "stoma": ("stomach", "gastric"),
    "lung": ("lung", "lungs", "pulmonary"),
    "gallb": ("gallbladder", "gb"),
    "diaph": ("diaphragm", "hemidiaphragm", "diaphragms", "hemidiaphragms"),  # sides are compared on their own
    "right": ("right", "r"), "left": ("left", "l"),
    "gray": ("gray", "grey"),
    "centr": ("center", "centre", "central"),
    "more": ("more", "most"),
    "fract": ("broken", "break", "breaks", "fractured", "fracture", "fractures"),
    **{f"{n}{suffix}": (word,) for n, suffix, word in ((1, "st", "first"), (2, "nd", "second"), (3, "rd", "third"), (4, "th", "fourth"),
                                                      (5, "th", "fifth"), (6, "th", "sixth"), (7, "th", "seventh"), (8, "th", "eighth"),
                                                      (9, "th", "ninth"), (10, "th", "tenth"), (11, "th", "eleventh"), (12, "th", "twelfth"))},
    "given": ("given", "received", "receive", "receives", "administered"),    # "IV contrast was given" = "... received"
    "": ("represent", "represents", "indicate", "indicates", "indicated", "indicative", "suggest", "suggests",
         "suggestive", "depict", "depicts", "size", "patient", "patients", "s", "side", "sided", "also",
         "composition", "composed", "made", "primarily", "mainly", "mostly",  # "the composition of the mass is fat"
         "evidence", "evinced", "evident"),                                     # "evidence of X" says X
}
# "Not normal" words: each flips the polarity and folds to "normal" ("the junction is altered" = "... is not normal");
# a denied abnormality is read the same way: "no abnormalities with X" = "X is not abnormal" = "X is normal".
ABNORMAL_WORDS = {"abnormal", "unhealthy", "altered"}
# Words that name where a finding is in the lungs: a lobe, apex or base of a lung is inside that lung (SLAKE says "the
# right lobe" for the right lung).
LUNG_PARTS = frozenset({"lobe", "apex", "apica", "base", "basal", "field", "zone"})
LEVEL_STEMS = frozenset({"upper", "lower", "middl", "mid"})
_EQUIVALENT = {w: stem for stem, words in EQUIVALENT_WORDS.items() for w in words}


def fix_typos(text: str) -> str:
    return re.sub(r"[A-Za-z]+", lambda m: TYPOS.get(m.group(0).lower(), m.group(0)), text)


def _fold(word: str) -> str:
    """A word's comparison stem: the equivalence table, then the synonyms above, else its first five letters (a plural
    -s dropped first: "walls" ~ "wall")."""
    if word in _EQUIVALENT:
        return _EQUIVALENT[word]
    if word in _WORD_SYNONYMS:
        return _WORD_SYNONYMS[word]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    return _SYNONYMS.get(word[:5], word[:5])


def stems(text: str) -> tuple[frozenset[str], bool]:
    """Content stems (first five letters, synonyms and ``EQUIVALENT_WORDS`` folded) and the polarity (True = negative)
    the words imply."""
    out, negative = set(), False
    text = re.sub(r"\b(hyper|hypo)[- ](dense|density|densities|intense|intensity|attenuat\w*)\b", r"\1\2", text.lower())
    text = re.sub(r"\bloss of (?:the )?normal\b", "abnormal", text)  # "loss of normal X" = "abnormal X"
    text = re.sub(r"\b(?:no|not any) (?:\w+ )?abnormalit(?:y|ies)\b", "normal", text)  # = "not abnormal" = "normal"
    text = re.sub(r"\bthan (?:the )?(?:left|right)(?: one| side)?\b", "than", text)  # a comparison, not a side
    text = re.sub(r"\b(?:by|in|on) (?:this|the) (?:[a-z]+ )?(?:image|picture|scan|film)\b", "", text)  # the image itself
    text = re.sub(r"\bbilateral(?:ly)?\b|\bboth (?=(?:[a-z]+ )?(?:lungs?|kidneys?|sides?|breasts?|eyes?|lobes?|ovar|adrenal|"
                  r"hemisphere|lung fields?)\b)", "left right ", text)  # both sides
    for w in re.findall(r"[a-z0-9]+", text):
        if w in ("no", "not", "none", "nothing", "without") or w in ABNORMAL_WORDS:
            negative = not negative
        if w in FUNCTION_WORDS:
            continue
        s = _fold(w)
        if s:
            out.add(s)
    return frozenset(out), negative


def _items(answer: str) -> list[str]:
    parts = [p.strip() for p in re.split(r",\s*|\s+and\s+|\s*/\s*", answer.strip().rstrip(".")) if p.strip()]
    return parts


def answer_items(answer: str) -> list[str] | None:
    """'Left Lung, Lower Right' -> ['left lung', 'lower right lung']; None if a later item cannot borrow a noun."""
    parts = [phrase_lower(fix_typos(p)) for p in _items(answer)]
    if not parts:
        return None
    head = [w for w in parts[0].split() if w.lower() not in SIDE_WORDS]
    parallel = parts[0].split()[0].lower() in SIDE_WORDS and head  # "Left Lung, Right": the right one is a lung too
    out = [parts[0]]
    for p in parts[1:]:
        if all(w.lower() in SIDE_WORDS for w in p.split()):  # "Right" after "Left Lung": the lung
            if not parallel:
                return None  # "Liver, Left", "Upper Left, Right": no noun to borrow with confidence
            p = f"{p} {' '.join(head)}"
        out.append(p)
    return out


def answer_phrase(answer: str, article: bool = True) -> str | None:
    """A list answer as one noun phrase: 'Left Lung, Right' -> 'both lungs' (see the module docstring)."""
    items = answer_items(answer)
    if not items:
        return None
    if len(items) == 2:
        a, b = (i.split() for i in items)
        if {a[0].lower(), b[0].lower()} == {"left", "right"} and a[1:] == b[1:] and a[1:]:
            noun = " ".join(a[1:])
            return f"both {noun if noun.endswith('s') else noun + 's'}"
    items = [the(i) if article else i for i in items]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def place_phrase(answer: str) -> str | None:
    """The phrase a 'Where is X?' answer gives (see the module docstring); None for a list it cannot phrase."""
    a = phrase_lower(fix_typos(answer.strip().rstrip(".")))
    al = a.lower()
    if al in _POSITIONS:
        return _POSITIONS[al]
    if al in ("bilateral", "diffuse", "bilaterally"):
        return al
    words = al.split()
    if words and words[0] in WHERE_PREPS | {"to"}:
        return a
    if len(words) == 1 and re.search(r"(ac|al|ar|ic|ior)$", al) and al not in ANATOMY:
        return al  # "retrocardiac", "subcapsular": the place is an adjective
    if words and all(w in SIDE_WORDS for w in words):  # "Upper Left": a region of the image
        return f"in the {a}"
    if len(words) > 1 and words[0] in DIRECTIONS and words[1] == "to":
        return a
    phrase = answer_phrase(a)
    return f"in {phrase}" if phrase else None


def is_anatomy(np: str) -> bool:
    words = [w for w in re.sub(r"^(the|a|an|any|some)\s+", "", np.strip().lower()).split() if w not in ANATOMY_MODIFIERS]
    return bool(words) and " ".join(words) in ANATOMY


def the(np: str) -> str:
    """'pancreas' -> 'the pancreas'; phrases that start with a determiner, a number or a preposition stay."""
    first = np.split()[0].lower() if np.split() else ""
    ordinal = re.fullmatch(r"\d+(st|nd|rd|th)", first)
    if first in DETERMINERS | WHERE_PREPS | {"no", "both", "all"} or (first[:1].isdigit() and not ordinal) or np[:1].isupper():
        return np
    return "the " + np
