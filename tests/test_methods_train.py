"""Every registered method trains end to end through the one training loop (tiny data,
CPU, one epoch) and its finished run is rebuilt by ``dho evaluate``: the hooks a method
declares (teacher embedding, owned parts, own heads, gradient surgery, fixed inference
rule) work without the loop knowing any method by name."""

import math
import os

import pytest
import torch

torch.set_num_threads(1)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

from dho import train  # noqa: E402
from dho.evaluate import evaluate_run  # noqa: E402
from dho.methods import METHODS  # noqa: E402
from test_train import assets, make_spec  # noqa: E402,F401  (module fixture: tiny dataset + teacher)


@pytest.fixture(scope="module")
def mlflow_db(tmp_path_factory):
    return tmp_path_factory.mktemp("mlflow") / "mlflow.db"


@pytest.mark.parametrize("name", [n for n in METHODS.names() if n not in ("ce", "kd", "dho")])
def test_method_trains_and_evaluates(name, assets, mlflow_db, tmp_path):  # noqa: F811
    method = METHODS.get(name)
    spec = make_spec(assets, mlflow_db, method=name, epochs=1, student="resnet18",
                     student_kwargs={"image_size": 16, "width": 8}, grad_cosine_every=2)
    metrics = train.run_training(spec, tmp_path / "run")
    assert metrics["status"] == "complete" and math.isfinite(metrics["test_acc"])
    assert metrics["method_args"] == method.resolve_args({})
    if method.fixed_alpha_beta is not None:
        assert (metrics["alpha"], metrics["beta"]) == method.fixed_alpha_beta
        assert metrics["test_acc"] == metrics["test_acc_ce"]
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["best"]["state"]
    has_parts = any(k.startswith("method_parts.") for k in state)
    assert has_parts == (name in ("kd_feature", "wkd", "wkd_dho"))  # training-only parts, dropped by evaluate
    record = evaluate_run(tmp_path / "run", "dtd", assets / "data", device="cpu", progress=False)
    assert record["test_acc"] == pytest.approx(metrics["test_acc"])


def test_frozen_backbone_student_trains_only_its_heads(assets, mlflow_db, tmp_path):  # noqa: F811
    """student_kwargs.freeze_backbone (Table 2's dagger rows): the backbone keeps its initial
    weights and BatchNorm statistics, the heads move; evaluate rebuilds it."""
    from dho.models import build_student

    kwargs = {"image_size": 16, "width": 8}
    spec = make_spec(assets, mlflow_db, epochs=1, student="resnet18", student_kwargs={**kwargs, "freeze_backbone": True})
    metrics = train.run_training(spec, tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["best"]["state"]
    torch.manual_seed(spec.seed)  # the loop's student initialisation
    fresh = build_student("resnet18", 3, heads=2, pretrained=False, **kwargs).state_dict()
    backbone = [k for k in fresh if k.startswith("backbone.") and fresh[k].is_floating_point()]
    assert backbone and all(torch.equal(state[k], fresh[k]) for k in backbone)  # running stats included
    assert not torch.equal(state["ce_head.weight"], fresh["ce_head.weight"])
    assert not torch.equal(state["kd_head.weight"], fresh["kd_head.weight"])
    record = evaluate_run(tmp_path / "run", "dtd", assets / "data", device="cpu", progress=False)
    assert record["test_acc"] == pytest.approx(metrics["test_acc"])
