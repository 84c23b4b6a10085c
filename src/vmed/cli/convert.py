"""``vmed data convert | stats | export``: dataset conversion to dialogue records, statistics, export.

Examples::

    vmed data convert --format vqa-rad --input data/vqa-rad --output out/vqa-rad --split-policy image-disjoint
    vmed data stats out/vqa-rad
    vmed data export out/vqa-rad/train.jsonl --to llava --output out/vqa-rad-llava.json
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer

from vmed.cli._apps import data_app
from vmed.errors import UserInputError

# lazy: keeps vmed --help fast (each command imports what it runs inside its function)
__all__ = ["convert_cmd", "stats_cmd", "export_cmd"]


@data_app.command("convert")
def convert_cmd(
    format: str = typer.Option(..., "--format", "-f", help="vqa-rad | slake | pathvqa | vqa-med-2019 | hf-parquet | llava | roco"),
    input: Path = typer.Option(..., "--input", "-i", help="The dataset folder (or file) as downloaded."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder: {train,validation,test}.jsonl + report.json."),
    summarizer: str = typer.Option("template", help="template (offline, deterministic) | llm"),
    split_policy: str = typer.Option("keep", help="keep (official split; leaks reported) | image-disjoint (no image in two splits)"),
    lang: str = typer.Option("en", help="SLAKE question language: en | zh | all."),
    include_frames: bool = typer.Option(False, "--include-frames", help="VQA-RAD MEVF: keep the templated 'frame' rows."),
    allow_missing_images: bool = typer.Option(False, "--allow-missing-images", help="Keep records whose image is missing/unreadable (flagged in report.json)."),
    copy_images: bool = typer.Option(False, "--copy-images", help="Copy images into OUTPUT/images instead of referring to them (names that would land outside it are skipped)."),
    validation_fraction: float = typer.Option(0.1, help="Datasets without a validation split (VQA-RAD, PathVQA without val, parquet): share of train images carved into validation.jsonl, by image; 0 disables."),
    seed: int = typer.Option(0, help="Seed of the validation carve."),
    split: Optional[str] = typer.Option(None, help="Split for inputs that carry none (llava, roco JSON); default train."),
    image_root: Optional[Path] = typer.Option(None, help="llava/roco JSON: folder the image paths are relative to (default: the JSON's folder)."),
    llm_url: Optional[str] = typer.Option(None, help="llm summarizer: OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1"),
    llm_model: Optional[str] = typer.Option(None, help="llm summarizer: model name at --llm-url, or a Hugging Face causal LM id/local path."),
    llm_prompt: Optional[Path] = typer.Option(None, help="llm summarizer: prompt file with {dialogue} (and optionally {max_words})."),
    summary_max_words: int = typer.Option(60, help="Cap on summary length, in words."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Convert a medical VQA / caption / conversation dataset into per-image dialogue records."""
    from vmed.data.build import ConvertJob, run
    from vmed.data.converters import CONVERTERS, ConvertOptions
    from vmed.data.converters.base import SPLIT_ALIASES

    if split is not None and split not in SPLIT_ALIASES:
        raise UserInputError(f"--split {split!r}: use train, validation or test")
    opts = ConvertOptions(lang=lang, include_frames=include_frames, split=SPLIT_ALIASES.get(split) if split else None,
                          image_root=image_root)
    job = ConvertJob(format=format, input=input, output=output, options=opts, split_policy=split_policy,
                     allow_missing_images=allow_missing_images, copy_images=copy_images,
                     validation_fraction=validation_fraction, seed=seed, progress=not quiet)
    job.check(CONVERTERS)  # before the summarizer opens its cache in the output folder
    summ = _summarizer(summarizer, output, llm_url, llm_model, llm_prompt, summary_max_words)
    report = run(replace(job, summarizer=summ))
    for line in report.lines():
        typer.echo(line)
    for w in report.warnings:
        typer.secho(f"warning: {w}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"wrote {', '.join(report.files.values())} and {output / 'report.json'}")


def _summarizer(kind: str, output: Path, url: str | None, model: str | None, prompt_file: Path | None, max_words: int):
    from vmed.data.summaries import DEFAULT_LLM_PROMPT, HFBackend, LlmSummarizer, OpenAIBackend, TemplateSummarizer

    if kind == "template":
        if url or model or prompt_file:
            raise UserInputError("--llm-url/--llm-model/--llm-prompt need --summarizer llm")
        return TemplateSummarizer(max_words=max_words)
    if kind != "llm":
        raise UserInputError(f"--summarizer {kind!r}: choose template or llm")
    if not model:
        raise UserInputError("--summarizer llm needs --llm-model (the endpoint's model name, or a HF model id/path)")
    prompt = DEFAULT_LLM_PROMPT
    if prompt_file is not None:
        if not prompt_file.is_file():
            raise UserInputError(f"--llm-prompt {prompt_file}: no such file")
        prompt = prompt_file.read_text(encoding="utf-8")
    backend = OpenAIBackend(url, model) if url else HFBackend(model)
    return LlmSummarizer(backend, model, output / "summary_cache.jsonl", prompt=prompt, max_words=max_words)


@data_app.command("stats")
def stats_cmd(
    path: Path = typer.Argument(..., help="A dialogue JSONL file or a folder of them."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
    no_hash: bool = typer.Option(False, "--no-hash", help="Skip hashing image files (leaks by path only)."),
) -> None:
    """Images, turns per dialogue, closed/open answers, top answers, question types, summary lengths, leaks."""
    from vmed.data.stats import compute_stats, format_stats

    stats = compute_stats(path, hash_images=not no_hash)
    typer.echo(json.dumps(stats, indent=2, ensure_ascii=False) if as_json else format_stats(stats))


@data_app.command("export")
def export_cmd(
    path: Path = typer.Argument(..., help="A dialogue JSONL file."),
    to: str = typer.Option(..., "--to", help="llava (LLaVA conversation JSON) | messages (OpenAI-messages JSONL with images)"),
    output: Path = typer.Option(..., "--output", "-o", help="Output file."),
) -> None:
    """Export dialogue records for other trainers (LLaVA, LLaMA-Factory, ms-swift)."""
    from vmed.data.export import export

    skipped: list[str] = []
    n = export(path, to, output, skipped=skipped)
    typer.echo(f"wrote {n} records to {output}")
    if skipped:
        typer.secho(f"warning: skipped {len(skipped)} lines that are not valid records (first: {skipped[0]})",
                    fg=typer.colors.YELLOW, err=True)
