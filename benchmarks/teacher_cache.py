"""Benchmark 2: teacher forwards and teacher FLOPs of whole suites, with and without the
teacher-output cache (``dho teacher cache``, suite key ``teacher_cache``).

    python -m benchmarks.teacher_cache                       # fewshot, imagenet_semi, demo
    python -m benchmarks.teacher_cache --suites fewshot --json out.json

Counted, not timed: every run of the suite (its compiled specs) is replayed through the
view schedule that ``dho train`` uses (:class:`dho.data.views.Schedule`).

* uncached: each run calls its teacher on every labeled + unlabeled image of every step,
  and once more on the test split (``teacher_test_acc``);
* cached: one cache per (dataset, image tower, seed) computes the tower once per distinct
  view key any of its runs uses (the union), plus the test split once; runs then only
  apply the teacher's head to cached features (``2 * D * C`` FLOPs per view and run,
  Tip-Adapter-F's cache model not counted).

A dataset present under the suite's ``data_root`` is replayed with its real files and
splits; an absent one with the CoOp split sizes below and a class-balanced random draw
of the same number of labeled images (the same counts; which images overlap between
label levels is random in both).  Tower FLOPs per image come from
``torch.utils.flop_counter`` on the open_clip model built on the meta device (no weights
needed); one multiply-add counts as 2 FLOPs.
"""

from __future__ import annotations

import argparse
import functools
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .common import REPO, machine_line, table, write_json

# CoOp splits (Zhou et al.): classes, train, test images (ImageNet: the full train set,
# its val as test).
COOP_SIZES = {
    "imagenet": (1000, 1281167, 50000), "caltech101": (100, 4128, 2465), "oxford_pets": (37, 2944, 3669),
    "stanford_cars": (196, 6509, 8041), "flowers102": (102, 4093, 2463), "food101": (101, 50500, 30300),
    "fgvc_aircraft": (100, 3334, 3333), "sun397": (397, 15880, 19850), "dtd": (47, 2820, 1692),
    "eurosat": (10, 13500, 8100), "ucf101": (101, 7639, 3783),
}


