"""DHKD (Yang et al., 2024d, "Dual-Head Knowledge Distillation: Enhancing Logits
Utilization with an Auxiliary Head", arXiv 2411.08937), as the DHO paper uses it
(Table 1, "Dual-head KD methods"; Appendix A: "introduces binary KD loss working on
logits before softmax ... inference using only single prediction head h_CE").

The CE head learns from the labels; an auxiliary head learns the teacher's logits
through the logit-level BinaryKL loss (per class, a Bernoulli KL on the sigmoid of the
logit difference; the authors' public ``BinaryKLNorm``):

``BinaryKL(s, t) = T^2 / N * sum_i sum_c KL(Bern(1/2) || Bern(sigmoid((s_ic - t_ic) / T)))``,
zero iff ``s = t``; the sigmoid is clamped to ``[1e-8, 1 - 1e-8]`` (in log space: in float32
``1 - 1e-8`` rounds to 1, so a clamp of the probability would still give ``log(0)`` for a
logit gap beyond ~17 T).

``L = lam * CE(h_CE(z_l), y) + (1 - lam) * [BinaryKL(h_aux(z_l), t_l) + BinaryKL(h_aux(z_u), t_u)]``;
inference: ``h_CE`` alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import TeacherMethod, register

EPS = 1e-8


def binary_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``T^2 / N * sum KL(Bern(1/2) || Bern(sigmoid((s - t) / T)))`` over images and classes."""
    z = (student_logits.float() - teacher_logits.detach().float()) / temperature
    floor = math.log(EPS)
    log_d = F.logsigmoid(z).clamp(min=floor)        # log sigmoid(z), clamped at log 1e-8
    log_1md = F.logsigmoid(-z).clamp(min=floor)     # log(1 - sigmoid(z)), likewise
    kl = 0.5 * (math.log(0.5) - log_d) + 0.5 * (math.log(0.5) - log_1md)
    return temperature ** 2 * kl.sum() / student_logits.shape[0]


@register
class DHKD(TeacherMethod):
    name = "dhkd"
    heads = 2
    fixed_alpha_beta = (1.0, 1.0)
    description = ("DHKD: lam*CE(h_CE(z_l),y) + (1-lam)*[BinaryKL(h_aux(z_l),t_l) + BinaryKL(h_aux(z_u),t_u)]; "
                   "predicts with h_CE")

    def distill(self, student_logits, teacher_logits, args):
        return binary_kl(student_logits, teacher_logits, args["temperature"])
