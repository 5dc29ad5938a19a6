"""DKD, alone and with DHO (DHO paper, Appendix E.3, Tables 14-15; Zhao et al. 2022,
"Decoupled Knowledge Distillation", CVPR 2022, Sec. 3.1, Eqs. 1-7).

With ``p = softmax(z / T)`` and target class ``y``: ``b = [p_y, 1 - p_y]`` (binary
target / non-target probabilities) and ``p_hat = softmax`` over the non-target classes,

``TCKD = KL(b^T || b^S)``,  ``NCKD = KL(p_hat^T || p_hat^S)``,
``DKD = T^2 * (dkd_alpha * TCKD + dkd_beta * NCKD)`` (batch mean).

DKD needs the ground-truth label, so it only sees the labeled images (Appendix E.3):

* ``dkd`` (one head): ``lam * CE(h(z_l), y) + (1 - lam) * DKD(h(z_l), t_l, y)``;
* ``dkd_dho`` (two heads; DKD "applied directly to the outputs of h_CE"):
  ``lam * CE(h_CE(z_l), y) + (1 - lam) * [DKD(h_CE(z_l), t_l, y) + KD(h_KD(z_l), t_l) + KD(h_KD(z_u), t_u)]``.

Defaults ``dkd_alpha = 1``, ``dkd_beta = 8``, ``T = 4`` are DKD's CIFAR-100 setting
(its Sec. 4); DKD's linear warm-up of the DKD weight over the first epochs is not used.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import KD_TEMPERATURE, LAM, POSITIVE, Arg, LabeledDistillMethod, number_in, register

DKD_ARGS = (
    LAM,
    Arg("temperature", 4.0, number_in(0, math.inf, lo_open=True, hi_open=True), "a positive number",
        "DKD temperature T"),
    Arg("dkd_alpha", 1.0, POSITIVE, "a number >= 0", "weight of TCKD (target class)"),
    Arg("dkd_beta", 8.0, POSITIVE, "a number >= 0", "weight of NCKD (non-target classes)"),
)


def dkd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor,
             alpha: float, beta: float, temperature: float) -> torch.Tensor:
    """``T^2 * (alpha * TCKD + beta * NCKD)``, batch mean (Zhao et al. 2022, Eq. 7)."""
    s = student_logits.float() / temperature
    t = teacher_logits.detach().float() / temperature
    target = F.one_hot(labels, s.shape[-1]).bool()
    log_ps, log_pt = F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1)
    # binary (target, rest) distributions in log space
    lb_s = torch.stack([log_ps[target], torch.log1p(-log_ps[target].exp().clamp(max=1 - 1e-7))], dim=-1)
    lb_t = torch.stack([log_pt[target], torch.log1p(-log_pt[target].exp().clamp(max=1 - 1e-7))], dim=-1)
    tckd = (lb_t.exp() * (lb_t - lb_s)).sum(-1)
    # non-target distributions: softmax with the target logit masked out
    masked = torch.finfo(s.dtype).min
    lq_s = F.log_softmax(s.masked_fill(target, masked), dim=-1)
    lq_t = F.log_softmax(t.masked_fill(target, masked), dim=-1)
    q_t = lq_t.exp().masked_fill(target, 0.0)
    nckd = (q_t * (lq_t - lq_s).masked_fill(target, 0.0)).sum(-1)
    return temperature ** 2 * (alpha * tckd + beta * nckd).mean()


@register
class DKD(LabeledDistillMethod):
    name = "dkd"
    heads = 1
    args = DKD_ARGS
    description = "DKD (labeled images only): lam*CE(h(z_l),y) + (1-lam)*DKD(h(z_l),t_l,y)"

    def label_distill(self, batch):
        a = batch.args
        return dkd_loss(batch.out_l.ce, batch.t_l, batch.labels, a["dkd_alpha"], a["dkd_beta"], a["temperature"])


@register
class DKDWithDHO(DKD):
    name = "dkd_dho"
    heads = 2
    with_dho = True
    args = DKD_ARGS + (KD_TEMPERATURE,)
    description = ("DKD+DHO: lam*CE(h_CE(z_l),y) + (1-lam)*[DKD(h_CE(z_l),t_l,y) + KD(h_KD(z_l),t_l) + "
                   "KD(h_KD(z_u),t_u)], KD at kd_temperature")
