"""The paper's comparison rows (issue 9): each loss on a hand-checked case."""

import math

import pytest
import torch
from torch import nn

from dho.losses import kd_loss
from dho.methods import METHODS, Batch
from dho.methods.dhkd import binary_kl
from dho.methods.dkd import dkd_loss
from dho.methods.kd_feature import feature_distill
from dho.methods.pcgrad import pcgrad_combine
from dho.models.preprocess import InputAdapter
from dho.models.students import Student, StudentOutput

torch.set_num_threads(1)


def out(ce, kd=None, feature=None):
    ce = torch.tensor(ce)
    feature = torch.zeros(ce.shape[0], 1) if feature is None else torch.tensor(feature)
    return StudentOutput(feature, ce, torch.tensor(kd) if kd is not None else ce)


def tiny_student(heads: int) -> Student:
    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 6), nn.Tanh())
    return Student(backbone, 6, 4, heads, InputAdapter(8, (0.5,) * 3, (0.25,) * 3))


HALF_LOG_4_3 = 0.5 * math.log(4 / 3)  # KL([1/2,1/2] || [1/4,3/4])


def test_kd_unlabeled_distills_every_image_and_never_reads_labels():
    o_l = out([[0.0, math.log(3.0)]])          # p = [1/4, 3/4]
    o_u = out([[0.0, 0.0]])                    # p = [1/2, 1/2]
    t_l = torch.zeros(1, 2)                    # p = [1/2, 1/2]
    t_u = torch.tensor([[math.log(3.0), 0.0]])  # p = [3/4, 1/4]
    kl_u = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    m = METHODS.get("kd_unlabeled")
    for labels in (torch.tensor([0]), torch.tensor([1])):
        total, terms = m.loss(o_l, o_u, labels, t_l, t_u, temperature=1.0)
        assert set(terms) == {"distill"}
        assert total.item() == pytest.approx(HALF_LOG_4_3 + kl_u, rel=1e-6)
    assert m.heads == 1 and m.needs_teacher and [a.name for a in m.args] == ["temperature"]


def test_feature_kd_is_squared_distance_to_the_teacher_embedding_through_the_projection():
    proj = nn.Linear(2, 2)
    with torch.no_grad():
        proj.weight.copy_(torch.eye(2))
        proj.bias.zero_()
    z, e = torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 0.0]])
    assert feature_distill(z, e, proj, normalize=True).item() == pytest.approx(0.4 ** 2 + 0.8 ** 2, rel=1e-6)
    assert feature_distill(z, e, proj, normalize=False).item() == pytest.approx(2.0 ** 2 + 4.0 ** 2, rel=1e-6)

    m = METHODS.get("kd_feature")
    assert m.teacher_outputs == ("logits", "embedding")
    student = tiny_student(1)
    m.setup_student(student, m.resolve_args({}), teacher=type("T", (), {"embedding_dim": 5})())
    assert tuple(student.method_parts["projection"].weight.shape) == (5, 6)
    bare = tiny_student(1)
    m.setup_student(bare, m.resolve_args({}), teacher=None)  # evaluation: no training-only parts
    assert not hasattr(bare, "method_parts")

    student.method_parts["projection"] = proj
    o_l = out([[0.0, math.log(3.0)]], feature=[[3.0, 4.0]])
    o_u = out([[0.0, 0.0]], feature=[[0.0, 2.0]])  # normalised (0, 1): distance^2 to e_u = (1, 0) is 2
    batch = Batch(o_l, o_u, torch.tensor([1]), torch.zeros(1, 2), torch.zeros(1, 2), m.resolve_args({"lam": 0.25}),
                  student, {"embedding": (e, torch.tensor([[1.0, 0.0]]))})
    total, terms = m.step(batch)
    assert terms["sup"].item() == pytest.approx(math.log(4 / 3), rel=1e-6)
    assert terms["distill"].item() == pytest.approx(0.8 + 2.0, rel=1e-6)
    assert total.item() == pytest.approx(0.25 * math.log(4 / 3) + 0.75 * 2.8, rel=1e-6)


def test_sskd_main_head_learns_labels_and_labeled_kd_aux_head_the_unlabeled_kd():
    # labeled: CE head [0, log 3]; its KD head must not matter.  unlabeled: aux head [0, 0]
    o_l = out([[0.0, math.log(3.0)]], kd=[[9.0, -9.0]])
    o_u = out([[5.0, -5.0]], kd=[[0.0, 0.0]])
    t_l, t_u = torch.zeros(1, 2), torch.tensor([[math.log(3.0), 0.0]])
    total, terms = METHODS.get("sskd").loss(o_l, o_u, torch.tensor([1]), t_l, t_u, lam=0.5, temperature=1.0)
    kl_u = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert terms["sup"].item() == pytest.approx(math.log(4 / 3), rel=1e-6)
    assert terms["distill"].item() == pytest.approx(HALF_LOG_4_3 + kl_u, rel=1e-6)
    assert total.item() == pytest.approx(0.5 * math.log(4 / 3) + 0.5 * (HALF_LOG_4_3 + kl_u), rel=1e-6)
    assert METHODS.get("sskd").fixed_alpha_beta == (1.0, 1.0)


