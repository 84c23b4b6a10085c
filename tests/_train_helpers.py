"""Builders shared by the training integration tests (``test_resume.py``, ``test_distributed.py``).

``tests/conftest.py`` puts ``tests/`` on ``sys.path``, so test modules import these as ``_train_helpers``.
"""

from __future__ import annotations

from pathlib import Path


def phantoms_and_stage1(tmp: Path, n: int = 24) -> Path:
    """``n`` phantoms in ``tmp/ph`` and a 1-step stage-1 run in ``tmp/stage1`` (the parent of a stage-2 test run)."""
    from vmed.config import load_config
    from vmed.data.phantom import generate_phantoms
    from vmed.training.stages import run_stage

    generate_phantoms(tmp / "ph", n, seed=0)
    run_stage(load_config(None, [
        "stage=1", "model.preset=tiny", f"output_dir={tmp / 'stage1'}", f"data.train={tmp / 'ph' / 'train.jsonl'}",
        "data.records=describe", "data.max_length=256", "optim.batch_size=4", "optim.max_steps=1",
        "runtime.save_steps=0", "runtime.progress_bar=false", "runtime.report_to=none",
    ]))
    return tmp / "stage1"
