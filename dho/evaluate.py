"""Protocol 3: a trained run's best checkpoint evaluated on another dataset (ImageNet OOD).

``dho evaluate --run-dir RUN_DIR --dataset NAME --root DIR --out FILE.json`` rebuilds the
run's student from its ``spec.json`` (same student, same number of heads as the method,
same number of classes as the checkpoint's heads), loads the best-validation state from
``checkpoint.pt`` (``weights_only=True``), runs it on the ``test`` split of ``NAME`` and
reports the combined accuracy with the run's chosen (alpha, beta) (from ``metrics.json``)
and each head's own accuracy, in percent.

Datasets that cover only some of the classes (ImageNet-A/-R: ``class_subset``) are scored
as a classifier over those classes only: each head's logits are restricted to the
``class_subset`` columns *before* anything else (the softmax of the head combination
included), and the arg-max is mapped back through ``class_subset``.  Any other class-count
difference between the run's dataset and the evaluation dataset is a ConfigError.

The evaluation runs in float32 in eval mode, with the run's eval transform
(``Resize(image_size)`` + ``CenterCrop(image_size)``) and by default the batch size of the
run's own test evaluation: evaluating a run on its own dataset reproduces the
``test_acc*`` of its ``metrics.json``.

The output JSON (written atomically) carries the run's coordinates from ``metrics.json``
(``suite`` = the run's suite tag, ``dataset``, ``labels``, ``student``, ``teacher``,
``method``, ``seed``, ``spec_hash``) plus ``eval_dataset``, ``test_acc``, ``test_acc_ce``,
``test_acc_kd``, ``n_images``, ``n_classes`` (classes scored), ``alpha``, ``beta``,
``source_test_acc`` (the run's in-distribution test accuracy) and bookkeeping keys.

``dho evaluate-teacher --teacher FILE --name NAME --dataset NAME ...`` is the zero-shot
reference (Table 17's "CLIP zero-shot" rows): a teacher file (``dho teacher zeroshot``, made
on the evaluated dataset itself, so with its class list and prompts) scored on that test
split, class-subset aware in the same way (logits restricted to ``class_subset`` before the
arg-max).  Its record has the same keys, with ``method = "zero-shot"``, ``labels =
"zero-shot"``, ``student = teacher = NAME``, ``seed = 0``, ``dataset = eval_dataset`` (so
``source_test_acc = test_acc``), ``spec_hash = "zero-shot:NAME"`` and ``None`` for what a
teacher does not have (``test_acc_ce``, ``test_acc_kd``, ``alpha``, ``beta``).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from .errors import CheckpointError, ConfigError, DataError
from .io import atomic_write_json
from .rundir import METRICS_FILE, inspect_run

EVAL_VERSION = 1
#: ``method`` / ``labels`` of a zero-shot teacher's evaluation record.
ZERO_SHOT = "zero-shot"
#: Keys of the evaluation JSON (``dho.results.evals`` reads these).
EVAL_KEYS = ("status", "suite", "dataset", "labels", "split", "student", "teacher", "method", "seed", "spec_hash",
             "eval_dataset", "test_acc", "test_acc_ce", "test_acc_kd", "n_images", "n_classes", "alpha", "beta",
             "source_test_acc", "run_dir", "device", "wall_time_s", "eval_version")


# ---------------------------------------------------------------------------------------
# Reading a finished run
# ---------------------------------------------------------------------------------------
def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def read_done_metrics(run_dir: Path) -> dict[str, Any]:
    """The run's ``metrics.json`` if the run is done (:func:`dho.rundir.inspect_run`) and
    carries the (alpha, beta) an evaluation combines the heads with; DataError otherwise."""
    state = inspect_run(run_dir)
    if not state.done:
        raise DataError(f"{run_dir} is not a finished run directory: {state.why}")
    m = state.metrics
    for key in ("alpha", "beta"):
        if not _is_number(m[key]):
            raise DataError(f"{run_dir / METRICS_FILE}: key '{key}' = {m[key]!r}: expected a number")
    return m


def read_run_spec(run_dir: Path, metrics: dict[str, Any]):
    """The run's RunSpec from ``spec.json`` (or ``metrics.json``'s copy when there is no
    spec.json); DataError if it belongs to another spec than the finished result."""
    from .spec import RunSpec

    path = run_dir / "spec.json"
    if path.is_file():
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{path} is not valid JSON: {e}") from None
        spec = RunSpec.from_dict(d, source=str(path))
    else:
        spec = RunSpec.from_dict(metrics["spec"], source=f"{run_dir / 'metrics.json'} key 'spec'")
    if spec.hash != metrics["spec_hash"]:
        raise DataError(f"{path}: spec hash {spec.hash} differs from metrics.json's spec_hash "
                        f"{metrics['spec_hash']} (stale result: the run directory now holds another spec)")
    return spec


def load_best_state(run_dir: Path, spec_hash: str) -> dict[str, torch.Tensor]:
    """The best-validation ``state`` of ``checkpoint.pt`` (``weights_only=True``, memory-mapped)."""
    path = run_dir / "checkpoint.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("best"), dict):
        raise CheckpointError(f"checkpoint {path} is not a dho training checkpoint (no 'best' entry)")
    if ckpt.get("spec_hash") != spec_hash:
        raise CheckpointError(f"checkpoint {path} is for spec {ckpt.get('spec_hash')!r}, but metrics.json "
                              f"is for spec {spec_hash!r}")
    state = ckpt["best"].get("state")
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"checkpoint {path}: key 'best' holds no model state")
    return state


# ---------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------
def predictions(ce: torch.Tensor, kd: torch.Tensor, alpha: float, beta: float,
                class_subset: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Predicted labels ``(combined, ce head, kd head)`` for one batch of logits.

    With ``class_subset``, each head's logits are restricted to those columns first
    (the softmax of the combination is over the subset), and the arg-max is mapped back
    to the full label space.
    """
    from .inference import combine_heads

    idx = None
    if class_subset is not None:
        idx = torch.as_tensor(list(class_subset), dtype=torch.long, device=ce.device)
        ce, kd = ce.index_select(1, idx), kd.index_select(1, idx)
    preds = (combine_heads(ce, kd, alpha, beta).argmax(dim=-1), ce.argmax(dim=-1), kd.argmax(dim=-1))
    if idx is not None:
        preds = tuple(idx[p] for p in preds)
    return preds


