"""A leaderboard of any number of evaluation runs (local or endpoint) on the same data: ``vmed eval compare``.

Models are rows. The columns come from the runs' metrics.json, whatever it holds: first each rule set's
headline quantities (metrics.json ``rule_sets``: a quantity per row, a metric key per rule set), then the
other ``headline`` keys. So a rule set or metric added to the scorer shows up here without a change.
Each cell is the run's own value with its 95% interval, as in its report. Below, every run against the
first: the paired bootstrap difference (run - first) with its 95% interval, on the questions both answer
(:func:`vmed.evaluation.compare.compare_statistics`).

Runs whose data differ (run_info.json's sha256 of the JSONL and of its images) are refused, naming them.
A folder without run_info.json (a predictions file from another tool) is accepted when every question it
shares with the others has the same reference.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vmed.errors import UserInputError
from vmed.evaluation.compare import ComparisonRow, compare_statistics, predictions_path
from vmed.evaluation.pipeline import METRICS_FILE, RUN_INFO
from vmed.evaluation.predictions import PredictionRow, read_predictions
from vmed.evaluation.report import format_metric, format_number
from vmed.evaluation.scoring import RowStatistics, ScoreOptions, row_statistics, score_rows

# lazy: matplotlib are imported inside the functions that use them, so importing this module stays light
__all__ = ["Column", "RunEntry", "Leaderboard", "load_run", "build_leaderboard", "write_leaderboard"]

FILES = ("leaderboard.md", "leaderboard.csv", "leaderboard.png")


@dataclass(frozen=True)
class Column:
    """One leaderboard column: a metric key, and the rule set and quantity it stands for (None outside rule sets)."""

    key: str
    quantity: str | None = None
    rule_set: str | None = None

    @property
    def label(self) -> str:
        return f"{self.quantity} [{self.rule_set}]" if self.quantity else self.key


@dataclass
class RunEntry:
    """One run: its folder, display name, metrics document, run settings (None if unknown) and rows."""

    path: Path
    name: str
    doc: dict[str, Any]
    run: dict[str, Any] | None
    rows: list[PredictionRow]
    stats: RowStatistics | None = None

    @property
    def model(self) -> str:
        """What was evaluated, in words: the served model at its endpoint, or the model folder and its hash."""
        m = (self.run or {}).get("model") or {}
        if "endpoint" in m:
            return f"{m.get('served_model')} @ {m['endpoint']}"
        if "path" in m:
            return f"{m['path']} ({str(m.get('sha256', ''))[:12]})"
        return "unknown (no run_info.json)"

    @property
    def protocol(self) -> str:
        run = self.run or {}
        return f"{run.get('mode', '?')}/{run.get('history', '?')}" if run else "?"


@dataclass
class Leaderboard:
    runs: list[RunEntry]
    columns: list[Column]
    differences: list[dict[str, ComparisonRow]] = field(default_factory=list)
    """Per run after the first: metric key -> the comparison with the first run."""
    notes: list[str] = field(default_factory=list)


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserInputError(f"{path}: not valid JSON ({e}); re-run `vmed eval score` on that folder") from None


def load_run(path: str | os.PathLike, options: ScoreOptions, name: str | None = None) -> RunEntry:
    """A run folder (or a predictions.jsonl): its metrics.json (scored in memory when absent) and rows."""
    pred = predictions_path(path)
    rows = read_predictions(pred)
    if not rows:
        raise UserInputError(f"{pred}: no prediction rows")
    doc = _read_json(pred.parent / METRICS_FILE)
    if doc is None:
        doc, _ = score_rows(rows, options)
    run = _read_json(pred.parent / RUN_INFO) or doc.get("run")
    return RunEntry(pred.parent, name or pred.parent.name, doc, run, rows)


def _names(paths: Sequence[Path]) -> list[str]:
    """Folder names, or the paths as given where two folders share a name."""
    names = [p.name if p.is_dir() else p.parent.name for p in paths]
    return [n if names.count(n) == 1 else str(p) for n, p in zip(names, paths)]


def columns_of(docs: Sequence[dict]) -> list[Column]:
    """The rule sets' quantities, then the other headline keys, in the order the documents give them."""
    out: list[Column] = []
    seen: set[str] = set()
    for doc in docs:
        sets = doc.get("rule_sets") or {}
        for row in sets.get("rows", []):
            for rule_set in sets.get("columns", []):
                key = (row.get("keys") or {}).get(rule_set)
                if key and key not in seen:
                    out.append(Column(key, row.get("quantity"), rule_set))
                    seen.add(key)
    for doc in docs:
        for key in doc.get("headline", []):
            if key not in seen:
                out.append(Column(key))
                seen.add(key)
    return out


