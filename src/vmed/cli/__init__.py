"""The ``vmed`` command line. The only package that imports every area of vmed.

Command modules are imported explicitly (no auto-discovery); each attaches its commands to
the apps in ``vmed.cli._apps``. ``main`` turns a ``VmedError`` into a one-line message and its
exit code (2 for user input errors) instead of a traceback.
"""

from __future__ import annotations

import sys

import typer

from vmed import __version__
from vmed.cli._apps import app
from vmed.errors import VmedError

__all__ = ["app", "main"]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"vmed {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."),
) -> None:
    """vmed: medical visual dialogue models."""


def _register() -> None:
    import importlib

    for name in ("image", "model", "data", "convert", "train", "evaluate", "chat", "serve", "gradio"):
        try:
            importlib.import_module(f"vmed.cli.{name}")
        except ModuleNotFoundError as e:
            if e.name != f"vmed.cli.{name}":
                raise


_register()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vmed`` console script; returns the exit code."""
    try:
        app(args=argv, prog_name="vmed")
    except SystemExit as e:
        code = e.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except VmedError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
