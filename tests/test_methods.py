import math

import pytest
import torch
from torch import nn

from dho.cli import main
from dho.errors import ConfigError
from dho.losses import kd_loss
from dho.methods import METHODS
from dho.models.preprocess import InputAdapter
from dho.models.students import Student, StudentOutput

torch.set_num_threads(1)


def tiny_student(heads: int, seed: int = 0) -> Student:
    torch.manual_seed(seed)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 6), nn.Tanh())
    return Student(backbone, 6, 4, heads, InputAdapter(8, (0.5,) * 3, (0.25,) * 3))


def out(ce, kd=None):
    ce = torch.tensor(ce)
    return StudentOutput(torch.zeros(ce.shape[0], 1), ce, torch.tensor(kd) if kd is not None else ce)


def test_registry_entries():
    assert {"ce", "dho", "kd", "pseudo_label"} <= set(METHODS.names())
    expected = {"ce": (1, False), "kd": (1, True), "dho": (2, True), "pseudo_label": (1, True)}
    for name, (heads, teacher) in expected.items():
        m = METHODS.get(name)
        assert (m.name, m.heads, m.needs_teacher) == (name, heads, teacher)
        assert m.description


def test_ce_is_cross_entropy_and_ignores_teacher():
    o = out([[0.0, math.log(3.0)]])  # p(1) = 3/4
    labels = torch.tensor([1])
    total, terms = METHODS.get("ce").loss(o, None, labels, None, None)
    assert total.item() == pytest.approx(math.log(4 / 3), rel=1e-6)
    assert set(terms) == {"sup"}
    with_teacher, _ = METHODS.get("ce").loss(o, out([[9.0, 0.0]]), labels, torch.tensor([[5.0, -5.0]]),
                                             torch.tensor([[5.0, -5.0]]))
    assert with_teacher.item() == total.item()


def test_dho_loss_is_lambda_weighted_sum_of_ce_and_two_kd_terms():
    o_l = out([[0.0, math.log(3.0)]], [[1.0, 0.0]])
    o_u = out([[2.0, 2.0], [0.0, 1.0]], [[0.0, 2.0], [1.0, 1.0]])
    t_l = torch.tensor([[0.0, 2.0]])
    t_u = torch.tensor([[3.0, 0.0], [0.0, 0.0]])
    labels = torch.tensor([1])
    total, terms = METHODS.get("dho").loss(o_l, o_u, labels, t_l, t_u, lam=0.25, temperature=4.0)
    sup = math.log(4 / 3)
    distill = kd_loss(o_l.kd, t_l, 4.0).item() + kd_loss(o_u.kd, t_u, 4.0).item()
    assert set(terms) == {"sup", "distill"}
    assert terms["sup"].item() == pytest.approx(sup, rel=1e-6)
    assert terms["distill"].item() == pytest.approx(distill, rel=1e-6)
    assert total.item() == pytest.approx(0.25 * sup + 0.75 * distill, rel=1e-6)
    # without an unlabeled batch only the labeled KD term remains; defaults lam .5, T 2
    total, terms = METHODS.get("dho").loss(o_l, None, labels, t_l, None)
    assert total.item() == pytest.approx(0.5 * sup + 0.5 * kd_loss(o_l.kd, t_l, 2.0).item(), rel=1e-6)


def test_single_head_kd_equals_dho_with_tied_heads():
    single, dual = tiny_student(1), tiny_student(2)
    dual.backbone.load_state_dict(single.backbone.state_dict())
    dual.ce_head.load_state_dict(single.ce_head.state_dict())
    dual.kd_head.load_state_dict(single.ce_head.state_dict())
    gen = torch.Generator().manual_seed(1)
    x_l, x_u = torch.rand(3, 3, 8, 8, generator=gen), torch.rand(5, 3, 8, 8, generator=gen)
    t_l, t_u = torch.randn(3, 4, generator=gen), torch.randn(5, 4, generator=gen)
    labels = torch.tensor([0, 3, 1])
    losses, grads = [], []
    for student, method in ((single, "kd"), (dual, "dho")):
        total, terms = METHODS.get(method).loss(student(x_l), student(x_u), labels, t_l, t_u, lam=0.3)
        total.backward()
        losses.append((total.item(), terms["sup"].item(), terms["distill"].item()))
        grads.append(student.backbone[1].weight.grad.clone())
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    assert torch.allclose(grads[0], grads[1], atol=1e-7)
    assert losses[0][2] > 0


def test_pseudo_label_hand_computed_with_threshold():
    # teacher argmax: class 1 (conf .88) for the labeled image; class 0 (conf .5+) and a low-confidence one
    o_l = out([[0.0, math.log(3.0)]])                      # CE(., 1) = log(4/3)
    o_u = out([[math.log(3.0), 0.0], [0.0, 0.0]])          # CE(., 0) = log(4/3); second would be log 2
    t_l = torch.tensor([[0.0, 2.0]])                       # conf sigmoid(2) = .881
    t_u = torch.tensor([[1.0, 0.0], [0.1, 0.0]])           # conf .731, .525
    total, terms = METHODS.get("pseudo_label").loss(o_l, o_u, torch.tensor([0]), t_l, t_u, threshold=0.6)
    sup = math.log(4.0)                                    # CE(o_l, label 0) = -log(1/4)
    distill = math.log(4 / 3) + (math.log(4 / 3) + 0.0) / 2  # second unlabeled image masked out
    assert terms["sup"].item() == pytest.approx(sup, rel=1e-6)
    assert terms["distill"].item() == pytest.approx(distill, rel=1e-6)
    assert total.item() == pytest.approx(0.5 * sup + 0.5 * distill, rel=1e-6)
    _, terms = METHODS.get("pseudo_label").loss(o_l, o_u, torch.tensor([0]), t_l, t_u)
    assert terms["distill"].item() == pytest.approx(math.log(4 / 3) + (math.log(4 / 3) + math.log(2)) / 2, rel=1e-6)


def test_method_args_are_checked():
    o = out([[0.0, 1.0]])
    t = torch.zeros(1, 2)
    with pytest.raises(ConfigError, match=r"method 'dho'.*unknown method_args key\(s\) lamda; accepted: lam, temperature"):
        METHODS.get("dho").loss(o, None, torch.tensor([0]), t, None, lamda=0.5)
    with pytest.raises(ConfigError, match=r"method 'ce'.*temperature; accepted: \(none\)"):
        METHODS.get("ce").loss(o, None, torch.tensor([0]), None, None, temperature=2.0)
    with pytest.raises(ConfigError, match=r"method_args.lam = 1.5: expected a number in \[0, 1\]"):
        METHODS.get("kd").loss(o, None, torch.tensor([0]), t, None, lam=1.5)
    with pytest.raises(ConfigError, match="needs a teacher"):
        METHODS.get("kd").loss(o, None, torch.tensor([0]), None, None)


def test_cli_lists_methods(capsys):
    assert main(["methods"]) == 0
    text = capsys.readouterr().out
    lines = [line for line in text.splitlines() if not line.startswith("    ")]
    assert [line.split()[0] for line in lines] == METHODS.names()
    # each method's arguments with their defaults, indented under it
    assert "    lam = 0.5  (a number in [0, 1])" in text.split("\ndho ")[1].split("\nkd ")[0]
    assert "    threshold = 0.0" in text.split("\npseudo_label ")[1]
    dho_line = next(line for line in lines if line.startswith("dho "))
    assert "heads=2" in dho_line and "teacher=yes" in dho_line
    ce_line = next(line for line in lines if line.startswith("ce "))
    assert "heads=1" in ce_line and "teacher=no" in ce_line
