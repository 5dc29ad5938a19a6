"""`dho submit --launcher local`: in-process training, done-ness, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO, tiny_spec


def submit(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dho", "submit", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_local_submit_trains_once_and_reuses_done_run(shapes_root, tmp_path, env):
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(tiny_spec(shapes_root, tmp_path, epochs=1)))
    run_dir = tmp_path / "run"
    p = submit(["--launcher", "local", "--spec", str(spec_file), "--out", str(run_dir)], env)
    assert p.returncode == 0, p.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["slurm_job_id"] is None
    stamp = (run_dir / "checkpoint.pt").stat().st_mtime_ns
    # a second launch of the same spec returns the finished run without training again
    p = submit(["--launcher", "local", "--spec", str(spec_file), "--out", str(run_dir)], env)
    assert p.returncode == 0 and "done" in p.stdout
    assert (run_dir / "checkpoint.pt").stat().st_mtime_ns == stamp
    assert json.loads((run_dir / "metrics.json").read_text()) == metrics


def test_missing_teacher_file_is_one_line_naming_the_key(shapes_root, tmp_path, env):
    spec = tiny_spec(shapes_root, tmp_path, method="kd", teacher_file=str(tmp_path / "nope.pt"))
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    p = submit(["--launcher", "slurm", "--spec", str(tmp_path / "spec.json"), "--out", str(tmp_path / "run")], env)
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "'teacher_file'" in p.stderr, p.stderr
    assert not (tmp_path / "run").exists()  # nothing submitted


def test_bad_resource_flag_names_the_flag(tmp_path, env):
    p = submit(["--spec", "x.json", "--out", str(tmp_path), "--mem-gb", "lots"], env)
    assert p.returncode == 2 and "--mem-gb" in p.stderr
