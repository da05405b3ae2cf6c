"""One exception type for mistakes a user can fix.

Raised anywhere (config, data, search); rendered once by the CLI as a one-line message with
exit code 2, so user mistakes never show a traceback while real bugs still do.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A problem with the user's input: the message says what was wrong and what to do."""


class DamagedFile(UserError):
    """A file we wrote (or one handed to us) that no longer parses: cut short, overwritten.

    Raised by the one reader of each format (JSON, Parquet, checkpoints, the Optuna journal,
    exported configs), so every damaged file reads the same way wherever it turns up: the file,
    what is wrong with it, what to do. Nothing is written on the way out.
    """

    def __init__(self, path: str | Path, reason: str, remedy: str) -> None:
        self.path = str(path)
        super().__init__(f"'{path}' is damaged ({reason}); {remedy}")


def first_sentence(exc: BaseException, limit: int = 120) -> str:
    """A library's error message as a short clause: its first sentence ("" if it has none).

    Library messages about damaged files run to paragraphs ("... This is an internal miniz
    error. If you are seeing this error, ..."); one line keeps what the user can act on.
    """
    lines = str(exc).strip().splitlines()
    text = lines[0].strip().split(". ")[0].rstrip(".") if lines else ""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe(exc: BaseException) -> str:
    """'KeyError: 'op_code'', 'EOFError': what a library raised, in one short clause."""
    detail = first_sentence(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
