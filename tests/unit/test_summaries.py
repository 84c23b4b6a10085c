"""Summaries: the template's statements and notes; the LLM summarizer against a local stub endpoint."""

from __future__ import annotations

import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from _fixtures_data import build_vqa_rad_mevf

from vmed.cli import main
from vmed.data.build import convert
from vmed.data.schema import Dialogue, Turn, read_jsonl
from vmed.data.summaries import (
    DEFAULT_LLM_PROMPT,
    LlmSummarizer,
    OpenAIBackend,
    TemplateSummarizer,
    cap_words,
    statement,
    template_summary,
)
from vmed.data.summary_audit import summary_audit, summary_issues
from vmed.data.summary_words import fix_typos
from vmed.errors import UserInputError


@pytest.mark.parametrize(
    "question, answer, expected",
    [
        ("Is the heart enlarged?", "No", "the heart is not enlarged"),
        ("Is the liver visible?", "yes", "the liver is visible"),
        ("Is there evidence of an aortic aneurysm?", "yes", "there is evidence of an aortic aneurysm"),
        ("Are there any fractures?", "no", "there are no fractures"),
        ("Is there a kidney?", "No", "there is no kidney"),
        ("Does the mass have a smooth border?", "Yes", "the mass has a smooth border"),
        ("Does the picture contain liver?", "No", "the picture does not contain liver"),
        ("Do the kidneys show hydronephrosis?", "yes", "the kidneys show hydronephrosis"),
        ("Are regions of the brain infarcted?", "Yes", "regions of the brain are infarcted"),
        ("Is this image abnormal?", "no", "this image is not abnormal"),
        ("Is the lesion on the right or left side of the brain?", "Right", "the lesion is on the right side of the brain"),
        ("Can effusion be observed on the right chest?", "No", "effusion can not be observed on the right chest"),
        ("What is the composition of the mass?", "fat", "the composition of the mass is fat"),
        ("Where is the mass located?", "Pineal gland", "the mass is in the pineal gland"),
        ("Where is the liver?", "Right", "the liver is on the right"),
        ("What organ is enlarged?", "Spleen", "the spleen is enlarged"),
        ("Is it difficult to delineate the left costophrenic angle?", "yes", "it is difficult to delineate the left costophrenic angle"),
        ("Is this the small bowel?", "yes", "this is the small bowel"),
        ("Are the kidney present?", "yes", "the kidney is present"),
        ("What was this image taken with?", "x-ray", "this image was taken with x-ray"),
        ("The calcification is located in what vessel?", "Aorta", "the calcification is located in the aorta"),
        ("The azygoesophageal recess is deviated in which direction?", "right", "the azygoesophageal recess is deviated right"),
        ("How big is the mass?", "2.5 cm", "the mass is 2.5 cm"),
        ("How many masses are there?", "2", "there are 2 masses"),
        ("Is there anything wrong with the lungs?", "no", "there is nothing wrong with the lungs"),
        ("Are any of the ribs fractured?", "No", "none of the ribs are fractured"),
        ("Is this image sufficient for a diagnosis?", "no", "this image is not sufficient for a diagnosis"),
        ("Why?", "Because", None),
    ],
)
def test_statement(question, answer, expected):
    assert statement(Turn(question, answer)) == expected


def test_template_note_reads_like_the_example():
    turns = [
        Turn("What imaging modality is this?", "MRI", "open", "MODALITY"),
        Turn("In what plane is this image?", "Axial", "open", "PLANE"),
        Turn("Which part of the body is shown?", "Abdomen", "open", "ORGAN"),
        Turn("What MR weighting is used?", "T2", "open", "MODALITY"),
        Turn("Is the liver visible?", "Yes", "closed", "PRES"),
        Turn("Is there a kidney?", "no", "closed", "PRES"),
    ]
    assert template_summary(turns) == "Axial MRI of the abdomen (T2-weighted). Liver is visible; no kidney."


T = Turn


