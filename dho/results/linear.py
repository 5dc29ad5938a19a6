"""Linear-evaluation records (``dho linear-eval`` JSON, paper Table 5) -> ``linear_eval.csv``.

One row per evaluated run (columns :data:`LINEAR_COLUMNS`); the paper layout ``table5``
(:mod:`dho.results.paper`) reads ``linear_top1`` / ``linear_top5`` from it.  A listed file
that is not a complete record is a :class:`~dho.errors.DataError` naming the file (records
are written atomically: there are no partial ones).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from ..errors import DataError
from .collect import label_count
from .tidy import TidyTable

LINEAR_COLUMNS = ("suite", "dataset", "labels", "label_count", "student", "teacher", "method", "seed",
                  "linear_top1", "linear_top5", "source_test_acc", "n_train", "n_test", "feature_dim",
                  "spec_hash", "run_dir", "record_file")
_STRING_KEYS = ("dataset", "labels", "student", "teacher", "method", "spec_hash")
_NUMBER_KEYS = ("linear_top1", "linear_top5", "source_test_acc")
_COUNT_KEYS = ("seed", "n_train", "n_test", "feature_dim")
LINEAR_TABLE = TidyTable(
    "linear-evaluation table", LINEAR_COLUMNS,
    ("suite", "dataset", "labels", "student", "teacher", "method", "spec_hash", "run_dir", "record_file"),
    ("seed", "n_train", "n_test", "feature_dim"),
    ("label_count", "labels", "dataset", "student", "teacher", "method", "seed", "spec_hash"),
    "run `dho collect-linear-eval` first")


def read_linear_record(path: str | os.PathLike) -> dict[str, Any]:
    """One ``dho linear-eval`` record; DataError naming the file and key if it is not one."""
    path = Path(path)
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"linear-evaluation file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"linear-evaluation file {path} is not valid JSON: {e}") from None
    if not isinstance(rec, dict) or rec.get("status") != "complete":
        raise DataError(f"linear-evaluation file {path} is not a complete `dho linear-eval` record (key 'status')")
    checks = ([(k, lambda v: isinstance(v, str) and v != "", "a non-empty string") for k in _STRING_KEYS]
              + [(k, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "a number")
                 for k in _NUMBER_KEYS]
              + [(k, lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer") for k in _COUNT_KEYS])
    for key, ok, what in checks:
        if key not in rec:
            raise DataError(f"linear-evaluation file {path} lacks key '{key}'")
        if not ok(rec[key]):
            raise DataError(f"linear-evaluation file {path}: key '{key}' = {rec[key]!r}: expected {what}")
    return rec


def collect_linear(files: Iterable[str | os.PathLike], suite: str) -> pd.DataFrame:
    """One row per record (columns :data:`LINEAR_COLUMNS`), sorted; ``suite`` fills its column."""
    rows = []
    for path in sorted({Path(f) for f in files}):
        rec = read_linear_record(path)
        row = {k: rec.get(k) for k in LINEAR_COLUMNS if k in rec}
        row.update(suite=suite, label_count=label_count(rec["labels"], {}), record_file=str(path))
        rows.append(row)
    return LINEAR_TABLE.tidy(pd.DataFrame(rows, columns=list(LINEAR_COLUMNS)))


def write_linear_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    return LINEAR_TABLE.write(df, path)


def read_linear_csv(path: str | os.PathLike) -> pd.DataFrame:
    return LINEAR_TABLE.read(path)
