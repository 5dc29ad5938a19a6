"""Collect finished run directories into one tidy table (``runs.csv``).

Which run directories are *done* is decided by :func:`dho.rundir.inspect_run` (the one
reader of the contract, docs/DESIGN.md "One run").  Anything else in a run folder is
resumable state, never a result: such folders are skipped with a warning
(:class:`IncompleteRunWarning`) and never become rows.  A complete ``metrics.json`` that
lacks contract keys, or holds a value of the wrong type, is a broken producer and raises
:class:`~dho.errors.DataError` naming the file and the keys.

Every table and figure is derived from the resulting ``runs.csv`` only.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from ..errors import DataError
from ..rundir import INVALID, METRICS_FILE, inspect_run, is_superseded
from ..split import label_kind_rank, label_level
from .heads import single_head_method
from .tidy import TidyTable

#: Columns of ``runs.csv``, in order (DESIGN.md, "runs.csv").
RUNS_COLUMNS = (
    "suite", "dataset", "labels", "label_count", "student", "teacher", "method", "seed",
    "test_acc", "test_acc_ce", "test_acc_kd", "val_acc", "alpha", "beta", "best_epoch",
    "teacher_test_acc", "grad_cosine_mean", "grad_cos_theta_mean", "grad_cos_w_mean", "grad_inner_mean",
    "wall_time_s", "gpu_hours", "spec_hash",
    "git_commit", "mlflow_run_id", "slurm_job_id", "run_dir",
)

_OPTIONAL_ID_KEYS = ("git_commit", "mlflow_run_id", "slurm_job_id")
#: Columns read back as text (so that e.g. a teacher named "none" or a job id stays as is).
_TEXT_COLUMNS = ("suite", "dataset", "labels", "student", "teacher", "method", "spec_hash",
                 "git_commit", "mlflow_run_id", "slurm_job_id", "run_dir")
#: Prefix of the runs.csv columns holding the method's resolved arguments (``arg_lam``, ...).
ARG_PREFIX = "arg_"
#: Row order of runs.csv.
SORT_KEYS = ["dataset", "student", "teacher", "method", "label_count", "labels", "seed", "spec_hash"]


class IncompleteRunWarning(UserWarning):
    """A run directory is not done (no, unparsable or incomplete ``metrics.json``)."""


class DuplicateRunWarning(UserWarning):
    """The same spec hash was found in more than one run directory."""


def label_count(labels: str, spec: dict | None = None) -> float:
    """Numeric label level of a ``labels`` string (``4shot`` -> 4, ``1pct`` -> 1), else of
    the run's ``spec["split"]``; ``nan`` if unknown (:func:`dho.split.label_level`)."""
    return label_level(labels, spec.get("split") if isinstance(spec, dict) else None)


def label_levels(df: pd.DataFrame) -> list[str]:
    """The distinct ``labels`` of ``df`` in display order: shots, then percents, then others, by count."""
    def key(item: tuple[str, float]) -> tuple:
        labels, count = item
        kind = label_kind_rank(labels)
        return (kind, math.isnan(count), 0.0 if math.isnan(count) else count, labels)

    pairs = {(str(lab), float(c)) for lab, c in zip(df["labels"], df["label_count"])}
    return [lab for lab, _ in sorted(pairs, key=key)]


def find_run_dirs(root: str | os.PathLike) -> list[Path]:
    """Run directories under ``root``: every folder holding ``metrics.json`` or ``spec.json``.

    Copies that an MLflow store keeps as artifacts (``.../mlartifacts/...``) are not runs,
    nor the old content of a run directory that was asked to hold another spec
    (``.../superseded/...``, :func:`dho.rundir.set_aside`).
    """
    from ..tracking import is_artifact_copy

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"runs root not found or not a folder: {root}")
    found = {p.parent for name in ("metrics.json", "spec.json") for p in root.rglob(name)
             if not is_artifact_copy(p) and not is_superseded(p.relative_to(root))}
    return sorted(found)


