"""Linear evaluation of a trained student's features (DHO paper, Sec. 3.3, Table 5: "freeze
the feature extractor g, and train a new prediction linear head h_LE on the top of g using
fully labeled data"; the standard protocol of Chen et al. 2020).

``dho linear-eval --run-dir RUN_DIR --root DIR --out FILE.json`` runs downstream of any
finished run: the run's student is rebuilt with its best-validation state (as ``dho
evaluate`` does), its shared feature ``z = g(x)`` is computed once for every image of the
run's dataset's ``train`` split (all labels used) and ``test`` split (eval transform,
eval mode), a new linear head is fitted on the train features (AdamW, seeded shuffles,
cross-entropy), and top-1 / top-5 test accuracy (percent) are reported.

Features are extracted once without augmentation (a cheaper variant of the protocol,
which trains the head on augmented crops; docs/DEVIATIONS.md).  The output JSON carries
the run's coordinates from ``metrics.json`` plus ``linear_top1``, ``linear_top5``,
``n_train``, ``n_test``, ``feature_dim``, the head's training settings and
``source_test_acc``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .errors import ConfigError, DataError
from .io import atomic_write_json

LINEAR_EVAL_VERSION = 1


@torch.no_grad()
def extract_features(student, dataset, batch_size: int, num_workers: int, device: torch.device,
                     progress: bool = False, desc: str = "features") -> tuple[torch.Tensor, torch.Tensor]:
    """``(z [N, D] float32 cpu, labels [N])`` of ``dataset`` through the frozen student."""
    from tqdm.auto import tqdm

    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    student.to(device).eval()
    feats, labels = [], []
    for x, y, _ in tqdm(loader, desc=desc, unit="batch", disable=not progress, file=sys.stderr):
        feats.append(student(x.to(device)).feature.float().cpu())
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def fit_linear_head(z: torch.Tensor, y: torch.Tensor, num_classes: int, epochs: int, lr: float,
                    weight_decay: float, batch_size: int, seed: int) -> torch.nn.Linear:
    """A linear head fitted on fixed features with AdamW and cross-entropy (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = torch.nn.Linear(z.shape[1], num_classes)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(epochs):
        for idx in torch.randperm(z.shape[0], generator=gen).split(batch_size):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(head(z[idx]), y[idx]).backward()
            opt.step()
    return head


def topk_accuracy(logits: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Percent of rows whose label is among the ``k`` largest logits (``k`` capped at C)."""
    top = logits.topk(min(k, logits.shape[1]), dim=-1).indices
    return 100.0 * (top == labels.unsqueeze(-1)).any(dim=-1).float().mean().item()


def linear_eval_run(run_dir: str | Path, root: str | Path, epochs: int = 100, lr: float = 1e-3,
                    weight_decay: float = 0.0, batch_size: int = 256, seed: int = 1, device: str = "auto",
                    num_workers: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Linear evaluation of a finished run (see the module docstring); returns the record."""
    from . import data
    from .evaluate import load_run_student, read_done_metrics, read_run_spec
    from .runtime import resolve_device

    for name, value, ok in (("--epochs", epochs, epochs >= 1), ("--lr", lr, lr > 0),
                            ("--batch-size", batch_size, batch_size >= 1),
                            ("--weight-decay", weight_decay, weight_decay >= 0)):
        if not ok:
            raise ConfigError(f"{name} = {value!r}: expected a positive number ({name} >= 0 for weight decay)")
    t0 = time.time()
    run_dir = Path(run_dir)
    metrics = read_done_metrics(run_dir)
    spec = read_run_spec(run_dir, metrics)
    dev = resolve_device(device)
    source = data.get_dataset(spec.dataset, root)
    data.assert_dataset_ok(source)
    splits = {}
    for split in ("train", "test"):
        items = source.items(split) if split in source.splits else []
        if not items:
            raise DataError(f"dataset '{spec.dataset}' under {root} has no {split} images")
        splits[split] = data.ImageList(source, items, data.eval_transform(spec.image_size))
    student, num_classes = load_run_student(run_dir, metrics, spec)
    workers = spec.num_workers if num_workers is None else num_workers
    bs = max(spec.batch_size, spec.unlabeled_batch_size)
    z_tr, y_tr = extract_features(student, splits["train"], bs, workers, dev, progress, "train features")
    z_te, y_te = extract_features(student, splits["test"], bs, workers, dev, progress, "test features")
    head = fit_linear_head(z_tr, y_tr, num_classes, epochs, lr, weight_decay, batch_size, seed)
    with torch.no_grad():
        logits = head(z_te)
    return {
        "status": "complete", "dataset": metrics["dataset"], "labels": metrics["labels"],
        "student": metrics["student"], "teacher": metrics["teacher"], "method": metrics["method"],
        "seed": metrics["seed"], "spec_hash": metrics["spec_hash"],
        "linear_top1": topk_accuracy(logits, y_te, 1), "linear_top5": topk_accuracy(logits, y_te, 5),
        "n_train": int(y_tr.shape[0]), "n_test": int(y_te.shape[0]), "feature_dim": int(z_tr.shape[1]),
        "epochs": epochs, "lr": lr, "weight_decay": weight_decay, "batch_size": batch_size, "head_seed": seed,
        "source_test_acc": float(metrics["test_acc"]), "run_dir": str(run_dir), "device": str(dev),
        "wall_time_s": time.time() - t0, "linear_eval_version": LINEAR_EVAL_VERSION,
    }


def _cmd_linear_eval(args) -> int:
    result = linear_eval_run(args.run_dir, args.root, epochs=args.epochs, lr=args.lr,
                             weight_decay=args.weight_decay, batch_size=args.batch_size, seed=args.seed,
                             device=args.device, num_workers=args.num_workers, progress=not args.quiet)
    atomic_write_json(args.out, result)
    print(f"{args.out}: linear evaluation top-1 {result['linear_top1']:.2f}, top-5 {result['linear_top5']:.2f} "
          f"({result['n_train']} train / {result['n_test']} test images, feature dim {result['feature_dim']})")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("linear-eval", help="freeze a finished run's student, fit a new linear head on the "
                                           "fully labeled train split, report top-1/top-5 (Table 5)")
    p.add_argument("--run-dir", required=True, metavar="RUN_DIR", help="a finished run directory")
    p.add_argument("--root", required=True, metavar="DIR", help="folder holding the run's dataset folder")
    p.add_argument("--out", required=True, metavar="FILE.json", help="record to write (atomic)")
    p.add_argument("--epochs", type=int, default=100, help="passes over the train features (default 100)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    p.add_argument("--weight-decay", type=float, default=0.0, help="AdamW weight decay (default 0)")
    p.add_argument("--batch-size", type=int, default=256, help="head training batch size (default 256)")
    p.add_argument("--seed", type=int, default=1, help="seed of the head's init and shuffles (default 1)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    p.add_argument("--num-workers", type=int, default=None, metavar="N", help="default: the run's num_workers")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_linear_eval)
