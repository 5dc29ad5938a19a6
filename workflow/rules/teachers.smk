# Teachers: the demo's tiny CLIP and pretrained student, then one rule per teacher kind of
# the package's registry (dho.suite.TEACHER_KINDS: zeroshot per dataset, tip_adapter_f per
# dataset x labels x split seed).  A kind's inputs and `dho` command come from the
# registry, so a new kind needs no edit here.  Each job is launched by `dho submit-cmd`
# with the suite's launcher and `resources.teacher`: in this process locally, in a SLURM
# job under `--profile slurm`.  The compiler also writes each teacher's command to a
# settings file (an input), so a changed teacher setting remakes the teacher file.


def _launch(name):
    """`dho submit-cmd` flags of a teacher job; `name` is a template of the wildcards."""
    return lambda wc: W.launch_flags(S(wc), teacher_res(wc), name.format(**dict(wc.items())))


rule demo_teacher:
    """Pretrain the demo's tiny CLIP on the generated data (offline, CPU)."""
    priority: 40  # on the critical path of a cold run (the demo's teacher gates its runs)
    input:
        lambda wc: S(wc).settings_path("demo_teacher"),
    output:
        R + "/{suite}/demo/tiny_clip.pt",
    params:
        args=lambda wc: " ".join(S(wc).cfg["demo"]["teacher_args"]),
        launch=_launch("dho-demo-teacher-{suite}"),
    threads: lambda wc: W.threads(teacher_res(wc))
    resources:
        mem_mb=lambda wc: teacher_res(wc).mem_mb,
        runtime=lambda wc: teacher_res(wc).time_min,
        gpus=lambda wc: teacher_res(wc).gpus,
        cpus_per_task=lambda wc: teacher_res(wc).cpus,
    log:
        R + "/{suite}/logs/demo_teacher.log",
    shell:
        "{PY} submit-cmd {params.launch} --done {output} --"
        " demo teacher --out {output} {params.args} > {log} 2>&1"


rule demo_student:
    """Pretrain a demo suite's narrow ResNet-18 student on shapes and textures disjoint
    from the benchmark (the demo's ImageNet pretraining; offline, CPU).  Used by a grid
    student whose kwargs say `weights: demo`."""
    input:
        lambda wc: S(wc).settings_path(f"demo_student_{wc.student}"),
    output:
        R + "/{suite}/demo/student_{student}.pt",
    params:
        args=lambda wc: " ".join(S(wc).demo_student_flags(wc.student)),
        launch=_launch("dho-demo-student-{suite}-{student}"),
    threads: lambda wc: W.threads(teacher_res(wc))
    resources:
        mem_mb=lambda wc: teacher_res(wc).mem_mb,
        runtime=lambda wc: teacher_res(wc).time_min,
        gpus=lambda wc: teacher_res(wc).gpus,
        cpus_per_task=lambda wc: teacher_res(wc).cpus,
    log:
        R + "/{suite}/logs/demo_student_{student}.log",
    shell:
        "{PY} submit-cmd {params.launch} --done {output} --"
        " demo student --out {output} {params.args} > {log} 2>&1"


def _teacher_job(wc):
    return S(wc).teacher_job_of(wc.teacher, wc.dataset, getattr(wc, "labels", None), getattr(wc, "seed", None))


for _kind, _teachers in W.teacher_kinds().items():

    rule:
        name: f"teacher_{_kind.name}"
        priority: 30  # each teacher file gates many runs
        input:
            unpack(lambda wc: S(wc).teacher_inputs(_teacher_job(wc))),
        output:
            R + "/{suite}/teachers/{dataset}/" + ("{labels}/split{seed}/" if _kind.per_split else "") + "{teacher}.pt",
        wildcard_constraints:
            teacher="|".join(_teachers),
        params:
            command=lambda wc: S(wc).teacher_command(_teacher_job(wc)),
            launch=lambda wc: W.launch_flags(S(wc), teacher_res(wc), S(wc).teacher_job_name(_teacher_job(wc))),
        threads: lambda wc: W.threads(teacher_res(wc))
        resources:
            mem_mb=lambda wc: teacher_res(wc).mem_mb,
            runtime=lambda wc: teacher_res(wc).time_min,
            gpus=lambda wc: teacher_res(wc).gpus,
            cpus_per_task=lambda wc: teacher_res(wc).cpus,
        log:
            R + "/{suite}/logs/teacher_{dataset}_" + ("{labels}_{seed}_" if _kind.per_split else "") + "{teacher}.log",
        shell:
            "{PY} submit-cmd {params.launch} --done {output} -- {params.command} --out {output} > {log} 2>&1"
