"""``vmed train``, ``vmed export`` and ``vmed demo``: the training area's commands (thin: vmed.training does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from vmed.cli._apps import app

# lazy: keeps vmed --help fast (each command imports what it runs inside its function)


@app.command(
    "train",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def train(
    ctx: typer.Context,
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="stage YAML, e.g. configs/tiny-phantom/stage1.yaml"),
    list_keys: bool = typer.Option(False, "--list-keys", help="print every config key with its type, default and help, then exit"),
) -> None:
    """Run one training stage: vmed train --config FILE KEY=VALUE ... (dotted overrides, e.g. optim.lr=1e-3).

    Several processes (GPUs, or CPU processes on gloo): the same arguments after a launcher, e.g.
    `accelerate launch --config_file configs/accelerate/fsdp.yaml -m vmed train --config FILE` or
    `torchrun --nproc_per_node 8 -m vmed train --config FILE`. Rerunning a command resumes from the latest
    complete checkpoint in its output_dir.
    """
    from vmed.config import describe_keys, load_config

    if list_keys:
        for key, tp, default, help_text in describe_keys():
            typer.echo(f"{key:<32} {tp:<40} default {default:<14} {help_text}")
        raise typer.Exit()
    if config is None and not ctx.args:
        raise typer.BadParameter("give --config FILE (and optional key=value overrides)", param_hint="--config")
    cfg = load_config(config, list(ctx.args))
    from vmed.training.stages import run_stage

    run_stage(cfg)


@app.command("export")
def export(
    run: Path = typer.Option(..., "--run", help="a training run directory (stage 1, 2 or 3)"),
    output: Path = typer.Option(..., "--output", "-o", help="where to write the exported model"),
    merge: bool = typer.Option(False, "--merge", help="merge every adapter: a plain HF LLaVA checkpoint (transformers, vLLM)"),
    dtype: str = typer.Option("auto", "--dtype", help="weights dtype of a merged export: auto (as trained), float32, bfloat16, float16"),
) -> None:
    """Export a run: --merge gives a plain LLaVA checkpoint; without it, OUT/base (plain LLaVA) + OUT/adapter (peft LoRA on it)."""
    from vmed.training.export import export_run

    out = export_run(run, output, merge=merge, dtype=dtype)
    typer.echo(f"exported {run} -> {out}" + (" (merged)" if merge else " (base/ + adapter/)"))


@app.command("demo")
def demo(
    output: Path = typer.Option(Path("demo_output"), "--output", "-o", help="directory for phantoms, the three runs and the report"),
    n: int = typer.Option(0, "--n", help="number of phantoms (0: the demo's default)"),
    seed: int = typer.Option(0, "--seed", help="seed of phantoms, model and training"),
) -> None:
    """Offline end to end on the tiny preset: phantoms -> stage 1 -> 2 -> 3 -> test accuracy (real vs blank images) -> a sample dialogue."""
    from vmed.demo import run_demo

    run_demo(output, n=n or None, seed=seed)
