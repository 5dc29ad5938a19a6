"""The dataset registry: ``DATASETS.get(name)(root) -> DatasetSource``."""

from __future__ import annotations

from typing import Any, Callable

from ..registry import Registry
from .source import DatasetSource


class DatasetRegistry(Registry):
    """A :class:`~dho.registry.Registry` that also stamps the registry name on the class.

    A :class:`DatasetSource` subclass registered as ``"caltech101"`` gets
    ``name = "caltech101"`` unless it sets a ``name`` itself.
    """

    def register(self, name: str, obj: Any = None, *, help: str = "") -> Callable:
        add = super().register(name, help=help)

        def _add(o: Any) -> Any:
            if isinstance(o, type) and issubclass(o, DatasetSource) and not o.__dict__.get("name"):
                o.name = name
            return add(o)

        return _add(obj) if obj is not None else _add


DATASETS = DatasetRegistry("dataset")