def check_same_data(runs: Sequence[RunEntry]) -> list[str]:
    """Raise UserInputError when runs were made on different data (naming them); return notes."""
    notes = []
    known = [(r, (r.run or {}).get("data")) for r in runs]
    with_hash = [(r, d) for r, d in known if d and d.get("sha256")]
    if with_hash:
        ref_run, ref = with_hash[0]
        for r, d in with_hash[1:]:
            differs = [k for k in ("sha256", "images_sha256") if d.get(k) != ref.get(k)]
            if differs:
                raise UserInputError(
                    f"runs {ref_run.name!r} and {r.name!r} were evaluated on different data ({' and '.join(differs)} differ: "
                    f"{ref.get('path')} {str(ref.get(differs[0]))[:12]}… vs {d.get('path')} {str(d.get(differs[0]))[:12]}…); "
                    "a leaderboard compares models on the same data file and images"
                )
    unknown = [r for r, d in known if not (d and d.get("sha256"))]
    if unknown:
        refs: dict[tuple[str, int], tuple[str, str]] = {}
        for r in runs:
            for row in r.rows:
                prev = refs.setdefault((row.id, row.turn), (row.reference, r.name))
                if prev[0] != row.reference:
                    raise UserInputError(
                        f"runs {prev[1]!r} and {r.name!r} hold different references for id {row.id!r} turn {row.turn} "
                        "(different data); a leaderboard compares models on the same data"
                    )
        notes.append(f"no data hash for {', '.join(repr(r.name) for r in unknown)} (no run_info.json): "
                     "checked instead that every shared question has the same reference")  # fmt: skip
    if len({len(r.rows) for r in runs}) > 1:
        notes.append("the runs answered different numbers of rows (a --limit, or skipped records): each value is over "
                     "its run's own rows; the differences are paired on the rows both runs answer")  # fmt: skip
    return notes


def build_leaderboard(paths: Sequence[str | os.PathLike], options: ScoreOptions = ScoreOptions()) -> Leaderboard:
    """Load the runs, refuse different data, and compute each run's paired difference against the first."""
    if len(paths) < 2:
        raise UserInputError(f"give at least two runs to compare, got {len(paths)}")
    resolved = [Path(p) for p in paths]
    runs = [load_run(p, options, name) for p, name in zip(resolved, _names(resolved))]
    notes = check_same_data(runs)
    for r in runs:
        r.stats = row_statistics(r.rows, options)
    first = runs[0]
    assert first.stats is not None
    differences = []
    for r in runs[1:]:
        assert r.stats is not None
        differences.append({c.key: c for c in compare_statistics(first.stats, r.stats, options)})
    # a column no run has a value for (BERTScore without --bertscore-model, METEOR without Java) is left out
    columns = [c for c in columns_of([r.doc for r in runs]) if any(_value(r, c.key) for r in runs)]
    return Leaderboard(runs, columns, differences, notes)


def _value(run: RunEntry, key: str) -> dict | None:
    return (run.doc.get("metrics") or {}).get(key)


def _diff_cell(c: ComparisonRow | None) -> str:
    if c is None or c.difference is None:
        return "—"
    d = c.difference
    ci = f" [{format_number(d.ci[0], True)}, {format_number(d.ci[1], True)}]" if d.ci else ""
    text = f"{format_number(d.diff, True)}{ci}"
    return f"**{text}**" if d.excludes_zero else text


