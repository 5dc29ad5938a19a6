"""The demo's tiny CLIP teacher: deterministic pretraining, open_clip-loadable weights,
the zero-shot teacher built from them, and real (above-chance) zero-shot transfer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dho.cli import main
from dho.data.datasets.shapes import Shapes
from dho.demo.data import ShapesParams, class_names, render_split
from dho.demo.render import Attributes
from dho.demo.teacher import (FULL_CAPTIONS, MODEL_NAME, PretrainConfig, caption, pretrain_tiny_clip,
                              save_tiny_clip, teacher_accuracy)
from dho.errors import ConfigError
from dho.models.clip import open_clip

torch.set_num_threads(1)

TINY = PretrainConfig(seed=5, steps=3, batch_size=16, pool=32)
# a budget that reliably learns colour and some texture (about 23-32 % on seeds 0-2)
SMALL = PretrainConfig(seed=0, steps=120, batch_size=64, pool=1000)
CHANCE = 100.0 / 12


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    model, stats = pretrain_tiny_clip(TINY, progress=False)
    path = tmp_path_factory.mktemp("teacher") / "tiny.pt"
    save_tiny_clip(model, path)
    return model, stats, path


def test_pretraining_is_deterministic(tiny_weights):
    model, stats, _ = tiny_weights
    torch.set_num_threads(2)  # the machine's thread count does not matter: the config fixes it
    try:
        again, stats2 = pretrain_tiny_clip(TINY, progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    for (k, a), (k2, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    assert stats["final_loss"] == stats2["final_loss"]
    other, _ = pretrain_tiny_clip(PretrainConfig(seed=6, steps=3, batch_size=16, pool=32), progress=False)
    assert not torch.equal(model.visual.conv1.weight, other.visual.conv1.weight)
    # the global torch state is left alone
    assert not torch.are_deterministic_algorithms_enabled()


def test_stats(tiny_weights):
    _, stats, _ = tiny_weights
    assert stats["model"] == MODEL_NAME and stats["config"]["steps"] == 3
    assert 1_000_000 < stats["parameters"] < 10_000_000
    assert np.isfinite(stats["final_loss"]) and stats["logit_scale"] <= 100.0


def test_saved_file_is_plain_tensors_and_loads_through_open_clip(tiny_weights):
    model, _, path = tiny_weights
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())
    oc = open_clip()
    loaded = oc.create_model(MODEL_NAME, pretrained=str(path))
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert loaded.visual.image_size == (32, 32)


def test_zeroshot_teacher_from_the_file(tiny_weights, tmp_path):
    from dho.models import TEACHERS, build_zeroshot_teacher, load_teacher, save_teacher

    _, _, path = tiny_weights
    names = class_names()
    teacher = build_zeroshot_teacher(MODEL_NAME, str(path), names, Shapes.templates, progress=False)
    assert isinstance(teacher, TEACHERS.get("zeroshot"))
    assert teacher.num_classes == 12 and teacher.image_size == 32
    x = torch.rand(4, 3, 32, 32)
    logits = teacher(x)
    assert logits.shape == (4, 12) and torch.isfinite(logits).all()
    save_teacher(teacher, tmp_path / "teacher.pt")
    again = load_teacher(tmp_path / "teacher.pt", expected_classes=names)
    assert torch.allclose(again(x), logits)
    # 64 px images (dho demo data --size 64) are resized by the teacher itself
    assert teacher(torch.rand(2, 3, 64, 64)).shape == (2, 12)


def test_captions_name_the_attributes():
    rng = np.random.default_rng(0)
    a = Attributes("purple", "checkered", "hexagon")
    full = [caption(a, rng, partial_prob=0.0) for _ in range(30)]
    assert all("purple" in c and "hexagon" in c and "checkered" in c for c in full)
    assert len(set(full)) == len(FULL_CAPTIONS)
    partial = [caption(a, rng, partial_prob=1.0) for _ in range(30)]
    assert all(("purple" in c) + ("hexagon" in c) + ("checkered" in c) == 2 for c in partial)


def test_small_budget_teacher_beats_chance(tmp_path):
    """Zero-shot transfer is real: captions of other combinations and other templates
    teach the attribute words well enough to name the benchmark's classes."""
    from dho.models import build_zeroshot_teacher

    model, _ = pretrain_tiny_clip(SMALL, progress=False)
    save_tiny_clip(model, tmp_path / "tiny.pt")
    teacher = build_zeroshot_teacher(MODEL_NAME, str(tmp_path / "tiny.pt"), class_names(), Shapes.templates,
                                     progress=False)
    images, labels = render_split(ShapesParams(), "test")
    acc = teacher_accuracy(teacher, images, labels)
    assert acc >= 2 * CHANCE, f"zero-shot accuracy {acc:.1f}% is not clearly above chance ({CHANCE:.1f}%)"


@pytest.mark.slow
def test_default_teacher_is_in_the_intended_range(tmp_path):
    """The demo's default teacher: clearly above chance, clearly below a trained student."""
    out = tmp_path / "tiny.pt"
    assert main(["demo", "teacher", "--out", str(out), "--stats", str(tmp_path / "s.json"), "--quiet"]) == 0
    acc = json.loads((tmp_path / "s.json").read_text())["zeroshot_test_acc"]
    assert 35.0 <= acc <= 65.0, acc


def test_cli_teacher(tmp_path, capsys):
    out, stats = tmp_path / "w" / "tiny.pt", tmp_path / "stats.json"
    args = ["demo", "teacher", "--out", str(out), "--seed", "2", "--steps", "2", "--batch-size", "8",
            "--pool", "16", "--stats", str(stats), "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "pretrained" in printed and "zero-shot accuracy on the demo test split" in printed
    record = json.loads(stats.read_text())
    assert record["weights"] == str(out) and record["config"]["seed"] == 2
    assert 0.0 <= record["zeroshot_test_acc"] <= 100.0
    assert torch.load(out, weights_only=True).keys() == open_clip().create_model(MODEL_NAME).state_dict().keys()


def test_bad_config_is_one_line_error(capsys):
    with pytest.raises(ConfigError, match="--batch-size"):
        pretrain_tiny_clip(PretrainConfig(batch_size=1), progress=False)
    with pytest.raises(SystemExit) as e:
        main(["demo", "teacher", "--out", "x.pt", "--lr", "0"])
    assert e.value.code == 2
    assert "--lr" in capsys.readouterr().err
