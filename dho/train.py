"""One training run: ``dho train --spec FILE.yaml [--set k=v ...] --out RUN_DIR``.

:func:`run_training` follows the protocol of the method card (docs/DESIGN.md "One run"):

1. the dataset layout is checked first (bad layouts fail in seconds);
2. the label split comes from ``spec.split_manifest`` (verified against the spec) or is
   computed with :func:`dho.data.splits.make_split`;
3. each step runs the teacher (``torch.inference_mode``, fp16 autocast on CUDA) and then the
   student on ``cat([x_l, x_u])``: one call of each (``student_forward: joint``, the authors'
   ImageNet scripts) or one per part (``split``, their few-shot script; BatchNorm then sees
   each part's own statistics); the method object
   (``heads``, ``needs_teacher``, ``loss``) decides everything method-specific;
4. every ``grad_cosine_every`` steps the gradient conflict is measured: the paper's Fig. 3
   quantities (:mod:`dho.conflict`: CosSim over the feature extractor's parameters and over
   the head weights, (p_hat - y)^T (p_hat - p)) into ``gradient_conflict.csv``, and the
   cosine between d(sup)/d(feature) and d(distill)/d(feature) into ``grad_cosine.csv``;
5. each epoch: both heads on val, (alpha, beta) searched (or fixed), the best-val state
   kept (``epoch_select: best_val``) or the last (``last``: where val is the test set),
   ``history.csv``/``grad_cosine.csv``/``gradient_conflict.csv``/``checkpoint.pt`` written
   atomically;
6. at the end the kept state is evaluated on test, logits saved, ``metrics.json`` written,
   and only then ``checkpoint.pt`` slimmed to what a finished run is read for: the kept
   state (``best``) and the spec hash, without the optimizer, scheduler, RNG and last-epoch
   weights that only a resume needs (:data:`FINAL_CHECKPOINT_KEYS`; a ResNet-18 run's file
   drops from about 4x to 1x the model's size).

Epochs.  ``epoch_length: labeled`` = one pass over the labeled loader (the unlabeled
loader is cycled if it is shorter); ``unlabeled`` = one pass over the unlabeled loader
with the labeled loader cycled.  Methods without a teacher (``needs_teacher`` False, e.g.
the CE baseline) run the same number of steps per epoch with the same labeled batches and
schedule, but load no unlabeled images (``out_u``, ``t_l``, ``t_u`` are None).

Determinism and resume.  Every epoch re-seeds python/numpy/torch from ``(seed, epoch)``.
The batches and the views are pure functions of the run's seed (:mod:`dho.data.views`):
each crop/flip is drawn from a counter-based generator keyed by ``(seed, epoch, pass,
train index)``, so a view does not depend on ``num_workers``, the batch order or the
label level (the teacher-output cache relies on it).  A run resumed from the epoch checkpoint reproduces the uninterrupted run
exactly on CPU with the same thread count (``torch.use_deterministic_algorithms`` is on).

Loaders.  One loader per dataset lives for the whole run (:class:`dho.data.loading.RunLoaders`):
its ``num_workers`` worker processes (capped to the job's CPUs minus one) start on its first
pass and are not forked again each epoch, each epoch's batch plan being handed to it; they
seed from the loader's own generator, so torch's global random stream (dropout) is the same
with 0 or N workers.

Concurrency.  An exclusive file lock (:func:`dho.io.file_lock`) on ``RUN_DIR/.lock`` is held while
training: a second launch of the same run waits, then finds it done and returns its metrics.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from .errors import CheckpointError, ConfigError, DataError, OutputError, TrainingError
from .io import atomic_path, atomic_torch_save, atomic_write_json, atomic_write_text, file_lock, file_sha256
from .conflict import CONFLICT_COLUMNS, gradient_conflict
from .distributed import add_grads, average_gradients, sync_buffers
from .runtime import autocast, channels_last, loader_workers, nhwc
from .methods.base import Batch
from .progress import Progress, say
from .rundir import load_done, run_uid, set_aside
from .runtime import (derive_seed, git_commit, lr_factor, resolve_device, rng_state,
                      seed_everything, set_deterministic, set_rng_state, slurm_job_id)
from .spec import RunSpec, load_spec, with_derived_keys

HISTORY_COLUMNS = ("epoch", "train_loss", "lr", "val_acc_ce", "val_acc_kd", "val_acc", "alpha", "beta",
                   "grad_cosine")
CHECKPOINT_KEYS = ("spec_hash", "epoch", "step", "model", "optimizer", "scheduler", "rng", "best", "history",
                   "grad_cosines", "train_seconds", "train_images", "wall_time_s")
# the checkpoint of a finished run (``metrics.json`` written): what `dho evaluate` and
# `dho linear-eval` read; a resume never needs it (a finished run is not trained again)
FINAL_CHECKPOINT_KEYS = ("spec_hash", "epoch", "step", "best", "final")


def _finite_mean(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def labels_name(spec: RunSpec) -> str:
    """``spec.tags['labels']`` or the split's own name (:class:`dho.split.LabelSplit`)."""
    from .split import LabelSplit

    return str(spec.tags["labels"]) if "labels" in spec.tags else LabelSplit.from_dict(spec.split).name


