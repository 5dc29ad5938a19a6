# dho workflow: label splits -> teachers -> MLflow store -> one training run per grid cell
# -> runs.csv -> tables / figures / (alpha, beta) re-choice.  Rules only call the package
# CLI (`python -m dho ...`); the suites live in config.yaml (schema:
# workflow/schemas/config.schema.yaml).
#
#   snakemake                                   # suite `demo`, local (profiles/default)
#   snakemake -n --config suite=fewshot         # dry run of the whole protocol-1 grid
#   snakemake --profile slurm --config suite=ci # every training run through sbatch
#   snakemake --report results/report.html      # tables and figures with captions
#
# The suites are compiled by the package (dho.suite) when this file is read; a new method
# is a dho.methods registry entry listed in a suite's `methods`, a new teacher kind a
# dho.suite.TEACHER_KINDS entry: neither needs an edit here.

import os

from dho.errors import load_yaml_file
from dho.suite import exit_on_config_error

# a YAML error in config.yaml as one line with its line and column (Snakemake's own
# message names neither)
exit_on_config_error(load_yaml_file, Path(workflow.basedir, "config.yaml"), "config file")


configfile: "config.yaml"


include: "workflow/rules/common.smk"


# Local jobs run their `python -m dho ...` in one warm worker (dho.worker: imports once,
# a fork per command; config key local_worker), started when jobs start, stopped at the end.
if W.worker_socket:
    os.environ["DHO_WORKER"] = W.worker_socket


onstart:
    if W.worker_socket:
        shell(f"{PY} worker start --socket {W.worker_socket} --owner {os.getpid()} --idle 600 "
              f"--log {R}/logs/worker.log")


wildcard_constraints:
    suite=r"[^/]+",
    dataset=r"[^/]+",
    labels=r"[^/]+",
    student=r"[^/]+",
    teacher=r"[^/]+",
    method=r"[^/]+",
    seed=r"\d+",


rule all:
    input:
        # paper tables (workflow/rules/paper.smk, read later): those whose suites are all chosen
        lambda wc: [target for suite in SUITES for target in W.suite(suite).targets()] + paper_targets(),


include: "workflow/rules/data.smk"
include: "workflow/rules/teachers.smk"
include: "workflow/rules/teacher_cache.smk"
include: "workflow/rules/train.smk"


for _baseline in sorted(Path(workflow.basedir, "workflow/rules/baselines").glob("*.smk")):

    include: str(_baseline)


include: "workflow/rules/results.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/linear_eval.smk"
include: "workflow/rules/paper.smk"


onerror:
    if W.worker_socket:
        shell(f"{PY} worker stop --socket {W.worker_socket}")


onsuccess:
    if W.worker_socket:
        shell(f"{PY} worker stop --socket {W.worker_socket}")
    # where to look: printed after every successful run
    for _suite in SUITES:
        _d = Path(R, _suite)
        print(f"\nsuite {_suite}:")
        for _what, _path in (("runs table", _d / "runs.csv"), ("tables", _d / "tables"),
                             ("figures", _d / "figures"), ("OOD table", _d / "evals.csv")):
            if _path.exists():
                print(f"  {_what:10s} {_path}")
    print(f"  MLflow     {W.mlflow_uri}  (browse: python -m dho mlflow-server)")
    print("  report     snakemake --report results/report.html")
