"""Figures from ``runs.csv`` (matplotlib, Agg backend), each written as PDF and PNG.

- ``accuracy_vs_labels``: test accuracy against the label level, one panel per
  (dataset, student, teacher), one line per method with a ± std band over seeds, the
  teacher's own accuracy dashed.
- ``alpha_beta_surface``: mean validation accuracy over the (α, β) grid, computed from
  the DHO runs' saved ``logits_val.npz``; one heatmap per dataset, the best pair marked.
- ``grad_cosine``: the cosine between the supervised and distillation gradients w.r.t.
  the shared feature activations (``grad_cosine.csv``), against the fraction of training
  done; one panel per (label level, teacher), one line per method (mean over runs and
  datasets, ± std band).
- ``gradient_conflict``: the paper's Fig. 3 quantities (:mod:`dho.conflict`,
  ``gradient_conflict.csv``): CosSim over the feature extractor's parameters, over the
  head weights, and (p̂ − y)ᵀ(p̂ − p); one panel each, one line per method.

Method colours, markers, names and legend order come from :mod:`dho.results.style`, so
a method looks the same in every figure whatever other methods are present. Panel titles
use display names (``zero-shot``, ``Tip-Adapter-F``, ``4 shots``). :data:`CAPTIONS` says
in one sentence what each figure shows (the HTML report's captions say the same).

A figure whose data is absent (no DHO run, no cosine logged) is still written, with a
note saying what is missing, so that the workflow's outputs always exist.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from ..io import atomic_path, atomic_write_text
from .collect import label_levels
from .heads import ALPHAS, BETAS, accuracy_grid, dual_head_methods, load_logits
from .style import (dataset_label, labels_label, method_style, order_methods, student_label,
                    teacher_label, teacher_sort_key)
from .tables import NO_TEACHER, assign_teacher_blocks

#: Points on the common "fraction of training" axis of the gradient-cosine figure.
PROGRESS_POINTS = 50


class MissingRunFileWarning(UserWarning):
    """A run listed in runs.csv lacks a file a figure or table uses; that run is left out."""


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


#: The formats every figure is written in (PDF for papers, PNG for the report and README).
FORMATS = ("pdf", "png")


def save_figure(fig, stem: Path) -> list[Path]:
    """Write ``fig`` as ``stem.pdf`` and ``stem.png`` (atomically); returns the paths."""
    plt = _pyplot()
    paths = []
    for fmt in FORMATS:
        path = stem.with_name(f"{stem.name}.{fmt}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=120, bbox_inches="tight",
                        metadata={"CreationDate": None} if fmt == "pdf" else None)
        paths.append(path)
    plt.close(fig)
    return paths


def _plot_method(ax, x, stats: pd.DataFrame, method: str, label: str | None = None, marker: bool = True) -> None:
    """One method's mean line (its colour and marker) with a ± std band."""
    style = method_style(method)
    ax.plot(x, stats["mean"], color=style.color, marker=style.marker if marker else None,
            label=label or style.label, zorder=3 if method == "dho" else 2)
    ax.fill_between(x, stats["mean"] - stats["std"].fillna(0), stats["mean"] + stats["std"].fillna(0),
                    color=style.color, alpha=0.2, linewidth=0)


def _empty_figure(title: str, message: str):
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 2.5))
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True)
    return fig


def _grid(n: int, max_cols: int = 4, size: tuple[float, float] = (4.0, 3.2)):
    plt = _pyplot()
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False,
                             layout="constrained")
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat[:n])


def _level_axis(group: pd.DataFrame) -> tuple[list[str], dict[str, float]]:
    """Label levels in order and their x position (the label count, or the rank if counts are
    unknown or ambiguous, e.g. 1shot and 1pct in one panel)."""
    levels = label_levels(group)
    counts = group.drop_duplicates("labels").set_index("labels")["label_count"]
    known = counts.notna().all() and counts.is_unique
    xs = {lab: (float(counts[lab]) if known else float(i)) for i, lab in enumerate(levels)}
    return levels, xs


# --------------------------------------------------------------------------- (a)
def _block_title(dataset: str, student: str, teacher: str) -> str:
    teacher_part = "no teacher" if teacher == NO_TEACHER else f"{teacher_label(teacher)} teacher"
    return f"{dataset_label(dataset)}, {student_label(student)}\n{teacher_part}"


