# MLflow store (once, before runs fan out) and one training run per grid cell.


def _mlflow_init_after(wc):
    """Suites share one tracking store: initialise them one after another (a fresh sqlite
    database created by several processes at once races on its schema)."""
    i = SUITES.index(wc.suite) if wc.suite in SUITES else 0
    return [mlflow_ok(SUITES[i - 1])] if i > 0 else []


rule mlflow_init:
    """Create the tracking store and the suite's experiment once."""
    input:
        _mlflow_init_after,
    output:
        touch(R + "/{suite}/mlflow.ok"),
    params:
        uri=lambda wc: mlflow_uri(),
    log:
        R + "/{suite}/logs/mlflow_init.log",
    shell:
        "{PY} mlflow-init --uri {params.uri} --experiment {wildcards.suite} > {log} 2>&1"


rule train:
    """One training run: `dho submit` writes the spec and waits until metrics.json is
    complete (locally in-process, or a SLURM job through submitit).  metrics.json is
    flagged update() so that Snakemake never deletes a finished run's result before
    rerunning an interrupted job: `dho submit` then sees the done run and returns."""
    input:
        unpack(train_inputs),
    output:
        update(RUN_DIR + "/metrics.json"),
    params:
        spec=lambda wc: json.dumps(run_spec(wc), sort_keys=True),
        mem_gb=_res("mem_gb"),
        spec_file=R + "/{suite}/specs/" + RUN + ".json",
        launcher=LAUNCHER,
        slurm=slurm_flags(),
        log_dir=R + "/{suite}/logs",
        run_dir=RUN_DIR,
    threads: train_threads
    resources:
        mem_mb=lambda wc: int(run_resources(wc.suite, wc.student, wc.method)["mem_gb"] * 1024),
        runtime=_res("time_min"),
        gpus=_res("gpus"),
        cpus_per_task=_res("cpus"),
    log:
        R + "/{suite}/logs/train/" + RUN + ".log",
    shell:
        # the temp name carries the shell's PID: two Snakemake instances started with
        # --nolock may write the same spec at once, and must not move each other's file
        "{{ mkdir -p $(dirname {params.spec_file}) && printf '%s\\n' {params.spec:q}"
        " > {params.spec_file}.tmp.$$ && mv -f {params.spec_file}.tmp.$$ {params.spec_file} &&"
        " {PY} submit --launcher {params.launcher} --spec {params.spec_file} --out {params.run_dir}"
        " --log-dir {params.log_dir} --gpus {resources.gpus} --cpus {resources.cpus_per_task}"
        " --mem-gb {params.mem_gb} --time-min {resources.runtime} {params.slurm}; }}"
        " > {log} 2>&1"
