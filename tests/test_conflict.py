"""The paper's gradient-conflict quantities (dho.conflict), checked against hand formulas."""

import math

import pytest
import torch
import torch.nn.functional as F

from dho.conflict import gradient_conflict
from dho.losses import kd_loss
from dho.models.preprocess import InputAdapter
from dho.models.students import Student


def tiny_student(heads: int, seed: int = 0) -> Student:
    torch.manual_seed(seed)
    backbone = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5), torch.nn.Tanh())
    s = Student(backbone, 5, 4, heads, InputAdapter(2, (0.0,) * 3, (1.0,) * 3, "bilinear"))
    s.adapter = torch.nn.Identity()
    return s


def terms_of(student, x, y, t, temperature=2.0):
    out = student(x)
    return out, {"sup": F.cross_entropy(out.ce, y), "distill": kd_loss(out.kd, t, temperature)}


def test_one_head_one_image_matches_eq3():
    """grad_W CE = (p - y) z^T and grad_W KD = T (p_T - q_T) z^T share z: their cosine is
    the cosine of (p - y) and (p_T - q_T), i.e. inner / norms."""
    student = tiny_student(heads=1)
    x, y, t = torch.randn(1, 3, 2, 2), torch.tensor([2]), 3 * torch.randn(1, 4)
    out, terms = terms_of(student, x, y, t)
    c = gradient_conflict(student, out, y, t, terms, 2.0)
    with torch.no_grad():
        u = F.softmax(out.ce, 1) - F.one_hot(y, 4)
        v = F.softmax(out.kd / 2, 1) - F.softmax(t / 2, 1)
    assert c["inner"] == pytest.approx(float((u * v).sum()), rel=1e-5)
    assert c["cos_w"] == pytest.approx(float((u * v).sum() / (u.norm() * v.norm())), rel=1e-4)


def test_theta_cosine_over_backbone_parameters():
    student = tiny_student(heads=2)
    x, y, t = torch.randn(3, 3, 2, 2), torch.tensor([0, 1, 3]), torch.randn(3, 4)
    out, terms = terms_of(student, x, y, t)
    c = gradient_conflict(student, out, y, t, terms, 2.0)
    theta = list(student.backbone.parameters())
    g_sup = torch.cat([g.flatten() for g in torch.autograd.grad(terms["sup"], theta, retain_graph=True)])
    g_kd = torch.cat([g.flatten() for g in torch.autograd.grad(terms["distill"], theta, retain_graph=True)])
    assert c["cos_theta"] == pytest.approx(float(F.cosine_similarity(g_sup, g_kd, dim=0)), rel=1e-4)
    # two heads: W_CE gets only CE's gradient, W_KD only KD's; cos_w compares those two
    g_wce, = torch.autograd.grad(terms["sup"], student.ce_head.weight, retain_graph=True)
    g_wkd, = torch.autograd.grad(terms["distill"], student.kd_head.weight, retain_graph=True)
    assert c["cos_w"] == pytest.approx(float(F.cosine_similarity(g_wce.flatten(), g_wkd.flatten(), dim=0)),
                                       rel=1e-4)
    assert all(-1 <= c[k] <= 1 for k in ("cos_theta", "cos_w")) and math.isfinite(c["inner"])
    terms["sup"].backward()  # the graph is still usable for the training step


def test_no_distill_term_gives_none():
    student = tiny_student(heads=1)
    x, y = torch.randn(2, 3, 2, 2), torch.tensor([0, 1])
    out = student(x)
    assert gradient_conflict(student, out, y, None, {"sup": F.cross_entropy(out.ce, y)}, 2.0) is None
