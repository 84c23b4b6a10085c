"""``vmed.demo.passive_omp_waiting``: OpenMP's idle threads sleep in the demo, unless torch was loaded first."""

from __future__ import annotations

import os
import subprocess
import sys

CODE = """
import os, sys
{pre}
from vmed.demo import passive_omp_waiting
print(passive_omp_waiting(), os.environ.get("OMP_WAIT_POLICY"))
"""


def _run(pre: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", CODE.format(pre=pre)], capture_output=True, text=True,
                         env={**clean, **env}, timeout=120, check=True)
    return out.stdout.strip()


def test_set_before_torch_loads():
    assert _run("") == "True PASSIVE"


def test_too_late_once_torch_is_loaded_so_the_demo_keeps_one_thread():
    assert _run("import torch") == "False None"


def test_a_users_own_policy_is_kept():
    assert _run("", OMP_WAIT_POLICY="ACTIVE") == "False ACTIVE"
    assert _run("import torch", OMP_WAIT_POLICY="passive") == "True passive"
