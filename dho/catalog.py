"""What the workflow's parse needs from torch-importing modules, without torch.

The Snakefile's parse checks every suite against the student and method registries
(:data:`dho.models.STUDENTS`, :data:`dho.methods.METHODS`), asks each method whether it
needs a teacher, and lists the paper-table layouts with what each reads
(:data:`dho.results.paper.LAYOUT_NAMES`, ``get_layout(name).source``).
Importing those modules imports torch and pandas (~3 s of CPU here), once per
``snakemake`` call: most of a dry run's parse.  :func:`catalog` reads these facts from a small JSON
cache instead, keyed by the content of every source file of the package (and the Python
version), so any edit to the package rebuilds it (by importing the registries once).

* In a process that has already imported the registries (``dho train``, a test that
  registers a method), the live registries are read: nothing goes stale in-process.
* The cache folder is ``$DHO_CACHE_DIR``, else ``$XDG_CACHE_HOME/dho``, else
  ``~/.cache/dho``; a folder that cannot be written only costs the torch import.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent
LIVE_MODULES = ("dho.methods", "dho.models", "dho.results.paper")


def cache_dir() -> Path:
    if os.environ.get("DHO_CACHE_DIR"):
        return Path(os.environ["DHO_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dho"


def source_key() -> str:
    """Hash of the Python version and every ``dho/**/*.py`` file's path and content."""
    h = hashlib.sha256(sys.version.encode())
    for path in sorted(PACKAGE.rglob("*.py")):
        h.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:20]


def live() -> dict[str, Any]:
    """The facts, read from the registries themselves (imports torch)."""
    from .methods import METHODS
    from .models import STUDENTS
    from .models.students import IMAGE_SIZE, RESNET_WIDTH
    return {"paper_layouts": _paper_layouts(), "students": STUDENTS.names(),
            "methods": {name: bool(METHODS.get(name).needs_teacher) for name in METHODS.names()},
            "teacher_outputs": {name: list(getattr(METHODS.get(name), "teacher_outputs", ("logits",)))
                                for name in METHODS.names()},
            "student_defaults": {"width": RESNET_WIDTH, "image_size": IMAGE_SIZE}}


@functools.cache
def _paper_layouts() -> dict[str, str]:
    """Layout name -> what it reads (building every layout: ~0.2 s; layouts are code, fixed
    for the process, unlike the registries)."""
    from .results.paper import LAYOUT_NAMES, get_layout

    return {name: get_layout(name).source for name in LAYOUT_NAMES}


_MEMO: dict[str, Any] = {}


def catalog() -> dict[str, Any]:
    """``{"students": [...], "methods": {name: needs_teacher}, "teacher_outputs": {name: [...]},
    "student_defaults": {...},
    "paper_layouts": {name: source}}``."""
    if any(m in sys.modules for m in LIVE_MODULES):  # torch is loaded already: the rest is cheap
        return live()
    if "facts" in _MEMO:
        return _MEMO["facts"]
    path = cache_dir() / f"catalog-{source_key()}.json"
    try:
        facts = json.loads(path.read_text())
    except (OSError, ValueError):
        facts = live()
        from .errors import DhoError
        from .io import atomic_write_json

        try:
            atomic_write_json(path, facts)
        except (OSError, DhoError):  # read-only home: the next parse imports torch again
            pass
    _MEMO["facts"] = facts
    return facts
