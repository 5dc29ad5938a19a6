"""The workflow's config: dry runs of the suites, schema/registry errors at parse time,
and the one-file baseline mechanism."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import cut_ci, edit_suite, snakemake


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    table = output.split("Job stats:", 1)[1].split("Reasons:", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


def test_fewshot_dry_run_lists_whole_grid(workdir, env):
    p = snakemake(["-n", "--config", "suite=fewshot"], workdir, env, check=True)
    jobs = job_counts(p.stdout)
    # 10 fine-grained datasets x 5 shot levels x 2 students: ce once (no teacher) + kd, dho,
    # pseudo_label x {zs, fs}
    assert jobs["train"] == 10 * 5 * 2 * (1 + 3 * 2)
    assert jobs["teacher_zeroshot"] == 10 and jobs["teacher_tip_adapter_f"] == 10 * 5
    assert jobs["split"] == 10 * 5 and jobs["mlflow_init"] == 1 and jobs["collect"] == 1


def test_label_leaked_student_refused_at_parse_time(workdir, env):
    _set(workdir, ["suites", "fewshot", "datasets"], ["caltech101", "imagenet"])
    p = snakemake(["-n", "--config", "suite=fewshot"], workdir, env)
    expect = "with its ImageNet-supervised weights on dataset 'imagenet' is label-leaked"
    assert p.returncode != 0 and expect in p.stdout, p.stdout[-3000:]
    assert "rule train" not in p.stdout


@pytest.mark.parametrize("suite, expect", [
    ("imagenet_semi", {"train": 2 * 2 * 3}),          # {1, 10} % x 2 ViTs x ce/kd/dho
    ("ood", {"evaluate": 4 * 12, "train": 12}),       # 4 OOD sets x every imagenet_semi run
    ("ablations", {"train": 3 * 2 * 6 + 3, "collect": 2}),  # group: lambda sweep + heads
    # appendix groups: their own rows + the shared ones of fig4 (300) / table1_fewshot (70)
    ("table13", {"train": 300 + 8 * 5, "paper_table": 3}),              # + PCGrad on 8 datasets
    # (a group holding table1_fewshot also renders fig9 and table5 from it: its linear_eval block)
    ("table14", {"train": 70 + 5 * 4, "paper_table": 3, "linear_eval": 6}),  # + DKD/WKD (+DHO), ImageNet
    ("table15", {"train": 300 + 8 * 5 * 4, "paper_table": 3}),          # + DKD/WKD (+DHO), 8 datasets
    ("table16", {"train": 8, "paper_table": 2}),                        # table3's runs, nothing new
    ("table18", {"train": 70 + 300 + 5 * 3 + 10 * 5 * 3, "paper_table": 7}),  # + 3 non-linear heads
    ("table19", {"train": 70 + 5 * 3, "paper_table": 3}),
    ("table5", {"train": 70, "linear_eval": 2 * 3, "collect_linear_eval": 1}),  # 16-shot, 2 students x 3
])
def test_other_suites_dry_run(workdir, env, suite, expect):
    jobs = job_counts(snakemake(["-n", "--config", f"suite={suite}"], workdir, env, check=True).stdout)
    for rule, n in expect.items():
        assert jobs[rule] == n, (rule, jobs)


def test_resources_depend_on_student(workdir, env):
    p = snakemake(["-n", "-p", "--config", "suite=imagenet_semi"], workdir, env, check=True)
    mem = {m[2]: int(m[1]) for m in re.finditer(r"--mem-gb (\d+) .*?--out \S+/(clip_vit_\w+)/", p.stdout)}
    assert mem == {"clip_vit_b16": 64, "clip_vit_l14_336": 128}


def _set(workdir: Path, path: list[str], value) -> None:
    import yaml

    cfg = yaml.safe_load((workdir / "config.yaml").read_text())
    node = cfg
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))


@pytest.mark.parametrize("edit, args, key", [
    (None, ["--config", "suite=nosuchsuite"], "'suite': unknown suite 'nosuchsuite'"),
    (["suites", "ci", "methods", "nosuchmethod"], [], "suites.ci.methods.nosuchmethod"),
    (["suites", "ci", "students", "resnet18", "student"], [], "suites.ci.students.resnet18"),
    (["suites", "ci", "seeds"], [], "seeds"),
    (["suites", "ci", "epochz"], [], "epochz"),
    (["suites", "ci", "train", "epochs"], [], "key 'epochs' = 'two'"),
])
def test_bad_config_fails_at_parse_time_naming_the_key(workdir, env, edit, args, key):
    if edit:
        value = {"nosuchmethod": {}, "student": "nosuchstudent", "seeds": "one", "epochz": 3,
                 "epochs": "two"}[edit[-1]]
        if edit[-1] == "nosuchmethod":
            _set(workdir, edit[:-1], {"ce": {}, "nosuchmethod": {}})
        else:
            _set(workdir, edit, value)
    p = snakemake(["-n", "--config", "suite=ci", *args] if not args else ["-n", *args], workdir, env)
    assert p.returncode != 0
    errors = [line for line in p.stdout.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and key in errors[0], p.stdout[-3000:]
    assert "Traceback" not in p.stdout and "Exception" not in p.stdout  # one line, no traceback
    assert "rule train" not in p.stdout  # stopped before any job was scheduled


def fake_run(run_dir: Path, cell: dict) -> None:
    """A run dir that honours the contract (DESIGN.md): a complete metrics.json."""
    from dho.io import atomic_write_json
    from dho.spec import RunSpec

    spec = RunSpec.from_dict({"method": cell.pop("registry_method"), "method_args": cell.pop("method_args"),
                              "seed": cell["seed"], "split": {"kind": "fewshot", "shots": 2}, "tags": cell})
    acc = 50.0 + len(cell["method"])
    atomic_write_json(run_dir / "metrics.json", {
        "status": "complete", "spec_hash": spec.hash, "spec": spec.to_dict(),
        "dataset": cell["dataset"], "labels": cell["labels"], "student": cell["student"],
        "teacher": cell["teacher"], "method": cell["method"], "seed": cell["seed"],
        "test_acc": acc, "test_acc_ce": acc, "test_acc_kd": acc, "val_acc": acc, "alpha": 0.5,
        "beta": 1.0, "best_epoch": 1, "epochs": 1, "teacher_test_acc": None,
        "grad_cosine_mean": None, "wall_time_s": 1.0, "images_per_s": 1.0, "gpu_hours": 0.0,
        "device": "cpu", "git_commit": None, "mlflow_run_id": None, "slurm_job_id": None})


def fake_ci_runs(workdir: Path) -> dict:
    """A faked run dir (fake_run) for every method of the `ci` suite in ``workdir``'s config,
    the suite first cut to its ResNet-18 (conftest.cut_ci); returns the suite's methods."""
    import yaml

    from dho.methods import METHODS

    edit_suite(workdir, "ci", cut_ci())
    methods = yaml.safe_load((workdir / "config.yaml").read_text())["suites"]["ci"]["methods"]
    for method, m in methods.items():
        registry_method = m.get("method", method)
        needs_teacher = m.get("teacher", True) if m.get("external") else METHODS.get(registry_method).needs_teacher
        teacher = "zs" if needs_teacher else "none"
        cell = dict(suite="ci", dataset="shapes", labels="2shot", student="resnet18", teacher=teacher,
                    method=method, seed=1)
        fake_run(workdir / f"results/ci/runs/shapes/2shot/resnet18/{teacher}/{method}/seed1",
                 {**cell, "registry_method": registry_method, "method_args": dict(m.get("args", {}))})
    return methods


