# Data: generated demo data, dataset checks, label-split manifests.


rule demo_data:
    """Generate the procedural `shapes` dataset of a demo suite (offline)."""
    output:
        touch(R + "/{suite}/data/.generated"),
    params:
        root=lambda wc: data_root(wc.suite),
        args=lambda wc: " ".join(config["suites"][wc.suite]["demo"].get("data_args", [])),
    log:
        R + "/{suite}/logs/demo_data.log",
    shell:
        "{PY} demo data --root {params.root} {params.args} > {log} 2>&1"


def _data_inputs(wc):
    return [f"{R}/{wc.suite}/data/.generated"] if "demo" in config["suites"][wc.suite] else []


rule data_check:
    """`dho data check` of one dataset: stops the workflow early on missing/bad files."""
    input:
        _data_inputs,
    output:
        R + "/{suite}/checks/{dataset}.json",
    params:
        root=lambda wc: data_root(wc.suite),
    log:
        R + "/{suite}/logs/data_check_{dataset}.log",
    shell:
        "{PY} data check --root {params.root} --dataset {wildcards.dataset} --json"
        " > {output}.tmp.$$ 2> {log} && mv -f {output}.tmp.$$ {output}"
        " || {{ cat {output}.tmp.$$ >> {log}; rm -f {output}.tmp.$$; exit 1; }}"


def _split_args(wc):
    kind = label_names(config["suites"][wc.suite])[wc.labels]
    if kind["kind"] == "fewshot":
        return f"--kind fewshot --shots {kind['shots']}"
    return f"--kind percent --percent {kind['percent']}"


rule split:
    """Label-split manifest: labeled / unlabeled train images of one dataset, labels, seed."""
    input:
        data=lambda wc: data_ok(wc.suite, wc.dataset),
    output:
        R + "/{suite}/splits/{dataset}/{labels}/split{seed}.json",
    params:
        root=lambda wc: data_root(wc.suite),
        args=_split_args,
    log:
        R + "/{suite}/logs/split_{dataset}_{labels}_{seed}.log",
    shell:
        "{PY} split --dataset {wildcards.dataset} --root {params.root} {params.args}"
        " --seed {wildcards.seed} --out {output} > {log} 2>&1"
