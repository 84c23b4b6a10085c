"""Typed errors for people. Imports nothing but the standard library.

A ``VmedError`` is a user-facing problem (bad input, missing file, wrong config): the CLI prints
its message on one line, without a traceback, and exits with ``exit_code`` (2 for usage/input
errors). Messages name the file/row/field, say what was expected and suggest the fix.
"""

__all__ = ["VmedError", "UserInputError", "ConfigError"]


class VmedError(Exception):
    """Base class of every error vmed raises on purpose."""

    exit_code = 1


class UserInputError(VmedError, ValueError):
    """Bad input from the user (file, flag, record). CLI exit code 2."""

    exit_code = 2


class ConfigError(UserInputError):
    """A config file or override that is invalid (unknown key, wrong type, missing input)."""