def subset_argmax(logits: torch.Tensor, class_subset: Sequence[int] | None = None) -> torch.Tensor:
    """Arg-max of ``logits`` over ``class_subset``'s columns only (all columns without one),
    as labels of the full class list."""
    if class_subset is None:
        return logits.argmax(dim=-1)
    idx = torch.as_tensor(list(class_subset), dtype=torch.long, device=logits.device)
    return idx[logits.index_select(1, idx).argmax(dim=-1)]


def state_num_classes(state: dict[str, torch.Tensor], run_dir: Path) -> int:
    """Number of classes of the student in ``state`` (rows of its CE head's last weight matrix:
    a method may make the head non-linear, ``ce_head.0.weight`` ... ``ce_head.4.weight``; a CoOp
    student has prompt heads and one row of class-prompt tokens per class, ``prompt_tokens``)."""
    heads = [v for k, v in state.items() if k.startswith("ce_head.") and k.endswith("weight")
             and isinstance(v, torch.Tensor) and v.ndim == 2]
    head = heads[-1] if heads else state.get("prompt_tokens")  # a CoOp student: one token row per class
    if not isinstance(head, torch.Tensor):
        raise CheckpointError(f"checkpoint {run_dir / 'checkpoint.pt'}: the best state has no 'ce_head.weight' "
                              f"matrix (not a dho student)")
    return int(head.shape[0])


def _eval_student(spec, method, state: dict[str, torch.Tensor], num_classes: int, run_dir: Path):
    """The run's student, built without downloading anything, with ``state`` loaded."""
    from .models import build_student

    # every weight comes from the checkpoint: no pretrained/explicit weights, no text-tower head init
    kwargs = {k: v for k, v in spec.student_kwargs.items() if k != "weights"}
    student = build_student(spec.student, num_classes, heads=method.heads, pretrained=False,
                            classnames=None, templates=None, **kwargs)
    method.setup_student(student, method.resolve_args(spec.method_args), None)  # its heads, not training parts
    state = {k: v for k, v in state.items() if not k.startswith("method_parts.")}
    try:
        student.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise CheckpointError(f"checkpoint {run_dir / 'checkpoint.pt'} does not fit student '{spec.student}' "
                              f"with {method.heads} head(s): {' '.join(first[:2])[:300]}") from None
    return student


def load_run_student(run_dir: Path, metrics: dict[str, Any], spec) -> tuple[torch.nn.Module, int]:
    """The finished run's student with its best-validation state (cpu), and its class count."""
    from .methods import METHODS

    state = load_best_state(run_dir, metrics["spec_hash"])
    num_classes = state_num_classes(state, run_dir)
    return _eval_student(spec, METHODS.get(spec.method), state, num_classes, run_dir), num_classes


def test_items(source, root) -> list:
    """``source``'s test items (checked: the dataset is usable and has test images)."""
    from . import data

    data.assert_dataset_ok(source)
    if "test" not in source.splits:
        raise DataError(f"dataset '{source.name}' has no test split (splits: {', '.join(source.splits)})")
    items = source.items("test")
    if not items:
        raise DataError(f"dataset '{source.name}' under {root} has no test images")
    return items


