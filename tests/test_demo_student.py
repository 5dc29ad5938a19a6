"""The demo's pretrained student: deterministic pretraining on classes disjoint from the
benchmark, a file that loads through ``build_student(..., weights=FILE)``, and the CLI."""

from __future__ import annotations

import json

import pytest
import torch

from dho.cli import main
from dho.demo.render import benchmark_classes
from dho.demo.student import (GROUPS, HEAD_SIZE, TORCHVISION_CLASSES, StudentPretrainConfig,
                              pretrain_student, pretraining_classes, render_pool, save_student)
from dho.errors import ConfigError
from dho.models import build_student

torch.set_num_threads(1)

TINY = StudentPretrainConfig(seed=3, width=4, size=16, steps=3, batch_size=8, pool=16, eval_images=8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    student, stats = pretrain_student(TINY, progress=False)
    path = tmp_path_factory.mktemp("student") / "student.pt"
    save_student(student, path)
    return student, stats, path


def test_pretraining_classes_are_disjoint_from_the_benchmark():
    benchmark = set(benchmark_classes())
    pretraining = pretraining_classes()
    assert len(pretraining) == 6 * 2 * 4 and not benchmark & set(pretraining)
    # not even a benchmark shape or texture: the student never sees a benchmark class's outline+pattern
    assert not {a.shape for a in pretraining} & {a.shape for a in benchmark}
    assert not {a.texture for a in pretraining} & {a.texture for a in benchmark}
    _, labels = render_pool(seed=0, start=0, count=64, size=16, progress=False)
    for g, (_, values) in enumerate(GROUPS):
        assert 0 <= int(labels[:, g].min()) and int(labels[:, g].max()) < len(values)


def test_pretraining_images_are_not_benchmark_images():
    from dho.demo.data import ShapesParams, render_split

    x, _ = render_pool(seed=0, start=0, count=4, size=32, progress=False)
    bench, _ = render_split(ShapesParams(seed=0, train=1, val=1, test=1), "train")
    flat = {bytes(img.permute(1, 2, 0).contiguous().numpy()) for img in x}
    assert not flat & {bytes(img) for img in bench}


def test_pretraining_is_deterministic(tiny):
    student, stats, _ = tiny
    torch.set_num_threads(2)  # the config fixes the thread count, not the machine
    try:
        again, stats2 = pretrain_student(TINY, progress=False)
    finally:
        torch.set_num_threads(1)
    for (k, a), (k2, b) in zip(student.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    assert stats["final_loss"] == stats2["final_loss"] and stats["heldout_acc"] == stats2["heldout_acc"]
    other, _ = pretrain_student(StudentPretrainConfig(**{**TINY.__dict__, "seed": 4}), progress=False)
    assert not torch.equal(student.backbone.conv1.weight, other.backbone.conv1.weight)
    assert not torch.are_deterministic_algorithms_enabled()  # global state restored


def test_file_loads_through_build_student_and_changes_the_features(tiny):
    student, _, path = tiny
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert state["fc.weight"].shape == (TORCHVISION_CLASSES, 8 * TINY.width)
    assert torch.equal(state["fc.weight"][:HEAD_SIZE], student.ce_head.weight)
    assert not state["fc.weight"][HEAD_SIZE:].any()

    torch.manual_seed(0)
    loaded = build_student("resnet18", 12, heads=2, pretrained=False, width=TINY.width,
                           image_size=TINY.size, weights=str(path)).eval()
    torch.manual_seed(0)
    scratch = build_student("resnet18", 12, heads=2, pretrained=False, width=TINY.width,
                            image_size=TINY.size).eval()
    for k, v in student.backbone.state_dict().items():
        assert torch.equal(loaded.backbone.state_dict()[k], v), k
    x = torch.rand(3, 3, 20, 20)
    with torch.no_grad():
        assert torch.allclose(loaded(x).feature, student.eval()(x).feature)
        assert not torch.allclose(loaded(x).feature, scratch(x).feature)


def test_wrong_width_is_a_config_error(tiny):
    _, _, path = tiny
    with pytest.raises(ConfigError, match="do not fit"):
        build_student("resnet18", 12, pretrained=False, width=8, image_size=16, weights=str(path))


def test_cli(tmp_path, capsys):
    out, stats = tmp_path / "s.pt", tmp_path / "s.json"
    assert main(["demo", "student", "--out", str(out), "--seed", "1", "--steps", "2", "--width", "4",
                 "--size", "16", "--batch-size", "4", "--pool", "8", "--stats", str(stats), "--quiet"]) == 0
    assert "pretrained" in capsys.readouterr().out and out.is_file()
    data = json.loads(stats.read_text())
    assert data["config"]["steps"] == 2 and set(data["heldout_acc"]) == {"colour", "texture", "shape"}
    build_student("resnet18", 5, pretrained=False, width=4, image_size=16, weights=str(out))
