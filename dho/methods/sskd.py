"""SSKD (He et al., 2021, "Semi-Supervised Domain Generalizable Person
Re-Identification", the SSKD component), as the DHO paper uses it (Table 1, "Dual-head KD
methods"; Appendix A "Dual head approaches": "dual-heads, with each head trained on
labeled and unlabeled sets respectively ... inference using only single prediction head
h_CE").

The main head learns from the labels and from the teacher's soft predictions on the
labeled images; an auxiliary head imitates the teacher on the unlabeled images:
``L = lam * CE(h_CE(z_l), y) + (1 - lam) * [KD(h_CE(z_l), t_l) + KD(h_aux(z_u), t_u)]``.
Inference: ``h_CE`` alone (``fixed_alpha_beta = (1, 1)``); the auxiliary head is the
student's second head (saved as the ``kd`` logits).
"""

from __future__ import annotations

from .base import TeacherMethod, register


@register
class SSKD(TeacherMethod):
    name = "sskd"
    heads = 2
    fixed_alpha_beta = (1.0, 1.0)
    description = ("SSKD: lam*CE(h_CE(z_l),y) + (1-lam)*[KD(h_CE(z_l),t_l) + KD(h_aux(z_u),t_u)]; "
                   "predicts with h_CE")

    def distill_terms(self, out_l, out_u, t_l, t_u, args):
        distill = self.distill(out_l.ce, t_l, args)
        if out_u is not None:
            distill = distill + self.distill(out_u.kd, t_u, args)
        return distill
