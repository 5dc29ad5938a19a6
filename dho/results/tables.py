"""The paper's comparison tables from ``runs.csv``: Markdown, CSV and LaTeX (booktabs).

Two tables per suite, each written as ``NAME.md`` (formatted), ``NAME.tex`` (booktabs
``tabular``, ready to paste) and ``NAME.csv`` (tidy numbers, one row per cell):

- ``comparison``: blocks of (dataset, student, teacher); one row per method plus the
  teacher's own accuracy; one column per label level.  A cell is the mean ± std over
  seeds with the number of seeds, ``71.3 ± 0.4 (n=3)``; the best method of a block and
  column is bold.  Wherever a reported number (``reported.csv``) matches a cell, rows
  ``reported`` and ``Δ reported`` (reproduced − reported) follow the method's row.
- ``summary``: mean over datasets of the per-dataset means, per (student, teacher,
  method) × label level; ``n`` counts datasets.

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
    order = cells.assign(_teacher_first=(cells["row"] != TEACHER_ROW).astype(int))
    order = order.sort_values(block_keys + ["_teacher_first", "method", "label_count", "labels"],
                              kind="mergesort")
    return order.drop(columns="_teacher_first").reset_index(drop=True)


# --------------------------------------------------------------------------- formatting
def format_cell(mean: float, std: float, n: int, pm: str = "±") -> str:
    """``71.3 ± 0.4 (n=3)``; ``71.3 (n=1)`` for one value; ``–`` for none."""
    if n == 0 or mean is None or math.isnan(mean):
        return "–"
    if n == 1 or std is None or math.isnan(std):
        return f"{mean:.1f} (n={n})"
    return f"{mean:.1f} {pm} {std:.1f} (n={n})"


def _format_diff(diff: float) -> str:
    return "–" if math.isnan(diff) else f"{diff:+.1f}"


def latex_escape(text: str) -> str:
    """Escape LaTeX special characters (``_``, ``%``, ``&``, ``#``, ``$``, braces, ``~``, ``^``, ``\\``)."""
    out = []
    for ch in str(text):
        if ch == "\\":
            out.append(r"\textbackslash{}")
        elif ch in "&%$#_{}":
            out.append("\\" + ch)
        elif ch == "~":
            out.append(r"\textasciitilde{}")
        elif ch == "^":
            out.append(r"\textasciicircum{}")
        else:
            out.append(ch)
    return "".join(out)


def _wide(cells: pd.DataFrame, block_keys: list[str]) -> tuple[list[str], list[tuple[tuple, list[dict]]]]:
    """Label columns and, per block, its rows: ``{"name", "cells": {labels: (text_md, text_tex)}}``."""
    levels = label_levels(cells)
    blocks = []
    for keys, block in cells.groupby(block_keys, sort=False):
        rows = []
        for (row_kind, method), sub in block.groupby(["row", "method"], sort=False):
            by_label = {r["labels"]: r for _, r in sub.iterrows()}
            name = f"teacher ({method})" if row_kind == TEACHER_ROW else method
            main = {"name": name, "cells": {}}
            for lab, r in by_label.items():
                md = format_cell(r["mean"], r["std"], int(r["n"]))
                tex = format_cell(r["mean"], r["std"], int(r["n"]), pm="$\\pm$")
                main["cells"][lab] = (f"**{md}**", f"\\textbf{{{tex}}}") if r["best"] else (md, tex)
            rows.append(main)
            matched = {lab: r for lab, r in by_label.items() if not math.isnan(r["reported"])}
            if matched:
                rows.append({"name": f"{method} (reported)", "cells": {
                    lab: (f"{r['reported']:.1f}",) * 2 for lab, r in matched.items()}})
                rows.append({"name": f"{method} (Δ reported)", "cells": {
                    lab: (_format_diff(r["diff"]), _format_diff(r["diff"]).replace("–", "--"))
                    for lab, r in matched.items()}})
        blocks.append((keys if isinstance(keys, tuple) else (keys,), rows))
    return levels, blocks


def to_markdown(cells: pd.DataFrame, block_keys: list[str], title: str, notes: list[str]) -> str:
    """A Markdown document: title, notes and one pipe table (blocks repeated on each row)."""
    levels, blocks = _wide(cells, block_keys)
    header = block_keys + ["method"] + levels
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = [f"# {title}", ""] + [f"- {n}" for n in notes] + [""]
    lines.append("| " + " | ".join(esc(h) for h in header) + " |")
    lines.append("|" + "|".join(["---"] * (len(block_keys) + 1) + ["---:"] * len(levels)) + "|")
    for keys, rows in blocks:
        for row in rows:
            cells_md = [row["cells"].get(lab, ("–", "–"))[0] for lab in levels]
            lines.append("| " + " | ".join(esc(v) for v in [*keys, row["name"], *cells_md]) + " |")
    return "\n".join(lines) + "\n"


def to_latex(cells: pd.DataFrame, block_keys: list[str], title: str) -> str:
    """A booktabs ``tabular`` (block keys printed once per block, ``\\midrule`` between blocks)."""
    levels, blocks = _wide(cells, block_keys)
    header = [latex_escape(h) for h in block_keys + ["method"] + levels]
    lines = [f"% {latex_escape(title)} -- generated by `dho tables`; needs \\usepackage{{booktabs}}",
             "\\begin{tabular}{" + "l" * (len(block_keys) + 1) + "r" * len(levels) + "}",
             "\\toprule", " & ".join(header) + " \\\\", "\\midrule"]
    for b, (keys, rows) in enumerate(blocks):
        if b:
            lines.append("\\midrule")
        for r, row in enumerate(rows):
            key_cells = [latex_escape(k) for k in keys] if r == 0 else [""] * len(keys)
            values = [row["cells"].get(lab, ("--", "--"))[1] for lab in levels]
            name = latex_escape(row["name"]).replace("Δ", "$\\Delta$")
            lines.append(" & ".join([*key_cells, name, *values]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- writing
def _write_csv(cells: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        cells.to_csv(tmp, index=False, float_format="%.6g")


def write_tables(runs: pd.DataFrame, out_dir: str | os.PathLike,
                 reported: pd.DataFrame | None = None) -> list[Path]:
    """Write ``comparison.{md,csv,tex}`` and ``summary.{md,csv,tex}`` into ``out_dir``."""
    out_dir = Path(out_dir)
    suites = sorted(set(runs["suite"].dropna())) if "suite" in runs else []
    suite = ", ".join(suites) or "runs"
    comparison = comparison_cells(runs, reported)
    summary = summary_cells(runs)
    sources = sorted(set(comparison["reported_source"]) - {""})
    notes = ["test accuracy (%): mean ± std over seeds (n = seeds); bold = best method of the block "
             "and label level",
             "methods without a teacher are repeated in each teacher block of their dataset/student",
             "teacher rows: the teacher's own test accuracy"]
    notes += ["reported / Δ reported (reproduced − reported): " + s for s in sources]
    written = []
    for name, cells, keys, title, table_notes in (
            ("comparison", comparison, BLOCK_KEYS, f"{suite}: test accuracy per dataset", notes),
            ("summary", summary, ["student", "teacher"], f"{suite}: mean test accuracy over datasets",
             ["mean over datasets of the per-dataset mean test accuracy (%) ± std over datasets "
              "(n = datasets); bold = best method of the block and label level"])):
        paths = [out_dir / f"{name}.{ext}" for ext in ("md", "csv", "tex")]
        atomic_write_text(paths[0], to_markdown(cells, keys, title, table_notes))
        _write_csv(cells, paths[1])
        atomic_write_text(paths[2], to_latex(cells, keys, title))
        written += paths
    return written
