"""Hard pseudo-labels from the teacher (FixMatch-style confidence threshold), one head.

``L = lam * CE(h(z_l), y) + (1 - lam) * [PL(h(z_l), t_l) + PL(h(z_u), t_u)]`` with
``PL(s, t) = mean_i 1[max softmax(t_i) >= threshold] * CE(s_i, argmax t_i)`` (the mean is
over the whole batch, as in FixMatch, Sohn et al. 2020, Eq. 4).
"""

from __future__ import annotations

import torch.nn.functional as F

from .base import LAM, Arg, TeacherMethod, number_in, register


@register
class PseudoLabel(TeacherMethod):
    name = "pseudo_label"
    heads = 1
    description = ("hard pseudo-labels: lam*CE(h(z_l),y) + (1-lam)*[CE(h(z_l),argmax t_l) + "
                   "CE(h(z_u),argmax t_u)], teacher confidence >= threshold")
    args = (LAM, Arg("threshold", 0.0, number_in(0, 1, hi_open=True), "a number in [0, 1)",
                     "minimum teacher confidence for a pseudo-label"))

    def distill(self, student_logits, teacher_logits, args):
        teacher_logits = teacher_logits.detach()
        confidence, target = teacher_logits.float().softmax(dim=-1).max(dim=-1)
        keep = (confidence >= args["threshold"]).to(student_logits.dtype)
        per_image = F.cross_entropy(student_logits, target, reduction="none")
        return (per_image * keep).sum() / student_logits.shape[0]
