"""Out-of-distribution evaluations (``dho evaluate`` records) -> ``evals.csv`` -> OOD table.

``collect_evals`` reads evaluation JSON files into one tidy table (one row per run and
evaluation dataset, columns :data:`EVALS_COLUMNS`); ``write_ood_tables`` derives the
protocol-3 table from that file only, as ``ood.md`` / ``ood.csv`` / ``ood.tex``:

- one row per (labels, student, teacher, method), grouped in blocks of (labels, student);
- one column for the runs' own (in-distribution) test set, then one per evaluation dataset
  (ImageNet-V2, -Sketch, -A, -R first, others by name), then ``OOD avg``;
- a cell is the mean ± std over seeds (``n`` = seeds).  ``OOD avg`` is averaged per seed
  over every evaluation dataset of the table (a seed missing one of them is left out),
  then over seeds;
- bold = best method of its (labels, student) block in that column.

A file in the evaluations folder that is not a complete evaluation record (unreadable
JSON, missing keys, wrong types) is a :class:`~dho.errors.DataError` naming the file:
evaluation records are written atomically, so there are no partial ones.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..errors import DataError
from ..io import atomic_path, atomic_write_text
from .tidy import TidyTable
from .collect import label_count, label_levels
from .style import dataset_label, sort_frame, labels_label, method_label, student_label, teacher_label
from .tables import format_cell
from .writers import latex_escape, latex_tabular, markdown_document

#: Columns of ``evals.csv``, in order.
EVALS_COLUMNS = (
    "suite", "from_suite", "dataset", "labels", "label_count", "student", "teacher", "method", "seed",
    "eval_dataset", "test_acc", "test_acc_ce", "test_acc_kd", "n_images", "n_classes", "alpha", "beta",
    "source_test_acc", "spec_hash", "run_dir", "eval_file",
)
_TEXT_COLUMNS = ("suite", "from_suite", "dataset", "labels", "student", "teacher", "method", "eval_dataset",
                 "spec_hash", "run_dir", "eval_file")
_INT_COLUMNS = ("seed", "n_images", "n_classes")
_STRING_KEYS = ("dataset", "labels", "student", "teacher", "method", "spec_hash", "eval_dataset")
_NUMBER_KEYS = ("test_acc", "test_acc_ce", "test_acc_kd", "alpha", "beta", "source_test_acc")
#: May be null: a zero-shot teacher's record (``dho evaluate-teacher``) has no heads nor (alpha, beta).
_NULLABLE_KEYS = ("test_acc_ce", "test_acc_kd", "alpha", "beta")
_COUNT_KEYS = ("seed", "n_images", "n_classes")
SORT_KEYS = ["label_count", "labels", "dataset", "student", "teacher", "method", "seed", "eval_dataset",
             "spec_hash"]
#: Column order of the OOD table: these first (in this order), then other datasets by name.
OOD_ORDER = ("imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r")
AVG_COLUMN = "OOD avg"
BLOCK_KEYS = ["labels", "student"]
ROW_KEYS = ["labels", "student", "teacher", "method"]
#: Columns of the tidy ``ood.csv``.
CELL_COLUMNS = ["labels", "label_count", "student", "teacher", "method", "column", "kind", "mean", "std", "n",
                "best"]


class DuplicateEvalWarning(UserWarning):
    """The same (spec hash, evaluation dataset) was found in more than one file."""


# --------------------------------------------------------------------------- collect
def find_eval_files(root: str | os.PathLike) -> list[Path]:
    """Every ``*.json`` under ``root`` (recursively), sorted."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"evaluations folder not found or not a folder: {root}")
    return sorted(p for p in root.rglob("*.json") if p.is_file() and not p.name.startswith("."))


