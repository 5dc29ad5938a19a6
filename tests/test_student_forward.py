"""`student_forward`: one student forward over cat([x_l, x_u]) (`joint`, the authors' ImageNet
scripts) or one per part (`split`, their few-shot train_others.py).  The two differ only
through BatchNorm: each part normalised with its own batch statistics, running statistics
updated once per part."""

from types import SimpleNamespace

import pytest
import torch

from dho.errors import ConfigError
from dho.models.students import build_student
from dho.spec import RunSpec
from dho.train import _Run

torch.set_num_threads(1)


def forward(student, mode: str, x: torch.Tensor, n_l: int):
    fake_run = SimpleNamespace(spec=SimpleNamespace(student_forward=mode), student=student)
    return _Run._student_forward(fake_run, x, n_l)


def bn_counts(student) -> list[int]:
    return [int(m.num_batches_tracked) for m in student.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_split_runs_each_part_with_its_own_batchnorm_statistics():
    torch.manual_seed(0)
    student = build_student("resnet18", num_classes=5, pretrained=False, image_size=16).train()
    x = torch.randn(6, 3, 16, 16)
    x[4:] += 3.0  # the unlabeled part has other statistics than the labeled part
    ref = build_student("resnet18", num_classes=5, pretrained=False, image_size=16).train()
    ref.load_state_dict(student.state_dict())

    out_l, out_u, features = forward(student, "split", x, 4)
    assert torch.equal(out_l.kd, ref(x[:4]).kd) and torch.equal(out_u.kd, ref(x[4:]).kd)
    assert [f.shape[0] for f in features] == [4, 2]
    assert set(bn_counts(student)) == {2}  # two forwards: two running-statistics updates

    joint_l, joint_u, joint_features = forward(ref, "joint", x, 4)  # ref is at 2 updates too now
    assert set(bn_counts(ref)) == {3} and len(joint_features) == 1
    assert not torch.allclose(joint_l.kd, out_l.kd, atol=1e-3)  # the mixed batch's statistics


def test_split_equals_joint_without_batchnorm():
    torch.manual_seed(0)
    student = build_student("clip_tiny", num_classes=5, pretrained=False).train()  # LayerNorm only
    x = torch.randn(5, 3, student.image_size, student.image_size)
    s_l, s_u, _ = forward(student, "split", x, 3)
    j_l, j_u, _ = forward(student, "joint", x, 3)
    torch.testing.assert_close(s_l.kd, j_l.kd, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s_u.ce, j_u.ce, rtol=1e-5, atol=1e-5)


def test_labeled_only_batches_take_one_forward():
    student = build_student("resnet18", num_classes=5, pretrained=False, image_size=16).train()
    out_l, out_u, features = forward(student, "split", torch.randn(3, 3, 16, 16), 3)
    assert out_u is None and len(features) == 1 and set(bn_counts(student)) == {1}


def test_key_is_checked_and_hashed_only_when_split():
    assert RunSpec().hash == RunSpec(student_forward="joint").hash  # runs from before the key keep theirs
    assert RunSpec(student_forward="split").hash != RunSpec().hash
    with pytest.raises(ConfigError, match="key 'student_forward' = 'both': expected 'joint' or 'split'"):
        RunSpec.from_dict({"student_forward": "both"})


def test_split_calls_the_teacher_once_per_part_unless_cached():
    calls = []

    def outputs(x, keys):
        calls.append(len(x))
        return {"logits": x.flatten(1)[:, :3] * 2, "embedding": x.flatten(1)[:, :2]}

    x, keys = torch.randn(7, 3, 4, 4), torch.arange(7)
    for mode, cache, expected in (("split", None, [4, 3]), ("joint", None, [7]), ("split", "c.pt", [7])):
        calls.clear()
        fake_run = SimpleNamespace(spec=SimpleNamespace(student_forward=mode), teacher_cache=cache,
                                   _teacher_outputs=outputs)
        out = _Run._teacher_parts(fake_run, x, keys, 4)
        assert calls == expected
        assert torch.equal(out["logits"], x.flatten(1)[:, :3] * 2) and torch.equal(out["embedding"], x.flatten(1)[:, :2])
