"""README fault table, "same spec launched twice at once": two `dho train` processes
started together on one run directory give one training, one metrics.json and one MLflow
run (the second waits on the run directory's lock, then finds the run done)."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO
from test_faults_disk import quick_spec


def test_same_spec_started_twice_at_once_gives_one_mlflow_run(shapes_root, tmp_path, env):
    from mlflow import MlflowClient

    from dho.spec import RunSpec
    from dho.tracking import check_results

    spec = quick_spec(shapes_root, tmp_path, epochs=2, mlflow_experiment="twice")
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    run_dir = tmp_path / "runs" / "r"
    cmd = [sys.executable, "-m", "dho", "train", "--spec", str(tmp_path / "spec.json"), "--out", str(run_dir)]
    twins = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [t.communicate(timeout=600) for t in twins]
    assert [t.returncode for t in twins] == [0, 0], [o[1][-2000:] for o in outs]
    assert outs[0][0] == outs[1][0]  # both report the same finished run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    client = MlflowClient(tracking_uri=spec["mlflow_uri"])
    exp = client.get_experiment_by_name("twice")
    runs = client.search_runs([exp.experiment_id], f"tags.spec_hash = '{RunSpec.from_dict(spec).hash}'")
    assert [r.info.run_id for r in runs] == [metrics["mlflow_run_id"]]  # one MLflow run
    history = client.get_metric_history(metrics["mlflow_run_id"], "val_acc")
    assert sorted(h.step for h in history) == [1, 2]  # trained once: one value per epoch
    assert check_results(tmp_path / "runs", spec["mlflow_uri"]) == (1, [])
