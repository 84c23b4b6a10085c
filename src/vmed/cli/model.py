"""``vmed model init`` and ``vmed model info``: write and inspect model directories."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from vmed.cli._apps import model_app

# lazy: keeps vmed --help fast (each command imports what it runs inside its function)
__all__ = ["init", "info"]


@model_app.command()
def init(
    preset: str = typer.Option("tiny", "--preset", help="Model preset: tiny, small, vmed-llama3-8b, vmed-llama3-8b-instruct."),
    output: Path = typer.Option(..., "--output", "-o", help="Directory to write (a plain Hugging Face LLaVA directory)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random initialisation (projector, and random parts)."),
    center_crop: bool = typer.Option(
        False, "--center-crop", help="Resize + centre-crop images instead of padding them to a square (vmed's behaviour before padding)."
    ),
) -> None:
    """Write an untrained model directory built from a preset (for trying the pipeline, and for tests)."""
    from vmed.model import build_preset, get_preset, num_image_tokens, parameter_counts, save_model

    get_preset(preset)
    model, processor = build_preset(preset, seed=seed, pad_to_square=not center_crop)
    save_model(model, processor, output)
    counts = parameter_counts(model)
    typer.echo(
        f"wrote {output} (preset {preset}, seed {seed}): {counts['total']:,} parameters, "
        f"{num_image_tokens(model)} image tokens per image"
    )


def _format_info(info: dict) -> str:
    p = info["parameters"]
    v, lm = info["vision_tower"], info["language_model"]
    base = info.get("base") or {}
    lines = [
        f"model directory   {info['path']}",
        f"architecture      {info['architecture']} ({info['dtype']})",
        "base              " + (", ".join(f"{k}={v_}" for k, v_ in base.items() if v_ is not None) or "unknown"),
        f"vision tower      {v['type']}: {v['image_size']}px, patch {v['patch_size']}, hidden {v['hidden_size']}, "
        f"{v['layers']} layers  [{p['vision']:,} params]",
        f"projector         {info['projector']['type']}  [{p['projector']:,} params]",
        f"language model    {lm['type']}: hidden {lm['hidden_size']}, {lm['layers']} layers, vocab {lm['vocab_size']}  "
        f"[{p['llm']:,} params]",
        f"total parameters  {p['total']:,}",
        f"image tokens      {info['num_image_tokens']} x {info['image_token']} (id {info['image_token_id']}), "
        f"strategy {info['vision_feature_select_strategy']}, feature layer {info['vision_feature_layer']}",
        f"tokenizer         {info['tokenizer_size']} tokens, eos ids {info['eos_token_ids']}",
        "chat template:",
        "  " + (info["chat_template"] or "(none)"),
    ]
    return "\n".join(lines)


@model_app.command()
def info(
    path: Path = typer.Argument(..., help="Model directory (written by `vmed model init`, training or export)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of text."),
) -> None:
    """Print a model directory's parts, parameter counts, image-token count and chat template."""
    from vmed.model import model_info

    data = model_info(path)
    typer.echo(json.dumps(data, indent=2) if as_json else _format_info(data))
