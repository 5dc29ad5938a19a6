# Out-of-distribution evaluation (protocol 3).  A suite with an `evaluate` block trains
# nothing: the best checkpoint of every run of suite `evaluate.from` is evaluated on each
# of `evaluate.datasets` (`dho evaluate`, one JSON per run and dataset, launched by
# `dho submit-cmd`: in-process locally, a SLURM job under `--profile slurm`), the records are
# collected into <suite>/evals.csv (`dho collect-evals`) and tabulated as
# <suite>/tables/ood.{md,csv,tex} (`dho ood-tables`).  Each evaluation depends on the
# training run's metrics.json, so `snakemake --config suite=ood` also trains what is missing.


def eval_config(suite):
    """The suite's `evaluate` block, its names checked against the config and registries."""
    cfg = config["suites"][suite]
    if "evaluate" not in cfg:
        raise ConfigKeyError(f"config key 'suites.{suite}.evaluate' is missing: suite '{suite}' evaluates nothing")
    ev = cfg["evaluate"]
    for d in ev["datasets"]:
        if d not in known("dataset"):
            raise ConfigKeyError(f"config key 'suites.{suite}.evaluate.datasets': unknown dataset '{d}'; "
                                 f"known: {', '.join(sorted(known('dataset')))}")
    src = ev["from"]
    if src not in config["suites"]:
        raise ConfigKeyError(f"config key 'suites.{suite}.evaluate.from': unknown suite '{src}'; "
                             f"known: {', '.join(sorted(config['suites']))}")
    if "evaluate" in config["suites"][src]:
        raise ConfigKeyError(f"config key 'suites.{suite}.evaluate.from' = '{src}': expected a suite that "
                             f"trains runs, not another evaluation suite")
    return ev


def eval_json(suite, eval_dataset, cell):
    return f"{R}/{suite}/evals/{eval_dataset}/{cell.suite}/" + RUN.format(**cell._asdict()) + ".json"


def eval_jsons(suite):
    """Every evaluation of the suite: each run of `evaluate.from` x each evaluation dataset."""
    ev = eval_config(suite)
    return [eval_json(suite, d, c) for d in ev["datasets"] for c in grid(ev["from"])]


def eval_targets(suite):
    """What `all` builds for an evaluation suite."""
    return [f"{R}/{suite}/evals.csv"] + [f"{R}/{suite}/tables/ood.{ext}" for ext in ("md", "csv", "tex")]


def _eval_device(wc):
    return config["suites"][wc.from_suite].get("train", {}).get("device", "auto")


def _eval_launch(wc):
    """`dho submit-cmd` flags: the launcher and the evaluation suite's resources for this
    student/method (under `--profile slurm` each evaluation is a SLURM job)."""
    r = run_resources(wc.suite, wc.student, wc.method)
    name = f"dho-eval-{wc.suite}-{wc.eval_dataset}-{wc.labels}-{wc.student}-{wc.teacher}-{wc.method}-s{wc.seed}"
    return (f"--launcher {LAUNCHER} --name {name} --log-dir {R}/{wc.suite}/logs --gpus {r['gpus']}"
            f" --cpus {r['cpus']} --mem-gb {r['mem_gb']} --time-min {r['time_min']} {slurm_flags()}")


def _eval_workers(wc, threads):
    """Loader workers: the threads granted here (local), the job's CPUs (SLURM)."""
    return run_resources(wc.suite, wc.student, wc.method)["cpus"] if LAUNCHER == "slurm" else max(1, threads)


def _eval_threads(wc):
    """Local evaluations occupy their CPUs here; through SLURM this is only a waiting
    `dho submit-cmd` (0 threads), like a training run."""
    return 0 if LAUNCHER == "slurm" else run_resources(wc.suite, wc.student, wc.method)["cpus"]


rule evaluate:
    """Test accuracy of one trained run (best checkpoint, its alpha/beta) on another dataset."""
    input:
        data=lambda wc: data_ok(wc.suite, wc.eval_dataset),
        run=R + "/{from_suite}/runs/" + RUN + "/metrics.json",
    output:
        R + "/{suite}/evals/{eval_dataset}/{from_suite}/" + RUN + ".json",
    wildcard_constraints:
        eval_dataset=r"[^/]+",
        from_suite=r"[^/]+",
    params:
        root=lambda wc: data_root(wc.suite),
        run_dir=R + "/{from_suite}/runs/" + RUN,
        device=_eval_device,
        workers=_eval_workers,
        launch=_eval_launch,
    threads: _eval_threads
    resources:
        mem_mb=lambda wc: int(run_resources(wc.suite, wc.student, wc.method)["mem_gb"] * 1024),
        runtime=_res("time_min"),
        gpus=_res("gpus"),
        cpus_per_task=_res("cpus"),
    log:
        R + "/{suite}/logs/evaluate/{eval_dataset}/{from_suite}/" + RUN + ".log",
    shell:
        "{PY} submit-cmd {params.launch} --done {output} --"
        " evaluate --run-dir {params.run_dir} --dataset {wildcards.eval_dataset}"
        " --root {params.root} --device {params.device} --num-workers {params.workers}"
        " --out {output} > {log} 2>&1"


rule collect_evals:
    """All evaluations of an evaluation suite in one CSV."""
    input:
        lambda wc: eval_jsons(wc.suite),
    output:
        report(R + "/{suite}/evals.csv", caption="../report/evals.rst", category="{suite}",
               subcategory="evaluations"),
    params:
        listing=R + "/{suite}/eval_files.txt",
    log:
        R + "/{suite}/logs/collect_evals.log",
    run:
        Path(params.listing).write_text("".join(f + "\n" for f in input))
        shell("{PY} collect-evals --suite {wildcards.suite} --evals-file {params.listing}"
              " --out {output} > {log} 2>&1")


rule ood_tables:
    """The out-of-distribution table (md, csv, tex) of an evaluation suite, from evals.csv."""
    input:
        R + "/{suite}/evals.csv",
    output:
        md=R + "/{suite}/tables/ood.md",
        csv=report(R + "/{suite}/tables/ood.csv", caption="../report/evals.rst", category="{suite}",
                   subcategory="tables"),
        tex=R + "/{suite}/tables/ood.tex",
    params:
        out_dir=R + "/{suite}/tables",
    log:
        R + "/{suite}/logs/ood_tables.log",
    shell:
        "{PY} ood-tables --evals {input} --out-dir {params.out_dir} > {log} 2>&1"
