"""Data-parallel training on CPU (gloo): 2 processes equal 1 process at the same global
batch, gradient accumulation equals the whole batch, and a run checkpointed by one
process resumes in two with the same result.  The student is the tiny CLIP (LayerNorm:
no batch statistics, so shards add up exactly to the whole batch)."""

import os
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

torch.set_num_threads(1)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

from dho import distributed, train  # noqa: E402
from dho.spec import RunSpec  # noqa: E402
from conftest import StopAfterCheckpoint, stop_after_checkpoint  # noqa: E402
from fake_datasets import make_fake_dataset  # noqa: E402

RESULT_KEYS = ("test_acc", "test_acc_ce", "test_acc_kd", "val_acc", "alpha", "beta", "best_epoch",
               "teacher_test_acc", "spec_hash")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from dho.data import get_dataset
    from dho.models import build_zeroshot_teacher, save_teacher
    from dho.models.clip import create_clip

    root = tmp_path_factory.mktemp("ddp")
    # 8 train images a class: 12 labeled (4 shots) + 12 unlabeled, so every batch of 4 + 4
    # splits evenly over 1, 2 and 4 ranks (unequal shards weigh their means equally: README)
    make_fake_dataset("dtd", root / "data", num_classes=3, per_class=(8, 2, 2), size=16)
    source = get_dataset("dtd", root / "data")
    torch.manual_seed(0)
    weights = root / "tiny_clip.pt"
    torch.save(create_clip("dho-tiny-clip", None).state_dict(), weights)
    teacher = build_zeroshot_teacher("dho-tiny-clip", str(weights), source.classnames, source.templates[:1],
                                     progress=False)
    save_teacher(teacher, root / "teacher.pt")
    return root


def make_spec(assets: Path, tmp: Path, **kw) -> dict:
    base = dict(dataset="dtd", data_root=str(assets / "data"), split={"kind": "fewshot", "shots": 4},
                student="clip_tiny", student_pretrained=False, teacher_file=str(assets / "teacher.pt"),
                method="dho", epochs=2, batch_size=4, unlabeled_batch_size=4, image_size=16, num_workers=0,
                grad_cosine_every=0, progress=False, device="cpu", mlflow_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    base.update(kw)
    return RunSpec(**base).to_dict()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, spec: dict, run_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), MLFLOW_DISABLE_TELEMETRY="true")
    torch.set_num_threads(1)
    # loader workers fork, as in the ranks that srun starts (mp.spawn made 'spawn' this process's default)
    mp.set_start_method("fork", force=True)
    d = distributed.init_from_env("cpu")
    assert (d.rank, d.world) == (rank, world)
    try:
        train.run_training(RunSpec.from_dict(spec), run_dir)
    finally:
        torch.distributed.destroy_process_group()


def run_processes(world: int, spec: dict, run_dir: Path) -> dict:
    mp.spawn(_worker, args=(world, _free_port(), spec, str(run_dir)), nprocs=world, join=True)
    import json

    return json.loads((run_dir / "metrics.json").read_text())


def same(a_dir: Path, b_dir: Path, a: dict, b: dict, keys=RESULT_KEYS, loss_rtol: float = 1e-5) -> None:
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
    for name in ("logits_val.npz", "logits_test.npz"):
        with np.load(a_dir / name) as x, np.load(b_dir / name) as y:
            for head in ("ce", "kd"):
                np.testing.assert_allclose(x[head], y[head], atol=1e-5, rtol=1e-5)
    la = [r.split(",")[1] for r in (a_dir / "history.csv").read_text().splitlines()[1:]]
    lb = [r.split(",")[1] for r in (b_dir / "history.csv").read_text().splitlines()[1:]]
    np.testing.assert_allclose(np.array(la, float), np.array(lb, float), rtol=loss_rtol)  # train loss per epoch


