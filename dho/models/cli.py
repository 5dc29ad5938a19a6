"""``dho students`` and ``dho teacher zeroshot | tip-adapter-f | eval``."""

from __future__ import annotations

import argparse

from ..errors import ConfigError


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from None


def _loader(dataset, batch_size: int, shuffle: bool, num_workers: int, seed: int = 0):
    import torch

    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                                       num_workers=num_workers)


def _cmd_students(args) -> int:
    from .students import STUDENTS

    for name in STUDENTS:
        print(f"{name:<18} {STUDENTS.describe(name)}")
    return 0


def _cmd_zeroshot(args) -> int:
    from ..data import get_dataset
    from .teachers import build_zeroshot_teacher, save_teacher

    source = get_dataset(args.dataset, args.root)
    teacher = build_zeroshot_teacher(args.model, args.pretrained, source.classnames,
                                     source.prompt_templates(args.prompts), device=_device(args.device),
                                     progress=not args.quiet, text_norm=args.text_norm,
                                     prompt_names=source.prompt_classnames(args.prompts))
    save_teacher(teacher, args.out)
    print(f"zero-shot teacher {args.model} ({args.pretrained}), {teacher.num_classes} classes, "
          f"prompts {args.prompts} -> {args.out}")
    return 0


def _cmd_tip_adapter(args) -> int:
    import torch

    from ..data import ImageList, eval_transform, get_dataset, train_transform
    from ..data.splits import SplitManifest
    from ..errors import DataError
    from .teachers import load_teacher, save_teacher
    from .tip_adapter import fit_tip_adapter_f, search_grid, tip_adapter_settings

    settings = tip_adapter_settings(args.dataset)
    for key in ("epochs", "augment_epochs", "lr", "init_alpha", "init_beta"):
        if getattr(args, key) is None:
            setattr(args, key, settings[key])
    for key in ("epochs", "augment_epochs", "batch_size"):
        if getattr(args, key) < 1:
            raise ConfigError(f"--{key.replace('_', '-')} = {getattr(args, key)}: expected an integer >= 1")
    if not args.lr > 0:
        raise ConfigError(f"--lr = {args.lr}: expected a positive number")
    torch.manual_seed(args.seed)
    source = get_dataset(args.dataset, args.root)
    manifest = SplitManifest.load(args.split_manifest)
    if manifest.dataset != source.name:
        raise DataError(f"split manifest {args.split_manifest} is for dataset '{manifest.dataset}', "
                        f"not '{source.name}'")
    base = load_teacher(args.base, _device(args.device), expected_classes=source.classnames)
    image_size = args.image_size or base.image_size
    labeled = ImageList(source, manifest.labeled, train_transform(image_size, args.crop_scale_min))
    val = ImageList(source, source.items("val"), eval_transform(image_size))
    if len(labeled) == 0 or len(val) == 0:
        raise DataError(f"Tip-Adapter-F needs labeled and val images: got {len(labeled)} labeled "
                        f"({args.split_manifest}) and {len(val)} val ({source.name})")
    teacher = fit_tip_adapter_f(
        base, _loader(labeled, args.batch_size, True, args.num_workers, args.seed),
        _loader(val, args.batch_size, False, args.num_workers),
        augment_epochs=args.augment_epochs, epochs=args.epochs, lr=args.lr, init_alpha=args.init_alpha,
        init_beta=args.init_beta, betas=search_grid(settings["search_scale"][0], settings["search_step"][0]),
        alphas=search_grid(settings["search_scale"][1], settings["search_step"][1]), progress=not args.quiet,
        epoch_loader=(None if args.epoch_on == "val" else _loader(
            ImageList(source, source.items("test"), eval_transform(image_size)), args.batch_size, False,
            args.num_workers)))
    save_teacher(teacher, args.out)
    print(f"Tip-Adapter-F teacher ({len(labeled)} shots, alpha_tip={teacher.alpha_tip:.3g}, "
          f"beta_tip={teacher.beta_tip:.3g}) -> {args.out}")
    return 0


def _cmd_eval(args) -> int:
    from ..data import ImageList, eval_transform, get_dataset
    from ..errors import DataError
    from ..evaluate import checked_subset, teacher_accuracy
    from ..io import atomic_write_json
    from .teachers import load_teacher

    source = get_dataset(args.dataset, args.root)
    device = _device(args.device)
    teacher = load_teacher(args.teacher, device, expected_classes=source.classnames)
    items = source.items(args.split)
    if not items:
        raise DataError(f"dataset {source.name} under {args.root} has no {args.split} images")
    loader = _loader(ImageList(source, items, eval_transform(args.image_size or teacher.image_size)),
                     args.batch_size, False, args.num_workers)
    subset = checked_subset(source, len(source.classnames))  # ImageNet-A/-R: scored over their classes
    acc, _ = teacher_accuracy(teacher, loader, subset, device, progress=not args.quiet,
                              desc=f"teacher eval ({args.split})")
    result = {"teacher": str(args.teacher), "kind": teacher.kind, "model": teacher.model,
              "pretrained": teacher.pretrained, "dataset": source.name, "split": args.split,
              "num_images": len(items), "accuracy": acc}
    if args.out:
        atomic_write_json(args.out, result)
    print(f"{teacher.kind} teacher on {source.name} {args.split}: {acc:.2f}% ({len(items)} images)")
    return 0


