"""DHO without unlabeled data: the rows "DHO (teacher, no unlabeled data)" of the DHO
paper's Table 2 (Labeled Data 1 %, Teacher Model ✓, Unlabeled Data -).

``L = lam * CE(h_CE(z_l), y) + (1 - lam) * KD(h_KD(z_l), t_l)``: DHO's loss (Sec. 2.2,
Eqs. 5-6) on the labeled images only; no unlabeled batch is loaded.
"""

from __future__ import annotations

from .base import TeacherMethod, register


@register
class DualHeadLabeledOnly(TeacherMethod):
    name = "dho_labeled"
    heads = 2
    uses_unlabeled = False
    description = "DHO on the labeled images only (no unlabeled data): lam*CE(h_CE(z_l),y) + (1-lam)*KD(h_KD(z_l),t_l)"
