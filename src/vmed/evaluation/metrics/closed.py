"""Closed-question (yes/no or choice) correctness rules. Each returns 1.0 (correct) or 0.0.

The rules disagree on purpose and are all reported, because published numbers use different ones:

* :func:`closed_llava_med` — LLaVA-Med ``llava/eval/run_eval.py`` (microsoft/LLaVA-Med b9a98a7, after the
  #35 fix): both strings lowercased and normalised with ``normalize_word``; if the prediction contains the
  *substring* "yes" or "no", it is correct when the reference is a substring of the prediction; otherwise
  it is wrong. Quirks kept: substring tests ("no" is in "nodule" and "not"; "yes" in "eyes"), a prediction
  holding both "yes" and "no" is correct for either reference, and a correct non-yes/no choice answer
  ("axial" for "axial") scores 0 unless the text happens to contain "yes" or "no".
* :func:`closed_strict` — vmed's rule: the normalised prediction equals the normalised reference.
* MedEvalKit's closed rule is :func:`vmed.evaluation.metrics.medevalkit.closed_medevalkit`.
"""

from __future__ import annotations

from vmed.evaluation.metrics.normalize import normalize_llava_med

__all__ = ["closed_llava_med", "closed_strict"]


def closed_llava_med(prediction: str, reference: str) -> float:
    """1.0 if LLaVA-Med's ``run_eval.py`` closed rule counts ``prediction`` correct for ``reference``."""
    pred = normalize_llava_med(str(prediction).lower())
    ref = normalize_llava_med(str(reference).lower())
    if "yes" in pred or "no" in pred:
        return 1.0 if ref in pred else 0.0
    return 0.0


def closed_strict(prediction: str, reference: str) -> float:
    """1.0 if the normalised prediction equals the normalised reference (nothing more, nothing less)."""
    return 1.0 if normalize_llava_med(prediction) == normalize_llava_med(reference) else 0.0
