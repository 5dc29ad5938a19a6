"""The one-file promise (issue 9): a baseline is one new file, either a method module in
dho/methods/ or an external rule file in workflow/rules/baselines/.  Each test works in a
temp copy of the repository, adds that one file (and lists the name in the `ci` suite,
as every method is listed), and finds the baseline in `snakemake -n` and in runs.csv and
the tables."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from conftest import WORKFLOW_FILES, copy_repo, snakemake
from test_workflow_config import fake_ci_runs

METHOD_MODULE = '''"""Throwaway: CE with label smoothing (a test baseline)."""
import torch.nn.functional as F

from .base import Arg, Method, number_in, register


@register
class Throwaway(Method):
    name = "throwaway"
    heads = 1
    needs_teacher = False
    description = "throwaway test baseline: CE with label smoothing"
    args = (Arg("smoothing", 0.1, number_in(0, 1, hi_open=True), "a number in [0, 1)"),)

    def loss(self, out_l, out_u, labels, t_l, t_u, **method_args):
        a = self.resolve_args(method_args)
        sup = F.cross_entropy(out_l.ce, labels, label_smoothing=a["smoothing"])
        return sup, {"sup": sup}
'''

EXTERNAL_RULE = '''# Throwaway external baseline: its own script writes the run-directory contract.

rule my_external:
    input:
        spec=lambda wc: S(wc).spec_path(Cell.of(wc)),
    output:
        update(RUN_DIR + "/metrics.json"),
    wildcard_constraints:
        method="my_external",
    params:
        run_dir=RUN_DIR,
    shell:
        "python my_external_script.py {input.spec} {params.run_dir}"


ruleorder: my_external > train
'''

EXTERNAL_SCRIPT = '''"""Someone else's baseline: writes a complete metrics.json for the spec it is given."""
import json, sys
from pathlib import Path

from dho.io import atomic_write_json
from dho.spec import RunSpec

spec = RunSpec.from_dict(json.loads(Path(sys.argv[1]).read_text()))
t = spec.tags
atomic_write_json(Path(sys.argv[2]) / "metrics.json", {
    "status": "complete", "spec_hash": spec.hash, "spec": spec.to_dict(), "dataset": t["dataset"],
    "labels": t["labels"], "student": t["student"], "teacher": t["teacher"], "method": t["method"],
    "seed": int(t["seed"]), "test_acc": 42.5, "test_acc_ce": 42.5, "test_acc_kd": 42.5, "val_acc": 40.0,
    "alpha": 1.0, "beta": 1.0, "best_epoch": 1, "epochs": 1, "teacher_test_acc": None,
    "grad_cosine_mean": None, "wall_time_s": 0.1, "images_per_s": None, "gpu_hours": 0.0, "device": "cpu",
    "git_commit": None, "mlflow_run_id": None, "slurm_job_id": None})
'''


def _copy_repo(dst: Path, with_package: bool) -> None:
    copy_repo(dst, WORKFLOW_FILES + (("dho",) if with_package else ()))


def _list_in_ci(workdir: Path, name: str, entry: dict) -> None:
    cfg = yaml.safe_load((workdir / "config.yaml").read_text())
    cfg["suites"]["ci"]["methods"][name] = entry
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))


def _collect_and_tables(workdir: Path, env: dict, *extra_rules: str) -> tuple[str, str]:
    snakemake(["--cores", "1", "--config", "suite=ci", "--allowed-rules", *extra_rules, "collect", "tables",
               "--", "results/ci/tables"], workdir, env, timeout=600, check=True)
    runs_csv = (workdir / "results/ci/runs.csv").read_text()
    tables = "".join(f.read_text() for f in (workdir / "results/ci/tables").iterdir())
    return runs_csv, tables


@pytest.mark.slow
def test_method_module_is_one_file(tmp_path, env):
    _copy_repo(tmp_path, with_package=True)
    (tmp_path / "dho/methods/throwaway.py").write_text(METHOD_MODULE)
    env = dict(env, PYTHONPATH=str(tmp_path))  # the copy's package, with the new module
    _list_in_ci(tmp_path, "throwaway", {"args": {"smoothing": 0.3}})

    p = snakemake(["-n", "--config", "suite=ci"], tmp_path, env, timeout=300, check=True)
    # no teacher (needs_teacher False, read from the registry): teacher column "none"
    assert "results/ci/runs/shapes/2shot/resnet18/none/throwaway/seed1/metrics.json" in p.stdout

    import subprocess

    listed = subprocess.run([sys.executable, "-m", "dho", "methods"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, check=True).stdout
    assert "throwaway " in listed and "smoothing = 0.1" in listed
    sys.path.insert(0, str(tmp_path))  # fake_ci_runs looks the new method up in the registry
    ours = {m: sys.modules[m] for m in list(sys.modules) if m == "dho" or m.startswith("dho.")}
    try:
        for mod in ours:
            del sys.modules[mod]
        fake_ci_runs(tmp_path)
    finally:
        sys.path.remove(str(tmp_path))
        for mod in [m for m in sys.modules if m == "dho" or m.startswith("dho.")]:
            del sys.modules[mod]
        sys.modules.update(ours)  # the tests after this one keep the package (and classes) they imported
    runs_csv, tables = _collect_and_tables(tmp_path, env)
    header, *rows = runs_csv.splitlines()
    row = next(r for r in rows if ",throwaway," in r)
    assert "arg_smoothing" in header.split(",")  # the method's argument is a column
    assert row.split(",")[header.split(",").index("arg_smoothing")] == "0.3"
    assert "throwaway" in tables


def test_external_rule_file_is_one_file(tmp_path, env):
    _copy_repo(tmp_path, with_package=False)
    (tmp_path / "workflow/rules/baselines/my_external.smk").write_text(EXTERNAL_RULE)
    (tmp_path / "my_external_script.py").write_text(EXTERNAL_SCRIPT)  # the baseline's own script
    _list_in_ci(tmp_path, "my_external", {"external": True, "teacher": True})

    p = snakemake(["-n", "--config", "suite=ci"], tmp_path, env, timeout=300, check=True)
    assert "rule my_external:" in p.stdout
    assert "results/ci/runs/shapes/2shot/resnet18/zs/my_external/seed1/metrics.json" in p.stdout

    fake_ci_runs(tmp_path)  # every other run of the grid; the external one is made by its rule
    (tmp_path / "results/ci/runs/shapes/2shot/resnet18/zs/my_external/seed1/metrics.json").unlink()
    runs_csv, tables = _collect_and_tables(tmp_path, env, "my_external")
    row = next(r for r in runs_csv.splitlines() if ",my_external," in r)
    assert ",42.5," in row
    assert "my_external" in tables
