"""Name -> builder registries (timm's register/create idea) for datasets, models and methods.

Tests iterate over `names()` so every registered entry is exercised; an unknown name is a
`UserError` that lists the valid choices.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from dnet_tune.errors import UserError

T = TypeVar("T", bound=Callable[..., Any])


@dataclass
class Entry(Generic[T]):
    name: str
    fn: T
    info: dict[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, **info: Any) -> Callable[[T], T]:
        def deco(fn: T) -> T:
            self.add(name, fn, **info)
            return fn

        return deco

    def add(self, name: str, fn: T, **info: Any) -> None:
        """Register without a decorator: one builder serving several names (partials)."""
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' registered twice")
        self._entries[name] = Entry(name, fn, dict(info))

    def entry(self, name: str) -> Entry[T]:
        try:
            return self._entries[name]
        except KeyError:
            choices = ", ".join(sorted(self._entries))
            raise UserError(f"unknown {self.kind} '{name}'; choose one of: {choices}") from None

    def get(self, name: str) -> T:
        return self.entry(name).fn

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries
