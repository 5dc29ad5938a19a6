"""`dho submit --launcher slurm` through real sbatch + submitit: results, bounded waits,
and preemption (submitit checkpoint -> requeue -> resume, same metrics)."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, tiny_spec

pytestmark = pytest.mark.slurm

COMPARED = ("test_acc", "test_acc_ce", "test_acc_kd", "val_acc", "alpha", "beta", "best_epoch", "spec_hash")


def start_submit(spec: dict, tmp: Path, name: str, env: dict, *extra: str) -> tuple[subprocess.Popen, Path]:
    spec_file = tmp / f"{name}.json"
    spec_file.write_text(json.dumps(spec))
    run_dir = tmp / name
    proc = subprocess.Popen([sys.executable, "-m", "dho", "submit", "--launcher", "slurm", "--spec", str(spec_file),
                             "--out", str(run_dir), "--log-dir", str(tmp / "logs"), "--mem-gb", "1",
                             "--time-min", "10", "--poll-s", "1", *extra],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, run_dir


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def epochs_done(run_dir: Path) -> int:
    try:
        return len(list(csv.DictReader((run_dir / "history.csv").open())))
    except OSError:
        return 0


def job_id(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "slurm_job.json").read_text())["job_id"]
    except (OSError, ValueError):
        return None


def squeue(jid: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", jid, "-t", "all", "-o", "%T %r"],
                          capture_output=True, text=True).stdout.strip()


def test_slurm_submit_records_job_and_logs(shapes_root, tmp_path, env):
    proc, run_dir = start_submit(tiny_spec(shapes_root, tmp_path, epochs=1), tmp_path, "run", env)
    wait_for(lambda: job_id(run_dir), 60, "the job id")
    # the waiting launcher has submitted the job and never loads torch (cheap to keep 100 of)
    maps = Path(f"/proc/{proc.pid}/maps").read_text()
    assert proc.poll() is None and "libtorch" not in maps
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["slurm_job_id"] == job_id(run_dir)
    assert list((tmp_path / "logs" / metrics["slurm_job_id"]).glob("*_log.out"))


def test_cancelled_job_fails_within_bounded_time(shapes_root, tmp_path, env):
    proc, run_dir = start_submit(tiny_spec(shapes_root, tmp_path, epochs=200), tmp_path, "run", env,
                                 "--grace-s", "3")
    jid = wait_for(lambda: job_id(run_dir), 60, "the job id")
    wait_for(lambda: squeue(jid).startswith("RUNNING"), 120, "the job to start")
    subprocess.run(["scancel", jid], check=True)
    out, err = proc.communicate(timeout=90)  # would hang forever with job.result()
    assert proc.returncode == 2
    assert f"SLURM job {jid}" in err and "without a complete metrics.json" in err
    assert not (run_dir / "metrics.json").exists()


def test_preempted_job_requeues_resumes_and_matches_uninterrupted_run(shapes_root, tmp_path, env):
    spec = tiny_spec(shapes_root, tmp_path, epochs=10)
    proc, run_dir = start_submit(spec, tmp_path, "preempted", env)
    jid = wait_for(lambda: job_id(run_dir), 60, "the job id")
    wait_for(lambda: epochs_done(run_dir) >= 2, 240, "two epochs")
    # what SLURM sends before preemption/time limit: submitit checkpoints and requeues
    subprocess.run(["scancel", "--signal=USR2", jid], check=True)
    # the requeued job waits ~2 min (BeginTime) before it starts again: let it start now
    wait_for(lambda: squeue(jid).startswith("PENDING"), 120, "the requeue")
    _start_now(jid)
    out, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err
    log = "".join(f.read_text() for f in (tmp_path / "logs" / jid).glob("*_log.err"))
    assert "SIGUSR2" in log and "REQUEUE" in log  # it really was interrupted and requeued
    preempted = json.loads((run_dir / "metrics.json").read_text())
    assert preempted["slurm_job_id"] == jid
    # the same spec without interruption (in-process, with the job's 1 CPU thread: float
    # reductions depend on the thread count) gives the same numbers
    import torch

    from dho.spec import RunSpec
    from dho.train import run_training

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        plain = run_training(RunSpec.from_dict(spec), tmp_path / "plain")
    finally:
        torch.set_num_threads(threads)
    assert {k: preempted[k] for k in COMPARED} == {k: plain[k] for k in COMPARED}


def _job_log(tmp_path: Path, jid: str) -> str:
    """The job's submitit log (stdout: submitit's lines) and stderr (the run's progress)."""
    return "".join(f.read_text() for f in sorted((tmp_path / "logs" / jid).glob("*_log.*")))


def _requeue_and_start(jid: str) -> None:
    """`scontrol requeue` (what an admin or a requeueing preemption does); once the job has
    ended (SIGKILL after KillWait if it does not exit) SLURM holds it ~2 min (BeginTime)
    before it starts again: let it start now."""
    subprocess.run(["scontrol", "requeue", jid], check=True, capture_output=True)
    wait_for(lambda: squeue(jid).startswith("PENDING"), 180, "the requeue")
    _start_now(jid)


def _start_now(jid: str) -> None:
    """Start requeued (pending) job ``jid`` now instead of after SLURM's ~2 min hold.  slurmd
    revokes a job's credential when the job ends, to the second, and refuses a start whose
    credential is not newer ("Job credential revoked": the job fails instead); that is what
    the hold is for, so the start comes in a later second than the end."""
    time.sleep(1.5)
    subprocess.run(["scontrol", "update", f"JobId={jid}", "StartTime=now"], check=True, capture_output=True)


def kill_wait_s() -> int:
    """The cluster's KillWait: seconds from SIGTERM to SIGKILL of a cancelled/requeued job."""
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, check=True).stdout
    return int(re.search(r"^KillWait\s*=\s*(\d+)", out, re.M).group(1))


def test_scontrol_requeue_resumes_from_the_epoch_checkpoint(shapes_root, tmp_path, env):
    """README fault table, preemption row: `scontrol requeue` sends SIGTERM, which submitit
    ignores ("Bypassing signal SIGTERM"), so TrainJob.checkpoint is never called; the run
    goes on until SLURM kills it after KillWait (5 s on the cluster of .ci/slurm-up.sh), then
    the requeued job resumes from the last epoch checkpoint, and MLflow keeps one run with
    one value per epoch."""
    from dho.tracking import check_results

    # long enough to outlast KillWait (an epoch takes ~0.6 s on 2 quiet cores)
    epochs = 30 + 2 * kill_wait_s()
    spec = tiny_spec(shapes_root, tmp_path, epochs=epochs)
    proc, run_dir = start_submit(spec, tmp_path, "requeued", env)
    jid = wait_for(lambda: job_id(run_dir), 60, "the job id")
    wait_for(lambda: epochs_done(run_dir) >= 2, 240, "two epochs")
    _requeue_and_start(jid)
    out, err = proc.communicate(timeout=500)
    assert proc.returncode == 0, err  # the waiting launcher followed the job through its requeue
    log = _job_log(tmp_path, jid)
    assert log.count("Starting with JobEnvironment") == 2, log[-3000:]  # the same job id started twice
    assert "Bypassing signal SIGTERM" in log and "DUE TO JOB REQUEUE" in log
    assert "SIGUSR2" not in log and "checkpoint" not in log.lower()  # submitit's checkpoint was not called
    resumed_after = [int(x) for x in re.findall(r"resuming after epoch (\d+)", log)]
    assert len(resumed_after) == 1 and resumed_after[0] >= 2  # not restarted from scratch
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["slurm_job_id"] == jid
    assert [int(r["epoch"]) for r in csv.DictReader((run_dir / "history.csv").open())] == list(range(1, epochs + 1))
    assert check_results(tmp_path, spec["mlflow_uri"]) == (1, [])  # one MLflow run, no step logged twice


def test_requeued_finished_job_is_a_no_op(shapes_root, tmp_path, env):
    """A job requeued after its run finished starts again (after SLURM's requeue hold) and
    returns the finished metrics without training or rewriting anything."""
    proc, run_dir = start_submit(tiny_spec(shapes_root, tmp_path, epochs=1), tmp_path, "finished", env)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    jid = job_id(run_dir)
    wait_for(lambda: not squeue(jid).startswith(("RUNNING", "COMPLETING")), 120, "the job to end")
    before = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in run_dir.iterdir() if f.is_file()}
    _requeue_and_start(jid)
    wait_for(lambda: _job_log(tmp_path, jid).count("Job completed successfully") == 2, 300,
             "the requeued job to finish")
    after = {f.name: (f.stat().st_mtime_ns, f.read_bytes()) for f in run_dir.iterdir() if f.is_file()}
    assert after == before  # nothing retrained or rewritten
    second_start = _job_log(tmp_path, jid).split("Starting with JobEnvironment")[2]
    print("requeued no-op job log:", second_start.strip().replace("\n", " | "))
