"""``dho data check`` and ``dho split``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import ConfigError, DataError
from ..split import LabelSplit
from . import DATASETS, get_dataset
from .source import CheckReport

# Problems printed per dataset in text mode (all of them are in --json).
MAX_PRINTED_PROBLEMS = 20

CHECK_EPILOG = """\
Checks, per dataset: the folder, the split/list/class-name files (shape of every entry,
label range), that every listed image exists, and that --sample images per split
decode.  Every problem names the exact file and what was expected; a missing dataset
is reported with the files it was looked for at.  The image and class counts are
compared with the paper's Table 12 (the datasets it lists); a count that differs is
reported ("differs from the paper's Table 12: ...") but is not a problem.

Which datasets: those named with --dataset, else those of --suite (config.yaml's
`datasets` of that suite, and its `data_root` unless --root is given), else every
registered dataset.

Exit status: 1 if a named or configured dataset is missing, if a dataset that is present
has a problem, or, when checking every registered dataset, if none is present under
ROOT (an empty or wrong root).  0 otherwise; 2 if ROOT does not exist or a name is
unknown.

examples:
  python -m dho data check --root data                   # every registered dataset
  python -m dho data check --root data --dataset dtd --dataset eurosat
  python -m dho data check --suite fewshot               # the suite's datasets under its data_root
  python -m dho data check --root data --dataset dtd --json
"""


def _suite_datasets(config: str, suite: str) -> tuple[list[str], str | None]:
    """The datasets and data_root of ``suite`` in the config file (an evaluate suite: its
    evaluation datasets)."""
    from ..errors import load_yaml_file

    suites = (load_yaml_file(config, "config file") or {}).get("suites") or {}
    if suite not in suites:
        raise ConfigError(f"--suite {suite}: no such suite in {config}; suites: {', '.join(sorted(suites))}")
    entry = suites[suite] or {}
    datasets = entry.get("datasets") or (entry.get("evaluate") or {}).get("datasets") or []
    return [str(d) for d in datasets], entry.get("data_root")


def _root_hint(root: Path) -> str:
    """Why nothing was found under ``root``, when a dataset folder is one level off."""
    folders = {get_dataset(n, root).folder_name: n for n in DATASETS.names()}
    if root.name in folders:
        return f"; {root} itself looks like the folder of dataset '{folders[root.name]}': use --root {root.parent}"
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if any((child / f).is_dir() for f in folders):
            return f"; {child} holds dataset folders: use --root {child}"
    return ""


def _check(args: argparse.Namespace) -> int:
    names, suite_root = _suite_datasets(args.config, args.suite) if args.suite else (args.dataset or [], None)
    if args.suite and args.dataset:
        raise ConfigError("dho data check: give --dataset or --suite, not both")
    if args.root is None and suite_root is None:
        raise ConfigError("dho data check: give --root DIR (the folder holding the dataset folders)"
                          + (f"; suite '{args.suite}' sets no data_root" if args.suite else ""))
    root = Path(args.root if args.root is not None else suite_root)
    if not root.is_dir():
        raise DataError(f"data root not found: {root} (expected the folder holding the dataset folders)")
    named = bool(names)
    names = names or DATASETS.names()
    for name in names:
        DATASETS.get(name)  # unknown names fail before any work
    reports = [get_dataset(name, root).check(sample=args.sample) for name in names]
    failed = [r for r in reports if (r.found and r.problems) or (named and not r.found)]
    present = sum(r.found for r in reports)
    none_found = not named and present == 0
    if args.json:
        out = {"root": str(root), "ok": not failed and not none_found, "datasets": [r.to_dict() for r in reports]}
        print(json.dumps(out, indent=2))
    else:
        for r in reports:
            print(_format(r))
        differ = [r.dataset for r in reports if r.found and r.paper_differs]
        compared = [r.dataset for r in reports if r.found and r.paper]
        if compared:
            print(f"image/class counts vs the paper's Table 12: {len(compared) - len(differ)} of {len(compared)} "
                  f"dataset(s) equal" + (f"; differ: {', '.join(differ)}" if differ else ""))
        print(f"{len(reports)} dataset(s) checked under {root}: {present} present, "
              f"{len(failed)} failed" + ("" if named else " (missing ones are not errors without --dataset/--suite)"))
    if none_found:
        example = get_dataset(names[0], root)
        print(f"error: no dataset found under {root}: expected dataset folders such as {example.layout()}"
              f"{_root_hint(root)}", file=sys.stderr)
    return 1 if failed or none_found else 0


def _format(r: CheckReport) -> str:
    if not r.found:
        return f"{r.dataset:<16} MISSING  (no folder {r.folder}; expected {r.layout})"
    counts = "  ".join(f"{s} {n}" for s, n in r.counts.items())
    head = f"{r.dataset:<16} {'ok' if r.ok else 'PROBLEMS':<8} {counts}  classes {r.num_classes}  decoded {r.decoded}"
    lines = [head] + [f"    - {p}" for p in r.problems[:MAX_PRINTED_PROBLEMS]]
    if r.paper_differs:
        lines.append(f"    differs from the paper's Table 12: {', '.join(r.paper_differs)}")
    if len(r.problems) > MAX_PRINTED_PROBLEMS:
        lines.append(f"    - ... {len(r.problems) - MAX_PRINTED_PROBLEMS} more (see --json)")
    return "\n".join(lines)


def _split(args: argparse.Namespace) -> int:
    from .splits import make_split

    value = {"fewshot": args.shots, "percent": args.percent, "list": args.list_file}[args.kind]
    flag = {"fewshot": "--shots", "percent": "--percent", "list": "--list-file"}[args.kind]
    if value is None:
        raise ConfigError(f"dho split --kind {args.kind} needs {flag}")
    try:
        split = LabelSplit.percent(value) if args.kind == "percent" else LabelSplit(args.kind, value)
    except ConfigError as e:
        raise ConfigError(f"dho split {flag} {value}: {str(e).split(': ', 1)[-1]}") from None
    manifest = make_split(get_dataset(args.dataset, args.root), split.to_dict(), args.seed)
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
    check.add_argument("--root", help="folder holding the dataset folders (default with --suite: its data_root)")
    check.add_argument("--dataset", action="append", metavar="NAME",
                       help=f"dataset to check (repeatable; default: all). Known: {', '.join(DATASETS.names())}")
    check.add_argument("--suite", metavar="NAME", help="check the datasets of this suite of --config")
    check.add_argument("--config", default="config.yaml", metavar="FILE",
                       help="workflow config read by --suite (default: config.yaml)")
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
