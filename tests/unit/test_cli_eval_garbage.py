"""Garbage into the evaluation commands (`vmed eval run/score/compare`): one `error:` line, exit 2, no traceback."""

from __future__ import annotations

import pytest

from vmed.cli import main


@pytest.fixture
def garbage(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_bytes(b'{"id": 1}\n\xff\xfe not json <|eot_id|>\n')
    (tmp_path / "empty-dir").mkdir()
    return tmp_path


CASES = {
    "endpoint not a URL": ["eval", "run", "--endpoint", "notaurl", "--data", "{d}/g.jsonl", "--output", "{d}/o1"],
    "concurrency 0": ["eval", "run", "--endpoint", "http://127.0.0.1:9", "--data", "{d}/g.jsonl", "--output", "{d}/o2",
                      "--concurrency", "0"],
    "model dir without a model": ["eval", "run", "--model", "{d}/empty-dir", "--data", "{d}/g.jsonl", "--output", "{d}/o3"],
    "score a non-predictions file": ["eval", "score", "{d}/g.jsonl", "--output", "{d}/o4"],
    "compare folders without runs": ["eval", "compare", "{d}/empty-dir", "{d}/g.jsonl"],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_eval_commands_turn_garbage_into_one_error_line(name, garbage, capsys):
    args = [a.format(d=garbage) for a in CASES[name]]
    code = main(args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("[")]
    assert code == 2, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error:"), err
