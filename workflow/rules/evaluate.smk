# Out-of-distribution evaluation (protocol 3).  A suite with an `evaluate` block trains
# nothing: the best checkpoint of every run of suite `evaluate.from` is evaluated on each
# of `evaluate.datasets` (`dho evaluate`, one JSON per run and dataset, launched by
# `dho submit-cmd`: in-process locally, a SLURM job under `--profile slurm`), the records are
# collected into <suite>/evals.csv (`dho collect-evals`) and tabulated as
# <suite>/tables/ood.{md,csv,tex} (`dho ood-tables`).  Each evaluation depends on the
# training run's metrics.json, so `snakemake --config suite=ood` also trains what is missing.


def _eval_launch(wc):
    """`dho submit-cmd` flags: the launcher and the evaluation suite's resources for this
    student/method (under `--profile slurm` each evaluation is a SLURM job)."""
    name = f"dho-eval-{wc.suite}-{wc.eval_dataset}-{wc.labels}-{wc.student}-{wc.teacher}-{wc.method}-s{wc.seed}"
    return W.launch_flags(S(wc), train_res(wc), name)


def _eval_workers(wc, threads, res=train_res):
    """Loader workers: the threads granted here (local), the job's CPUs (SLURM)."""
    return res(wc).cpus if W.launcher == "slurm" else max(1, threads)


rule evaluate:
    """Test accuracy of one trained run (best checkpoint, its alpha/beta) on another dataset."""
    input:
        data=lambda wc: S(wc).data_ok(wc.eval_dataset),
        run=R + "/{from_suite}/runs/" + RUN + "/metrics.json",
    output:
        R + "/{suite}/evals/{eval_dataset}/{from_suite}/" + RUN + ".json",
    wildcard_constraints:
        eval_dataset=r"[^/]+",
        from_suite=r"[^/]+",
    params:
        root=lambda wc: S(wc).data_root,
        run_dir=R + "/{from_suite}/runs/" + RUN,
        device=lambda wc: W.suite(wc.from_suite).base_spec().device,
        workers=_eval_workers,
        launch=_eval_launch,
    threads: lambda wc: W.threads(train_res(wc))
    resources:
        mem_mb=lambda wc: train_res(wc).mem_mb,
        runtime=lambda wc: train_res(wc).time_min,
        gpus=lambda wc: train_res(wc).gpus,
        cpus_per_task=lambda wc: train_res(wc).cpus,
    log:
        R + "/{suite}/logs/evaluate/{eval_dataset}/{from_suite}/" + RUN + ".log",
    shell:
        "{PY} submit-cmd {params.launch} --done {output} --"
        " evaluate --run-dir {params.run_dir} --dataset {wildcards.eval_dataset}"
        " --root {params.root} --device {params.device} --num-workers {params.workers}"
        " --out {output} > {log} 2>&1"


rule evaluate_teacher:
    """Zero-shot reference: a teacher of `evaluate.teachers`, made on the evaluated dataset, on its test split."""
    input:
        data=lambda wc: S(wc).data_ok(wc.eval_dataset),
        teacher=R + "/{suite}/teachers/{eval_dataset}/{teacher}.pt",
    output:
        R + "/{suite}/evals/{eval_dataset}/zero-shot/{teacher}.json",
    wildcard_constraints:
        eval_dataset=r"[^/]+",
        teacher=r"[^/]+",
    params:
        root=lambda wc: S(wc).data_root,
        device=lambda wc: S(wc).base_spec().device,
        workers=lambda wc, threads: _eval_workers(wc, threads, teacher_res),
        launch=lambda wc: W.launch_flags(S(wc), teacher_res(wc),
                                         f"dho-eval-{wc.suite}-{wc.eval_dataset}-zero-shot-{wc.teacher}"),
    threads: lambda wc: W.threads(teacher_res(wc))
    resources:
        mem_mb=lambda wc: teacher_res(wc).mem_mb,
        runtime=lambda wc: teacher_res(wc).time_min,
        gpus=lambda wc: teacher_res(wc).gpus,
        cpus_per_task=lambda wc: teacher_res(wc).cpus,
    log:
        R + "/{suite}/logs/evaluate/{eval_dataset}/zero-shot/{teacher}.log",
    shell:
        "{PY} submit-cmd {params.launch} --done {output} --"
        " evaluate-teacher --teacher {input.teacher} --name {wildcards.teacher} --dataset {wildcards.eval_dataset}"
        " --root {params.root} --device {params.device} --num-workers {params.workers} --quiet"
        " --out {output} > {log} 2>&1"


rule collect_evals:
    """All evaluations of an evaluation suite in one CSV."""
    input:
        lambda wc: S(wc).eval_jsons(),
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
