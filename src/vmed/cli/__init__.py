"""The ``vmed`` command line. The only package that imports every area of vmed.

Command modules are imported explicitly (no auto-discovery); each attaches its commands to
the apps in ``vmed.cli._apps``. ``main`` is the one error boundary of the CLI: every failure ends as
one ``error:`` line on stderr and an exit code, never a traceback (unless ``vmed --debug ...``):

- 2: the user's input. A ``UserInputError`` (and every typed error that subclasses it: config, record,
  image, data format), a usage error (unknown option, bad value), and the library errors that can only
  come from the user's files and paths: ``OSError`` (no such file, permission denied, a folder where a
  file belongs), ``UnicodeDecodeError`` (a file that is not UTF-8), ``json.JSONDecodeError`` and
  ``yaml.YAMLError`` (a JSON or YAML file that does not parse).
- 1: vmed's own failure: a ``VmedError`` that is not about input, or any other exception, which is a
  bug: its type and message on one line, and a hint to rerun with ``--debug`` for the traceback.
- 130: interrupted (Ctrl-C).
"""

from __future__ import annotations

import json
import sys
import traceback

import typer

from vmed import __version__
from vmed.cli._apps import app
from vmed.errors import VmedError

# lazy: keeps vmed --help fast (each command imports what it runs inside its function)
__all__ = ["app", "main"]

_state = {"debug": False}

try:  # typer >= 0.20 vendors click (its exceptions subclass typer.TyperException); older typer raises click's own
    import click

    _CLICK_ERRORS: tuple[type[Exception], ...] = (click.ClickException,)
    _ABORTS: tuple[type[BaseException], ...] = (typer.Abort, click.exceptions.Abort)
except ImportError:  # pragma: no cover - typer without click installed
    _CLICK_ERRORS, _ABORTS = (), (typer.Abort,)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"vmed {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="On an error, print the full traceback (for bug reports). Goes before the command: vmed --debug data convert ..."),
) -> None:
    """vmed: medical visual dialogue models."""
    _state["debug"] = debug


def _register() -> None:
    import importlib

    for name in ("image", "model", "data", "convert", "train", "evaluate", "chat", "serve", "gradio"):
        try:
            importlib.import_module(f"vmed.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"vmed.cli.{name}":
                raise


_register()


def _error(message: str, code: int) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _input_error(e: BaseException) -> str | None:
    """The one-line message of a library error that means bad user input, or None if ``e`` is not one."""
    if isinstance(e, UnicodeDecodeError):
        return f"a file is not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8"
    if isinstance(e, json.JSONDecodeError):
        return f"not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}"
    if isinstance(e, OSError):
        name = e.filename if e.filename is not None else ""
        detail = e.strerror or str(e) or type(e).__name__
        return f"{name}: {detail}" if name else detail
    yaml = sys.modules.get("yaml")
    if yaml is not None and isinstance(e, yaml.YAMLError):
        return f"not valid YAML: {' '.join(str(e).split())}"
    return None


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vmed`` console script; returns the exit code (see the module docstring)."""
    _state["debug"] = False
    try:
        rv = app(args=argv, prog_name="vmed", standalone_mode=False)
    except (typer.TyperException, *_CLICK_ERRORS) as e:
        return _usage_error(e)
    except _ABORTS:
        print("aborted", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the CLI's one boundary: each kind gets its code below, bugs included
        return _failure(e)
    return rv if isinstance(rv, int) else 0


def _usage_error(e: Exception) -> int:
    """A parse error (unknown option, missing or bad value): one line naming the command's --help."""
    code = getattr(e, "exit_code", 2)
    message = e.format_message() if hasattr(e, "format_message") else str(e)
    if type(e).__name__ == "NoArgsIsHelpError":  # a group called without a command: its help is the message
        if message.strip():  # (typer's rich help has printed itself already)
            print(message)
        return code
    ctx = getattr(e, "ctx", None)
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    return _error(f"{' '.join(message.split())}{hint}", code)


def _failure(e: Exception) -> int:
    if _state["debug"]:
        traceback.print_exc()
    if isinstance(e, VmedError):
        return _error(str(e), e.exit_code)
    message = _input_error(e)
    if message is not None:
        return _error(message, 2)
    return _error(
        f"internal error: {type(e).__name__}: {' '.join(str(e).split()) or 'no message'}. This is a bug in vmed; "
        "rerun with 'vmed --debug ...' for the traceback and report it.",
        1,
    )


if __name__ == "__main__":
    sys.exit(main())
