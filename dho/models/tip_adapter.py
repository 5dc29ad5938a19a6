"""Fitting Tip-Adapter-F (Zhang et al. 2022) on the labeled shots of a zero-shot teacher.

Follows the reference implementation: cache keys = L2-normalised image features of the
labeled shots averaged over ``augment_epochs`` augmented passes, values = one-hot labels;
the keys are fine-tuned with AdamW (eps 1e-4, cosine schedule) on the augmented shots with
the dataset's initial ``(init_alpha, init_beta)``; the epoch with the best validation
accuracy is kept (Tip-Adapter's code keeps the best epoch on the TEST features: listed in
docs/DEVIATIONS.md); then (alpha_tip, beta_tip) are searched on validation over the
dataset's grid.  Per-dataset settings (:func:`tip_adapter_settings`) are the DHO authors'
``configs/<dataset>.yaml``, shipped as ``tip_adapter_settings.json``.  Loaders yield
``(x01, label, index)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError
from .teachers import TipAdapterTeacher, ZeroShotTeacher

SETTINGS_FILE = Path(__file__).with_name("tip_adapter_settings.json")
SETTING_KEYS = ("init_alpha", "init_beta", "search_scale", "search_step", "epochs", "augment_epochs", "lr")


def tip_adapter_settings(dataset: str) -> dict:
    """The authors' Tip-Adapter-F settings for ``dataset`` (registry name); the ``default``
    entry for a dataset they did not run."""
    table = json.loads(SETTINGS_FILE.read_text())
    return {k: table.get(dataset, table["default"])[k] for k in SETTING_KEYS}


def search_grid(scale: float, steps: int) -> list[float]:
    """Tip-Adapter's ``search_hp`` grid: ``0.1 + i * (scale - 0.1) / steps`` for ``i < steps``."""
    return [0.1 + i * (scale - 0.1) / steps for i in range(steps)]


def default_betas() -> list[float]:
    """The ``default`` beta grid: 200 values from 0.1 to ~7 (search_scale 7, step 200)."""
    return search_grid(7, 200)


def default_alphas() -> list[float]:
    """The ``default`` alpha grid: 20 values from 0.1 to ~3 (search_scale 3, step 20)."""
    return search_grid(3, 20)


def _cache_logits(features: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, beta: float) -> torch.Tensor:
    return torch.exp(-beta * (1.0 - features @ keys.t())) @ values


def _check_labels(labels: torch.Tensor, num_classes: int, what: str) -> None:
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(f"{what}: labels must lie in [0, {num_classes - 1}], "
                        f"got {int(labels.min())}..{int(labels.max())}")


def encode_loader(teacher: ZeroShotTeacher, loader: Iterable, desc: str, progress: bool = True):
    """Features [N, D], labels [N] and dataset indices [N] of one pass over ``loader``."""
    from tqdm.auto import tqdm

    feats, labels, indices = [], [], []
    for x01, y, idx in tqdm(loader, desc=desc, unit="batch", disable=not progress, leave=False):
        feats.append(teacher.encode(x01))
        labels.append(torch.as_tensor(y).long().view(-1))
        indices.append(torch.as_tensor(idx).long().view(-1))
    if not feats:
        raise DataError(f"{desc}: the loader yielded no images")
    return torch.cat(feats), torch.cat(labels).to(teacher.device), torch.cat(indices)


def build_cache(teacher: ZeroShotTeacher, loader: Iterable, augment_epochs: int = 10, progress: bool = True):
    """Cache keys [N, D] (normalised mean of ``augment_epochs`` augmented passes, aligned by
    dataset index, so the loader may shuffle) and one-hot values [N, C]."""
    total, labels, order = None, None, None
    for epoch in range(augment_epochs):
        f, y, idx = encode_loader(teacher, loader, f"cache {epoch + 1}/{augment_epochs}", progress)
        idx_sorted, perm = torch.sort(idx)
        if order is None:
            order, labels, total = idx_sorted, y[perm], torch.zeros_like(f)
        elif not torch.equal(order, idx_sorted):
            raise DataError("Tip-Adapter cache: the labeled loader yielded different images in two passes")
        total += f[perm]
    _check_labels(labels, teacher.num_classes, "Tip-Adapter labeled shots")
    keys = F.normalize(total / augment_epochs, dim=-1)
    return keys, F.one_hot(labels, teacher.num_classes).float()