def test_listed_method_joins_dag_and_tables(workdir, env):
    """A method is one line of a suite's `methods` (no workflow edit); its spec file holds
    the registry method and its args; whether it needs a teacher comes from dho.methods."""
    _set(workdir, ["suites", "ci", "methods", "my_baseline"], {"method": "kd", "args": {"lam": 0.25}})
    p = snakemake(["-n", "-p", "--config", "suite=ci"], workdir, env, check=True)
    assert "ci/runs/shapes/2shot/resnet18/zs/my_baseline/seed1/metrics.json" in p.stdout
    spec = json.loads((workdir / "results/ci/specs/shapes/2shot/resnet18/zs/my_baseline/seed1.json").read_text())
    assert spec["method_args"] == {"lam": 0.25} and spec["method"] == "kd"
    assert '"method_args"' not in p.stdout  # the spec is in its file, not printed with each job
    # fake every run dir of the ci grid, then let the workflow build runs.csv and tables
    methods = fake_ci_runs(workdir)
    snakemake(["--cores", "1", "--config", "suite=ci", "--allowed-rules", "collect", "tables",
               "--", "results/ci/tables"], workdir, env, timeout=600, check=True)
    runs_csv = (workdir / "results/ci/runs.csv").read_text()
    assert runs_csv.count("\n") == 1 + len(methods) and ",my_baseline," in runs_csv
    tables = "".join(f.read_text() for f in (workdir / "results/ci/tables").iterdir())
    assert "my_baseline" in tables


def test_bad_yaml_in_config_is_one_line_with_line_and_column(workdir, env):
    text = (workdir / "config.yaml").read_text().replace("suite: demo", "suite: [demo", 1)
    (workdir / "config.yaml").write_text(text)
    p = snakemake(["-n"], workdir, env)
    errors = [line for line in p.stdout.splitlines() if line.startswith("error: ")]
    assert p.returncode != 0 and len(errors) == 1, p.stdout[-2000:]
    assert "config.yaml is not valid YAML: line " in errors[0] and ", column " in errors[0]
