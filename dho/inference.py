"""Test-time combination of the two heads and the (alpha, beta) search.

``p(x) = alpha * softmax(h_CE(z)) + (1 - alpha) * softmax(h_KD(z) / beta)``; (alpha, beta)
is chosen on validation from alpha in {0, 0.05, ..., 1} and beta in
{0.5, 0.75, 1, 1.25, 1.5, 2, 4}.  Inputs may be torch tensors, numpy arrays or lists.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .errors import ConfigError, DataError

DEFAULT_ALPHAS: tuple[float, ...] = tuple(round(i * 0.05, 2) for i in range(21))
DEFAULT_BETAS: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 4.0)

# at most this many elements in one [alphas, N, C] block of the vectorised search
_BLOCK_ELEMENTS = 1 << 24


def _as_tensor(x, what: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    elif isinstance(x, (list, tuple)):
        x = torch.as_tensor(x)
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{what}: expected a torch tensor, numpy array or list, got {type(x).__name__}")
    return x.detach()


def _as_logits(x, what: str) -> torch.Tensor:
    x = _as_tensor(x, what)
    if x.ndim != 2 or x.shape[0] == 0:
        raise DataError(f"{what}: expected logits of shape [N, C] with N > 0, got {tuple(x.shape)}")
    return x if x.dtype == torch.float64 else x.float()


def _as_labels(labels, n: int) -> torch.Tensor:
    y = _as_tensor(labels, "labels").long().reshape(-1)
    if y.shape[0] != n:
        raise DataError(f"labels: expected {n} labels, got {y.shape[0]}")
    return y


def accuracy(logits_or_probs, labels) -> float:
    """Top-1 accuracy in percent of ``argmax`` over the last dimension."""
    scores = _as_logits(logits_or_probs, "logits")
    y = _as_labels(labels, scores.shape[0]).to(scores.device)
    return 100.0 * (scores.argmax(dim=-1) == y).sum().item() / scores.shape[0]


def combine_heads(ce_logits, kd_logits, alpha: float, beta: float) -> torch.Tensor:
    """``alpha * softmax(ce) + (1 - alpha) * softmax(kd / beta)`` (class probabilities)."""
    ce = _as_logits(ce_logits, "ce logits")
    kd = _as_logits(kd_logits, "kd logits").to(ce)
    if ce.shape != kd.shape:
        raise DataError(f"ce logits {tuple(ce.shape)} and kd logits {tuple(kd.shape)} differ in shape")
    _check_grid([alpha], [beta])
    return alpha * ce.softmax(dim=-1) + (1 - alpha) * (kd / beta).softmax(dim=-1)


def entropy_alpha(ce_logits, kd_logits) -> torch.Tensor:
    """Per-image ``alpha = exp(-H(p_CE)) / (exp(-H(p_CE)) + exp(-H(p_KD)))`` [N] (DHO paper,
    Appendix E.4, Eq. 42; ``H(p) = -sum_c p_c log p_c``, ``p_CE = softmax(h_CE)``,
    ``p_KD = softmax(h_KD)``): the more confident head weighs more."""
    ce = _as_logits(ce_logits, "ce logits")
    kd = _as_logits(kd_logits, "kd logits").to(ce)
    if ce.shape != kd.shape:
        raise DataError(f"ce logits {tuple(ce.shape)} and kd logits {tuple(kd.shape)} differ in shape")

    def entropy(logits: torch.Tensor) -> torch.Tensor:
        log_p = logits.log_softmax(dim=-1)
        return -(log_p.exp() * log_p).sum(dim=-1)

    return torch.sigmoid(entropy(kd) - entropy(ce))  # = e^-H_ce / (e^-H_ce + e^-H_kd)


def combine_heads_entropy(ce_logits, kd_logits) -> torch.Tensor:
    """``alpha * softmax(ce) + (1 - alpha) * softmax(kd)`` with the per-image
    :func:`entropy_alpha` (Eq. 42; no beta)."""
    ce = _as_logits(ce_logits, "ce logits")
    kd = _as_logits(kd_logits, "kd logits").to(ce)
    alpha = entropy_alpha(ce, kd).unsqueeze(-1)
    return alpha * ce.softmax(dim=-1) + (1 - alpha) * kd.softmax(dim=-1)


def _check_grid(alphas: Sequence[float], betas: Sequence[float]) -> None:
    if len(alphas) == 0 or len(betas) == 0:
        raise ConfigError("alpha/beta search: expected non-empty alpha and beta grids")
    for a in alphas:
        if not 0 <= a <= 1:
            raise ConfigError(f"alpha = {a!r}: expected a number in [0, 1]")
    for b in betas:
        if not b > 0:
            raise ConfigError(f"beta = {b!r}: expected a positive number")


def search_alpha_beta(ce_logits, kd_logits, labels, alphas: Sequence[float] | None = None,
                      betas: Sequence[float] | None = None) -> tuple[float, float, float]:
    """Best ``(accuracy %, alpha, beta)`` of :func:`combine_heads` on (validation) logits.

    The grid is walked with beta as the outer and alpha as the inner loop; ties keep the
    first pair.  Predictions are exactly those of ``combine_heads(...).argmax(-1)``.

    ``alpha`` weighs the CE head, as in the method card.  The authors' ``train_others.py``
    names the KD head's weight alpha instead (``(1 - alpha) * ce + alpha * kd``), so on a
    tie their walk keeps the pair with the *most* CE weight and this one the *least*.
    Pass ``alphas=DEFAULT_ALPHAS[::-1]`` to break ties their way.
    """
    alphas = [float(a) for a in (DEFAULT_ALPHAS if alphas is None else alphas)]
    betas = [float(b) for b in (DEFAULT_BETAS if betas is None else betas)]
    _check_grid(alphas, betas)
    ce = _as_logits(ce_logits, "ce logits")
    kd = _as_logits(kd_logits, "kd logits").to(ce)
    if ce.shape != kd.shape:
        raise DataError(f"ce logits {tuple(ce.shape)} and kd logits {tuple(kd.shape)} differ in shape")
    n, c = ce.shape
    y = _as_labels(labels, n).to(ce.device)
    p_ce = ce.softmax(dim=-1)
    # per-alpha weights built from Python floats, as combine_heads computes them
    a = torch.tensor(alphas, dtype=ce.dtype, device=ce.device).view(-1, 1, 1)
    one_minus_a = torch.tensor([1 - x for x in alphas], dtype=ce.dtype, device=ce.device).view(-1, 1, 1)
    rows = max(1, _BLOCK_ELEMENTS // (len(alphas) * c))
    best = (-1, alphas[0], betas[0])
    for beta in betas:
        p_kd = (kd / beta).softmax(dim=-1)
        correct = torch.zeros(len(alphas), dtype=torch.long, device=ce.device)
        for start in range(0, n, rows):
            block = slice(start, start + rows)
            pred = (a * p_ce[block] + one_minus_a * p_kd[block]).argmax(dim=-1)  # [A, rows]
            correct += (pred == y[block]).sum(dim=1)
        for alpha, count in zip(alphas, correct.tolist()):
            if count > best[0]:
                best = (count, alpha, beta)
    return 100.0 * best[0] / n, best[1], best[2]
