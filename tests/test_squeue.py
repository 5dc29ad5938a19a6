"""The queue snapshot shared by waiting launchers (dho.squeue): one squeue call per
interval per folder however many processes wait, jobs newer than the snapshot are not
declared gone, and a failing squeue is not retried faster than the interval.  squeue is
a script on PATH that logs each call (the real one is exercised by tests/test_slurm_*)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from dho.launch import TrainingError, wait_for_job
from dho.squeue import SNAPSHOT, QueueView


@pytest.fixture
def fake_squeue(tmp_path, monkeypatch):
    """A `squeue` that appends one line per call to calls.log and prints queue.txt (or
    fails when queue.txt is absent)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "squeue"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/calls.log\n"
                      f"[ -f {tmp_path}/queue.txt ] || {{ echo 'slurm_load_jobs error' >&2; exit 1; }}\n"
                      f"sleep 0.2\ncat {tmp_path}/queue.txt\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")

    def calls() -> list[str]:
        log = tmp_path / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    return calls


def test_states_come_from_one_user_wide_squeue(tmp_path, fake_squeue):
    (tmp_path / "queue.txt").write_text("101 RUNNING\n102 PENDING\n103 COMPLETED\n")
    view = QueueView(tmp_path / "logs", max_age_s=60)
    assert view.state("101") == ("RUNNING", True)
    assert view.state("102") == ("PENDING", True)
    assert view.state("103") == ("COMPLETED", True)
    assert view.state("999") == (None, True)  # SLURM no longer lists it
    assert fake_squeue() == ["--me -h -t all -o %i %T %r"]  # one call served all four
    # a job submitted after the snapshot was taken is unknown, not gone
    assert view.state("104", submitted_at=time.time() + 1) == (None, False)
    # a stale snapshot is refreshed; `fresher_than` forces a newer one
    (tmp_path / "queue.txt").write_text("101 COMPLETING\n")
    assert view.state("101") == ("RUNNING", True)
    assert view.state("101", fresher_than=time.time()) == ("COMPLETING", True)
    assert QueueView(tmp_path / "logs", max_age_s=0).state("101") == ("COMPLETING", True)
    assert len(fake_squeue()) == 3


def test_a_failing_squeue_is_unknown_and_not_retried_within_the_interval(tmp_path, fake_squeue):
    view = QueueView(tmp_path / "logs", max_age_s=60)
    assert view.state("101") == (None, False)
    assert view.state("101") == (None, False)
    assert len(fake_squeue()) == 1


def test_many_waiting_processes_share_one_squeue_call(tmp_path, fake_squeue):
    """16 processes ask at once for a snapshot newer than their start: the lock makes
    them wait for one another's call instead of each running squeue."""
    (tmp_path / "queue.txt").write_text("101 RUNNING\n")
    code = ("import sys, time; from dho.squeue import QueueView; "
            "print(QueueView(sys.argv[1], max_age_s=60).state('101'))")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "logs")], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(16)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert outs == ["('RUNNING', True)"] * 16
    assert len(fake_squeue()) == 1
    assert (tmp_path / "logs" / SNAPSHOT).is_file()


def test_a_job_that_cannot_start_is_named_once_with_its_reason(tmp_path, fake_squeue, capsys, monkeypatch):
    """A pending job whose reason says it cannot start as asked (squeue %r, here a 2-node
    partition asked for 3 nodes) gets one warning line naming the reason and the key to fix;
    an ordinary wait (Resources) none; the reason is in the failure when the wait runs out."""
    scancel = tmp_path / "bin" / "scancel"  # the wait running out cancels the job: not a real one here
    scancel.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/scancel.log\n")
    scancel.chmod(0o755)
    monkeypatch.setattr("dho.launch.CHECK_S", 0.05)
    (tmp_path / "queue.txt").write_text("201 PENDING Resources\n202 PENDING PartitionNodeLimit\n"
                                        "203 RUNNING None\n")
    view = QueueView(tmp_path / "logs", max_age_s=60)
    assert view.state("202") == ("PENDING", True)
    assert view.pending_reason("202") == "PartitionNodeLimit" and view.pending_reason("201") == "Resources"
    assert view.pending_reason("203") is None  # reasons of pending jobs only
    for job, warned in (("201", False), ("202", True)):
        with pytest.raises(TrainingError) as e:
            wait_for_job(job, tmp_path / "logs", lambda: None, "run x", "metrics", poll_s=60, max_wait_s=0.5)
        err = capsys.readouterr().err
        assert (f"SLURM job {job} for run x is pending with reason PartitionNodeLimit" in err) == warned
        assert err.count("warning:") == int(warned) and ("resources.nodes" in err) == warned
        assert f"pending reason {'PartitionNodeLimit' if warned else 'Resources'}" in str(e.value)
    assert (tmp_path / "scancel.log").read_text().split() == ["201", "202"]