def accuracy_vs_labels(runs: pd.DataFrame):
    """Figure (a): accuracy vs label level per (dataset, student, teacher) block."""
    title = "Test accuracy against the number of labels"
    if runs.empty:
        return _empty_figure(title, "no finished runs")
    blocks = assign_teacher_blocks(runs)
    keys = ["dataset", "student", "teacher"]
    groups = sorted(blocks.groupby(keys, sort=True), key=lambda g: (g[0][0], g[0][1], teacher_sort_key(g[0][2])))
    fig, axes = _grid(len(groups))
    for ax, ((dataset, student, teacher), group) in zip(axes, groups):
        levels, xs = _level_axis(group)
        for method in order_methods(group["method"]):
            sub = group[group["method"] == method]
            stats = sub.groupby("labels")["test_acc"].agg(["mean", "std"]).reindex(levels).dropna(subset=["mean"])
            _plot_method(ax, [xs[lab] for lab in stats.index], stats, method)
        # teacher-less runs were copied into this block with no teacher_test_acc: dropped here
        teacher_acc = (group.dropna(subset=["teacher_test_acc"]).drop_duplicates(["labels", "seed"])
                       .groupby("labels")["teacher_test_acc"].mean().reindex(levels).dropna())
        if teacher != NO_TEACHER and not teacher_acc.empty:
            ax.plot([xs[lab] for lab in teacher_acc.index], teacher_acc.to_numpy(), "k--",
                    label=f"teacher ({teacher_label(teacher)})")
        ticks = [labels_label(lab) for lab in levels]
        ax.set_xticks([xs[lab] for lab in levels], ticks)
        if len(levels) > 1 and all(v > 0 for v in xs.values()) and max(xs.values()) / min(xs.values()) > 8:
            ax.set_xscale("log")
            ax.set_xticks([xs[lab] for lab in levels], ticks)
            ax.minorticks_off()
        ax.set_title(_block_title(dataset, student, teacher), fontsize=9)
        ax.set_xlabel("labeled images per class" if all("shot" in lab for lab in levels) else "labels")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title} (mean ± std over seeds)")
    return fig


# --------------------------------------------------------------------------- (b)
def _run_dir(row: pd.Series) -> Path:
    return Path(str(row["run_dir"]))


def alpha_beta_grids(runs: pd.DataFrame, split: str = "val",
                     methods: tuple[str, ...] | None = None) -> dict[str, list[np.ndarray]]:
    """Per dataset, the accuracy grid ``[len(ALPHAS), len(BETAS)]`` of each run of ``methods``
    (default: the registered two-head methods)."""
    methods = dual_head_methods() if methods is None else methods
    grids: dict[str, list[np.ndarray]] = {}
    for _, row in runs[runs["method"].isin(methods)].iterrows():
        file = _run_dir(row) / f"logits_{split}.npz"
        if not file.is_file():
            warnings.warn(f"run {row['run_dir']} has no {file.name}; left out of the (alpha, beta) surface",
                          MissingRunFileWarning, stacklevel=2)
            continue
        logits = load_logits(file)
        grids.setdefault(row["dataset"], []).append(
            accuracy_grid(logits["ce"], logits["kd"], logits["labels"]))
    return grids


def alpha_beta_surface(runs: pd.DataFrame, methods: tuple[str, ...] | None = None):
    """Figure (b): heatmap of mean validation accuracy over (α, β), best pair marked, per dataset."""
    methods = dual_head_methods() if methods is None else methods
    title = "DHO: validation accuracy of the combined heads over (α, β)"
    grids = alpha_beta_grids(runs, "val", methods)
    if not grids:
        return _empty_figure(title, f"no {'/'.join(methods)} run with logits_val.npz")
    fig, axes = _grid(len(grids), max_cols=3, size=(4.2, 5.0))
    for ax, (dataset, runs_grids) in zip(axes, sorted(grids.items())):
        mean = np.mean(runs_grids, axis=0)
        image = ax.imshow(mean, origin="lower", aspect="auto", cmap="viridis")
        i, j = np.unravel_index(int(np.argmax(mean)), mean.shape)
        ax.plot(j, i, marker="*", color="red", markersize=14, markeredgecolor="white")
        ax.set_xticks(range(len(BETAS)), [f"{b:g}" for b in BETAS])
        ax.set_yticks(range(0, len(ALPHAS), 4), [f"{ALPHAS[k]:g}" for k in range(0, len(ALPHAS), 4)])
        ax.set_xlabel("β (KD-head temperature)")
        ax.set_ylabel("α (weight of the CE head)")
        ax.set_title(f"{dataset_label(dataset)} ({len(runs_grids)} runs)\nbest α={ALPHAS[i]:g}, β={BETAS[j]:g}: "
                     f"{mean[i, j]:.1f} %", fontsize=9)
        fig.colorbar(image, ax=ax, label="mean validation accuracy (%)")
    fig.suptitle(title)
    return fig


