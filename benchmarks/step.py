"""Benchmark 1: training-step throughput of ``dho train``'s step against the authors' step
(:mod:`benchmarks.authors_step`), same models, batch and device, side by side in one
process, and where the time of ``dho train``'s step goes.

    python -m benchmarks.step                           # CPU: 16+16 images, 224 px, RN50
    python -m benchmarks.step --device cuda --batch 64 --steps 10 --rounds 5
    python -m benchmarks.step --teacher-model RN50 --student resnet18 --json step.json

Models: the student (``--student``, random init) and a zero-shot CLIP teacher with
random weights (``--teacher-model``, an open_clip name; a random text classifier), written
as a teacher file whose image tower is a local weights file, so that ``dho train`` and
``dho teacher cache`` load it through their own code; the authors' step uses the live
run's teacher.  Data: the generated shapes dataset written at ``--source-px`` pixels and
re-encoded as JPEG (quality 90, as most benchmark datasets are), 12 classes.

Figures (medians over ``--rounds`` rounds; each round times the six variants one after
another so that a noisy neighbour slows them alike):

- compute only: the same batches already decoded in memory; ``dho train``'s step is its
  real epoch loop (``_Run._train_epoch``) fed those batches; the authors' step is
  :func:`benchmarks.authors_step.authors_step` on them;
- with the data pipeline: ``dho train``'s own loaders (views keyed by (seed, epoch, pass,
  index), :mod:`dho.data.views`) against the authors' (PIL + torchvision
  RandomResizedCrop, shuffled DataLoader), ``--workers`` loader workers each;
- each of the two for ``dho train`` with the live teacher and with the teacher cache: a
  second run whose spec has ``teacher_cache``, reading a cache file built by
  :func:`dho.teacher_cache.build_cache` (``dho teacher cache``'s code) for every view of
  the timed epochs (1 .. rounds + 1);
- equal results: before any step, the cached run's teacher logits, loss and gradients on
  the first batch against the live run's, from the same student state (the cache stores
  fp16 features: logits agree within 100 * 2^-11);
- where the time goes, per image: decoding (PIL), ``dho train``'s ``open_rgb`` (a copy from
  its per-process cache of decoded images), per-image reseeding (the Philox generator of
  :func:`dho.data.views.crop_params`), crop+resize to the model size
  (:func:`dho.data.views.render_view`) against the authors' transform on a decoded image;
  per step: the teacher (one call on 2B images; the cache look-up; two calls on B), the
  rest of each compute-only step, the data pipeline (with-pipeline minus compute-only),
  and the gradient-conflict diagnostic (a step with it against one without).

``--plan-json`` (default ``results/benchmarks/step_<device>.json``) records the achieved
FLOP/s of the teacher forward and of the student's training step (FLOPs from
``torch.utils.flop_counter``), which ``dho plan`` turns into GPU-hours.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from .common import REPO, machine, machine_line, table, write_json

SOURCE_CLASSES = 12  # the shapes dataset's classes


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_dataset(root: Path, per_class_train: int, source_px: int):
    """The shapes dataset at ``source_px`` pixels, its images re-encoded as JPEG."""
    from PIL import Image

    from dho.demo.data import ShapesParams, generate_shapes

    folder, _ = generate_shapes(root, ShapesParams(train=per_class_train, val=2, test=2, size=source_px),
                                progress=False)
    for path in folder.rglob("*.png"):  # decoded by content: the .png name stays
        with Image.open(path) as im:
            rgb = im.convert("RGB")
        rgb.save(path, format="JPEG", quality=90)
    return folder


def random_teacher_file(model: str, num_classes: int, work: Path) -> Path:
    """A teacher file (zero-shot CLIP, random weights: timing only) whose image tower is a
    local weights file, so that ``dho train`` and ``dho teacher cache`` re-create it
    through their own loaders, as they would a real teacher."""
    import torch

    from dho.models.clip import create_clip
    from dho.models.teachers import ZeroShotTeacher, _adapter_for, save_teacher

    torch.manual_seed(0)
    clip = create_clip(model, None)
    weights = work / f"{model}-random-weights.pt"
    torch.save(clip.state_dict(), weights)
    dim = clip.text_projection.shape[1] if hasattr(clip, "text_projection") else clip.visual.output_dim
    w = torch.nn.functional.normalize(torch.randn(dim, num_classes), dim=0)
    teacher = ZeroShotTeacher(clip.visual, _adapter_for(clip), w, model, str(weights),
                              [f"class {i}" for i in range(num_classes)])
    path = work / "teacher.pt"
    save_teacher(teacher, path)
    return path


def run_spec(args, root: Path, teacher_file: Path, **overrides):
    """The benchmark's run spec (1000 epochs: the lr schedule of a long run)."""
    from dho.spec import RunSpec

    return RunSpec.from_dict(dict(
        dataset="shapes", data_root=str(root), split={"kind": "fewshot", "shots": 1}, student=args.student,
        student_pretrained=False, student_kwargs={"image_size": args.image_size}, method="dho",
        teacher_file=str(teacher_file), epochs=1000, epoch_length="unlabeled", batch_size=args.batch,
        unlabeled_batch_size=args.batch, image_size=args.image_size, num_workers=args.workers,
        device=args.device, progress=False, grad_cosine_every=0, seed=1, student_forward=args.student_forward,
        **overrides))


