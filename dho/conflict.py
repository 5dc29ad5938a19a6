"""Gradient conflict between the supervised and the distillation loss (the paper's §2.2, Fig. 3).

Measured on one training step's labeled batch (``out_l``, labels ``y``, teacher logits
``t_l``) and the method's unweighted terms ``sup`` (L_CE) and ``distill`` (L_KD):

* ``cos_theta`` = CosSim(grad_theta L_CE, grad_theta L_KD) over every trainable parameter
  theta of the feature extractor ``g`` (the student's backbone), flattened together;
* ``cos_w`` = CosSim(grad_W L_CE, grad_W L_KD) over a linear head's weight W.  With one
  head (single-head KD) both gradients are of that W.  With two heads (DHO) it is the
  cosine between grad_{W_CE} L_CE and grad_{W_KD} L_KD (same shape), the counterpart of
  the paper's Eq. 7 for the heads; taken over the joint parameter [W_CE, W_KD] it would
  be exactly 0 (disjoint supports), which is the paper's "conflict disappears";
* ``inner`` = (p_hat_CE - y)^T (p_hat_KD - p), the batch mean of the paper's Eq. 3 factor,
  with p_hat_CE = softmax(h_CE(z)), p_hat_KD = softmax(h_KD(z) / T) and
  p = softmax(t / T) at the KD temperature T (the gradient of T^2 KL w.r.t. the KD logits
  is T (p_hat_KD - p)); one head: h_CE = h_KD.

For one head and a batch of one image, Eq. 3 makes ``cos_w`` = ``inner`` / (|p_hat_CE - y|
|p_hat_KD - p|) exactly (tests/test_conflict.py).  Methods without a ``distill`` term (CE)
give None.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CONFLICT_COLUMNS = ("step", "cos_theta", "cos_w", "inner")


def _flat_grad(loss: torch.Tensor, params: list[torch.Tensor]) -> torch.Tensor:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten().double() for g, p in zip(grads, params)])


def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a, b, dim=0, eps=1e-12))


def _classifier_weight(head: torch.nn.Module) -> torch.Tensor:
    """W of a linear head; of a non-linear head (a method's, e.g. DHO+NL-Head), its last linear layer's;
    of a CoOp prompt head (no linear layer), its ``weight``: the learned context vectors."""
    linear = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
    return linear[-1].weight if linear else head.weight  # a prompt head's "W": its context vectors


def gradient_conflict(student, out_l, labels: torch.Tensor, t_l: torch.Tensor | None,
                      terms: dict[str, torch.Tensor], temperature: float) -> dict[str, float] | None:
    """``{"cos_theta", "cos_w", "inner"}`` for this step (module doc), or None without both terms."""
    if "sup" not in terms or "distill" not in terms or t_l is None or not terms["sup"].requires_grad:
        return None
    theta = [p for p in student.backbone.parameters() if p.requires_grad]
    cos_theta = (_cosine(_flat_grad(terms["sup"], theta), _flat_grad(terms["distill"], theta))
                 if theta else float("nan"))
    kd_head = student.kd_head if student.kd_head is not None else student.ce_head
    cos_w = _cosine(_flat_grad(terms["sup"], [_classifier_weight(student.ce_head)]),
                    _flat_grad(terms["distill"], [_classifier_weight(kd_head)]))
    with torch.no_grad():
        y = F.one_hot(labels.long(), out_l.ce.shape[1]).to(torch.float64)
        p_ce = F.softmax(out_l.ce.double(), dim=1)
        p_kd = F.softmax(out_l.kd.double() / temperature, dim=1)
        p = F.softmax(t_l.double() / temperature, dim=1)
        inner = float(((p_ce - y) * (p_kd - p)).sum(dim=1).mean())
    return {"cos_theta": cos_theta, "cos_w": cos_w, "inner": inner}
