"""Benchmark 3: dry-run (DAG build) time and job count per suite, and for all together.

    python -m benchmarks.dryrun                     # every suite in config.yaml, then all
    python -m benchmarks.dryrun --suites ci,fewshot --repeat 3 --json dryrun.json

Each figure is one ``snakemake -n --config suite=X`` from the repository root (what a
user types), in a fresh process: wall seconds and the CPU seconds it used (CPU time is
the steadier figure on a shared machine), and the job count of its "Job stats" table.
The best of ``--repeat`` runs is reported.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import yaml

from .common import REPO, bench_env, machine, machine_line, run_timed, table, write_json


def suite_names(config: Path) -> list[str]:
    return list(yaml.safe_load(config.read_text())["suites"])


def dry_run(suites: list[str], repeat: int = 1) -> dict:
    """Best-of-``repeat`` wall/CPU seconds and the job count of one dry run over ``suites``."""
    exe = str(Path(sys.executable).parent / "snakemake")
    if not Path(exe).exists():
        exe = shutil.which("snakemake") or "snakemake"
    value = suites[0] if len(suites) == 1 else "[" + ",".join(suites) + "]"
    best = None
    for _ in range(repeat):
        p, wall, cpu = run_timed([exe, "-n", "--config", f"suite={value}"], env=bench_env())
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
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    suites = args.suites.split(",") if args.suites else suite_names(REPO / "config.yaml")
    print(machine_line())
    rows = [dry_run([s], args.repeat) for s in suites]
    if len(suites) > 1 and not args.no_all:
        rows.append({**dry_run(suites, args.repeat), "suite": "all together"})
    print(table(rows, ["suite", "jobs", "wall_s", "cpu_s"]))
    write_json(args.json, {"benchmark": "dryrun", "machine": machine(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