def read_eval(path: str | os.PathLike) -> dict[str, Any]:
    """One evaluation record written by ``dho evaluate``; DataError naming the file if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"evaluation file not found: {path}")
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"evaluation file {path} is not valid JSON: {e}") from None
    if not isinstance(rec, dict) or rec.get("status") != "complete":
        raise DataError(f"evaluation file {path} is not a complete `dho evaluate` record (key 'status')")
    missing = [k for k in (*_STRING_KEYS, *_NUMBER_KEYS, *_COUNT_KEYS, "suite") if k not in rec]
    if missing:
        raise DataError(f"evaluation file {path} lacks key(s) {', '.join(missing)}")
    bad = [f"'{k}' = {rec[k]!r}: expected a non-empty string" for k in _STRING_KEYS
           if not (isinstance(rec[k], str) and rec[k])]
    bad += [f"'{k}' = {rec[k]!r}: expected a number" for k in _NUMBER_KEYS
            if not (isinstance(rec[k], (int, float)) and not isinstance(rec[k], bool))
            and not (rec[k] is None and k in _NULLABLE_KEYS)]
    bad += [f"'{k}' = {rec[k]!r}: expected an integer" for k in _COUNT_KEYS
            if not (isinstance(rec[k], int) and not isinstance(rec[k], bool))]
    if bad:
        raise DataError(f"evaluation file {path}: key {'; key '.join(bad)}")
    return rec


def collect_evals(files: Iterable[str | os.PathLike], suite: str | None = None) -> pd.DataFrame:
    """One row per evaluation record (columns :data:`EVALS_COLUMNS`), sorted.

    ``suite`` fills the ``suite`` column (the evaluation suite); by default the run's own
    suite tag.  The same (spec hash, evaluation dataset) in several files gives one row
    (the lexicographically first file; :class:`DuplicateEvalWarning` names the others).
    """
    rows: dict[tuple[str, str], dict] = {}
    for path in sorted({Path(f) for f in files}):
        rec = read_eval(path)
        key = (rec["spec_hash"], rec["eval_dataset"])
        if key in rows:
            warnings.warn(f"evaluation of spec {key[0]} on {key[1]} found in {rows[key]['eval_file']} and {path}; "
                          f"keeping {rows[key]['eval_file']}", DuplicateEvalWarning, stacklevel=2)
            continue
        row = {k: rec.get(k) for k in EVALS_COLUMNS if k in rec}
        row["from_suite"] = rec.get("suite")
        row["suite"] = suite if suite is not None else rec.get("suite")
        row["label_count"] = label_count(rec["labels"], {"split": rec.get("split")})
        row["eval_file"] = str(path)
        rows[key] = row
    return _tidy(pd.DataFrame(list(rows.values()), columns=list(EVALS_COLUMNS)))


EVALS_TABLE = TidyTable("evaluations table", EVALS_COLUMNS, _TEXT_COLUMNS, _INT_COLUMNS, tuple(SORT_KEYS),
                        "run `dho collect-evals` first")


def _tidy(df: pd.DataFrame) -> pd.DataFrame:
    return EVALS_TABLE.tidy(df)


def write_evals_csv(df: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``df`` (columns :data:`EVALS_COLUMNS`) to ``path`` atomically."""
    return EVALS_TABLE.write(df, path)


