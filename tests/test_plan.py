"""`dho plan`: runs per suite from the compiled grid, FLOPs from the counted table, and
the teacher cache never costing more than the live teacher."""

from __future__ import annotations

import json

import pytest

from dho.cli import main
from dho.plan import GFLOPS, count_gflops, load_workflow


def test_flops_table_matches_the_counter():
    # counted on the meta device: the table's constant is what flop_counter gives
    assert count_gflops("student", "resnet18", 224) == pytest.approx(GFLOPS[("student:resnet18", 224)], rel=1e-3)


def test_plan_counts_every_run_and_the_cache_saves_teacher_work(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert main(["plan", "--config", "suite=[fewshot,ci]", "--json", str(out), "--step-json", ""]) == 0
    rows = {r["suite"]: r for r in json.loads(out.read_text())["rows"]}
    wf = load_workflow("config.yaml", ["fewshot", "ci"])
    assert rows["fewshot"]["runs"] == len(wf.suite("fewshot").grid)
    assert rows["ci"]["runs"] == len(wf.suite("ci").grid)
    for name in ("fewshot", "ci"):
        r = rows[name]
        assert 0 < r["teacher_forwards_cached"] < r["teacher_forwards"]
        assert 0 < r["teacher_pflops_cached"] < r["teacher_pflops"]
        assert r["gpu_h_flops_cached"] < r["gpu_h_flops"]
    assert rows["all"]["runs"] == rows["fewshot"]["runs"] + rows["ci"]["runs"]
    assert "| fewshot |" in capsys.readouterr().out


def test_plan_without_a_suite_is_one_error_line(capsys):
    assert main(["plan"]) == 2
    assert capsys.readouterr().err.strip() == "error: dho plan: name the suites with --suite NAME or --config suite=NAME"