def build_run(spec, work: Path):
    """``dho train``'s run object, set up up to its first epoch (no MLflow, no files)."""
    from dho.distributed import current
    from dho.runtime import resolve_device
    from dho.train import _Run

    run = _Run(spec, work)
    run.dist = current()  # one process (what execute() sets before the setup)
    run.device = resolve_device(spec.device)
    run._setup_data()
    run._setup_models()
    run._setup_optim()
    run._setup_loaders()
    return run


def build_teacher_cache(spec, teacher_file: Path, epochs: int, out: Path) -> dict:
    """``dho teacher cache``'s own code (:func:`dho.teacher_cache.build_cache`) for every
    view of epochs 1..``epochs`` of ``spec`` (the timed epochs); its figures and seconds."""
    from dho.teacher_cache import build_cache

    t0 = time.perf_counter()
    info = build_cache(teacher_file, [dataclasses.replace(spec, epochs=epochs)], out, device=spec.device)
    return {**info, "seconds": time.perf_counter() - t0}


def authors_models(run, args):
    """A student like the run's (same seed, same init), its AdamW and linear warm-up."""
    import torch

    from dho.models import build_student
    from dho.runtime import lr_factor

    torch.manual_seed(run.spec.seed)
    student = build_student(args.student, run.source.num_classes, heads=2, pretrained=False,
                            image_size=args.image_size).to(run.device)
    opt = torch.optim.AdamW(student.parameters(), lr=run.spec.lr)
    total = 1000 * run.steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, 0.1, 0.0, "linear"))
    return student, opt, sched


