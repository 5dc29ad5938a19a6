# Teachers: the demo's tiny CLIP, zero-shot CLIP (per dataset) and Tip-Adapter-F (per
# dataset x labels x split seed: the zero-shot teacher `base` + a cache of the labeled
# shots, fine-tuned).


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
    log:
        R + "/{suite}/logs/demo_teacher.log",
    shell:
        "{PY} demo teacher --out {output} {params.args} > {log} 2>&1"


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
    log:
        R + "/{suite}/logs/teacher_{dataset}_{teacher}.log",
    shell:
        "{PY} teacher zeroshot --dataset {wildcards.dataset} --root {params.root} {params.flags}"
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
    log:
        R + "/{suite}/logs/teacher_{dataset}_{labels}_{seed}_{teacher}.log",
    shell:
        "{PY} teacher tip-adapter-f --dataset {wildcards.dataset} --root {params.root}"
        " --base {input.base} --split-manifest {input.split} --seed {wildcards.seed} {params.flags}"
        " --out {output} > {log} 2>&1"