def checked_subset(source, num_classes: int) -> list[int] | None:
    subset = source.class_subset
    if subset is not None and (not subset or min(subset) < 0 or max(subset) >= num_classes):
        raise DataError(f"dataset '{source.name}': class_subset out of range for {num_classes} classes")
    return subset


def teacher_accuracy(teacher, loader, class_subset: Sequence[int] | None = None, device=None,
                     progress: bool = False, desc: str = "teacher eval") -> tuple[float, int]:
    """(top-1 % , images) of a teacher on ``loader``'s ``(x01, label, _)`` batches, the arg-max
    taken over ``class_subset`` when given."""
    from tqdm.auto import tqdm

    correct, n = 0, 0
    with torch.inference_mode():
        for x01, y, _ in tqdm(loader, desc=desc, unit="batch", disable=not progress, file=sys.stderr):
            x01 = x01 if device is None else x01.to(device)
            pred = subset_argmax(teacher(x01).float(), class_subset).cpu()
            correct += int((pred == torch.as_tensor(y)).sum())
            n += int(len(y))
    return (100.0 * correct / n if n else math.nan), n


def evaluate_teacher(teacher_file: str | Path, name: str, dataset: str, root: str | Path, device: str = "auto",
                     batch_size: int = 256, num_workers: int = 2, progress: bool = True) -> dict[str, Any]:
    """Zero-shot reference: a teacher file scored on ``dataset``'s test split (the module docstring)."""
    from . import data
    from .models.teachers import load_teacher
    from .runtime import resolve_device

    t0 = time.time()
    if batch_size < 1 or num_workers < 0:
        raise ConfigError(f"--batch-size = {batch_size}, --num-workers = {num_workers}: expected >= 1 and >= 0")
    if not name or "/" in name:
        raise ConfigError(f"--name = {name!r}: expected a non-empty name without '/'")
    dev = resolve_device(device)
    source = data.get_dataset(dataset, root)
    items = test_items(source, root)
    teacher = load_teacher(teacher_file, dev, expected_classes=source.classnames).eval()
    subset = checked_subset(source, len(source.classnames))
    loader = torch.utils.data.DataLoader(
        data.ImageList(source, items, data.eval_transform(teacher.image_size)), batch_size=batch_size,
        shuffle=False, num_workers=num_workers, pin_memory=dev.type == "cuda")
    acc, n = teacher_accuracy(teacher, loader, subset, dev, progress, desc=f"zero-shot {name} on {dataset}")
    return {
        "status": "complete", "suite": None, "dataset": dataset, "labels": ZERO_SHOT, "split": None,
        "student": name, "teacher": name, "method": ZERO_SHOT, "seed": 0, "spec_hash": f"{ZERO_SHOT}:{name}",
        "eval_dataset": dataset, "test_acc": acc, "test_acc_ce": None, "test_acc_kd": None, "n_images": n,
        "n_classes": len(subset) if subset is not None else len(source.classnames), "alpha": None, "beta": None,
        "source_test_acc": acc, "run_dir": str(teacher_file), "device": str(dev), "wall_time_s": time.time() - t0,
        "eval_version": EVAL_VERSION, "model": teacher.model, "pretrained": teacher.pretrained,
    }


