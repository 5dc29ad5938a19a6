"""Change a setting, rerun, get the right results (issue 11), for the `ci` suite: locally
(launcher local) and through real SLURM (`--profile slurm`).

1. the whole suite once (cut to the methods ce, kd, dho, pseudo_label);
2. one method's training setting changed (kd: epochs 2 -> 3): exactly that run retrains
   and carries the new value, the others are untouched, runs.csv keeps one row per run
   and reports the new value; its old content is kept under ``superseded/``;
3. the same call again does nothing;
4. a teacher setting changed (the demo tiny CLIP's pretraining steps, so the teacher
   file's content changes): every run with that teacher retrains with the new
   ``teacher_sha``, the teacher-free `ce` run is untouched; then again nothing to do.
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest

from conftest import cut_ci, edit_suite, slurm_available, slurm_polls_every_second, snakemake

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]
CELLS = {"ce": "none", "kd": "zs", "dho": "zs", "pseudo_label": "zs"}  # method -> teacher


def run_dir(workdir: Path, method: str) -> Path:
    return workdir / f"results/ci/runs/shapes/2shot/resnet18/{CELLS[method]}/{method}/seed1"


def metrics(workdir: Path, method: str) -> dict:
    return json.loads((run_dir(workdir, method) / "metrics.json").read_text())


def fingerprints(workdir: Path) -> dict[str, tuple]:
    """What changes when a run is retrained (and only then)."""
    out = {}
    for method in CELLS:
        m = metrics(workdir, method)
        out[method] = (m["spec_hash"], m["wall_time_s"], m["mlflow_run_id"],
                       (run_dir(workdir, method) / "checkpoint.pt").stat().st_mtime_ns)
    return out


def runs_csv(workdir: Path) -> list[dict]:
    with open(workdir / "results/ci/runs.csv") as f:
        return list(csv.DictReader(f))


def edit_config(workdir: Path, edit) -> None:
    edit_suite(workdir, "ci", edit)


def nothing_to_do(args: list[str], workdir: Path, env: dict) -> None:
    p = snakemake(args, workdir, env, timeout=300, check=True)
    assert "Nothing to be done" in p.stdout, p.stdout[-3000:]


def change_and_rerun(args: list[str], workdir: Path, env: dict) -> None:
    # the ci suite cut to four methods (one without a teacher) to keep the test short
    edit_config(workdir, cut_ci(CELLS))
    snakemake(args, workdir, env, timeout=1500, check=True)
    first = fingerprints(workdir)
    assert len(runs_csv(workdir)) == len(CELLS)

    # 2. one method's setting: exactly that run retrains
    edit_config(workdir, lambda s: s["methods"].update(kd={"train": {"epochs": 3}}))
    snakemake(args, workdir, env, timeout=900, check=True)
    second = fingerprints(workdir)
    assert second["kd"] != first["kd"] and metrics(workdir, "kd")["spec"]["epochs"] == 3
    assert {m: second[m] for m in CELLS if m != "kd"} == {m: first[m] for m in CELLS if m != "kd"}
    rows = runs_csv(workdir)
    assert len(rows) == len(CELLS)
    assert {r["method"]: r["spec_hash"] for r in rows} == {m: fp[0] for m, fp in second.items()}
    old = run_dir(workdir, "kd") / "superseded" / first["kd"][0] / "metrics.json"
    assert json.loads(old.read_text())["spec"]["epochs"] == 2  # kept aside, not reported

    # 3. nothing changed: nothing runs
    nothing_to_do(args, workdir, env)

    # 4. the teacher file's content changes: the runs that use it retrain, ce does not
    teacher_sha = metrics(workdir, "kd")["spec"]["teacher_sha"]
    edit_config(workdir, lambda s: s["demo"].update(teacher_args=[
        "--steps", "31", "--pool", "400", "--batch-size", "64", "--no-eval", "--quiet"]))
    snakemake(args, workdir, env, timeout=900, check=True)
    third = fingerprints(workdir)
    assert third["ce"] == second["ce"]
    for method in ("kd", "dho", "pseudo_label"):
        assert third[method] != second[method]
        assert metrics(workdir, method)["spec"]["teacher_sha"] != teacher_sha
    assert metrics(workdir, "kd")["spec"]["epochs"] == 3  # the earlier change holds
    assert {r["method"]: r["spec_hash"] for r in runs_csv(workdir)} == {m: fp[0] for m, fp in third.items()}
    nothing_to_do(args, workdir, env)


def test_change_and_rerun_local(workdir, env):
    # the same steps as test_change_and_rerun_slurm, whose launcher only adds sbatch; where
    # a cluster answers (CI) that one runs and this one would only double the ~10 minutes
    if slurm_available():
        pytest.skip("a SLURM cluster answers: test_change_and_rerun_slurm runs these steps through it")
    change_and_rerun(["--cores", "1", "--config", "suite=ci"], workdir, env)


def test_one_run_command_hashes_like_the_workflow(workdir, env):
    """The README's one-run command on a spec file the workflow wrote reuses the
    workflow's finished run (same spec hash: teacher_sha is derived in one place)."""
    snakemake(["--cores", "1", "--config", "suite=ci", "--", "results/ci/runs/shapes/2shot/resnet18/zs/kd/seed1/metrics.json"],
              workdir, env, timeout=900, check=True)
    before = fingerprints_of(workdir, "kd")
    p = subprocess.run(["python", "-m", "dho", "train", "--spec", "results/ci/specs/shapes/2shot/resnet18/zs/kd/seed1.json"],
                       cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "results/ci/runs/shapes/2shot/resnet18/zs/kd/seed1: test_acc" in p.stdout
    assert fingerprints_of(workdir, "kd") == before  # reused, not retrained


def fingerprints_of(workdir: Path, method: str) -> tuple:
    m = metrics(workdir, method)
    return m["spec_hash"], m["wall_time_s"], (run_dir(workdir, method) / "checkpoint.pt").stat().st_mtime_ns


@pytest.mark.slurm
def test_change_and_rerun_slurm(workdir, env):
    slurm_polls_every_second(workdir)
    try:
        change_and_rerun(["--profile", "slurm", "--config", "suite=ci"], workdir, env)
        assert all(metrics(workdir, m)["slurm_job_id"] for m in CELLS)
    finally:
        logs = workdir / "results/ci/logs"
        if logs.is_dir():
            subprocess.run(["scancel", *[d.name for d in logs.iterdir() if d.name.isdigit()]], capture_output=True)
