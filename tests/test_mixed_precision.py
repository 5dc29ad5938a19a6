"""The GPU-only paths of the step, run on the CPU: bf16 autocast (``precision: bf16``, which
autocasts on the CPU too) for every registered method, and the channels-last layout that
CUDA runs use (forced here).  No GPU was lent to the sessions that built the harness, so
these are the checks of the mixed-precision and NHWC code that run anywhere: a method whose
loss breaks on bf16 logits, a checkpoint that cannot be resumed or evaluated after
channels-last training, fail here rather than on a cluster."""

import math
import os

import numpy as np
import pytest
import torch

torch.set_num_threads(1)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

from dho import runtime, train  # noqa: E402
from dho.evaluate import evaluate_run  # noqa: E402
from dho.methods import METHODS  # noqa: E402
from conftest import StopAfterCheckpoint, stop_after_checkpoint  # noqa: E402
from test_train import assets, make_spec, same_outputs  # noqa: E402,F401  (module fixture: tiny data + teacher)

# 32 px, not the 16 px of the other unit runs: on this CPU, torch 2.14.1's bf16 weight
# gradient of a 3x3 stride-2 convolution of a 1x1 input (ResNet-18's layer4 at 16 px) came
# out infinite in 15 of 200 random draws (0 of 100 at 2x2 and larger), which the loop then
# stops on (a non-finite gradient); at 32 px its first convolution sees a 2x2 input
TINY = {"image_size": 32, "student": "resnet18", "student_kwargs": {"image_size": 32, "width": 8}}


@pytest.fixture(scope="module")
def mlflow_db(tmp_path_factory):
    return tmp_path_factory.mktemp("mlflow") / "mlflow.db"


def record_output_dtypes(monkeypatch) -> list[torch.dtype]:
    """Patch the step's student forward to record the dtype of the logits it returns."""
    seen: list[torch.dtype] = []
    real = train._Run._student_forward

    def forward(self, x, n_l):
        out_l, out_u, features = real(self, x, n_l)
        seen.append(out_l.ce.dtype)
        return out_l, out_u, features

    monkeypatch.setattr(train._Run, "_student_forward", forward)
    return seen


def test_autocast_is_on_for_bf16_on_cpu_and_off_otherwise():
    cpu = torch.device("cpu")
    x, w = torch.randn(2, 3), torch.randn(3, 3)
    with runtime.autocast(cpu, "bf16"):
        assert (x @ w).dtype == torch.bfloat16
    for precision in ("auto", "fp32"):  # auto: CPU results stay those of fp32
        with runtime.autocast(cpu, precision):
            assert (x @ w).dtype == torch.float32


@pytest.mark.parametrize("name", METHODS.names())
def test_every_method_trains_under_bf16_autocast(name, assets, mlflow_db, tmp_path, monkeypatch):  # noqa: F811
    """One epoch under bf16 with the gradient-conflict diagnostics at every step: the
    student's logits are bf16 in the step, the loss and every output stay finite, the
    saved logits are float32, and `dho evaluate` reproduces the run's test accuracy."""
    seen = record_output_dtypes(monkeypatch)
    spec = make_spec(assets, mlflow_db, method=name, epochs=1, precision="bf16", grad_cosine_every=1, **TINY)
    metrics = train.run_training(spec, tmp_path / "run")
    assert seen and set(seen) == {torch.bfloat16}
    assert metrics["status"] == "complete" and math.isfinite(metrics["test_acc"])
    history = (tmp_path / "run" / "history.csv").read_text().splitlines()
    assert len(history) == 2 and math.isfinite(float(history[1].split(",")[1]))  # train_loss of epoch 1
    with np.load(tmp_path / "run" / "logits_test.npz", allow_pickle=False) as z:
        assert z["ce"].dtype == z["kd"].dtype == np.float32 and np.isfinite(z["ce"]).all()
    record = evaluate_run(tmp_path / "run", "dtd", assets / "data", device="cpu", progress=False)
    assert record["test_acc"] == pytest.approx(metrics["test_acc"])


def test_bf16_changes_the_numbers_that_fp32_gives(assets, mlflow_db, tmp_path):  # noqa: F811
    """The autocast is real: the same spec under bf16 and fp32 gives other losses."""
    losses = {}
    for precision in ("bf16", "fp32"):
        spec = make_spec(assets, mlflow_db, epochs=1, precision=precision, **TINY)
        train.run_training(spec, tmp_path / precision)
        losses[precision] = (tmp_path / precision / "history.csv").read_text().splitlines()[1].split(",")[1]
    assert losses["bf16"] != losses["fp32"]


def force_channels_last(monkeypatch) -> None:
    """The layout decisions of a CUDA run, on the CPU: NHWC student and teacher tower, NHWC batches."""
    monkeypatch.setattr(train, "channels_last", lambda device: torch.channels_last)
    monkeypatch.setattr(train, "nhwc", lambda x: x.contiguous(memory_format=torch.channels_last)
                        if x.dim() == 4 else x)


def test_channels_last_bf16_run_resumes_to_the_same_result_and_evaluates(assets, mlflow_db, tmp_path,  # noqa: F811
                                                                        monkeypatch):
    """A CUDA-style run (channels-last, bf16) stopped after its epoch-1 checkpoint resumes to
    exactly the uninterrupted run, and its checkpoint is evaluated by `dho evaluate`, which
    builds the student in the default layout."""
    force_channels_last(monkeypatch)
    spec = make_spec(assets, mlflow_db, epochs=2, precision="bf16", **TINY)
    whole = train.run_training(spec, tmp_path / "whole")
    with monkeypatch.context() as patch, pytest.raises(StopAfterCheckpoint):
        stop_after_checkpoint(patch)
        train.run_training(spec, tmp_path / "resumed")
    resumed = train.run_training(spec, tmp_path / "resumed")
    same_outputs(tmp_path / "whole", tmp_path / "resumed")
    assert resumed["test_acc"] == whole["test_acc"]
    state = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["best"]["state"]
    convs = [t for k, t in state.items() if t.dim() == 4]
    assert convs and all(t.is_contiguous(memory_format=torch.channels_last) for t in convs)  # NHWC as trained
    record = evaluate_run(tmp_path / "whole", "dtd", assets / "data", device="cpu", progress=False)
    assert record["test_acc"] == pytest.approx(whole["test_acc"])


def test_rng_state_round_trips_and_cuda_states_fit_the_gpus_visible(monkeypatch):
    """The RNG states of a checkpoint restore exactly; a checkpoint written with 8 GPUs
    visible resumes where only 1 is (torch.cuda faked: no GPU here): device 0 gets state 0
    and nothing asks for a device that is not there."""
    import random

    state = runtime.rng_state()
    expected = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    runtime.set_rng_state(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == expected

    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device: calls.append((int(s[0]), device)))
    runtime.set_rng_state({**state, "cuda": [torch.full((4,), i, dtype=torch.uint8) for i in range(8)]})
    assert calls == [(0, 0)]