def format_markdown(lb: Leaderboard) -> str:
    first = lb.runs[0]
    head = "| model | " + " | ".join(c.label for c in lb.columns) + " |"
    rule = "|---|" + "---|" * len(lb.columns)
    lines = ["# Leaderboard", "",
             "Each cell: the run's value with its 95% bootstrap interval (from its metrics.json). Columns: each rule "
             "set's headline quantities (`quantity [rule set]`), then the other headline metrics; keys below.", "",
             head, rule]  # fmt: skip
    for r in lb.runs:
        lines.append(f"| {r.name} | " + " | ".join(format_metric(_value(r, c.key)) for c in lb.columns) + " |")
    lines += ["", f"## Paired differences against `{first.name}`", "",
              f"Run minus `{first.name}`, paired bootstrap over dialogues on the questions both answer, 95% interval; "
              "**bold**: the interval excludes 0.", "", head, rule]  # fmt: skip
    for r, diffs in zip(lb.runs[1:], lb.differences):
        lines.append(f"| {r.name} | " + " | ".join(_diff_cell(diffs.get(c.key)) for c in lb.columns) + " |")
    lines += ["", "## Runs", "", "| model | what was evaluated | mode/history | rows | folder |", "|---|---|---|---|---|"]
    for r in lb.runs:
        lines.append(f"| {r.name} | {r.model} | {r.protocol} | {len(r.rows)} | `{r.path}` |")
    lines += ["", "## Columns", ""]
    definitions: dict[str, str] = {}
    for r in lb.runs:
        definitions.update({k: v for k, v in (r.doc.get("definitions") or {}).items() if k not in definitions})
    lines += [f"- `{c.label}`: `{c.key}`, {definitions.get(c.key, 'no definition in metrics.json')}" for c in lb.columns]
    if lb.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in lb.notes]
    return "\n".join(lines) + "\n"


CSV_FIELDS = ("model", "key", "quantity", "rule_set", "value", "ci95_low", "ci95_high", "n",
              "diff_vs_first", "diff_ci95_low", "diff_ci95_high", "diff_excludes_zero", "paired", "n_shared")  # fmt: skip


def csv_rows(lb: Leaderboard) -> list[dict[str, Any]]:
    """One row per (model, column), long format."""
    out = []
    for i, r in enumerate(lb.runs):
        diffs = lb.differences[i - 1] if i else {}
        for c in lb.columns:
            m = _value(r, c.key) or {}
            ci = m.get("ci95") or (None, None)
            cmp = diffs.get(c.key)
            d = cmp.difference if cmp is not None else None
            dci = d.ci if d is not None and d.ci else (None, None)
            out.append({
                "model": r.name, "key": c.key, "quantity": c.quantity, "rule_set": c.rule_set,
                "value": m.get("value"), "ci95_low": ci[0], "ci95_high": ci[1], "n": m.get("n"),
                "diff_vs_first": d.diff if d else None, "diff_ci95_low": dci[0], "diff_ci95_high": dci[1],
                "diff_excludes_zero": d.excludes_zero if d else None, "paired": d.paired if d else None,
                "n_shared": cmp.n_shared if cmp is not None and d is not None else None,
            })  # fmt: skip
    return out


def write_leaderboard(lb: Leaderboard, output_dir: str | os.PathLike) -> list[Path]:
    """Write leaderboard.md, leaderboard.csv and leaderboard.png into ``output_dir``; return their paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, csv_path, png = (out / f for f in FILES)
    md.write_text(format_markdown(lb), encoding="utf-8")
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        writer.writerows(csv_rows(lb))
    plot_leaderboard(lb, png)
    return [md, csv_path, png]


def plot_leaderboard(lb: Leaderboard, path: Path) -> None:
    """One panel per column: each model's value with its 95% interval (models top to bottom as in the table)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    cols = lb.columns
    if not cols:
        raise UserInputError("the runs' metrics.json files hold no headline metric to plot; re-score them with `vmed eval score`")
    ncols = min(4, len(cols))
    nrows = -(-len(cols) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 0.5 + (0.45 * len(lb.runs) + 1.1) * nrows), squeeze=False)
    ys = list(range(len(lb.runs)))[::-1]
    for ax, c in zip(axes.flat, cols):
        for y, r in zip(ys, lb.runs):
            m = _value(r, c.key)
            if not m or m.get("value") is None:
                continue
            ci = m.get("ci95")
            err = [[m["value"] - ci[0]], [ci[1] - m["value"]]] if ci else None
            ax.errorbar([m["value"]], [y], xerr=err, fmt="o", capsize=3, color="C0" if y != ys[0] else "C1")
        ax.set_yticks(ys, [r.name for r in lb.runs], fontsize=8)
        ax.set_title(c.label, fontsize=8)
        ax.grid(True, axis="x", alpha=0.3)
    for ax in list(axes.flat)[len(cols):]:
        ax.axis("off")
    fig.suptitle("Leaderboard: value and 95% CI per model (first run in orange)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})  # no timestamp or version: reruns give the same file
    plt.close(fig)