def _timed(fn, device) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``fn()``.  On a CPU the CPU time is
    the steadier figure on a shared machine: a neighbour's load stretches the wall time of
    whichever variant it overlaps but not the work this process does (with ``--threads 1``
    and 0 workers, no spinning thread pool or loader process is counted or missed)."""
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - t0, time.process_time() - c0


VARIANTS = ("ours_compute", "cached_compute", "authors_compute", "ours_pipeline", "cached_pipeline",
            "authors_pipeline")


class Variants:
    """The six timed variants; each call runs one epoch of ``steps`` steps.  ``ours_*``:
    ``dho train``'s step with the live teacher; ``cached_*``: the same step of a run whose
    spec has ``teacher_cache`` (teacher outputs read from the cache file)."""

    def __init__(self, run, cached, args):
        from .authors_step import authors_loader

        self.run, self.cached, self.args = run, cached, args
        self.device = run.device
        self.epoch = {id(run): 1, id(cached): 1}
        # per step, the micro-batches [(labeled, unlabeled)] of dho train's loop, decoded once
        self.batches = list(run._epoch_steps(1))
        self.step_images = list(run.step_images)  # what _epoch_steps records for the loop
        self.pairs = [pair for micro in self.batches for pair in micro]
        self.student_a, self.opt_a, self.sched_a = authors_models(run, args)
        src = run.source
        labeled = [(src.path(rel), int(y)) for rel, y in run.manifest.labeled]
        unlabeled = [(src.path(rel), -1) for rel in run.manifest.unlabeled]
        self.loaders = [authors_loader(items, args.image_size, args.batch, args.workers, seed=1)
                        for items in (labeled, unlabeled)]

    def _compute(self, run) -> None:
        real = run._epoch_steps
        run._epoch_steps = lambda epoch: iter(self.batches)
        run.step_images = self.step_images
        try:
            run._train_epoch(1)
        finally:
            run._epoch_steps = real

    def _pipeline(self, run) -> None:
        self.epoch[id(run)] += 1  # fresh views, the same cost
        run._train_epoch(self.epoch[id(run)])

    def ours_compute(self) -> None:
        self._compute(self.run)

    def cached_compute(self) -> None:
        self._compute(self.cached)

    def ours_pipeline(self) -> None:
        self._pipeline(self.run)

    def cached_pipeline(self) -> None:
        self._pipeline(self.cached)

    def _authors(self, pairs) -> None:
        from .authors_step import authors_step

        dev = self.device
        for b_l, b_u in pairs:
            authors_step(self.student_a, self.run.teacher, self.opt_a, self.sched_a, b_l[0].to(dev),
                         b_l[1].to(dev), b_u[0].to(dev))

    def authors_compute(self) -> None:
        self._authors(self.pairs)

    def authors_pipeline(self) -> None:
        steps = len(self.batches)
        labeled, unlabeled = self.loaders
        pairs = zip(_cycle(labeled), unlabeled)
        self._authors(p for _, p in zip(range(steps), pairs))


def equal_results(run, cached, pair) -> dict[str, float]:
    """The cached step against the live one on the same batch from the same student state
    (call before any step): teacher logits, the loss and the gradients of one micro-step."""
    import torch

    b_l, b_u = pair
    dev = run.device
    x = torch.cat([b_l[0], b_u[0]]).to(dev)
    keys = torch.cat([b_l[3], b_u[3]])
    live, hit = run._teacher_outputs(x, keys)["logits"], cached._teacher_outputs(x, keys)["logits"]
    same_init = all(torch.equal(a, b) for a, b in zip(run.student.state_dict().values(),
                                                       cached.student.state_dict().values()))
    losses = [r._micro_step(b_l, b_u, 1, [], measure=False) for r in (run, cached)]
    grads = [[p.grad for p in r.student.parameters() if p.grad is not None] for r in (run, cached)]
    grad_diff = max(float((g - h).abs().max()) for g, h in zip(*grads))
    grad_max = max(float(g.abs().max()) for g in grads[0])
    for r in (run, cached):
        r.optimizer.zero_grad(set_to_none=True)
    return {"same_student_init": float(same_init), "max_abs_logit_diff": float((live - hit).abs().max()),
            "fp16_logit_bound": 100 * 2.0 ** -11,  # |f| = |w| = 1: 100 * unit roundoff of fp16
            "top1_agreement": float((live.argmax(1) == hit.argmax(1)).float().mean()),
            "loss_live": losses[0], "loss_cached": losses[1], "loss_rel_diff": abs(losses[0] - losses[1]) / abs(losses[0]),
            "grad_rel_diff": grad_diff / grad_max}


def _cycle(loader):
    while True:
        yield from loader


def _decode(path):
    """A real decode (PIL), bypassing ``open_rgb``'s per-process cache of decoded images."""
    from PIL import Image

    with Image.open(path) as im:
        return im.convert("RGB")


