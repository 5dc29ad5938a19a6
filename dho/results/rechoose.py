"""Re-choose the DHO inference rule on saved logits, without retraining.

For each dual-head run in ``runs.csv`` (a registered method with two heads unless told
otherwise) the test accuracy of four rules is computed from the run's
``logits_val.npz`` / ``logits_test.npz``:

- ``fixed``: α = 0.5, β = 1;
- ``searched``: (α, β) with the best validation accuracy on the grid, applied to test;
- ``ce_only``: the CE head alone (α = 1);
- ``kd_only``: the KD head alone (α = 0).

Written as a tidy CSV (one row per run and rule) and a Markdown table of mean ± std over
seeds per (dataset, student, teacher, labels) × rule.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..io import atomic_path, atomic_write_text
from .figures import MissingRunFileWarning
from ..inference import accuracy, combine_heads, search_alpha_beta
from .heads import dual_head_methods, load_logits
from .tables import format_cell

RULES = ("fixed", "searched", "ce_only", "kd_only")
FIXED_ALPHA, FIXED_BETA = 0.5, 1.0
RUN_KEYS = ["dataset", "labels", "label_count", "student", "teacher", "method", "seed", "spec_hash", "run_dir"]
RECHOOSE_COLUMNS = RUN_KEYS + ["rule", "alpha", "beta", "val_acc", "test_acc", "recorded_test_acc"]


def rechoose_run(val: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> list[dict]:
    """The four rules on one run's val/test logits: dicts with rule, alpha, beta, val_acc, test_acc."""
    _, best_alpha, best_beta = search_alpha_beta(val["ce"], val["kd"], val["labels"])
    out = []
    for rule, alpha, beta in (("fixed", FIXED_ALPHA, FIXED_BETA), ("searched", best_alpha, best_beta)):
        out.append({"rule": rule, "alpha": alpha, "beta": beta,
                    "val_acc": accuracy(combine_heads(val["ce"], val["kd"], alpha, beta), val["labels"]),
                    "test_acc": accuracy(combine_heads(test["ce"], test["kd"], alpha, beta), test["labels"])})
    for rule, head, alpha in (("ce_only", "ce", 1.0), ("kd_only", "kd", 0.0)):
        out.append({"rule": rule, "alpha": alpha, "beta": math.nan,
                    "val_acc": accuracy(val[head], val["labels"]),
                    "test_acc": accuracy(test[head], test["labels"])})
    return out


def rechoose(runs: pd.DataFrame, methods: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Tidy table (columns :data:`RECHOOSE_COLUMNS`) over the runs of ``methods`` with saved logits
    (default: the registered two-head methods)."""
    methods = dual_head_methods() if methods is None else methods
    records = []
    for _, row in runs[runs["method"].isin(methods)].iterrows():
        run_dir = Path(str(row["run_dir"]))
        files = [run_dir / "logits_val.npz", run_dir / "logits_test.npz"]
        absent = [f.name for f in files if not f.is_file()]
        if absent:
            warnings.warn(f"run {row['run_dir']} has no {', '.join(absent)}; left out of rechoose",
                          MissingRunFileWarning, stacklevel=2)
            continue
        val, test = (load_logits(f) for f in files)
        base = {k: row[k] for k in RUN_KEYS}
        for result in rechoose_run(val, test):
            records.append({**base, **result, "recorded_test_acc": row["test_acc"]})
    return pd.DataFrame(records, columns=RECHOOSE_COLUMNS)


def to_markdown(table: pd.DataFrame) -> str:
    """Mean ± std test accuracy over seeds, rows (dataset, student, teacher, labels), columns rules."""
    lines = ["# Re-chosen inference rule on saved logits (test accuracy, %)", "",
             f"- fixed: alpha={FIXED_ALPHA:g}, beta={FIXED_BETA:g}; searched: best (alpha, beta) on val "
             "applied to test; ce_only / kd_only: one head", "- mean ± std over seeds (n = seeds)", ""]
    if table.empty:
        return "\n".join(lines + ["No dual-head run with saved logits."]) + "\n"
    keys = ["dataset", "student", "teacher", "method", "labels"]
    lines.append("| " + " | ".join(keys + list(RULES)) + " |")
    lines.append("|" + "|".join(["---"] * len(keys) + ["---:"] * len(RULES)) + "|")
    ordered = table.sort_values(["dataset", "student", "teacher", "method", "label_count", "labels"],
                                kind="mergesort")
    for group_keys, group in ordered.groupby(keys, sort=False):
        cells = []
        for rule in RULES:
            v = group.loc[group["rule"] == rule, "test_acc"].to_numpy(dtype=np.float64)
            cells.append(format_cell(float(v.mean()) if len(v) else math.nan,
                                     float(v.std(ddof=1)) if len(v) > 1 else math.nan, len(v)))
        lines.append("| " + " | ".join([*map(str, group_keys), *cells]) + " |")
    return "\n".join(lines) + "\n"


def write_rechoose(runs: pd.DataFrame, out_csv: str | os.PathLike,
                   methods: tuple[str, ...] | None = None) -> list[Path]:
    """Write the tidy CSV to ``out_csv`` and the Markdown table next to it (``.md``)."""
    out_csv = Path(out_csv)
    table = rechoose(runs, methods)
    with atomic_path(out_csv) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    out_md = out_csv.with_suffix(".md")
    atomic_write_text(out_md, to_markdown(table))
    return [out_csv, out_md]
