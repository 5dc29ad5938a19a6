"""CE+KD (feature): CLIP-KD style feature distillation (DHO paper, Sec. 3.1 "Baselines",
citing Yang et al. 2024a, "CLIP-KD: An Empirical Study of CLIP Model Distillation",
CVPR 2024, Sec. 3 "Feature Distillation": ``L_FD = 1/|B| sum_k ||v_k^T - v_k^S||_2^2``,
with a linear projection of the student embedding when the dimensions differ).

``L = lam * CE(h(z_l), y) + (1 - lam) * [FD(z_l, e_l) + FD(z_u, e_u)]`` with
``FD(z, e) = mean_i ||n(P z_i) - e_i||^2``: ``P`` a learned linear projection from the
student feature to the teacher's image-embedding dimension (owned by this method,
``student.method_parts.projection``), ``e`` the teacher's L2-normalised image embedding,
``n`` L2 normalisation (``normalize``, default True: both sides on the unit sphere,
like CLIP's embeddings; False compares the raw projection).  The projection is used in
training only; inference is the student's head.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import LAM, Arg, Batch, Method, is_bool, method_parts, register


def feature_distill(student_feature: torch.Tensor, teacher_embedding: torch.Tensor,
                    projection: nn.Module, normalize: bool) -> torch.Tensor:
    """``mean_i ||n(P z_i) - e_i||^2`` (batch mean of squared L2 distances)."""
    s = projection(student_feature)
    if normalize:
        s = F.normalize(s, dim=-1)
    return (s - teacher_embedding.detach().to(s.dtype)).pow(2).sum(dim=-1).mean()


@register
class FeatureKD(Method):
    name = "kd_feature"
    heads = 1
    description = ("CE+KD (feature), CLIP-KD style: lam*CE(h(z_l),y) + (1-lam)*[||P z_l - e_l||^2 + "
                   "||P z_u - e_u||^2], e = teacher image embedding, P learned")
    args = (LAM, Arg("normalize", True, is_bool, "true or false", "L2-normalise the projected student feature"))
    teacher_outputs = ("logits", "embedding")

    def setup_student(self, student, args, teacher=None):
        if teacher is None:  # evaluation: the projection is a training-only part
            return
        dim = int(teacher.embedding_dim)
        method_parts(student)["projection"] = nn.Linear(student.feature_dim, dim)

    def step(self, batch: Batch):
        args = batch.args
        if "embedding" not in batch.teacher:
            raise ValueError(f"method '{self.name}' needs the teacher's image embedding")
        e_l, e_u = batch.teacher["embedding"]
        proj = batch.student.method_parts["projection"]
        sup = F.cross_entropy(batch.out_l.ce, batch.labels)
        distill = feature_distill(batch.out_l.feature, e_l, proj, args["normalize"])
        if batch.out_u is not None:
            distill = distill + feature_distill(batch.out_u.feature, e_u, proj, args["normalize"])
        lam = args["lam"]
        return lam * sup + (1 - lam) * distill, {"sup": sup, "distill": distill}
