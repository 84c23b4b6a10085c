"""``vmed data phantom`` and ``vmed data validate``: synthetic phantom datasets and record checks.

Adds its commands to ``vmed.cli._apps.data_app`` (``convert``/``stats``/``export`` live in
``vmed.cli.convert``). Heavy imports stay inside the commands so that ``vmed --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from vmed.cli._apps import data_app
from vmed.errors import UserInputError

# lazy: keeps vmed --help fast (each command imports what it runs inside its function)
__all__ = ["phantom", "validate", "parse_split", "parse_kinds"]

DEFAULT_KINDS_OPTION = "modality,presence,count,side"
"""``vmed.data.phantom.DEFAULT_KINDS`` as the option text (kept literal so ``--help`` imports no numpy)."""


def parse_split(text: str) -> tuple[float, float, float]:
    """Parse ``"0.8,0.1,0.1"`` into three fractions (train, validation, test) that sum to 1."""
    parts = [p.strip() for p in text.split(",")]
    try:
        if len(parts) != 3:
            raise ValueError
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise UserInputError(f"--split expects TRAIN,VALIDATION,TEST fractions (e.g. 0.8,0.1,0.1), got {text!r}") from None
    if any(v < 0 for v in values) or abs(sum(values) - 1.0) > 1e-6:
        raise UserInputError(f"--split {text!r}: the three fractions must be non-negative and sum to 1")
    return values  # type: ignore[return-value]


def parse_kinds(text: str) -> tuple[str, ...]:
    """Parse ``"modality,presence"`` (or ``"all"``) into question-kind names."""
    from vmed.data.phantom import ALL_KINDS

    if text.strip() == "all":
        return ALL_KINDS
    return tuple(k.strip() for k in text.split(",") if k.strip())


@data_app.command("phantom")
def phantom(
    output: Path = typer.Option(..., "--output", "-o", help="Folder to write images/ and train/validation/test.jsonl into."),
    n: int = typer.Option(1000, "--n", min=1, help="Number of phantoms (records) in all splits together."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives byte-identical files."),
    size: int = typer.Option(64, "--size", min=16, max=1024, help="Image side in pixels (the tiny model uses 32 or 64)."),
    split: str = typer.Option("0.8,0.1,0.1", "--split", help="TRAIN,VALIDATION,TEST fractions, summing to 1."),
    kinds: str = typer.Option(
        DEFAULT_KINDS_OPTION,
        "--kinds",
        help="Comma-separated question kinds to ask, or 'all': modality, organ, presence, count, side, size, brightness.",
    ),
) -> None:
    """Write synthetic medical-like images with known findings and their balanced dialogue records."""
    from vmed.data.phantom import generate_phantoms
    from vmed.data.schema import read_jsonl

    paths = generate_phantoms(output, n, seed=seed, split=parse_split(split), size=size, question_kinds=parse_kinds(kinds))
    typer.echo(f"wrote {n} phantom images ({size}x{size} PNG) to {output / 'images'}")
    for name, path in paths.items():
        records = read_jsonl(path)
        turns = sum(len(r.turns) for r in records)
        typer.echo(f"wrote {path}: {len(records)} records, {turns} turns")


@data_app.command("validate")
def validate(
    file: Path = typer.Argument(..., help="Dialogue JSONL file to check."),
    check_images: bool = typer.Option(True, "--check-images/--no-check-images", help="Also check that every image file exists."),
) -> None:
    """Check every record of a dialogue JSONL file; print each problem with its line number.

    Exit code 0 when the file is clean, 1 when there are problems, 2 when the file cannot be read.
    """
    from vmed.data.schema import validate_file

    if not file.exists():
        raise UserInputError(f"{file}: no such file")
    if not file.is_file():
        raise UserInputError(f"{file}: not a file (give a .jsonl file)")
    try:
        n, problems = validate_file(file, check_images=check_images)
    except UnicodeDecodeError as e:
        raise UserInputError(f"{file}: not UTF-8 text (byte {e.start}); a dialogue file is UTF-8 JSON lines") from None
    except OSError as e:
        raise UserInputError(f"{file}: cannot read ({e.strerror or type(e).__name__})") from None
    for p in problems:
        typer.echo(f"{file}:{p.line}: {p.field}: {p.message}")
    lines = len({p.line for p in problems})
    status = "OK" if not problems else f"{len(problems)} problem(s) on {lines} line(s)"
    typer.echo(f"{file}: {n} record(s), {status}")
    if problems:
        raise typer.Exit(1)