@pytest.fixture(scope="module")
def one_process(assets, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("one")
    return tmp / "run", train.run_training(RunSpec.from_dict(make_spec(assets, tmp)), tmp / "run")


def test_two_processes_equal_one(assets, one_process, tmp_path):
    one_dir, one = one_process  # (0 loader workers; each rank here has one per loader, for the whole run)
    two = run_processes(2, make_spec(assets, tmp_path, num_workers=1), tmp_path / "run")
    same(one_dir, tmp_path / "run", one, two)
    assert two["images_per_s"] and not (tmp_path / "run" / "worker").exists()


def test_gradient_accumulation_keeps_the_global_batch(assets, one_process, tmp_path, monkeypatch):
    one_dir, one = one_process
    # 4 labeled + 4 unlabeled images per step, at most 4 per forward: 2 equal micro-batches,
    # read by 2 loader workers per loader (uncapped; the reference run has none)
    monkeypatch.setattr(train, "loader_workers", lambda n: n)
    spec = make_spec(assets, tmp_path, max_device_batch=4, num_workers=2)
    acc = train.run_training(RunSpec.from_dict(spec), tmp_path / "run")
    same(one_dir, tmp_path / "run", one, acc)
    assert distributed.accumulation_steps(8, 1, 3) == 3 and distributed.accumulation_steps(8, 2, 3) == 2
    assert distributed.accumulation_steps(8, 2, None) == 1


def test_checkpoint_of_one_process_resumes_in_two(assets, one_process, tmp_path, monkeypatch):
    one_dir, one = one_process
    spec = make_spec(assets, tmp_path)
    with monkeypatch.context() as patch, pytest.raises(StopAfterCheckpoint):
        stop_after_checkpoint(patch)
        train.run_training(RunSpec.from_dict(spec), tmp_path / "run")
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    resumed = run_processes(2, spec, tmp_path / "run")
    same(one_dir, tmp_path / "run", one, resumed)


def test_rank_and_master_of_a_task_on_the_second_node(monkeypatch):
    """The variables SLURM gives task 1 of a 2-node x 1-task submitit job: rank 1 of 2,
    local rank 0, the master is the first node; a MASTER_PORT the user set (submitit's way
    to choose the port) is kept, and rendezvous variables that sbatch copied from the
    submitting shell (a stale MASTER_ADDR/RANK/WORLD_SIZE) do not stop the job."""
    job = dict(SUBMITIT_EXECUTOR="slurm", SLURM_JOB_ID="42", SLURM_NTASKS="2", SLURM_JOB_NUM_NODES="2",
               SLURM_NODEID="1", SLURM_PROCID="1", SLURM_LOCALID="0", SLURM_JOB_NODELIST="dho-n[1-2]",
               MASTER_PORT="29555", MASTER_ADDR="login1", RANK="0", WORLD_SIZE="1")
    for key, value in job.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    seen = {}
    keys = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK")
    monkeypatch.setattr(distributed, "init_from_env", lambda device: seen.update({k: os.environ[k] for k in keys}))
    distributed.init_from_submitit("cpu")
    assert seen == {"MASTER_ADDR": "dho-n1", "MASTER_PORT": "29555", "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}


TWO_NODE_CONF = Path("/etc/slurm/dho-two-nodes.conf")  # the two-node cluster of .ci/slurm-up.sh


def mlflow_init(spec: dict, env: dict) -> None:
    import subprocess
    import sys

    from conftest import REPO

    subprocess.run([sys.executable, "-m", "dho", "mlflow-init", "--uri", spec["mlflow_uri"], "--experiment", "dho"],
                   check=True, capture_output=True, cwd=REPO, env=env)


def task_starts(logs: Path, job_id: str) -> dict[str, list[str]]:
    """Per task (rank) of SLURM job ``job_id``: the JobEnvironment lines submitit logged at
    each start of the task."""
    return {log.name.split("_")[1]: [ln for ln in log.read_text().splitlines() if "Starting with JobEnvironment" in ln]
            for log in logs.rglob(f"{job_id}_*_log.out")}


def task_results(logs: Path, job_id: str) -> dict[str, object]:
    """Per task (rank) of SLURM job ``job_id``: what its call returned (submitit's result
    file of this test's own job: rank 0 the metrics, the others ``{"status": "worker",
    "rank": r}``, so a task that trained alone, outside the group, would show)."""
    import pickle

    results = {}
    for path in logs.rglob(f"{job_id}_*_result.pkl"):
        outcome, value = pickle.loads(path.read_bytes())
        results[path.name.split("_")[1]] = value if outcome == "success" else outcome
    return results


def submit_through_slurm(assets: Path, tmp_path: Path, env: dict, *flags: str) -> tuple[dict, dict[str, str]]:
    """`dho submit --launcher slurm FLAGS` of the test run: its metrics and, per task (rank),
    the JobEnvironment line submitit logged when the task started."""
    import json
    import subprocess
    import sys

    from conftest import REPO

    spec = make_spec(assets, tmp_path)
    mlflow_init(spec, env)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    p = subprocess.run([sys.executable, "-m", "dho", "submit", "--launcher", "slurm", "--spec", str(tmp_path / "spec.json"),
                        "--out", str(tmp_path / "run"), "--log-dir", str(tmp_path / "logs"), *flags,
                        "--cpus", "1", "--mem-gb", "1", "--time-min", "10", "--poll-s", "1"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    jid = metrics["slurm_job_id"]
    starts = {task: lines[0] for task, lines in task_starts(tmp_path / "logs", jid).items()}
    workers = {task: r for task, r in task_results(tmp_path / "logs", jid).items() if task != "0"}
    assert workers == {task: {"status": "worker", "rank": int(task)} for task in starts if task != "0"}  # one group
    return metrics, starts


def need_two_nodes() -> None:
    from conftest import skip_unless_ci

    if not TWO_NODE_CONF.is_file():
        skip_unless_ci(f"needs the two-node SLURM cluster of .ci/slurm-up.sh ({TWO_NODE_CONF})")


SAME_NUMBERS = tuple(k for k in RESULT_KEYS if k != "spec_hash")  # dho submit adds teacher_sha to the spec


@pytest.mark.slurm
def test_two_tasks_through_slurm_equal_one_process(assets, one_process, tmp_path, env):
    """`dho submit --launcher slurm --tasks-per-node 2`: submitit starts 2 tasks, each joins
    the gloo group through submitit's TorchDistributedEnvironment; same result as 1 process."""
    one_dir, one = one_process
    two, starts = submit_through_slurm(assets, tmp_path, env, "--tasks-per-node", "2")
    same(one_dir, tmp_path / "run", one, two, keys=SAME_NUMBERS)
    assert set(starts) == {"0", "1"}  # submitit ran two tasks (ranks) in the job


@pytest.mark.slurm
@pytest.mark.parametrize("tasks", [1, 2])
def test_two_nodes_through_slurm_equal_one_process(assets, one_process, tmp_path, env, tasks):
    """`dho submit --launcher slurm --nodes 2 --tasks-per-node T` on the two-node cluster
    (two slurmd on this host, .ci/slurm-up.sh): rank = node x T + local rank, the master
    address is the first node's name; same result as 1 process."""
    need_two_nodes()
    one_dir, one = one_process
    env = {**env, "SLURM_CONF": str(TWO_NODE_CONF)}
    two, starts = submit_through_slurm(assets, tmp_path, env, "--nodes", "2", "--tasks-per-node", str(tasks))
    same(one_dir, tmp_path / "run", one, two, keys=SAME_NUMBERS)
    assert set(starts) == {str(rank) for rank in range(2 * tasks)}
    for rank, line in starts.items():
        node, local = divmod(int(rank), tasks)
        assert f"local_rank={local}({tasks}), node={node}(2), global_rank={rank}({2 * tasks})" in line, line


@pytest.mark.slurm
@pytest.mark.slow
def test_requeued_two_node_job_resumes_to_the_same_result(assets, tmp_path, env, monkeypatch):
    """`scontrol requeue` of a running 2-node job: SLURM kills the tasks on both nodes and
    starts the job again under the same id (so the same rendezvous port); both ranks resume
    from rank 0's last epoch checkpoint and the result equals an uninterrupted 1-process
    run."""
    import json

    from test_slurm_launch import _requeue_and_start, epochs_done, job_id, kill_wait_s, start_submit, wait_for

    need_two_nodes()
    monkeypatch.setenv("SLURM_CONF", str(TWO_NODE_CONF))  # the helpers' scontrol/squeue
    env = {**env, "SLURM_CONF": str(TWO_NODE_CONF)}
    # epochs of ~0.2 s: the job still trains when SIGKILL comes, KillWait after the requeue
    spec = make_spec(assets, tmp_path, epochs=30 + 10 * kill_wait_s())
    mlflow_init(spec, env)
    proc, run_dir = start_submit(spec, tmp_path, "run", env, "--nodes", "2", "--cpus", "1")
    jid = wait_for(lambda: job_id(run_dir), 60, "the job id")
    wait_for(lambda: epochs_done(run_dir) >= 2, 240, "two epochs")
    _requeue_and_start(jid)
    out, err = proc.communicate(timeout=500)
    assert proc.returncode == 0, err
    starts = task_starts(tmp_path / "logs", jid)
    assert {task: len(lines) for task, lines in starts.items()} == {"0": 2, "1": 2}  # both ranks started twice
    log = "".join(f.read_text() for f in (tmp_path / "logs" / jid).glob("*_0_log.err"))
    resumed_after = [int(x) for x in re.findall(r"resuming after epoch (\d+)", log)]
    assert len(resumed_after) == 1 and 2 <= resumed_after[0] < spec["epochs"]  # not restarted from scratch
    requeued = json.loads((run_dir / "metrics.json").read_text())
    (tmp_path / "plain").mkdir()
    plain = train.run_training(RunSpec.from_dict(make_spec(assets, tmp_path / "plain", epochs=spec["epochs"])),
                               tmp_path / "plain" / "run")
    # over 80 epochs the float rounding of 2 shards against 1 whole batch moves the train
    # loss by up to ~1e-4 (relative; 2 uninterrupted processes too, not in 2 epochs); a
    # wrong resume (other views, a lost optimizer state) moves it by far more
    same(tmp_path / "plain" / "run", run_dir, plain, requeued, keys=SAME_NUMBERS, loss_rtol=1e-3)


def test_gpu_only_speedups_are_off_on_cpu():
    """autocast (but where precision: bf16 asks for it), channels-last and the loader-worker
    cap leave a CPU run as it was."""
    import contextlib

    from dho.runtime import autocast, channels_last, loader_workers, nhwc

    cpu = torch.device("cpu")
    assert all(isinstance(autocast(cpu, p), contextlib.nullcontext) for p in ("auto", "fp32"))
    x = torch.zeros(2, 3, 4, 4)
    assert nhwc(x) is x and channels_last(cpu) == torch.preserve_format
    cpus = len(os.sched_getaffinity(0))
    assert loader_workers(0) == 0 and loader_workers(64) == max(0, min(64, cpus - 1))


def test_loader_workers_keep_to_the_task_share_of_the_cpus(monkeypatch):
    """Under SLURM without task affinity (TaskPlugin=task/none, as on the clusters of
    .ci/slurm-up.sh) a task of `--cpus-per-task 1` sees all of its node's CPUs: the loader
    workers are bounded by SLURM_CPUS_PER_TASK, not by the affinity mask alone."""
    from dho.runtime import loader_workers, usable_cpus

    cpus = len(os.sched_getaffinity(0))
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert usable_cpus() == 1 and loader_workers(64) == 0
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", str(cpus + 8))  # never more than the mask
    assert usable_cpus() == cpus
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    assert usable_cpus() == cpus
