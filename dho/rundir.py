"""The run-directory contract in one place (docs/DESIGN.md, "One run").

A run directory is *done* iff its ``metrics.json`` parses, has ``status == "complete"``
and carries the spec hash that was asked for.  Everything else in the folder is
resumable state, never a result.  Readers with stricter needs (``dho collect`` checks
every contract key) start from :func:`read_complete_metrics`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def read_complete_metrics(run_dir: str | os.PathLike) -> tuple[dict[str, Any] | None, str]:
    """``(metrics, "")`` for a complete ``metrics.json``, else ``(None, why it is not one)``."""
    path = Path(run_dir) / "metrics.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, "no metrics.json (run not finished)"
    except (OSError, UnicodeDecodeError) as e:
        return None, f"metrics.json is unreadable ({e})"
    try:
        metrics = json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"metrics.json is not valid JSON ({e})"
    if not isinstance(metrics, dict) or metrics.get("status") != "complete":
        status = metrics.get("status") if isinstance(metrics, dict) else type(metrics).__name__
        return None, f"metrics.json status is {status!r}, not 'complete'"
    return metrics, ""


def load_done(run_dir: str | os.PathLike, spec_hash: str) -> dict[str, Any] | None:
    """``metrics.json`` of ``run_dir`` if the run is done for ``spec_hash``, else None."""
    metrics, _ = read_complete_metrics(run_dir)
    return metrics if metrics is not None and metrics.get("spec_hash") == spec_hash else None
