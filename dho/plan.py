"""``dho plan``: what a suite costs before it is launched.

    python -m dho plan --suite fewshot
    python -m dho plan --config suite=imagenet_semi --step-json results/benchmarks/step_cuda.json
    python -m dho plan --config 'suite=[fewshot,imagenet_semi,ablations]' --json plan.json

Per suite: the runs, the teacher and student FLOPs, and GPU-hours without and with the
teacher-output cache, (a) from FLOP counts at an assumed sustained rate (``--tflops``)
and (b) from the rates that ``python -m benchmarks.step`` measured on the device at hand
(``--step-json``, written by the benchmark; absent: not shown).

The cost model (each assumption stated, so that the figures can be checked):

- FLOPs per image are forward FLOPs (multiply-add = 2) at the model's own input size,
  counted once with ``torch.utils.flop_counter`` on the real architectures (random
  weights on the meta device; :data:`GFLOPS`); a model not in the table is counted the
  same way when the plan is made.  A training step costs 3x the forward (forward and
  backward) for the student, 1x for the frozen teacher.
- Steps per epoch: ``ceil(labeled / batch_size)`` (``epoch_length: labeled``) or
  ``ceil(unlabeled / unlabeled_batch_size)``; every batch is counted full.  Methods with
  a teacher see ``batch_size + unlabeled_batch_size`` images per step, the teacher the
  same images; methods without one see ``batch_size``.
- Evaluation: the student's forward over the val split every epoch and the test split
  once; the teacher's forward over the test split once.
- Dataset sizes: the dataset on disk when it is there, else the paper's Table 12 (the
  CoOp splits; ImageNet 1.28 M train, 50 000 val used as test), else the demo's
  ``--per-class`` arguments.  Labeled images: shots x classes, or percent x train.
- With the cache, one group = (dataset, teacher image tower, augmentation seed, crop
  scale) pays the teacher once per distinct view: per epoch, the labeled views of every
  label level plus the unlabeled views of the level that draws most (levels share the
  unlabeled order, :mod:`dho.data.views`); an upper bound, since the labeled views of
  one level partly recur among another's unlabeled views.  Runs without a teacher are
  not affected.  Tip-Adapter-F fitting and data loading are not counted.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_TFLOPS = 100.0

# forward GFLOPs per image (2 x multiply-adds) at the input size, counted with
# torch.utils.flop_counter on the architectures (meta device); `dho plan --recount` redoes it
GFLOPS: dict[tuple[str, int], float] = {
    ("teacher:RN50-quickgelu", 224): 12.223,
    ("teacher:ViT-H-14-378-quickgelu", 378): 1006.963,
    ("student:resnet18", 224): 3.628,
    ("student:mobilenet_v2", 224): 0.602,
    ("student:dino_resnet50", 224): 8.178,
    ("student:clip_vit_b16", 224): 35.127,
    ("student:clip_vit_l14_336", 336): 381.920,
}
# open_clip image towers of the CLIP students (their input size is the tower's own)
CLIP_STUDENTS = {"clip_vit_b16": "ViT-B-16", "clip_vit_l14_336": "ViT-L-14-336", "clip_tiny": "dho-tiny-clip"}


def count_gflops(kind: str, name: str, size: int, student_kwargs: dict | None = None) -> float:
    """Forward GFLOPs per image of a teacher tower (open_clip ``name``) or a student, on
    the meta device (no weights, no memory)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        if kind == "teacher" or name in CLIP_STUDENTS:
            from .models.clip import create_clip

            model = create_clip(CLIP_STUDENTS.get(name, name), None, device="meta").visual
        else:
            from .models import build_student

            kwargs = {k: v for k, v in (student_kwargs or {}).items() if k not in ("weights",)}
            model = build_student(name, 10, heads=1, pretrained=False, **kwargs)
        x = torch.empty(2, 3, size, size)
        with FlopCounterMode(display=False) as fc:
            model.eval()(x)
    return fc.get_total_flops() / 2e9


def gflops(kind: str, name: str, size: int, student_kwargs: dict | None = None) -> float:
    key = (f"{kind}:{name}", int(size))
    if key not in GFLOPS:
        GFLOPS[key] = count_gflops(kind, name, size, student_kwargs)
    return GFLOPS[key]