@pytest.mark.parametrize(
    "turns, expected",
    [
        pytest.param([T("Is there a left apical pneumothorax?", "yes"), T("Is this an X-ray?", "yes"), T("Is this a CT?", "no")],
                     "X-ray. There is a left apical pneumothorax.", id="positive-finding-and-overview-from-yes-no"),
        pytest.param([T("Is there a fracture?", "no"), T("Is there any effusion?", "No"), T("Is lymphadenopathy present?", "No")],
                     "No fracture, effusion or lymphadenopathy is seen.", id="negatives-merged"),
        pytest.param([T("Is there a fracture?", "no"), T("Is there an effusion?", "no")], "No fracture or effusion is seen.",
                     id="two-negatives-joined-by-or"),
        pytest.param([T("Is there a fracture?", "no"), T("Are there any effusions?", "no")], "No fracture or effusions are seen.",
                     id="negatives-verb-agrees-with-the-nearest"),
        pytest.param([T("Is there a chest tube placed?", "No"), T("Is there a skull fracture pictured?", "no"),
                      T("Are abdominal fat pads prominently visualized?", "No")],
                     "No skull fracture is seen; there is no chest tube placed; abdominal fat pads are not prominently visualized.",
                     id="negatives-with-a-participle-or-adverb-stay-statements"),
        pytest.param([T("What abnormalities are included in the picture?", "Cardiomegaly")], "Cardiomegaly is seen.",
                     id="what-is-abnormal-answer-is-the-finding"),
        pytest.param([T("What type of distributions is seen on this image?", "Micronodular")],
                     "Micronodular distributions are seen.", id="bare-adjective-answer-joined-to-its-noun"),
        pytest.param([T("What is abnormal about the pancreas?", "Enlarged")], "The pancreas is enlarged.",
                     id="adjective-answer-about-an-organ"),
        pytest.param([T("What type of thrombosis is shown?", "basilar artery thrombosis"), T("Is there mass effect?", "yes")],
                     "Findings include basilar artery thrombosis and mass effect.", id="two-positives-listed"),
        pytest.param([T("Is there a mass?", "yes"), T("Is there atelectasis?", "yes"), T("Is there an effusion?", "yes")],
                     "Findings include a mass, atelectasis and an effusion.", id="three-positives-listed"),
        pytest.param([T("Where is the mass located?", "Right lower lobe"), T("Where are the infarcts?", "bilateral"),
                      T("In which lobe is the lesion?", "Left occipital lobe")],
                     "The mass is in the right lower lobe; the infarcts are bilateral; the lesion is in the left occipital lobe.",
                     id="locations"),
        pytest.param([T("How many masses are there?", "2"), T("How many lesions are seen?", "1"), T("How big is the mass?", "2.5 cm")],
                     "There are 2 masses; the mass is 2.5 cm.", id="counts-and-sizes"),
        pytest.param([T("What is in the left lung?", "There is a large mass in the left lung.")],
                     "There is a large mass in the left lung.", id="answer-is-a-sentence-already"),
        pytest.param([T("What would be the most probable diagnosis?", "stroke"), T("How would you describe the lesion?", "round"),
                      T("Is the mass calcified?", "yes")], "The mass is calcified.", id="speculative-questions-left-out"),
        pytest.param([T("What type of imaging was used?", "MR - T2 weighted"), T("Are the kidney present?", "yes"),
                      T("Are the kidneys enlarged?", "no")],
                     "MRI (T2-weighted). Kidney is visible; the kidneys are not enlarged.", id="modality-answer-and-agreement"),
        pytest.param([T("Is there tracheal deviation?", "no"), T("Is there deviation of the trachea?", "no"),
                      T("Are any fractures present?", "No")], "No tracheal deviation or fractures are seen.",
                     id="paraphrases-dropped"),
        pytest.param([T("How was this image taken?", "X-ray"), T("What imaging modality is seen?", "X-ray"),
                      T("Is there a pneumothorax present?", "No")], "X-ray. No pneumothorax is seen.",
                     id="overview-questions-not-repeated"),
        pytest.param([T("What is it?", "mass"), T("Is there a fracture?", "no")], "No fracture is seen.",
                     id="what-is-it-does-not-crash"),
        pytest.param([T("Is there a mass?", "yes"), T("What is the abnormality?", "Air?"), T("What is abnormal?", "none")],
                     "There is a mass.", id="unsure-and-normal-answers-left-out"),
        pytest.param([T("Does there seem to be a mass effect?", "yes"), T("Which ventricle is the mass located in?", "4th ventricle"),
                      T("What is the location of the cyst?", "Right kidney")],
                     "There is a mass effect; the mass is in the 4th ventricle; the cyst is in the right kidney.",
                     id="location-questions-in-other-shapes"),
        pytest.param([T("What diseases are included in the picture?", "Brain Edema, Brain Tumor"),
                      T("Are there abnormalities?", "yes"), T("Do any of the organs belong to the urinary system?", "Yes")],
                     "Findings include brain edema and brain tumor.", id="answer-lists-split-generic-and-any-dropped"),
        pytest.param([T("Which is the smallest in this image, rectum, small bowel or bladder?", "Rectum"),
                      T("What is the effect of the gray organ?", "Store feces"), T("Where is the bladder?", "Center")],
                     "The bladder is in the center.", id="picks-from-lists-and-textbook-questions-left-out"),
        pytest.param([T("Which plane is this?", "Transverse Plane"), T("What modality is used?", "CT"),
                      T("What organ is the gray part on the left?", "Liver"), T("Which part of the body is this?", "Abdomen")],
                     "Transverse CT of the abdomen.", id="slake-overview"),
    ],
)
def test_template_patterns(turns, expected):
    assert template_summary(turns) == expected
    assert not _extra_words(Dialogue(id="d", image=None, turns=turns, summary=expected))  # every content word from the dialogue