def test_dhkd_binary_kl_hand_value_and_zero_at_the_teacher():
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    # one image, one class: d = sigmoid((2 - 0) / 2); KL(Bern(1/2) || Bern(d)) = -log 2 - log(d (1 - d)) / 2
    expected = 4 * (-math.log(2) - 0.5 * math.log(sig(1) * sig(-1)))
    assert binary_kl(torch.tensor([[2.0]]), torch.tensor([[0.0]]), 2.0).item() == pytest.approx(expected, rel=1e-5)
    t = torch.tensor([[1.0, -3.0, 0.5], [2.0, 2.0, 0.0]])
    assert binary_kl(t.clone(), t, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    # a logit shift changes it (softmax KD would not see a constant shift)
    assert binary_kl(t + 1.0, t, 2.0).item() > 0.1
    # a logit gap far beyond float32's sigmoid range stays finite (clamped at 1e-8, as the
    # authors' BinaryKLNorm clamps): 0.5 * (log 0.5 - log 1e-8) + 0.5 * (log 0.5 - 0) per class
    far = binary_kl(torch.tensor([[200.0]]), torch.tensor([[0.0]]), 2.0).item()
    assert far == pytest.approx(4.0 * (0.5 * (math.log(0.5) - math.log(1e-8)) + 0.5 * math.log(0.5)), rel=1e-5)
    o_l, o_u = out([[0.0, 0.0]], kd=[[2.0, 0.0]]), out([[7.0, 7.0]], kd=[[0.0, 0.0]])
    total, terms = METHODS.get("dhkd").loss(o_l, o_u, torch.tensor([0]), torch.zeros(1, 2), torch.zeros(1, 2),
                                            lam=0.5, temperature=2.0)
    assert terms["sup"].item() == pytest.approx(math.log(2), rel=1e-6)
    assert terms["distill"].item() == pytest.approx(expected, rel=1e-5)  # only the aux head's 2 vs 0 differs
    assert METHODS.get("dhkd").fixed_alpha_beta == (1.0, 1.0)


def test_pcgrad_projects_conflicting_gradients_only():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])  # dot -1: conflict
    # g1 - (-1/2) g2 = (0.5, 0.5); g2 - (-1/1) g1 = (0, 1)
    assert torch.allclose(pcgrad_combine([g1, g2]), torch.tensor([0.5, 1.5]))
    assert torch.allclose(pcgrad_combine([g1, torch.tensor([1.0, 1.0])]), torch.tensor([2.0, 1.0]))


def test_pcgrad_backward_fills_the_projected_gradient():
    w = nn.Parameter(torch.tensor([1.0, 0.0]))
    sup, distill = w[0] * 2.0, -(w[0] * 2.0) + w[1] * 2.0  # grads (2, 0) and (-2, 2) at lam 1/2: (1,0), (-1,1)
    METHODS.get("pcgrad").backward(0.5 * sup + 0.5 * distill, {"sup": sup, "distill": distill},
                                   {"lam": 0.5, "temperature": 2.0}, [w])
    assert torch.allclose(w.grad, torch.tensor([0.5, 1.5]))


def test_dkd_hand_values_and_kd_decomposition():
    y = torch.tensor([0])
    s = torch.zeros(1, 3)                                    # p = [1/3, 1/3, 1/3]
    t = torch.log(torch.tensor([[2.0, 1.0, 1.0]]))           # p = [1/2, 1/4, 1/4]: NCKD = 0
    tckd = 0.5 * math.log(1.5) + 0.5 * math.log(0.75)
    assert dkd_loss(s, t, y, 1.0, 8.0, 1.0).item() == pytest.approx(tckd, rel=1e-5)
    t2 = torch.log(torch.tensor([[4.0, 3.0, 1.0]]))          # p = [1/2, 3/8, 1/8]: p_hat = [3/4, 1/4]
    nckd = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert dkd_loss(s, t2, y, 0.0, 1.0, 1.0).item() == pytest.approx(nckd, rel=1e-5)
    # Zhao et al. Eq. 5: KD = TCKD + (1 - p_t^T) NCKD, at any temperature (times T^2 on both sides)
    gen = torch.Generator().manual_seed(0)
    s3, t3, y3 = torch.randn(1, 5, generator=gen), torch.randn(1, 5, generator=gen), torch.tensor([2])
    p_target = torch.softmax(t3 / 3.0, -1)[0, 2].item()
    assert dkd_loss(s3, t3, y3, 1.0, 1.0 - p_target, 3.0).item() == pytest.approx(kd_loss(s3, t3, 3.0).item(), rel=1e-5)


