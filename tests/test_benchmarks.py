"""Each benchmark runs at tiny sizes and prints its table (no timing is asserted: speed
figures belong in the benchmarks' output and README, not in tests)."""

from __future__ import annotations

import json

import pytest

from benchmarks import dryrun, loader_epochs, overhead, step, waiting


def test_dryrun_benchmark_counts_the_jobs(tmp_path, capsys):
    out = tmp_path / "dryrun.json"
    assert dryrun.main(["--suites", "ci", "--no-all", "--json", str(out)]) == 0
    row, = json.loads(out.read_text())["rows"]
    assert row["suite"] == "ci" and row["jobs"] > 0 and row["wall_s"] > 0
    assert "| ci |" in capsys.readouterr().out


def test_step_benchmark_runs_the_live_cached_and_authors_steps(tmp_path, capsys):
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
    assert {(r["teacher"], r["what"].split(" (")[0]) for r in figures["rows"]} == {
        (t, w) for t in ("live", "cache") for w in ("compute only", "with the data pipeline")}
    assert all(r["ours_img_s"] > 0 and r["authors_img_s"] > 0 and r["ratio_rounds"] > 0 and r["ratio_cpu"] > 0
               for r in figures["rows"])
    assert all(len(ts) == 1 and ts[0] > 0 for ts in figures["cpu_s_per_step"].values())  # one round each
    # the cache holds the views of the timed epochs (rounds + 1 epochs of 6+6 per step, less the
    # labeled views that the unlabeled stream also draws: one key each); a missing one would fail the run
    assert 0 < figures["teacher_cache"]["views"] <= figures["steps_per_epoch"] * 12 * 2
    same = figures["equal_results"]  # the cached step against the live one: equal to fp16 rounding
    assert same["same_student_init"] == 1
    assert 0 < same["max_abs_logit_diff"] <= same["fp16_logit_bound"]
    assert same["loss_rel_diff"] < 1e-3 and same["grad_rel_diff"] < 1e-2
    assert json.loads(plan.read_text())["teacher_flops_per_s"] > 0
    assert "where the time goes" in capsys.readouterr().out


def test_loader_epochs_benchmark_reads_the_same_batches_both_ways(tmp_path, capsys):
    out = tmp_path / "loaders.json"
    assert loader_epochs.main(["--epochs", "2", "--shots", "1", "--unlabeled", "1", "--batch", "6", "--image-size", "16",
                               "--source-px", "16", "--teacher-model", "dho-tiny-clip", "--workers", "2",
                               "--uncapped", "--zero", "--json", str(out)]) == 0  # 1: the variants' batches differ
    figures = json.loads(out.read_text())
    assert figures["workers"] == 2
    assert [(r["epoch"], r["variant"]) for r in figures["rows"]] == [
        (e, v) for e in (1, 2) for v in ("rebuilt", "persistent", "0 workers")]
    assert len({r["digest"] for r in figures["rows"] if r["epoch"] == 1}) == 1
    assert all(r["train_s"] > 0 and r["val_s"] > 0 for r in figures["rows"])
    assert "rebuilt / persistent" in capsys.readouterr().out


@pytest.mark.slow
def test_overhead_benchmark_splits_a_demo_run(capsys):
    assert overhead.main(["--repeat", "1", "--epochs", "1"]) == 0
    assert "overhead_fraction" in capsys.readouterr().out


@pytest.mark.slurm
@pytest.mark.slow
def test_waiting_benchmark_counts_squeue_calls_and_rss(tmp_path, capsys):
    # two methods, one with the teacher, so that both kinds of launcher wait (`dho submit`
    # for the runs, `dho submit-cmd` for the teacher jobs); the whole suite only adds runs
    out = tmp_path / "waiting.json"
    assert waiting.main(["--seeds", "1", "--epochs", "1", "--methods", "ce,kd", "--json", str(out)]) == 0
    assert "calls_per_job_minute" in capsys.readouterr().out
    row, = json.loads(out.read_text())["rows"]
    assert row["methods"] == "ce,kd" and row["launchers"] >= 4  # 2 runs, the demo teacher, its zero-shot file
    assert row["peak_rss_mb_submit"] > 0 and row["peak_rss_mb_submit_cmd"] > 0
