"""Figures from ``runs.csv`` (matplotlib, Agg backend, PNG).

- ``accuracy_vs_labels.png``: test accuracy against the label level, one panel per
  (dataset, student, teacher), one line per method with a ± std band over seeds, the
  teacher's own accuracy dashed.
- ``alpha_beta_surface.png``: mean validation accuracy over the (α, β) grid, computed from
  the DHO runs' saved ``logits_val.npz``; one heatmap per dataset, the best pair marked.
- ``grad_cosine.png``: cosine between the supervised and distillation gradients over
  training (``grad_cosine.csv``), one line per method (mean over runs, ± std band) against
  the fraction of training done, one panel per dataset.

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
from ..io import atomic_path
from .collect import label_levels
from .heads import ALPHAS, BETAS, accuracy_grid, dual_head_methods, load_logits
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


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


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
def accuracy_vs_labels(runs: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Figure (a): accuracy vs label level per (dataset, student, teacher) block."""
    path = Path(path)
    title = "Test accuracy vs labels"
    if runs.empty:
        return _save(_empty_figure(title, "no finished runs"), path)
    blocks = assign_teacher_blocks(runs)
    groups = list(blocks.groupby(["dataset", "student", "teacher"], sort=True))
    fig, axes = _grid(len(groups))
    methods = sorted(blocks["method"].unique())
    colors = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    for ax, ((dataset, student, teacher), group) in zip(axes, groups):
        levels, xs = _level_axis(group)
        for method, sub in group.groupby("method", sort=True):
            stats = sub.groupby("labels")["test_acc"].agg(["mean", "std"]).reindex(levels).dropna(subset=["mean"])
            x = [xs[lab] for lab in stats.index]
            ax.plot(x, stats["mean"], marker="o", color=colors[method], label=method)
            ax.fill_between(x, stats["mean"] - stats["std"].fillna(0), stats["mean"] + stats["std"].fillna(0),
                            color=colors[method], alpha=0.2, linewidth=0)
        # teacher-less runs were copied into this block with no teacher_test_acc: dropped here
        teacher_acc = (group.dropna(subset=["teacher_test_acc"]).drop_duplicates(["labels", "seed"])
                       .groupby("labels")["teacher_test_acc"].mean().reindex(levels).dropna())
        if teacher != NO_TEACHER and not teacher_acc.empty:
            ax.plot([xs[lab] for lab in teacher_acc.index], teacher_acc.to_numpy(), "k--",
                    label=f"teacher ({teacher})")
        ax.set_xticks([xs[lab] for lab in levels], levels)
        if len(levels) > 1 and all(v > 0 for v in xs.values()) and max(xs.values()) / min(xs.values()) > 8:
            ax.set_xscale("log")
            ax.set_xticks([xs[lab] for lab in levels], levels)
            ax.minorticks_off()
        ax.set_title(f"{dataset} · {student} · {teacher}", fontsize=9)
        ax.set_xlabel("labels")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title} (mean ± std over seeds)")
    return _save(fig, path)


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


def alpha_beta_surface(runs: pd.DataFrame, path: str | os.PathLike,
                       methods: tuple[str, ...] | None = None) -> Path:
    """Figure (b): heatmap of mean validation accuracy over (α, β), best pair marked, per dataset."""
    path = Path(path)
    methods = dual_head_methods() if methods is None else methods
    title = "Validation accuracy over (alpha, beta)"
    grids = alpha_beta_grids(runs, "val", methods)
    if not grids:
        return _save(_empty_figure(title, f"no {'/'.join(methods)} run with logits_val.npz"), path)
    fig, axes = _grid(len(grids), max_cols=3, size=(4.2, 5.0))
    for ax, (dataset, runs_grids) in zip(axes, sorted(grids.items())):
        mean = np.mean(runs_grids, axis=0)
        image = ax.imshow(mean, origin="lower", aspect="auto", cmap="viridis")
        i, j = np.unravel_index(int(np.argmax(mean)), mean.shape)
        ax.plot(j, i, marker="*", color="red", markersize=14, markeredgecolor="white")
        ax.set_xticks(range(len(BETAS)), [f"{b:g}" for b in BETAS])
        ax.set_yticks(range(0, len(ALPHAS), 4), [f"{ALPHAS[k]:g}" for k in range(0, len(ALPHAS), 4)])
        ax.set_xlabel("beta (KD-head temperature)")
        ax.set_ylabel("alpha (CE-head weight)")
        ax.set_title(f"{dataset} (n={len(runs_grids)} runs)\nbest alpha={ALPHAS[i]:g}, beta={BETAS[j]:g}: "
                     f"{mean[i, j]:.1f}%", fontsize=9)
        fig.colorbar(image, ax=ax, label="mean val accuracy (%)")
    fig.suptitle(title)
    return _save(fig, path)


