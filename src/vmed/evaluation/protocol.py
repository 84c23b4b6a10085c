"""The evaluation protocol, shared by every backend: what is asked of each record, and how the answers
become prediction rows.

* ``dialogue`` mode: the record's turns in order, each with the conversation so far as context (the
  model's own answers, or the references with ``history="gold"``), then the summary prompt as a final
  turn. One record is one job.
* ``single`` mode: every question, the summary prompt included, asked on its own with the image. A job
  is a group of records holding at least ``batch_size`` questions when the backend batches (the local
  engine), else one record.

:func:`drive` runs the jobs, up to ``backend.concurrency`` at once (the turns of one dialogue stay
sequential, each depends on the answer before), and hands each finished dialogue's rows to the writer
as it finishes; the writer puts them in input order at the end. A record whose image cannot be read, or
that the backend refuses (its prompt does not fit, an HTTP 4xx), is skipped with its reason.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence, TypeVar

from vmed.data.schema import Dialogue, resolve_image
from vmed.errors import UserInputError
from vmed.evaluation.backends import BackendUnavailable, EvalBackend
from vmed.evaluation.predictions import PredictionRow, PredictionsWriter
from vmed.imaging import ImageError, load_image

if TYPE_CHECKING:
    from vmed.inference import GenParams, GenResult

# lazy: tqdm are imported inside the functions that use them, so importing this module stays light
__all__ = ["Outcome", "EvalProtocol", "Tally", "questions_of", "drive"]

J = TypeVar("J")
R = TypeVar("R")


def questions_of(rec: Dialogue, summary_prompt: str) -> list[str]:
    """What the model is asked about ``rec``, in order: its turns, then the summary prompt (when it has a summary).
    The one place that turns a record into questions; every backend and the resume count use it."""
    return [t.question for t in rec.turns] + ([summary_prompt] if rec.summary else [])


@dataclass
class Outcome:
    """One record's result: its answers (one per question), or the reason it was skipped."""

    record: Dialogue
    answers: list[Any] | None = None
    skipped: str | None = None