def _split_output(out, n: int):
    """Split a StudentOutput over ``cat([x_l, x_u])`` into the labeled and unlabeled parts."""
    cls = type(out)
    first = cls(*(t[:n] for t in out))
    rest = cls(*(t[n:] for t in out)) if out.feature.shape[0] > n else None
    return first, rest


def _per_part(spec: RunSpec, x: torch.Tensor, n_l: int) -> bool:
    """Whether a step on ``x`` = cat([x_l, x_u]) calls the networks once per part
    (``student_forward: split`` and unlabeled rows present)."""
    return spec.student_forward == "split" and x.shape[0] > n_l


def _split_rows(t: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Rows ``[:n]`` (labeled) and ``[n:]`` (unlabeled, None when empty) of a batch tensor."""
    return t[:n], (t[n:] if t.shape[0] > n else None)


def _write_csv(path: Path, columns: tuple[str, ...] | list[str], rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    atomic_write_text(path, buf.getvalue())


def save_logits(path: Path, ce: torch.Tensor, kd: torch.Tensor, labels: torch.Tensor) -> None:
    """Save both heads' logits and the labels as ``.npz`` (atomic)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, ce=ce.float().numpy(), kd=kd.float().numpy(), labels=labels.long().numpy())


# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------
def run_training(spec: RunSpec, run_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Train one run into ``run_dir`` (default ``spec.output_dir``); return its metrics.

    Returns the existing metrics without training when the run is already done; resumes
    from ``checkpoint.pt`` when one with the same spec hash exists.
    """
    run_dir = run_dir if run_dir is not None else spec.output_dir
    if run_dir is None:
        raise ConfigError("no run directory: pass --out RUN_DIR or set key 'output_dir'")
    run_dir = Path(run_dir)
    spec = with_derived_keys(spec)
    done = load_done(run_dir, spec.hash)
    if done is not None:
        return done
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create run directory {run_dir}: {e.strerror}") from None
    from .distributed import current

    lock = file_lock(run_dir / ".lock") if current().is_main else contextlib.nullcontext()
    with lock:  # one lock per run: only rank 0 of a data-parallel run holds it
        done = load_done(run_dir, spec.hash)
        if done is not None:
            return done
        moved = set_aside(run_dir, spec.hash) if current().is_main else None
        if moved is not None:
            print(f"{run_dir} held another spec: moved it to {moved}", file=sys.stderr)
        deterministic_before = (torch.are_deterministic_algorithms_enabled(),
                                torch.is_deterministic_algorithms_warn_only_enabled())
        try:
            return _Run(spec, run_dir).execute()
        finally:
            set_deterministic(*deterministic_before)


class _NoTracker:
    """The tracker of ranks other than 0 of a data-parallel run: logs nothing."""

    def start(self, *_a, **_k):
        return None

    def __getattr__(self, _name):
        return lambda *_a, **_k: None


class _Run:
    """State of one training run; :meth:`execute` does the work."""

    def __init__(self, spec: RunSpec, run_dir: Path):
        self.spec = spec
        self.run_dir = run_dir
        self.spec_hash = spec.hash
        self.t_start = time.time()

    # -- setup -------------------------------------------------------------------------
    def execute(self) -> dict[str, Any]:
        from .tracking import RunTracker

        from .distributed import current, device_for

        spec = self.spec
        self.dist = current()
        self.device = resolve_device(device_for(spec.device, self.dist))
        if self.device.type == "cpu":
            set_deterministic(True, warn_only=True)
        self._setup_data()
        self._setup_models()
        ckpt = self._load_checkpoint()  # validates before anything is written
        if self.dist.is_main:
            atomic_write_json(self.run_dir / "spec.json", {**spec.to_dict(), "spec_hash": self.spec_hash})
        self.run_uid = run_uid(self.run_dir, create=self.dist.is_main)  # its MLflow run is tagged with it
        self.tracker = RunTracker(spec, self.run_dir) if self.dist.is_main else _NoTracker()
        self.git_commit = git_commit()
        self.slurm_job_id = slurm_job_id()
        self.mlflow_run_id = self.tracker.start({"git_commit": self.git_commit, "slurm_job_id": self.slurm_job_id,
                                                 "run_dir": str(self.run_dir.resolve())})
        self._setup_loaders()
        try:
            self._setup_optim()
            if ckpt is not None:
                self._restore(ckpt)
            self._train()
            metrics = self._finish() if self.dist.is_main else {"status": "worker", "rank": self.dist.rank}
        except BaseException:
            self.tracker.finish(None, status="FAILED")
            raise
        finally:
            self.loaders.close()
        self.tracker.finish(metrics)
        return metrics

    def _setup_data(self) -> None:
        from . import data
        from .data import splits

        spec = self.spec
        source = data.get_dataset(spec.dataset, spec.data_root)
        data.assert_dataset_ok(source)
        self.source = source
        if spec.split_manifest:
            manifest = splits.SplitManifest.load(spec.split_manifest)
            mismatch = [(k, getattr(manifest, k), v) for k, v in
                        (("dataset", spec.dataset), ("split", spec.split), ("seed", spec.split_seed))
                        if getattr(manifest, k) != v]
            if mismatch:
                k, got, want = mismatch[0]
                raise ConfigError(f"split manifest {spec.split_manifest}: {k} = {got!r} but the spec has {want!r}")
        else:
            manifest = splits.make_split(source, spec.split, spec.split_seed)
        if not manifest.labeled:
            raise DataError(f"split {spec.split} of dataset {spec.dataset} has no labeled images")
        self.manifest = manifest
        eval_tf = data.eval_transform(spec.image_size)
        self._setup_views(source, manifest)
        self.val_set = data.ImageList(source, source.items("val"), eval_tf)
        self.test_set = data.ImageList(source, source.items("test"), eval_tf)
        for name, ds in (("val", self.val_set), ("test", self.test_set)):
            if len(ds) == 0:
                raise DataError(f"dataset {spec.dataset} under {spec.data_root} has no {name} images")

    def _setup_views(self, source, manifest) -> None:
        """Training views keyed by (seed, epoch, pass, train index) (:mod:`dho.data.views`)."""
        from .data import views

        spec = self.spec
        train_items = source.items("train")
        lab, unl = views.train_indices(train_items, manifest.labeled, manifest.unlabeled)
        make = lambda mask: views.ViewDataset(source, train_items, spec.image_size, spec.crop_scale_min,  # noqa: E731
                                              spec.seed, mask_labels=mask, interpolation=spec.crop_interpolation)
        self.labeled_set, self.unlabeled_set = make(False), make(True)
        self.schedule_args = dict(seed=spec.seed, n_train=len(train_items), labeled=lab, unlabeled=unl,
                                  batch_size=spec.batch_size, unlabeled_batch_size=spec.unlabeled_batch_size,
                                  epoch_length=spec.epoch_length)

    def _setup_models(self) -> None:
        from .methods import METHODS
        from .models import build_student

        spec = self.spec
        self.method = METHODS.get(spec.method)
        self.method_args = self.method.resolve_args(spec.method_args)  # fails before training starts
        num_classes = self.source.num_classes
        self.teacher = self.teacher_cache = None
        if spec.teacher_file is not None:
            path = Path(spec.teacher_file)
            if not path.is_file():
                raise CheckpointError(f"teacher file not found: {path}")
            if spec.teacher_sha is not None and not file_sha256(path).startswith(spec.teacher_sha):
                raise CheckpointError(f"teacher file {path} does not match key 'teacher_sha' = {spec.teacher_sha!r}")
            self._load_teacher(path, num_classes)
        if self.method.needs_teacher and self.teacher is None:
            raise ConfigError(f"method '{spec.method}' needs a teacher: set key 'teacher_file'")
        seed_everything(spec.seed)  # student initialisation (after the teacher: a live one draws init weights)
        prompts = spec.student_kwargs.get("prompts", "authors")  # head init of CLIP students
        self.student = build_student(spec.student, num_classes, heads=self.method.heads,
                                     pretrained=spec.student_pretrained,
                                     classnames=self.source.prompt_classnames(prompts),
                                     templates=self.source.prompt_templates(prompts),
                                     **spec.student_kwargs)
        self.method.setup_student(self.student, self.method_args, self.teacher)  # method-owned parts
        if self.dist.world > 1 and self.device.type == "cuda":  # batch statistics over the global batch
            self.student = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.student)
        self.student.to(self.device, memory_format=channels_last(self.device))
        from .data.views import Schedule

        self.schedule = Schedule(**self.schedule_args, use_unlabeled=self.method.loads_unlabeled)

    def _load_teacher(self, path: Path, num_classes: int) -> None:
        """The live teacher, or (key ``teacher_cache``) its head + the cached image features."""
        from .models import load_teacher, load_teacher_head, read_teacher_file

        spec = self.spec
        if spec.teacher_cache is None:
            self.teacher = load_teacher(path, self.device, expected_classes=num_classes).eval()
            self.teacher.visual.to(memory_format=channels_last(self.device))  # (its forward autocasts on CUDA)
            return
        from .teacher_cache import TeacherCache, cache_meta

        self.teacher = load_teacher_head(path, self.device, expected_classes=num_classes).eval()
        file_dict = read_teacher_file(path)
        if spec.teacher_cache_topk is not None:
            self._check_topk_teacher(path, file_dict["kind"])
        expected = cache_meta(self.source, spec, file_dict)
        self.teacher_cache = TeacherCache.load(spec.teacher_cache, expected)

    def _check_topk_teacher(self, path: Path, kind: str) -> None:
        """A top-k cache holds one zero-shot head's logits: no features for other heads or methods."""
        k = self.spec.teacher_cache_topk
        if kind != "zeroshot":
            raise ConfigError(f"key 'teacher_cache_topk' = {k}: teacher file {path} is a {kind} teacher, whose "
                              f"head needs the image features; use a feature cache (teacher_cache_topk: null)")
        if set(self.method.teacher_outputs) - {"logits"}:
            raise ConfigError(f"key 'teacher_cache_topk' = {k}: method '{self.spec.method}' needs the teacher's "
                              f"{', '.join(sorted(set(self.method.teacher_outputs) - {'logits'}))}; "
                              f"use a feature cache (teacher_cache_topk: null)")

    def _setup_loaders(self) -> None:
        """One loader per dataset for the whole run (:class:`dho.data.loading.RunLoaders`):
        its workers (at most one per CPU the job may use, besides the training process)
        start once, not every epoch; pinned memory on CUDA only."""
        from .data.loading import RunLoaders

        self.loaders = RunLoaders(loader_workers(self.spec.num_workers), pin_memory=self.device.type == "cuda")

    def _eval_batches(self, dataset):
        return self.loaders.iterate(dataset, batch_size=max(self.spec.batch_size, self.spec.unlabeled_batch_size))

    def _steps_per_epoch(self) -> int:
        if self.spec.epoch_length == "unlabeled" and len(self.schedule.unlabeled) == 0:
            raise DataError(f"epoch_length 'unlabeled' but split {self.spec.split} leaves no unlabeled images")
        return self.schedule.steps_per_epoch

    def _setup_optim(self) -> None:
        from .distributed import accumulation_steps

        spec = self.spec
        images = spec.batch_size + (spec.unlabeled_batch_size if self.schedule.use_unlabeled else 0)
        self.accum = accumulation_steps(images, self.dist.world, spec.max_device_batch)
        self.steps_per_epoch = self._steps_per_epoch()
        self.total_steps = self.steps_per_epoch * spec.epochs
        self.params = [p for p in self.student.parameters() if p.requires_grad]  # what the optimizer steps
        self.optimizer = torch.optim.AdamW(self.params, lr=spec.lr, weight_decay=spec.weight_decay)
        total, warmup, start, schedule = self.total_steps, spec.warmup, spec.warmup_start_factor, spec.schedule
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, total, warmup, start, schedule))
        self.epoch = 0  # completed epochs
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.grad_cosines: list[tuple[int, float]] = []
        self.conflicts: list[dict[str, float]] = []  # rows of gradient_conflict.csv (dho.conflict)
        self.best: dict[str, Any] = {"epoch": 0, "val_acc": -1.0, "alpha": None, "beta": None, "state": None}
        self.train_seconds = 0.0
        self.train_images = 0
        self.wall_before = 0.0

    # -- checkpoint ----------------------------------------------------------------------
    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def _load_checkpoint(self) -> dict[str, Any] | None:
        for stale in self.run_dir.glob(".*.tmp") if self.dist.is_main else ():  # a write killed mid-way
            stale.unlink(missing_ok=True)  # (rank 0 holds the lock)
        path = self.ckpt_path
        if not path.exists():
            return None
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
            raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}); "
                                  f"delete it to restart this run from scratch") from None
        final = isinstance(ckpt, dict) and ckpt.get("final") is True
        required = FINAL_CHECKPOINT_KEYS if final else CHECKPOINT_KEYS
        if not isinstance(ckpt, dict) or any(k not in ckpt for k in required):
            raise CheckpointError(f"checkpoint {path} is not a dho training checkpoint (missing keys); "
                                  f"delete it to restart this run from scratch")
        if ckpt["spec_hash"] != self.spec_hash:
            raise ConfigError(f"run directory {self.run_dir} holds another spec (checkpoint spec_hash "
                              f"{ckpt['spec_hash']}, requested {self.spec_hash}); use another --out")
        if final:
            raise CheckpointError(f"checkpoint {path} is the final one of a finished run (kept state only, "
                                  f"nothing to resume from) but {self.run_dir / 'metrics.json'} is missing; "
                                  f"delete the run directory to train it again")
        return ckpt

    def _restore(self, ckpt: dict[str, Any]) -> None:
        try:
            self.student.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"checkpoint {self.ckpt_path} does not fit this model: "
                                  f"{str(e).splitlines()[0]}; delete it to restart") from None
        set_rng_state(ckpt["rng"])
        self.epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
        self.best = ckpt["best"]
        self.history = list(ckpt["history"])
        self.grad_cosines = [(int(s), float(c)) for s, c in ckpt["grad_cosines"]]
        self.conflicts = [dict(r) for r in ckpt.get("conflicts", [])]  # absent in older checkpoints
        self.train_seconds = float(ckpt["train_seconds"])
        self.train_images = int(ckpt["train_images"])
        self.wall_before = float(ckpt["wall_time_s"])

    def _save_checkpoint(self) -> None:
        atomic_torch_save({
            "spec_hash": self.spec_hash, "epoch": self.epoch, "step": self.step,
            "model": self.student.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "rng": rng_state(), "best": self.best,
            "history": self.history, "grad_cosines": [list(p) for p in self.grad_cosines],
            "conflicts": self.conflicts,
            "train_seconds": self.train_seconds, "train_images": self.train_images,
            "wall_time_s": self._wall_time(),
        }, self.ckpt_path)

    def _wall_time(self) -> float:
        return self.wall_before + (time.time() - self.t_start)

    # -- training ------------------------------------------------------------------------
    def _train(self) -> None:
        spec = self.spec
        say(f"{self.run_dir}: {spec.method} on {spec.dataset}, {spec.epochs} epochs of {self.steps_per_epoch} steps"
            + (f"; resuming after epoch {self.epoch}" if self.epoch else ""))
        for epoch in range(self.epoch + 1, spec.epochs + 1):
            t0 = time.time()
            train_loss, cosines = self._train_epoch(epoch)
            self.train_seconds += time.time() - t0
            sync_buffers(self.student, self.dist)
            if not self.dist.is_main:  # rank 0 validates and writes (dho.distributed)
                self.epoch = epoch
                continue
            row = self._validate(epoch, train_loss, cosines)
            self.epoch = epoch
            self.history.append(row)
            _write_csv(self.run_dir / "history.csv", HISTORY_COLUMNS, self.history)
            _write_csv(self.run_dir / "grad_cosine.csv", ("step", "cosine"),
                       [{"step": s, "cosine": c} for s, c in self.grad_cosines])
            _write_csv(self.run_dir / "gradient_conflict.csv", CONFLICT_COLUMNS, self.conflicts)
            self._save_checkpoint()
            self.tracker.log_epoch(row)
            self.tracker.log_grad_cosines(cosines)
            say(f"epoch {epoch}/{spec.epochs} done: train loss {train_loss:.4f}, val accuracy {row['val_acc']:.2f} % "
                f"(alpha {row['alpha']}, beta {row['beta']}), {time.time() - t0:.1f} s")

    def _epoch_steps(self, epoch: int) -> Iterator[list[tuple[Any, Any]]]:
        """Per optimizer step, this process's micro-batches ``[(labeled, unlabeled or None)]``:
        its shards of the global key batches of :meth:`dho.data.views.Schedule.epoch`
        (:mod:`dho.distributed`); python/numpy/torch re-seeded from (seed, epoch, rank)."""
        from .data.views import shard

        d, accum = self.dist, self.accum
        seed_everything(derive_seed(self.spec.seed, epoch, 0, *((d.rank,) if d.rank else ())))
        lab_keys, unl_keys = self.schedule.epoch(epoch)
        plan, self.step_images = [], []
        for s, b_l in enumerate(lab_keys):
            b_u = unl_keys[s] if unl_keys is not None else None
            self.step_images.append(len(b_l) + (len(b_u) if b_u is not None else 0))
            micro = []
            for part in range(d.rank * accum, (d.rank + 1) * accum):
                l_part = shard(b_l, d.world * accum, part)
                u_part = shard(b_u, d.world * accum, part) if b_u is not None else None
                if len(l_part):  # a short last batch may leave a shard empty
                    micro.append((l_part, u_part if u_part is not None and len(u_part) else None))
            plan.append(micro)
        labeled = self.loaders.iterate(self.labeled_set, batches=[l for m in plan for l, _ in m])
        unl = [u for m in plan for _, u in m if u is not None]
        unlabeled = self.loaders.iterate(self.unlabeled_set, batches=unl) if unl else iter(())
        for m in plan:
            yield [(next(labeled), next(unlabeled) if u is not None else None) for _, u in m]

    def _train_epoch(self, epoch: int) -> tuple[float, list[tuple[int, float]]]:
        spec = self.spec
        self.student.train()
        cosines: list[tuple[int, float]] = []
        total_loss, n_steps = 0.0, 0
        # a bar on a terminal (spec.progress); in a log, a line per tenth of a long epoch (>= 10 s apart)
        bar = Progress(self.steps_per_epoch, f"epoch {epoch}/{spec.epochs}", bar=spec.progress and self.dist.is_main,
                       min_interval_s=10)  # other ranks: lines in their own logs, no terminal bar
        for i, micro in enumerate(bar.iterate(self._epoch_steps(epoch))):
            self.step += 1
            loss = self._train_step(micro, epoch, cosines)
            self._check_gradients(epoch)
            self.optimizer.step()
            self.last_lr = self.optimizer.param_groups[0]["lr"]
            self.scheduler.step()
            total_loss += loss
            n_steps += 1
            bar.set(loss=total_loss / n_steps)
            self.train_images += self.step_images[i]
        self.grad_cosines.extend(cosines)
        return total_loss / max(1, n_steps), cosines

    def _train_step(self, micro: list[tuple[Any, Any]], epoch: int, cosines: list[tuple[int, float]]) -> float:
        """Gradients of one optimizer step: each micro-batch's backward, summed when there
        are several, averaged over micro-batches and ranks (:func:`average_gradients`)."""
        params = self.params
        grad_sum, loss_sum = None, 0.0
        for a, (batch_l, batch_u) in enumerate(micro):
            loss_sum += self._micro_step(batch_l, batch_u, epoch, cosines, measure=a == 0 and self.dist.is_main)
            if len(micro) > 1:
                grad_sum = add_grads(params, grad_sum)
        if not micro:
            self.optimizer.zero_grad(set_to_none=True)
        return average_gradients(params, grad_sum, loss_sum, len(micro), self.dist)

    def _check_gradients(self, epoch: int) -> None:
        """Stop before the optimizer step when a gradient is not finite although the loss was
        (an overflow in the backward): one such step makes every weight NaN, and a run whose
        last step did would otherwise finish and report a model that predicts nothing."""
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads or torch.isfinite(torch.nn.utils.get_total_norm(grads, float("inf"))):
            return  # the largest |gradient|: no overflow of its own, NaN and inf propagate
        bad = next(n for n, p in self.student.named_parameters() if p.grad is not None and not p.grad.isfinite().all())
        raise TrainingError(f"non-finite gradient at epoch {epoch}, step {self.step} (first in {bad}) with a finite "
                            f"loss; lower lr, set precision: fp32, or check the teacher/data")

    def _micro_step(self, batch_l, batch_u, epoch: int, cosines: list[tuple[int, float]], measure: bool) -> float:
        """Forward, loss and the method's backward on one micro-batch; the gradient-conflict
        diagnostics on the first micro-batch of rank 0 when due."""
        spec = self.spec
        x_l, y = batch_l[0].to(self.device, non_blocking=True), batch_l[1].to(self.device, non_blocking=True)
        n_l = x_l.shape[0]
        x = x_l if batch_u is None else torch.cat([x_l, batch_u[0].to(self.device, non_blocking=True)])
        t_l = t_u = None
        extra: dict[str, Any] = {}
        if self.method.needs_teacher:  # first, as the authors' step: the student's activations not yet held
            keys = batch_l[3] if batch_u is None else torch.cat([batch_l[3], batch_u[3]])
            outputs = self._teacher_parts(x, keys, n_l)
            t_l, t_u = _split_rows(outputs.pop("logits"), n_l)
            extra = {k: _split_rows(v, n_l) for k, v in outputs.items()}
        with autocast(self.device, self.spec.precision):
            out_l, out_u, features = self._student_forward(x, n_l)
        with autocast(self.device, self.spec.precision):
            loss, terms = self.method.step(Batch(out_l, out_u, y, t_l, t_u, self.method_args, self.student, extra))
        if not torch.isfinite(loss).all():
            detail = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
            raise TrainingError(f"non-finite loss {float(loss.detach()):.4g} at epoch {epoch}, step {self.step} "
                                f"(terms: {detail or 'none'}); lower lr or check the teacher/data")
        if measure and spec.grad_cosine_every and self.step % spec.grad_cosine_every == 0:
            cos = self._grad_cosine(terms, features)
            if cos is not None:
                cosines.append((self.step, cos))
            conflict = gradient_conflict(self.student, out_l, y, t_l, terms,
                                         float(self.method_args.get("temperature", 2.0)))
            if conflict is not None:
                self.conflicts.append({"step": self.step, **conflict})
        self.optimizer.zero_grad(set_to_none=True)
        self.method.backward(loss, terms, self.method_args, self.student.parameters())
        return float(loss.detach())

    def _student_forward(self, x: torch.Tensor, n_l: int):
        """The student's outputs on the labeled rows ``x[:n_l]`` and on the rest (None when
        empty), and the feature tensors they come from: one forward over both
        (``student_forward: joint``) or one per part (``split``, the authors' few-shot step:
        BatchNorm sees each part's own batch statistics)."""
        if _per_part(self.spec, x, n_l):
            out_l, out_u = self.student(nhwc(x[:n_l])), self.student(nhwc(x[n_l:]))
            return out_l, out_u, [out_l.feature, out_u.feature]
        out = self.student(nhwc(x))
        return *_split_output(out, n_l), [out.feature]

    def _teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.float16,
                                                    enabled=self.device.type == "cuda"):
            t = self.teacher(x)
        return t.float().clone()  # a normal tensor (inference tensors cannot be saved for backward)

    def _teacher_parts(self, x: torch.Tensor, keys: torch.Tensor, n_l: int) -> dict[str, torch.Tensor]:
        """The teacher's outputs on ``x`` = cat([x_l, x_u]): one call (``student_forward: joint``)
        or, with ``split``, one call per part as in the authors' few-shot step (on a CPU, two
        calls on B images are also faster than one on 2B); a cache is read in one look-up."""
        if self.teacher_cache is None and _per_part(self.spec, x, n_l):
            parts = self._teacher_outputs(x[:n_l], keys[:n_l]), self._teacher_outputs(x[n_l:], keys[n_l:])
            return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        return self._teacher_outputs(x, keys)

    def _teacher_outputs(self, x: torch.Tensor, keys: torch.Tensor) -> dict[str, torch.Tensor]:
        """The teacher outputs the method asks for (``method.teacher_outputs``), one teacher call,
        or (key ``teacher_cache``) the cached embeddings of the view ``keys`` and their logits."""
        wanted = self.method.teacher_outputs
        if self.teacher_cache is not None:
            return self._cached_outputs(keys, wanted)
        if tuple(wanted) == ("logits",):
            return {"logits": self._teacher_logits(x)}
        with torch.inference_mode():
            outputs = self.teacher.outputs(x, wanted)
        return {k: v.float().clone() for k, v in outputs.items()}

    def _cached_outputs(self, keys: torch.Tensor, wanted) -> dict[str, torch.Tensor]:
        with torch.inference_mode():
            out = self.teacher_cache.outputs(keys, self.teacher, self.device)
        unknown = sorted(set(wanted) - set(out))
        if unknown:
            raise ConfigError(f"teacher outputs {', '.join(unknown)} are not in teacher cache "
                              f"{self.teacher_cache.path}; known: {', '.join(sorted(out))}")
        return {k: out[k].float().clone() for k in wanted}

    @staticmethod
    def _grad_cosine(terms: dict[str, torch.Tensor], features: list[torch.Tensor]) -> float | None:
        """Cosine between d(sup)/d(feature) and d(distill)/d(feature), flattened over the batch
        (the labeled rows' features, then the unlabeled rows')."""
        if "sup" not in terms or "distill" not in terms or not all(f.requires_grad for f in features):
            return None
        g_sup = torch.autograd.grad(terms["sup"], features, retain_graph=True, allow_unused=True)
        g_dis = torch.autograd.grad(terms["distill"], features, retain_graph=True, allow_unused=True)
        if all(g is None for g in g_sup) or all(g is None for g in g_dis):
            return None

        def flat(grads, like):
            return torch.cat([(g if g is not None else torch.zeros_like(f)).flatten().double()
                              for g, f in zip(grads, like)])
        cos = torch.nn.functional.cosine_similarity(flat(g_sup, features), flat(g_dis, features), dim=0,
                                                    eps=1e-12)
        return float(cos)

    # -- evaluation ----------------------------------------------------------------------
    @torch.no_grad()
    def _predict(self, dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Both heads' logits (cpu, float32) and labels over ``dataset`` (eval mode)."""
        self.student.eval()
        ce, kd, labels = [], [], []
        for x, y, *_ in self._eval_batches(dataset):
            out = self.student(x.to(self.device))
            ce.append(out.ce.float().cpu())
            kd.append(out.kd.float().cpu())
            labels.append(y)
        return torch.cat(ce), torch.cat(kd), torch.cat(labels)

    def _choose(self, ce: torch.Tensor, kd: torch.Tensor, labels: torch.Tensor) -> tuple[float, float, float]:
        """(accuracy %, alpha, beta) on these logits: searched, or the spec's fixed pair."""
        from .inference import accuracy, combine_heads, search_alpha_beta

        if self.method.fixed_alpha_beta is not None:  # e.g. SSKD/DHKD predict with the CE head alone
            alpha, beta = self.method.fixed_alpha_beta
        elif self.spec.alpha_beta == "search":
            acc, alpha, beta = search_alpha_beta(ce, kd, labels)
            return float(acc), float(alpha), float(beta)
        else:
            alpha, beta = self.spec.alpha, self.spec.beta
        return float(accuracy(combine_heads(ce, kd, alpha, beta), labels)), alpha, beta

    def _validate(self, epoch: int, train_loss: float, cosines: list[tuple[int, float]]) -> dict[str, Any]:
        from .inference import accuracy

        ce, kd, labels = self._predict(self.val_set)
        val_acc, alpha, beta = self._choose(ce, kd, labels)
        if val_acc > self.best["val_acc"] or self.spec.epoch_select == "last":  # "last": no choice made
            self.best = {"epoch": epoch, "val_acc": val_acc, "alpha": alpha, "beta": beta,
                         "state": {k: v.detach().cpu().clone() for k, v in self.student.state_dict().items()}}
        return {"epoch": epoch, "train_loss": train_loss, "lr": self.last_lr,
                "val_acc_ce": float(accuracy(ce, labels)), "val_acc_kd": float(accuracy(kd, labels)),
                "val_acc": val_acc, "alpha": alpha, "beta": beta,
                "grad_cosine": float(np.mean([c for _, c in cosines])) if cosines else None}

    @torch.no_grad()
    def _teacher_accuracy(self, dataset) -> float:
        from .inference import accuracy

        if self.teacher_cache is not None:  # the cache holds the test split's features (or top-k logits)
            with torch.inference_mode():
                logits = self.teacher_cache.test_logits(self.teacher, self.device)
            return float(accuracy(logits.cpu(), self.teacher_cache.test_labels))
        logits, labels = [], []
        for x, y, *_ in self._eval_batches(dataset):
            logits.append(self._teacher_logits(x.to(self.device)).cpu())
            labels.append(y)
        return float(accuracy(torch.cat(logits), torch.cat(labels)))

    def _teacher_name(self) -> str:
        """``spec.tags['teacher']``, else the teacher file's kind, else ``"none"``."""
        if "teacher" in self.spec.tags:
            return str(self.spec.tags["teacher"])
        if self.teacher is None:
            return "none"
        return str(getattr(self.teacher, "kind", None) or Path(self.spec.teacher_file).stem)

    def _finish(self) -> dict[str, Any]:
        from .inference import accuracy, combine_heads

        spec = self.spec
        self.student.load_state_dict(self.best["state"])
        alpha, beta = self.best["alpha"], self.best["beta"]
        ce_v, kd_v, y_v = self._predict(self.val_set)
        ce_t, kd_t, y_t = self._predict(self.test_set)
        save_logits(self.run_dir / "logits_val.npz", ce_v, kd_v, y_v)
        save_logits(self.run_dir / "logits_test.npz", ce_t, kd_t, y_t)
        teacher_acc = self._teacher_accuracy(self.test_set) if self.teacher is not None else None
        cos = [c for _, c in self.grad_cosines]
        conflict_means = {f"grad_{k}_mean": _finite_mean([r[k] for r in self.conflicts])
                          for k in CONFLICT_COLUMNS[1:]}
        wall = self._wall_time()
        n_gpus = 1 if self.device.type == "cuda" else 0
        metrics = {
            "status": "complete", "spec_hash": self.spec_hash, "spec": spec.to_dict(), "run_uid": self.run_uid,
            # grid names (tags) when the workflow gives them: two grid students may share
            # one registry student with different kwargs (ablations)
            "dataset": spec.dataset, "labels": labels_name(spec),
            "student": str(spec.tags.get("student", spec.student)), "teacher": self._teacher_name(),
            "method": str(spec.tags.get("method", spec.method)), "method_args": self.method_args, "seed": spec.seed,
            "test_acc": float(accuracy(combine_heads(ce_t, kd_t, alpha, beta), y_t)),
            "test_acc_ce": float(accuracy(ce_t, y_t)), "test_acc_kd": float(accuracy(kd_t, y_t)),
            "val_acc": float(self.best["val_acc"]), "alpha": alpha, "beta": beta,
            "best_epoch": int(self.best["epoch"]), "epochs": spec.epochs,
            "teacher_test_acc": teacher_acc, "grad_cosine_mean": float(np.mean(cos)) if cos else None,
            **conflict_means,
            "wall_time_s": wall,
            "images_per_s": self.train_images / self.train_seconds if self.train_seconds > 0 else None,
            "gpu_hours": wall / 3600.0 * n_gpus, "device": str(self.device),
            "git_commit": self.git_commit, "mlflow_run_id": self.mlflow_run_id, "slurm_job_id": self.slurm_job_id,
        }
        atomic_write_json(self.run_dir / "metrics.json", metrics)
        self._save_final_checkpoint()  # after metrics.json: a kill in between leaves the full one (harmless)
        return metrics

    def _save_final_checkpoint(self) -> None:
        """Slim ``checkpoint.pt``; the run is done whether or not that can be written (a full
        disk keeps the full checkpoint, which serves evaluation as well)."""
        try:
            atomic_torch_save({"spec_hash": self.spec_hash, "epoch": self.epoch, "step": self.step,
                               "best": self.best, "final": True}, self.ckpt_path)
        except OutputError as e:
            say(f"warning: {e}; the run is complete, its full checkpoint stays")


def _cmd_train(args) -> int:
    spec = load_spec(args.spec, args.set or [])
    run_dir = args.out or spec.output_dir
    metrics = run_training(spec, run_dir)
    print(f"{run_dir}: test_acc {metrics['test_acc']:.2f} (ce {metrics['test_acc_ce']:.2f}, "
          f"kd {metrics['test_acc_kd']:.2f}; alpha {metrics['alpha']}, beta {metrics['beta']}, "
          f"best epoch {metrics['best_epoch']})")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("train", help="train one run from a spec (resumes; no-op when done)")
    p.add_argument("--spec", action="extend", nargs="+", required=True, metavar="FILE",
                   help="spec file(s) (YAML/JSON), merged in order (later ones win)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec key (dots nest)")
    p.add_argument("--out", default=None, metavar="RUN_DIR", help="run directory (overrides output_dir)")
    p.set_defaults(func=_cmd_train)
