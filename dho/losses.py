"""Distillation loss.

``kd_loss(s, t, T) = T^2 * KL(softmax(t / T) || softmax(s / T))``, averaged over the batch
(Hinton et al.; the T^2 factor keeps gradient magnitudes comparable across temperatures).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """``T^2 * KL(softmax(teacher/T) || softmax(student/T))``, batch mean (a scalar tensor).

    Computed from log-softmaxes (stable for large logits); no gradient flows to the teacher.
    """
    if student_logits.shape != teacher_logits.shape or student_logits.ndim != 2:
        raise ValueError(f"kd_loss: expected student and teacher logits of the same shape [B, C], "
                         f"got {tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}")
    if not temperature > 0:
        raise ValueError(f"kd_loss: temperature must be positive, got {temperature!r}")
    dtype = torch.promote_types(torch.promote_types(student_logits.dtype, teacher_logits.dtype), torch.float32)
    log_p_student = F.log_softmax(student_logits.to(dtype) / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach().to(dtype) / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature ** 2