def test_dkd_rows_use_labeled_images_and_dho_adds_the_kd_head():
    m, md = METHODS.get("dkd"), METHODS.get("dkd_dho")
    assert (m.heads, m.loads_unlabeled, md.heads, md.loads_unlabeled) == (1, False, 2, True)
    o_l = out([[0.0, 0.0, 0.0]], kd=[[1.0, 0.0, 0.0]])
    o_u = out([[0.0, 0.0, 0.0]], kd=[[0.0, 1.0, 0.0]])
    t_l, t_u = torch.log(torch.tensor([[2.0, 1.0, 1.0]])), torch.zeros(1, 3)
    y = torch.tensor([0])
    _, terms = m.loss(o_l, None, y, t_l, None, temperature=1.0)
    dkd = dkd_loss(o_l.ce, t_l, y, 1.0, 8.0, 1.0).item()
    assert terms["distill"].item() == pytest.approx(dkd, rel=1e-6)
    assert terms["sup"].item() == pytest.approx(math.log(3), rel=1e-6)
    _, terms = md.loss(o_l, o_u, y, t_l, t_u, temperature=1.0, kd_temperature=2.0)
    kd = kd_loss(o_l.kd, t_l, 2.0).item() + kd_loss(o_u.kd, t_u, 2.0).item()
    assert terms["distill"].item() == pytest.approx(dkd + kd, rel=1e-6)


@pytest.mark.parametrize("name, nonlinear", [("dho_nl_ce", {"ce_head"}), ("dho_nl_kd", {"kd_head"}),
                                             ("dho_nl_both", {"ce_head", "kd_head"})])
def test_nonlinear_heads_replace_exactly_the_named_heads(name, nonlinear):
    m = METHODS.get(name)
    student = tiny_student(2)
    m.setup_student(student, m.resolve_args({"hidden": 5, "dropout": 0.0}))
    for head in ("ce_head", "kd_head"):
        layers = getattr(student, head)
        if head in nonlinear:
            kinds = [type(x).__name__ for x in layers]
            assert kinds == ["Linear", "LayerNorm", "GELU", "Dropout", "Linear"]
            assert (layers[0].in_features, layers[0].out_features, layers[-1].out_features) == (6, 5, 4)
        else:
            assert isinstance(layers, nn.Linear)
    o = student(torch.rand(3, 3, 8, 8))
    assert o.ce.shape == o.kd.shape == (3, 4)
    # the loss is DHO's
    t = torch.randn(3, 4)
    total, _ = m.loss(o, None, torch.tensor([0, 1, 2]), t, None)
    ref, _ = METHODS.get("dho").loss(o, None, torch.tensor([0, 1, 2]), t, None)
    assert total.item() == pytest.approx(ref.item(), rel=1e-6)


def test_wkd_hand_values():
    from dho.methods.wkd import prototype_cost, sinkhorn_plan, wkd_loss

    # non-target q^S = [1/2, 1/2], q^T = [1, 0]: the only plan moves 1/2 across at cost 1 (whatever
    # the regularisation; a larger one converges in fewer iterations)
    cost = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    plan = sinkhorn_plan(torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0, 0.0]]), cost, 0.5, 50)
    assert torch.allclose(plan, torch.tensor([[[0.5, 0.0], [0.5, 0.0]]]), atol=1e-4)
    # classes 0 (target), 1, 2: student uniform, teacher [1/2, 1/2 - e, ~0] on the non-targets
    c3 = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    s, t, y = torch.zeros(1, 3), torch.tensor([[0.0, 0.0, -60.0]]), torch.tensor([0])
    target = -0.5 * math.log(1 / 3)                        # p^T_y = 1/2 (softmax of [0, 0, -60]), p^S_y = 1/3
    got = wkd_loss(s, t, y, c3, temperature=1.0, gamma=2.0, reg=0.5, iters=50).item()
    assert got == pytest.approx(target + 2.0 * 0.5, abs=1e-3)
    # two classes: one non-target class, nothing to transport
    two = wkd_loss(torch.tensor([[0.0, math.log(3.0)]]), torch.zeros(1, 2), torch.tensor([1]),
                   torch.ones(2, 2) - torch.eye(2), 1.0, 1.0, 0.05, 10).item()
    assert two == pytest.approx(-0.5 * math.log(3 / 4), abs=1e-6)
    # cost from prototypes: orthogonal prototypes cost 1, identical ones 0
    assert torch.allclose(prototype_cost(torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])),
                          torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]), atol=1e-6)
    assert (METHODS.get("wkd").loads_unlabeled, METHODS.get("wkd_dho").loads_unlabeled) == (False, True)


def test_dho_labeled_is_dho_without_the_unlabeled_term():
    m = METHODS.get("dho_labeled")
    assert (m.heads, m.needs_teacher, m.loads_unlabeled) == (2, True, False)
    o_l = out([[0.0, math.log(3.0)]], kd=[[0.0, 0.0]])
    t_l = torch.tensor([[math.log(3.0), 0.0]])
    total, terms = m.loss(o_l, None, torch.tensor([1]), t_l, None, lam=0.5, temperature=1.0)
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)          # KL([3/4, 1/4] || [1/2, 1/2])
    assert total.item() == pytest.approx(0.5 * math.log(4 / 3) + 0.5 * kl, rel=1e-6)
