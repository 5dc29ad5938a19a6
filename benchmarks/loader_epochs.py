"""Benchmark 7: per-epoch wall time of ``dho train``'s data pipeline with N loader workers:
loaders rebuilt every epoch (the code before) against loaders that live for the run
(:class:`dho.data.loading.RunLoaders`), side by side in one process, epoch by epoch.

    python -m benchmarks.loader_epochs                            # 1 worker on 2 CPUs, 6 epochs
    python -m benchmarks.loader_epochs --workers 8 --epochs 10    # a GPU node's CPUs
    python -m benchmarks.loader_epochs --workers 4 --uncapped     # more workers than CPUs - 1

The few-shot protocol's epoch: one pass over the labeled set (``--shots`` per class of the
generated shapes dataset's 12 classes, written at ``--source-px`` and re-encoded as JPEG,
as in :mod:`benchmarks.step`), ``--batch`` labeled + ``--batch`` unlabeled images per step
(64 + 64 in the paper suites), views at ``--image-size`` px, then the validation split
(as ``_Run._validate`` reads it).  The run object is ``dho train``'s own (ResNet-18
student, random-weight RN50 teacher: the training process that the workers fork is the
size of a real run's); no model computes anything here: each figure is the time to
read every batch of one epoch through ``_Run._epoch_steps`` and ``_Run._eval_batches``.

Variants, interleaved epoch by epoch on the same run object:

- ``rebuilt``: ``RunLoaders(persistent=False)``, a new DataLoader per pass as before: new
  worker processes every epoch, each starting with an empty decoded-image cache;
- ``persistent``: the run's loaders (workers started in epoch 1 and kept);
- ``0 workers`` (``--zero``): the training process reads.

Each variant has its own decoded-image cache in the training process (swapped in for its
epochs), as in a run of its own: the 0-worker variant's decoded images are not inherited
by the workers that the other variants fork.

Every variant must read the same batches: a digest of each epoch's tensors is compared.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from .common import machine, machine_line, table, write_json
from .step import SOURCE_CLASSES, build_run, make_dataset, random_teacher_file


def _say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def run_spec(args, root: Path, teacher_file: Path):
    """The few-shot suites' training settings (epoch = one pass over the labeled set)."""
    from dho.spec import RunSpec

    return RunSpec.from_dict(dict(
        dataset="shapes", data_root=str(root), split={"kind": "fewshot", "shots": args.shots},
        student="resnet18", student_pretrained=False, student_kwargs={"image_size": args.image_size},
        method="dho", teacher_file=str(teacher_file), epochs=200, epoch_length="labeled",
        batch_size=args.batch, unlabeled_batch_size=args.batch, image_size=args.image_size,
        num_workers=args.workers, device="cpu", progress=False, grad_cosine_every=0, seed=1))


def read_epoch(run, epoch: int) -> tuple[float, float, str]:
    """Seconds to read epoch ``epoch``'s training batches and the val split; their digest."""
    t0 = time.perf_counter()
    train = [pair for micro in run._epoch_steps(epoch) for pair in micro]
    t1 = time.perf_counter()
    val = list(run._eval_batches(run.val_set))
    t2 = time.perf_counter()
    digest = hashlib.sha256()
    for batch in [b for pair in train for b in pair if b is not None] + val:
        digest.update(batch[0].numpy().tobytes())
        digest.update(batch[1].numpy().tobytes())
    return t1 - t0, t2 - t1, digest.hexdigest()[:16]


@contextmanager
def main_process_cache(held: list):
    """``held`` = [decoded images, [bytes]] as this process's ``open_rgb`` cache for the block."""
    from dho.data import source

    before = source._DECODED, source._DECODED_BYTES
    source._DECODED, source._DECODED_BYTES = held
    try:
        yield
    finally:
        source._DECODED, source._DECODED_BYTES = before


def time_variants(run, variants: dict, epochs: int) -> list[dict]:
    """One row per (epoch, variant): train and val seconds, digest; variants interleaved,
    each with its own decoded-image cache in this process."""
    rows = []
    caches = {name: [{}, [0]] for name in variants}
    for epoch in range(1, epochs + 1):
        for name, loaders in variants.items():
            run.loaders = loaders
            with main_process_cache(caches[name]):
                train_s, val_s, digest = read_epoch(run, epoch)
            rows.append({"epoch": epoch, "variant": name, "train_s": train_s, "val_s": val_s,
                         "epoch_s": train_s + val_s, "digest": digest})
        _say(f"epoch {epoch}: " + ", ".join(f"{r['variant']} {r['epoch_s']:.2f} s" for r in rows[-len(variants):]))
    return rows


