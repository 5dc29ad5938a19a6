"""MLflow tracking: idempotent runs, retries, concurrency, sync/check CLI (no training)."""

import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

from dho import tracking  # noqa: E402
from dho.cli import main as cli_main  # noqa: E402
from dho.errors import ConfigError  # noqa: E402
from dho.io import atomic_write_json  # noqa: E402
from dho.spec import RunSpec  # noqa: E402
from conftest import free_port  # noqa: E402
from test_results_fakes import contract_metrics  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"


def _init(uri: str) -> None:
    """Create the store in a separate process (as the workflow does before fanning out)."""
    subprocess.run([sys.executable, "-m", "dho", "mlflow-init", "--uri", uri], cwd=REPO, check=True,
                   capture_output=True, timeout=120)


def _spec(uri: str, seed: int = 1, **kw) -> RunSpec:
    return RunSpec(mlflow_uri=uri, seed=seed, epochs=2, tags={"suite": "unit", "labels": "4shot"}, **kw)


def _client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(uri: str, spec_hash: str | None = None):
    client = _client(uri)
    exp = client.get_experiment_by_name("dho")
    flt = f"tags.spec_hash = '{spec_hash}'" if spec_hash else ""
    return client.search_runs([exp.experiment_id], filter_string=flt)


def test_params_metrics_tags_and_artifacts(tmp_path):
    uri = _uri(tmp_path)
    spec = _spec(uri, method_args={"lam": 0.5})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    tr = tracking.RunTracker(spec, run_dir)
    run_id = tr.start({"git_commit": "abc123", "slurm_job_id": None})
    assert run_id and (run_dir / "mlflow_run_id").read_text().strip() == run_id
    for epoch in (1, 2):
        tr.log_epoch({"epoch": epoch, "train_loss": 1.0 / epoch, "lr": 1e-3, "val_acc": 50.0 + epoch,
                      "grad_cosine": None})
    tr.log_grad_cosines([(10, -0.25), (20, 0.5)])
    atomic_write_json(run_dir / "metrics.json", {"test_acc": 61.5})
    tr.finish({"test_acc": 61.5, "teacher_test_acc": None})

    run = _client(uri).get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["spec_hash"] == spec.hash
    assert run.data.tags["suite"] == "unit" and run.data.tags["git_commit"] == "abc123"
    assert "slurm_job_id" not in run.data.tags
    assert run.data.params["method_args.lam"] == "0.5"
    assert run.data.params["split.shots"] == "4" and run.data.params["seed"] == "1"
    hist = _client(uri).get_metric_history(run_id, "val_acc")
    assert sorted((m.step, m.value) for m in hist) == [(1, 51.0), (2, 52.0)]
    assert sorted((m.step, m.value) for m in _client(uri).get_metric_history(run_id, "grad_cosine")) == \
        [(10, -0.25), (20, 0.5)]
    assert run.data.metrics["test_acc"] == 61.5
    assert "teacher_test_acc" not in run.data.metrics
    arts = {a.path for a in _client(uri).list_artifacts(run_id)}
    assert "metrics.json" in arts
    # artifacts of a sqlite store live next to the database, not in the cwd
    assert (tmp_path / "store" / "mlartifacts").is_dir()


def test_one_mlflow_run_per_run_directory_instance(tmp_path):
    uri = _uri(tmp_path)
    spec = _spec(uri)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    first = tracking.RunTracker(spec, run_dir).start()
    uid = (run_dir / "run_uid").read_text().strip()
    assert _client(uri).get_run(first).data.tags["run_uid"] == uid
    # a retry in the same run dir (e.g. a requeued job) reuses the id in mlflow_run_id
    assert tracking.RunTracker(spec, run_dir).start() == first
    # ... and, if that file was lost (killed right after create_run), finds it by run_uid
    (run_dir / "mlflow_run_id").unlink()
    assert tracking.RunTracker(spec, run_dir).start() == first
    assert (run_dir / "run_uid").read_text().strip() == uid and len(_runs(uri, spec.hash)) == 1
    # the folder deleted and trained again: a new instance, a fresh MLflow run (no second
    # history appended to the old one)
    shutil.rmtree(run_dir)
    run_dir.mkdir()
    second = tracking.RunTracker(spec, run_dir).start()
    assert second != first and (run_dir / "run_uid").read_text().strip() != uid
    assert len(_runs(uri, spec.hash)) == 2
    # a different spec gets its own run
    assert tracking.RunTracker(_spec(uri, seed=2), tmp_path / "run").start() not in (first, second)
    assert len(_runs(uri)) == 3


