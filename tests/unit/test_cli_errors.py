"""The CLI's error boundary: one ``error:`` line, exit 2 for the user's input, 1 for vmed's bugs, tracebacks only with --debug."""

from __future__ import annotations

import json

import pytest
from _fixtures_data import build_vqa_rad_mevf

import vmed.data.stats
from vmed.cli import main
from vmed.data.build import convert


def _one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture()
def converted(tmp_path):
    out = tmp_path / "out"
    convert("vqa-rad", build_vqa_rad_mevf(tmp_path / "vqa-rad"), out, progress=False)
    return out


def test_usage_errors_are_one_line_exit_2(capsys):
    assert main(["data", "convert", "--bogus"]) == 2
    assert _one_error_line(capsys.readouterr().err) == "error: No such option: --bogus (see 'vmed data convert --help')"
    assert main(["data", "convert", "-f", "vqa-rad", "-i", "x", "-o", "y", "--validation-fraction", "half"]) == 2
    assert "Invalid value for '--validation-fraction'" in _one_error_line(capsys.readouterr().err)
    assert main(["data"]) == 2  # a group without a command prints its help
    assert "convert" in capsys.readouterr().out


def test_input_level_faults_of_convert(tmp_path, capsys):
    root = build_vqa_rad_mevf(tmp_path / "vqa-rad")
    (tmp_path / "file").write_text("x")
    args = ["data", "convert", "-f", "vqa-rad", "-i", str(root), "-q"]
    assert main([*args, "-o", str(tmp_path / "file")]) == 2
    assert "is a file; give a folder" in _one_error_line(capsys.readouterr().err)
    assert main([*args, "-o", str(tmp_path / "o"), "--validation-fraction", "1.5"]) == 2
    assert "--validation-fraction 1.5" in _one_error_line(capsys.readouterr().err)
    (root / "trainset.json").write_bytes(b"\xff\xfe[\x00]\x00")
    assert main([*args, "-o", str(tmp_path / "o")]) == 2
    assert "UTF-16 text; save it as UTF-8" in _one_error_line(capsys.readouterr().err)
    (root / "trainset.json").write_text("not json at all")
    assert main([*args, "-o", str(tmp_path / "o")]) == 2
    assert "trainset.json: not valid JSON" in _one_error_line(capsys.readouterr().err)


def test_convert_prints_where_the_first_bad_row_is(tmp_path, capsys):
    root = build_vqa_rad_mevf(tmp_path / "vqa-rad")
    rows = json.loads((root / "trainset.json").read_text())
    rows[1] = 12
    (root / "trainset.json").write_text(json.dumps(rows))
    assert main(["data", "convert", "-f", "vqa-rad", "-i", str(root), "-o", str(tmp_path / "o"), "-q",
                 "--validation-fraction", "0"]) == 0
    out = capsys.readouterr().out
    assert "skipped: bad_row 1, duplicate 1" in out
    assert f"  bad_row: first at {root / 'trainset.json'}, row 1: expected an object" in out
    assert not (tmp_path / "o" / "validation.jsonl").exists()


def test_stats_and_export_on_a_file_with_one_bad_record(converted, tmp_path, capsys):
    src = converted / "train.jsonl"
    lines = src.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(("\n".join([lines[0], '{"id": "x", "turns": "nope"}', lines[1]]) + "\n").encode() + b'{"id": "\xe9"}\n')
    assert main(["data", "stats", str(bad)]) == 2
    assert _one_error_line(capsys.readouterr().err).startswith(f"error: {bad}:2: field 'turns' must be a list")
    out = tmp_path / "exp.json"
    assert main(["data", "export", str(bad), "--to", "llava", "-o", str(out)]) == 0
    captured = capsys.readouterr()
    assert "wrote 2 records" in captured.out
    assert f"warning: skipped 2 lines that are not valid records (first: {bad}:2: field 'turns'" in captured.err
    assert [r["id"] for r in json.loads(out.read_text())] == [json.loads(line)["id"] for line in lines[:2]]
    junk = tmp_path / "junk.jsonl"
    junk.write_text("1\n2\n")
    assert main(["data", "export", str(junk), "--to", "messages", "-o", str(tmp_path / "j.jsonl")]) == 2
    assert "not one of the 2 lines" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "j.jsonl").exists()


def test_library_errors_on_user_paths_are_exit_2(converted, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["data", "export", str(converted / "train.jsonl"), "--to", "llava", "-o", str(tmp_path / "f" / "x.json")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(tmp_path / "f") in line and ("Not a directory" in line or "File exists" in line)
    assert main(["data", "export", str(converted / "train.jsonl"), "--to", "llava", "-o", str(tmp_path)]) == 2
    assert "is a folder; give a file name" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("exc, code, text", [
    (ZeroDivisionError("division by zero"), 1, "internal error: ZeroDivisionError: division by zero. This is a bug in vmed; "
                                               "rerun with 'vmed --debug ...'"),
    (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"), 2, "not UTF-8 text (invalid start byte at byte 0)"),
    (json.JSONDecodeError("Expecting value", "x", 0), 2, "not valid JSON: Expecting value at line 1, column 1"),
    (PermissionError(13, "Permission denied", "/data/x.jsonl"), 2, "error: /data/x.jsonl: Permission denied"),
])
def test_boundary_maps_by_type(monkeypatch, converted, capsys, exc, code, text):
    def boom(*a, **k):
        raise exc

    monkeypatch.setattr(vmed.data.stats, "compute_stats", boom)
    assert main(["data", "stats", str(converted)]) == code
    assert text in _one_error_line(capsys.readouterr().err)


def test_yaml_errors_are_input_and_debug_shows_the_traceback(monkeypatch, converted, capsys):
    import yaml

    def bad_yaml(*a, **k):
        return yaml.safe_load("a: [1, 2")

    monkeypatch.setattr(vmed.data.stats, "compute_stats", bad_yaml)
    assert main(["data", "stats", str(converted)]) == 2
    assert "not valid YAML" in _one_error_line(capsys.readouterr().err)
    monkeypatch.setattr(vmed.data.stats, "compute_stats", lambda *a, **k: 1 / 0)
    assert main(["--debug", "data", "stats", str(converted)]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ZeroDivisionError" in err
    assert err.strip().splitlines()[-1].startswith("error: internal error: ZeroDivisionError")
    assert main(["data", "stats", str(converted)]) == 1  # --debug does not stick to the next call
    assert "Traceback" not in capsys.readouterr().err