def add_cli(sub) -> None:
    from ..data.templates import PROMPT_SETS, TEXT_NORMS

    p = sub.add_parser("students", help="list the student architectures")
    p.set_defaults(func=_cmd_students)

    teacher = sub.add_parser("teacher", help="make or evaluate a CLIP teacher file")
    tsub = teacher.add_subparsers(dest="teacher_command", metavar="COMMAND")
    tsub.required = True

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument("--dataset", required=True, help="dataset registry name")
        q.add_argument("--root", required=True, help="folder holding the dataset folders")
        q.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
        q.add_argument("--quiet", action="store_true", help="no progress bars")

    z = tsub.add_parser("zeroshot", help="zero-shot CLIP teacher from prompt templates")
    common(z)
    z.add_argument("--model", required=True, help="open_clip model name, e.g. RN50-quickgelu")
    z.add_argument("--pretrained", required=True, help="open_clip pretrained tag (e.g. openai) or weights file")
    z.add_argument("--prompts", default="authors", choices=PROMPT_SETS,
                   help="prompt templates: authors (DHO code's: one per fine-grained dataset, 7 for "
                        "ImageNet; default) or clip (CLIP's ensembles, 80 for ImageNet)")
    z.add_argument("--text-norm", default="auto", choices=("auto",) + TEXT_NORMS,
                   help="how prompt embeddings form a class column; auto = the authors' choice for this "
                        "model (mean_of_normalized for dfn5b, else renormalized)")
    z.add_argument("--out", required=True, help="teacher file to write")
    z.set_defaults(func=_cmd_zeroshot)

    t = tsub.add_parser("tip-adapter-f", help="few-shot Tip-Adapter-F teacher on a split's labeled shots; "
                        "settings per dataset from the authors' configs (dho/models/tip_adapter_settings.json)")
    common(t)
    t.add_argument("--base", required=True, help="zero-shot teacher file (dho teacher zeroshot)")
    t.add_argument("--split-manifest", required=True, help="split manifest (dho split) with the labeled shots")
    t.add_argument("--image-size", type=int, default=None,
                   help="augmentation / eval crop size (default: the teacher's input size)")
    t.add_argument("--crop-scale-min", type=float, default=0.5, help="RandomResizedCrop min scale (0.5)")
    t.add_argument("--augment-epochs", type=int, default=None,
                   help="augmented passes averaged into the cache (default: the dataset's setting, 10)")
    t.add_argument("--epochs", type=int, default=None,
                   help="key fine-tuning epochs (default: the dataset's setting: 200 fine-grained, 20 ImageNet)")
    t.add_argument("--lr", type=float, default=None, help="AdamW learning rate (default: the dataset's, 1e-3)")
    t.add_argument("--init-alpha", type=float, default=None, help="alpha_tip while fine-tuning (default: the dataset's)")
    t.add_argument("--init-beta", type=float, default=None, help="beta_tip while fine-tuning (default: the dataset's)")
    t.add_argument("--epoch-on", default="val", choices=("val", "test"),
                   help="split the fine-tuning epoch is chosen on: val (default) or test (Tip-Adapter's code; "
                        "a choice on test images, docs/DEVIATIONS.md)")
    t.add_argument("--batch-size", type=int, default=256, help="batch size (256)")
    t.add_argument("--num-workers", type=int, default=2, help="data loader workers (2)")
    t.add_argument("--seed", type=int, default=1, help="seed of augmentation and shuffling (1)")
    t.add_argument("--out", required=True, help="teacher file to write")
    t.set_defaults(func=_cmd_tip_adapter)

    e = tsub.add_parser("eval", help="top-1 accuracy of a teacher file on a split")
    common(e)
    e.add_argument("--teacher", required=True, help="teacher file")
    e.add_argument("--split", default="test", choices=("train", "val", "test"), help="split (test)")
    e.add_argument("--image-size", type=int, default=None,
                   help="eval resize + centre crop size (default: the teacher's input size)")
    e.add_argument("--batch-size", type=int, default=256, help="batch size (256)")
    e.add_argument("--num-workers", type=int, default=2, help="data loader workers (2)")
    e.add_argument("--out", default=None, help="JSON file for the result (written atomically)")
    e.set_defaults(func=_cmd_eval)

    from ..teacher_cache import add_cli as add_cache_cli

    add_cache_cli(tsub)
