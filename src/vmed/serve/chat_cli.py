"""The ``vmed chat`` REPL: a multi-turn conversation about an image, with streamed answers.

Each line is a question, or a command:

- ``/image PATH``: load a PNG, JPEG or DICOM file (DICOM windowed with the ``--preset`` /
  ``--window`` given to ``vmed chat``); a new image starts a fresh conversation;
- ``/reset``: start a fresh conversation about the same image;
- ``/save FILE``: write the conversations of this chat as dialogue records (JSONL, one record per
  image context), so that a chat becomes data;
- ``/help``; ``/quit`` (or end of input).

Answers stream to stdout as they are generated. Errors (a missing file, an unreadable image, an
unknown command, a conversation that no longer fits the context, a line that is not UTF-8) print
one ``error:`` line on stderr and the chat goes on. When stdin is not a terminal (a pipe, a script, a test) there are no
prompts: stdout holds only the answers, one per question, each ended by a newline.

The conversation keeps the engine's KV cache between turns (``vmed.inference.ChatSession``), so
the image and earlier turns are not encoded again.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Iterable

from vmed.constants import DEFAULT_SYSTEM_PROMPT
from vmed.errors import UserInputError, VmedError

# lazy: vmed.imaging (numpy, PIL, pydicom: about 0.8 s) is imported when the first image is loaded

__all__ = ["ChatRepl", "Context", "HELP"]

HELP = """\
Type a question and press Enter; the answer streams as it is generated.
  /image PATH   load an image (PNG, JPEG or DICOM); starts a fresh conversation
  /reset        start a fresh conversation about the same image
  /save FILE    write this chat as dialogue records (JSONL, one per image context)
  /help         show this help
  /quit         leave (Ctrl-D works too)"""


def _undecodable(text: str) -> str | None:
    """What makes ``text`` invalid UTF-8 (an undecodable byte kept as a surrogate), or None if it is valid."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        ch = ord(text[e.start])
        return f"byte 0x{ch - 0xDC00:02x}" if 0xDC80 <= ch <= 0xDCFF else f"unpaired surrogate U+{ch:04X}"
    return None


@dataclass
class Context:
    """One conversation about one image (or none): what ``/save`` writes as a dialogue record."""

    image_path: Path | None
    turns: list[tuple[str, str]] = field(default_factory=list)


