"""The run-directory contract (dho.rundir): one definition of "done" for every reader."""

from __future__ import annotations

import json
import warnings

import pytest

from dho import rundir
from dho.errors import DataError
from test_results_fakes import contract_metrics, make_run


def _write(run_dir, metrics) -> None:
    (run_dir / "metrics.json").write_text(json.dumps(metrics) if not isinstance(metrics, str) else metrics)


def test_a_complete_contract_file_is_done_for_its_hash_only(tmp_path):
    run_dir = make_run(tmp_path, "r", spec_hash="aaaa")
    state = rundir.inspect_run(run_dir)
    assert state.done and state.state == rundir.DONE and state.why == "" and state.metrics["spec_hash"] == "aaaa"
    assert rundir.load_done(run_dir, "aaaa") == state.metrics
    other = rundir.inspect_run(run_dir, "bbbb")
    assert other.state == rundir.OTHER_SPEC and "bbbb" in other.why and rundir.load_done(run_dir, "bbbb") is None


@pytest.mark.parametrize("content,state,phrase", [
    (None, rundir.MISSING, "no metrics.json"),
    ('{"status": "comp', rundir.UNREADABLE, "not valid JSON"),
    ('[1, 2]', rundir.INCOMPLETE, "status is 'list'"),
    ({"status": "running"}, rundir.INCOMPLETE, "status is 'running'"),
])
def test_unfinished_states_say_why(tmp_path, content, state, phrase):
    if content is not None:
        _write(tmp_path, content)
    got = rundir.inspect_run(tmp_path)
    assert (got.state, got.done) == (state, False) and phrase in got.why


def test_missing_keys_and_wrong_types_are_invalid_and_named(tmp_path):
    metrics = {**contract_metrics({}, "aaaa"), "test_acc": "high", "seed": 1.5, "dataset": "", "spec": []}
    del metrics["gpu_hours"], metrics["test_acc_kd"]
    _write(tmp_path, metrics)
    got = rundir.inspect_run(tmp_path, "aaaa")
    assert got.state == rundir.INVALID and not got.done
    assert "lacks contract key(s) test_acc_kd, gpu_hours" in got.why
    assert "key 'test_acc' = 'high': expected a number" in got.why
    assert "key 'seed' = 1.5: expected an integer" in got.why
    assert "key 'dataset' = '': expected a non-empty string" in got.why
    assert "key 'spec' = []: expected a mapping" in got.why
    # optional numbers may be null; optional keys (newer additions) may be absent
    ok = contract_metrics({}, "aaaa", teacher_test_acc=None, alpha=None)
    del ok["method_args"]
    assert rundir.contract_problems(ok) == []


def test_metrics_of_a_restarted_folder_are_stale(tmp_path):
    run_dir = make_run(tmp_path, "r", spec_hash="aaaa")
    (run_dir / "spec.json").write_text(json.dumps({"spec_hash": "bbbb"}))  # restarted with another spec
    got = rundir.inspect_run(run_dir)
    assert got.state == rundir.STALE and "stale" in got.why
    assert rundir.load_done(run_dir, "aaaa") is None
    (run_dir / "spec.json").unlink()  # no spec.json: the metrics' own hash counts
    assert rundir.load_done(run_dir, "aaaa") is not None


def test_schema_keys_are_what_training_writes_and_collect_reads():
    from dho.results.collect import RUNS_COLUMNS

    assert set(rundir.REQUIRED_KEYS) <= set(rundir.METRICS_KEYS)
    assert set(RUNS_COLUMNS) - {"suite", "label_count", "run_dir"} <= set(rundir.METRICS_KEYS)


def test_every_reader_agrees(tmp_path):
    """train/launch (load_done), tracking, collect and evaluate give one answer per folder."""
    from dho.evaluate import read_done_metrics
    from dho.results.collect import read_metrics

    done = make_run(tmp_path, "done", spec_hash="aaaa")
    running = make_run(tmp_path, "running", status="running", seed=2)
    stale = make_run(tmp_path, "stale", seed=3)
    (stale / "spec.json").write_text(json.dumps({"spec_hash": "ffff"}))
    invalid = make_run(tmp_path, "invalid", seed=4, test_acc_ce="x")
    assert read_metrics(done) == read_done_metrics(done) == rundir.load_done(done, "aaaa")
    for run_dir in (running, stale):
        with pytest.warns(UserWarning, match="skipping"):
            assert read_metrics(run_dir) is None
        with pytest.raises(DataError, match="not a finished run directory"):
            read_done_metrics(run_dir)
        assert rundir.load_done(run_dir) is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match=r"invalid.*key 'test_acc_ce' = 'x'"):
            read_metrics(invalid)
    with pytest.raises(DataError, match="key 'test_acc_ce' = 'x'"):
        read_done_metrics(invalid)
    assert rundir.load_done(invalid) is None


def test_run_uid_is_written_once_and_shared(tmp_path):
    import threading

    assert rundir.run_uid(tmp_path, create=False) is None and not (tmp_path / "run_uid").exists()
    got: list[str] = []
    threads = [threading.Thread(target=lambda: got.append(rundir.run_uid(tmp_path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 1 and len(got[0]) == 32  # every caller sees the first writer's id
    assert rundir.run_uid(tmp_path, create=False) == got[0] and not list(tmp_path.glob(".*.tmp"))
    (tmp_path / "run_uid").unlink()  # a new folder instance (deleted and recreated): a new id
    assert rundir.run_uid(tmp_path) != got[0]


def test_trainjob_of_a_finished_run_returns_without_importing_torch(tmp_path):
    """A SLURM job requeued after its run finished is a no-op: the finished metrics, no
    trainer (no torch import, which alone takes seconds)."""
    import subprocess
    import sys

    from conftest import REPO
    from dho.spec import RunSpec

    spec = RunSpec(seed=3)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "metrics.json").write_text(json.dumps(contract_metrics(spec.to_dict(), spec.hash)))
    code = ("import json, sys; from dho.job import TrainJob; "
            f"m = TrainJob()(json.loads(sys.argv[1]), sys.argv[2]); "
            "print(m['spec_hash'], 'torch' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code, json.dumps(spec.to_dict()), str(run_dir)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [spec.hash, "False"]