def tower_size(model: str) -> int:
    """The input size of an open_clip image tower (from its config; no weights)."""
    from .models.clip import open_clip

    cfg = open_clip().get_model_config(model)
    if cfg is None:
        raise ConfigError(f"unknown open_clip model '{model}'")
    size = cfg["vision_cfg"].get("image_size", 224)
    return int(size[0] if isinstance(size, (list, tuple)) else size)


# --------------------------------------------------------------------------------------
# dataset sizes
@dataclass
class Sizes:
    train: int
    val: int
    test: int
    classes: int
    source: str


def _table12() -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    with open(REPO / "dho" / "results" / "reported.csv", newline="") as f:
        for row in csv.DictReader(line for line in f if not line.startswith("#")):
            if row.get("table") == "Tab12" and row.get("metric", "").startswith("n_"):
                out.setdefault(row["dataset"], {})[row["metric"]] = float(row["value"])
    return out


def dataset_sizes(suite, dataset: str) -> Sizes | None:
    from . import data

    try:
        source = data.get_dataset(dataset, suite.data_root)
        counts = [len(source.items(s)) for s in ("train", "val", "test")]
        if counts[0]:
            return Sizes(*counts, source.num_classes, "on disk")
    except Exception:  # noqa: BLE001 - absent or incomplete data: fall back to the tables
        pass
    t = _table12().get(dataset)
    if t and ("n_train" in t or "n_train_millions" in t):
        train = int(t.get("n_train", t.get("n_train_millions", 0) * 1e6))
        test = int(t.get("n_test", 0))
        return Sizes(train, int(t.get("n_val", test)), test, int(t["n_classes"]), "Table 12")
    demo = suite.cfg.get("demo", {}).get("data_args", [])
    if "--per-class" in demo:
        i = demo.index("--per-class")
        tr, va, te = (int(v) for v in demo[i + 1:i + 4])
        return Sizes(12 * tr, 12 * va, 12 * te, 12, "demo --per-class")
    return None


# --------------------------------------------------------------------------------------
# the cost of one run, one suite
@dataclass
class RunCost:
    cell: Any
    teacher_images: float = 0.0       # uncached teacher forwards
    student_flops: float = 0.0
    teacher_flops: float = 0.0
    teacher_gflops: float = 0.0       # per image
    group: tuple | None = None        # cache group
    labeled_views: float = 0.0        # per run, over all epochs (teacher, for the cache)
    unlabeled_views: float = 0.0
    label_level: str = ""


@dataclass
class SuitePlan:
    name: str
    runs: list[RunCost] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def totals(self) -> dict[str, float]:
        student = sum(r.student_flops for r in self.runs)
        teacher = sum(r.teacher_flops for r in self.runs)
        groups: dict[tuple, dict[str, Any]] = {}
        for r in self.runs:
            if r.group is None:
                continue
            g = groups.setdefault(r.group, {"gflops": r.teacher_gflops, "labeled": {}, "unlabeled": 0.0,
                                            "test": 0.0})
            g["labeled"][r.label_level] = max(g["labeled"].get(r.label_level, 0.0), r.labeled_views)
            g["unlabeled"] = max(g["unlabeled"], r.unlabeled_views)
        cached_images = sum(sum(g["labeled"].values()) + g["unlabeled"] for g in groups.values())
        cached = sum((sum(g["labeled"].values()) + g["unlabeled"]) * g["gflops"] * 1e9 for g in groups.values())
        return {"runs": len(self.runs), "student_pflops": student / 1e15, "teacher_pflops": teacher / 1e15,
                "teacher_pflops_cached": cached / 1e15,
                "teacher_forwards": sum(r.teacher_images for r in self.runs),
                "teacher_forwards_cached": cached_images}


