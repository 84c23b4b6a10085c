"""vmed.evaluation: turn-by-turn evaluation, metrics with their sources, reports and comparisons.

* ``runner.run_eval(engine, data_path, output_dir, mode="dialogue"|"single", history="model"|"gold", ...)``
  writes predictions.jsonl (resumable) and run_info.json.
* ``pipeline.score_file(predictions, output_dir)`` writes metrics.json, row_scores.jsonl, report.md and plots.
* ``compare.compare_dirs(a, b)`` gives per-metric differences with paired bootstrap intervals.
* ``metrics.*``: the rules as pure functions (``normalize``, ``closed``, ``open``, ``medevalkit``,
  ``coco``, ``captions``, ``bootstrap``); ``registry``: every metrics.json key with its text rule and rule set.

See docs/evaluation.md.
"""

from vmed.evaluation.compare import compare_dirs, format_comparison
from vmed.evaluation.pipeline import score_file
from vmed.evaluation.predictions import PredictionRow, read_predictions
from vmed.evaluation.report import write_report
from vmed.evaluation.runner import run_eval
from vmed.evaluation.scoring import METRICS, ScoreOptions, score_rows

__all__ = [
    "run_eval",
    "score_file",
    "score_rows",
    "ScoreOptions",
    "METRICS",
    "write_report",
    "compare_dirs",
    "format_comparison",
    "PredictionRow",
    "read_predictions",
]
