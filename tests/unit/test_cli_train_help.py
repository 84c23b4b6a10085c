"""``vmed train --help`` shows launcher examples; each ``-m MODULE train`` in it must be a command that runs."""

from __future__ import annotations

import os
import re
import subprocess
import sys


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=120)


def test_train_help_launch_examples_name_a_runnable_module():
    helped = _run("-m", "vmed", "train", "--help")
    assert helped.returncode == 0, helped.stderr
    text = " ".join(helped.stdout.split())
    modules = set(re.findall(r"-m\s+([\w.]+)\s+train\b", text))
    assert "accelerate launch" in text and "torchrun" in text
    assert "--config FILE KEY=VALUE" in text  # the override syntax is shown (a [bracketed] form was eaten as markup)
    assert modules == {"vmed"}, modules  # not vmed.cli, which has no __main__
    for module in modules:  # the example's module form really reaches `vmed train`
        listed = _run("-m", module, "train", "--list-keys")
        assert listed.returncode == 0, listed.stderr[-2000:]
        assert "optim.lr" in listed.stdout
