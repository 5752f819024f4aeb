"""Shared command-line plumbing: a user's mistake gets one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import NoReturn

__all__ = ["UsageError", "ArgumentParser", "HelpFormatter", "cli_entry", "EXIT_USAGE"]

EXIT_USAGE = 2


class UsageError(ValueError):
    """A mistake in what the user asked for (bad argument, bad file)."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds ``(default: X)`` to an option's help unless the help already states its default.

    Help strings say ``(default: the dataset's)`` where the default is not a plain value; the stock
    formatter would add ``(default: None)`` after them.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.help and ("(default" in action.help or action.required):  # a required option has no default
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """An ``argparse.ArgumentParser`` whose errors raise :class:`UsageError` instead of printing usage.

    ``cli_entry`` turns the error into the one-line message every probseg command prints.
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def cli_entry(prog: str) -> Callable[[Callable[[list[str] | None], int | None]], Callable[[list[str] | None], int]]:
    """Decorate ``run(argv)`` so that user mistakes become ``PROG: error: MESSAGE`` and exit code 2.

    ``ValueError`` (the API's bad-input error, :class:`UsageError` included) and file errors are
    user mistakes; anything else is a bug and keeps its traceback.
    """

    def wrap(run: Callable[[list[str] | None], int | None]) -> Callable[[list[str] | None], int]:
        def main(argv: list[str] | None = None) -> int:
            try:
                code = run(argv)
            except (ValueError, FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as exc:
                message = " ".join(str(exc).split())  # one line, whatever the exception held
                print(f"{prog}: error: {message}", file=sys.stderr)
                return EXIT_USAGE
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return 130
            except BrokenPipeError:
                # The reader went away (``probseg-study list | head``): stop quietly, as Unix tools do. Later
                # writes to the closed stdout would raise again at exit, so it is pointed at /dev/null.
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 141
            return int(code or 0)

        main.__doc__ = run.__doc__
        return main

    return wrap
