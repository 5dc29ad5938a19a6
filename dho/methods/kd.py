"""CE+KD (logit): single-head KD (DHO paper, Sec. 2.1, Eqs. 1-2; Chen et al. 2020).

``L = lam * CE(h(z_l), y) + (1 - lam) * [KD(h(z_l), t_l) + KD(h(z_u), t_u)]`` with
``KD(s, t) = T^2 * KL(softmax(t/T) || softmax(s/T))`` (:func:`dho.losses.kd_loss`).
"""

from __future__ import annotations

from .base import TeacherMethod, register


@register
class SingleHeadKD(TeacherMethod):
    name = "kd"
    heads = 1
    description = "single-head KD: lam*CE(h(z_l),y) + (1-lam)*[KD(h(z_l),t_l) + KD(h(z_u),t_u)]"