def test_retry_with_backoff_on_transient_errors(monkeypatch):
    monkeypatch.setattr(tracking.time, "sleep", lambda s: None)
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError("(sqlite3.OperationalError) database is locked")
        return "ok"

    assert tracking._retry(flaky, attempts=5) == "ok" and len(calls) == 3

    def broken():
        calls.append(1)
        raise ValueError("INVALID_PARAMETER_VALUE: bad key")

    calls.clear()
    with pytest.raises(tracking.MlflowUnavailable):
        tracking._retry(broken, attempts=5)
    assert len(calls) == 1  # not transient: no retry


def test_unavailable_mlflow_warns_and_continues(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    spec = _spec(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    tr = tracking.RunTracker(spec, run_dir, attempts=2, base_delay=0.01)
    with pytest.warns(RuntimeWarning, match="MLflow .* unavailable"):
        assert tr.start() is None
    assert not tr.enabled and not (run_dir / "mlflow_run_id").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once; later calls are silent no-ops
        tr.log_epoch({"epoch": 1, "val_acc": 1.0})
        tr.finish({"test_acc": 1.0})


def _log_from_child(uri: str, run_dir: str, seed: int, n: int) -> None:
    tr = tracking.RunTracker(_spec(uri, seed=seed), run_dir, attempts=12, base_delay=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any fallback to "unavailable" fails the child
        tr.start()
        for epoch in range(1, n + 1):
            tr.log_epoch({"epoch": epoch, "val_acc": float(seed * 100 + epoch)})
        tr.finish({"test_acc": float(seed)})


def test_concurrent_processes_lose_no_metric(tmp_path):
    uri = _uri(tmp_path)
    _init(uri)
    ctx = mp.get_context("fork")  # the parent never opened the store, so nothing is shared
    n_proc, n_epochs = 16, 5
    procs = []
    for seed in range(1, n_proc + 1):
        d = tmp_path / f"run{seed}"
        d.mkdir()
        procs.append(ctx.Process(target=_log_from_child, args=(uri, str(d), seed, n_epochs)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * n_proc
    runs = _runs(uri)
    assert len(runs) == n_proc
    client = _client(uri)
    for run in runs:
        seed = int(run.data.params["seed"])
        hist = client.get_metric_history(run.info.run_id, "val_acc")
        assert sorted(m.value for m in hist) == [float(seed * 100 + e) for e in range(1, n_epochs + 1)]
        assert run.data.metrics["test_acc"] == float(seed)


def _fake_done_run(run_dir: Path, spec: RunSpec, test_acc: float) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "history.csv").write_text("epoch,train_loss,lr,val_acc_ce,val_acc_kd,val_acc,alpha,beta,"
                                         "grad_cosine\n1,2.0,0.001,10,20,30,0.5,1.0,\n2,1.0,0.0,20,30,40,0.5,1.0,0.1\n")
    (run_dir / "grad_cosine.csv").write_text("step,cosine\n5,0.1\n")
    atomic_write_json(run_dir / "metrics.json", contract_metrics(spec.to_dict(), spec.hash, test_acc=test_acc))


def test_sync_then_check(tmp_path, capsys):
    uri = _uri(tmp_path)
    results = tmp_path / "results"
    spec_a, spec_b = _spec(uri, seed=1), _spec(uri, seed=2)
    _fake_done_run(results / "a", spec_a, 55.0)
    _fake_done_run(results / "b", spec_b, 66.0)
    (results / "partial").mkdir()
    (results / "partial" / "metrics.json").write_text('{"status": "running"}')  # not done: ignored

    assert cli_main(["mlflow-init", "--uri", uri]) == 0
    assert cli_main(["mlflow-check", str(results), "--uri", uri]) == 1  # nothing logged yet
    assert "0 MLflow runs" in capsys.readouterr().out

    for _ in range(2):  # idempotent
        assert cli_main(["mlflow-sync", str(results / "a"), str(results / "b"), "--uri", uri]) == 0
    assert len(_runs(uri)) == 2
    run_id = json.loads((results / "a" / "metrics.json").read_text())["mlflow_run_id"]
    assert run_id == (results / "a" / "mlflow_run_id").read_text().strip()
    hist = _client(uri).get_metric_history(run_id, "val_acc")
    assert sorted((m.step, m.value) for m in hist) == [(1, 30.0), (2, 40.0)]
    assert [m.value for m in _client(uri).get_metric_history(run_id, "test_acc")] == [55.0]
    assert [(m.step, m.value) for m in _client(uri).get_metric_history(run_id, "grad_cosine")] == [(5, 0.1)]
    capsys.readouterr()
    assert cli_main(["mlflow-check", str(results), "--uri", uri]) == 0

    # a done run whose test_acc differs from MLflow's is reported
    metrics = json.loads((results / "b" / "metrics.json").read_text())
    atomic_write_json(results / "b" / "metrics.json", {**metrics, "test_acc": 1.0})
    assert cli_main(["mlflow-check", str(results), "--uri", uri]) == 1
    out = capsys.readouterr().out
    assert "test_acc 1.0 in metrics.json but 66.0" in out and str(results / "b") in out


def test_check_reports_a_retrained_folder_and_repeated_steps(tmp_path, capsys):
    uri = _uri(tmp_path)
    results = tmp_path / "results"
    spec = _spec(uri)
    _fake_done_run(results / "a", spec, 55.0)
    assert cli_main(["mlflow-sync", str(results / "a"), "--uri", uri]) == 0
    old = (results / "a" / "mlflow_run_id").read_text().strip()
    shutil.rmtree(results / "a")  # deleted and retrained: a new run directory instance
    _fake_done_run(results / "a", spec, 57.0)
    assert cli_main(["mlflow-sync", str(results / "a"), "--uri", uri]) == 0
    new = (results / "a" / "mlflow_run_id").read_text().strip()
    assert new != old and [m.value for m in _client(uri).get_metric_history(new, "val_acc")] == [30.0, 40.0]
    capsys.readouterr()
    assert cli_main(["mlflow-check", str(results), "--uri", uri]) == 1
    out = capsys.readouterr().out
    assert f"2 MLflow runs with spec_hash {spec.hash} but 1 run directory" in out and old in out
    assert "test_acc" not in out  # the folder's own run is found by its run_uid and agrees

    # two histories in one MLflow run (what keying runs by spec hash alone used to give)
    _client(uri).delete_run(old)
    capsys.readouterr()
    assert cli_main(["mlflow-check", str(results), "--uri", uri]) == 0
    tr = tracking.RunTracker(spec, results / "a")
    tr.start()
    tr.log_epoch({"epoch": 1, "val_acc": 33.0})
    assert cli_main(["mlflow-check", str(results), "--uri", uri]) == 1
    assert f"MLflow run {new} val_acc: 2 values at step 1" in capsys.readouterr().out


def test_sync_of_unfinished_run_is_an_error(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    assert cli_main(["mlflow-sync", str(tmp_path / "r"), "--uri", _uri(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "not a done run" in err[0]


def test_default_uri_and_flatten(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.resolve_uri(None) == "sqlite:///results/mlflow.db"
    assert (tmp_path / "results").is_dir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://example:5000")
    assert tracking.resolve_uri(None) == "http://example:5000"
    assert tracking.resolve_uri("sqlite:///x/y.db") == "sqlite:///x/y.db"
    assert tracking.flatten({"a": 1, "b": {"c": [1, 2], "d": {}}}) == {"a": "1", "b.c": "[1, 2]", "b.d": "{}"}
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot create"):
        tracking.resolve_uri(f"sqlite:///{blocker}/sub/m.db")


def test_concurrent_start_on_a_fresh_store(tmp_path):
    """Without `dho mlflow-init`, processes creating the sqlite store at once do not race."""
    uri = _uri(tmp_path)
    ctx = mp.get_context("fork")
    procs = []
    for seed in range(1, 5):
        d = tmp_path / f"run{seed}"
        d.mkdir()
        procs.append(ctx.Process(target=_log_from_child, args=(uri, str(d), seed, 1)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * 4
    assert len(_runs(uri)) == 4


def _dump(db: Path) -> dict:
    """Schema and every row of the sqlite store ``db``, the experiments' times left out."""
    import sqlite3

    con = sqlite3.connect(db)
    try:
        # each CREATE statement as its set of clauses: MLflow's migrations themselves write a
        # table's constraints in an order that varies between two runs (string hashing)
        out = {"schema": sorted((kind, name, sorted(line.strip().rstrip(",") for line in (sql or "").splitlines()))
                                for kind, name, sql in con.execute("SELECT type, name, sql FROM sqlite_master"))}
        for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            cols = [r[1] for r in con.execute(f"PRAGMA table_info('{table}')")
                    if not (table == "experiments" and r[1].endswith("_time"))]
            out[table] = sorted(map(repr, con.execute(f"SELECT {', '.join(cols)} FROM '{table}'")))
        return out
    finally:
        con.close()


def _new_store_and_one_run(uri: str) -> tuple[dict, tuple]:
    """:func:`_dump` of the new store ``uri``, then what a run logged in it reads back."""
    tracking.init_store(uri, "dho")
    store = _dump(tracking.sqlite_path(uri))
    client = _client(uri)
    exp = client.get_experiment_by_name("dho")
    run = client.create_run(exp.experiment_id, tags={"spec_hash": "abc"}, run_name="r")
    client.log_param(run.info.run_id, "lr", "0.1")
    for step, v in enumerate((0.5, 0.25)):
        client.log_metric(run.info.run_id, "loss", v, step=step)
    client.set_terminated(run.info.run_id)
    (found,) = client.search_runs([exp.experiment_id])
    history = [(m.step, m.value) for m in client.get_metric_history(found.info.run_id, "loss")]
    tags = {k: v for k, v in found.data.tags.items() if k == "spec_hash"}
    return store, (exp.name, exp.artifact_location, found.info.run_name, found.info.status, found.data.params,
            found.data.metrics, tags, history, found.info.artifact_uri.replace(found.info.run_id, "RUN"))


def test_new_store_from_the_template_is_the_store_mlflow_makes(tmp_path, monkeypatch):
    """A new sqlite store is a copy of a migrated empty store kept in the user cache (built
    once per MLflow version, in another working folder): it holds what MLflow's own
    migrations write in this folder, and the same run logs and reads back the same."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    copies = []
    copy = tracking._copy_template_store
    monkeypatch.setattr(tracking, "_copy_template_store", lambda db: copies.append(copy(db)) or copies[-1])
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    tracking.init_store(f"sqlite:///{tmp_path / 'first' / 'mlflow.db'}", "dho")  # builds the template
    assert copies == [True] and (tracking.template_dir() / "mlflow.db").is_file()
    monkeypatch.chdir(tmp_path / "here")
    templated = _new_store_and_one_run(f"sqlite:///{tmp_path / 'templated.db'}")
    monkeypatch.setenv(tracking.TEMPLATE_ENV, "0")
    plain = _new_store_and_one_run(f"sqlite:///{tmp_path / 'plain.db'}")
    assert copies == [True, True, False]  # the last one made by MLflow's migrations
    assert templated[0] == plain[0]  # schema, migrations, experiments (times aside), every row
    assert templated[1] == plain[1]
    default = _client(f"sqlite:///{tmp_path / 'templated.db'}").get_experiment("0").artifact_location
    assert default == str(tmp_path / "here" / "mlruns" / "0")  # where MLflow puts it from this folder


def test_unusable_template_cache_warns_and_mlflow_makes_the_store(tmp_path, monkeypatch):
    (tmp_path / "cache").write_text("a file, not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.warns(RuntimeWarning, match="MLflow store template"):
        tracking.init_store(_uri(tmp_path), "dho")
    assert _client(_uri(tmp_path)).get_experiment_by_name("dho") is not None
