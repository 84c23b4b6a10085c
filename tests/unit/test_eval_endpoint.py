"""The endpoint backend of ``vmed eval run``: parity with the local engine against ``vmed serve`` (tiny model,
concurrency 4), identical files whatever the concurrency, and the faults: 500s then an answer, a stall past
the timeout, a 4xx that skips one dialogue, a server killed mid-run and restarted, the API key kept out of
every file. Servers bind 127.0.0.1 only."""

import json
from pathlib import Path

import pytest
from PIL import Image

from _eval_helpers import StubServer, word_only
from vmed.errors import UserInputError
from vmed.evaluation.backends import BackendUnavailable
from vmed.evaluation.endpoint import EndpointBackend, base_url
from vmed.evaluation.predictions import read_predictions
from vmed.evaluation.runner import run_eval


def _dataset(tmp_path: Path, n: int = 6, reject: str | None = None) -> Path:
    (tmp_path / "images").mkdir()
    records = []
    for i in range(n):
        Image.new("L", (24, 24), color=30 * i).save(tmp_path / "images" / f"im{i}.png")
        turns = [{"question": "Is there a mass?", "answer": "yes", "answer_type": "closed"},
                 {"question": "Where is it?" if f"r{i}" != reject else "REJECT this?", "answer": "left", "answer_type": "open"}]
        records.append({"id": f"r{i}", "image": f"images/im{i}.png", "turns": turns[: 1 + i % 2], "summary": f"summary {i}"})  # fmt: skip
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


@pytest.fixture(scope="module")
def word_engine(tmp_path_factory):
    from _serve_helpers import tiny_engine

    engine = tiny_engine(tmp_path_factory)
    word_only(engine)
    return engine


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    from vmed.data.phantom import generate_phantoms

    return generate_phantoms(tmp_path_factory.mktemp("ph"), 16, seed=0)["train"]


@pytest.mark.parametrize("mode,history", [("dialogue", "model"), ("dialogue", "gold"), ("single", "model")])
def test_endpoint_matches_local_engine_against_vmed_serve(word_engine, phantoms, tmp_path, mode, history):
    """Same engine in process (``--model``) and behind ``vmed serve`` (``--endpoint``, 4 dialogues in flight):
    the same prediction text for every row."""
    from vmed.cli import main
    from vmed.serve.api import create_app, serve_in_thread

    common = dict(mode=mode, history=history, max_new_tokens=5, limit=6, progress=False)
    local = read_predictions(run_eval(word_engine, phantoms, tmp_path / "local", **common).predictions)
    with serve_in_thread(create_app(word_engine)) as url:
        args = ["eval", "run", "--endpoint", url, "--concurrency", "4", "--data", str(phantoms), "--output", str(tmp_path / "ep"),
                "--mode", mode, "--history", history, "--max-new-tokens", "5", "--limit", "6", "--no-meteor",
                "--bootstrap-resamples", "100"]  # fmt: skip
        assert main(args) == 0
    remote = read_predictions(tmp_path / "ep" / "predictions.jsonl")
    assert [(r.id, r.turn) for r in remote] == [(r.id, r.turn) for r in local] and len(local) > 12
    assert [r.prediction for r in remote] == [r.prediction for r in local]
    assert len({r.prediction for r in local}) > 3  # answers depend on the context, so the comparison can fail
    info = json.loads((tmp_path / "ep" / "run_info.json").read_text())
    assert info["model"] == {"endpoint": url + "/v1", "served_model": "vmed"}  # asked /v1/models
    assert info["request"]["concurrency"] == 4 and info["status"] == "complete"


def test_output_is_identical_whatever_the_concurrency(tmp_path):
    data = _dataset(tmp_path, n=10)
    with StubServer() as stub:
        one = run_eval(EndpointBackend(stub.url, concurrency=1), data, tmp_path / "c1", progress=False)
        eight = run_eval(EndpointBackend(stub.url, concurrency=8), data, tmp_path / "c8", progress=False)
    assert one.predictions.read_bytes() == eight.predictions.read_bytes()
    rows = read_predictions(one.predictions)
    assert len(rows) == 25 and len({r.prediction for r in rows}) == 25
    # each request held the conversation so far: the summary turn of r1 came after two answered turns
    last = max((b for b in stub.bodies if b["messages"][-1]["content"] == "Describe the image."), key=lambda b: len(b["messages"]))
    assert [m["role"] for m in last["messages"]] == ["user", "assistant", "user", "assistant", "user"]


def test_500_twice_then_answers(tmp_path):
    data = _dataset(tmp_path, n=3)
    with StubServer(fail=2) as stub:
        res = run_eval(EndpointBackend(stub.url, retries=3), data, tmp_path / "out", progress=False)
    assert res.dialogues_done == 3 and not res.skipped
    assert stub.requests == 2 + 7  # two failures, then every question answered once


