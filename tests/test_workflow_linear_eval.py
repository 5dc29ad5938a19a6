"""Linear evaluation (Table 5) as a workflow rule: a suite's `linear_eval` block selects runs,
`dho linear-eval` evaluates each, `dho collect-linear-eval` writes linear_eval.csv, and the
`table5` paper layout reads it."""

from __future__ import annotations

import json

import pytest

from conftest import edit_suite, snakemake
from dho.cli import main
from dho.errors import DataError
from dho.results.linear import LINEAR_COLUMNS, collect_linear, read_linear_csv, write_linear_csv
from dho.results.paper import get_layout, paper_cells
from dho.results.reported import load_reported

RUN = "shapes/2shot/resnet18/zs/dho/seed1"


def _record(**over):
    rec = dict(status="complete", dataset="imagenet", labels="16shot", student="dino_resnet50", teacher="zs",
               method="dho", seed=1, spec_hash="abc123", linear_top1=66.0, linear_top5=88.0, source_test_acc=64.0,
               n_train=1000, n_test=500, feature_dim=2048, run_dir="results/x/runs/r")
    rec.update(over)
    return rec


def test_collect_and_table5(tmp_path):
    files = []
    for method, top1, top5 in (("dho", 66.0, 88.0), ("kd", 65.0, 89.0)):
        path = tmp_path / f"{method}.json"
        path.write_text(json.dumps(_record(method=method, linear_top1=top1, linear_top5=top5, spec_hash=method)))
        files.append(path)
    df = read_linear_csv(write_linear_csv(collect_linear(files, "table1_fewshot"), tmp_path / "linear_eval.csv"))
    assert list(df.columns) == list(LINEAR_COLUMNS) and len(df) == 2 and set(df["suite"]) == {"table1_fewshot"}
    assert df["label_count"].tolist() == [16.0, 16.0]
    cells = paper_cells(get_layout("table5"), df, load_reported()).set_index(["block", "row", "column"])
    dho = cells.loc[("DINO ResNet-50", "DHO", "Top-1 (%)")]
    assert (dho["reproduced"], dho["reported"]) == (66.0, 67.1) and dho["diff"] == pytest.approx(-1.1)
    kd5 = cells.loc[("DINO ResNet-50", "CE+KD (logit)", "Top-5 (%)")]
    assert (kd5["reproduced"], kd5["reported"]) == (89.0, 88.8)
    feat = cells.loc[("ResNet-18 from scratch", "CE+KD (feature)", "Top-1 (%)")]
    assert feat["status"] == "missing" and feat["reported"] == 62.3
    assert cells["reported"].notna().sum() == 12  # Table 5's 6 numbers, beside both students


def test_incomplete_record_is_one_line_naming_the_key(tmp_path):
    path = tmp_path / "r.json"
    rec = _record()
    del rec["linear_top5"]
    path.write_text(json.dumps(rec))
    with pytest.raises(DataError, match=r"r\.json lacks key 'linear_top5'"):
        collect_linear([path], "s")
    path.write_text(json.dumps(_record(n_train=1.5)))
    with pytest.raises(DataError, match=r"key 'n_train' = 1\.5: expected an integer"):
        collect_linear([path], "s")


def test_paper_table_cli_reads_linear_eval_csv(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(_record()))
    csv = tmp_path / "linear_eval.csv"
    assert main(["collect-linear-eval", "--suite", "table1_fewshot", "--record", str(path), "--out", str(csv)]) == 0
    assert main(["paper-table", "--layout", "table5", "--linear-eval", str(csv), "--out-dir", str(tmp_path)]) == 0
    md = (tmp_path / "table5.md").read_text()
    assert "| DINO ResNet-50 | CE+KD (feature) | missing (62.3) | missing (85.0) |" in md
    assert "|  | DHO | 66.0 (67.1, -1.1) | 88.0 (89.3, -1.3) |" in md


def test_dry_run_lists_the_selected_runs_only(workdir, env):
    edit_suite(workdir, "ci", lambda s: s.update(linear_eval={"students": ["resnet18"], "methods": ["dho", "kd"],
                                                                "args": ["--epochs", "3"]}))
    p = snakemake(["-n", "-p", "--config", "suite=ci"], workdir, env, check=True)
    jobs = [line for line in p.stdout.splitlines() if " linear-eval --run-dir " in line]
    assert len(jobs) == 2, jobs
    assert any(f"--run-dir results/ci/runs/{RUN} " in j and "--epochs 3 --out" in j for j in jobs)
    assert "rule collect_linear_eval:" in p.stdout and "results/ci/linear_eval.csv" in p.stdout


def test_unknown_filter_name_fails_at_parse_time(workdir, env):
    edit_suite(workdir, "ci", lambda s: s.update(linear_eval={"methods": ["no_such"]}))
    p = snakemake(["-n", "--config", "suite=ci"], workdir, env)
    assert p.returncode != 0 and "config key 'suites.ci.linear_eval.methods': 'no_such' is not in the suite's grid" \
        in p.stdout, p.stdout[-2000:]
