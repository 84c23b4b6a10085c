"""``vmed chat``: a multi-turn chat about an image in the terminal (the REPL is ``vmed.serve.chat_cli``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from vmed.cli._apps import app
from vmed.constants import DEFAULT_SYSTEM_PROMPT

# lazy: keeps vmed --help fast (each command imports what it runs inside its function)
__all__ = ["chat"]


@app.command("chat")
def chat(
    model: Path = typer.Option(..., "--model", help="Model dir (plain or exported) or training run dir with a LoRA adapter."),
    image: Optional[Path] = typer.Option(None, "--image", help="Image to talk about: PNG, JPEG or DICOM (switch later with /image)."),
    system: str = typer.Option(DEFAULT_SYSTEM_PROMPT, "--system", help="System prompt."),
    preset: Optional[str] = typer.Option(None, "--preset", help="DICOM window preset: lung, soft-tissue, bone or brain."),
    window: Optional[str] = typer.Option(None, "--window", help="DICOM window CENTER,WIDTH in modality units (HU for CT), e.g. -600,1500."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", help="Longest answer, in tokens."),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy (deterministic); > 0 samples."),
    top_p: float = typer.Option(1.0, "--top-p", help="Nucleus sampling mass (with --temperature > 0)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    device: Optional[str] = typer.Option(None, "--device", help="torch device (default: cuda if available, else cpu)."),
) -> None:
    """Chat about an image: questions on stdin, answers streamed to stdout; /image, /reset, /save, /help, /quit.

    Reads from a pipe too (no prompts then; one answer line per question), e.g.
    printf 'Is there an effusion?\\n/save chat.jsonl\\n' | vmed chat --model M --image x.png
    """
    from vmed.cli.image import parse_window
    from vmed.inference import Engine, GenParams
    from vmed.serve.chat_cli import ChatRepl

    from vmed.errors import UserInputError
    from vmed.imaging import WINDOW_PRESETS

    if preset is not None and preset not in WINDOW_PRESETS:
        raise UserInputError(f"--preset {preset!r} is not one of {sorted(WINDOW_PRESETS)}")
    if preset is not None and window is not None:
        raise UserInputError("give --preset or --window, not both")
    params = GenParams(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed)
    win = parse_window(window) if window is not None else None
    engine = Engine.from_pretrained(model, device=device)
    repl = ChatRepl(
        engine, params, system=system, window=win, preset=preset, model_name=str(model), interactive=sys.stdin.isatty(),
    )
    if image is not None:
        repl.set_image(image)
    raise typer.Exit(repl.run())
