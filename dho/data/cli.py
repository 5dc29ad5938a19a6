"""``dho data check`` and ``dho split``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ConfigError, DataError
from . import DATASETS, get_dataset
from .source import CheckReport

# Problems printed per dataset in text mode (all of them are in --json).
MAX_PRINTED_PROBLEMS = 20

CHECK_EPILOG = """\
Checks, per dataset: the folder, the split/list/class-name files (shape of every entry,
label range), that every listed image exists, and that --sample images per split
decode.  Every problem names the exact file and what was expected.

Exit status: with --dataset NAME ..., 1 if any named dataset is missing or has a
problem.  Without --dataset, every registered dataset is checked, datasets absent
from ROOT are reported as missing (not an error), and the status is 1 only if a
dataset that is present has a problem.  0 otherwise; 2 if ROOT does not exist.
"""


def _check(args: argparse.Namespace) -> int:
    root = Path(args.root)
    if not root.is_dir():
        raise DataError(f"data root not found: {root} (expected the folder holding the dataset folders)")
    names = args.dataset or DATASETS.names()
    for name in names:
        DATASETS.get(name)  # unknown names fail before any work
    reports = [get_dataset(name, root).check(sample=args.sample) for name in names]
    named = bool(args.dataset)
    failed = [r for r in reports if (r.found and r.problems) or (named and not r.found)]
    if args.json:
        out = {"root": str(root), "ok": not failed, "datasets": [r.to_dict() for r in reports]}
        print(json.dumps(out, indent=2))
    else:
        for r in reports:
            print(_format(r))
        present = sum(r.found for r in reports)
        print(f"{len(reports)} dataset(s) checked under {root}: {present} present, "
              f"{len(failed)} with problems" + ("" if named else " (missing ones are not errors without --dataset)"))
    return 1 if failed else 0


def _format(r: CheckReport) -> str:
    if not r.found:
        return f"{r.dataset:<16} MISSING  (no folder {r.folder})"
    counts = "  ".join(f"{s} {n}" for s, n in r.counts.items())
    head = f"{r.dataset:<16} {'ok' if r.ok else 'PROBLEMS':<8} {counts}  classes {r.num_classes}  decoded {r.decoded}"
    lines = [head] + [f"    - {p}" for p in r.problems[:MAX_PRINTED_PROBLEMS]]
    if len(r.problems) > MAX_PRINTED_PROBLEMS:
        lines.append(f"    - ... {len(r.problems) - MAX_PRINTED_PROBLEMS} more (see --json)")
    return "\n".join(lines)


def _split(args: argparse.Namespace) -> int:
    from .splits import make_split

    value = {"fewshot": args.shots, "percent": args.percent, "list": args.list_file}[args.kind]
    if value is None:
        flag = {"fewshot": "--shots", "percent": "--percent", "list": "--list-file"}[args.kind]
        raise ConfigError(f"dho split --kind {args.kind} needs {flag}")
    key = {"fewshot": "shots", "percent": "percent", "list": "file"}[args.kind]
    if args.kind == "percent" and float(value).is_integer():
        value = int(value)
    manifest = make_split(get_dataset(args.dataset, args.root), {"kind": args.kind, key: value}, args.seed)
    manifest.save(args.out)
    print(f"wrote {args.out}: {args.dataset} {manifest.label_name} seed {args.seed}: "
          f"{len(manifest.labeled)} labeled, {len(manifest.unlabeled)} unlabeled (hash {manifest.hash[:16]})")
    return 0


def add_cli(subparsers) -> None:
    """Add ``data check`` and ``split``."""
    data = subparsers.add_parser("data", help="inspect datasets on disk")
    dsub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    dsub.required = True
    check = dsub.add_parser("check", help="check dataset layouts, split files and images",
                            epilog=CHECK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    check.add_argument("--root", required=True, help="folder holding the dataset folders")
    check.add_argument("--dataset", action="append", metavar="NAME",
                       help=f"dataset to check (repeatable; default: all). Known: {', '.join(DATASETS.names())}")
    check.add_argument("--sample", type=int, default=8, metavar="K", help="images decoded per split (default 8)")
    check.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    check.set_defaults(func=_check)

    split = subparsers.add_parser("split", help="write a label-split manifest (labeled/unlabeled train images)")
    split.add_argument("--dataset", required=True, metavar="NAME")
    split.add_argument("--root", required=True, help="folder holding the dataset folders")
    split.add_argument("--kind", required=True, choices=("fewshot", "percent", "list"))
    split.add_argument("--shots", type=int, help="labeled images per class (--kind fewshot)")
    split.add_argument("--percent", type=float, help="percent of each class labeled (--kind percent)")
    split.add_argument("--list-file", help="SimCLRv2-style list of train file names, one per line (--kind list); "
                       "used as given if it exists, else looked up in the dataset's folder")
    split.add_argument("--seed", type=int, required=True)
    split.add_argument("--out", required=True, metavar="MANIFEST.json")
    split.set_defaults(func=_split)