def read_evals_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Read an ``evals.csv`` written by :func:`write_evals_csv`; checks the columns."""
    return EVALS_TABLE.read(path)


# --------------------------------------------------------------------------- table
def eval_columns(evals: pd.DataFrame) -> list[str]:
    """Evaluation datasets in table order: :data:`OOD_ORDER` first, then the rest by name."""
    present = set(evals["eval_dataset"])
    return [d for d in OOD_ORDER if d in present] + sorted(present - set(OOD_ORDER))


def _stats(values: Iterable[float]) -> tuple[float, float, int]:
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=np.float64)
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else math.nan), len(v)


def ood_cells(evals: pd.DataFrame) -> pd.DataFrame:
    """Tidy OOD table: one row per (labels, student, teacher, method) and column.

    ``kind`` is ``source`` (the runs' own test set, named by their dataset), ``eval``
    (an evaluation dataset) or ``avg`` (:data:`AVG_COLUMN`).
    """
    if evals.empty:
        raise DataError("no evaluations in the evaluations table: nothing to tabulate")
    datasets = eval_columns(evals)
    records = []
    for keys, group in evals.groupby(ROW_KEYS, sort=False):
        base = dict(zip(ROW_KEYS, keys), label_count=group["label_count"].iloc[0])
        per_run = group.drop_duplicates("spec_hash")
        for source, sub in per_run.groupby("dataset", sort=True):
            mean, std, n = _stats(sub["source_test_acc"])
            records.append({**base, "column": f"{source} (ID)", "kind": "source", "mean": mean, "std": std, "n": n})
        for d in datasets:
            mean, std, n = _stats(group.loc[group["eval_dataset"] == d, "test_acc"])
            records.append({**base, "column": d, "kind": "eval", "mean": mean, "std": std, "n": n})
        per_seed = []
        for _, run in group.groupby("spec_hash", sort=True):
            acc = run.drop_duplicates("eval_dataset").set_index("eval_dataset")["test_acc"]
            if all(d in acc.index for d in datasets):
                per_seed.append(float(np.mean([acc[d] for d in datasets])))
        mean, std, n = _stats(per_seed)
        records.append({**base, "column": AVG_COLUMN, "kind": "avg", "mean": mean, "std": std, "n": n})
    cells = pd.DataFrame(records)
    cells["best"] = False
    for _, group in cells[cells["mean"].notna()].groupby(BLOCK_KEYS + ["column"], sort=False):
        top = group["mean"].max()
        cells.loc[group.index[np.isclose(group["mean"], top, rtol=0, atol=1e-9)], "best"] = True
    levels = {lab: i for i, lab in enumerate(label_levels(evals))}
    order = cells.assign(_lab=cells["labels"].map(levels))
    order = sort_frame(order, ["_lab", "student", "teacher", "method"])
    return order.drop(columns="_lab").reset_index(drop=True)[CELL_COLUMNS]


def _column_order(cells: pd.DataFrame) -> list[str]:
    src = sorted(set(cells.loc[cells["kind"] == "source", "column"]))
    ev = [c for c in dict.fromkeys(cells.loc[cells["kind"] == "eval", "column"])]
    return src + ev + [AVG_COLUMN]


def _display(cells: pd.DataFrame, pm: str, bold, escape) -> pd.DataFrame:
    """One text row per (labels, student, teacher, method); display names from the style table."""
    columns = _column_order(cells)
    names = {"labels": labels_label, "student": student_label, "teacher": teacher_label, "method": method_label}
    rows = []
    for keys, group in cells.groupby(ROW_KEYS, sort=False):
        by_col = {r["column"]: r for _, r in group.iterrows()}
        row = {k: escape(names[k](v)) for k, v in zip(ROW_KEYS, keys)}
        for c in columns:
            r = by_col.get(c)
            text = format_cell(r["mean"], r["std"], int(r["n"]), pm=pm) if r is not None else "–"
            row[escape(_column_label(c))] = bold(text) if r is not None and r["best"] else text
        rows.append(row)
    return pd.DataFrame(rows)


def _column_label(column: str) -> str:
    source = column.removesuffix(" (ID)")
    return f"{dataset_label(source)} (ID)" if source != column else (
        column if column == AVG_COLUMN else dataset_label(column))


def to_markdown(cells: pd.DataFrame, title: str, notes: list[str]) -> str:
    frame = _display(cells, "±", lambda t: f"**{t}**", str)
    return markdown_document(title, notes, frame, len(ROW_KEYS))


def to_latex(cells: pd.DataFrame, title: str) -> str:
    frame = _display(cells, "$\\pm$", lambda t: f"\\textbf{{{t}}}", latex_escape).replace("–", "--")
    return latex_tabular(frame, BLOCK_KEYS, len(ROW_KEYS),
                         f"{latex_escape(title)} -- generated by `dho ood-tables`")


def write_ood_tables(evals: pd.DataFrame, out_dir: str | os.PathLike, name: str = "ood") -> list[Path]:
    """Write ``NAME.md``, ``NAME.csv`` and ``NAME.tex`` into ``out_dir``; return the paths."""
    out_dir = Path(out_dir)
    cells = ood_cells(evals)
    suites = sorted(set(evals["suite"].dropna()))
    sources = sorted(set(evals["from_suite"].dropna()))
    title = f"{', '.join(suites) or 'evals'}: out-of-distribution test accuracy"
    notes = ["test accuracy (%) of the best checkpoint with the run's chosen (α, β): mean ± std over "
             "seeds (n = seeds); bold = best method of the (labels, student) block",
             "(ID): the runs' own test set; datasets covering part of the classes (ImageNet-A/-R) are "
             "scored over their classes only",
             f"{AVG_COLUMN}: mean over {', '.join(eval_columns(evals))} per seed, then over seeds"]
    if sources:
        notes.append(f"runs of suite(s) {', '.join(sources)}")
    paths = [out_dir / f"{name}.{ext}" for ext in ("md", "csv", "tex")]
    atomic_write_text(paths[0], to_markdown(cells, title, notes))
    with atomic_path(paths[1]) as tmp:
        cells.to_csv(tmp, index=False, float_format="%.6g")
    atomic_write_text(paths[2], to_latex(cells, title))
    return paths
