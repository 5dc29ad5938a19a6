# Linear evaluation (paper Table 5): a suite with a `linear_eval` block evaluates the
# finished runs it selects (`dho linear-eval`: the frozen student, a new linear head on the
# fully labeled train split; launched by `dho submit-cmd`: in-process locally, a SLURM job
# under `--profile slurm`), one JSON per run, collected into <suite>/linear_eval.csv, which
# the paper table `table5` reads.  Each evaluation depends on the run's metrics.json.


def _linear_res(wc):
    return S(wc).linear_eval_resources()


rule linear_eval:
    """Top-1 / top-5 of a new linear head on one finished run's frozen features."""
    input:
        data=lambda wc: S(wc).data_ok(wc.dataset),
        run=RUN_DIR + "/metrics.json",
    output:
        R + "/{suite}/linear_eval/" + RUN + ".json",
    params:
        root=lambda wc: S(wc).data_root,
        run_dir=RUN_DIR,
        device=lambda wc: S(wc).base_spec().device,
        workers=lambda wc, threads: _linear_res(wc).cpus if W.launcher == "slurm" else max(1, threads),
        args=lambda wc: " ".join(S(wc).linear_eval.get("args", [])),
        launch=lambda wc: W.launch_flags(S(wc), _linear_res(wc), f"dho-linear-{wc.suite}-{wc.dataset}-{wc.labels}-"
                                         f"{wc.student}-{wc.teacher}-{wc.method}-s{wc.seed}"),
    threads: lambda wc: W.threads(_linear_res(wc))
    resources:
        mem_mb=lambda wc: _linear_res(wc).mem_mb,
        runtime=lambda wc: _linear_res(wc).time_min,
        gpus=lambda wc: _linear_res(wc).gpus,
        cpus_per_task=lambda wc: _linear_res(wc).cpus,
    log:
        R + "/{suite}/logs/linear_eval/" + RUN + ".log",
    shell:
        "{PY} submit-cmd {params.launch} --done {output} --"
        " linear-eval --run-dir {params.run_dir} --root {params.root} --device {params.device}"
        " --num-workers {params.workers} --quiet {params.args} --out {output} > {log} 2>&1"


rule collect_linear_eval:
    """The suite's linear evaluations in one CSV."""
    input:
        lambda wc: [S(wc).linear_eval_json(c) for c in S(wc).linear_eval_cells()],
    output:
        R + "/{suite}/linear_eval.csv",
    params:
        listing=R + "/{suite}/linear_eval_files.txt",
    log:
        R + "/{suite}/logs/collect_linear_eval.log",
    run:
        Path(params.listing).write_text("".join(f + "\n" for f in input))
        shell("{PY} collect-linear-eval --suite {wildcards.suite} --records-file {params.listing}"
              " --out {output} > {log} 2>&1")