# --------------------------------------------------------------------------- (c)
def read_grad_cosine(path: str | os.PathLike) -> pd.DataFrame:
    """A run's ``grad_cosine.csv`` (columns step, cosine), finite rows only, sorted by step."""
    path = Path(path)
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame({"step": [], "cosine": []})
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{path} is not a readable CSV: {e}") from None
    missing = [c for c in ("step", "cosine") if c not in df.columns]
    if missing:
        raise DataError(f"{path} lacks column(s) {', '.join(missing)}; expected step, cosine")
    df = df[["step", "cosine"]].apply(pd.to_numeric, errors="coerce").astype(float)  # header-only: object dtype
    return df[np.isfinite(df["step"]) & np.isfinite(df["cosine"])].sort_values("step", kind="mergesort")


def cosine_curves(runs: pd.DataFrame, points: int = PROGRESS_POINTS) -> pd.DataFrame:
    """Each run's cosine interpolated onto ``points`` fractions of training in [0, 1].

    Columns: dataset, method, run_dir, progress, cosine.  Runs without a (non-empty)
    ``grad_cosine.csv`` are left out.
    """
    grid = np.linspace(0.0, 1.0, points)
    records = []
    for _, row in runs.iterrows():
        file = _run_dir(row) / "grad_cosine.csv"
        if not file.is_file():
            continue
        curve = read_grad_cosine(file)
        if curve.empty:
            continue
        steps = curve["step"].to_numpy(dtype=np.float64)
        progress = steps / steps.max() if steps.max() > 0 else np.zeros_like(steps)
        values = np.interp(grid, progress, curve["cosine"].to_numpy(dtype=np.float64))
        records += [{"dataset": row["dataset"], "method": row["method"], "run_dir": row["run_dir"],
                     "progress": p, "cosine": v} for p, v in zip(grid, values)]
    return pd.DataFrame(records, columns=["dataset", "method", "run_dir", "progress", "cosine"])


def grad_cosine(runs: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Figure (c): gradient cosine over training, one line per method, one panel per dataset."""
    path = Path(path)
    title = "Cosine between supervised and distillation gradients"
    curves = cosine_curves(runs)
    if curves.empty:
        return _save(_empty_figure(title, "no run logged grad_cosine.csv"), path)
    datasets = sorted(curves["dataset"].unique())
    fig, axes = _grid(len(datasets))
    methods = sorted(curves["method"].unique())
    colors = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    for ax, dataset in zip(axes, datasets):
        for method, sub in curves[curves["dataset"] == dataset].groupby("method", sort=True):
            stats = sub.groupby("progress")["cosine"].agg(["mean", "std"])
            n_runs = sub["run_dir"].nunique()
            x = stats.index.to_numpy()
            ax.plot(x, stats["mean"], color=colors[method], label=f"{method} (n={n_runs})")
            ax.fill_between(x, stats["mean"] - stats["std"].fillna(0), stats["mean"] + stats["std"].fillna(0),
                            color=colors[method], alpha=0.2, linewidth=0)
        ax.axhline(0.0, color="grey", linewidth=0.8)
        ax.set_title(dataset, fontsize=9)
        ax.set_xlabel("fraction of training")
        ax.set_ylabel("cos(grad sup, grad distill)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"{title} (mean ± std over runs)")
    return _save(fig, path)


FIGURES = {
    "accuracy_vs_labels.png": accuracy_vs_labels,
    "alpha_beta_surface.png": alpha_beta_surface,
    "grad_cosine.png": grad_cosine,
}


def write_figures(runs: pd.DataFrame, out_dir: str | os.PathLike) -> list[Path]:
    """Write every figure of :data:`FIGURES` into ``out_dir``; returns the paths."""
    out_dir = Path(out_dir)
    return [make(runs, out_dir / name) for name, make in FIGURES.items()]
