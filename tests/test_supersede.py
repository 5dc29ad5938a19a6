"""A run directory asked to train another spec sets the old one aside and retrains; the
derived spec keys (teacher_sha) are computed in one place."""

from __future__ import annotations

import json
import warnings

from conftest import tiny_spec
from dho.results.collect import find_run_dirs
from dho.rundir import recorded_spec_hash, set_aside
from dho.spec import RunSpec, with_derived_keys


def test_set_aside_moves_the_other_specs_content_and_keeps_launcher_state(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "spec.json").write_text(json.dumps({"spec_hash": "aaaa"}))
    (run / "metrics.json").write_text(json.dumps({"status": "complete", "spec_hash": "aaaa"}))
    for name in ("checkpoint.pt", ".lock", "slurm_job.json"):
        (run / name).write_text("x")
    assert set_aside(run, "aaaa") is None  # same spec: nothing moves
    moved = set_aside(run, "bbbb")
    assert moved == run / "superseded" / "aaaa"
    assert sorted(p.name for p in moved.iterdir()) == ["checkpoint.pt", "metrics.json", "spec.json"]
    assert sorted(p.name for p in run.iterdir()) == [".lock", "slurm_job.json", "superseded"]
    assert recorded_spec_hash(run) is None
    (run / "spec.json").write_text(json.dumps({"spec_hash": "aaaa"}))  # the same old spec again
    assert set_aside(run, "bbbb") == run / "superseded" / "aaaa-2"
    assert find_run_dirs(tmp_path) == []  # superseded content is never a run


def test_teacher_sha_is_derived_in_one_place(tmp_path):
    teacher = tmp_path / "t.pt"
    teacher.write_bytes(b"teacher v1")
    spec = RunSpec(teacher_file=str(teacher))
    h1 = with_derived_keys(RunSpec(teacher_file=str(teacher))).hash
    assert with_derived_keys(spec).teacher_sha is not None and spec.hash == h1
    teacher.write_bytes(b"teacher v2")
    assert with_derived_keys(RunSpec(teacher_file=str(teacher))).hash != h1


def test_retrain_after_a_spec_change_in_the_same_run_dir(shapes_root, tmp_path):
    from dho.train import run_training

    run = tmp_path / "run"
    first = run_training(RunSpec.from_dict(tiny_spec(shapes_root, tmp_path, epochs=1)), run)
    second = run_training(RunSpec.from_dict(tiny_spec(shapes_root, tmp_path, epochs=2)), run)
    assert second["spec_hash"] != first["spec_hash"] and second["epochs"] == 2
    old = json.loads((run / "superseded" / first["spec_hash"] / "metrics.json").read_text())
    assert old["spec_hash"] == first["spec_hash"]
    assert second["mlflow_run_id"] != first["mlflow_run_id"]  # a fresh MLflow run
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert find_run_dirs(tmp_path) == [run]