@functools.cache
def tower_flops(model: str, image_size: int | None = None) -> tuple[float, int, int]:
    """(FLOPs per image, embedding dim D, input size) of an open_clip image tower."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from dho.models.clip import open_clip

    with torch.device("meta"):
        m = open_clip().create_model(model, pretrained=None, device="meta")
    size = image_size or int(m.visual.image_size[0] if isinstance(m.visual.image_size, (tuple, list))
                             else m.visual.image_size)
    x = torch.zeros(1, 3, size, size, device="meta")
    with FlopCounterMode(display=False) as fc:
        m.visual(x)
    return float(fc.get_total_flops()), int(m.visual.output_dim), size


def _split(spec, n_train: int, classes: int, source) -> tuple[np.ndarray, np.ndarray]:
    from dho.data import views

    if source is not None:  # the real dataset and split
        from dho.data.splits import make_split

        m = make_split(source, spec.split, spec.split_seed)
        return views.train_indices(source.items("train"), m.labeled, m.unlabeled)
    rng = np.random.default_rng(spec.split_seed)
    labels = np.arange(n_train) % classes
    kind = spec.split["kind"]
    picked = []
    for c in range(classes):
        members = np.flatnonzero(labels == c)
        k = spec.split["shots"] if kind == "fewshot" else max(1, math.floor(spec.split["percent"] / 100 * len(members) + 0.5))
        picked.append(rng.choice(members, size=min(k, len(members)), replace=False))
    lab = np.sort(np.concatenate(picked))
    return lab, np.setdiff1d(np.arange(n_train), lab)


def _dataset(spec):
    from dho.data import get_dataset

    try:
        source = get_dataset(spec.dataset, spec.data_root)
        train, test = source.items("train"), source.items("test")
        return source, len(train), source.num_classes, len(test)
    except Exception:  # noqa: BLE001 - absent: the CoOp sizes
        if spec.dataset not in COOP_SIZES:
            raise SystemExit(f"error: dataset {spec.dataset} is not under {spec.data_root} and has no CoOp size here")
        classes, n_train, n_test = COOP_SIZES[spec.dataset]
        return None, n_train, classes, n_test


def count_suite(name: str) -> dict[str, Any]:
    """Teacher forwards / FLOPs of suite ``name`` without and with the cache."""
    import yaml

    from dho.data.views import Schedule
    from dho.spec import RunSpec
    from dho.suite.compiler import compile_workflow

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    suite = compile_workflow({**config, "suite": name}, REPO / "workflow/schemas/config.schema.yaml",
                             write_specs=False).suite(name)
    groups: dict[tuple, list] = {}
    for cell in suite.grid:
        if cell.teacher != "none":
            groups.setdefault((cell.dataset, suite.tower(cell.teacher), cell.seed), []).append(cell)
    runs = fw_plain = fw_cached = fl_plain = fl_cached = 0.0
    for (dataset, tower, seed), cells in groups.items():
        specs = [RunSpec.from_dict(suite.run_spec(c)) for c in cells]
        source, n_train, classes, n_test = _dataset(specs[0])
        model = suite.cfg["teachers"][tower].get("model", "")
        flops, dim, _ = tower_flops(model) if model != "dho-tiny-clip" else tower_flops(model, specs[0].image_size)
        streams: dict[tuple, Any] = {}
        for s in specs:  # runs with the same stream (students, methods, teachers) share its keys
            key = (str(s.split), s.split_seed, s.seed, s.batch_size, s.unlabeled_batch_size, s.epoch_length, s.epochs)
            streams.setdefault(key, [s, 0])[1] += 1
        scheds = []
        for s, count in streams.values():
            lab, unl = _split(s, n_train, classes, source)
            scheds.append((Schedule(seed=s.seed, n_train=n_train, labeled=lab, unlabeled=unl,
                                    batch_size=s.batch_size, unlabeled_batch_size=s.unlabeled_batch_size,
                                    epoch_length=s.epoch_length, use_unlabeled=True), s.epochs, count))
        plain = union = 0
        for e in range(1, max(ep for _, ep, _ in scheds) + 1):  # keys never repeat across epochs
            keys = []
            for sched, epochs, count in scheds:
                if e <= epochs:
                    lk, uk = sched.epoch(e)
                    keys.append(np.concatenate(lk + (uk or [])))
                    plain += count * len(keys[-1])
            union += len(np.unique(np.concatenate(keys)))
        n_runs = len(specs)
        runs += n_runs
        fw_plain += plain + n_runs * n_test
        fw_cached += union + n_test
        head = 2.0 * dim * classes
        fl_plain += (plain + n_runs * n_test) * (flops + head)
        fl_cached += (union + n_test) * flops + (plain + n_runs * n_test) * head
    return {"suite": name, "teacher_runs": int(runs), "caches": len(groups),
            "forwards_uncached": int(fw_plain), "forwards_cached": int(fw_cached),
            "forward_ratio": fw_cached / fw_plain if fw_plain else None,
            "tflops_uncached": fl_plain / 1e12, "tflops_cached": fl_cached / 1e12,
            "flop_ratio": fl_cached / fl_plain if fl_plain else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suites", default="fewshot,imagenet_semi,demo", help="comma-separated suites")
    ap.add_argument("--json", default=None, help="also write the figures as JSON")
    args = ap.parse_args(argv)
    rows = [count_suite(s) for s in args.suites.split(",")]
    print(machine_line())
    shown = [{**r, "forward_ratio": f"{r['forward_ratio']:.4f}", "flop_ratio": f"{r['flop_ratio']:.4f}",
              "tflops_uncached": f"{r['tflops_uncached']:.4g}", "tflops_cached": f"{r['tflops_cached']:.4g}"}
             for r in rows]
    print(table(shown, list(rows[0])))
    write_json(args.json, {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
