"""DHO: dual-head optimisation (DHO paper, Sec. 2.2, Eqs. 5-6; inference Eq. 8).

``L = lam * CE(h_CE(z_l), y) + (1 - lam) * [KD(h_KD(z_l), t_l) + KD(h_KD(z_u), t_u)]``;
at inference ``p = alpha * softmax(h_CE(z)) + (1 - alpha) * softmax(h_KD(z) / beta)``.
"""

from __future__ import annotations

from .base import TeacherMethod, register


@register
class DualHead(TeacherMethod):
    name = "dho"
    heads = 2
    description = "DHO: lam*CE(h_CE(z_l),y) + (1-lam)*[KD(h_KD(z_l),t_l) + KD(h_KD(z_u),t_u)]"
