# Teachers: the demo's tiny CLIP (and its pretrained student), zero-shot CLIP (per dataset) and Tip-Adapter-F (per
# dataset x labels x split seed: the zero-shot teacher `base` + a cache of the labeled
# shots, fine-tuned).  Each is made by `dho submit-cmd` with the suite's launcher and its
# `resources.teacher` (falling back to `resources.default`): in this process locally, in a
# SLURM job under `--profile slurm`.


def teacher_resources(suite):
    """What one teacher job asks for: default < teacher of the suite's `resources`."""
    res = {"gpus": 0, "cpus": 1, "mem_gb": 4, "time_min": 60}
    cfg = config["suites"][suite].get("resources", {})
    for layer in (cfg.get("default", {}), cfg.get("teacher", {})):
        res.update(layer)
    return res


def _tres(key):
    return lambda wc: teacher_resources(wc.suite)[key]


def teacher_threads(wc):
    """Local teacher jobs occupy their CPUs here; through SLURM this is only a waiting
    `dho submit-cmd` (0 threads), like a training run."""
    return 0 if LAUNCHER == "slurm" else teacher_resources(wc.suite)["cpus"]


def _launch(name):
    """`dho submit-cmd` flags of a teacher job: the suite's launcher and teacher resources
    (under `--profile slurm` the teacher is made in a SLURM job, not on this machine).
    `name`: the SLURM job name, a template of the rule's wildcards."""

    def flags(wc):
        r = teacher_resources(wc.suite)
        job = name.format(**{k: getattr(wc, k) for k in wc.keys()})
        return (f"--launcher {LAUNCHER} --name {job} --log-dir {R}/{wc.suite}/logs --gpus {r['gpus']}"
                f" --cpus {r['cpus']} --mem-gb {r['mem_gb']} --time-min {r['time_min']} {slurm_flags()}")

    return flags


def _teacher_cfg(wc):
    return config["suites"][wc.suite]["teachers"][wc.teacher]


def _demo_clip(suite):
    return f"{R}/{suite}/demo/tiny_clip.pt"


def _teacher_weights(wc):
    """The demo's tiny CLIP file when the teacher's `pretrained` is "demo"."""
    return [_demo_clip(wc.suite)] if _teacher_cfg(wc).get("pretrained") == "demo" else []


def _common_flags(wc):
    """--device/--quiet from the suite's train settings, then the teacher's own args."""
    train = config["suites"][wc.suite].get("train", {})
    flags = ["--quiet", f"--device {train.get('device', 'auto')}"]
    for key, value in _teacher_cfg(wc).get("args", {}).items():
        flags.append(f"--{key.replace('_', '-')} {value}")
    return flags


def _zeroshot_flags(wc):
    t = _teacher_cfg(wc)
    if not t.get("model") or not t.get("pretrained"):
        raise ConfigKeyError(f"config key 'suites.{wc.suite}.teachers.{wc.teacher}': a zeroshot "
                             f"teacher needs 'model' and 'pretrained'")
    pretrained = _demo_clip(wc.suite) if t["pretrained"] == "demo" else t["pretrained"]
    return " ".join([f"--model {t['model']}", f"--pretrained {pretrained}"] + _common_flags(wc))


def _tip_base(wc):
    """The zero-shot teacher file a Tip-Adapter-F teacher builds on."""
    suite = config["suites"][wc.suite]
    base = _teacher_cfg(wc).get("base")
    if base not in suite.get("teachers", {}) or suite["teachers"][base]["kind"] != "zeroshot":
        raise ConfigKeyError(f"config key 'suites.{wc.suite}.teachers.{wc.teacher}.base' = {base!r}: "
                             f"expected the name of a zeroshot teacher of the suite")
    return f"{R}/{wc.suite}/teachers/{wc.dataset}/{base}.pt"


def _tip_flags(wc):
    train = config["suites"][wc.suite].get("train", {})
    flags = [f"--image-size {train.get('image_size', 224)}",
             f"--crop-scale-min {train.get('crop_scale_min', 0.5)}"]
    return " ".join(flags + _common_flags(wc))


