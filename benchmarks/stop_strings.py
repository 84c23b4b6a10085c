"""Why ``vmed.inference.streaming`` keeps its own stop strings and token queue (issue 12), measured.

1. Cost per request of generate's ``stop_strings`` (transformers' ``StopStringCriteria``, built for
   each ``generate`` call) against ours (``StopOnStrings``: decode the answer so far at each step),
   on a synthetic byte-level vocabulary of ``--vocab`` tokens (Llama-3 has 128,256) and a
   ``--tokens``-token answer. Both run side by side in this process.
2. Streaming granularity: how many pieces an answer with symbols and few spaces arrives in with
   ``TextIteratorStreamer`` and with ours, fed the same tokens one at a time (vmed's tiny byte-level
   BPE tokenizer). Both keep multi-byte characters whole.

    PYTHONPATH=src python benchmarks/stop_strings.py                # 128,000-token vocabulary
    PYTHONPATH=src python benchmarks/stop_strings.py --vocab 32000
"""

from __future__ import annotations

import argparse
import random
import time

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from tokenizers.pre_tokenizers import ByteLevel
from transformers import PreTrainedTokenizerFast, TextIteratorStreamer
from transformers.generation.stopping_criteria import StopStringCriteria

from vmed.inference.streaming import StopOnStrings, _held_back, decode


def synthetic_tokenizer(vocab_size: int, seed: int = 0) -> PreTrainedTokenizerFast:
    """A byte-level tokenizer with the 256 byte symbols plus random lower-case pieces, ``vocab_size`` in all."""
    rng = random.Random(seed)
    alphabet = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(alphabet)}
    while len(vocab) < vocab_size:
        piece = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz\u0120") for _ in range(rng.randint(2, 8)))
        vocab.setdefault(piece, len(vocab))
    backend = Tokenizer(models.WordLevel(vocab, unk_token=alphabet[0]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend)


def stop_string_costs(tok: PreTrainedTokenizerFast, answer_tokens: int, requests: int) -> tuple[float, float]:
    """Mean seconds per request: (HF criteria built + run each step, ours run each step); fresh stop strings per request."""
    rng = random.Random(1)
    ids = [rng.randrange(256, len(tok)) for _ in range(answer_tokens)]
    hf_total = ours_total = 0.0
    for r in range(requests):
        stops = [f"\nUser{r}:", f"STOP{r}"]
        t0 = time.perf_counter()
        hf = StopStringCriteria(tok, stops)
        for n in range(1, answer_tokens + 1):
            hf(torch.tensor([ids[:n]]), None)
        hf_total += time.perf_counter() - t0
        t0 = time.perf_counter()
        ours = StopOnStrings(tok, stops, prompt_length=0)
        for n in range(1, answer_tokens + 1):
            ours(torch.tensor([ids[:n]]), None)
        ours_total += time.perf_counter() - t0
    return hf_total / requests, ours_total / requests


def pieces(tok: PreTrainedTokenizerFast, text: str) -> tuple[int, int]:
    """Pieces a streamed ``text`` arrives in: (TextIteratorStreamer, ours), fed one token at a time."""
    ids = tok(text, add_special_tokens=False)["input_ids"]
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    streamer.put(torch.tensor([[0]]))  # the prompt, skipped
    for t in ids:
        streamer.put(torch.tensor([t]))
    hf = [p for p in iter(lambda: streamer.text_queue.get_nowait() if not streamer.text_queue.empty() else None, None) if p]
    ours, emitted = 0, 0
    for n in range(1, len(ids) + 1):
        shown = decode(tok, ids[:n])
        safe = len(shown) - _held_back(shown, [])
        if safe > emitted:
            ours, emitted = ours + 1, safe
    return len(hf), ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=128_000)
    parser.add_argument("--tokens", type=int, default=256, help="answer length")
    parser.add_argument("--requests", type=int, default=3)
    args = parser.parse_args()
    tok = synthetic_tokenizer(args.vocab)
    hf, ours = stop_string_costs(tok, args.tokens, args.requests)
    print(f"stop strings, {args.vocab} tokens, {args.tokens}-token answer, new stop strings each request:")
    print(f"  generate's StopStringCriteria  {hf * 1000:8.1f} ms per request")
    print(f"  vmed StopOnStrings             {ours * 1000:8.1f} ms per request   ratio {hf / ours:.1f}x")
    from vmed.model.tokenizer import build_tiny_tokenizer

    vitals = "T=38.5°C→39.2°C;HR=110/min;SpO2=91%;BP=90/60mmHg;lactate=4.1mmol/L"
    hf_pieces, our_pieces = pieces(build_tiny_tokenizer(), vitals)
    print(f"streaming {vitals!r} ({len(vitals)} characters, no spaces): TextIteratorStreamer {hf_pieces} piece(s) "
          f"before the end, vmed {our_pieces} pieces")


if __name__ == "__main__":
    main()
