# Data: generated demo data, dataset checks, label-split manifests.


rule demo_data:
    """Generate the procedural `shapes` dataset of a demo suite (offline)."""
    priority: 50  # on the critical path of a cold run (the demo's teacher gates its runs)
    input:
        lambda wc: S(wc).settings_path("demo_data"),
    output:
        touch(R + "/{suite}/data/.generated"),
    params:
        root=lambda wc: S(wc).data_root,
        args=lambda wc: " ".join(S(wc).cfg["demo"]["data_args"]),
    log:
        R + "/{suite}/logs/demo_data.log",
    shell:
        "{PY} demo data --root {params.root} {params.args} > {log} 2>&1"


rule data_check:
    """`dho data check` of one dataset: stops the workflow early on missing/bad files."""
    priority: 45  # on the critical path of a cold run (the demo's teacher gates its runs)
    input:
        lambda wc: [f"{S(wc).dir}/data/.generated"] if "demo" in S(wc).cfg else [],
    output:
        R + "/{suite}/checks/{dataset}.json",
    params:
        root=lambda wc: S(wc).data_root,
    log:
        R + "/{suite}/logs/data_check_{dataset}.log",
    shell:
        "{PY} data check --root {params.root} --dataset {wildcards.dataset} --json"
        " > {output}.tmp.$$ 2> {log} && mv -f {output}.tmp.$$ {output}"
        " || {{ cat {output}.tmp.$$ >> {log}; rm -f {output}.tmp.$$; exit 1; }}"


rule split:
    """Label-split manifest: labeled / unlabeled train images of one dataset, labels, seed."""
    priority: 45  # on the critical path of a cold run (the demo's teacher gates its runs)
    input:
        data=lambda wc: S(wc).data_ok(wc.dataset),
    output:
        R + "/{suite}/splits/{dataset}/{labels}/split{seed}.json",
    params:
        root=lambda wc: S(wc).data_root,
        args=lambda wc: " ".join(S(wc).labels[wc.labels].cli_args()),
    log:
        R + "/{suite}/logs/split_{dataset}_{labels}_{seed}.log",
    shell:
        "{PY} split --dataset {wildcards.dataset} --root {params.root} {params.args}"
        " --seed {wildcards.seed} --out {output} > {log} 2>&1"
