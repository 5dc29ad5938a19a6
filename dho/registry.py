"""One registry per kind of thing (students, teachers, methods, datasets), timm-style."""

from __future__ import annotations

from typing import Any, Callable, Iterator

from .errors import ConfigError


class Registry:
    """Name -> object mapping with a one-line description per entry.

    >>> STUDENTS = Registry("student")
    >>> @STUDENTS.register("resnet18", help="torchvision ResNet-18")
    ... def resnet18(**kw): ...
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}
        self._help: dict[str, str] = {}

    def register(self, name: str, obj: Any = None, *, help: str = "") -> Callable:
        def _add(o: Any) -> Any:
            if name in self._items and self._items[name] is not o:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = o
            doc = help or (getattr(o, "__doc__", None) or "").strip().splitlines()
            self._help[name] = doc if isinstance(doc, str) else (doc[0] if doc else "")
            return o

        return _add(obj) if obj is not None else _add

    def get(self, name: str) -> Any:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise ConfigError(f"unknown {self.kind} '{name}'; known {self.kind}s: {known}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)

    def describe(self, name: str) -> str:
        self.get(name)
        return self._help.get(name, "")