def test_template_caps_findings_and_words_and_drops_paraphrases():
    organs = ["liver", "spleen", "kidney", "heart", "aorta", "bladder"]
    turns = [Turn(f"Is the {o} enlarged?", "yes") for o in organs]
    text = template_summary(turns, max_findings=3)  # three statements kept; the same predicate is said once
    assert text == "The liver, the spleen and the kidney are enlarged."
    turns = [Turn("Is there evidence of free fluid in the pelvis?", "yes"), Turn("Is there free fluid in the pelvis?", "yes")]
    assert template_summary(turns) == "There is evidence of free fluid in the pelvis."
    assert cap_words("one two three four five.", 3) == "one two three."
    assert len(template_summary([Turn(f"Is the structure {i} enlarged?", "yes") for i in range(8)], max_words=12).split()) <= 12


def _words(text):
    return {w.lower() for w in re.findall(r"[A-Za-z]+", text)}


GLUE = {"of", "the", "image", "there", "is", "are", "was", "were", "no", "not", "in", "on", "weighted", "counted", "with",
        "contrast", "has", "does", "do", "mri", "diffusion", "map", "without", "findings", "include", "pa", "ap", "had", "saw",
        "lay", "took", "went", "none", "nothing", "something", "seen", "or", "and", "a", "visible", "abnormality", "both", "at"}


def _extra_words(d):
    """Words of the summary that neither the dialogue (its known typos corrected: ``summary_words.TYPOS``) nor the
    template's fixed words (GLUE) contain."""
    source = _words(fix_typos(" ".join(f"{t.question} {t.answer}" for t in d.turns)).lower().replace("xray", "x ray").replace("cxr", "cxr chest x ray"))  # CXR = chest X-ray
    return {w for w in _words(d.summary) - source - GLUE if not any(w.startswith(s) for s in source)}


def test_template_uses_only_words_from_the_dialogue(tmp_path):
    root = build_vqa_rad_mevf(tmp_path / "vqa-rad")
    convert("vqa-rad", root, tmp_path / "out", options=None, progress=False)
    for split in ("train", "test"):
        for d in read_jsonl(tmp_path / "out" / f"{split}.jsonl"):
            assert not _extra_words(d), (d.summary, _extra_words(d))


REAL_DATA = Path(os.environ.get("VMED_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
REAL_VQA_RAD = REAL_DATA / "vqa-rad"
BAD = {
    "plural verb after a singular finding": re.compile(r"\b(?:cardiomegaly|effusion|pneumothorax|edema) are included in\b", re.I),
    "'are included in' slotted from the question": re.compile(r" are included in\b", re.I),
    "bare adjective as a subject": re.compile(r"(?:^|[.;] )\w+(?:al|ar|ed|ic|ous) (?:is|are) seen on this image", re.I),
    "doubled word": re.compile(r"\b(\w+) \1\b", re.I),
    "yes/no as a subject": re.compile(r"(?:^|[.;,] )(?:yes|no) (?:is|are|was|were)\b", re.I),
    "word order broken by the split": re.compile(r"\b(?:it|this) \w+ is to\b|\bthis the is\b", re.I),
    "'none X are'": re.compile(r"\bnone \w+s are\b", re.I),
    "'in to the'": re.compile(r"\bin to the\b", re.I),
}


def test_real_vqa_rad_summaries_read_cleanly(tmp_path):
    if not REAL_VQA_RAD.is_dir():
        pytest.skip(f"real VQA-RAD not found at {REAL_VQA_RAD}")
    convert("vqa-rad", REAL_VQA_RAD, tmp_path / "out", options=None, validation_fraction=0, progress=False)
    records = read_jsonl(tmp_path / "out" / "train.jsonl") + read_jsonl(tmp_path / "out" / "test.jsonl")
    assert len(records) == 516
    qa_fallbacks = 0
    empty = [d.id for d in records if not d.summary]
    assert len(empty) <= len(records) // 20, empty  # left empty only where no statement could be built
    for d in records:
        if not d.summary:
            continue
        for name, pattern in BAD.items():
            assert not pattern.search(d.summary), (name, d.id, d.summary)
        assert 1 <= len(d.summary.split()) <= 60 and d.summary.endswith("."), (d.id, d.summary)
        assert d.summary.count(". ") <= 1, (d.id, d.summary)  # at most two sentences: overview, findings
        assert not _extra_words(d), (d.id, d.summary, _extra_words(d))
        qa_fallbacks += "? " in d.summary
    assert qa_fallbacks <= len(records) // 20  # a Q/A pair only where no rule fits, rarely


# --- LLM summarizer against a stub OpenAI-compatible server on 127.0.0.1 --------------------------------


class _Stub:
    def __init__(self, replies):
        self.replies = list(replies)
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"path": self.path, "body": body})
                text = stub.replies.pop(0) if stub.replies else "A stub note."
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def stub():
    servers = []

    def make(replies):
        s = _Stub(replies)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def _dialogues(n):
    return [Dialogue(id=f"d{i}", image=None, turns=[Turn(f"Is the organ {i} enlarged?", "yes")]) for i in range(n)]


def test_llm_summaries_fallback_cap_and_cache(stub, tmp_path):
    server = stub(["  The organ is enlarged.  ", "", "the organ is enlarged " * 30])
    cache = tmp_path / "summary_cache.jsonl"
    s = LlmSummarizer(OpenAIBackend(server.url, "stub-model"), "stub-model", cache, max_words=10)
    out = [s.summarize(d) for d in _dialogues(3)]
    assert out[0] == "The organ is enlarged."
    assert out[1] == TemplateSummarizer().summarize(_dialogues(2)[1])  # empty response -> template
    assert len(out[2].split()) == 10
    assert s.stats() == {"summarizer": "llm", "model": "stub-model", "llm": 2, "cached": 0, "fallbacks": 1,
                         "fallback_reasons": {"empty_response": 1}, "guard_replaced": 0, "guard_reasons": {}}
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions" and req["body"]["model"] == "stub-model"
    assert "Q: Is the organ 0 enlarged?\nA: yes" in req["body"]["messages"][0]["content"]
    # A new run with the same cache: the two good summaries are reused, only the fallback is asked again.
    again = LlmSummarizer(OpenAIBackend(server.url, "stub-model"), "stub-model", cache, max_words=10)
    assert [again.summarize(d) for d in _dialogues(3)][0] == "The organ is enlarged."
    assert again.stats()["cached"] == 2 and len(server.requests) == 4
    # Another prompt or model is another key.
    other = LlmSummarizer(OpenAIBackend(server.url, "stub-model"), "stub-model", cache, prompt="Say: {dialogue}")
    other.summarize(_dialogues(1)[0])
    assert other.stats()["cached"] == 0


