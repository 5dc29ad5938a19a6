"""KD (logit) without labels: Table 1's "KD" row, 0-shot column (DHO paper, Sec. 3.1
"Baselines": "KD (logit): on unlabeled dataset D(u) with logit distillation (Eq. 2)").

``L = KD(h(z_l), t_l) + KD(h(z_u), t_u)``: every training image, the labeled shots
included, is used as an unlabeled one; the labels are never read during training (the
validation split still picks the best epoch, as for every run).
"""

from __future__ import annotations

from .base import TEMPERATURE, TeacherMethod, register


@register
class UnlabeledKD(TeacherMethod):
    name = "kd_unlabeled"
    heads = 1
    description = "KD (logit) only, no labels: KD(h(z_l),t_l) + KD(h(z_u),t_u) (Table 1's 0-shot KD)"
    args = (TEMPERATURE,)

    def loss(self, out_l, out_u, labels, t_l, t_u, **method_args):
        args = self.resolve_args(method_args)
        self._check_inputs(out_u, t_l, t_u)
        distill = self.distill_terms(out_l, out_u, t_l, t_u, args)
        return distill, {"distill": distill}
