"""Benchmark 5: the cost of waiting on SLURM: peak RSS of each waiting launcher and the
squeue calls per waiting job per minute, through ``snakemake --profile slurm``.

    python -m benchmarks.waiting                        # the ci suite, 4 seeds, 3 epochs
    python -m benchmarks.waiting --seeds 8 --epochs 6 --json waiting.json
    python -m benchmarks.waiting --ref 46c9cb8          # the same for another commit
    python -m benchmarks.waiting --methods ce,kd        # only these methods of the suite

It copies the workflow (of the working tree, or of commit ``--ref``) into a scratch
folder, sets the ``ci`` suite's seeds and epochs there and cuts it to four methods on its
ResNet-18 (``--methods``: these instead), and runs ``snakemake --profile slurm --config suite=ci`` against the real
cluster, with a ``squeue`` shim first on PATH that logs each call (time, caller's command) and execs the real squeue.  Meanwhile it
samples ``/proc`` every ``--sample-s`` for the launcher processes (``dho submit`` and
``dho submit-cmd``): each one's peak RSS (``VmHWM``) and how long it was seen.

Figures: the largest peak RSS of any launcher; squeue calls in all; waiter-minutes (the
summed lifetimes of the launchers); calls per waiting job per minute = calls /
waiter-minutes; and the busiest minute's calls divided by the launchers alive in it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from .common import bench_env, copy_workflow, cut_ci_suite, machine, machine_line, table, write_json

LAUNCHER_WORDS = (" submit ", " submit-cmd ")
DEFAULT_METHODS = ("ce", "kd", "dho", "pseudo_label")


def set_suite(config: Path, seeds: int, epochs: int, methods: list[str] | None = None) -> None:
    cfg = yaml.safe_load(config.read_text())
    ci = cfg["suites"]["ci"]
    # the launchers' waiting is measured, not the comparison rows: four methods (one without
    # a teacher) on the ResNet-18 unless --methods says which
    methods = methods or list(DEFAULT_METHODS)
    unknown = sorted(set(methods) - set(ci["methods"]))
    if unknown:
        raise SystemExit(f"--methods: {', '.join(unknown)} not in the ci suite ({', '.join(ci['methods'])})")
    cut_ci_suite(ci, methods)
    ci["seeds"] = list(range(1, seeds + 1))
    ci.setdefault("train", {})["epochs"] = epochs
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))


def squeue_shim(bin_dir: Path, log: Path) -> None:
    """``bin_dir/squeue``: log one line per call, then exec the real squeue."""
    real = shutil.which("squeue")
    if real is None:
        raise SystemExit("squeue not found: this benchmark needs a SLURM cluster")
    bin_dir.mkdir(parents=True, exist_ok=True)
    shim = bin_dir / "squeue"
    shim.write_text("#!/bin/sh\n"
                    f"printf '%s %s\\n' \"$(date +%s.%N)\" \"$PPID\" >> {log}\n"
                    f"exec {real} \"$@\"\n")
    shim.chmod(0o755)


def launchers(cwd: Path) -> dict[int, str]:
    """pid -> command line of every `dho submit` / `dho submit-cmd` python process running
    in ``cwd`` (not the shells that start them, nor other users of the cluster)."""
    found = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if not Path(entry.path, "comm").read_text().startswith("python"):
                continue
            if Path(os.readlink(Path(entry.path, "cwd"))) != cwd:
                continue
            cmd = Path(entry.path, "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if " -m dho" in cmd and any(w in cmd + " " for w in LAUNCHER_WORDS):
            found[int(entry.name)] = cmd
    return found


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Sampler(threading.Thread):
    """Samples the launchers every ``interval`` s: peak RSS and first/last time seen."""

    def __init__(self, interval: float, cwd: Path):
        super().__init__(daemon=True)
        self.interval, self.cwd = interval, cwd
        self.stop = threading.Event()
        self.seen: dict[int, dict] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            now = time.time()
            for pid, cmd in launchers(self.cwd).items():
                rss = peak_rss_mb(pid)
                s = self.seen.setdefault(pid, {"first": now, "last": now, "rss_mb": 0.0, "cmd": cmd})
                s["last"] = now
                if rss is not None:
                    s["rss_mb"] = max(s["rss_mb"], rss)
            self.stop.wait(self.interval)


def summarise(seen: dict[int, dict], calls: list[float]) -> dict:
    minutes = sum(max(s["last"] - s["first"], 0.0) for s in seen.values()) / 60
    busiest = 0.0
    if calls:
        start = min(calls)
        for m in range(int((max(calls) - start) // 60) + 1):
            lo, hi = start + 60 * m, start + 60 * (m + 1)
            alive = sum(1 for s in seen.values() if s["first"] < hi and s["last"] > lo)
            n = sum(1 for t in calls if lo <= t < hi)
            busiest = max(busiest, n / max(alive, 1))
    train = [s["rss_mb"] for s in seen.values() if " submit " in s["cmd"] + " "]
    other = [s["rss_mb"] for s in seen.values() if " submit-cmd " in s["cmd"] + " "]
    return {"launchers": len(seen), "peak_rss_mb_max": max(train + other, default=None),
            "peak_rss_mb_submit": max(train, default=None), "peak_rss_mb_submit_cmd": max(other, default=None),
            "squeue_calls": len(calls), "waiter_minutes": minutes,
            "calls_per_job_minute": len(calls) / minutes if minutes else None,
            "busiest_minute_calls_per_job": busiest}


def measure(seeds: int, epochs: int, ref: str | None, sample_s: float, timeout_s: float, keep: bool,
            methods: list[str] | None = None) -> dict:
    scratch = Path(tempfile.mkdtemp(prefix="bench-waiting-"))
    try:
        copy_workflow(scratch, ref)
        set_suite(scratch / "config.yaml", seeds, epochs, methods)
        log = scratch / "squeue_calls.log"
        log.touch()
        squeue_shim(scratch / "shim", log)
        env = bench_env()
        env["PYTHONPATH"] = str(scratch)  # the copied package, not this checkout's
        env["PATH"] = f"{scratch / 'shim'}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
        sampler = Sampler(sample_s, scratch.resolve())
        sampler.start()
        t0 = time.time()
        proc = subprocess.Popen([str(Path(sys.executable).parent / "snakemake"), "--profile", "slurm",
                                 "--config", "suite=ci"], cwd=scratch, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            out, _ = proc.communicate()
        wall = time.time() - t0
        sampler.stop.set()
        sampler.join()
        if proc.returncode != 0:
            raise SystemExit(f"snakemake failed (exit {proc.returncode}): {out.strip().splitlines()[-5:]}")
        calls = [float(line.split()[0]) for line in log.read_text().splitlines() if line.strip()]
        return {"ref": ref or "working tree", "seeds": seeds, "epochs": epochs,
                "methods": ",".join(methods) if methods else "all", "wall_s": wall,
                **summarise(sampler.seen, calls)}
    finally:
        if keep:
            print(f"scratch folder kept: {scratch}")
        else:
            jobs = [d.name for d in (scratch / "results/ci/logs").glob("*") if d.name.isdigit()]
            if jobs:
                subprocess.run(["scancel", *jobs], capture_output=True)
            shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=4, help="seeds of the ci suite: 4 training runs each (default 4)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per run (longer runs wait longer)")
    ap.add_argument("--methods", default=None,
                    help="comma-separated methods of the ci suite to run, on its ResNet-18 (default: "
                         "ce,kd,dho,pseudo_label)")
    ap.add_argument("--ref", default=None, help="measure this git commit instead of the working tree")
    ap.add_argument("--sample-s", type=float, default=0.5, help="seconds between /proc samples")
    ap.add_argument("--timeout-s", type=float, default=1800)
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)
    print(machine_line())
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    row = measure(args.seeds, args.epochs, args.ref, args.sample_s, args.timeout_s, args.keep, methods)
    print(table([row], ["ref", "methods", "launchers", "peak_rss_mb_submit", "peak_rss_mb_submit_cmd", "squeue_calls",
                        "waiter_minutes", "calls_per_job_minute", "busiest_minute_calls_per_job", "wall_s"]))
    write_json(args.json, {"benchmark": "waiting", "machine": machine(), "rows": [row]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
