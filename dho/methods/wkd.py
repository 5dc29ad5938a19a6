"""WKD (logit), alone and with DHO (DHO paper, Appendix E.3, Tables 14-15; Lv et al. 2024,
"Wasserstein Distance Rivals Kullback-Leibler Divergence for Knowledge Distillation",
NeurIPS 2024, Sec. 3.1 "WKD-L": discrete Wasserstein distance between the teacher's and
the student's predictions, with category interrelations as the transport cost, solved
with entropic regularisation (Sinkhorn)).

As in the authors' public WKD-L code (``wkd_logit_loss_with_speration``), the target
class and the non-target classes are separated:

``WKD(s, t, y) = -p^T_y log p^S_y + gamma * WD(q^S, q^T)``

with ``p = softmax(logits)``, ``q = softmax(logits / T)`` over the non-target classes,
and ``WD(q^S, q^T) = sum_ij F_ij C_ij`` for the Sinkhorn plan ``F`` (``sinkhorn_iter``
iterations, regularisation ``sinkhorn_lambda``) between them.  The cost is ``C = 1 -
cos(w_i, w_j)`` between the teacher's class prototypes: WKD uses the teacher classifier's
weight rows; a CLIP teacher's classifier is its text classifier, so its columns are the
prototypes (kept as a buffer in ``student.method_parts.wkd_cost``, training only).

* ``wkd`` (one head): ``lam * CE(h(z_l), y) + (1 - lam) * WKD(h(z_l), t_l, y)``;
* ``wkd_dho``: ``lam * CE(h_CE(z_l), y) + (1 - lam) * [WKD(h_CE(z_l), t_l, y) + KD(h_KD(z_l), t_l) +
  KD(h_KD(z_u), t_u)]`` (WKD on the CE head, labeled images only; Appendix E.3).

Defaults (T = 2, gamma = 1, sinkhorn_lambda = 0.05, sinkhorn_iter = 10) are this
harness's choices (docs/DEVIATIONS.md); WKD's cosine decay of gamma is not used.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import KD_TEMPERATURE, LAM, POSITIVE, Arg, LabeledDistillMethod, method_parts, number_in, register

WKD_ARGS = (
    LAM,
    Arg("temperature", 2.0, number_in(0, math.inf, lo_open=True, hi_open=True), "a positive number",
        "temperature of the non-target distributions"),
    Arg("gamma", 1.0, POSITIVE, "a number >= 0", "weight of the Wasserstein term"),
    Arg("sinkhorn_lambda", 0.05, number_in(0, math.inf, lo_open=True, hi_open=True), "a positive number",
        "entropic regularisation of Sinkhorn"),
    Arg("sinkhorn_iter", 10, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "an integer >= 1", "Sinkhorn iterations"),
)


def sinkhorn_plan(p: torch.Tensor, q: torch.Tensor, cost: torch.Tensor, reg: float, iters: int) -> torch.Tensor:
    """Entropic transport plans ``[N, K, K]`` from ``p`` [N, K] to ``q`` [N, K] under ``cost`` [N, K, K]."""
    kernel = torch.exp(-cost / reg)
    u = torch.full_like(p, 1.0 / p.shape[1]).unsqueeze(-1)
    p, q = p.unsqueeze(-1), q.unsqueeze(-1)
    for _ in range(iters):
        v = q / (kernel.transpose(1, 2) @ u + 1e-8)
        u = p / (kernel @ v + 1e-8)
    return u * kernel * v.transpose(1, 2)


def prototype_cost(prototypes: torch.Tensor) -> torch.Tensor:
    """``1 - cos(w_i, w_j)`` [C, C] between class prototypes (rows of ``prototypes``)."""
    w = F.normalize(prototypes.float(), dim=-1)
    return 1.0 - w @ w.t()


def wkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, cost: torch.Tensor,
             temperature: float, gamma: float, reg: float, iters: int) -> torch.Tensor:
    """``-p^T_y log p^S_y + gamma * WD(q^S, q^T)`` over the non-target classes (batch mean)."""
    s, t = student_logits.float(), teacher_logits.detach().float()
    n, c = s.shape
    y = labels.view(n, 1)
    target = -(F.softmax(t, dim=1).gather(1, y) * F.log_softmax(s, dim=1).gather(1, y)).mean()
    keep = torch.ones_like(s, dtype=torch.bool).scatter_(1, y, False)
    q_s = F.softmax(s[keep].view(n, c - 1) / temperature, dim=-1)
    q_t = F.softmax(t[keep].view(n, c - 1) / temperature, dim=-1)
    pair = keep.unsqueeze(1) & keep.unsqueeze(2)
    cost_nt = (F.relu(cost.to(s)) + 1e-8).expand(n, c, c)[pair].view(n, c - 1, c - 1)
    plan = sinkhorn_plan(q_s, q_t, cost_nt, reg, iters)
    return target + gamma * (plan * cost_nt).sum(dim=(1, 2)).mean()


class _CostBuffer(nn.Module):
    def __init__(self, cost: torch.Tensor):
        super().__init__()
        self.register_buffer("cost", cost)


@register
class WKD(LabeledDistillMethod):
    name = "wkd"
    heads = 1
    args = WKD_ARGS
    description = "WKD-L (labeled images only): lam*CE(h(z_l),y) + (1-lam)*WKD(h(z_l),t_l,y), Sinkhorn over non-targets"

    def setup_student(self, student, args, teacher=None):
        if teacher is None:  # evaluation: the cost is a training-only part
            return
        method_parts(student)["wkd_cost"] = _CostBuffer(prototype_cost(teacher.text_classifier.t()))

    def label_distill(self, batch):
        a = batch.args
        cost = batch.student.method_parts["wkd_cost"].cost
        return wkd_loss(batch.out_l.ce, batch.t_l, batch.labels, cost, a["temperature"], a["gamma"],
                        a["sinkhorn_lambda"], a["sinkhorn_iter"])


@register
class WKDWithDHO(WKD):
    name = "wkd_dho"
    heads = 2
    with_dho = True
    args = WKD_ARGS + (KD_TEMPERATURE,)
    description = ("WKD+DHO: lam*CE(h_CE(z_l),y) + (1-lam)*[WKD(h_CE(z_l),t_l,y) + KD(h_KD(z_l),t_l) + "
                   "KD(h_KD(z_u),t_u)], KD at kd_temperature")
