"""``dho demo data`` (write the shapes dataset), ``dho demo teacher`` (pretrain the tiny CLIP)
and ``dho demo student`` (pretrain the narrow ResNet-18 student on a disjoint task)."""

from __future__ import annotations

import argparse
import time


def _cmd_data(args) -> int:
    from .data import ShapesParams, generate_shapes

    train, val, test = args.per_class
    params = ShapesParams(seed=args.seed, train=train, val=val, test=test, size=args.size)
    t0 = time.perf_counter()
    folder, generated = generate_shapes(args.root, params, progress=not args.quiet)
    n = len(params.to_dict()["classnames"])
    counts = f"{n} classes, {train}/{val}/{test} train/val/test images per class, {args.size} px, seed {args.seed}"
    if generated:
        print(f"demo dataset written to {folder} ({counts}) in {time.perf_counter() - t0:.1f} s")
    else:
        print(f"demo dataset {folder} is already complete ({counts}); nothing to do")
    return 0


def _cmd_teacher(args) -> int:
    from ..data.datasets.shapes import Shapes
    from ..io import atomic_write_json
    from ..models.teachers import build_zeroshot_teacher
    from .data import ShapesParams, class_names, render_split
    from .teacher import MODEL_NAME, PretrainConfig, pretrain_tiny_clip, save_tiny_clip, teacher_accuracy

    config = PretrainConfig(seed=args.seed, steps=args.steps, batch_size=args.batch_size, pool=args.pool,
                            lr=args.lr, threads=args.threads)
    model, stats = pretrain_tiny_clip(config, progress=not args.quiet)
    save_tiny_clip(model, args.out)
    print(f"{MODEL_NAME} ({stats['parameters']:,} parameters) pretrained in {stats['render_s'] + stats['train_s']:.1f} s "
          f"(seed {args.seed}, {args.steps} steps, final loss {stats['final_loss']:.3f}) -> {args.out}")
    if not args.no_eval:
        # the saved file, through the zero-shot teacher exactly as the pipeline builds it
        names = class_names()
        teacher = build_zeroshot_teacher(MODEL_NAME, str(args.out), names, Shapes.templates, progress=False)
        images, labels = render_split(ShapesParams(seed=args.data_seed), "test")
        acc = teacher_accuracy(teacher, images, labels)
        stats["zeroshot_test_acc"] = acc
        stats["eval_data_seed"] = args.data_seed
        print(f"zero-shot accuracy on the demo test split (data seed {args.data_seed}, {len(labels)} images): "
              f"{acc:.1f}% (chance {100 / len(names):.1f}%)")
    if args.stats:
        atomic_write_json(args.stats, {"weights": str(args.out), **stats})
    return 0


def _cmd_student(args) -> int:
    from ..io import atomic_write_json
    from .student import StudentPretrainConfig, pretrain_student, save_student

    config = StudentPretrainConfig(seed=args.seed, width=args.width, size=args.size, steps=args.steps,
                                   batch_size=args.batch_size, pool=args.pool, lr=args.lr,
                                   threads=args.threads)
    student, stats = pretrain_student(config, progress=not args.quiet)
    save_student(student, args.out)
    acc = ", ".join(f"{k} {v:.1f}%" for k, v in stats["heldout_acc"].items())
    print(f"demo student resnet18 (width {args.width}, {args.size} px, {stats['parameters']:,} parameters) "
          f"pretrained in {stats['render_s'] + stats['train_s']:.1f} s (seed {args.seed}, {args.steps} steps, "
          f"final loss {stats['final_loss']:.3f}; held-out {acc}) -> {args.out}")
    if args.stats:
        atomic_write_json(args.stats, {"weights": str(args.out), **stats})
    return 0


def _nonnegative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _add_pretrain_args(p, config, *, out: str, batch: str) -> None:
    """The flags `demo teacher` and `demo student` share, with ``config``'s defaults."""
    p.add_argument("--out", required=True, help=out)
    p.add_argument("--seed", type=_nonnegative_int, default=config.seed,
                   help=f"pretraining seed (default {config.seed})")
    p.add_argument("--steps", type=_positive_int, default=config.steps,
                   help=f"optimizer steps (default {config.steps})")
    p.add_argument("--batch-size", type=_positive_int, default=config.batch_size,
                   help=f"{batch} (default {config.batch_size})")
    p.add_argument("--pool", type=_positive_int, default=config.pool,
                   help=f"distinct pretraining images (default {config.pool})")
    p.add_argument("--lr", type=_positive_float, default=config.lr, help=f"peak learning rate (default {config.lr})")
    p.add_argument("--threads", type=_positive_int, default=config.threads,
                   help=f"CPU threads; the weights depend on it, not on the machine (default {config.threads})")
    p.add_argument("--stats", default=None, metavar="FILE.json",
                   help="also write the pretraining statistics (and accuracy) as JSON")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar on a terminal (a log file still gets a line per tenth of the work)")


def add_cli(sub) -> None:
    from .data import ShapesParams
    from .student import StudentPretrainConfig
    from .teacher import PretrainConfig

    demo = sub.add_parser("demo", help="offline demo: synthetic shapes dataset, tiny CLIP teacher, "
                                       "pretrained student")
    dsub = demo.add_subparsers(dest="demo_command", metavar="COMMAND")
    dsub.required = True

    d = ShapesParams()
    p = dsub.add_parser("data", help="write the procedurally generated 'shapes' dataset (CoOp layout)")
    p.add_argument("--root", required=True, help="folder to hold the dataset folder (writes ROOT/shapes)")
    p.add_argument("--seed", type=_nonnegative_int, default=d.seed, help=f"image seed (default {d.seed})")
    p.add_argument("--per-class", type=_positive_int, nargs=3, default=[d.train, d.val, d.test],
                   metavar=("TRAIN", "VAL", "TEST"),
                   help=f"images per class in each split (default {d.train} {d.val} {d.test})")
    p.add_argument("--size", type=_positive_int, default=d.size, help=f"image size in pixels (default {d.size})")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar on a terminal (a log file still gets a line per tenth of the work)")
    p.set_defaults(func=_cmd_data)

    t = dsub.add_parser("teacher", help="pretrain the tiny CLIP teacher (dho-tiny-clip) on synthetic captions")
    _add_pretrain_args(t, PretrainConfig(), out="weights file to write (open_clip state_dict)",
                       batch="image-caption pairs per step")
    t.add_argument("--data-seed", type=_nonnegative_int, default=ShapesParams().seed,
                   help="seed of the demo dataset whose test split the teacher is evaluated on "
                        f"(default {ShapesParams().seed})")
    t.add_argument("--no-eval", action="store_true", help="skip the zero-shot evaluation")
    t.set_defaults(func=_cmd_teacher)

    c = StudentPretrainConfig()
    s = dsub.add_parser("student", help="pretrain the demo's narrow ResNet-18 student on shapes/textures "
                                        "disjoint from the benchmark (its 'ImageNet')")
    _add_pretrain_args(s, c, out="weights file to write (torchvision ResNet-18 state dict, "
                                 "for student_kwargs.weights)", batch="images per step")
    s.add_argument("--width", type=_positive_int, default=c.width,
                   help=f"channels of the first ResNet stage, as the suite's student kwarg (default {c.width})")
    s.add_argument("--size", type=_positive_int, default=c.size,
                   help=f"image size in pixels, as the suite's student image_size (default {c.size})")
    s.set_defaults(func=_cmd_student)