def run_cost(suite, cell, sizes: Sizes) -> RunCost:
    from .spec import RunSpec

    spec = RunSpec.from_dict(suite.run_spec(cell))
    split = suite.labels[cell.labels]
    d = split.to_dict()
    labeled = (d["shots"] * sizes.classes if d["kind"] == "fewshot"
               else math.ceil(d.get("percent", 0) / 100 * sizes.train))
    labeled = min(labeled, sizes.train)
    unlabeled = sizes.train - labeled
    steps = (math.ceil(labeled / spec.batch_size) if spec.epoch_length == "labeled"
             else math.ceil(unlabeled / spec.unlabeled_batch_size))
    teacher = suite.methods[cell.method].needs_teacher
    per_step = spec.batch_size + (spec.unlabeled_batch_size if teacher else 0)
    s_size = int(spec.student_kwargs.get("image_size", spec.image_size))
    if spec.student in CLIP_STUDENTS:
        s_size = tower_size(CLIP_STUDENTS[spec.student])
    s_gf = gflops("student", spec.student, s_size, spec.student_kwargs)
    train_images = spec.epochs * steps * per_step
    cost = RunCost(cell, label_level=cell.labels)
    cost.student_flops = (3 * train_images + spec.epochs * sizes.val + sizes.test) * s_gf * 1e9
    if teacher and cell.teacher in suite.cfg.get("teachers", {}):
        model = _teacher_model(suite, cell.teacher)
        cost.teacher_gflops = gflops("teacher", model, tower_size(model))
        cost.teacher_images = train_images + sizes.test
        cost.teacher_flops = cost.teacher_images * cost.teacher_gflops * 1e9
        cost.group = (cell.dataset, model, spec.seed, spec.crop_scale_min)
        cost.labeled_views = spec.epochs * steps * spec.batch_size
        cost.unlabeled_views = spec.epochs * steps * spec.unlabeled_batch_size + sizes.test
    return cost


def _teacher_model(suite, name: str) -> str:
    """The open_clip image tower of a teacher (following ``base`` for Tip-Adapter-F)."""
    teachers = suite.cfg["teachers"]
    t = teachers[name]
    seen = {name}
    while "model" not in t and t.get("base") in teachers and t["base"] not in seen:
        seen.add(t["base"])
        t = teachers[t["base"]]
    if "model" not in t:
        raise ConfigError(f"config key 'suites.{suite.name}.teachers.{name}': no image tower (model) found")
    return t["model"]


def plan_suite(suite) -> SuitePlan:
    plan = SuitePlan(suite.name)
    sizes: dict[str, Sizes | None] = {}
    for cell in suite.grid:
        if cell.dataset not in sizes:
            sizes[cell.dataset] = dataset_sizes(suite, cell.dataset)
        if sizes[cell.dataset] is None:
            if cell.dataset not in plan.skipped:
                plan.skipped.append(cell.dataset)
            continue
        plan.runs.append(run_cost(suite, cell, sizes[cell.dataset]))
    return plan


def gpu_hours(t: dict[str, float], tflops: float, measured: dict | None) -> dict[str, float | None]:
    flops_student, flops_t, flops_tc = (t[k] * 1e15 for k in ("student_pflops", "teacher_pflops",
                                                               "teacher_pflops_cached"))
    out: dict[str, float | None] = {
        "gpu_h_flops": (flops_student + flops_t) / (tflops * 1e12) / 3600,
        "gpu_h_flops_cached": (flops_student + flops_tc) / (tflops * 1e12) / 3600}
    if measured:
        rs, rt = measured["student_train_flops_per_s"], measured["teacher_flops_per_s"]
        out["gpu_h_measured"] = (flops_student / rs + flops_t / rt) / 3600
        out["gpu_h_measured_cached"] = (flops_student / rs + flops_tc / rt) / 3600
    return out


def load_workflow(configfile: str | Path, suites: list[str]):
    from .suite import Workflow

    config = yaml.safe_load(Path(configfile).read_text())
    config["suite"] = suites if len(suites) > 1 else suites[0]
    return Workflow(config, SCHEMA)


def _suite_arg(args) -> list[str]:
    if args.suite:
        return list(args.suite)
    for item in args.config or []:
        key, _, value = item.partition("=")
        if key == "suite":
            value = value.strip()
            return [v.strip() for v in value.strip("[]").split(",")] if value.startswith("[") else [value]
    raise ConfigError("dho plan: name the suites with --suite NAME or --config suite=NAME")


