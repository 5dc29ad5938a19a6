"""End to end through real SLURM: `snakemake --profile slurm --config suite=ci` in a temp
copy of the workflow (sbatch via submitit), then Snakemake killed mid-run and rerun, then
the same suite launched twice at once.  Checked through runs.csv, the tables, the run
dirs and the MLflow store."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import cut_ci, edit_suite, slurm_polls_every_second, snakemake
from dho.results.style import method_label

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

SUITE = ["--profile", "slurm", "--config", "suite=ci"]
CELLS = {"ce": "none", "kd": "zs", "dho": "zs", "pseudo_label": "zs"}  # method -> teacher


def run_dir(workdir: Path, method: str) -> Path:
    return workdir / f"results/ci/runs/shapes/2shot/resnet18/{CELLS[method]}/{method}/seed1"


def done(workdir: Path, method: str) -> dict | None:
    try:
        m = json.loads((run_dir(workdir, method) / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return m if m.get("status") == "complete" else None


def fingerprint(workdir: Path, method: str) -> tuple:
    """What must not change when a finished run is reused."""
    m = done(workdir, method)
    return (m["slurm_job_id"], m["mlflow_run_id"], m["wall_time_s"],
            (run_dir(workdir, method) / "checkpoint.pt").stat().st_mtime_ns)


def runs_csv(workdir: Path) -> list[dict]:
    with open(workdir / "results/ci/runs.csv") as f:
        return list(csv.DictReader(f))


def job_dirs(workdir: Path) -> list[str]:
    """SLURM job ids that have a submitit log folder under results/ci/logs/."""
    return [d.name for d in (workdir / "results/ci/logs").iterdir() if d.name.isdigit()]


def finished_metrics(workdir: Path) -> list[Path]:
    """metrics.json of every run of the suite (superseded content set aside excluded)."""
    return [f for f in (workdir / "results/ci/runs").rglob("metrics.json") if "superseded" not in f.parts]


def train_jobs(workdir: Path) -> dict[str, list[str]]:
    """SLURM job name -> job ids of the training jobs submitted for the suite (from the
    submission scripts submitit keeps in each job's log folder; the workflow's other jobs
    are named dho-teacher-, dho-demo-, dho-cache-, dho-eval-...)."""
    jobs: dict[str, list[str]] = {}
    for script in (workdir / "results/ci/logs").glob("*/*_submission.sh"):
        name = next(line.split("=", 1)[1].strip() for line in script.read_text().splitlines()
                    if line.startswith("#SBATCH --job-name="))
        if not name.startswith(("dho-teacher-", "dho-demo-", "dho-cache-", "dho-eval-")):
            jobs.setdefault(name, []).append(script.parent.name)
    return jobs


def check_outputs(workdir: Path, env: dict, duplicates: int = 0) -> None:
    """runs.csv, tables and MLflow agree; ``duplicates``: MLflow runs left by deleted run
    directories, which `dho mlflow-check` must report (and nothing else)."""
    rows = runs_csv(workdir)
    assert sorted(r["method"] for r in rows) == sorted(CELLS)  # one row per cell
    assert all(r["slurm_job_id"] for r in rows)
    assert len({r["spec_hash"] for r in rows}) == len(CELLS)
    tables = "".join(f.read_text() for f in (workdir / "results/ci/tables").glob("*.md"))
    assert all(method_label(method) in tables for method in CELLS)  # tables show display names
    # exactly one MLflow run per run directory, with metrics.json's test accuracy
    p = subprocess.run([sys.executable, "-m", "dho", "mlflow-check", "results/ci", "--uri",
                        "sqlite:///results/mlflow.db"], cwd=workdir, env=env, capture_output=True, text=True)
    lines = p.stdout.splitlines()
    assert p.returncode == (1 if duplicates else 0), p.stdout + p.stderr
    assert len(lines) == duplicates and all("but 1 run directory" in line for line in lines), p.stdout


@pytest.fixture
def cancel_leftover_jobs(workdir):
    """scancel this test's SLURM jobs that are still queued when it ends (e.g. on failure)."""
    yield
    if (workdir / "results/ci/logs").is_dir():
        subprocess.run(["scancel", *job_dirs(workdir)], capture_output=True)


def test_ci_suite_via_slurm_kill_rerun_and_twice_at_once(workdir, env, cancel_leftover_jobs):
    # the ci suite cut to four methods (one without a teacher), as in tests/test_rerun.py:
    # this test is about SLURM; every comparison row trains in tests/test_methods_train.py
    edit_suite(workdir, "ci", cut_ci(CELLS))
    slurm_polls_every_second(workdir)
    # 1. start the suite through SLURM; kill Snakemake (and its waiting launchers) once some
    #    runs are finished and others are not
    proc = subprocess.Popen([str(Path(sys.executable).parent / "snakemake"), *SUITE], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 900
    while not any(done(workdir, m) for m in CELLS):
        assert proc.poll() is None, proc.stdout.read()[-4000:]
        assert time.monotonic() < deadline, "no run finished in time"
        time.sleep(1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {m: fingerprint(workdir, m) for m in CELLS if done(workdir, m)}
    assert len(finished) < len(CELLS), "every run finished before the kill; nothing left to test"

    # 2. rerun (after releasing the dead process's lock): finished runs are reused
    #    untouched, the others are completed
    snakemake([*SUITE, "--unlock"], workdir, env, check=True)
    snakemake(SUITE, workdir, env, timeout=900, check=True)
    assert all(done(workdir, m) for m in CELLS)
    assert {m: fingerprint(workdir, m) for m in finished} == finished
    # the rerun attached to the jobs the killed launchers left running: one SLURM job per
    # run, none submitted twice
    jobs = train_jobs(workdir)
    job_ids = sorted(json.loads(f.read_text())["slurm_job_id"] for f in finished_metrics(workdir))
    assert len(jobs) == len(job_ids) and all(len(ids) == 1 for ids in jobs.values()), jobs
    assert job_ids == sorted(i for ids in jobs.values() for i in ids)
    check_outputs(workdir, env)

    # 3. the same suite twice at once (no Snakemake lock), with one run to redo: one SLURM
    #    job and one MLflow run for it, one row per run in runs.csv
    redo = next(m for m in CELLS if m != "ce")
    before = {m: fingerprint(workdir, m) for m in CELLS if m != redo}
    shutil.rmtree(run_dir(workdir, redo))  # deleted by hand: the folder and all it holds
    jobs_before = set(job_dirs(workdir))
    exe = str(Path(sys.executable).parent / "snakemake")
    target = str(run_dir(workdir, redo).relative_to(workdir) / "metrics.json")
    twins = [subprocess.Popen([exe, *SUITE, "--nolock", target, "results/ci/runs.csv"], cwd=workdir, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [t.communicate(timeout=900)[0] for t in twins]
    assert all(t.returncode == 0 for t in twins), outputs[0][-3000:] + outputs[1][-3000:]
    assert len(set(job_dirs(workdir)) - jobs_before) == 1  # one SLURM job for the redone run
    assert sum(len(ids) for ids in train_jobs(workdir).values()) == len(finished_metrics(workdir)) + 1
    assert {m: fingerprint(workdir, m) for m in before} == before
    snakemake(SUITE, workdir, env, timeout=600, check=True)
    check_outputs(workdir, env, duplicates=1)  # the deleted run directory's MLflow run is reported

    # 4. the report gathers tables and figures
    snakemake(["--config", "suite=ci", "--report", "results/report.html"], workdir, env, timeout=300, check=True)
    assert (workdir / "results/report.html").stat().st_size > 10_000
