# Out-of-distribution evaluation (protocol 3): the best checkpoint of every run of suite
# `evaluate.from` evaluated on each of `evaluate.datasets`.


def _eval_cells(suite):
    return grid(config["suites"][suite]["evaluate"]["from"])


def _eval_jsons(suite):
    ev = config["suites"][suite]["evaluate"]
    for d in ev["datasets"]:
        if d not in known("dataset"):
            raise ConfigKeyError(f"config key 'suites.{suite}.evaluate.datasets': unknown dataset '{d}'; "
                                 f"known: {', '.join(sorted(known('dataset')))}")
    if ev["from"] not in config["suites"]:
        raise ConfigKeyError(f"config key 'suites.{suite}.evaluate.from': unknown suite '{ev['from']}'")
    return [f"{R}/{suite}/evals/{d}/{c.suite}/" + RUN.format(**c._asdict()) + ".json"
            for d in ev["datasets"] for c in _eval_cells(suite)]


rule evaluate:
    """Test accuracy of one trained run (best checkpoint, its alpha/beta) on another dataset."""
    input:
        data=lambda wc: data_ok(wc.suite, wc.eval_dataset),
        run=R + "/{from_suite}/runs/" + RUN + "/metrics.json",
    output:
        R + "/{suite}/evals/{eval_dataset}/{from_suite}/" + RUN + ".json",
    params:
        root=lambda wc: data_root(wc.suite),
        run_dir=R + "/{from_suite}/runs/" + RUN,
    resources:
        mem_mb=lambda wc: int(run_resources(wc.suite, wc.student, wc.method)["mem_gb"] * 1024),
        runtime=_res("time_min"),
        gpus=_res("gpus"),
    log:
        R + "/{suite}/logs/evaluate/{eval_dataset}/{from_suite}/" + RUN + ".log",
    shell:
        "{PY} evaluate --run-dir {params.run_dir} --dataset {wildcards.eval_dataset}"
        " --root {params.root} --out {output} > {log} 2>&1"


rule collect_evals:
    """All OOD evaluations of a suite in one CSV."""
    input:
        lambda wc: _eval_jsons(wc.suite),
    output:
        report(R + "/{suite}/evals.csv", caption="../report/evals.rst", category="{suite}"),
    params:
        evals_dir=R + "/{suite}/evals",
    log:
        R + "/{suite}/logs/collect_evals.log",
    shell:
        "{PY} collect --suite {wildcards.suite} --evals-root {params.evals_dir} --out {output} > {log} 2>&1"