def _cmd_plan(args) -> int:
    wf = load_workflow(args.configfile, _suite_arg(args))
    measured = json.loads(Path(args.step_json).read_text()) if args.step_json and Path(args.step_json).is_file() else None
    rows = []
    for suite in wf.compiled():
        if suite.evaluates:
            continue
        plan = plan_suite(suite)
        row = {"suite": suite.name, **plan.totals()}
        row.update(gpu_hours(row, args.tflops, measured))
        if plan.skipped:
            row["skipped_datasets"] = ",".join(plan.skipped)
        rows.append(row)
    if len(rows) > 1:
        total = {"suite": "all"}
        for k in rows[0]:
            if k != "suite" and all(isinstance(r.get(k), (int, float)) for r in rows):
                total[k] = sum(r[k] for r in rows)
        rows.append(total)
    _print(rows, args.tflops, measured)
    if args.json:
        from .io import atomic_write_json

        atomic_write_json(args.json, {"tflops": args.tflops, "measured": measured, "rows": rows})
    return 0


def _print(rows: list[dict], tflops: float, measured: dict | None) -> None:
    cols = [("suite", "suite"), ("runs", "runs"), ("student_pflops", "student PFLOPs"),
            ("teacher_forwards", "teacher forwards (M)"), ("teacher_forwards_cached", "cached (M)"),
            ("teacher_pflops", "teacher PFLOPs"), ("teacher_pflops_cached", "cached"),
            ("gpu_h_flops", f"GPU-h @{tflops:g} TFLOP/s"), ("gpu_h_flops_cached", "cached")]
    if measured:
        cols += [("gpu_h_measured", f"GPU-h measured ({measured.get('device', '?')})"),
                 ("gpu_h_measured_cached", "cached")]
    def fmt(key: str, v: Any) -> str:
        if key.startswith("teacher_forwards") and isinstance(v, (int, float)):
            return f"{v / 1e6:,.2f}"
        return f"{v:,.1f}" if isinstance(v, float) else str(v)

    print("| " + " | ".join(c for _, c in cols) + " |")
    print("|" + "|".join("---" if k == "suite" else "---:" for k, _ in cols) + "|")
    for r in rows:
        print("| " + " | ".join(fmt(k, r.get(k, "")) for k, _ in cols) + " |")
    for r in rows:
        if r.get("skipped_datasets"):
            print(f"{r['suite']}: no sizes for {r['skipped_datasets']} (not on disk, not in Table 12): left out")


def _cmd_recount(args) -> int:
    for (key, size) in list(GFLOPS):
        kind, name = key.split(":", 1)
        print(f"{key} @ {size} px: table {GFLOPS[(key, size)]:.3f}, counted {count_gflops(kind, name, size):.3f} GFLOPs")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("plan", help="what a suite costs: runs, FLOPs, GPU-hours with and without the teacher cache",
                       description="Per suite of config.yaml: the runs, the teacher and student FLOPs, and the "
                                   "GPU-hours without and with the teacher-output cache, from FLOP counts at an "
                                   "assumed rate (--tflops) and, given --step-json, at the rates `python -m "
                                   "benchmarks.step` measured. The cost model and its assumptions: README, "
                                   "'Performance'.")
    p.add_argument("--suite", action="append", metavar="NAME", help="a suite (or group) of config.yaml; repeat")
    p.add_argument("--config", action="append", metavar="suite=NAME", help="as Snakemake's: suite=NAME or suite=[a,b]")
    p.add_argument("--configfile", default=str(REPO / "config.yaml"))
    p.add_argument("--tflops", type=float, default=DEFAULT_TFLOPS,
                   help=f"assumed sustained TFLOP/s per GPU for the FLOP-based hours (default {DEFAULT_TFLOPS:g})")
    p.add_argument("--step-json", default=str(REPO / "results" / "benchmarks" / "step_cuda.json"),
                   help="rates measured by `python -m benchmarks.step` (default results/benchmarks/step_cuda.json)")
    p.add_argument("--json", default=None, help="also write the table here")
    p.add_argument("--recount", action="store_true", help="recount the FLOPs table with torch.utils.flop_counter")
    p.set_defaults(func=lambda a: _cmd_recount(a) if a.recount else _cmd_plan(a))