def per_image_costs(run, n: int) -> dict[str, float]:
    """Milliseconds per image of the pipeline's parts, on the run's unlabeled images:
    decoding the JPEG, ``open_rgb`` (``dho train``'s read: a copy from its per-process
    cache of decoded images once it has seen the file), reseeding, crop+resize, and the
    authors' transform."""
    from torchvision import transforms as T

    from dho.data.source import open_rgb
    from dho.data.views import crop_params, render_view

    paths = [run.source.path(rel) for rel in run.manifest.unlabeled[:n]]
    size, scale = run.spec.image_size, run.spec.crop_scale_min
    tf = T.Compose([T.RandomResizedCrop(size, scale=(0.5, 1.0)), T.RandomHorizontalFlip(), T.ToTensor()])
    first = _decode(paths[0])  # warm-up: lazy imports and first-call costs are not per image
    render_view(first, crop_params(run.spec.seed, 0, first.width, first.height, scale), size), tf(first)
    t0 = time.perf_counter()
    images = [_decode(p) for p in paths]
    t1 = time.perf_counter()
    params = [crop_params(run.spec.seed, k, im.width, im.height, scale) for k, im in enumerate(images)]
    t2 = time.perf_counter()
    for im, p in zip(images, params):
        render_view(im, p, size)
    t3 = time.perf_counter()
    for im in images:
        tf(im)
    t4 = time.perf_counter()
    for p in paths:
        open_rgb(p)
    t5 = time.perf_counter()
    k = 1000 / len(paths)
    return {"decode_ms": (t1 - t0) * k, "open_rgb_ms": (t5 - t4) * k, "reseed_ms": (t2 - t1) * k,
            "crop_resize_ms": (t3 - t2) * k, "authors_transform_ms": (t4 - t3) * k}


def per_step_costs(v: Variants, medians: dict[str, float]) -> dict[str, float]:
    """Milliseconds per step: the teacher (ours: one call on 2B images, or two on B with
    ``student_forward: split``; with the cache: the look-up and the text head; theirs: two
    calls on B), the rest of each step (student,
    loss, optimizer), the data pipeline (with-pipeline minus compute-only medians), and the
    gradient-conflict diagnostic (a step with it against one without)."""
    import torch

    from .authors_step import _normalize, _teacher

    run, dev = v.run, v.device
    (b_l, b_u) = v.pairs[0]
    x_l, x_u = b_l[0].to(dev), b_u[0].to(dev)
    x, keys = torch.cat([x_l, x_u]), torch.cat([b_l[3], b_u[3]])
    t = run.teacher
    wall = lambda fn: _timed(fn, dev)[0]  # noqa: E731
    ours = wall(lambda: run._teacher_parts(x, keys, len(x_l)))
    cached = wall(lambda: v.cached._teacher_outputs(x, keys))
    theirs = wall(lambda: (_teacher(t, _normalize(x_l, t.adapter)), _teacher(t, _normalize(x_u, t.adapter))))
    without = wall(v.ours_compute)
    run.spec.grad_cosine_every = 1
    try:
        with_diag = wall(v.ours_compute)
    finally:
        run.spec.grad_cosine_every = 0
    steps = len(v.batches)
    ms = {n: medians[n] * 1000 for n in VARIANTS}
    return {"teacher_ours_ms": ours * 1000, "teacher_cached_ms": cached * 1000, "teacher_authors_ms": theirs * 1000,
            "rest_ours_ms": ms["ours_compute"] - ours * 1000, "rest_cached_ms": ms["cached_compute"] - cached * 1000,
            "rest_authors_ms": ms["authors_compute"] - theirs * 1000,
            "pipeline_ours_ms": ms["ours_pipeline"] - ms["ours_compute"],
            "pipeline_cached_ms": ms["cached_pipeline"] - ms["cached_compute"],
            "pipeline_authors_ms": ms["authors_pipeline"] - ms["authors_compute"],
            "diagnostic_ms": (with_diag - without) / steps * 1000}


