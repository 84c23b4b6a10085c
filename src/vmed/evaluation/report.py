"""report.md: the human-readable face of metrics.json.

Sections: the rule-set table (each headline number under LLaVA-Med's, MedEvalKit's and vmed's strict rules,
with 95% intervals, so numbers are never compared across protocols by accident), provenance (the exact
commands, model and data sha256), the headline table with 95% intervals and each key's text rule, notes (what was skipped and why), per-answer-type / per-question-type / per-turn tables, the turn-index
plot with the paired "later turns minus turn 0" difference, and the five worst-scoring dialogues with
their predictions. :func:`write_report` writes the markdown and the PNG plots it references.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from vmed.evaluation.plots import TURN_METRICS, plot_question_types, plot_turn_accuracy

__all__ = ["write_report", "render_report", "format_metric", "format_number", "TURN_PLOT", "TYPE_PLOT"]

TURN_PLOT = "turn_accuracy.png"
TYPE_PLOT = "question_type.png"

_TYPE_TABLE_KEYS = ("closed_accuracy_strict", "closed_accuracy_llava_med", "closed_accuracy_medevalkit",
                    "open_recall_llava_med", "open_token_f1", "vqa_med_2019_accuracy")  # fmt: skip


def _num(x: float | None, sign: str = "") -> str:
    """4 decimals; values closer to 0 than 0.001 (but not 0) in scientific notation, so they do not read as 0."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:{sign}.4f}" if x == 0 or abs(x) >= 1e-3 else f"{x:{sign}.1e}"


def format_number(x: float | None, signed: bool = False) -> str:
    """How every number of the report and of ``vmed eval compare`` is printed."""
    return _num(x, "+" if signed else "")


def format_metric(m: dict | None) -> str:
    """``0.7500 [0.6100, 0.8800]`` (value and 95% interval), or ``—``."""
    if not m:
        return "—"
    ci = m.get("ci95")
    return f"{_num(m['value'])} [{_num(ci[0])}, {_num(ci[1])}]" if ci else _num(m["value"])


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _provenance(doc: dict) -> list[str]:
    lines = ["## Provenance", ""]
    pred = doc.get("predictions", {})
    lines.append(f"- predictions: `{pred.get('path', '?')}` (sha256 `{pred.get('sha256', '?')}`)")
    run = doc.get("run")
    if run:
        lines.append(f"- run command: `{run.get('command', '?')}`")
        model = run.get("model") or {}
        if "endpoint" in model:  # vmed eval run --endpoint
            lines.append(f"- model: `{model.get('served_model')}` served at `{model['endpoint']}`")
        else:
            lines.append(f"- model: `{model.get('path', '?')}` (sha256 `{model.get('sha256', '?')}`, over {model.get('files', '?')} files)")
        data = run.get("data") or {}
        lines.append(f"- data: `{data.get('path', '?')}` (sha256 `{data.get('sha256', '?')}`)")
        lines.append(
            f"- mode `{run.get('mode')}`, history `{run.get('history')}`, max_new_tokens {run.get('max_new_tokens')}, "
            f"greedy, seed {run.get('seed')}, batch size {run.get('batch_size')}, summary prompt {run.get('summary_prompt')!r}"
        )
        sk = run.get("skipped", [])
        lines.append(
            f"- dialogues answered: {run.get('dialogues_done', '?')}; skipped: {len(sk)}; without a summary (no summary row): "
            f"{run.get('dialogues_without_summary', '?')}"
        )
        for s in sk[:20]:
            lines.append(f"  - skipped `{s['id']}`: {_cell(s['reason'], 200)}")
        lines.append("- start and end times: run_info.json beside the predictions")
    else:
        lines.append("- run: no run_info.json beside the predictions (scored a file from elsewhere)")
    if doc.get("score_command"):
        lines.append(f"- score command: `{doc['score_command']}`")
    c = doc["counts"]
    lines.append(f"- rows: {c['rows']} in {c['dialogues']} dialogues ({', '.join(f'{k} {v}' for k, v in c['by_answer_type'].items())})")
    b = doc["bootstrap"]
    lines.append(
        f"- intervals: {int(b['confidence'] * 100)}% percentile bootstrap, {b['n_resamples']} resamples, seed {b['seed']}, "
        f"resampling whole dialogues"
    )
    return lines + [""]


_RULE_SET_NAMES = {"llava_med": "LLaVA-Med", "medevalkit": "MedEvalKit", "strict": "strict (vmed)"}


