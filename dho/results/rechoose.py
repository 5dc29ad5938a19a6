"""Re-choose the DHO inference rule on saved logits, without retraining.

For each dual-head run in ``runs.csv`` (a registered method with two heads unless told
otherwise) the test accuracy of five rules is computed from the run's
``logits_val.npz`` / ``logits_test.npz``:

- ``fixed``: α = 0.5, β = 1;
- ``searched``: (α, β) with the best validation accuracy on the grid, applied to test;
- ``entropy``: the entropy-adaptive α of the paper's Appendix E.4 (Eq. 42, Table 16), per
  image ``α = exp(-H(p_CE)) / (exp(-H(p_CE)) + exp(-H(p_KD)))``, β = 1;
- ``ce_only``: the CE head alone (α = 1; Fig. 6's "DHO (h_CE)");
- ``kd_only``: the KD head alone (α = 0; Fig. 6's "DHO (h_KD)").

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
from ..inference import accuracy, combine_heads, combine_heads_entropy, entropy_alpha, search_alpha_beta
from .heads import dual_head_methods, load_logits
from .style import dataset_label, labels_label, method_label, sort_frame, student_label, teacher_label
from .tables import format_cell
from .writers import markdown_document

RULES = ("fixed", "searched", "entropy", "ce_only", "kd_only")
FIXED_ALPHA, FIXED_BETA = 0.5, 1.0
RUN_KEYS = ["dataset", "labels", "label_count", "student", "teacher", "method", "seed", "spec_hash", "run_dir"]
RECHOOSE_COLUMNS = RUN_KEYS + ["rule", "alpha", "beta", "val_acc", "test_acc", "recorded_test_acc"]


def entropy_accuracy(logits: dict[str, np.ndarray]) -> float:
    """Accuracy (percent) of the entropy-adaptive rule (Eq. 42, Table 16) on one split's saved
    logits (``ce``, ``kd``, ``labels``): no retraining."""
    return accuracy(combine_heads_entropy(logits["ce"], logits["kd"]), logits["labels"])


def rechoose_run(val: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> list[dict]:
    """The rules on one run's val/test logits: dicts with rule, alpha, beta, val_acc, test_acc
    (``entropy``: alpha per image, its test-set mean is reported; beta 1)."""
    _, best_alpha, best_beta = search_alpha_beta(val["ce"], val["kd"], val["labels"])
    out = []
    for rule, alpha, beta in (("fixed", FIXED_ALPHA, FIXED_BETA), ("searched", best_alpha, best_beta)):
        out.append({"rule": rule, "alpha": alpha, "beta": beta,
                    "val_acc": accuracy(combine_heads(val["ce"], val["kd"], alpha, beta), val["labels"]),
                    "test_acc": accuracy(combine_heads(test["ce"], test["kd"], alpha, beta), test["labels"])})
    out.append({"rule": "entropy", "alpha": float(entropy_alpha(test["ce"], test["kd"]).mean()), "beta": 1.0,
                "val_acc": entropy_accuracy(val), "test_acc": entropy_accuracy(test)})
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


RULE_LABELS = {"fixed": f"fixed α={FIXED_ALPHA:g}, β={FIXED_BETA:g}", "searched": "searched on val",
               "entropy": "entropy-adaptive α",
               "ce_only": "CE head", "kd_only": "KD head"}
_KEYS = ["dataset", "student", "teacher", "method", "labels"]
_KEY_NAMES = {"dataset": dataset_label, "student": student_label, "teacher": teacher_label,
              "method": method_label, "labels": labels_label}


def display_frame(table: pd.DataFrame, show_n: bool = True) -> tuple[pd.DataFrame, list[str]]:
    """Mean ± std test accuracy over seeds per (dataset, student, teacher, method, labels) × rule,
    in the style table's order; key columns with one value in the whole table are left out."""
    keys = [k for k in _KEYS if k == "labels" or table[k].nunique() > 1]
    rows = []
    for group_keys, group in sort_frame(table, _KEYS).groupby(_KEYS, sort=False):
        row = {k: _KEY_NAMES[k](v) for k, v in zip(_KEYS, group_keys) if k in keys}
        for rule in RULES:
            v = group.loc[group["rule"] == rule, "test_acc"].to_numpy(dtype=np.float64)
            row[RULE_LABELS[rule]] = format_cell(float(v.mean()) if len(v) else math.nan,
                                                 float(v.std(ddof=1)) if len(v) > 1 else math.nan, len(v),
                                                 show_n=show_n)
        rows.append(row)
    return pd.DataFrame(rows), keys


def to_markdown(table: pd.DataFrame) -> str:
    """The Markdown document of :func:`display_frame`, with what the rules are."""
    title = "Re-chosen inference rule on saved logits (test accuracy, %)"
    notes = [f"fixed: alpha={FIXED_ALPHA:g}, beta={FIXED_BETA:g}; searched: best (alpha, beta) on val "
             "applied to test; entropy-adaptive: per-image alpha = "
             "exp(-H(p_CE)) / (exp(-H(p_CE)) + exp(-H(p_KD))), beta 1 (paper Eq. 42, Table 16); "
             "CE head / KD head: one head alone (Fig. 6)", "mean ± std over seeds (n = seeds)"]
    if table.empty:
        return markdown_document(title, notes, pd.DataFrame(), 0).replace("(no rows)", "No dual-head run with saved logits.")
    from ..protocol import val_is_test

    on_test = sorted(d for d in table["dataset"].unique() if val_is_test(str(d)))
    if on_test:
        notes.append(f"{', '.join(dataset_label(d) for d in on_test)}: val is the test set, so 'searched on "
                     "val' there chooses on the test images (an upper bound, not a result; docs/DEVIATIONS.md)")
    frame, keys = display_frame(table)
    return markdown_document(title, notes, frame, len(keys))


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
