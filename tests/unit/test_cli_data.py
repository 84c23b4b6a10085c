"""``vmed data phantom`` and ``vmed data validate``: output, every injected fault with its line, exit codes."""

from __future__ import annotations

import json

import pytest

from vmed.cli import main
from vmed.cli.data import DEFAULT_KINDS_OPTION, parse_kinds
from vmed.data.phantom import ALL_KINDS, DEFAULT_KINDS
from vmed.data.schema import read_jsonl


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("phantoms")
    assert main(["data", "phantom", "--output", str(out), "--n", "20", "--seed", "4", "--size", "32"]) == 0
    return out


def test_phantom_command_writes_and_reports(tmp_path, capsys):
    code = main(["data", "phantom", "-o", str(tmp_path), "--n", "12", "--seed", "2", "--size", "32", "--split", "0.5,0.25,0.25",
                 "--kinds", "presence,count"])
    out = capsys.readouterr().out
    assert code == 0
    assert len(list((tmp_path / "images").glob("*.png"))) == 12
    for split, n in (("train", 6), ("validation", 3), ("test", 3)):
        path = tmp_path / f"{split}.jsonl"
        records = read_jsonl(path)
        assert len(records) == n
        assert f"{path}: {n} records" in out
        assert {t.question_type for r in records for t in r.turns} <= {"PRES", "COUNT"}


def test_kinds_option_default_matches_the_library():
    assert parse_kinds(DEFAULT_KINDS_OPTION) == DEFAULT_KINDS
    assert parse_kinds("all") == ALL_KINDS


@pytest.mark.parametrize(
    "args",
    [["--split", "0.8,0.1"], ["--split", "0.8,0.3,0.1"], ["--kinds", "colour"], ["--size", "8"]],
)
def test_phantom_command_rejects_bad_options(tmp_path, capsys, args):
    code = main(["data", "phantom", "-o", str(tmp_path), "--n", "5", *args])
    assert code == 2
    assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "train.jsonl").exists()


def test_validate_clean_file(phantom_dir, capsys):
    code = main(["data", "validate", str(phantom_dir / "train.jsonl")])
    out = capsys.readouterr().out
    assert code == 0
    assert out.strip().splitlines() == [f"{phantom_dir / 'train.jsonl'}: 16 record(s), OK"]


def _corrupt(phantom_dir):
    """Copy the phantom train split beside its images with one fault on each of lines 2-7."""
    rows = [json.loads(line) for line in (phantom_dir / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    rows[1].pop("turns")  # line 2: missing field
    rows[2]["turns"][0]["answer_type"] = "boolean"  # line 3: bad answer_type
    rows[3]["image"] = "images/not-there.png"  # line 4: missing image file
    rows[4]["turns"][-1]["answer"] = ""  # line 5: empty answer
    rows[5]["id"] = rows[0]["id"]  # line 6: duplicate id
    lines = [json.dumps(r) for r in rows]
    lines[6] = '{"id": "broken", "turns": ['  # line 7: invalid JSON
    path = phantom_dir / "corrupt.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_validate_reports_each_injected_fault_with_its_line(phantom_dir, capsys):
    path = _corrupt(phantom_dir)
    code = main(["data", "validate", str(path)])
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    problems, summary = out[:-1], out[-1]
    expected = [
        (2, "turns:"),
        (3, "turns[0].answer_type:"),
        (4, "image:"),
        (5, "answer:"),
        (6, "id:"),
        (7, "<json>:"),
    ]
    assert len(problems) == len(expected)
    for (line, field), text in zip(expected, problems):
        assert text.startswith(f"{path}:{line}: "), text
        assert field in text, text
    assert "not-there.png" in problems[2] and "duplicate" in problems[4]
    assert summary == f"{path}: 16 record(s), 6 problem(s) on 6 line(s)"


def test_validate_without_image_check(phantom_dir, capsys):
    path = _corrupt(phantom_dir)
    code = main(["data", "validate", str(path), "--no-check-images"])
    out = capsys.readouterr().out
    assert code == 1
    assert "not-there.png" not in out and "5 problem(s)" in out


def test_validate_missing_file_is_a_one_line_error(tmp_path, capsys):
    code = main(["data", "validate", str(tmp_path / "absent.jsonl")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [f"error: {tmp_path / 'absent.jsonl'}: no such file"]


def test_validate_directory_and_binary_file_are_user_errors(tmp_path, capsys):
    assert main(["data", "validate", str(tmp_path)]) == 2
    binary = tmp_path / "x.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    assert main(["data", "validate", str(binary)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "UTF-8" in err
