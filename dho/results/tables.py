"""The paper's comparison tables from ``runs.csv``: Markdown, CSV and LaTeX (booktabs).

Two tables per suite, each written as ``NAME.md`` (formatted), ``NAME.tex`` (booktabs
``tabular``, ready to paste), ``NAME.html`` (a page, shown by the HTML report) and
``NAME.csv`` (tidy numbers, one row per cell). Names,
colours and order come from :mod:`dho.results.style` (methods in the paper's order):

- ``comparison``: blocks of (dataset, student, teacher); one row per method plus the
  teacher's own accuracy; one column per label level.  A cell is the mean ± std over
  seeds, with the number of seeds, ``71.3 ± 0.4 (n=3)``, unless every cell has the same
  number (then it is said once in the notes); the best method of a block and
  column is bold.  Wherever a reported number (``reported.csv``) matches a cell, rows
  ``reported`` and ``Δ reported`` (reproduced − reported) follow the method's row.
- ``summary``: mean over datasets of the per-dataset means, per (student, teacher,
  method) × label level; ``n`` counts datasets.  Written only when there is more than one
  dataset (with one it would repeat ``comparison``).

Block keys with one value in the whole table (one dataset, one student) are said once in
the title instead of a column.

Methods that use no teacher (teacher ``none``, e.g. the CE baseline) are shown in every
teacher block of their dataset and student, so that they are compared with each one.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..io import atomic_path, atomic_write_text
from .collect import label_levels
from .reported import find_reported
from .style import dataset_label, labels_label, method_label, sort_frame, student_label, teacher_label
from .writers import html_document, latex_escape, latex_tabular, markdown_document

BLOCK_KEYS = ["dataset", "student", "teacher"]
NO_TEACHER = "none"
TEACHER_ROW = "teacher"

#: Columns of the tidy ``*.csv`` tables.
CELL_COLUMNS = ["dataset", "student", "teacher", "row", "method", "labels", "label_count",
                "mean", "std", "n", "best", "reported", "diff", "reported_source"]


# --------------------------------------------------------------------------- numbers
def assign_teacher_blocks(runs: pd.DataFrame) -> pd.DataFrame:
    """Repeat teacher-less runs (teacher ``none``) in each teacher block of their dataset/student."""
    parts = [runs[runs["teacher"] != NO_TEACHER]]
    teacherless = runs[runs["teacher"] == NO_TEACHER]
    for (dataset, student), group in teacherless.groupby(["dataset", "student"], sort=True):
        teachers = sorted(set(parts[0].loc[(parts[0]["dataset"] == dataset)
                                           & (parts[0]["student"] == student), "teacher"]))
        for teacher in teachers or [NO_TEACHER]:
            parts.append(group.assign(teacher=teacher))
    return pd.concat(parts, ignore_index=True)


def _stats(values: pd.Series) -> tuple[float, float, int]:
    v = values.dropna().to_numpy(dtype=np.float64)
    if len(v) == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else math.nan, len(v)


def _mark_best(cells: pd.DataFrame, group_keys: list[str]) -> pd.Series:
    """True for method cells whose mean is the highest of their block and label level."""
    is_method = cells["row"] == "method"
    best = pd.Series(False, index=cells.index)
    for _, group in cells[is_method & cells["mean"].notna()].groupby(group_keys + ["labels"], sort=False):
        top = group["mean"].max()
        best[group.index[np.isclose(group["mean"], top, rtol=0, atol=1e-9)]] = True
    return best


def _add_reported(cells: pd.DataFrame, reported: pd.DataFrame | None) -> pd.DataFrame:
    cells = cells.assign(reported=math.nan, diff=math.nan, reported_source="")
    if reported is None or reported.empty:
        return cells
    for idx, cell in cells[cells["row"] == "method"].iterrows():
        match = find_reported(reported, cell["dataset"], cell["labels"], cell["student"],
                              cell["teacher"], cell["method"])
        if match is not None:
            cells.loc[idx, "reported"] = float(match["value"])
            cells.loc[idx, "diff"] = cell["mean"] - float(match["value"])
            cells.loc[idx, "reported_source"] = str(match["source"])
    return cells


def comparison_cells(runs: pd.DataFrame, reported: pd.DataFrame | None = None) -> pd.DataFrame:
    """Tidy comparison table: one row per (block, row, label level), columns :data:`CELL_COLUMNS`.

    ``row`` is ``"method"`` (test accuracy of ``method`` over seeds) or ``"teacher"``
    (``teacher_test_acc`` of the block's teacher, one value per seed and label level).
    """
    if runs.empty:
        raise DataError("no finished runs in the runs table: nothing to tabulate")
    blocks = assign_teacher_blocks(runs)
    records = []
    for keys, group in blocks.groupby(BLOCK_KEYS + ["method", "labels"], sort=True):
        mean, std, n = _stats(group["test_acc"])
        records.append(dict(zip(BLOCK_KEYS + ["method", "labels"], keys), row="method",
                            label_count=group["label_count"].iloc[0], mean=mean, std=std, n=n))
    with_teacher = runs[runs["teacher"] != NO_TEACHER]
    for keys, group in with_teacher.groupby(BLOCK_KEYS + ["labels"], sort=True):
        per_seed = group.dropna(subset=["teacher_test_acc"]).drop_duplicates("seed")
        if per_seed.empty:
            continue
        mean, std, n = _stats(per_seed["teacher_test_acc"])
        records.append(dict(zip(BLOCK_KEYS + ["labels"], keys), row="teacher", method=keys[2],
                            label_count=group["label_count"].iloc[0], mean=mean, std=std, n=n))
    cells = pd.DataFrame(records)
    cells["best"] = _mark_best(cells, BLOCK_KEYS)
    cells = _add_reported(cells, reported)
    return _sort_cells(cells, BLOCK_KEYS)[CELL_COLUMNS]


def summary_cells(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean over datasets of the per-dataset means, per (student, teacher, row, method, labels).

    ``n`` is the number of datasets averaged; ``std`` is the spread over datasets.
    """
    per_dataset = comparison_cells(runs)
    records = []
    for keys, group in per_dataset.groupby(["student", "teacher", "row", "method", "labels"], sort=True):
        mean, std, n = _stats(group["mean"])
        records.append(dict(zip(["student", "teacher", "row", "method", "labels"], keys),
                            dataset="all", label_count=group["label_count"].iloc[0],
                            mean=mean, std=std, n=n))
    cells = pd.DataFrame(records)
    cells["best"] = _mark_best(cells, ["student", "teacher"])
    cells = cells.assign(reported=math.nan, diff=math.nan, reported_source="")
    return _sort_cells(cells, ["student", "teacher"])[CELL_COLUMNS]


def _sort_cells(cells: pd.DataFrame, block_keys: list[str]) -> pd.DataFrame:
    """Blocks, then the teacher row, then methods in the style table's (the paper's) order."""
    order = cells.assign(_teacher_first=(cells["row"] != TEACHER_ROW).astype(int))
    order = sort_frame(order, block_keys + ["_teacher_first", "method", "labels"])
    return order.drop(columns="_teacher_first")


# --------------------------------------------------------------------------- formatting
def format_cell(mean: float, std: float, n: int, pm: str = "±", show_n: bool = True) -> str:
    """``71.3 ± 0.4 (n=3)``; ``71.3 (n=1)`` for one value; ``–`` for none; no ``(n=..)`` if not ``show_n``."""
    if n == 0 or mean is None or math.isnan(mean):
        return "–"
    count = f" (n={n})" if show_n else ""
    if n == 1 or std is None or math.isnan(std):
        return f"{mean:.1f}{count}"
    return f"{mean:.1f} {pm} {std:.1f}{count}"


def _format_diff(diff: float) -> str:
    return "–" if math.isnan(diff) else f"{diff:+.1f}"


_KEY_LABELS = {"dataset": dataset_label, "student": student_label, "teacher": teacher_label}


def constant_keys(cells: pd.DataFrame, block_keys: list[str]) -> list[str]:
    """Block keys with one value in the whole table: said once in the title, not in a column."""
    return [k for k in block_keys if cells[k].nunique() == 1]


def uniform_n(cells: pd.DataFrame) -> int | None:
    """The number of values behind every method cell, if it is the same for all of them."""
    counts = set(cells.loc[(cells["row"] == "method") & (cells["n"] > 0), "n"].astype(int))
    return counts.pop() if len(counts) == 1 else None


def _row_name(row_kind: str, method: str, teacher: str, teacher_shown: bool) -> str:
    """A method's display name; ``teacher`` for the teacher row (with its name if no column says it)."""
    if row_kind != TEACHER_ROW:
        return method_label(method)
    return "teacher" if teacher_shown else f"teacher ({teacher_label(teacher)})"


def display_frames(cells: pd.DataFrame, block_keys: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The Markdown and LaTeX display tables of ``cells`` (in their order) and their key columns.

    Key columns: the block keys that vary, then ``method``; one value column per label
    level (``1 shot``, ``4 shots``, ``1 %``). Reported rows follow their method's row.
    """
    levels = label_levels(cells)
    keys = [k for k in block_keys if k not in constant_keys(cells, block_keys)]
    show_n = uniform_n(cells) is None
    md_rows, tex_rows = [], []
    for block, block_cells in cells.groupby(block_keys, sort=False):
        block = dict(zip(block_keys, block if isinstance(block, tuple) else (block,)))
        shown_keys = {k: _KEY_LABELS.get(k, str)(block[k]) for k in keys}
        tex_keys = {k: latex_escape(v) for k, v in shown_keys.items()}
        for (row_kind, method), sub in block_cells.groupby(["row", "method"], sort=False):
            by_label = {r["labels"]: r for _, r in sub.iterrows()}
            name = _row_name(row_kind, method, block.get("teacher", ""), "teacher" in keys)
            md, tex = {}, {}
            for lab, r in by_label.items():
                text_md = format_cell(r["mean"], r["std"], int(r["n"]), show_n=show_n)
                text_tex = format_cell(r["mean"], r["std"], int(r["n"]), pm="$\\pm$", show_n=show_n)
                md[lab], tex[lab] = ((f"**{text_md}**", f"\\textbf{{{text_tex}}}") if r["best"]
                                     else (text_md, text_tex))
            md_rows.append({**shown_keys, "method": name, **md})
            tex_rows.append({**tex_keys, "method": latex_escape(name), **tex})
            matched = {lab: r for lab, r in by_label.items() if not math.isnan(r["reported"])}
            if matched:
                for suffix, value in (("reported", lambda r: f"{r['reported']:.1f}"),
                                      ("Δ reported", lambda r: _format_diff(r["diff"]))):
                    row = {lab: value(r) for lab, r in matched.items()}
                    md_rows.append({**shown_keys, "method": f"{name} ({suffix})", **row})
                    tex_rows.append({**tex_keys, "method": latex_escape(f"{name} ({suffix})").replace(
                        "Δ", "$\\Delta$"), **{lab: v.replace("–", "--") for lab, v in row.items()}})
    columns = keys + ["method"] + levels
    frames = [pd.DataFrame(rows, columns=columns).fillna(empty) for rows, empty in ((md_rows, "–"), (tex_rows, "--"))]
    for frame in frames:
        frame.columns = keys + ["method"] + [labels_label(lab) for lab in levels]
    return frames[0], frames[1], keys


def to_markdown(cells: pd.DataFrame, block_keys: list[str], title: str, notes: list[str]) -> str:
    """A Markdown document: title, notes and one pipe table (``DataFrame.to_markdown``)."""
    frame, _, keys = display_frames(cells, block_keys)
    return markdown_document(title, notes, frame, len(keys) + 1)


def to_latex(cells: pd.DataFrame, block_keys: list[str], title: str) -> str:
    """A booktabs ``tabular`` (``Styler.to_latex``): block keys once per block, ``\\midrule`` between blocks."""
    _, frame, keys = display_frames(cells, block_keys)
    return latex_tabular(frame, keys, len(keys) + 1, f"{latex_escape(title)} -- generated by `dho tables`")


def table_title(cells: pd.DataFrame, block_keys: list[str], what: str) -> str:
    """``what``, then the values of the block keys that are the same on every row."""
    fixed = [_KEY_LABELS[k](cells[k].iloc[0]) for k in constant_keys(cells, block_keys)
             if k in _KEY_LABELS and cells[k].iloc[0] != "all"]
    return what + (f" ({', '.join(fixed)})" if fixed else "")


def _spread_note(cells: pd.DataFrame, over: str) -> str:
    n = uniform_n(cells)
    if n is None:
        return f"mean ± std over {over} (n = {over})"
    return f"mean ± std over {n} {over}" if n > 1 else f"one {over[:-1]} per cell"


# --------------------------------------------------------------------------- writing
def _write_csv(cells: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        cells.to_csv(tmp, index=False, float_format="%.6g")


def _write_table(out_dir: Path, name: str, cells: pd.DataFrame, keys: list[str], title: str,
                 notes: list[str]) -> list[Path]:
    paths = [out_dir / f"{name}.{ext}" for ext in ("md", "csv", "tex", "html")]
    atomic_write_text(paths[0], to_markdown(cells, keys, title, notes))
    _write_csv(cells, paths[1])
    atomic_write_text(paths[2], to_latex(cells, keys, title))
    frame, _, shown_keys = display_frames(cells, keys)
    atomic_write_text(paths[3], html_document(title, notes, frame, len(shown_keys) + 1))
    return paths


def write_tables(runs: pd.DataFrame, out_dir: str | os.PathLike,
                 reported: pd.DataFrame | None = None) -> list[Path]:
    """Write ``comparison.{md,csv,tex}`` into ``out_dir``, and ``summary.{md,csv,tex}`` when the
    runs cover more than one dataset (with one, the summary would repeat the comparison)."""
    out_dir = Path(out_dir)
    suites = sorted(set(runs["suite"].dropna())) if "suite" in runs else []
    suite = ", ".join(suites) or "runs"
    comparison = comparison_cells(runs, reported)
    sources = sorted(set(comparison["reported_source"]) - {""})
    notes = [f"test accuracy (%): {_spread_note(comparison, 'seeds')}; bold = best method of the block "
             "and label level",
             "methods without a teacher are repeated in each teacher block of their dataset/student",
             "teacher rows: the teacher's own test accuracy"]
    notes += ["reported / Δ reported (reproduced − reported): " + s for s in sources]
    written = _write_table(out_dir, "comparison", comparison, BLOCK_KEYS,
                           table_title(comparison, BLOCK_KEYS, f"{suite}: test accuracy"), notes)
    if comparison["dataset"].nunique() < 2:
        for stale in (out_dir / f"summary.{ext}" for ext in ("md", "csv", "tex", "html")):
            stale.unlink(missing_ok=True)
        return written
    summary = summary_cells(runs)
    summary_notes = [f"mean over datasets of the per-dataset mean test accuracy (%), "
                     f"{_spread_note(summary, 'datasets')}; bold = best method of the block and label level"]
    return written + _write_table(out_dir, "summary", summary, ["student", "teacher"],
                                  table_title(summary, ["student", "teacher"],
                                              f"{suite}: mean test accuracy over datasets"), summary_notes)
