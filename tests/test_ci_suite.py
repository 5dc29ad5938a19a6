"""Every comparison row end to end (issue 9): the whole `ci` suite as config.yaml has it,
`snakemake --cores 2 --config suite=ci` in a temp copy of the workflow (local launcher,
warm worker): every method on the ResNet-18, Table 2's students (frozen CLIP, VPT, CoOp)
with Table 2's rows, the linear evaluation of Table 5, then runs.csv, the tables and
linear_eval.csv. The SLURM tests cut this suite (conftest.cut_ci); this one does not."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from conftest import snakemake
from dho.results.collect import read_runs_csv
from dho.results.linear import read_linear_csv
from dho.results.style import method_label, student_label
from dho.suite import Workflow

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def ci_grid(workdir: Path):
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config = copy.deepcopy(config)
    config["suite"] = "ci"
    return Workflow(config, REPO / "workflow/schemas/config.schema.yaml").suite("ci")


def test_every_row_of_the_ci_suite_runs_end_to_end(workdir, env):
    suite = ci_grid(workdir)
    assert len(suite.methods) >= 17 and {"clip_tiny_frozen", "vpt_tiny", "coop_tiny"} <= set(suite.students)
    snakemake(["--cores", "2", "--config", "suite=ci"], workdir, env, timeout=1800, check=True)

    # runs.csv: one complete row per cell of the compiled grid, nothing else
    runs = read_runs_csv(workdir / "results/ci/runs.csv")
    expected = {(c.student, c.teacher, c.method) for c in suite.grid}
    assert set(zip(runs["student"], runs["teacher"], runs["method"])) == expected
    assert len(runs) == len(expected) == len(suite.methods) + 3 * 3
    assert runs["test_acc"].between(0, 100).all() and runs["spec_hash"].is_unique

    # the tables name every row and every student
    tables = "".join(f.read_text() for f in (workdir / "results/ci/tables").glob("*.md"))
    assert all(method_label(m) in tables for m in suite.methods)
    assert all(student_label(s) in tables for s in suite.students)

    # Table 5's linear evaluation: the three selected ResNet-18 runs, each on every train image
    linear = read_linear_csv(workdir / "results/ci/linear_eval.csv")
    assert sorted(linear["method"]) == ["dho", "kd", "kd_feature"]
    assert (linear["student"] == "resnet18").all()
    assert ((0 <= linear["linear_top1"]) & (linear["linear_top1"] <= linear["linear_top5"])
            & (linear["linear_top5"] <= 100)).all()
    assert linear["source_test_acc"].notna().all() and (linear["suite"] == "ci").all()
    rec = json.loads((workdir / "results/ci/linear_eval/shapes/2shot/resnet18/zs/dho/seed1.json").read_text())
    assert rec["epochs"] == 3 and rec["n_train"] == 12 * 10 and rec["n_test"] == 12 * 4  # every train image

    # and the workflow is then complete
    p = snakemake(["-n", "--config", "suite=ci"], workdir, env, timeout=300, check=True)
    assert "Nothing to be done" in p.stdout, p.stdout[-3000:]