def test_llm_resume_after_interruption(stub, tmp_path):
    server = stub([])
    cache = tmp_path / "c.jsonl"
    calls = []

    def flaky(prompt, max_tokens):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(prompt)
        return f"The organ {len(calls) - 1} is enlarged."

    s = LlmSummarizer(flaky, "m", cache)
    with pytest.raises(KeyboardInterrupt):
        for d in _dialogues(4):
            s.summarize(d)
    with cache.open("a") as f:
        f.write('{"key": "cut in the mid')  # a line cut by the interruption is ignored
    resumed = LlmSummarizer(OpenAIBackend(server.url, "m"), "m", cache)
    texts = [resumed.summarize(d) for d in _dialogues(4)]
    assert texts[:2] == ["The organ 0 is enlarged.", "The organ 1 is enlarged."]
    assert resumed.stats()["cached"] == 2 and len(server.requests) == 2


def test_convert_with_llm_through_the_cli(stub, tmp_path, capsys):
    root = build_vqa_rad_mevf(tmp_path / "vqa-rad")
    server = stub(["", "Axial image of the head.", ""])
    out = tmp_path / "out"
    code = main(["data", "convert", "--format", "vqa-rad", "--input", str(root), "--output", str(out), "-q",
                 "--summarizer", "llm", "--llm-url", server.url, "--llm-model", "stub", "--summary-max-words", "20"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    sm = report["summaries"]  # 5 records: 2 empty replies fall back; the rest are kept or replaced by the guard
    assert sm["fallbacks"] == 2 and sm["llm"] + sm["guard_replaced"] == 3
    assert "fallbacks 2" in capsys.readouterr().out
    assert (out / "summary_cache.jsonl").is_file() == (sm["llm"] > 0)  # only accepted summaries are cached


def test_llm_errors_for_people(tmp_path):
    with pytest.raises(UserInputError, match="must contain '{dialogue}'"):
        LlmSummarizer(lambda p, n: "x", "m", tmp_path / "c.jsonl", prompt="no placeholder")
    dead = LlmSummarizer(OpenAIBackend("http://127.0.0.1:9/v1", "m", timeout=2), "m", tmp_path / "c.jsonl")
    with pytest.raises(UserInputError, match="cannot reach the endpoint"):
        dead.summarize(_dialogues(1)[0])
    assert "{dialogue}" in DEFAULT_LLM_PROMPT
    root = build_vqa_rad_mevf(tmp_path / "vqa-rad")
    assert main(["data", "convert", "-f", "vqa-rad", "-i", str(root), "-o", str(tmp_path / "o"), "--summarizer", "llm"]) == 2


def test_llm_through_a_local_hf_causal_lm(tmp_path):
    """The transformers path, with a tiny random Llama saved to disk (no download)."""
    tok_mod = pytest.importorskip("vmed.model.tokenizer", reason="the model helper's tiny tokenizer is not available")
    from transformers import LlamaConfig, LlamaForCausalLM

    from vmed.data.summaries import HFBackend

    tokenizer = tok_mod.build_tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    s = LlmSummarizer(HFBackend(str(tmp_path / "lm")), "tiny-lm", tmp_path / "c.jsonl", max_words=8)
    text = s.summarize(_dialogues(1)[0])
    stats = s.stats()
    assert stats["llm"] + stats["fallbacks"] + stats.get("guard_replaced", 0) == 1
    assert 1 <= len(text.split()) <= 8 or stats["fallbacks"] + stats.get("guard_replaced", 0) == 1


# --- content equivalence: the same statement is said once (issue 10) ---------------------------------------------


@pytest.mark.parametrize(
    "turns, expected",
    [
        pytest.param([T("Is the heart larger than normal?", "no"), T("Is the heart enlarged?", "No")],
                     "The heart is not larger than normal.", id="larger-than-normal-is-enlarged"),
        pytest.param([T("What are the hyperintensities surrounding the aorta?", "calcified atherosclerosis"),
                      T("What are the hyperdense lesions noted at the edges of the aorta?", "calcified atherosclerosis")],
                     "The hyperdense lesions noted at the edges of the aorta are calcified atherosclerosis.",
                     id="same-complement-paraphrased-subject"),
        pytest.param([T("Does the gallbladder appear distended?", "yes"), T("Is the gallbladder enlarged?", "yes")],
                     "The gallbladder appears distended.", id="synonym-table-distended-enlarged"),
        pytest.param([T("What are the hyperdensities indicative of?", "infarct"), T("What do the hyperdensities represent?", "infarct")],
                     "The hyperdensities are indicative of infarct.", id="linking-verbs-represent-indicative"),
        pytest.param([T("Was IV contrast given to the patient?", "yes"), T("Did this patient receive IV contrast?", "yes")],
                     "IV contrast was given to the patient.", id="given-received"),
        pytest.param([T("Where is the mass?", "Right lung"), T("Is the lung abnormal?", "yes"), T("Where is the abnormality?", "Right lung")],
                     "The mass is in the right lung.", id="abnormality-here-implied-by-the-finding-there"),
        pytest.param([T("Is there a pulmonary mass?", "yes"), T("Where is the mass?", "Left lung")],
                     "The mass is in the left lung.", id="finding-present-said-by-its-location"),
        pytest.param([T("Does the liver look normal?", "yes"), T("Does the spleen look normal?", "yes")],
                     "The liver and the spleen look normal.", id="one-predicate-for-two-subjects"),
        pytest.param([T("Is the left kidney enlarged?", "yes"), T("Is the right kidney enlarged?", "no")],
                     "The left kidney is enlarged; the right kidney is not enlarged.", id="sides-and-polarity-never-merge"),
        pytest.param([T("Is the fat surrounding the pancreas normal?", "no")], "The fat surrounding the pancreas is not normal.",
                     id="adjective-after-a-phrase-in-the-subject"),
        pytest.param([T("Does this patient have pneumomediastinum?", "No")], "No pneumomediastinum is seen.", id="patient-has"),
        pytest.param([T("Is this an MRI or a CT scan?", "MRI")], "MRI.", id="modality-picked-from-two"),
        pytest.param([T("Is this a contrast enhanced image?", "Yes")], "Image (with contrast).", id="contrast-only-lead"),
        pytest.param([T("Is the celiac trunk able to be visualized and is it open?", "yes")], "", id="two-questions-in-one-left-out"),
        pytest.param([T("What is the abnormality?", "<|eot_id|>"), T("Is there <image> a mass?", "yes")], "",
                     id="chat-template-tokens-left-out"),
    ],
)
def test_template_says_each_thing_once(turns, expected):
    text = template_summary(turns)
    assert text == expected
    if text:
        assert not _extra_words(Dialogue(id="d", image=None, turns=turns, summary=text))


@pytest.mark.parametrize(
    "text, issues",
    [
        ("The heart is not larger than normal; the heart size is not larger than normal.", ["repeated"]),
        ("MRI of the head. This image is taken via MRI.", ["repeated", "fragment"]),
        ("Mass is seen in the lower left lung; mass can not be observed on the lower right lung.", []),  # sides, polarity
        ("The left lung is black; the right lung is black.", []),
        ("There is no fracture; there is a fracture.", []),  # opposite polarity: a contradiction, not a repeat
        ("The picture contains liver.", ["fragment"]),
        ("The abnormality is in the left lung, right.", ["fragment"]),
    ],
)
def test_audit_checker(text, issues):
    assert summary_issues(text) == issues


def test_real_vqa_rad_audit_figures(tmp_path):
    """The documented figures (docs/data-formats.md): at most 5 % of summaries flagged by the repeat checker, no
    fragment, at most 3 % empty."""
    if not REAL_VQA_RAD.is_dir():
        pytest.skip(f"real VQA-RAD not found at {REAL_VQA_RAD}")
    convert("vqa-rad", REAL_VQA_RAD, tmp_path / "vqa", options=None, progress=False)
    records = [d for s in ("train", "validation", "test") for d in read_jsonl(tmp_path / "vqa" / f"{s}.jsonl")]
    audit = summary_audit(records)
    rows = [r for k, r in audit.items() if k.endswith("/template")]
    assert sum(r["summaries"] for r in rows) + sum(r.get("records_without_summary", 0) for r in audit.values()) == 516
    assert sum(r["summaries_with_fragments"] for r in rows) == 0
    assert sum(r["summaries_with_repeats"] for r in rows) <= 516 // 20
    assert sum(not d.summary for d in records) <= 516 * 3 // 100
