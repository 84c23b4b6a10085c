"""Summaries: the template's statements and notes; the LLM summarizer against a local stub endpoint."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

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
        ("What organ is enlarged?", "Spleen", "spleen is enlarged"),
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
    assert template_summary(turns) == "Axial MRI of the abdomen (T2-weighted). The liver is visible; there is no kidney."


def test_template_caps_findings_and_words_and_drops_paraphrases():
    organs = ["liver", "spleen", "kidney", "heart", "aorta", "bladder"]
    turns = [Turn(f"Is the {o} enlarged?", "yes") for o in organs]
    text = template_summary(turns, max_findings=3)
    assert text.count(";") == 2
    turns = [Turn("Is there evidence of free fluid in the pelvis?", "yes"), Turn("Is there free fluid in the pelvis?", "yes")]
    assert template_summary(turns) == "There is evidence of free fluid in the pelvis."
    assert cap_words("one two three four five.", 3) == "one two three."
    assert len(template_summary([Turn(f"Is the structure {i} enlarged?", "yes") for i in range(8)], max_words=12).split()) <= 12


def _words(text):
    return {w.lower() for w in re.findall(r"[A-Za-z]+", text)}


GLUE = {"of", "the", "image", "there", "is", "are", "was", "were", "no", "not", "in", "on", "weighted", "counted", "with",
        "contrast", "has", "does", "do", "s", "es", "ies", "ed", "d"}


def test_template_uses_only_words_from_the_dialogue(tmp_path):
    root = build_vqa_rad_mevf(tmp_path / "vqa-rad")
    convert("vqa-rad", root, tmp_path / "out", options=None, progress=False)
    for split in ("train", "test"):
        for d in read_jsonl(tmp_path / "out" / f"{split}.jsonl"):
            source = _words(" ".join(f"{t.question} {t.answer}" for t in d.turns))
            extra = {w for w in _words(d.summary) - source - GLUE if not any(w.startswith(s) for s in source)}
            assert not extra, (d.summary, extra)


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
    server = stub(["  The organ is enlarged.  ", "", "word " * 100])
    cache = tmp_path / "summary_cache.jsonl"
    s = LlmSummarizer(OpenAIBackend(server.url, "stub-model"), "stub-model", cache, max_words=10)
    out = [s.summarize(d) for d in _dialogues(3)]
    assert out[0] == "The organ is enlarged."
    assert out[1] == TemplateSummarizer().summarize(_dialogues(2)[1])  # empty response -> template
    assert len(out[2].split()) == 10
    assert s.stats() == {"summarizer": "llm", "model": "stub-model", "llm": 2, "cached": 0, "fallbacks": 1,
                         "fallback_reasons": {"empty_response": 1}}
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
        return f"Note {len(calls)}."

    s = LlmSummarizer(flaky, "m", cache)
    with pytest.raises(KeyboardInterrupt):
        for d in _dialogues(4):
            s.summarize(d)
    with cache.open("a") as f:
        f.write('{"key": "cut in the mid')  # a line cut by the interruption is ignored
    resumed = LlmSummarizer(OpenAIBackend(server.url, "m"), "m", cache)
    texts = [resumed.summarize(d) for d in _dialogues(4)]
    assert texts[:2] == ["Note 1.", "Note 2."]
    assert resumed.stats()["cached"] == 2 and len(server.requests) == 2


def test_convert_with_llm_through_the_cli(stub, tmp_path, capsys):
    root = build_vqa_rad_mevf(tmp_path / "vqa-rad")
    server = stub(["", "Axial image of the head.", ""])
    out = tmp_path / "out"
    code = main(["data", "convert", "--format", "vqa-rad", "--input", str(root), "--output", str(out), "-q",
                 "--summarizer", "llm", "--llm-url", server.url, "--llm-model", "stub", "--summary-max-words", "20"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["summaries"]["fallbacks"] == 2 and report["summaries"]["llm"] == 3  # 5 records
    assert "fallbacks 2" in capsys.readouterr().out
    assert (out / "summary_cache.jsonl").is_file()


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
    assert stats["llm"] + stats["fallbacks"] == 1
    assert 1 <= len(text.split()) <= 8 or stats["fallbacks"] == 1