# --------------------------------------------------------------------------- (c)
def _read_series(path: str | os.PathLike, columns: tuple[str, ...]) -> pd.DataFrame:
    """A run's per-step CSV with ``columns`` (the first is ``step``), rows with a finite
    step kept (other values may be NaN), sorted by step."""
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame({c: [] for c in columns})
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not a readable CSV: {e}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {', '.join(missing)}; expected {', '.join(columns)}")
    df = df[list(columns)].apply(pd.to_numeric, errors="coerce").astype(float)  # header-only: object dtype
    return df[np.isfinite(df["step"])].sort_values("step", kind="mergesort")


def read_grad_cosine(path: str | os.PathLike) -> pd.DataFrame:
    """A run's ``grad_cosine.csv`` (columns step, cosine), finite rows only, sorted by step."""
    df = _read_series(path, ("step", "cosine"))
    return df[np.isfinite(df["cosine"])]


CURVE_KEYS = ["dataset", "labels", "label_count", "teacher", "method", "run_dir"]


def _progress_curves(runs: pd.DataFrame, filename: str, read, values: tuple[str, ...],
                     points: int) -> pd.DataFrame:
    """Each run's ``values`` (from ``read(run_dir / filename)``) interpolated onto ``points``
    fractions of training in [0, 1]; runs without the file (or an empty one) left out."""
    grid = np.linspace(0.0, 1.0, points)
    records = []
    for _, row in runs.iterrows():
        file = _run_dir(row) / filename
        if not file.is_file():
            continue
        curve = read(file)
        if curve.empty:
            continue
        steps = curve["step"].to_numpy(dtype=np.float64)
        progress = steps / steps.max() if steps.max() > 0 else np.zeros_like(steps)
        base = {k: row[k] for k in CURVE_KEYS}
        interp = {}
        for name in values:
            ok = np.isfinite(curve[name].to_numpy(dtype=np.float64))
            interp[name] = (np.interp(grid, progress[ok], curve[name].to_numpy(dtype=np.float64)[ok])
                            if ok.any() else np.full(points, np.nan))
        records += [{**base, "progress": p, **{n: interp[n][i] for n in values}} for i, p in enumerate(grid)]
    return pd.DataFrame(records, columns=CURVE_KEYS + ["progress", *values])


def cosine_curves(runs: pd.DataFrame, points: int = PROGRESS_POINTS) -> pd.DataFrame:
    """Each run's cosine interpolated onto ``points`` fractions of training in [0, 1].

    Columns: dataset, labels, label_count, teacher, method, run_dir, progress, cosine.
    Runs without a (non-empty) ``grad_cosine.csv`` are left out.
    """
    return _progress_curves(runs, "grad_cosine.csv", read_grad_cosine, ("cosine",), points)


#: The paper's Fig. 3 quantities (dho.conflict), as logged in ``gradient_conflict.csv``.
CONFLICT_QUANTITIES = {
    "cos_theta": "CosSim(∇θ L_CE, ∇θ L_KD)  (feature extractor)",
    "cos_w": "CosSim(∇W L_CE, ∇W L_KD)  (head weights)",
    "inner": "(p̂ − y)ᵀ(p̂ − p)",
}


def conflict_curves(runs: pd.DataFrame, points: int = PROGRESS_POINTS) -> pd.DataFrame:
    """Each run's ``gradient_conflict.csv`` (step, cos_theta, cos_w, inner) on the
    fraction-of-training axis (columns: CURVE_KEYS, progress, the three quantities)."""
    columns = ("step", *CONFLICT_QUANTITIES)
    return _progress_curves(runs, "gradient_conflict.csv", lambda f: _read_series(f, columns),
                            tuple(CONFLICT_QUANTITIES), points)


def gradient_conflict(runs: pd.DataFrame):
    """The paper's Fig. 3, per label level and teacher: a row of panels per (teacher, label
    level), one panel per quantity of :data:`CONFLICT_QUANTITIES`, one line per method (mean ±
    std over the runs of that cell, all datasets) against the fraction of training done."""
    title = "Gradient conflict (the paper's Fig. 3)"
    curves = conflict_curves(runs)
    if curves.empty:
        return _empty_figure(title, "no run logged gradient_conflict.csv")
    cells = [(t, lab) for t in sorted(curves["teacher"].unique(), key=teacher_sort_key)
             for lab in label_levels(curves) if ((curves["teacher"] == t) & (curves["labels"] == lab)).any()]
    fig, axes = _grid(len(cells) * len(CONFLICT_QUANTITIES), max_cols=len(CONFLICT_QUANTITIES))
    panels = ((cell, q) for cell in cells for q in CONFLICT_QUANTITIES.items())
    for ax, ((teacher, labels), (name, label)) in zip(axes, panels):
        cell = curves[(curves["teacher"] == teacher) & (curves["labels"] == labels)]
        for method in order_methods(cell["method"]):
            stats = cell[cell["method"] == method].groupby("progress")[name].agg(["mean", "std"])
            _plot_method(ax, stats.index.to_numpy(), stats, method, marker=False)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_title(f"{label}\n{labels_label(labels)}, {teacher_label(teacher)} teacher", fontsize=9)
        ax.set_xlabel("fraction of training done")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title}: mean ± std over the runs of each label level and teacher "
                 f"({curves['run_dir'].nunique()} runs); below 0 = conflict")
    return fig