def _accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * (logits.argmax(dim=-1) == labels).float().mean().item()


def search_tip_params(clip_logits: torch.Tensor, features: torch.Tensor, keys: torch.Tensor,
                      values: torch.Tensor, labels: torch.Tensor, alphas: Sequence[float],
                      betas: Sequence[float], progress: bool = True) -> tuple[float, float, float]:
    """Best ``(accuracy %, alpha_tip, beta_tip)`` on the given features (beta outer loop,
    alpha inner; ties keep the first pair)."""
    from tqdm.auto import tqdm

    affinity = features @ keys.t()
    best = (-1.0, float(alphas[0]), float(betas[0]))
    for beta in tqdm(betas, desc="Tip-Adapter search", unit="beta", disable=not progress, leave=False):
        cache = torch.exp(-float(beta) * (1.0 - affinity)) @ values
        for alpha in alphas:
            acc = _accuracy(clip_logits + float(alpha) * cache, labels)
            if acc > best[0]:
                best = (acc, float(alpha), float(beta))
    return best


def fit_tip_adapter_f(base: ZeroShotTeacher, labeled_loader: Iterable, val_loader: Iterable, *,
                      augment_epochs: int = 10, epochs: int = 20, lr: float = 1e-3,
                      init_alpha: float = 1.0, init_beta: float = 1.0,
                      alphas: Sequence[float] | None = None, betas: Sequence[float] | None = None,
                      progress: bool = True, epoch_loader: Iterable | None = None) -> TipAdapterTeacher:
    """Fit Tip-Adapter-F on ``labeled_loader`` (augmented shots), choosing on ``val_loader``;
    fine-tuning uses ``(init_alpha, init_beta)``, the search ``alphas`` x ``betas``.
    ``epoch_loader``: choose the fine-tuning epoch on these images instead of val (Tip-Adapter's
    code passes its test set: docs/DEVIATIONS.md)."""
    from tqdm.auto import tqdm

    keys, values = build_cache(base, labeled_loader, augment_epochs, progress)
    val_f, val_y, _ = encode_loader(base, val_loader, "val features", progress)
    _check_labels(val_y, base.num_classes, "Tip-Adapter validation")
    val_clip = base.clip_logits(val_f)
    sel_f, sel_y = val_f, val_y
    if epoch_loader is not None:
        sel_f, sel_y, _ = encode_loader(base, epoch_loader, "epoch-choice features", progress)
    sel_clip = base.clip_logits(sel_f)

    adapter_keys = nn.Parameter(keys.clone())
    optimizer = torch.optim.AdamW([adapter_keys], lr=lr, eps=1e-4)
    steps = max(1, epochs * len(labeled_loader))
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    best_acc, best_keys = -1.0, keys
    for _ in tqdm(range(epochs), desc="Tip-Adapter-F", unit="epoch", disable=not progress):
        for x01, y, _idx in labeled_loader:
            f = base.encode(x01)
            y = torch.as_tensor(y).long().to(base.device)
            logits = base.clip_logits(f) + init_alpha * _cache_logits(f, adapter_keys, values, init_beta)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        with torch.no_grad():
            acc = _accuracy(sel_clip + init_alpha * _cache_logits(sel_f, adapter_keys, values, init_beta), sel_y)
        if acc > best_acc:
            best_acc, best_keys = acc, adapter_keys.detach().clone()

    _, alpha, beta = search_tip_params(val_clip, val_f, best_keys, values, val_y,
                                       list(alphas) if alphas is not None else default_alphas(),
                                       list(betas) if betas is not None else default_betas(), progress)
    return TipAdapterTeacher.from_base(base, best_keys, values, alpha, beta)
