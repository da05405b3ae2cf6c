"""YAML in and out, for every file a user hands us (configs, search spaces, cluster files).

One loader so every file reads numbers the same way (YAML 1.2 floats: `1e-5` is a number, as
researchers write it, where PyYAML's YAML 1.1 would read a string) and every syntax error names
the file and the line, whatever kind of file it was.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from dnet_tune.errors import UserError


class _Loader(yaml.SafeLoader):
    """Safe YAML (no object construction) with YAML 1.2 floats."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"""),
    list("-+0123456789"),
)


def yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def dump_yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None)


class YamlFileError(UserError):
    """A file that is not readable YAML; `reason` is the message without the file's name."""

    def __init__(self, kind: str, path: str | Path, reason: str) -> None:
        self.reason = reason
        super().__init__(f"{kind} '{path}': {reason}")


def _read_text(path: Path, kind: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlFileError(kind, path, f"cannot read as UTF-8 text: {exc}") from None


def _syntax(path: Path, kind: str, exc: yaml.YAMLError) -> YamlFileError:
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1})" if mark is not None else ""
    problem = getattr(exc, "problem", None)
    detail = f": {problem}" if problem else ""
    return YamlFileError(kind, path, f"not valid YAML{where}{detail}; fix the syntax")


def read_yaml(path: str | Path, kind: str, hint: str) -> Any:
    """The one document in `path`; a missing file, bad UTF-8 or bad syntax is one `UserError`.

    `kind` names the file for the user ("config file", "search space"), `hint` says what to do
    when it does not exist.
    """
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{kind} '{p}' does not exist; {hint}")
    text = _read_text(p, kind)
    try:
        return yaml_load(text)
    except yaml.YAMLError as exc:
        raise _syntax(p, kind, exc) from None


def read_yaml_documents(path: str | Path, kind: str) -> list[Any]:
    """Every non-empty document of a multi-document file (Kubernetes manifests)."""
    p = Path(path)
    text = _read_text(p, kind)
    try:
        return [d for d in yaml.load_all(text, Loader=_Loader) if d is not None]
    except yaml.YAMLError as exc:
        raise _syntax(p, kind, exc) from None
