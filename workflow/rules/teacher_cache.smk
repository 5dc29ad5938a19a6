# Teacher-output cache (suite key `teacher_cache: true`, dho.teacher_cache): one
# `dho teacher cache` job per (suite, dataset, image tower = zero-shot teacher, seed)
# stores the tower's features on every training view that the runs sharing it will show
# it (all label levels, students, methods, and the Tip-Adapter-F teachers built on that
# tower).  The compiler writes those runs' specs to `<cache>.specs.json` (an input: a
# changed run spec remakes the cache) and gives each run `teacher_cache: <cache>`.
# With `teacher_cache: {topk: K}` the cache holds the zero-shot head's top-K logits per view
# (`--topk K`, RunSpec key teacher_cache_topk) instead of the tower's features.
# Without the key, runs call the teacher live.


rule teacher_cache:
    """The image tower's features on the views of every run sharing (dataset, tower, seed)."""
    input:
        unpack(lambda wc: S(wc).cache_inputs(wc.dataset, wc.tower, wc.seed)),
    output:
        R + "/{suite}/teacher_cache/{dataset}/{tower}/seed{seed}.pt",
    params:
        device=lambda wc: S(wc).base_spec().device,
        topk=lambda wc: "" if S(wc).cache_topk is None else f" --topk {S(wc).cache_topk}",
        launch=lambda wc: W.launch_flags(S(wc), teacher_res(wc), f"dho-cache-{wc.suite}-{wc.dataset}-{wc.tower}-{wc.seed}"),
    threads: lambda wc: W.threads(teacher_res(wc))
    resources:
        mem_mb=lambda wc: teacher_res(wc).mem_mb,
        runtime=lambda wc: teacher_res(wc).time_min,
        gpus=lambda wc: teacher_res(wc).gpus,
        cpus_per_task=lambda wc: teacher_res(wc).cpus,
    log:
        R + "/{suite}/logs/teacher_cache_{dataset}_{tower}_{seed}.log",
    shell:
        "{PY} submit-cmd {params.launch} --done {output} --"
        " teacher cache --teacher {input.teacher} --spec {input.specs} --device {params.device}{params.topk} --quiet"
        " --out {output} > {log} 2>&1"
