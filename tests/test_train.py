"""The training run end to end on tiny generated data (CPU): outputs, determinism,
kill-and-resume, submitit checkpointing, MLflow logging and the run-level bad inputs."""

import csv
import fcntl
import json
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

import submitit  # noqa: E402

from dho import rundir, runtime, train  # noqa: E402
from dho.job import TrainJob  # noqa: E402
from dho.errors import CheckpointError, ConfigError, DataError, TrainingError  # noqa: E402
from dho.spec import RunSpec  # noqa: E402
from conftest import StopAfterCheckpoint, free_port, stop_after_checkpoint  # noqa: E402
from fake_datasets import make_fake_dataset  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Keys of metrics.json that must be identical for the same spec and seed.
RESULT_KEYS = ("test_acc", "test_acc_ce", "test_acc_kd", "val_acc", "alpha", "beta", "best_epoch",
               "teacher_test_acc", "grad_cosine_mean", "labels", "teacher", "spec_hash")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A tiny CoOp-layout dataset (3 classes) and a tiny zero-shot CLIP teacher file."""
    from dho.data import get_dataset
    from dho.models import build_zeroshot_teacher, save_teacher
    from dho.models.clip import create_clip

    root = tmp_path_factory.mktemp("assets")
    make_fake_dataset("dtd", root / "data", num_classes=3, per_class=(6, 2, 2), size=16)
    source = get_dataset("dtd", root / "data")
    torch.manual_seed(0)
    weights = root / "tiny_clip.pt"
    torch.save(create_clip("dho-tiny-clip", None).state_dict(), weights)
    teacher = build_zeroshot_teacher("dho-tiny-clip", str(weights), source.classnames, source.templates[:2],
                                     progress=False)
    save_teacher(teacher, root / "teacher.pt")
    return root


def make_spec(assets: Path, mlflow_db: Path, **kw) -> RunSpec:
    base = dict(dataset="dtd", data_root=str(assets / "data"), split={"kind": "fewshot", "shots": 2},
                student="mobilenet_v2", student_pretrained=False, student_kwargs={"image_size": 16},
                teacher_file=str(assets / "teacher.pt"), method="dho", epochs=3, batch_size=4,
                unlabeled_batch_size=4, image_size=16, num_workers=0, grad_cosine_every=1, progress=False,
                mlflow_uri=f"sqlite:///{mlflow_db}", tags={"suite": "unit"})
    base.update(kw)
    return RunSpec(**base)


@pytest.fixture(scope="module")
def baseline(assets, tmp_path_factory):
    """One uninterrupted run: (spec, run_dir, metrics)."""
    out = tmp_path_factory.mktemp("baseline")
    spec = make_spec(assets, out / "mlflow.db")
    metrics = train.run_training(spec, out / "run")
    return spec, out / "run", metrics


def results(m: dict) -> dict:
    return {k: m[k] for k in RESULT_KEYS}


def same_outputs(dir_a: Path, dir_b: Path) -> None:
    for name in ("logits_val.npz", "logits_test.npz"):
        with np.load(dir_a / name, allow_pickle=False) as a, np.load(dir_b / name, allow_pickle=False) as b:
            for key in ("ce", "kd", "labels"):
                np.testing.assert_array_equal(a[key], b[key])
    assert (dir_a / "history.csv").read_text() == (dir_b / "history.csv").read_text()
    assert (dir_a / "grad_cosine.csv").read_text() == (dir_b / "grad_cosine.csv").read_text()


# --------------------------------------------------------------------------------------
def test_run_writes_every_output(baseline):
    spec, run_dir, m = baseline
    for name in ("spec.json", "checkpoint.pt", "history.csv", "grad_cosine.csv", "logits_val.npz",
                 "logits_test.npz", "mlflow_run_id", "metrics.json"):
        assert (run_dir / name).is_file(), name
    assert json.loads((run_dir / "metrics.json").read_text()) == json.loads(json.dumps(m))
    assert set(m) == set(rundir.METRICS_KEYS) and rundir.load_done(run_dir, spec.hash) == json.loads(json.dumps(m))
    assert m["status"] == "complete" and m["spec_hash"] == spec.hash
    assert m["spec"] == spec.to_dict()
    assert (m["dataset"], m["labels"], m["student"], m["teacher"], m["method"], m["seed"]) == \
        ("dtd", "2shot", "mobilenet_v2", "zeroshot", "dho", 1)
    assert m["epochs"] == 3 and 1 <= m["best_epoch"] <= 3
    for key in ("test_acc", "test_acc_ce", "test_acc_kd", "val_acc", "teacher_test_acc"):
        assert 0.0 <= m[key] <= 100.0, key
    assert 0.0 <= m["alpha"] <= 1.0 and m["beta"] > 0
    assert -1.0 <= m["grad_cosine_mean"] <= 1.0
    assert m["device"] == "cpu" and m["gpu_hours"] == 0.0 and m["wall_time_s"] > 0 and m["images_per_s"] > 0
    assert m["mlflow_run_id"] == (run_dir / "mlflow_run_id").read_text().strip()
    assert m["slurm_job_id"] is None
    spec_json = json.loads((run_dir / "spec.json").read_text())
    assert spec_json["spec_hash"] == spec.hash and RunSpec.from_dict(
        {k: v for k, v in spec_json.items() if k != "spec_hash"}).hash == spec.hash

    with open(run_dir / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert list(rows[0]) == list(train.HISTORY_COLUMNS)
    assert max(float(r["val_acc"]) for r in rows) == pytest.approx(m["val_acc"])
    with open(run_dir / "grad_cosine.csv", newline="") as f:
        cos = list(csv.DictReader(f))
    # 6 labeled images, batch 4 -> 2 steps per epoch; measured every step
    assert [int(r["step"]) for r in cos] == [1, 2, 3, 4, 5, 6]
    assert np.mean([float(r["cosine"]) for r in cos]) == pytest.approx(m["grad_cosine_mean"])
    with open(run_dir / "gradient_conflict.csv", newline="") as f:
        conflict = list(csv.DictReader(f))  # the paper's Fig. 3 quantities (dho.conflict), same steps
    assert [int(r["step"]) for r in conflict] == [1, 2, 3, 4, 5, 6]
    for key in ("cos_theta", "cos_w", "inner"):
        values = [float(r[key]) for r in conflict]
        assert np.mean(values) == pytest.approx(m[f"grad_{key}_mean"])
        assert all(-1.0 <= v <= 1.0 for v in values) or key == "inner"

    with np.load(run_dir / "logits_test.npz", allow_pickle=False) as z:
        assert z["ce"].shape == z["kd"].shape == (6, 3) and z["labels"].tolist() == [0, 0, 1, 1, 2, 2]
        from dho.inference import accuracy, combine_heads

        assert accuracy(combine_heads(z["ce"], z["kd"], m["alpha"], m["beta"]), z["labels"]) == \
            pytest.approx(m["test_acc"])
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 3 and ckpt["spec_hash"] == spec.hash and ckpt["best"]["epoch"] == m["best_epoch"]


def test_epoch_select_last_reports_the_last_epoch(assets, tmp_path):
    """Where val is the test set the last epoch is reported (no choice on test images)."""
    spec = make_spec(assets, tmp_path / "mlflow.db", epoch_select="last", alpha_beta="fixed", alpha=0.4,
                     beta=0.5, crop_interpolation="bicubic", grad_cosine_every=0)
    m = train.run_training(spec, tmp_path / "run")
    with open(tmp_path / "run" / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert m["best_epoch"] == 3 and m["val_acc"] == pytest.approx(float(rows[-1]["val_acc"]))
    assert (m["alpha"], m["beta"]) == (0.4, 0.5)


def test_mlflow_receives_params_and_metrics(baseline):
    from mlflow import MlflowClient

    spec, run_dir, m = baseline
    client = MlflowClient(tracking_uri=spec.mlflow_uri)
    run = client.get_run(m["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["spec_hash"] == spec.hash and run.data.tags["suite"] == "unit"
    assert run.data.params["method"] == "dho" and run.data.params["split.shots"] == "2"
    assert run.data.metrics["test_acc"] == pytest.approx(m["test_acc"])
    assert [x.step for x in client.get_metric_history(run.info.run_id, "val_acc")] == [1, 2, 3]
    assert len(client.get_metric_history(run.info.run_id, "grad_cosine")) == 6
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"metrics.json", "history.csv"}
    from dho.tracking import check_results

    assert check_results(run_dir.parent, spec.mlflow_uri) == (1, [])


def test_cli_train_on_a_done_run_prints_its_result(baseline, tmp_path, capsys):
    from dho.cli import main

    spec, run_dir, m = baseline
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(json.dumps({**spec.to_dict(), "epochs": 1}))
    assert main(["train", "--spec", str(spec_file), "--set", "epochs=3", "--out", str(run_dir)]) == 0
    assert f"test_acc {m['test_acc']:.2f}" in capsys.readouterr().out


def test_done_run_is_not_trained_again(baseline):
    spec, run_dir, m = baseline
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    assert train.run_training(spec, run_dir) == json.loads(json.dumps(m))
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before
    # the submitit job returns the same metrics (already done)
    assert TrainJob()(spec.to_dict(), str(run_dir))["test_acc"] == m["test_acc"]


def test_same_spec_and_seed_gives_same_metrics(baseline, assets, tmp_path):
    spec, run_dir, m = baseline
    # num_workers is not part of the spec hash: loader workers must not change the numbers
    again = train.run_training(make_spec(assets, tmp_path / "mlflow.db", num_workers=2), tmp_path / "run")
    assert results(again) == results(m)
    same_outputs(run_dir, tmp_path / "run")


# loader workers -----------------------------------------------------------------------
def _log_loader_pids(monkeypatch, log: Path) -> None:
    """Two loader workers per dataset (uncapped), each image read logged as ``kind epoch pid``
    (a line per read, appended from whichever process reads it)."""
    from dho.data.loading import ImageList
    from dho.data.views import ViewDataset, unpack_keys

    monkeypatch.setattr(train, "loader_workers", lambda n: n)

    def logged(real, kind):
        def getitem(self, i):
            epoch = int(unpack_keys(i)[0]) if kind == "view" else 0
            with open(log, "a") as f:
                f.write(f"{kind} {epoch} {os.getpid()}\n")
            return real(self, i)
        return getitem

    monkeypatch.setattr(ViewDataset, "__getitem__", logged(ViewDataset.__getitem__, "view"))
    monkeypatch.setattr(ImageList, "__getitem__", logged(ImageList.__getitem__, "eval"))


def _read_pids(log: Path) -> dict[tuple[str, int], set[int]]:
    out: dict[tuple[str, int], set[int]] = {}
    for line in log.read_text().splitlines():
        kind, epoch, pid = line.split()
        out.setdefault((kind, int(epoch)), set()).add(int(pid))
    return out


def _gone(pids: set[int]) -> bool:
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        return False
    return True


def test_loader_workers_start_once_per_run_and_change_nothing(baseline, assets, tmp_path, monkeypatch):
    """2 workers per loader for 3 epochs: the same processes read every epoch's views (one
    set per loader, not forked again per epoch), the outputs equal the 0-worker run's, and
    the workers are gone when the run returns."""
    _, base_dir, m = baseline
    log = tmp_path / "reads.log"
    _log_loader_pids(monkeypatch, log)
    again = train.run_training(make_spec(assets, tmp_path / "mlflow.db", num_workers=2), tmp_path / "run")
    assert results(again) == results(m)
    same_outputs(base_dir, tmp_path / "run")
    pids = _read_pids(log)
    views = [pids[("view", e)] for e in (1, 2, 3)]
    assert os.getpid() not in set().union(*views, pids[("eval", 0)])  # read in workers
    assert views[0] == views[1] == views[2] and len(views[0]) == 4  # labeled + unlabeled loaders, 2 each
    assert len(pids[("eval", 0)]) == 4  # val and test loaders, 2 each, over 3 validations and the test
    assert _gone(set().union(*views, pids[("eval", 0)]))


def test_dropout_draws_the_same_with_and_without_loader_workers(assets, tmp_path, monkeypatch):
    """A method with dropout (DHO's non-linear heads) uses torch's global random stream while
    training: the loaders draw nothing from it, so 0 and 2 workers give the same run."""
    runs = {}
    for workers in (0, 2):
        monkeypatch.setattr(train, "loader_workers", lambda n: n)
        spec = make_spec(assets, tmp_path / "mlflow.db", method="dho_nl_both", num_workers=workers)
        runs[workers] = results(train.run_training(spec, tmp_path / f"run{workers}"))
    assert runs[0] == runs[2]
    same_outputs(tmp_path / "run0", tmp_path / "run2")


def test_resume_with_loader_workers_gives_the_same_outputs(baseline, assets, tmp_path, monkeypatch):
    """A run with 2 workers per loader stopped by an error after its epoch-1 checkpoint: its
    workers stop with it; resumed (new workers), it equals the uninterrupted 0-worker run."""
    _, base_dir, m = baseline
    log = tmp_path / "reads.log"
    _log_loader_pids(monkeypatch, log)
    spec = make_spec(assets, tmp_path / "mlflow.db", num_workers=2)
    with monkeypatch.context() as patch, pytest.raises(StopAfterCheckpoint):
        stop_after_checkpoint(patch)
        train.run_training(spec, tmp_path / "run")
    first = _read_pids(log)
    assert set(first) == {("view", 1), ("eval", 0)} and _gone(first[("view", 1)] | first[("eval", 0)])
    resumed = train.run_training(spec, tmp_path / "run")
    assert results(resumed) == results(m)
    same_outputs(base_dir, tmp_path / "run")
    later = _read_pids(log)
    assert later[("view", 2)] == later[("view", 3)] and not later[("view", 2)] & first[("view", 1)]


# kill-and-resume ----------------------------------------------------------------------
_CHILD = r"""
import os, sys, time, torch
torch.set_num_threads(1)  # the same float reduction order as the in-process baseline
stage = os.environ["DHO_TEST_STALL"]          # "after:N" or "during:N": stall at the N-th checkpoint
marker = os.environ["DHO_TEST_MARKER"]
when, n = stage.split(":"); n = int(n)
calls = []
real_save = torch.save
def slow_save(obj, f, *a, **k):
    real_save(obj, f, *a, **k)
    if isinstance(obj, dict) and "optimizer" in obj:
        calls.append(1)
        if when == "during" and len(calls) == n:   # inside the atomic write: temp file written, not renamed
            open(marker, "w").close(); time.sleep(600)
torch.save = slow_save
import dho.train
real_ckpt = dho.train._Run._save_checkpoint
def after(self):
    real_ckpt(self)
    if when == "after" and len(calls) == n:
        open(marker, "w").close(); time.sleep(600)
dho.train._Run._save_checkpoint = after
from dho.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _kill_at(stage: str, spec_file: Path, run_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / f"stalled-{stage.replace(':', '-')}"
    env = dict(os.environ, DHO_TEST_STALL=stage, DHO_TEST_MARKER=str(marker),
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, "train", "--spec", str(spec_file), "--out", str(run_dir)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"child exited early: {proc.stdout.read().decode()[-2000:]}")
        assert time.time() < deadline, "child never reached the checkpoint"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not (run_dir / "metrics.json").exists()


@pytest.mark.slow
def test_kill_and_resume_gives_the_same_metrics(baseline, assets, tmp_path):
    spec, base_dir, m = baseline
    spec_file = tmp_path / "spec.json"
    # with a loader worker (the baseline has none): SIGKILL leaves live workers, which stop on their own
    spec_file.write_text(json.dumps(make_spec(assets, tmp_path / "mlflow.db", num_workers=1).to_dict()))
    run_dir = tmp_path / "run"

    _kill_at("after:1", spec_file, run_dir, tmp_path)  # killed right after the epoch-1 checkpoint
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"] == 1
    _kill_at("during:1", spec_file, run_dir, tmp_path)  # killed inside the epoch-2 checkpoint write
    assert list(run_dir.glob(".checkpoint.pt.*.tmp")), "the killed write left its temp file"
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"] == 1
    mlflow_id = (run_dir / "mlflow_run_id").read_text()

    resumed = train.run_training(RunSpec.from_dict(json.loads(spec_file.read_text())), run_dir)
    assert results(resumed) == results(m)
    same_outputs(base_dir, run_dir)
    assert not list(run_dir.glob(".*.tmp"))
    # the retries reused one MLflow run
    from mlflow import MlflowClient

    assert resumed["mlflow_run_id"] == mlflow_id.strip()
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp = client.get_experiment_by_name("dho")
    assert len(client.search_runs([exp.experiment_id])) == 1


def test_trainjob_checkpoint_requeues_itself(baseline):
    spec, run_dir, _ = baseline
    job = TrainJob()
    assert isinstance(job, submitit.helpers.Checkpointable)
    delayed = job.checkpoint(spec.to_dict(), str(run_dir))
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert isinstance(delayed.function, TrainJob)
    assert delayed.args == (spec.to_dict(), str(run_dir))
    restored = pickle.loads(pickle.dumps(delayed))  # submitit pickles it for the requeued job
    assert restored.result()["test_acc"] == json.loads((run_dir / "metrics.json").read_text())["test_acc"]


def test_second_launch_waits_for_the_lock_then_sees_done(baseline, tmp_path):
    spec, base_dir, m = baseline
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    got = {}
    with open(run_dir / ".lock", "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)  # "the first launch" is training
        t = threading.Thread(target=lambda: got.setdefault("m", train.run_training(spec, run_dir)))
        t.start()
        time.sleep(1.0)
        assert t.is_alive() and "m" not in got  # waiting for the lock
        (run_dir / "metrics.json").write_text((base_dir / "metrics.json").read_text())  # first launch finishes
        fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    t.join(timeout=60)
    assert got["m"]["test_acc"] == m["test_acc"]
    assert not (run_dir / "checkpoint.pt").exists()  # it did not train


# bad inputs ---------------------------------------------------------------------------
def test_nan_loss_raises_training_error(assets, tmp_path, monkeypatch):
    from dho.methods import METHODS

    method = METHODS.get("dho")
    real = method.loss

    def nan_loss(*args, **kw):
        total, terms = real(*args, **kw)
        return total * float("nan"), {**terms, "sup": terms["sup"] * float("nan")}

    monkeypatch.setattr(method, "loss", nan_loss)
    with pytest.raises(TrainingError, match=r"epoch 1, step 1 .*sup=nan"):
        train.run_training(make_spec(assets, tmp_path / "mlflow.db", epochs=1), tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_non_finite_gradient_with_a_finite_loss_stops_before_the_weights_change(assets, tmp_path, monkeypatch):
    """An overflow in the backward (the loss finite) stops the run with one line naming the
    parameter, before the optimizer step spreads it into every weight."""
    real_step, weights = train._Run._train_step, []

    def overflowing_step(self, *a):
        loss = real_step(self, *a)
        name, p = [(n, p) for n, p in self.student.named_parameters() if p.grad is not None][3]
        p.grad.view(-1)[0] = float("inf")
        weights.append((name, [w.detach().clone() for w in self.student.parameters()]))
        return loss

    monkeypatch.setattr(train._Run, "_train_step", overflowing_step)
    with pytest.raises(TrainingError) as e:
        train.run_training(make_spec(assets, tmp_path / "mlflow.db", epochs=1), tmp_path / "run")
    name, before = weights[0]
    assert str(e.value) == (f"non-finite gradient at epoch 1, step 1 (first in {name}) with a finite loss; "
                            f"lower lr, set precision: fp32, or check the teacher/data")
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert len(weights) == 1 and all(w.isfinite().all() for w in before)  # stopped before the first step


def test_a_full_disk_at_the_slimming_leaves_a_complete_run(assets, tmp_path, monkeypatch, capsys):
    """The final checkpoint cannot be written (disk full): the run is still complete (its
    metrics.json is written first) and keeps its full checkpoint, which evaluation reads too."""
    from dho.errors import OutputError

    real = train.atomic_torch_save

    def full_disk_for_the_final(obj, path):
        if obj.get("final"):
            raise OutputError(f"cannot write {path}: No space left on device")
        real(obj, path)

    monkeypatch.setattr(train, "atomic_torch_save", full_disk_for_the_final)
    m = train.run_training(make_spec(assets, tmp_path / "mlflow.db", epochs=1), tmp_path / "run")
    assert m["status"] == "complete" and (tmp_path / "run" / "metrics.json").is_file()
    assert "optimizer" in torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert re.search(r"warning: cannot write \S+checkpoint\.pt: No space left on device; the run is complete",
                     capsys.readouterr().err)


def test_corrupt_or_foreign_checkpoint(baseline, assets, tmp_path):
    spec, base_dir, _ = baseline
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    data = (base_dir / "checkpoint.pt").read_bytes()
    (run_dir / "checkpoint.pt").write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CheckpointError, match=r"checkpoint .*checkpoint\.pt is corrupt or truncated.*delete it"):
        train.run_training(spec, run_dir)
    (run_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        train.run_training(spec, run_dir)
    (run_dir / "checkpoint.pt").write_bytes(data)  # a checkpoint of another spec
    with pytest.raises(ConfigError, match="holds another spec"):
        train.run_training(make_spec(assets, tmp_path / "mlflow.db", seed=2), run_dir)
    assert not (run_dir / "metrics.json").exists()


def test_finished_run_keeps_a_slim_checkpoint(baseline, tmp_path):
    """After metrics.json, checkpoint.pt keeps the kept (best) state only: no optimizer,
    scheduler, RNG or last weights; evaluating from it reproduces the run; a run directory
    whose metrics.json was deleted says so in one line instead of resuming."""
    spec, base_dir, metrics = baseline
    ckpt = torch.load(base_dir / "checkpoint.pt", weights_only=True)
    assert sorted(ckpt) == sorted(train.FINAL_CHECKPOINT_KEYS) and ckpt["final"] is True
    assert ckpt["spec_hash"] == spec.hash and ckpt["best"]["epoch"] == metrics["best_epoch"]
    state_bytes = sum(t.numel() * t.element_size() for t in ckpt["best"]["state"].values())
    assert (base_dir / "checkpoint.pt").stat().st_size < 1.2 * state_bytes + 100_000  # not 4x: no Adam moments
    run_dir = shutil.copytree(base_dir, tmp_path / "run")
    (run_dir / "metrics.json").unlink()
    with pytest.raises(CheckpointError, match=r"final one of a finished run .*metrics\.json is missing; delete"):
        train.run_training(spec, run_dir)


def test_teacher_with_wrong_class_count(assets, tmp_path):
    from dho.models import build_zeroshot_teacher, save_teacher

    teacher = build_zeroshot_teacher("dho-tiny-clip", str(assets / "tiny_clip.pt"), ["a", "b"], ["a photo of {}."],
                                     progress=False)
    save_teacher(teacher, tmp_path / "t2.pt")
    spec = make_spec(assets, tmp_path / "mlflow.db", teacher_file=str(tmp_path / "t2.pt"))
    with pytest.raises(CheckpointError, match=r"t2\.pt has 2 classes; expected 3"):
        train.run_training(spec, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("key, value, error, match", [
    ("method", "nope", ConfigError, "unknown method 'nope'"),
    ("student", "nope", ConfigError, "unknown student 'nope'"),
    ("teacher_file", None, ConfigError, "method 'dho' needs a teacher"),
    ("method_args", {"lam": 2.0}, ConfigError, "method_args.lam"),
    ("dataset", "eurosat", DataError, "eurosat"),
    ("teacher_sha", "deadbeef", CheckpointError, "teacher_sha"),
])
def test_bad_run_inputs_fail_before_training(assets, tmp_path, key, value, error, match):
    spec = make_spec(assets, tmp_path / "mlflow.db", **{key: value})
    with pytest.raises(error, match=match):
        train.run_training(spec, tmp_path / "run")
    assert not (tmp_path / "run" / "metrics.json").exists()
    assert not (tmp_path / "run" / "spec.json").exists()


def test_ce_method_without_teacher_from_a_split_manifest(assets, tmp_path):
    from dho.data import get_dataset
    from dho.data.splits import make_split

    source = get_dataset("dtd", assets / "data")
    make_split(source, {"kind": "fewshot", "shots": 2}, 1).save(tmp_path / "split1.json")
    make_split(source, {"kind": "fewshot", "shots": 2}, 2).save(tmp_path / "split2.json")
    spec = make_spec(assets, tmp_path / "mlflow.db", method="ce", teacher_file=None, epochs=1,
                     epoch_length="unlabeled", tags={"labels": "two-shots"}, num_workers=1,
                     split_manifest=str(tmp_path / "split2.json"))
    with pytest.raises(ConfigError, match=r"split2\.json: seed = 2 but the spec has 1"):
        train.run_training(spec, tmp_path / "run")
    spec.split_manifest = str(tmp_path / "split1.json")
    m = train.run_training(spec, tmp_path / "run")
    assert (m["teacher"], m["teacher_test_acc"], m["grad_cosine_mean"], m["labels"]) == \
        ("none", None, None, "two-shots")
    assert m["test_acc_ce"] == m["test_acc_kd"]  # one head
    assert (tmp_path / "run" / "grad_cosine.csv").read_text() == "step,cosine\n"


def test_cli_bad_spec_prints_one_error_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: three\n")
    out = subprocess.run([sys.executable, "-m", "dho", "train", "--spec", str(bad), "--out", str(tmp_path / "r")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "'epochs'" in lines[0], out.stderr
    assert not (tmp_path / "r").exists()


def test_lr_schedule_and_labels_name():
    f = lambda s, **kw: runtime.lr_factor(s, 100, **{"warmup": 0.1, "start_factor": 0.0, "schedule": "linear", **kw})  # noqa: E731
    assert [f(0), f(5), f(10), f(55), f(100)] == [0.0, 0.5, 1.0, 0.5, 0.0]
    assert f(0, start_factor=0.01) == 0.01 and f(10, warmup=10) == 1.0
    assert f(10, schedule="cosine") == 1.0 and f(55, schedule="cosine") == pytest.approx(0.5)
    assert f(100, schedule="cosine") == pytest.approx(0.0)
    assert train.labels_name(RunSpec(split={"kind": "percent", "percent": 1})) == "1pct"
    assert train.labels_name(RunSpec(split={"kind": "list", "file": "lists/1percent.txt"})) == "list-1percent"
    assert train.labels_name(RunSpec(split={"kind": "fewshot", "shots": 16})) == "16shot"


def test_device_and_slurm_id(monkeypatch):
    assert runtime.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="'device'"):
        runtime.resolve_device("tpu")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    assert runtime.slurm_job_id() == "77"
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "70")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    assert runtime.slurm_job_id() == "70_3"


def test_run_continues_when_mlflow_is_down_then_syncs(assets, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from dho.tracking import check_results, sync_run

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setattr("dho.tracking.time.sleep", lambda s: None)  # no backoff waits in the test
    spec = make_spec(assets, tmp_path / "unused.db", method="ce", teacher_file=None, epochs=1,
                     mlflow_uri=f"http://127.0.0.1:{free_port()}")  # nothing listens there
    with pytest.warns(RuntimeWarning, match="unavailable"):
        m = train.run_training(spec, tmp_path / "runs" / "r")
    assert m["status"] == "complete" and m["mlflow_run_id"] is None
    assert not (tmp_path / "runs" / "r" / "mlflow_run_id").exists()

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # MLflow is back (here: another store)
    run_id = sync_run(tmp_path / "runs" / "r", uri)
    assert json.loads((tmp_path / "runs" / "r" / "metrics.json").read_text())["mlflow_run_id"] == run_id
    assert MlflowClient(tracking_uri=uri).get_run(run_id).data.metrics["test_acc"] == m["test_acc"]
    assert check_results(tmp_path / "runs", uri) == (1, [])


def test_chained_cosine_is_torchs_chained_scheduler():
    """schedule chained_cosine = ChainedScheduler([LinearLR(0.01, 1, warm),
    CosineAnnealingLR(total - warm)]) of train_imgnet_semi.py, step by step (incl. the
    rise after total - warm)."""
    total, warm, base = 60, 10, 5e-5
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=base)
    sched = torch.optim.lr_scheduler.ChainedScheduler([
        torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.01, end_factor=1.0, total_iters=warm),
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, total - warm)])
    torch_lrs = []
    for _ in range(total + 1):
        torch_lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    ours = [base * runtime.lr_factor(t, total, warm, 0.01, "chained_cosine") for t in range(total + 1)]
    np.testing.assert_allclose(ours, torch_lrs, rtol=1e-6, atol=1e-15)
    assert ours[total - warm] < 1e-12 < ours[total]  # the code's cosine rises again at the end
