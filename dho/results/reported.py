"""Reported numbers (paper / authors' release) and how a reproduced cell is matched to one.

The numbers live in the package data file ``dho/results/reported.csv`` (columns
:data:`REPORTED_COLUMNS`, optional :data:`OPTIONAL_COLUMNS`, ``#`` comment lines allowed),
one row per number: all 546 numbers transcribed from the paper, keyed by table and, where
the harness has the thing, by the harness's own names (see the file's header).

Two ways to find a number:

- :func:`find_reported`: loose matching for the generic comparison tables (metric
  ``top1_acc`` only; student/teacher by words, see :func:`matches`);
- :func:`lookup`: exact, by table and keys, for the paper-layout tables
  (:mod:`dho.results.paper`).
"""

from __future__ import annotations

import math
import os
import re
from importlib import resources
from pathlib import Path

import pandas as pd

from ..errors import DataError
from ..split import label_kind_rank
from .collect import label_count

REPORTED_COLUMNS = ("table", "protocol", "dataset", "labels", "student", "teacher", "method", "metric",
                    "value", "source")
#: Kept when present: the transcription's own wording and its notes.
OPTIONAL_COLUMNS = ("paper_student", "paper_teacher", "paper_method", "note")
#: The metric of the tables' accuracy cells.
TOP1 = "top1_acc"


def default_reported_path() -> Path:
    """The packaged ``reported.csv``."""
    return Path(str(resources.files("dho.results").joinpath("reported.csv")))


def load_reported(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Reported numbers as a DataFrame with :data:`REPORTED_COLUMNS` (``value`` float)."""
    path = Path(path) if path is not None else default_reported_path()
    if not path.is_file():
        raise DataError(f"reported-numbers file not found: {path}")
    try:
        df = pd.read_csv(path, comment="#", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"reported-numbers file {path} is not a readable CSV: {e}") from None
    missing = [c for c in REPORTED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"reported-numbers file {path} lacks column(s) {', '.join(missing)}; "
                        f"expected {', '.join(REPORTED_COLUMNS)}")
    values = pd.to_numeric(df["value"], errors="coerce")
    bad = df.index[values.isna()].tolist()
    if bad:
        raise DataError(f"reported-numbers file {path}: column 'value' on data row {bad[0] + 1} "
                        f"= {df.loc[bad[0], 'value']!r}: expected a number")
    df = df.loc[:, list(REPORTED_COLUMNS) + [c for c in OPTIONAL_COLUMNS if c in df.columns]].copy()
    df["value"] = values.astype("float64")
    return df


def _norm(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", str(text).lower())


def _labels_equal(a: str, b: str) -> bool:
    if _norm(a) == _norm(b):
        return True
    ca, cb = label_count(a), label_count(b)
    return not math.isnan(ca) and ca == cb and label_kind_rank(a) == label_kind_rank(b)


def _words_in(pattern: str, name: str) -> bool:
    target = _norm(name)
    words = [_norm(w) for w in str(pattern).split()]
    return all(w in target for w in words if w)


def matches(reported_row: pd.Series | dict, dataset: str, labels: str, student: str, teacher: str,
            method: str) -> bool:
    """Whether a reported number is the one to compare with this (dataset, labels, student, teacher, method)."""
    r = reported_row
    return (_norm(r["dataset"]) == _norm(dataset) and _norm(r["method"]) == _norm(method)
            and _labels_equal(r["labels"], labels)
            and _words_in(r["student"], student) and _words_in(r["teacher"], teacher))


def find_reported(reported: pd.DataFrame, dataset: str, labels: str, student: str, teacher: str,
                  method: str) -> pd.Series | None:
    """The first reported top-1 accuracy matching the cell, or ``None``."""
    for _, row in reported[reported["metric"] == TOP1].iterrows():
        if matches(row, dataset, labels, student, teacher, method):
            return row
    return None


def lookup(reported: pd.DataFrame, table: str, metric: str = TOP1, **keys: str) -> float:
    """The one number of ``table`` whose columns equal ``keys`` exactly (``nan`` if none).

    Raises :class:`~dho.errors.DataError` when several rows match: the keys of a paper
    layout must name one number.
    """
    sel = reported[(reported["table"] == table) & (reported["metric"] == metric)]
    for column, value in keys.items():
        sel = sel[sel[column] == value]
    if len(sel) > 1:
        raise DataError(f"reported numbers: {len(sel)} rows of {table} match {keys} (metric {metric}); "
                        f"expected one")
    return float(sel["value"].iloc[0]) if len(sel) else math.nan
