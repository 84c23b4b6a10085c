"""One stage-2 LoRA training step of an 8B-shaped VMed-Llama3 on one GPU: tokens/s, MFU and peak memory (+ QLoRA).

Run:  PYTHONPATH=src python3 benchmarks/gpu_step.py            (CUDA; about 2-3 minutes on an H100/H200)
      PYTHONPATH=src python3 benchmarks/gpu_step.py --dry-run  (CPU, tiny shapes: checks the code path only)

The model is random-init (no download): a Llama with the Llama-3-8B shape (hidden 4096, 32 layers,
32 heads / 8 KV heads, intermediate 14336, vocab 128256) and a CLIP ViT-L/14-336 vision tower
(1024 hidden, 24 layers, 576 image tokens), in bf16. The stage-2 policy comes from vmed itself
(``vmed.training.policy.apply_policy``): vision frozen, projector trained, LoRA r=128 / alpha 256 on
q,k,v,o,gate,up,down of the language model only. Each sequence is one image (576 tokens) plus text,
``--seq`` tokens in all; gradient checkpointing is on unless ``--no-grad-ckpt``.

MFU = achieved model FLOP/s / peak dense bf16 FLOP/s of the GPU, with model FLOPs per step
    = T * (4 * N_lm + 2 * N_trainable) + 2 * 2 * L * T * s * h  (attention scores and values, forward + input grads)
      + I * 577 * 2 * N_vision                                  (frozen vision tower, forward only)
where T = tokens per step, N_lm = language-model matmul parameters (layers + lm_head), N_trainable = LoRA +
projector parameters, L = layers, s = sequence length, h = hidden size, I = images per step. A frozen
weight costs 2 FLOPs per token forward and 2 backward (input gradient only); a trained one 2 more for its
weight gradient. Activation recomputation (gradient checkpointing) is not counted as useful work.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from dataclasses import dataclass

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "H800": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
"""Dense bf16 peak (no sparsity) of common GPUs, from the vendors' data sheets (SXM parts)."""


@dataclass
class Shape:
    """Model and batch shape of one benchmark run."""

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int
    v_hidden: int
    v_layers: int
    v_heads: int
    v_intermediate: int
    image_size: int
    patch: int
    batch: int
    seq: int
    lora_r: int
    lora_alpha: int


FULL = dict(hidden=4096, layers=32, heads=32, kv_heads=8, intermediate=14336, vocab=128256,
            v_hidden=1024, v_layers=24, v_heads=16, v_intermediate=4096, image_size=336, patch=14, lora_r=128, lora_alpha=256)
TINY = dict(hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab=512,
            v_hidden=32, v_layers=2, v_heads=4, v_intermediate=64, image_size=32, patch=8, lora_r=4, lora_alpha=8)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=4, help="sequences per step (default 4)")
    p.add_argument("--seq", type=int, default=2048, help="tokens per sequence, image tokens included (default 2048)")
    p.add_argument("--steps", type=int, default=4, help="timed steps (after 2 warm-up steps)")
    p.add_argument("--no-grad-ckpt", action="store_true", help="disable gradient checkpointing")
    p.add_argument("--no-qlora", action="store_true", help="skip the QLoRA (4-bit base) memory measurement")
    p.add_argument("--peak-tflops", type=float, default=None, help="peak dense bf16 TFLOP/s of the GPU (default: from its name)")
    p.add_argument("--dry-run", action="store_true", help="tiny shapes on CPU: check the code path, no meaningful numbers")
    args = p.parse_args(argv)
    if args.batch < 1 or args.steps < 1:
        p.error("--batch and --steps must be at least 1")
    return args


