"""Saved dual-head logits: loading ``logits_*.npz`` and scoring the whole (α, β) grid.

The combination rule and the search are :mod:`dho.inference`'s (the trainer's own), so
re-choosing on saved logits reproduces a run's choice exactly.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from ..errors import CheckpointError
from ..inference import DEFAULT_ALPHAS as ALPHAS
from ..inference import DEFAULT_BETAS as BETAS
from ..inference import accuracy, combine_heads

__all__ = ["ALPHAS", "BETAS", "accuracy_grid", "dual_head_methods", "load_logits", "single_head_method"]


def dual_head_methods() -> tuple[str, ...]:
    """Registered methods with two heads (``heads == 2``) whose inference combines them (no
    ``fixed_alpha_beta``, unlike SSKD/DHKD, which predict with the CE head): the runs whose
    heads are combined."""
    from ..methods import METHODS

    return tuple(name for name in METHODS
                 if METHODS.get(name).heads == 2 and METHODS.get(name).fixed_alpha_beta is None)


def single_head_method(name: str) -> bool:
    """True for a registered method with one head (its runs combine no heads); False otherwise."""
    from ..methods import METHODS

    return name in METHODS and METHODS.get(name).heads == 1


def accuracy_grid(ce: np.ndarray, kd: np.ndarray, labels: np.ndarray,
                  alphas=ALPHAS, betas=BETAS) -> np.ndarray:
    """Accuracy (percent) of ``combine_heads`` for every pair: shape ``[len(alphas), len(betas)]``."""
    out = np.empty((len(alphas), len(betas)))
    for i, alpha in enumerate(alphas):
        for j, beta in enumerate(betas):
            out[i, j] = accuracy(combine_heads(ce, kd, alpha, beta), labels)
    return out


def load_logits(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Arrays ``ce``, ``kd``, ``labels`` of a ``logits_*.npz`` (no pickles), shapes checked."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"logits file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("ce", "kd", "labels") if k not in npz.files]
            if missing:
                raise CheckpointError(f"logits file {path} lacks array(s) {', '.join(missing)}; "
                                      f"expected ce, kd, labels")
            arrays = {k: np.asarray(npz[k]) for k in ("ce", "kd", "labels")}
    except CheckpointError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"logits file {path} is corrupt or not an .npz: {e}") from None
    ce, kd, labels = arrays["ce"], arrays["kd"], arrays["labels"]
    if ce.ndim != 2 or ce.shape != kd.shape or labels.shape != (ce.shape[0],) or ce.shape[0] == 0:
        raise CheckpointError(f"logits file {path}: expected ce and kd of one shape [N, C] (N > 0) and "
                              f"labels [N], got ce {ce.shape}, kd {kd.shape}, labels {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise CheckpointError(f"logits file {path}: expected integer labels, got {labels.dtype}")
    return arrays
