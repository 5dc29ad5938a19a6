"""Datasets: registry, CoOp on-disk layouts, image loading, label splits, checks.

``import dho.data`` registers every dataset module in :mod:`dho.data.datasets` (each
file there is imported automatically).  The torch parts (:class:`ImageList`,
:func:`train_transform`, :func:`eval_transform`) load torch on first use, so that
``dho data check`` stays quick.
"""

from __future__ import annotations

import importlib
import pkgutil

from .registry import DATASETS
from .source import CheckReport, DatasetSource, assert_dataset_ok, open_rgb
from .coop import CoopSplitDataset

__all__ = ["DATASETS", "CheckReport", "CoopSplitDataset", "DatasetSource", "ImageList",
           "assert_dataset_ok", "eval_transform", "get_dataset", "open_rgb", "train_transform"]

_LAZY = {"ImageList": ".loading", "train_transform": ".loading", "eval_transform": ".loading"}


def get_dataset(name: str, root) -> DatasetSource:
    """The registered dataset ``name`` under ``root`` (the folder holding dataset folders)."""
    return DATASETS.get(name)(root)


def __getattr__(attr: str):
    if attr in _LAZY:
        return getattr(importlib.import_module(_LAZY[attr], __name__), attr)
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def _import_dataset_modules() -> None:
    from . import datasets

    for info in sorted(pkgutil.iter_modules(datasets.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{datasets.__name__}.{info.name}")


_import_dataset_modules()
