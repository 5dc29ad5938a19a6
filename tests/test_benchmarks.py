"""Each benchmark runs at tiny sizes and prints its table (no timing is asserted: speed
figures belong in the benchmarks' output and README, not in tests)."""

from __future__ import annotations

import json

import pytest

from benchmarks import dryrun, overhead, step, waiting


def test_dryrun_benchmark_counts_the_jobs(tmp_path, capsys):
    out = tmp_path / "dryrun.json"
    assert dryrun.main(["--suites", "ci", "--no-all", "--json", str(out)]) == 0
    row, = json.loads(out.read_text())["rows"]
    assert row["suite"] == "ci" and row["jobs"] > 0 and row["wall_s"] > 0
    assert "| ci |" in capsys.readouterr().out


def test_step_benchmark_runs_both_steps(tmp_path, capsys):
    import torch

    out, plan = tmp_path / "step.json", tmp_path / "plan.json"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared machine: no thread oversubscription
    try:
        rc = step.main(["--batch", "6", "--steps", "1", "--rounds", "1", "--image-size", "32", "--source-px", "32",
                        "--teacher-model", "dho-tiny-clip", "--json", str(out), "--plan-json", str(plan)])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    figures = json.loads(out.read_text())
    assert {r["what"].split(" (")[0] for r in figures["rows"]} == {"compute only", "with the data pipeline"}
    assert all(r["ours_img_s"] > 0 and r["authors_img_s"] > 0 for r in figures["rows"])
    assert json.loads(plan.read_text())["teacher_flops_per_s"] > 0
    assert "where the time goes" in capsys.readouterr().out


@pytest.mark.slow
def test_overhead_benchmark_splits_a_demo_run(capsys):
    assert overhead.main(["--repeat", "1", "--epochs", "1"]) == 0
    assert "overhead_fraction" in capsys.readouterr().out


@pytest.mark.slurm
@pytest.mark.slow
def test_waiting_benchmark_counts_squeue_calls_and_rss(capsys):
    assert waiting.main(["--seeds", "1", "--epochs", "1"]) == 0
    assert "calls_per_job_minute" in capsys.readouterr().out