@dataclass(frozen=True)
class EvalProtocol:
    """How records are asked: ``mode``, ``history``, ``summary_prompt``, ``batch_size`` (single mode)
    and the generation parameters; ``data_path`` resolves the records' images."""

    mode: str
    history: str
    summary_prompt: str
    batch_size: int
    params: "GenParams"
    data_path: Path

    def questions(self, rec: Dialogue) -> list[str]:
        return questions_of(rec, self.summary_prompt)

    def rows(self, rec: Dialogue, answers: Sequence[Any]) -> list[PredictionRow]:
        """One row per answered turn, then the summary row (when the record has a summary)."""
        rows = []
        for t, turn in enumerate(rec.turns):
            extra: dict[str, Any] = self._extra(rec, answers[t])
            if turn.alternatives:
                extra["alternatives"] = list(turn.alternatives)
            if turn.qid is not None:
                extra["qid"] = turn.qid
            rows.append(PredictionRow(rec.id, t, turn.question, turn.answer, answers[t].text.strip(), turn.answer_type,
                                      turn.question_type, extra))  # fmt: skip
        if rec.summary:
            t = len(rec.turns)
            rows.append(PredictionRow(rec.id, t, self.summary_prompt, rec.summary, answers[t].text.strip(), "summary",
                                      "summary", self._extra(rec, answers[t])))  # fmt: skip
        return rows

    def _extra(self, rec: Dialogue, answer: Any) -> dict[str, Any]:
        return {"source": rec.source, "mode": self.mode, "history": self.history, "finish_reason": answer.finish_reason}

    def jobs(self, records: Sequence[Dialogue], backend: EvalBackend) -> Iterator[list[Dialogue]]:
        """The records grouped into jobs (see the module docstring)."""
        if self.mode == "dialogue" or not backend.batches:
            yield from ([rec] for rec in records)
            return
        chunk: list[Dialogue] = []
        n = 0
        for rec in records:
            chunk.append(rec)
            n += len(self.questions(rec))
            if n >= self.batch_size:
                yield chunk
                chunk, n = [], 0
        if chunk:
            yield chunk

    def answer(self, backend: EvalBackend, job: list[Dialogue]) -> list[Outcome]:
        """Ask one job's records (runs in a worker thread when the backend takes several jobs at once)."""
        if self.mode == "dialogue":
            return [self._dialogue(backend, rec) for rec in job]
        return self._single(backend, job)

    def _dialogue(self, backend: EvalBackend, rec: Dialogue) -> Outcome:
        try:
            image = load_record_image(rec, self.data_path)
            gold = None
            if self.history == "gold":
                gold = [t.answer for t in rec.turns] + ([rec.summary] if rec.summary else [])
            return Outcome(rec, backend.dialogue(image, self.questions(rec), self.params, gold))
        except SKIPPABLE as e:
            return Outcome(rec, skipped=skip_reason(e))

    def _single(self, backend: EvalBackend, job: list[Dialogue]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        loaded = []
        for rec in job:
            try:
                loaded.append((rec, load_record_image(rec, self.data_path)))
            except SKIPPABLE as e:
                outcomes.append(Outcome(rec, skipped=skip_reason(e)))
        items = [(image, q) for rec, image in loaded for q in self.questions(rec)]
        try:
            answers = backend.single(items, self.params, self.batch_size) if items else []
        except UserInputError as e:
            if len(loaded) == 1:
                return outcomes + [Outcome(loaded[0][0], skipped=skip_reason(e))]
            # one record does not fit: answer record by record to find it
            return outcomes + [o for rec, image in loaded for o in self._single_one(backend, rec, image)]
        k = 0
        for rec, _ in loaded:
            n = len(self.questions(rec))
            outcomes.append(Outcome(rec, answers[k : k + n]))
            k += n
        return outcomes

    def _single_one(self, backend: EvalBackend, rec: Dialogue, image: Any) -> list[Outcome]:
        try:
            return [Outcome(rec, backend.single([(image, q) for q in self.questions(rec)], self.params, self.batch_size))]
        except UserInputError as e:
            return [Outcome(rec, skipped=skip_reason(e))]


SKIPPABLE = (ImageError, UserInputError, OSError)
"""A record's own faults: an unreadable image, a prompt that does not fit, a request the server refuses."""


def skip_reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def load_record_image(rec: Dialogue, data_path: Path):
    """The record's RGB image by vmed's loader (DICOM windowed), or None for a record without an image."""
    p = resolve_image(rec, data_path)
    return None if p is None else load_image(p)


def run_jobs(jobs: Iterable[J], fn: Callable[[J], R], concurrency: int) -> Iterator[R]:
    """``fn(job)`` for every job, up to ``concurrency`` at once, yielding the results as they finish.

    Jobs are submitted as slots free up. After a ``BackendUnavailable`` no new job starts; the jobs in
    flight are still awaited and their results yielded, then the first such error is raised.
    """
    if concurrency <= 1:
        for job in jobs:
            yield fn(job)
        return
    pending = iter(jobs)
    error: BackendUnavailable | None = None
    with ThreadPoolExecutor(concurrency, thread_name_prefix="vmed-eval") as pool:
        running: set[Future] = set()
        while True:
            while error is None and len(running) < concurrency and (job := next(pending, None)) is not None:
                running.add(pool.submit(fn, job))
            if not running:
                break
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                try:
                    result = future.result()
                except BackendUnavailable as e:
                    error = error or e
                    continue
                yield result
    if error is not None:
        raise error


@dataclass
class Tally:
    """What a drive did: dialogues answered, rows written, records skipped with their reasons."""

    dialogues_done: int = 0
    rows: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)


def drive(protocol: EvalProtocol, backend: EvalBackend, records: Sequence[Dialogue], writer: PredictionsWriter,
          tally: Tally, progress: bool = True) -> None:  # fmt: skip
    """Ask every record with ``backend`` and write each finished dialogue's rows; counts go to ``tally``.
    Raises ``BackendUnavailable`` (after writing every dialogue that finished) when the backend stops answering."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(records), unit="dialogue", desc=f"eval {protocol.mode}", disable=not progress, dynamic_ncols=True)
    try:
        jobs = protocol.jobs(records, backend)
        for outcomes in run_jobs(jobs, lambda job: protocol.answer(backend, job), backend.concurrency):
            for o in outcomes:
                if o.answers is None:
                    tally.skipped.append({"id": o.record.id, "reason": o.skipped or "skipped"})
                else:
                    rows = protocol.rows(o.record, o.answers)
                    writer.write(rows)
                    tally.rows += len(rows)
                    tally.dialogues_done += 1
            bar.update(len(outcomes))
    finally:
        bar.close()