def _skip(run_dir: Path, why: str) -> None:
    warnings.warn(f"skipping {run_dir}: {why}", IncompleteRunWarning, stacklevel=3)


def read_metrics(run_dir: str | os.PathLike) -> dict | None:
    """The run's ``metrics.json`` if the run is done (:func:`dho.rundir.inspect_run`), else
    ``None`` with a warning.

    Raises :class:`DataError` naming the file if a complete file breaks the contract
    (missing keys, wrong value types): a broken producer, not an unfinished run.
    """
    run_dir = Path(run_dir)
    state = inspect_run(run_dir)
    if state.state == INVALID:
        raise DataError(f"{run_dir / METRICS_FILE}: {state.why}")
    if not state.done:
        _skip(run_dir, state.why)
        return None
    return state.metrics


def _row(metrics: dict, suite: str, run_dir: Path) -> dict:
    row: dict[str, Any] = {k: metrics.get(k) for k in RUNS_COLUMNS if k in metrics}
    row["suite"] = suite
    row["label_count"] = label_count(metrics["labels"], metrics["spec"])
    row["run_dir"] = str(run_dir)
    for key in _OPTIONAL_ID_KEYS:
        row[key] = None if metrics[key] is None else str(metrics[key])
    if single_head_method(metrics["spec"].get("method", metrics["method"])):
        row["alpha"] = row["beta"] = None  # no head combination: left empty, not a meaningless 0 / 0.5
    # the method's resolved arguments (older runs: the spec's, unresolved): a sweep is a column
    args = metrics.get("method_args")
    if not isinstance(args, dict):
        args = metrics["spec"].get("method_args") or {}
    for name, value in args.items():
        row[f"{ARG_PREFIX}{name}"] = value
    return row


def collect_runs(run_dirs_or_root: str | os.PathLike | Iterable[str | os.PathLike],
                 suite: str) -> pd.DataFrame:
    """One row per done run (columns :data:`RUNS_COLUMNS`), sorted deterministically.

    ``run_dirs_or_root`` is either one folder searched recursively for run directories
    (:func:`find_run_dirs`) or an iterable of run directories.  A spec hash found in
    several directories gives one row: the lexicographically first directory is kept
    (:class:`DuplicateRunWarning` names the others).
    """
    if isinstance(run_dirs_or_root, (str, os.PathLike)):
        run_dirs = find_run_dirs(run_dirs_or_root)
    else:
        run_dirs = sorted({Path(d) for d in run_dirs_or_root})
    rows: dict[str, dict] = {}
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            _skip(run_dir, "not a folder")
            continue
        metrics = read_metrics(run_dir)
        if metrics is None:
            continue
        key = metrics["spec_hash"]
        if key in rows:
            warnings.warn(f"spec {key} found in {rows[key]['run_dir']} and {run_dir}; "
                          f"keeping {rows[key]['run_dir']}", DuplicateRunWarning, stacklevel=2)
            continue
        rows[key] = _row(metrics, suite, run_dir)
    df = pd.DataFrame(list(rows.values()))
    return _tidy(df.reindex(columns=list(RUNS_COLUMNS) + RUNS_TABLE.extra_columns(df)))


RUNS_TABLE = TidyTable("runs table", RUNS_COLUMNS, _TEXT_COLUMNS, ("seed",), tuple(SORT_KEYS),
                       "run `dho collect` first", extra_prefix=ARG_PREFIX)


def _tidy(df: pd.DataFrame) -> pd.DataFrame:
    return RUNS_TABLE.tidy(df)


def write_runs_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` (columns :data:`RUNS_COLUMNS`) to ``path`` atomically; returns the path."""
    return RUNS_TABLE.write(df, path)


def read_runs_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read a ``runs.csv`` written by :func:`write_runs_csv`; checks the columns."""
    return RUNS_TABLE.read(path)
