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
