"""PCGrad on single-head KD (DHO paper, Appendix E.2, Table 13; Yu et al. 2020b,
"Gradient Surgery for Multi-Task Learning", NeurIPS 2020, Algorithm 1; the DHO authors'
``train_imgnet_pc_grad.py`` treats ``0.5 * CE`` and ``0.5 * (KD_l + KD_u)`` as the two tasks).

The loss is CE+KD (logit) (:mod:`dho.methods.kd`); the tasks are ``g_1 = grad(lam * sup)``
and ``g_2 = grad((1 - lam) * distill)`` over all trainable parameters, flattened into
one vector each.  Where ``g_i . g_j < 0``, ``g_i <- g_i - (g_i . g_j) / ||g_j||^2 g_j``
(each task projected against the other's original gradient); the update direction is
the sum of the projected gradients.
"""

from __future__ import annotations

import torch

from .base import TeacherMethod, register


def pcgrad_combine(grads: list[torch.Tensor]) -> torch.Tensor:
    """Sum of the PCGrad-projected flat task gradients (tasks projected in list order)."""
    out = torch.zeros_like(grads[0])
    for i, g_i in enumerate(grads):
        g = g_i.clone()
        for j, g_j in enumerate(grads):
            dot = torch.dot(g, g_j)
            if j != i and dot < 0:
                g = g - dot / g_j.pow(2).sum().clamp_min(1e-20) * g_j
        out += g
    return out


@register
class PCGradKD(TeacherMethod):
    name = "pcgrad"
    heads = 1
    description = "CE+KD (logit) with PCGrad: the lam*CE and (1-lam)*KD gradients projected where they conflict"

    def backward(self, total, terms, args, params):
        params = [p for p in params if p.requires_grad]
        tasks = [args["lam"] * terms["sup"], (1 - args["lam"]) * terms["distill"]]
        flat = []
        for task in tasks:
            grads = torch.autograd.grad(task, params, retain_graph=True, allow_unused=True)
            flat.append(torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                                   for g, p in zip(grads, params)]))
        combined = pcgrad_combine(flat)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = combined[offset:offset + n].view_as(p).clone()
            offset += n
