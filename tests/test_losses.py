import math

import pytest
import torch

from dho.losses import kd_loss

torch.set_num_threads(1)


def test_kd_loss_matches_hand_computed_value():
    # row 1: teacher/T = [ln 3, 0] -> p_t = [3/4, 1/4]; student uniform -> p_s = [1/2, 1/2]
    # row 2: identical distributions -> KL = 0
    student = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    teacher = torch.tensor([[2 * math.log(3.0), 0.0], [1.0, -1.0]])
    kl_row1 = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    expected = 2.0 ** 2 * (kl_row1 + 0.0) / 2  # T^2 * batch mean
    assert kd_loss(student, teacher, temperature=2.0).item() == pytest.approx(expected, rel=1e-6)


def test_kd_loss_temperature_one_and_shift_invariance():
    student = torch.tensor([[0.0, math.log(3.0)]])  # p_s = [1/4, 3/4]
    teacher = torch.tensor([[5.0, 5.0]])             # p_t = [1/2, 1/2]
    expected = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kd_loss(student, teacher, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)
    assert kd_loss(student + 7.0, teacher - 3.0, 1.0).item() == pytest.approx(expected, rel=1e-5)


def test_kd_loss_gradient_is_T_times_prob_difference_and_teacher_gets_none():
    student = torch.zeros(1, 2, requires_grad=True)
    teacher = torch.tensor([[2 * math.log(3.0), 0.0]], requires_grad=True)
    kd_loss(student, teacher, temperature=2.0).backward()
    # d/ds [T^2 KL(p_t || softmax(s/T))] = T * (p_s - p_t) / B = 2 * ([.5, .5] - [.75, .25])
    assert torch.allclose(student.grad, torch.tensor([[-0.5, 0.5]]), atol=1e-6)
    assert teacher.grad is None


def test_kd_loss_is_stable_for_huge_logits():
    student = torch.tensor([[1e4, -1e4, 0.0]])
    teacher = torch.tensor([[-1e4, 1e4, 0.0]])
    value = kd_loss(student, teacher, 2.0)
    assert torch.isfinite(value)
    # p_t is one-hot on class 1 (up to e^-5000): KL = -log p_s(1) = (1e4 - (-1e4)) / T, times T^2
    assert value.item() == pytest.approx(4.0 * 2e4 / 2.0, rel=1e-5)


def test_kd_loss_rejects_shape_mismatch_and_bad_temperature():
    with pytest.raises(ValueError, match="same shape"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(torch.zeros(2, 3), torch.zeros(2, 3), temperature=0.0)
