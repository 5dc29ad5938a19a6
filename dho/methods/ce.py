"""CE: the supervised baseline (DHO paper, Sec. 3.1 "Baselines", Eq. 1).

``L = CE(h(z_l), y)`` on the labeled images only; no teacher, one head.
"""

from __future__ import annotations

import torch.nn.functional as F

from .base import Method, register


@register
class CrossEntropy(Method):
    name = "ce"
    heads = 1
    needs_teacher = False
    description = "supervised baseline: cross-entropy on the labeled images only"

    def loss(self, out_l, out_u, labels, t_l, t_u, **method_args):
        self.resolve_args(method_args)
        sup = F.cross_entropy(out_l.ce, labels)
        return sup, {"sup": sup}
