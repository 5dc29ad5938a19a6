"""Benchmark 4: per-run overhead (process start, imports, MLflow, file writes) as a
fraction of one demo run.

    python -m benchmarks.overhead                  # one demo-sized dho run, 3 times
    python -m benchmarks.overhead --repeat 5 --json overhead.json

Setup (not timed): a scratch copy of the workflow whose ``demo`` suite is cut to one
cell (4 shots, ResNet-18, zero-shot teacher, dho, seed 1) with 5-step teacher/student
pretraining on 256 rendered images each (their quality does not change a run's cost); ``snakemake --cores 1`` builds
its data, teacher, student weights, split and MLflow store and trains the run once.

Measured: the run is deleted and run again ``--repeat`` times exactly as the workflow's
rule runs it (``python -m dho submit --launcher local --spec SPEC --out RUN_DIR``), in a
child process that times its own sections:

- start: from spawning the process to its first line (interpreter start-up);
- imports: ``dho.cli`` and what a run loads (torch, torchvision, the dho modules);
- mlflow: every :class:`dho.tracking.RunTracker` call (start, per-epoch logging, finish,
  and the import of mlflow they trigger);
- writes: every atomic file write (:func:`dho.io.atomic_path`: checkpoints, CSVs,
  spec/metrics JSON, logits) outside MLflow calls;
- exit: from the child's last line to its exit (what remains of the interpreter's
  teardown after :func:`dho.cli.fast_exit`, which ``python -m dho`` ends with);
- run: everything else (data checks, model build, training, validation, test).

overhead = start + imports + mlflow + writes + exit; the fraction is overhead / total.  The
same sections are also given in CPU seconds (user + system; ``cpu_*``), the steadier
figure on a shared machine.

Then the same run through the warm worker (:mod:`dho.worker`, what the workflow's local
jobs use by default), alternating with the fresh-process runs so that machine noise hits
both alike: ``DHO_WORKER=SOCKET python -m dho submit ...`` from spawn to exit.  Its
overhead is its total minus the run's own work measured in the fresh process (the same
work: same spec, same thread count); the worker's one-time start (imports, paid once per
Snakemake invocation) is reported apart.  Both sides run with ``OMP_NUM_THREADS=1``, as a
1-CPU demo job does under Snakemake.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from .common import Timers, bench_env, children_cpu_s, copy_repo, machine, machine_line, table, write_json

RUN = "shapes/4shot/resnet18/zs/dho/seed1"
SECTIONS = ("start", "imports", "mlflow", "writes", "exit")


def prepare(scratch: Path, epochs: int | None) -> tuple[Path, Path]:
    """Cut the demo suite to one run, build it once; (spec file, run dir)."""
    copy_repo(scratch, ("Snakefile", "config.yaml", "workflow", "profiles"))
    cfg = yaml.safe_load((scratch / "config.yaml").read_text())
    demo = cfg["suites"]["demo"]
    # 5 steps on 256 rendered images, no zero-shot evaluation: the weights' quality and
    # the pretraining pools do not change a run's cost (the architectures are the demo's)
    demo["demo"]["teacher_args"] = ["--quiet", "--steps", "5", "--pool", "256", "--no-eval"]
    demo["demo"]["student_args"] = ["--quiet", "--steps", "5", "--pool", "256"]
    demo.update(labels={"shots": [4]}, seeds=[1], methods={"dho": {}})
    demo["teachers"] = {"zs": demo["teachers"]["zs"]}
    if epochs:
        demo["train"]["epochs"] = epochs
    (scratch / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    target = f"results/demo/runs/{RUN}/metrics.json"
    p = subprocess.run([str(Path(sys.executable).parent / "snakemake"), target, "--cores", "1", "--config",
                        "suite=demo"], cwd=scratch, env=bench_env(), capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit("setup failed: " + " | ".join((p.stdout + p.stderr).strip().splitlines()[-5:]))
    return scratch / f"results/demo/specs/{RUN}.json", scratch / f"results/demo/runs/{RUN}"


def _instrument(timers: Timers) -> None:
    """Time RunTracker calls as 'mlflow' and atomic writes as 'writes' (outermost wins)."""
    import dho.io
    from dho.tracking import RunTracker

    def timed(name, fn):
        def wrapper(*a, **k):
            with timers.section(name):
                return fn(*a, **k)
        return wrapper

    for attr in ("start", "log_epoch", "log_grad_cosines", "log_metrics", "log_series", "finish", "sync_history"):
        if hasattr(RunTracker, attr):
            setattr(RunTracker, attr, timed("mlflow", getattr(RunTracker, attr)))
    original = dho.io.atomic_path

    @contextlib.contextmanager
    def atomic_path(path):
        with timers.section("writes"), original(path) as tmp:
            yield tmp

    for module in [m for name, m in sys.modules.items() if name.startswith("dho")]:
        if getattr(module, "atomic_path", None) is original:
            module.atomic_path = atomic_path


def child(spec: str, run_dir: str, out: str) -> None:
    """One run as the workflow runs it, timing its own sections into ``out`` (JSON)."""
    t_first, cpu_first = time.time(), time.process_time()
    timers = Timers()
    with timers.section("imports"):
        from dho.cli import fast_exit, main
        import dho.launch, dho.train, dho.tracking, dho.methods, dho.models, dho.data  # noqa: E401,F401
        import torch, torchvision  # noqa: E401,F401
    _instrument(timers)
    rc = main(["submit", "--launcher", "local", "--spec", spec, "--out", run_dir])
    Path(out).write_text(json.dumps({"rc": rc, "first": t_first, "last": time.time(), **timers.total,
                                     "cpu": {**timers.cpu, "start": cpu_first, "last": time.process_time()}}))
    fast_exit(rc)  # as python -m dho exits (dho/__main__.py)


def _env(**extra: str) -> dict[str, str]:
    return dict(bench_env(), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", **extra)


def start_worker(scratch: Path) -> tuple[str, float]:
    """A warm worker for the scratch copy; (socket, seconds its start took)."""
    sock = str(scratch / "worker.sock")
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "dho", "worker", "start", "--socket", sock, "--idle", "600",
                        "--log", str(scratch / "worker.log")], cwd=scratch, env=_env(), capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit("worker start failed: " + p.stderr.strip())
    return sock, time.time() - t0


def measure_worker(spec: Path, run_dir: Path, scratch: Path, sock: str) -> float:
    """Wall seconds of the run through the worker, spawn to exit."""
    shutil.rmtree(run_dir)
    t0 = time.time()
    p = subprocess.run([sys.executable, "-m", "dho", "submit", "--launcher", "local", "--spec", str(spec), "--out",
                        str(run_dir)], cwd=scratch, env=_env(DHO_WORKER=sock), capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit("run through the worker failed: " + " | ".join(p.stderr.strip().splitlines()[-5:]))
    return time.time() - t0


def measure(spec: Path, run_dir: Path, scratch: Path) -> dict:
    shutil.rmtree(run_dir)
    out = scratch / "child.json"
    t0, cpu0 = time.time(), children_cpu_s()
    p = subprocess.run([sys.executable, "-m", "benchmarks.overhead", "--child", str(spec), str(run_dir), str(out)],
                       cwd=scratch, env=_env(), capture_output=True, text=True)
    t_end, cpu_total = time.time(), children_cpu_s() - cpu0
    if p.returncode != 0:
        raise SystemExit("measured run failed: " + " | ".join(p.stderr.strip().splitlines()[-5:]))
    c = json.loads(out.read_text())
    row = {"total_s": t_end - t0, "start": c["first"] - t0, "exit": t_end - c["last"],
           **{k: c.get(k, 0.0) for k in ("imports", "mlflow", "writes")}}
    row["overhead_s"] = sum(row[k] for k in SECTIONS)
    row["run"] = row["total_s"] - row["overhead_s"]
    row["overhead_fraction"] = row["overhead_s"] / row["total_s"]
    cpu = c["cpu"]  # the same sections in CPU seconds (steadier on a shared machine)
    row["cpu_total_s"] = cpu_total
    row["cpu_overhead_s"] = (cpu["start"] + sum(cpu.get(k, 0.0) for k in ("imports", "mlflow", "writes"))
                             + cpu_total - cpu["last"])
    row["cpu_overhead_fraction"] = row["cpu_overhead_s"] / cpu_total
    return row


def main(argv: list[str] | None = None) -> int:
    if argv is None and sys.argv[1:2] == ["--child"]:
        child(*sys.argv[2:5])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="measured runs (default 3); the median is reported")
    ap.add_argument("--epochs", type=int, default=None, help="epochs of the run (default: the demo's)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("--no-worker", action="store_true", help="measure only the fresh-process runs")
    args = ap.parse_args(argv)
    print(machine_line())
    scratch = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    sock = None
    try:
        spec, run_dir = prepare(scratch, args.epochs)
        if not args.no_worker:
            sock, worker_start = start_worker(scratch)
        rows, worker = [], []
        for _ in range(args.repeat):  # alternating: the same noise for both
            rows.append(measure(spec, run_dir, scratch))
            if sock:
                worker.append(measure_worker(spec, run_dir, scratch, sock))
    finally:
        if sock:
            subprocess.run([sys.executable, "-m", "dho", "worker", "stop", "--socket", sock], env=_env(),
                           capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)
    median = {k: sorted(r[k] for r in rows)[len(rows) // 2] for k in rows[0]}
    cols = ["total_s", "run", *SECTIONS, "overhead_s", "overhead_fraction", "cpu_total_s", "cpu_overhead_s",
            "cpu_overhead_fraction"]
    print(f"one demo run ({RUN}), {args.repeat} times in a fresh process each; median last")
    print(table([*rows, {**median, "what": "median"}], ["what", *cols]))
    result = {"benchmark": "overhead", "machine": machine(), "run": RUN, "rows": rows, "median": median}
    if worker:
        total = sorted(worker)[len(worker) // 2]
        over = total - median["run"]
        wrows = [{"what": f"run {i + 1}", "total_s": t, "overhead_s": t - median["run"],
                  "overhead_fraction": (t - median["run"]) / t} for i, t in enumerate(worker)]
        wrows.append({"what": "median", "total_s": total, "overhead_s": over, "overhead_fraction": over / total})
        print(f"the same run through the warm worker (started once in {worker_start:.1f} s); overhead = total - "
              f"the fresh process's median run ({median['run']:.2f} s)")
        print(table(wrows, ["what", "total_s", "overhead_s", "overhead_fraction"]))
        result.update(worker_start_s=worker_start, worker_totals_s=worker, worker_overhead_s=over,
                      worker_overhead_fraction=over / total)
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
