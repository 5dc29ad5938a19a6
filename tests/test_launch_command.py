"""`dho submit-cmd`: any dho command launched in-process or as a real SLURM job (sbatch via
submitit), success = exit 0 + done file, inner errors as one line, bounded waits, attach."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, snakemake
from dho.cli import main


def dho(args: list[str], env: dict, cwd: Path = REPO, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dho", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def split_cmd(root: Path, out: Path, dataset: str = "shapes") -> list[str]:
    return ["split", "--dataset", dataset, "--root", str(root), "--kind", "fewshot", "--shots", "2",
            "--seed", "3", "--out", str(out)]


def error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


def slurm_flags(tmp: Path) -> list[str]:
    return ["--launcher", "slurm", "--log-dir", str(tmp / "logs"), "--mem-gb", "1", "--time-min", "5",
            "--poll-s", "0.5", "--grace-s", "2"]


def job_dirs(tmp: Path) -> list[str]:
    logs = tmp / "logs"
    return sorted(d.name for d in logs.iterdir() if d.name.isdigit()) if logs.is_dir() else []


@pytest.fixture
def cancel_leftover_jobs(tmp_path):
    yield
    if job_dirs(tmp_path):
        subprocess.run(["scancel", *job_dirs(tmp_path)], capture_output=True)


# ---------------------------------------------------------------------------------------
# local launcher (in this process, through dho.cli.main as the console script does)
def test_local_runs_the_command_in_process_and_checks_the_done_file(shapes_root, tmp_path, capsys):
    out = tmp_path / "split.json"
    assert main(["submit-cmd", "--launcher", "local", "--done", str(out), "--", *split_cmd(shapes_root, out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"{out}: done (slurm job -)"
    manifest = json.loads(out.read_text())
    assert manifest["dataset"] == "shapes" and manifest["seed"] == 3
    assert len(manifest["labeled"]) == 2 * 12  # 2 shots x 12 classes

    # exit 0 without the done file is a failure, named in one line
    missing = tmp_path / "never-written.pt"
    assert main(["submit-cmd", "--done", str(missing), "--", "methods"]) == 2
    assert error_lines(capsys.readouterr().err) == [
        f"error: `dho methods` exited 0 but wrote no done file {missing}"]


def test_local_inner_error_is_one_line_and_usage_errors_stop_before_running(tmp_path, capsys):
    out = tmp_path / "split.json"
    assert main(["submit-cmd", "--done", str(out), "--", *split_cmd(tmp_path, out, dataset="no_such_set")]) == 2
    err = capsys.readouterr().err
    assert len(error_lines(err)) == 1 and "unknown dataset 'no_such_set'" in err, err
    # a bad inner command line, a launcher command, no command, slurm without logs: one line each
    for args, expected in ((["--", "split", "--dataset"], "bad command `dho split --dataset`"),
                           (["--", "submit", "--spec", "x", "--out", "y"], "cannot be launched"),
                           (["--"], "no command to launch"),
                           (["--launcher", "slurm", "--", "methods"], "--log-dir is required")):
        assert main(["submit-cmd", "--done", str(out), *args]) == 2
        err = capsys.readouterr().err
        assert err.strip().count("\n") == 0 and expected in err, err
    with pytest.raises(SystemExit) as e:  # resource flags are those of dho submit
        main(["submit-cmd", "--done", str(out), "--mem-gb", "lots", "--", "methods"])
    assert e.value.code == 2 and "--mem-gb" in capsys.readouterr().err
    assert not out.exists()


# ---------------------------------------------------------------------------------------
# SLURM launcher (real sbatch)
@pytest.mark.slurm
def test_slurm_runs_the_command_in_a_job(shapes_root, tmp_path, env, cancel_leftover_jobs):
    out = tmp_path / "slurm" / "split.json"
    # relative paths resolve in the submitting folder (the job runs there too)
    p = dho(["submit-cmd", *slurm_flags(tmp_path), "--name", "dho-test-split", "--done", "slurm/split.json",
             "--", *split_cmd(shapes_root, Path("slurm/split.json"))], env, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    record = json.loads((out.parent / ".split.json.job.json").read_text())
    jid = record["job_id"]
    assert job_dirs(tmp_path) == [jid]
    assert f"submitted SLURM job {jid}" in p.stderr
    assert p.stdout.splitlines()[-2].startswith(f"SLURM job {jid}: wrote slurm/split.json")
    # the job ran the command under SLURM and reported back with the launcher's token
    status = json.loads((out.parent / ".split.json.status.json").read_text())
    assert status == {"token": record["token"], "rc": 0, "error": None, "job_id": jid}
    assert "dho-test-split" in (tmp_path / "logs" / jid / f"{jid}_submission.sh").read_text()
    # same manifest as the same command run here
    here = tmp_path / "here.json"
    assert main(split_cmd(shapes_root, here)) == 0
    assert json.loads(out.read_text()) == json.loads(here.read_text())


@pytest.mark.slurm
def test_slurm_inner_error_is_one_line_with_nonzero_exit(tmp_path, env, cancel_leftover_jobs):
    out = tmp_path / "split.json"
    p = dho(["submit-cmd", *slurm_flags(tmp_path), "--done", str(out), "--",
             *split_cmd(tmp_path, out, dataset="no_such_set")], env)
    assert p.returncode == 2
    jid = job_dirs(tmp_path)[0]
    errors = error_lines(p.stderr)
    assert len(errors) == 1, p.stderr
    assert errors[0].startswith(f"error: SLURM job {jid}: `dho split` failed (exit status 2): "
                                f"unknown dataset 'no_such_set'"), errors
    assert not out.exists()
    # the job itself failed (CliJob raised), with the reason in its log
    log = (tmp_path / "logs" / jid / f"{jid}_0_log.err").read_text()
    assert "CommandError" in log and "no_such_set" in log


def pause(jid: str) -> str:
    """Keep job ``jid`` from finishing: hold it while pending, suspend it while running."""
    for _ in range(20):
        for action, state in (("suspend", "SUSPENDED"), ("hold", "PENDING")):
            if subprocess.run(["scontrol", action, jid], capture_output=True).returncode == 0:
                return state
        time.sleep(0.1)
    raise AssertionError(f"could not suspend or hold SLURM job {jid}")


@pytest.mark.slurm
def test_slurm_relaunch_attaches_to_the_live_job(tmp_path, env, cancel_leftover_jobs):
    out = tmp_path / "clip.pt"
    args = ["submit-cmd", *slurm_flags(tmp_path), "--done", str(out), "--", "demo", "teacher", "--steps", "60",
            "--pool", "64", "--batch-size", "16", "--no-eval", "--quiet", "--out", str(out)]
    job_file = tmp_path / ".clip.pt.job.json"
    first = subprocess.Popen([sys.executable, "-m", "dho", *args], cwd=REPO, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not job_file.exists():
        assert first.poll() is None and time.monotonic() < deadline, "no job submitted"
        time.sleep(0.1)
    jid = json.loads(job_file.read_text())["job_id"]
    first.kill()  # the launcher dies (e.g. Snakemake interrupted); the job goes on
    first.wait()
    state = pause(jid)  # (so that it is still live when the second launcher looks)
    second = subprocess.Popen([sys.executable, "-m", "dho", *args], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    attached = second.stderr.readline()
    assert attached == f"{out}: attaching to SLURM job {jid} ({state})\n", attached
    # a waiting launcher never loads torch (its usage check of `dho demo teacher` ran in a child)
    assert "libtorch" not in Path(f"/proc/{second.pid}/maps").read_text()
    subprocess.run(["scontrol", "resume" if state == "SUSPENDED" else "release", jid], check=True)
    stdout, stderr = second.communicate(timeout=120)
    assert second.returncode == 0, stderr
    assert job_dirs(tmp_path) == [jid]  # no second job
    assert f"SLURM job {jid}: dho-tiny-clip" in stdout and out.is_file()


# ---------------------------------------------------------------------------------------
# the workflow's teacher rules launch through submit-cmd with the suite's teacher resources
def test_teacher_rules_use_the_launcher_and_teacher_resources(workdir, env):
    import yaml

    cfg = yaml.safe_load((workdir / "config.yaml").read_text())
    cfg["suites"]["fewshot"]["resources"]["teacher"] = {"gpus": 1, "cpus": 4, "mem_gb": 48, "time_min": 90}
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    p = snakemake(["-n", "-p", "--profile", "slurm", "--config", "suite=fewshot"], workdir, env, check=True)
    shells = [ln.split("Shell command: ", 1)[-1] for ln in p.stdout.splitlines() if "python -m dho" in ln]
    teachers = [ln for ln in shells if " -- teacher " in ln]
    datasets = len(cfg["suites"]["fewshot"]["datasets"])  # 10: ImageNet is Table 1's own suite
    assert len(teachers) == datasets + datasets * 5  # zero-shot per dataset + Tip-Adapter-F per dataset x shots
    for ln in teachers:
        assert ln.startswith("python -m dho submit-cmd --launcher slurm ")
        assert "--gpus 1 --cpus 4 --mem-gb 48 --time-min 90 --max-requeues 3" in ln
        out = ln.split(" --out ")[1].split()[0]
        assert f"--done {out} --" in ln and "--log-dir results/fewshot/logs" in ln
    # training runs keep their own resources (the `teacher` layer is for teachers only)
    train = [ln for ln in shells if "dho submit --launcher slurm" in ln]
    assert train and not any("--mem-gb 48" in ln for ln in train)
    # without a `teacher` entry the teacher falls back to the suite's default, launched here
    p = snakemake(["-n", "-p", "--config", "suite=ci"], workdir, env, check=True)
    teachers = [ln for ln in p.stdout.splitlines() if "submit-cmd" in ln and " linear-eval " not in ln]
    assert len(teachers) == 2  # the demo's tiny CLIP and the zero-shot teacher
    assert all("submit-cmd --launcher local " in ln and "--cpus 1 --mem-gb 1 --time-min 15" in ln for ln in teachers)


def test_slurm_poll_interval_reaches_every_launcher(workdir, env):
    """config `slurm.poll_s` (the tests' 1 s) is passed to every `dho submit` and `dho
    submit-cmd`; unset, the launchers keep their own default."""
    import yaml

    def launchers() -> list[str]:
        p = snakemake(["-n", "-p", "--profile", "slurm", "--config", "suite=ci"], workdir, env, check=True)
        return [ln for ln in p.stdout.splitlines() if "python -m dho submit" in ln]

    lines = launchers()
    assert lines and not any("--poll-s" in ln for ln in lines)
    cfg = yaml.safe_load((workdir / "config.yaml").read_text())
    cfg["slurm"]["poll_s"] = 1.5
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))
    lines = launchers()
    assert any(" submit-cmd " in ln for ln in lines) and any(" submit --launcher" in ln for ln in lines)
    assert all(" --poll-s 1.5 " in ln for ln in lines), lines