def flops(run, args) -> dict[str, float]:
    """FLOPs per image: teacher forward, student forward + backward (torch.utils.flop_counter)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(2, 3, args.image_size, args.image_size, device=run.device)
    with FlopCounterMode(display=False) as fc:
        run.teacher(x)
    teacher = fc.get_total_flops() / 2
    with FlopCounterMode(display=False) as fc:
        out = run.student(x)
        (out.ce.sum() + out.kd.sum()).backward()
    run.optimizer.zero_grad(set_to_none=True)
    return {"teacher_flops_per_image": teacher, "student_train_flops_per_image": fc.get_total_flops() / 2}


def plan_record(args, medians: dict, costs: dict, fl: dict, device_name: str) -> dict:
    """What ``dho plan`` needs: achieved FLOP/s of the teacher forward and the student step."""
    images = 2 * args.batch
    teacher_s = costs["teacher_ours_ms"] / 1000
    student_s = medians["ours_compute"] - teacher_s
    return {"device": device_name, "student": args.student, "teacher_model": args.teacher_model,
            "image_size": args.image_size, "batch": args.batch,
            "teacher_flops_per_s": fl["teacher_flops_per_image"] * images / teacher_s,
            "student_train_flops_per_s": fl["student_train_flops_per_image"] * images / max(student_s, 1e-9),
            "step_s_ours": medians["ours_compute"], "step_s_cached": medians["cached_compute"],
            "step_s_authors": medians["authors_compute"]}


def result_rows(args, times: dict[str, list[float]], cpu: dict[str, list[float]]) -> list[dict]:
    """Throughput (images per second, medians) and ratio (authors' seconds per step / ours)
    per teacher (live, cache) and per setting (compute only, with the data pipeline):
    ``ratio`` of the medians, ``ratio_rounds``, the median of each round's ratio (the
    two steps of a round ran minutes apart at most: steadier when the load changes), and
    ``ratio_cpu``, the median of each round's ratio of CPU seconds (see :func:`_timed`)."""
    images = 2 * args.batch
    med = {n: statistics.median(ts) for n, ts in times.items()}
    per_round = lambda t, a, o: statistics.median(x / y for x, y in zip(t[a], t[o]))  # noqa: E731
    settings = (("compute", "compute only (tensors in memory)"),
                ("pipeline", f"with the data pipeline ({args.workers} workers)"))
    return [{"teacher": teacher, "what": what, "ours_img_s": images / med[f"{ours}_{kind}"],
             "authors_img_s": images / med[f"authors_{kind}"], "ratio": med[f"authors_{kind}"] / med[f"{ours}_{kind}"],
             "ratio_rounds": per_round(times, f"authors_{kind}", f"{ours}_{kind}"),
             "ratio_cpu": per_round(cpu, f"authors_{kind}", f"{ours}_{kind}")}
            for teacher, ours in (("live", "ours"), ("cache", "cached")) for kind, what in settings]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default cpu)")
    ap.add_argument("--batch", type=int, default=16, help="labeled images per step = unlabeled images per step")
    ap.add_argument("--steps", type=int, default=3, help="steps per timed epoch")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the six variants; medians reported")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--source-px", type=int, default=320, help="side of the generated source images")
    ap.add_argument("--student", default="resnet18")
    ap.add_argument("--teacher-model", default="RN50", help="open_clip model of the random-weight teacher")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers of both pipelines")
    ap.add_argument("--student-forward", choices=("split", "joint"), default="split",
                    help="dho train's student_forward (default split: the authors' few-shot step, "
                         "which benchmark 1 re-implements, runs the student once per part)")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch's intra-op threads (default torch's own); 1 makes ratio_cpu the steadiest figure")
    ap.add_argument("--json", default=None, help="also write all figures here")
    ap.add_argument("--plan-json", default=None,
                    help="achieved FLOP/s for `dho plan` (default results/benchmarks/step_<device>.json)")
    args = ap.parse_args(argv)
    import torch

    from dho.runtime import resolve_device

    torch.manual_seed(0)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(machine_line(args.device))
    with tempfile.TemporaryDirectory(prefix="bench-step-") as tmp:
        work = Path(tmp)
        per_class = 1 + -(-args.batch * args.steps // SOURCE_CLASSES)  # 1 shot + the unlabeled images
        _say("writing the dataset")
        make_dataset(work / "data", per_class, args.source_px)
        _say("building the models")
        teacher_file = random_teacher_file(args.teacher_model, SOURCE_CLASSES, work)
        spec = run_spec(args, work / "data", teacher_file)
        run = build_run(spec, work / "run")
        _say("building the teacher cache (dho teacher cache's code) for the timed epochs")
        cache = build_teacher_cache(spec, teacher_file, args.rounds + 1, work / "teacher_cache.pt")
        cached = build_run(run_spec(args, work / "data", teacher_file, teacher_cache=str(work / "teacher_cache.pt")),
                           work / "run-cached")
        v = Variants(run, cached, args)
        same = equal_results(run, cached, v.pairs[0])
        _say("timing")
        v.ours_compute(), v.cached_compute(), v.authors_compute()  # warm-up (allocator, lazy inits)
        times, cpu = {n: [] for n in VARIANTS}, {n: [] for n in VARIANTS}
        for r in range(args.rounds):
            for n in VARIANTS:
                wall, used = _timed(getattr(v, n), device)
                times[n].append(wall / len(v.batches))
                cpu[n].append(used / len(v.batches))
            _say(f"round {r + 1}: " + ", ".join(f"{n} {times[n][-1]:.3g} s/step ({cpu[n][-1]:.3g} CPU s)"
                                                 for n in VARIANTS))
        medians = {n: statistics.median(ts) for n, ts in times.items()}
        _say("breaking down")
        costs = {**per_image_costs(run, min(32, len(run.manifest.unlabeled))), **per_step_costs(v, medians)}
        fl = flops(run, args)
    rows = result_rows(args, times, cpu)
    print(f"{args.student} student, random {args.teacher_model} teacher, {args.batch}+{args.batch} images at "
          f"{args.image_size} px, {len(v.batches)} steps x {args.rounds} rounds on {device}, "
          f"{torch.get_num_threads()} torch threads")
    columns = ["teacher", "what", "ours_img_s", "authors_img_s", "ratio", "ratio_rounds"]
    print(table(rows, columns + (["ratio_cpu"] if device.type == "cpu" else [])))
    print(f"teacher cache: {cache['views']} training views + {cache['test_images']} test images, "
          f"{cache['bytes'] / 2**20:.2f} MiB, built in {cache['seconds']:.1f} s")
    print("equal results (cached step against the live step, first batch, same student state):")
    print(table([same], list(same)))
    print("where the time goes (ms; per image, then per step):")
    print(table([{"part": k, "ms": c} for k, c in costs.items()], ["part", "ms"]))
    print(table([fl], list(fl)))
    print(f"1-min load average at the end: {os.getloadavg()[0]:.2f}")
    device_name = machine(args.device).get("gpu", "cpu")
    record = plan_record(args, medians, costs, fl, device_name)
    plan_json = args.plan_json or str(REPO / "results" / "benchmarks" / f"step_{device.type}.json")
    write_json(plan_json, record)
    write_json(args.json, {"benchmark": "step", "machine": machine(args.device), "args": vars(args), "rows": rows,
                           "steps_per_epoch": len(v.batches), "times_s_per_step": times,
                           "cpu_s_per_step": cpu, "torch_threads": torch.get_num_threads(), "costs_ms": costs, "flops": fl, "plan": record,
                           "teacher_cache": cache, "equal_results": same, "load_avg_1min_end": os.getloadavg()[0]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