def grad_cosine(runs: pd.DataFrame):
    """Figure (c), as the paper's Fig. 3: gradient cosine over training, one panel per
    (label level, teacher), one line per method (mean ± std over runs of all datasets)."""
    title = "Gradient conflict: cosine between the supervised and distillation gradients"
    curves = cosine_curves(runs)
    if curves.empty:
        return _empty_figure(title, "no run logged grad_cosine.csv")
    levels = label_levels(curves)
    teachers = sorted(curves["teacher"].unique(), key=teacher_sort_key)
    fig, axes = _grid(len(levels) * len(teachers), max_cols=len(levels))
    datasets = ", ".join(dataset_label(d) for d in sorted(curves["dataset"].unique()))
    for k, (teacher, labels) in enumerate((t, lab) for t in teachers for lab in levels):
        ax = axes[k]
        panel = curves[(curves["teacher"] == teacher) & (curves["labels"] == labels)]
        for method in order_methods(panel["method"]):
            sub = panel[panel["method"] == method]
            stats = sub.groupby("progress")["cosine"].agg(["mean", "std"])
            n_runs = sub["run_dir"].nunique()
            label = f"{method_style(method).label} ({n_runs} run{'s' if n_runs > 1 else ''})"
            _plot_method(ax, stats.index.to_numpy(), stats, method, label=label, marker=False)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_title(f"{labels_label(labels)}, {teacher_label(teacher)} teacher", fontsize=9)
        ax.set_xlabel("fraction of training done")
        ax.set_ylabel("cos(∇ supervised, ∇ distillation)")
        ax.grid(alpha=0.3)
        if not panel.empty:
            ax.legend(fontsize=7)
    fig.suptitle(f"{title}\nw.r.t. the shared feature; mean ± std over runs ({datasets}); below 0 = conflict")
    return fig


#: Figure name -> function building it from runs.csv.
FIGURES = {
    "accuracy_vs_labels": accuracy_vs_labels,
    "alpha_beta_surface": alpha_beta_surface,
    "grad_cosine": grad_cosine,
    "gradient_conflict": gradient_conflict,
}

#: What each figure shows, in one sentence: written to ``captions.md`` next to the figures, and
#: the HTML report's captions (workflow/report/figures.rst) say the same (a test checks it).
CAPTIONS = {
    "accuracy_vs_labels": "Test accuracy (%) of each method against the number of labels, one panel per "
                          "dataset, student and teacher; mean ± std over seeds, the teacher's own accuracy "
                          "dashed.",
    "alpha_beta_surface": "DHO's validation accuracy (%) for each inference pair (α = weight of the CE head, "
                          "β = temperature of the KD head), mean over runs per dataset; the star marks the best "
                          "pair.",
    "grad_cosine": "Gradient conflict (the paper's Fig. 3): cosine between the gradients of the supervised "
                   "and the distillation loss w.r.t. the shared feature over training, one panel per label "
                   "level and teacher; below zero the two signals pull the features apart.",
    "gradient_conflict": "The paper's Fig. 3 quantities over training: cosine of the CE and KD gradients over "
                         "the feature extractor's parameters and over the head weights, and (p̂ − y)ᵀ(p̂ − p); "
                         "one row of panels per label level and teacher, mean ± std over its runs per method.",
}


def write_figures(runs: pd.DataFrame, out_dir: str | os.PathLike) -> list[Path]:
    """Write every figure of :data:`FIGURES` into ``out_dir`` as PDF and PNG; returns the paths."""
    out_dir = Path(out_dir)
    paths = [path for name, make in FIGURES.items() for path in save_figure(make(runs), out_dir / name)]
    captions = out_dir / "captions.md"
    atomic_write_text(captions, "".join(f"- `{name}`: {text}\n" for name, text in CAPTIONS.items()))
    return paths + [captions]