def evaluate_run(run_dir: str | Path, dataset: str, root: str | Path, device: str = "auto",
                 batch_size: int | None = None, num_workers: int | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Evaluate the best checkpoint of a finished run on ``dataset``'s test split; return
    the evaluation record (see the module docstring)."""
    from . import data
    from .runtime import resolve_device

    t0 = time.time()
    run_dir = Path(run_dir)
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"--batch-size = {batch_size}: expected an integer >= 1")
    if num_workers is not None and num_workers < 0:
        raise ConfigError(f"--num-workers = {num_workers}: expected an integer >= 0")
    metrics = read_done_metrics(run_dir)
    spec = read_run_spec(run_dir, metrics)
    dev = resolve_device(device)

    source = data.get_dataset(dataset, root)
    items = test_items(source, root)

    student, num_classes = load_run_student(run_dir, metrics, spec)
    if source.num_classes != num_classes:
        raise ConfigError(f"dataset '{dataset}' has {source.num_classes} classes but run {run_dir} was trained on "
                          f"'{spec.dataset}' with {num_classes} classes: expected a dataset over the same "
                          f"class list (a partial one declares class_subset)")
    subset = checked_subset(source, num_classes)

    alpha, beta = float(metrics["alpha"]), float(metrics["beta"])
    bs = batch_size or max(spec.batch_size, spec.unlabeled_batch_size)
    workers = spec.num_workers if num_workers is None else num_workers
    loader = torch.utils.data.DataLoader(
        data.ImageList(source, items, data.eval_transform(spec.image_size)), batch_size=bs, shuffle=False,
        num_workers=workers, drop_last=False, pin_memory=dev.type == "cuda")
    student.to(dev).eval()
    correct = torch.zeros(3, dtype=torch.long)
    n = 0
    from tqdm.auto import tqdm

    with torch.inference_mode():
        for x, y, _ in tqdm(loader, desc=f"evaluate {dataset}", unit="batch", disable=not progress,
                            file=sys.stderr):
            out = student(x.to(dev, non_blocking=True))
            y = y.to(dev)
            preds = predictions(out.ce.float(), out.kd.float(), alpha, beta, subset)
            correct += torch.stack([(p == y).sum() for p in preds]).cpu()
            n += int(y.shape[0])
    acc = [100.0 * int(c) / n for c in correct]
    tags = spec.tags if isinstance(spec.tags, dict) else {}
    return {
        "status": "complete",
        "suite": str(tags["suite"]) if "suite" in tags else None,
        "dataset": metrics["dataset"], "labels": metrics["labels"], "split": spec.split,
        "student": metrics["student"], "teacher": metrics["teacher"], "method": metrics["method"],
        "seed": metrics["seed"], "spec_hash": metrics["spec_hash"],
        "eval_dataset": dataset, "test_acc": acc[0], "test_acc_ce": acc[1], "test_acc_kd": acc[2],
        "n_images": n, "n_classes": len(subset) if subset is not None else num_classes,
        "alpha": alpha, "beta": beta, "source_test_acc": float(metrics["test_acc"]),
        "run_dir": str(run_dir), "device": str(dev), "wall_time_s": time.time() - t0,
        "eval_version": EVAL_VERSION,
    }


# ---------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------
def _cmd_evaluate(args) -> int:
    result = evaluate_run(args.run_dir, args.dataset, args.root, device=args.device, batch_size=args.batch_size,
                          num_workers=args.num_workers, progress=not args.quiet)
    atomic_write_json(args.out, result)
    print(f"{args.out}: {args.dataset} test_acc {result['test_acc']:.2f} (ce {result['test_acc_ce']:.2f}, "
          f"kd {result['test_acc_kd']:.2f}; alpha {result['alpha']}, beta {result['beta']}; "
          f"{result['n_images']} images, {result['n_classes']} classes)")
    return 0


def _cmd_evaluate_teacher(args) -> int:
    result = evaluate_teacher(args.teacher, args.name, args.dataset, args.root, device=args.device,
                              batch_size=args.batch_size, num_workers=args.num_workers, progress=not args.quiet)
    atomic_write_json(args.out, result)
    print(f"{args.out}: zero-shot {args.name} on {args.dataset} test_acc {result['test_acc']:.2f} "
          f"({result['n_images']} images, {result['n_classes']} classes)")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a finished run's best checkpoint on another dataset (OOD)")
    p.add_argument("--run-dir", required=True, metavar="RUN_DIR", help="a finished run directory")
    p.add_argument("--dataset", required=True, metavar="NAME", help="dataset whose test split is evaluated")
    p.add_argument("--root", required=True, metavar="DIR", help="folder holding the dataset folders")
    p.add_argument("--out", required=True, metavar="FILE.json", help="evaluation record to write (atomic)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    p.add_argument("--batch-size", type=int, default=None, metavar="N",
                   help="default: the run's evaluation batch size")
    p.add_argument("--num-workers", type=int, default=None, metavar="N", help="default: the run's num_workers")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_evaluate)

    t = sub.add_parser("evaluate-teacher", help="zero-shot reference: a teacher file on a dataset's test split, "
                       "as an evaluation record (class-subset aware)")
    t.add_argument("--teacher", required=True, metavar="FILE", help="teacher file (dho teacher zeroshot) made on "
                   "the evaluated dataset")
    t.add_argument("--name", required=True, help="the teacher's name in the table (student/teacher columns)")
    t.add_argument("--dataset", required=True, metavar="NAME", help="dataset whose test split is evaluated")
    t.add_argument("--root", required=True, metavar="DIR", help="folder holding the dataset folders")
    t.add_argument("--out", required=True, metavar="FILE.json", help="evaluation record to write (atomic)")
    t.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:N")
    t.add_argument("--batch-size", type=int, default=256, metavar="N", help="batch size (256)")
    t.add_argument("--num-workers", type=int, default=2, metavar="N", help="data loader workers (2)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=_cmd_evaluate_teacher)