rule demo_teacher:
    """Pretrain the demo's tiny CLIP on the generated data (offline, CPU)."""
    output:
        R + "/{suite}/demo/tiny_clip.pt",
    params:
        args=lambda wc: " ".join(config["suites"][wc.suite]["demo"].get("teacher_args", [])),
        launch=_launch("dho-demo-teacher-{suite}"),
    threads: teacher_threads
    resources:
        mem_mb=lambda wc: int(teacher_resources(wc.suite)["mem_gb"] * 1024),
        runtime=_tres("time_min"),
        gpus=_tres("gpus"),
        cpus_per_task=_tres("cpus"),
    log:
        R + "/{suite}/logs/demo_teacher.log",
    shell:
        "{PY} submit-cmd {params.launch} --done {output} --"
        " demo teacher --out {output} {params.args} > {log} 2>&1"


def _demo_student_args(wc):
    """`dho demo student` flags: the grid student's width and image size, then the
    suite's `demo.student_args` (budget, seed)."""
    kwargs = students_of(wc.suite)[wc.student]["kwargs"]
    flags = [f"--width {kwargs.get('width', 64)}", f"--size {kwargs.get('image_size', 224)}"]
    return " ".join(flags + config["suites"][wc.suite].get("demo", {}).get("student_args", []))


rule demo_student:
    """Pretrain a demo suite's narrow ResNet-18 student on shapes and textures disjoint
    from the benchmark (the demo's ImageNet pretraining; offline, CPU).  Used by a grid
    student whose kwargs say `weights: demo`."""
    output:
        R + "/{suite}/demo/student_{student}.pt",
    params:
        args=_demo_student_args,
        launch=_launch("dho-demo-student-{suite}-{student}"),
    threads: teacher_threads
    resources:
        mem_mb=lambda wc: int(teacher_resources(wc.suite)["mem_gb"] * 1024),
        runtime=_tres("time_min"),
        gpus=_tres("gpus"),
        cpus_per_task=_tres("cpus"),
    log:
        R + "/{suite}/logs/demo_student_{student}.log",
    shell:
        "{PY} submit-cmd {params.launch} --done {output} --"
        " demo student --out {output} {params.args} > {log} 2>&1"


rule teacher_zeroshot:
    """Zero-shot CLIP teacher file of one dataset."""
    input:
        data=lambda wc: data_ok(wc.suite, wc.dataset),
        weights=_teacher_weights,
    output:
        R + "/{suite}/teachers/{dataset}/{teacher}.pt",
    params:
        root=lambda wc: data_root(wc.suite),
        flags=_zeroshot_flags,
        launch=_launch("dho-teacher-{suite}-{dataset}-{teacher}"),
    threads: teacher_threads
    resources:
        mem_mb=lambda wc: int(teacher_resources(wc.suite)["mem_gb"] * 1024),
        runtime=_tres("time_min"),
        gpus=_tres("gpus"),
        cpus_per_task=_tres("cpus"),
    log:
        R + "/{suite}/logs/teacher_{dataset}_{teacher}.log",
    shell:
        "{PY} submit-cmd {params.launch} --done {output} --"
        " teacher zeroshot --dataset {wildcards.dataset} --root {params.root} {params.flags}"
        " --out {output} > {log} 2>&1"


rule teacher_tip_adapter_f:
    """Few-shot Tip-Adapter-F teacher trained on the labeled images of one split."""
    input:
        data=lambda wc: data_ok(wc.suite, wc.dataset),
        split=R + "/{suite}/splits/{dataset}/{labels}/split{seed}.json",
        base=_tip_base,
    output:
        R + "/{suite}/teachers/{dataset}/{labels}/split{seed}/{teacher}.pt",
    params:
        root=lambda wc: data_root(wc.suite),
        flags=_tip_flags,
        launch=_launch("dho-teacher-{suite}-{dataset}-{labels}-split{seed}-{teacher}"),
    threads: teacher_threads
    resources:
        mem_mb=lambda wc: int(teacher_resources(wc.suite)["mem_gb"] * 1024),
        runtime=_tres("time_min"),
        gpus=_tres("gpus"),
        cpus_per_task=_tres("cpus"),
    log:
        R + "/{suite}/logs/teacher_{dataset}_{labels}_{seed}_{teacher}.log",
    shell:
        "{PY} submit-cmd {params.launch} --done {output} --"
        " teacher tip-adapter-f --dataset {wildcards.dataset} --root {params.root}"
        " --base {input.base} --split-manifest {input.split} --seed {wildcards.seed} {params.flags}"
        " --out {output} > {log} 2>&1"
