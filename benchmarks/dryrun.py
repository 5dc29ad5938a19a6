"""Benchmark 3: dry-run (DAG build) time and job count per suite, and for all together.

    python -m benchmarks.dryrun                     # every suite in config.yaml, then all
    python -m benchmarks.dryrun --suites ci,fewshot --repeat 3 --json dryrun.json
    python -m benchmarks.dryrun --all-only --repeat 3 --ref fafdda1   # before/after, side by side

Each figure is one ``snakemake -n --config suite=X`` from the repository root (what a
user types), in a fresh process: wall seconds and the CPU seconds it used (CPU time is
the steadier figure on a shared machine), and the job count of its "Job stats" table.
The best of ``--repeat`` runs is reported.  ``--ref COMMIT`` also times the workflow and
package of that commit (``git archive`` into a scratch folder, its own results there),
alternating with this tree's figure after one untimed warm-up each (which writes the spec
files), so that both see the same machine load.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import yaml

from .common import REPO, bench_env, copy_workflow, machine, machine_line, run_timed, table, write_json


def suite_names(config: Path) -> list[str]:
    return list(yaml.safe_load(config.read_text())["suites"])


def dry_run(suites: list[str], repeat: int = 1, tree: Path = REPO) -> dict:
    """Best-of-``repeat`` wall/CPU seconds and the job count of one dry run over ``suites``
    in the workflow folder ``tree`` (its package first on the path)."""
    exe = str(Path(sys.executable).parent / "snakemake")
    if not Path(exe).exists():
        exe = shutil.which("snakemake") or "snakemake"
    value = suites[0] if len(suites) == 1 else "[" + ",".join(suites) + "]"
    best = None
    for _ in range(repeat):
        env = dict(bench_env(), PYTHONPATH=os.pathsep.join([str(tree), bench_env()["PYTHONPATH"]]))
        p, wall, cpu = run_timed([exe, "-n", "--config", f"suite={value}"], cwd=tree, env=env)
        if p.returncode != 0:
            tail = (p.stdout + p.stderr).strip().splitlines()[-3:]
            raise SystemExit(f"dry run of {value} failed: {' | '.join(tail)}")
        m = re.search(r"^total\s+(\d+)\s*$", p.stdout + p.stderr, re.MULTILINE)
        jobs = int(m.group(1)) if m else 0  # nothing to do prints no table
        if best is None or wall < best["wall_s"]:
            best = {"suite": value, "jobs": jobs, "wall_s": wall, "cpu_s": cpu}
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suites", default=None, help="comma-separated suites (default: all in config.yaml)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per figure; the fastest is reported")
    ap.add_argument("--no-all", action="store_true", help="skip the all-suites-together dry run")
    ap.add_argument("--all-only", action="store_true", help="only the all-suites-together dry run")
    ap.add_argument("--ref", default=None, help="also time this commit's workflow, alternately (before/after)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    suites = args.suites.split(",") if args.suites else suite_names(REPO / "config.yaml")
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="bench-dryrun-") as scratch:
        trees = {"this tree": REPO}
        if args.ref:
            copy_workflow(Path(scratch), args.ref)
            trees = {args.ref: Path(scratch), **trees}
            for tree in trees.values():  # warm-up: spec files written, registries cached
                dry_run(suites, 1, tree)
        figures = [] if args.all_only else [([s], s) for s in suites]
        if len(suites) > 1 and not args.no_all:
            figures.append((suites, "all together"))
        rows = [{**dry_run(names, args.repeat, tree), "suite": label, "tree": name}
                for names, label in figures for name, tree in trees.items()]
    print(table(rows, ["suite", *(["tree"] if args.ref else []), "jobs", "wall_s", "cpu_s"]))
    write_json(args.json, {"benchmark": "dryrun", "machine": machine(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