def side_by_side(rows: list[dict], names: list[str]) -> list[dict]:
    """Per epoch, each variant's seconds in one row, and the rebuilt / persistent ratio."""
    out = []
    for epoch in sorted({r["epoch"] for r in rows}):
        got = {r["variant"]: r for r in rows if r["epoch"] == epoch}
        row = {"epoch": epoch, **{f"{n} s": got[n]["epoch_s"] for n in names if n in got}}
        row["rebuilt / persistent"] = got["rebuilt"]["epoch_s"] / got["persistent"]["epoch_s"]
        row["same batches"] = "yes" if len({got[n]["digest"] for n in got}) == 1 else "NO"
        out.append(row)
    return out


def summary(rows: list[dict], names: list[str]) -> list[dict]:
    """Epoch 1 (workers start in both) and the median of epochs 2.. (train, val, both)."""
    out = []
    for name in names:
        mine = [r for r in rows if r["variant"] == name]
        later = mine[1:] or mine
        out.append({"variant": name, "epoch 1 s": mine[0]["epoch_s"],
                    "later epochs: median s": statistics.median(r["epoch_s"] for r in later),
                    "train part s": statistics.median(r["train_s"] for r in later),
                    "val part s": statistics.median(r["val_s"] for r in later),
                    "all epochs s": sum(r["epoch_s"] for r in mine)})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=1, help="loader workers per loader (spec key num_workers)")
    ap.add_argument("--uncapped", action="store_true",
                    help="use --workers as given, not capped to this process's CPUs minus one")
    ap.add_argument("--epochs", type=int, default=6, help="epochs timed per variant")
    ap.add_argument("--shots", type=int, default=8, help="labeled images per class (12 classes)")
    ap.add_argument("--unlabeled", type=int, default=8, help="unlabeled images per class")
    ap.add_argument("--batch", type=int, default=64, help="labeled images per step = unlabeled images per step")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--source-px", type=int, default=320, help="side of the generated source images")
    ap.add_argument("--teacher-model", default="RN50", help="open_clip model of the random-weight teacher")
    ap.add_argument("--zero", action="store_true", help="also time 0 workers")
    ap.add_argument("--json", default=None, help="also write all figures here")
    args = ap.parse_args(argv)
    import torch

    from dho.data.loading import RunLoaders
    from dho.runtime import loader_workers

    torch.manual_seed(0)
    workers = args.workers if args.uncapped else loader_workers(args.workers)
    at_start = machine()
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="bench-loaders-") as tmp:
        work = Path(tmp)
        _say("writing the dataset")
        make_dataset(work / "data", args.shots + args.unlabeled, args.source_px)
        _say("building the models")
        teacher_file = random_teacher_file(args.teacher_model, SOURCE_CLASSES, work)
        run = build_run(run_spec(args, work / "data", teacher_file), work / "run")
        variants = {"rebuilt": RunLoaders(workers, persistent=False), "persistent": RunLoaders(workers),
                    **({"0 workers": RunLoaders(0)} if args.zero else {})}
        _say(f"timing {args.epochs} epochs of {run.steps_per_epoch} steps, {workers} workers per loader")
        rows = time_variants(run, variants, args.epochs)
        for loaders in variants.values():
            loaders.close()
        names = list(variants)
        n_val = len(run.val_set)
    print(f"{args.shots} shots x {SOURCE_CLASSES} classes + {args.unlabeled} unlabeled per class "
          f"({args.source_px} px JPEGs), {run.steps_per_epoch} steps of {args.batch}+{args.batch} views at "
          f"{args.image_size} px, then {n_val} val images, per epoch; {workers} workers per loader "
          f"({args.workers} asked{', uncapped' if args.uncapped else ''}; this process may use "
          f"{len(os.sched_getaffinity(0))} CPUs), {torch.get_num_threads()} torch threads")
    print(table(side_by_side(rows, names), ["epoch", *[f"{n} s" for n in names], "rebuilt / persistent",
                                            "same batches"]))
    print(table(summary(rows, names), ["variant", "epoch 1 s", "later epochs: median s", "train part s",
                                       "val part s", "all epochs s"]))
    print(f"1-min load average at the end: {os.getloadavg()[0]:.2f}")
    write_json(args.json, {"benchmark": "loader_epochs", "machine": at_start, "args": vars(args),
                           "workers": workers, "rows": rows, "load_avg_1min_end": os.getloadavg()[0]})
    same = all(r["same batches"] == "yes" for r in side_by_side(rows, names))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