def make_shape(args: argparse.Namespace) -> Shape:
    base = TINY if args.dry_run else FULL
    seq = min(args.seq, 128) if args.dry_run else args.seq
    image_tokens = (base["image_size"] // base["patch"]) ** 2
    if seq <= image_tokens + 8:
        raise SystemExit(f"--seq {seq} must exceed the {image_tokens} image tokens by at least 8")
    return Shape(batch=args.batch, seq=seq, **base)


def build(shape: Shape, device: str, dtype, *, qlora: bool):
    """Random-init LLaVA (CLIP tower + Llama) of ``shape`` with vmed's stage-2 policy applied."""
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    from vmed.config import LoraConfigSpec, PolicyConfig
    from vmed.training.policy import apply_policy, count_parameters

    vision = CLIPVisionConfig(hidden_size=shape.v_hidden, num_hidden_layers=shape.v_layers, num_attention_heads=shape.v_heads,
                              intermediate_size=shape.v_intermediate, image_size=shape.image_size, patch_size=shape.patch,
                              projection_dim=768)
    text = LlamaConfig(hidden_size=shape.hidden, num_hidden_layers=shape.layers, num_attention_heads=shape.heads,
                       num_key_value_heads=shape.kv_heads, intermediate_size=shape.intermediate, vocab_size=shape.vocab,
                       max_position_embeddings=max(8192, shape.seq), rope_theta=500000.0, tie_word_embeddings=False)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=shape.vocab - 1,
                         vision_feature_layer=-2, vision_feature_select_strategy="default", projector_hidden_act="gelu")
    config.image_seq_length = (shape.image_size // shape.patch) ** 2
    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = LlavaForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(previous)
    if qlora:
        from vmed.training.quantize import load_4bit

        model = load_4bit(model, gradient_checkpointing=False)  # run_case turns checkpointing on for both cases
    policy = PolicyConfig(vision="frozen", projector="train", llm="lora")
    model = apply_policy(model, policy, LoraConfigSpec(r=shape.lora_r, alpha=shape.lora_alpha, dropout=0.05))
    model.train()
    return model, count_parameters(model)


def make_batch(shape: Shape, device: str, dtype):
    """Random tokens: BOS, the image tokens, text; labels on the text only. Shapes [B, s] and [B, 3, H, W]."""
    import torch

    n_img = (shape.image_size // shape.patch) ** 2
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(10, shape.vocab - 2, (shape.batch, shape.seq), generator=g)
    ids[:, 0] = 1
    ids[:, 1 : 1 + n_img] = shape.vocab - 1
    labels = ids.clone()
    labels[:, : 1 + n_img] = -100
    pixels = torch.randn(shape.batch, 3, shape.image_size, shape.image_size, generator=g)
    return {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": torch.ones_like(ids).to(device),
            "pixel_values": pixels.to(device=device, dtype=dtype)}


def model_flops(shape: Shape, counts) -> float:
    """Useful FLOPs of one step (see the module docstring for the formula)."""
    n_vision = counts["vision"].total
    n_trainable = sum(c.trainable for c in counts.values())
    n_lm = counts["llm"].total - shape.vocab * shape.hidden  # embedding lookup is not a matmul
    tokens = shape.batch * shape.seq
    attention = 2 * 2 * shape.layers * tokens * shape.seq * shape.hidden
    vision = shape.batch * ((shape.image_size // shape.patch) ** 2 + 1) * 2 * n_vision
    return tokens * (4 * n_lm + 2 * n_trainable) + attention + vision


def run_case(shape: Shape, args: argparse.Namespace, device: str, *, qlora: bool) -> dict:
    import torch

    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    model, counts = build(shape, device, dtype, qlora=qlora)
    if not args.no_grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=2e-4, fused=device == "cuda")
    batch = make_batch(shape, device, dtype)
    built_s = time.time() - t0
    if device == "cuda":
        weights_gib = torch.cuda.memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
    times, losses = [], []
    for step in range(2 + args.steps):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.time()
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda"):
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        losses.append(loss.item())
        if step >= 2:
            times.append(time.time() - t)
    step_s = sum(times) / len(times)
    out = {
        "build_s": built_s,
        "step_s": step_s,
        "tokens_per_s": shape.batch * shape.seq / step_s,
        "flops_per_step": model_flops(shape, counts),
        "trainable": sum(c.trainable for c in counts.values()),
        "total": sum(c.total for c in counts.values()),
        "loss_first_last": (losses[0], losses[-1]),
    }
    if device == "cuda":
        out["weights_gib"] = weights_gib
        out["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
    del model, opt, batch
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_step.py needs a CUDA GPU (none is visible to torch); use --dry-run on CPU to check the code path only",
              file=sys.stderr)
        return 2
    shape = make_shape(args)
    device = "cpu" if args.dry_run else "cuda"
    name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu (dry run)"
    peak = args.peak_tflops
    if peak is None:
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)
    import transformers

    print(f"device: {name}; torch {torch.__version__}, transformers {transformers.__version__}")
    print(f"shape: Llama hidden {shape.hidden} x {shape.layers} layers ({shape.heads} heads / {shape.kv_heads} kv), "
          f"intermediate {shape.intermediate}, vocab {shape.vocab}; CLIP {shape.v_hidden} x {shape.v_layers} @ {shape.image_size}px; "
          f"batch {shape.batch} x {shape.seq} tokens; LoRA r {shape.lora_r}; grad ckpt {'off' if args.no_grad_ckpt else 'on'}")
    r = run_case(shape, args, device, qlora=False)
    achieved = r["flops_per_step"] / r["step_s"]
    mfu = f"{100 * achieved / (peak * 1e12):.1f}%" if peak and device == "cuda" else "n/a"
    print(f"bf16 LoRA: parameters {r['total'] / 1e9:.2f} B, trainable {r['trainable'] / 1e6:.1f} M; step {r['step_s']:.3f} s; "
          f"{r['tokens_per_s']:,.0f} tokens/s; {achieved / 1e12:.1f} TFLOP/s model FLOPs; MFU {mfu}"
          + (f" (peak {peak:.0f} TFLOP/s)" if peak else "")
          + f"; loss {r['loss_first_last'][0]:.3f} -> {r['loss_first_last'][1]:.3f}")
    if device == "cuda":
        print(f"bf16 LoRA memory: weights {r['weights_gib']:.1f} GiB, peak allocated {r['peak_gib']:.1f} GiB, "
              f"peak reserved {r['peak_reserved_gib']:.1f} GiB")
    if args.no_qlora:
        print("QLoRA: skipped (--no-qlora)")
    elif device != "cuda":
        print("QLoRA: skipped (needs CUDA)")
    else:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            print("QLoRA: skipped (bitsandbytes is not installed)")
        else:
            q = run_case(shape, args, device, qlora=True)
            print(f"QLoRA (NF4 base): step {q['step_s']:.3f} s; {q['tokens_per_s']:,.0f} tokens/s; weights {q['weights_gib']:.1f} GiB; "
                  f"peak allocated {q['peak_gib']:.1f} GiB (bf16 LoRA: {r['peak_gib']:.1f} GiB, ratio {q['peak_gib'] / r['peak_gib']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