def _rule_sets(doc: dict) -> list[str]:
    """The leading table: one row per quantity, one column per rule set, each cell its key's value and CI."""
    table = doc.get("rule_sets")
    if not table:
        return []
    cols = table["columns"]
    lines = ["## By rule set", "",
             "The same predictions under each protocol's rules (value [95% CI], key). Compare a number only with "
             "numbers of the same column.", "",
             "| quantity | " + " | ".join(_RULE_SET_NAMES.get(c, c) for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]  # fmt: skip
    for row in table["rows"]:
        cells = []
        for c in cols:
            key = row["keys"].get(c)
            m = doc["metrics"].get(key) if key else None
            cells.append("not defined by this protocol" if key is None else f"{format_metric(m)} `{key}`")
        lines.append(f"| {row['quantity']} | " + " | ".join(cells) + " |")
    return lines + [""]


def _headline(doc: dict) -> list[str]:
    rules = doc.get("text_rules", {})
    lines = ["## Headline", "", "| metric | value [95% CI] | n | text rule | definition |", "|---|---|---|---|---|"]
    for key in doc["headline"]:
        m = doc["metrics"].get(key)
        if m is None:
            continue
        lines.append(f"| `{key}` | {format_metric(m)} | {m['n']} | `{rules.get(key, '?')}` | {_cell(doc['definitions'][key], 120)} |")
    meteor = doc["metrics"].get("summary_meteor_corpus")
    if meteor:
        lines.append(f"| `summary_meteor_corpus` | {_num(meteor['value'])} (no interval) | {meteor['n']} | "
                     f"`{rules.get('summary_meteor_corpus', '?')}` | {doc['definitions']['summary_meteor_corpus']} |")  # fmt: skip
    lines.append("")
    used = [r for r in doc.get("text_rule_definitions", {}) if r in set(rules.values())]
    if used:
        lines += ["Text rules (how text is processed before each metric):", ""]
        lines += [f"- `{r}`: {doc['text_rule_definitions'][r]}" for r in used] + [""]
    if doc.get("notes"):
        lines += ["Notes:", ""] + [f"- {n}" for n in doc["notes"]] + [""]
    return lines


def _by_answer_type(doc: dict) -> list[str]:
    lines = ["## By answer type", ""]
    rules = doc.get("text_rules", {})
    for at, metrics in doc.get("by_answer_type", {}).items():
        lines += [f"### {at}", "", "| metric | value [95% CI] | n | text rule |", "|---|---|---|---|"]
        for key, m in metrics.items():
            lines.append(f"| `{key}` | {format_metric(m)} | {m['n']} | `{rules.get(key, '?')}` |")
        lines.append("")
    return lines


def _table(groups: dict[str, dict], label: str, keys: tuple[str, ...]) -> list[str]:
    keys = tuple(k for k in keys if any(k in g for g in groups.values()))
    lines = [f"| {label} | " + " | ".join(f"`{k}`" for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, metrics in groups.items():
        if not any(k in metrics for k in keys):
            continue
        cells = [f"{format_metric(metrics[k])} (n={metrics[k]['n']})" if k in metrics else "—" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines + [""]


def _turn_section(doc: dict, plot_name: str | None) -> list[str]:
    lines = ["## By turn index (does the dialogue context help or hurt?)", ""]
    if plot_name:
        lines += [f"![score by turn index]({plot_name})", ""]
    by_turn = doc.get("by_turn", {})
    if by_turn:
        lines += _table(by_turn, "turn", TURN_METRICS)
    mode = (doc.get("run") or {}).get("mode")
    if doc.get("context_effect") and mode != "dialogue":
        lines.append(
            f"Mode: {mode or 'unknown'}. Without dialogue context a difference between turns reflects which questions "
            "are asked at each position, not the effect of context."
        )
        lines.append("")
    for key, d in doc.get("context_effect", {}).items():
        ci = d["ci95"]
        verdict = "interval excludes 0" if d["excludes_zero"] else "interval includes 0: no clear effect"
        lines.append(
            f"- `{key}`, later turns minus turn 0: {_num(d['diff'])} "
            f"[{_num(ci[0]) if ci else '—'}, {_num(ci[1]) if ci else '—'}] ({verdict}; paired over dialogues)"
        )
    return lines + [""]


def _worst(doc: dict) -> list[str]:
    lines = ["## The five worst-scoring dialogues", "",
             "Score: mean over the dialogue's rows of closed_accuracy_strict (closed), open_token_f1 (open) and "
             "ROUGE-L F1 (summary).", ""]  # fmt: skip
    for d in doc.get("worst_dialogues", []):
        lines += [f"### `{d['id']}` — score {_num(d['score'])}", "", "| turn | type | question | reference | prediction | score |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        for r in d["rows"]:
            primary = {"closed": "closed_accuracy_strict", "open": "open_token_f1", "summary": "summary_rouge_l_f1_sentence_mean"}
            s = r["scores"].get(primary[r["answer_type"]])
            lines.append(
                f"| {r['turn']} | {r['answer_type']} | {_cell(r['question'])} | {_cell(r['reference'])} | "
                f"{_cell(r['prediction'])} | {_num(s)} |"
            )
        lines.append("")
    return lines


def render_report(doc: dict, turn_plot: str | None, type_plot: str | None) -> str:
    """The markdown text of report.md for a metrics document."""
    lines = ["# vmed evaluation report", ""]
    lines += _rule_sets(doc)
    lines += _provenance(doc)
    lines += _headline(doc)
    lines += _by_answer_type(doc)
    lines += ["## By question type", ""]
    if type_plot:
        lines += [f"![score by question type]({type_plot})", ""]
    lines += _table(doc.get("by_question_type", {}), "question type", _TYPE_TABLE_KEYS)
    lines += _turn_section(doc, turn_plot)
    lines += _worst(doc)
    lines += ["## Files", "", "- `metrics.json`: every number above, with definitions", "- `row_scores.jsonl`: each row's value under every rule",
              f"- plots: {', '.join(p for p in (turn_plot, type_plot) if p) or 'none'}", ""]  # fmt: skip
    return "\n".join(lines)


def write_report(doc: dict, output_dir: str | os.PathLike) -> Path:
    """Write report.md and its PNG plots into ``output_dir``; return the report path."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    turn = plot_turn_accuracy(doc.get("by_turn", {}), out / TURN_PLOT)
    types = plot_question_types(doc.get("by_question_type", {}), out / TYPE_PLOT)
    path = out / "report.md"
    path.write_text(render_report(doc, turn.name if turn else None, types.name if types else None), encoding="utf-8")
    return path