def test_stall_past_the_timeout_is_retried_and_a_dead_stall_stops(tmp_path):
    data = _dataset(tmp_path, n=2)
    with StubServer(stall=1, stall_s=5) as stub:
        res = run_eval(EndpointBackend(stub.url, timeout_s=0.5, retries=2), data, tmp_path / "a", progress=False)
        assert res.dialogues_done == 2 and stub.requests == 1 + 5
    with StubServer(stall=100, stall_s=5) as stub:
        with pytest.raises(BackendUnavailable, match=r"no answer within 0.3 s after 2 attempts.*run the same command again"):
            run_eval(EndpointBackend(stub.url, timeout_s=0.3, retries=1), data, tmp_path / "b", progress=False)
    assert json.loads((tmp_path / "b" / "run_info.json").read_text())["status"] == "interrupted"


def test_4xx_skips_that_dialogue_with_the_server_message(tmp_path):
    data = _dataset(tmp_path, n=4, reject="r1")
    with StubServer() as stub:
        res = run_eval(EndpointBackend(stub.url, concurrency=2), data, tmp_path / "out", progress=False)
    assert res.dialogues_done == 3 and [s["id"] for s in res.skipped] == ["r1"]
    assert "HTTP 400" in res.skipped[0]["reason"] and stub.reject_message in res.skipped[0]["reason"]
    assert {r.id for r in read_predictions(res.predictions)} == {"r0", "r2", "r3"}


def test_server_killed_mid_run_then_restarted_resumes(tmp_path):
    data = _dataset(tmp_path, n=10)
    with StubServer() as stub:
        clean = run_eval(EndpointBackend(stub.url, concurrency=3), data, tmp_path / "clean", progress=False)
    out = tmp_path / "out"
    stub = StubServer(die_after=9).start()
    try:
        with pytest.raises(BackendUnavailable, match=r"cannot reach .*is the server running\?.*Stopped after \d+ of 10 dialogues"):
            run_eval(EndpointBackend(stub.url, concurrency=3, retries=1), data, out, progress=False)
        info = json.loads((out / "run_info.json").read_text())
        kept = {r.id for r in read_predictions(out / "predictions.jsonl")}
        assert info["status"] == "interrupted" and 0 < len(kept) < 10 and info["dialogues_done"] == len(kept)
        stub.die_after = None
        stub.start()  # the same port
        res = run_eval(EndpointBackend(stub.url, concurrency=3), data, out, progress=False)
    finally:
        stub.stop()
    assert res.dialogues_resumed == len(kept) and res.dialogues_done == 10 - len(kept)
    assert (out / "predictions.jsonl").read_bytes() == clean.predictions.read_bytes()


def test_api_key_comes_from_the_environment_and_is_never_written(tmp_path, monkeypatch, capsys):
    from vmed.cli import main

    data = _dataset(tmp_path, n=2)
    secret = "sk-test-9f8e7d6c5b4a"
    monkeypatch.setenv("STUB_KEY", secret)
    with StubServer(api_key=secret) as stub:
        args = ["eval", "run", "--endpoint", stub.url + "/v1", "--api-key-env", "STUB_KEY", "--data", str(data),
                "--output", str(tmp_path / "out"), "--no-meteor", "--bootstrap-resamples", "100"]  # fmt: skip
        assert main(args) == 0
        monkeypatch.delenv("STUB_KEY")
        assert main(args[:4] + ["--api-key-env", "NOPE_KEY"] + args[6:]) == 2
    captured = capsys.readouterr()
    assert "NOPE_KEY" in captured.err and secret not in captured.out + captured.err
    for f in (tmp_path / "out").iterdir():
        if f.suffix in (".json", ".jsonl", ".md"):
            assert secret not in f.read_text(), f.name
    info = json.loads((tmp_path / "out" / "run_info.json").read_text())
    assert info["request"]["api_key_env"] == "STUB_KEY" and info["model"]["served_model"] == "stub-model"
    assert f"`stub-model` served at `{stub.url}/v1`" in (tmp_path / "out" / "report.md").read_text()


def test_served_model_must_be_chosen_when_several_and_bad_urls(tmp_path):
    with StubServer(models=("a", "b")) as stub:
        with pytest.raises(UserInputError, match=r"lists 2 models \(a, b\); choose one with --served-model"):
            EndpointBackend(stub.url)
        assert EndpointBackend(stub.url, served_model="b").served_model == "b"
    with pytest.raises(UserInputError, match="expected an http"):
        base_url("127.0.0.1:8000")
    assert base_url("http://h:1") == "http://h:1/v1" and base_url("https://h/api/v1/") == "https://h/api/v1"


def test_cli_needs_exactly_one_of_model_and_endpoint(tmp_path, capsys):
    from vmed.cli import main

    data = _dataset(tmp_path, n=1)
    assert main(["eval", "run", "--data", str(data), "--output", str(tmp_path / "o")]) == 2
    assert "exactly one of --model" in capsys.readouterr().err
