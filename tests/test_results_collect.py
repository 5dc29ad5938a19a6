"""dho.results.collect: run directories -> runs.csv."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from dho.cli import main
from dho.errors import DataError
from dho.results.collect import (RUNS_COLUMNS, DuplicateRunWarning, IncompleteRunWarning, collect_runs,
                                 label_count, read_runs_csv, write_runs_csv)
from test_results_fakes import make_run


def test_collect_skips_unfinished_runs_with_a_warning(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "done", test_acc=71.0)
    make_run(root, "running", status="running", seed=2)
    make_run(root, "broken_json", seed=3)
    (root / "broken_json" / "metrics.json").write_text('{"status": "comp')
    (root / "no_metrics").mkdir()
    (root / "no_metrics" / "spec.json").write_text("{}")
    with pytest.warns(IncompleteRunWarning) as record:
        df = collect_runs(root, "demo")
    assert list(df.columns) == list(RUNS_COLUMNS)
    assert df["run_dir"].tolist() == [str(root / "done")]
    assert df.loc[0, "test_acc"] == 71.0 and df.loc[0, "suite"] == "demo"
    messages = " ".join(str(w.message) for w in record)
    for name in ("running", "broken_json", "no_metrics"):
        assert str(root / name) in messages


def test_collect_skips_metrics_of_a_stale_spec(tmp_path):
    run_dir = make_run(tmp_path, "r")
    (run_dir / "spec.json").write_text(json.dumps({"spec_hash": "0123456789abcdef"}))
    with pytest.warns(IncompleteRunWarning, match="stale"):
        assert collect_runs([run_dir], "s").empty


def test_collect_dedups_by_spec_hash_keeping_the_first_dir(tmp_path):
    a = make_run(tmp_path / "a", "run", spec_hash="feedfeedfeedfeed", test_acc=60.0)
    b = make_run(tmp_path / "b", "run", spec_hash="feedfeedfeedfeed", test_acc=61.0)
    with pytest.warns(DuplicateRunWarning):
        df = collect_runs([b, a], "s")
    assert len(df) == 1 and df.loc[0, "run_dir"] == str(a) and df.loc[0, "test_acc"] == 60.0


def test_collect_rows_are_sorted_and_label_count_numeric(tmp_path):
    make_run(tmp_path, labels="16shot", seed=1)
    make_run(tmp_path, labels="2shot", seed=2)
    make_run(tmp_path, labels="2shot", seed=1)
    make_run(tmp_path, dataset="aaa", labels="8shot")
    df = collect_runs(tmp_path, "s")
    assert df[["dataset", "labels", "seed"]].values.tolist() == [
        ["aaa", "8shot", 1], ["caltech101", "2shot", 1], ["caltech101", "2shot", 2],
        ["caltech101", "16shot", 1]]
    assert df["label_count"].tolist() == [8.0, 2.0, 2.0, 16.0]


def test_broken_contract_names_file_and_missing_keys(tmp_path):
    run_dir = make_run(tmp_path, "bad")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    del metrics["test_acc_kd"], metrics["gpu_hours"]
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(DataError) as e:
        collect_runs(tmp_path, "s")
    assert str(run_dir / "metrics.json") in str(e.value)
    assert "test_acc_kd" in str(e.value) and "gpu_hours" in str(e.value)


def test_wrong_value_type_is_a_data_error(tmp_path):
    run_dir = make_run(tmp_path, "bad")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["test_acc"] = "high"
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(DataError, match="'test_acc' = 'high': expected a number"):
        collect_runs(tmp_path, "s")


@pytest.mark.parametrize("labels,spec,expected", [
    ("4shot", None, 4.0), ("1pct", None, 1.0), ("10%", None, 10.0), ("0.5pct", None, 0.5),
    ("simclr1", {"split": {"kind": "list", "file": "lists/1percent.txt"}}, 1.0),
    ("custom", None, math.nan)])
def test_label_count(labels, spec, expected):
    got = label_count(labels, spec)
    assert (math.isnan(got) and math.isnan(expected)) or got == expected


def test_runs_csv_round_trip_keeps_text_columns(tmp_path):
    make_run(tmp_path / "runs", teacher="none", method="ce", teacher_test_acc=None, slurm_job_id="00123")
    make_run(tmp_path / "runs", dataset="NA", labels="1pct")
    df = collect_runs(tmp_path / "runs", "s")
    path = write_runs_csv(df, tmp_path / "out" / "runs.csv")
    back = read_runs_csv(path)
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert "NA" in back["dataset"].tolist() and "none" in back["teacher"].tolist()
    assert back.loc[back["teacher"] == "none", "slurm_job_id"].item() == "00123"
    assert not list(path.parent.glob(".*tmp"))


def test_read_runs_csv_missing_columns(tmp_path):
    path = tmp_path / "runs.csv"
    path.write_text("suite,dataset\ns,d\n")
    with pytest.raises(DataError, match=r"runs.csv lacks column\(s\) labels"):
        read_runs_csv(path)


def test_cli_collect_root_and_run_dir_list(tmp_path, capsys):
    a = make_run(tmp_path / "runs", seed=1)
    b = make_run(tmp_path / "elsewhere", seed=2)
    listing = tmp_path / "dirs.txt"
    listing.write_text(f"# run dirs\n{b}\n\n{a}\n")
    out = tmp_path / "runs.csv"
    assert main(["collect", "--suite", "x", "--runs-root", str(tmp_path / "runs"),
                 "--run-dirs-file", str(listing), "--out", str(out)]) == 0
    assert f"wrote {out} (2 runs)" in capsys.readouterr().out
    assert read_runs_csv(out)["seed"].tolist() == [1, 2]


def test_cli_collect_missing_run_dir_list_is_one_line(tmp_path, capsys):
    missing = tmp_path / "nothere.txt"
    assert main(["collect", "--suite", "x", "--run-dirs-file", str(missing),
                 "--out", str(tmp_path / "runs.csv")]) == 2
    assert capsys.readouterr().err.strip() == f"error: run-dir list file not found: {missing}"
    assert not (tmp_path / "runs.csv").exists()


def test_cli_collect_prints_warnings_and_errors_as_lines(tmp_path, capsys):
    make_run(tmp_path / "runs", "r1", status="running")
    assert main(["collect", "--suite", "x", "--run-dir", str(tmp_path / "runs" / "r1"),
                 "--out", str(tmp_path / "runs.csv")]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: skipping") and "status is 'running'" in err
    assert main(["collect", "--suite", "x", "--out", str(tmp_path / "r.csv")]) == 2
    assert "error: dho collect: give --runs-root" in capsys.readouterr().err


def test_single_head_runs_have_no_alpha_beta(tmp_path):
    for method in ("kd", "dho", "my_external_baseline"):
        make_run(tmp_path, method=method)
    df = collect_runs(tmp_path, "s").set_index("method")
    assert math.isnan(df.loc["kd", "alpha"]) and math.isnan(df.loc["kd", "beta"])
    assert (df.loc["dho", "alpha"], df.loc["dho", "beta"]) == (0.5, 1.0)
    assert df.loc["my_external_baseline", "alpha"] == 0.5  # not registered: kept as the run wrote it
