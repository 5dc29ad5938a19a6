"""A results folder moved to another place keeps working MLflow artifact links (issue 12):
``dho mlflow-relocate`` and every dho client of the sqlite store rewrite the absolute
artifact URIs to the folder's new place."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

from dho import tracking  # noqa: E402
from dho.cli import main as cli_main  # noqa: E402
from dho.io import atomic_write_json  # noqa: E402
from dho.spec import RunSpec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RUN_REL = Path("unit/runs/dtd/4shot/resnet18/zs/dho/seed1")


def _uri(results: Path) -> str:
    return f"sqlite:///{results / 'mlflow.db'}"


def _tracked_run(results: Path) -> tuple[str, dict]:
    """One finished MLflow run of a run directory under ``results``; its id and metrics."""
    run_dir = results / RUN_REL
    run_dir.mkdir(parents=True)
    tr = tracking.RunTracker(RunSpec(mlflow_uri=_uri(results), epochs=1, tags={"suite": "unit"}), run_dir)
    run_id = tr.start()
    metrics = {"test_acc": 61.5, "run": "first"}
    atomic_write_json(run_dir / "metrics.json", metrics)
    tr.finish(metrics)
    assert tr.enabled and run_id
    return run_id, metrics


def _plain_client(results: Path):
    """MLflow's own client (no dho code), as `mlflow ui` or a notebook would read the store."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=_uri(results))


def _read_artifact(results: Path, run_id: str, tmp_path: Path) -> dict:
    dst = tmp_path / f"dl-{len(list(tmp_path.glob('dl-*')))}"
    dst.mkdir()
    path = _plain_client(results).download_artifacts(run_id, "metrics.json", str(dst))
    return json.loads(Path(path).read_text())


def test_moved_results_folder_finds_its_artifacts_again(tmp_path, capsys):
    a = tmp_path / "machine_a" / "results"
    run_id, metrics = _tracked_run(a)
    assert _read_artifact(a, run_id, tmp_path) == metrics
    old_root = tracking.artifact_root(a / "mlflow.db")
    assert (a / "mlartifacts").is_dir() and old_root.endswith("/machine_a/results/mlartifacts")

    b = tmp_path / "machine_b" / "results"
    b.parent.mkdir()
    shutil.move(a, b)
    shutil.rmtree(tmp_path / "machine_a")
    # the store still names the old place: MLflow alone cannot read the artifact
    assert _plain_client(b).get_run(run_id).info.artifact_uri.startswith(old_root + "/")
    with pytest.raises(Exception):
        _read_artifact(b, run_id, tmp_path)

    assert cli_main(["mlflow-relocate", "--results", str(b)]) == 0
    out = capsys.readouterr().out
    new_root = (b / "mlartifacts").resolve().as_uri()
    assert f"moved from {old_root} to {new_root}" in out
    assert _plain_client(b).get_run(run_id).info.artifact_uri == f"{new_root}/{run_id}/artifacts"
    assert _plain_client(b).get_experiment_by_name("dho").artifact_location == new_root
    assert _read_artifact(b, run_id, tmp_path) == metrics
    assert not (tmp_path / "machine_a").exists()  # nothing written at the old place

    assert cli_main(["mlflow-relocate", "--results", str(b)]) == 0  # idempotent
    assert "already under" in capsys.readouterr().out


def test_dho_clients_relocate_on_their_own(tmp_path):
    """After a move, the next dho process that opens the store (here a resumed run's
    tracker, in a fresh process as on the new machine) rewrites the links and logs into
    the new folder, not into a recreated old one."""
    a = tmp_path / "a" / "results"
    run_id, metrics = _tracked_run(a)
    c = tmp_path / "c" / "results"
    c.parent.mkdir()
    shutil.move(a, c)
    shutil.rmtree(tmp_path / "a")
    metrics = {**metrics, "run": "second"}
    atomic_write_json(c / RUN_REL / "metrics.json", metrics)
    code = ("import sys; from pathlib import Path; from dho import tracking; from dho.spec import RunSpec; "
            "tr = tracking.RunTracker(RunSpec(mlflow_uri=sys.argv[1], epochs=1, tags={'suite': 'unit'}), "
            "Path(sys.argv[2])); print(tr.start()); tr.finish({'test_acc': 61.5}); assert tr.enabled")
    p = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-c", code, _uri(c), str(c / RUN_REL)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split()[-1] == run_id  # the same MLflow run, resumed
    assert _read_artifact(c, run_id, tmp_path) == metrics
    assert not (tmp_path / "a").exists()  # the old place was not recreated


def test_other_locations_are_left_alone(tmp_path):
    """Only sqlite-store artifact roots (``.../mlartifacts``) move; the Default
    experiment's ``mlruns`` and an experiment with its own location stay as they were."""
    from mlflow import MlflowClient

    a = tmp_path / "a" / "results"
    run_id, _ = _tracked_run(a)
    elsewhere = (tmp_path / "shared_artifacts").as_uri()
    client = MlflowClient(tracking_uri=_uri(a))
    client.create_experiment("own", artifact_location=elsewhere)
    default_before = client.get_experiment("0").artifact_location
    b = tmp_path / "b" / "results"
    b.parent.mkdir()
    shutil.move(a, b)
    db, moved = tracking.relocate_store(b)
    assert db == b / "mlflow.db" and list(moved) == [(a / "mlartifacts").resolve().as_uri()]
    assert moved[next(iter(moved))] == 2  # the dho experiment and its one run
    client = MlflowClient(tracking_uri=_uri(b))
    assert client.get_experiment_by_name("own").artifact_location == elsewhere
    assert client.get_experiment("0").artifact_location == default_before


def test_bad_inputs_are_one_line(tmp_path, capsys):
    assert cli_main(["mlflow-relocate", "--results", str(tmp_path / "nowhere")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "MLflow store not found" in err and "nowhere" in err
    assert not (tmp_path / "nowhere").exists()
    assert cli_main(["mlflow-relocate", "--uri", "http://127.0.0.1:5000"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sqlite" in err
