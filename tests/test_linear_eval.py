"""Linear evaluation of a finished run's features (Table 5): top-k, head fitting, CLI."""

import json
import os

import pytest
import torch

torch.set_num_threads(1)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

from dho import train  # noqa: E402
from dho.cli import main  # noqa: E402
from dho.errors import ConfigError  # noqa: E402
from dho.linear_eval import fit_linear_head, linear_eval_run, topk_accuracy  # noqa: E402
from test_train import assets, make_spec  # noqa: E402,F401


def test_topk_accuracy_hand_case():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.15, 0.05], [0.2, 0.3, 0.5]])
    labels = torch.tensor([1, 1, 0])
    assert topk_accuracy(logits, labels, 1) == pytest.approx(100 / 3)     # only row 0
    assert topk_accuracy(logits, labels, 2) == pytest.approx(200 / 3)     # rows 0 and 1
    assert topk_accuracy(logits, labels, 5) == pytest.approx(100.0)       # k capped at 3 classes


def test_fit_linear_head_separates_separable_features():
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(4).repeat(10)
    z = torch.nn.functional.one_hot(y, 4).float() * 3 + 0.1 * torch.randn(40, 4, generator=gen)
    head = fit_linear_head(z, y, 4, epochs=50, lr=0.05, weight_decay=0.0, batch_size=8, seed=1)
    assert topk_accuracy(head(z), y, 1) == 100.0
    again = fit_linear_head(z, y, 4, epochs=50, lr=0.05, weight_decay=0.0, batch_size=8, seed=1)
    assert torch.equal(head.weight, again.weight)  # seeded


def test_linear_eval_of_a_finished_run(assets, tmp_path):  # noqa: F811
    spec = make_spec(assets, tmp_path / "mlflow.db", epochs=1, student="resnet18",
                     student_kwargs={"image_size": 16, "width": 8})
    train.run_training(spec, tmp_path / "run")
    before = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["best"]["state"]
    r = linear_eval_run(tmp_path / "run", assets / "data", epochs=20, lr=0.01, device="cpu", progress=False)
    assert (r["n_train"], r["n_test"], r["feature_dim"]) == (18, 6, 64)  # 3 classes x (6 train, 2 test); 8*8 channels
    assert 0 <= r["linear_top1"] <= r["linear_top5"] == 100.0             # 3 classes: top-5 is everything
    assert r["method"] == "dho" and r["spec_hash"] == spec.hash
    after = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["best"]["state"]
    assert all(torch.equal(before[k], after[k]) for k in before)          # the run is left as it was
    out = tmp_path / "le.json"
    assert main(["linear-eval", "--run-dir", str(tmp_path / "run"), "--root", str(assets / "data"),
                 "--out", str(out), "--epochs", "20", "--lr", "0.01", "--device", "cpu", "--quiet"]) == 0
    assert json.loads(out.read_text())["linear_top1"] == pytest.approx(r["linear_top1"])
    with pytest.raises(ConfigError, match="--epochs = 0"):
        linear_eval_run(tmp_path / "run", assets / "data", epochs=0)
