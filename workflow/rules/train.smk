# MLflow store (once, before runs fan out) and one training run per grid cell.


def _mlflow_init_after(wc):
    """Suites share one tracking store: initialise them one after another (a fresh sqlite
    database created by several processes at once races on its schema)."""
    i = SUITES.index(wc.suite) if wc.suite in SUITES else 0
    return [W.suite(SUITES[i - 1]).mlflow_ok()] if i > 0 else []


rule mlflow_init:
    """Create the tracking store and the suite's experiment once."""
    input:
        _mlflow_init_after,
    output:
        touch(R + "/{suite}/mlflow.ok"),
    params:
        uri=W.mlflow_uri,
    log:
        R + "/{suite}/logs/mlflow_init.log",
    shell:
        "{PY} mlflow-init --uri {params.uri} --experiment {wildcards.suite} > {log} 2>&1"


rule train:
    """One training run: `dho submit` trains the spec file the compiler wrote (locally
    in-process, or a SLURM job through submitit) and waits until metrics.json is complete
    for that spec's hash.  The rule reruns when the spec file or the teacher file is newer
    than metrics.json; a run directory holding another spec is moved aside by the run
    itself (`superseded/`), one holding this spec's finished run is reused.  update():
    Snakemake never deletes a finished result before rerunning; `touch` marks a reused
    result current."""
    input:
        unpack(lambda wc: S(wc).train_inputs(Cell.of(wc))),
    output:
        update(RUN_DIR + "/metrics.json"),
    params:
        run_dir=RUN_DIR,
        launch=signed(lambda wc: W.launch_flags(S(wc), train_res(wc))),
    threads: signed(lambda wc: W.threads(train_res(wc)))
    resources:
        mem_mb=signed(lambda wc: train_res(wc).mem_mb),
        runtime=signed(lambda wc: train_res(wc).time_min),
        gpus=signed(lambda wc: train_res(wc).gpus),
        cpus_per_task=signed(lambda wc: train_res(wc).cpus),
    log:
        R + "/{suite}/logs/train/" + RUN + ".log",
    shell:
        "{PY} submit {params.launch} --spec {input.spec} --out {params.run_dir} > {log} 2>&1"
        " && touch {output}"
