"""The report's PNG plots (matplotlib, Agg backend, no display needed).

* :func:`plot_turn_accuracy` — metric vs turn index with 95% interval bands, and the number of rows per
  turn underneath: does the dialogue context help or hurt?
* :func:`plot_question_types` — per question type bars with 95% interval whiskers.
"""

from __future__ import annotations

import os
from pathlib import Path

# lazy: matplotlib are imported inside the functions that use them, so importing this module stays light
__all__ = ["TURN_METRICS", "TYPE_METRICS", "plot_turn_accuracy", "plot_question_types"]

TURN_METRICS = (
    "closed_accuracy_strict",
    "closed_accuracy_llava_med",
    "closed_accuracy_medevalkit",
    "open_recall_llava_med",
    "open_token_f1",
)
TYPE_METRICS = ("closed_accuracy_strict", "closed_accuracy_llava_med", "open_recall_llava_med", "open_token_f1")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    # No timestamp goes into a PNG; dropping the "Software" entry also keeps files equal across matplotlib versions.
    fig.savefig(path, dpi=110, metadata={"Software": None})


def plot_turn_accuracy(by_turn: dict[str, dict], path: str | os.PathLike, title: str = "") -> Path | None:
    """Plot ``by_turn`` (turn index -> metrics with ``value``, ``ci95``, ``n``) to ``path``; None if empty."""
    turns = sorted(by_turn, key=int)
    if not turns:
        return None
    plt = _pyplot()
    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(9.5, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    x_all = [int(t) for t in turns]
    keys = [k for k in TURN_METRICS if any(k in by_turn[t] for t in turns)]
    markers = "osD^v"
    for j, key in enumerate(keys):
        pts = [(int(t), by_turn[t][key]) for t in turns if key in by_turn[t]]
        dodge = (j - (len(keys) - 1) / 2) * 0.07  # side by side, so that equal values stay visible
        xs = [p[0] + dodge for p in pts]
        ys = [p[1]["value"] for p in pts]
        lo = [p[1]["value"] - (p[1]["ci95"][0] if p[1]["ci95"] else p[1]["value"]) for p in pts]
        hi = [(p[1]["ci95"][1] if p[1]["ci95"] else p[1]["value"]) - p[1]["value"] for p in pts]
        ax.errorbar(xs, ys, yerr=[lo, hi], marker=markers[j % len(markers)], capsize=3, label=key, linewidth=1.5)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("score (bars: 95% CI)")
    ax.set_title(title or "Score by turn index (0 = first question of the dialogue)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    counts = {"closed": [], "open": []}
    for t in turns:
        m = by_turn[t]
        counts["closed"].append(m.get("closed_accuracy_strict", {}).get("n", 0))
        counts["open"].append(m.get("open_token_f1", {}).get("n", 0))
    ax_n.bar([x - 0.2 for x in x_all], counts["closed"], width=0.4, label="closed")
    ax_n.bar([x + 0.2 for x in x_all], counts["open"], width=0.4, label="open")
    ax_n.set_ylabel("rows")
    ax_n.set_xlabel("turn index")
    ax_n.set_xticks(x_all)
    ax_n.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    out = Path(path)
    _save(fig, out)
    plt.close(fig)
    return out


def plot_question_types(by_question_type: dict[str, dict], path: str | os.PathLike) -> Path | None:
    """Grouped horizontal bars: each question type's :data:`TYPE_METRICS` with 95% whiskers; None if empty."""
    types = [t for t in sorted(by_question_type) if any(k in by_question_type[t] for k in TYPE_METRICS)]
    if not types:
        return None
    plt = _pyplot()
    keys = [k for k in TYPE_METRICS if any(k in by_question_type[t] for t in types)]
    height = 0.8 / max(len(keys), 1)
    fig, ax = plt.subplots(figsize=(9.5, max(3.5, 1.5 + 0.5 * len(types))))
    for j, key in enumerate(keys):
        ys, vals, errs = [], [], [[], []]
        for i, t in enumerate(types):
            m = by_question_type[t].get(key)
            if m is None:
                continue
            ys.append(i + (j - (len(keys) - 1) / 2) * height)
            vals.append(m["value"])
            lo, hi = m["ci95"] if m["ci95"] else (m["value"], m["value"])
            errs[0].append(max(m["value"] - lo, 0.0))
            errs[1].append(max(hi - m["value"], 0.0))
        ax.barh(ys, vals, height=height, xerr=errs, capsize=2, label=key)
    ax.set_yticks(range(len(types)))
    def n_questions(t: str) -> int:
        m = by_question_type[t]
        return m.get("closed_accuracy_strict", {}).get("n", 0) + m.get("open_token_f1", {}).get("n", 0)

    ax.set_yticklabels([f"{t} (n={n_questions(t)})" for t in types])
    ax.invert_yaxis()
    ax.set_xlim(0, 1.05)
    ax.set_xlabel("score (whiskers: 95% CI)")
    ax.set_title("Score by question type")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    out = Path(path)
    _save(fig, out)
    plt.close(fig)
    return out