class ChatRepl:
    """The chat loop around one ``Engine``; ``run(lines)`` drives it, ``handle(line)`` does one line.

    ``window``/``preset`` are applied to DICOM images. ``interactive`` adds prompts (``you>``) and
    catches Ctrl-C during an answer (the answer stops, the chat goes on).
    """

    def __init__(
        self,
        engine: Any,
        params: Any,
        *,
        system: str | None = DEFAULT_SYSTEM_PROMPT,
        window: tuple[float, float] | None = None,
        preset: str | None = None,
        model_name: str = "",
        out: IO[str] | None = None,
        err: IO[str] | None = None,
        interactive: bool = False,
    ) -> None:
        self.engine = engine
        self.params = params
        self.system = system
        self.window = window
        self.preset = preset
        self.model_name = model_name
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.interactive = interactive
        self.contexts: list[Context] = [Context(None)]
        self.session = engine.session(None, system=system)
        self.done = False
        self.line_no = 0

    # ---- output -----------------------------------------------------------------------------

    def info(self, message: str) -> None:
        print(message, file=self.err, flush=True)

    def error(self, message: str) -> None:
        print(f"error: {' '.join(message.split())}", file=self.err, flush=True)

    # ---- commands ---------------------------------------------------------------------------

    def set_image(self, path: str | os.PathLike) -> None:
        """Load ``path`` with ``vmed.imaging.load_image`` and start a fresh conversation about it."""
        from vmed.imaging import load_image

        p = Path(path).expanduser()
        if not p.is_file():
            raise UserInputError(f"no such image file: {p}")
        image = load_image(p, window=self.window, preset=self.preset)
        self.session = self.engine.session(image, system=self.system)
        self.contexts.append(Context(p.resolve()))
        self.info(f"image {p} loaded ({image.width}x{image.height}); new conversation")

    def reset(self) -> None:
        self.session.reset()
        self.contexts.append(Context(self.contexts[-1].image_path))
        self.info("new conversation" + (" about the same image" if self.session.image is not None else ""))

    def save(self, path: str | os.PathLike) -> Path:
        """Write every context with at least one turn as a dialogue record; return the file."""
        from vmed.data.schema import Dialogue, Turn, write_jsonl

        out = Path(path).expanduser()
        if out.is_dir():
            raise UserInputError(f"/save {out}: is a directory; give a file name such as chat.jsonl")
        stamp = time.strftime("%Y%m%dT%H%M%S")
        meta: dict[str, Any] = {"model": self.model_name, "system": self.system, "created_by": "vmed chat"}
        if self.window is not None or self.preset is not None:
            meta["window"] = list(self.window) if self.window is not None else self.preset
        records = []
        for ctx in (c for c in self.contexts if c.turns):
            image = None
            if ctx.image_path is not None:
                rel = os.path.relpath(ctx.image_path, out.resolve().parent)
                image = ctx.image_path.as_posix() if rel.startswith("..") else Path(rel).as_posix()
            records.append(
                Dialogue(
                    id=f"chat/{stamp}-{len(records)}", image=image, source="chat", split="train",
                    turns=[Turn(question=q, answer=a, answer_type="open") for q, a in ctx.turns], meta=dict(meta),
                )
            )
        if not records:
            raise UserInputError("/save: nothing to save yet; ask a question first")
        try:
            write_jsonl(out, records)
        except OSError as e:
            raise UserInputError(f"/save {out}: cannot write it ({e.strerror or type(e).__name__})") from None
        self.info(f"saved {len(records)} dialogue record(s) to {out}")
        return out

    def command(self, line: str) -> None:
        name, _, arg = line.partition(" ")
        arg = arg.strip()
        if name in ("/quit", "/exit"):
            self.done = True
        elif name == "/help":
            self.info(HELP)
        elif name == "/reset":
            self.reset()
        elif name in ("/image", "/save"):
            if not arg:
                raise UserInputError(f"{name} needs a file name: {name} PATH")
            self.set_image(arg) if name == "/image" else self.save(arg)
        else:
            raise UserInputError(f"unknown command {name!r}; type /help for the commands")

    # ---- questions --------------------------------------------------------------------------

    def ask(self, question: str) -> None:
        """Stream the answer to stdout; the turn joins the conversation."""
        stream = self.session.ask_stream(question, self.params)
        if self.interactive:
            self.out.write("vmed> ")
        try:
            for piece in stream:
                self.out.write(piece)
                self.out.flush()
        except KeyboardInterrupt:
            stream.close()
            self.out.write("\n")
            self.info("(answer interrupted; left out of the conversation)")
            return
        self.out.write("\n")
        self.out.flush()
        self.contexts[-1].turns.append((question, stream.result.text))

    def handle(self, line: str) -> None:
        """One input line: a command, a question, or nothing. User errors print one line."""
        self.line_no += 1
        line = line.strip()
        if not line:
            return
        bad = _undecodable(line)
        if bad is not None:
            self.error(f"input line {self.line_no} is not valid UTF-8 text ({bad}); it was skipped: save the input as UTF-8")
            return
        try:
            self.command(line) if line.startswith("/") else self.ask(line)
        except VmedError as e:
            self.error(str(e))

    def run(self, lines: Iterable[str] | None = None) -> int:
        """Read lines (default: stdin; with prompts when interactive) until /quit or end of input; return 0."""
        if self.interactive:
            self.info("vmed chat: ask about the image; /help for commands, /quit to leave")
        source = iter(lines) if lines is not None else None
        while not self.done:
            try:
                if source is not None:
                    line = next(source)
                elif self.interactive:
                    line = input("you> ")
                else:  # bytes, so that a line that is not UTF-8 is reported (by handle) instead of ending the chat
                    raw = sys.stdin.buffer.readline()
                    if not raw:
                        break
                    line = raw.decode("utf-8", errors="surrogateescape")
            except (StopIteration, EOFError):
                break
            except UnicodeDecodeError as e:  # a terminal whose input is not UTF-8
                self.line_no += 1
                self.error(f"input line {self.line_no} is not valid UTF-8 text (byte 0x{e.object[e.start]:02x}); it was skipped")
                continue
            except KeyboardInterrupt:
                self.out.write("\n")
                break
            self.handle(line)
        return 0
