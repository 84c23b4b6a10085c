"""``vmed chat``: driven through a pipe (a real subprocess) and through the Python API (ChatRepl)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vmed.data.schema import read_jsonl, resolve_image, validate_file
from vmed.inference import Engine, GenParams
from vmed.serve.chat_cli import ChatRepl


@pytest.fixture(scope="module")
def engine() -> Engine:
    from vmed.model import build_preset

    model, processor = build_preset("tiny", seed=0)
    return Engine(model, processor)


@pytest.fixture(scope="module")
def files(tmp_path_factory, engine) -> dict[str, Path]:
    from pydicom.data import get_testdata_file

    from vmed.model import save_model

    root = tmp_path_factory.mktemp("chat")
    png = root / "xray.png"
    Image.fromarray((np.random.RandomState(9).rand(64, 64, 3) * 255).astype("uint8")).save(png)
    broken = root / "broken.png"
    broken.write_bytes(png.read_bytes()[:60])
    return {"root": root, "png": png, "broken": broken, "dicom": Path(get_testdata_file("CT_small.dcm")),
            "model": save_model(engine.model, engine.processor, root / "model")}


def repl(engine: Engine, **kwargs) -> tuple[ChatRepl, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    kwargs.setdefault("params", GenParams(max_new_tokens=6))
    return ChatRepl(engine, out=out, err=err, **kwargs), out, err


def error_lines(err: io.StringIO | str) -> list[str]:
    text = err.getvalue() if isinstance(err, io.StringIO) else err
    return [line for line in text.splitlines() if line.startswith("error:")]


def test_pipe_session_streams_answers_and_saves_a_record(files):
    save = files["root"] / "out" / "chat.jsonl"
    script = "\n".join([
        "What modality is this?", "/nonsense", f"/image {files['root'] / 'missing.png'}", f"/image {files['broken']}",
        "Is there an effusion?", f"/save {save}", "/quit", "This line is never read?",
    ]) + "\n"
    proc = subprocess.run(
        [sys.executable, "-m", "vmed", "chat", "--model", str(files["model"]), "--image", str(files["png"]), "--max-new-tokens", "6"],
        input=script, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    errors = error_lines(proc.stderr)
    assert len(errors) == 3, proc.stderr  # unknown command, missing file, unreadable image: one line each
    assert "unknown command" in errors[0] and "missing.png" in errors[1] and "broken.png" in errors[2]
    assert "you>" not in proc.stdout and "vmed>" not in proc.stdout
    count, problems = validate_file(save)
    assert (count, problems) == (1, [])
    record = read_jsonl(save)[0]
    assert [t.question for t in record.turns] == ["What modality is this?", "Is there an effusion?"]
    assert proc.stdout == "".join(t.answer + "\n" for t in record.turns)  # streamed answers, one per question
    assert resolve_image(record, save) == files["png"].resolve()
    assert record.source == "chat" and record.meta["model"] == str(files["model"])


def test_dialogue_matches_engine_and_reset_starts_fresh(engine, files):
    r, out, err = repl(engine)
    r.set_image(files["png"])
    r.run(["What modality is this?", "Is there an effusion?", "/reset", "What modality is this?"])
    image = r.session.image
    expected = engine.dialogue(image, ["What modality is this?", "Is there an effusion?"], GenParams(max_new_tokens=6))
    answers = [turns for ctx in r.contexts for turns in ctx.turns]
    assert [a for _, a in answers] == [expected[0].text, expected[1].text, expected[0].text]
    assert r.session.turns == [("What modality is this?", expected[0].text)]
    assert error_lines(err) == []


def test_dicom_image_with_preset_starts_a_new_context(engine, files):
    from vmed.imaging import load_image

    r, out, err = repl(engine, preset="lung")
    r.run(["Text-only question?", f"/image {files['dicom']}", "Which organ?", f"/save {files['root'] / 'd.jsonl'}"])
    assert error_lines(err) == []
    windowed = load_image(files["dicom"], preset="lung")
    assert np.array_equal(np.asarray(r.session.image), np.asarray(windowed))
    assert r.session.turns[0][0] == "Which organ?" and len(r.session.turns) == 1
    records = read_jsonl(files["root"] / "d.jsonl")
    assert [rec.image for rec in records] == [None, files["dicom"].resolve().as_posix()]
    assert records[1].meta["window"] == "lung"


def test_each_error_is_one_line_and_the_chat_goes_on(engine, files, tmp_path):
    r, out, err = repl(engine)
    r.run(["/image", "/save", f"/save {tmp_path}", "/save x.jsonl", "/frobnicate", "A question?", "/help"])
    errors = error_lines(err)
    assert len(errors) == 5, err.getvalue()
    assert "needs a file name" in errors[0] and "needs a file name" in errors[1]
    assert "directory" in errors[2] and "nothing to save" in errors[3] and "unknown command" in errors[4]
    assert len(r.session.turns) == 1 and out.getvalue().count("\n") >= 1
    assert "/image PATH" in err.getvalue()  # the help text


def test_context_overflow_is_reported_and_reset_recovers(engine):
    n = len(engine.prompt_ids(None, [], "Q?"))
    r, out, err = repl(engine, params=GenParams(max_new_tokens=engine.context_length - n - 2))
    r.session.ask("Q?", GenParams(max_new_tokens=2))
    r.run(["A follow-up question that no longer fits?", "/reset"])
    errors = error_lines(err)
    assert len(errors) == 1 and str(engine.context_length) in errors[0]
    assert r.session.turns == []


def test_quit_stops_reading(engine):
    r, out, err = repl(engine)
    assert r.run(["/quit", "Never asked?"]) == 0
    assert out.getvalue() == "" and r.session.turns == []


def test_bad_flags_exit_2_before_loading(files, capsys):
    from vmed.cli import main

    assert main(["chat", "--model", str(files["model"]), "--preset", "foo"]) == 2
    assert main(["chat", "--model", str(files["model"]), "--window", "40"]) == 2
    assert main(["chat", "--model", str(files["root"] / "nope")]) == 2
    err = capsys.readouterr().err
    assert "--preset 'foo'" in err and "--window" in err and "does not exist" in err


def test_non_utf8_input_line_is_one_error_and_the_chat_goes_on(files):
    proc = subprocess.run(
        [sys.executable, "-m", "vmed", "chat", "--model", str(files["model"]), "--max-new-tokens", "3"],
        input=b"\xff x\nWhat is it?\n\xc3\x28 y\n", capture_output=True, timeout=300,
    )
    stderr = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0, stderr
    errors = error_lines(stderr)
    assert len(errors) == 2 and "line 1" in errors[0] and "0xff" in errors[0] and "line 3" in errors[1], stderr
    assert "Traceback" not in stderr
    assert proc.stdout.decode().count("\n") == 1  # the one valid question was answered


def test_surrogates_and_image_placeholders_in_questions_are_one_error_line(engine, files):
    r, out, err = repl(engine)
    r.set_image(files["png"])
    r.run(["bad \udcff byte", "lone \ud800 surrogate", "<image> What is it?", "Is it normal?"])
    errors = error_lines(err)
    assert len(errors) >= 2 and "0xff" in errors[0] and "U+D800" in errors[1], err.getvalue()
    assert r.session.turns[-1][0] == "Is it normal?"


def test_bad_image_file_is_an_in_chat_error_and_the_session_goes_on(engine, files, tmp_path):
    """Unreadable images (plain text, a truncated PNG, a DICOM with an unknown transfer syntax) print one line each.

    The DICOM case needs vmed.imaging to raise ImageError for every decoder failure (the lead's change)."""
    import pydicom

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    ds = pydicom.dcmread(files["dicom"])
    ds.file_meta.TransferSyntaxUID = "1.2.3.4.5"
    odd = tmp_path / "odd.dcm"
    ds.save_as(odd)
    r, out, err = repl(engine)
    r.set_image(files["png"])
    r.run([f"/image {text}", f"/image {files['broken']}", f"/image {odd}", "Still there?"])
    errors = error_lines(err)
    assert len(errors) == 3, err.getvalue()
    assert "notes.png" in errors[0] and "broken.png" in errors[1] and "odd.dcm" in errors[2]
    assert r.session.turns == [("Still there?", r.contexts[-1].turns[0][1])]


@pytest.mark.parametrize("flags, words", [
    (["--temperature", "inf"], "temperature"), (["--temperature", "-1"], "temperature"), (["--temperature", "nan"], "temperature"),
    (["--seed", str(2**64)], "seed"), (["--seed", str(-(2**63) - 1)], "seed"), (["--top-p", "5"], "top_p"),
    (["--max-new-tokens", "0"], "max_new_tokens"),
])
def test_absurd_sampling_flags_exit_2_with_one_error_line(files, capsys, flags, words):
    from vmed.cli import main

    assert main(["chat", "--model", str(files["model"]), *flags]) == 2
    err = capsys.readouterr().err
    assert len(error_lines(err)) == 1 and words in error_lines(err)[0] and "Traceback" not in err


def test_tiny_temperature_chats_greedily(engine, files):
    r, out, err = repl(engine, params=GenParams(max_new_tokens=6, temperature=1e-300, seed=2**63 - 1))
    r.set_image(files["png"])
    r.run(["What modality is this?"])
    assert error_lines(err) == []
    expected = engine.generate(r.session.image, [], "What modality is this?", GenParams(max_new_tokens=6))
    assert r.session.turns[0][1] == expected.text
