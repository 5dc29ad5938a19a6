"""Shared helpers of the benchmarks: the machine line, tables, JSON output, timers."""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

REPO = Path(__file__).resolve().parents[1]


def copy_repo(dst: Path, names: Sequence[str]) -> Path:
    """Copy ``names`` (files or folders of the repository root; no ``__pycache__``) into
    ``dst`` (also the tests' scratch workflows: tests/conftest.py)."""
    for name in names:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dst / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst / name)
    return dst


def cut_ci_suite(ci: dict, methods: Sequence[str] | None = None) -> None:
    """Cut config.yaml's ``ci`` suite (``ci``, edited in place) to ``methods`` (default: all
    of its methods) on its ResNet-18 alone, Table 2's students and the linear evaluation
    dropped: for the tests and benchmarks about the workflow, not the comparison rows."""
    if methods is not None:
        ci["methods"] = {m: ci["methods"][m] for m in methods}
    ci["students"] = {"resnet18": ci["students"]["resnet18"]}
    ci.pop("linear_eval", None)


WORKFLOW_FILES = ("Snakefile", "config.yaml", "workflow", "profiles", "slurm", "dho")


def copy_workflow(dest: Path, ref: str | None) -> None:
    """The workflow and the package of the working tree, or of commit ``ref`` (git archive)."""
    if ref:
        archive = subprocess.run(["git", "archive", ref, *WORKFLOW_FILES], cwd=REPO, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
        return
    copy_repo(dest, WORKFLOW_FILES)


def machine(device: str = "cpu") -> dict[str, Any]:
    """What the figures were measured on: CPUs, load, and the accelerator if one is used."""
    info: dict[str, Any] = {"host": platform.node(), "cpus": os.cpu_count(),
                            "load_avg_1min": round(os.getloadavg()[0], 2), "python": platform.python_version()}
    if device.startswith("cuda"):
        import torch

        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def machine_line(device: str = "cpu") -> str:
    m = machine(device)
    gpu = f", GPU {m['gpu']}" if "gpu" in m else ""
    return (f"machine: {m['host']}, {m['cpus']} CPUs (1-min load average {m['load_avg_1min']} at start){gpu}, "
            f"Python {m['python']}")


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A Markdown table of ``rows`` (missing cells blank; floats with 3 significant digits)."""
    def cell(v: Any) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def write_json(path: str | os.PathLike | None, obj: Any) -> None:
    """Write ``obj`` to ``path`` (atomically) when a path is given."""
    if path:
        from dho.io import atomic_write_json

        atomic_write_json(path, obj)
        print(f"wrote {path}")


def children_cpu_s() -> float:
    """CPU seconds (user + system) used so far by finished child processes."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_timed(cmd: Sequence[str], cwd: str | os.PathLike = REPO, env: dict[str, str] | None = None,
              timeout: float = 1800) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run ``cmd``: (completed process, wall seconds, CPU seconds of the child)."""
    cpu0, t0 = children_cpu_s(), time.perf_counter()
    p = subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return p, time.perf_counter() - t0, children_cpu_s() - cpu0


class Timers:
    """Named wall-clock (and CPU) totals; nested sections count only in the outermost one."""

    def __init__(self) -> None:
        self.total: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # CPU seconds of this process (user + system) per section
        self.depth = 0

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        outer = self.depth == 0
        self.depth += 1
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.depth -= 1
            if outer:
                self.total[name] = self.total.get(name, 0.0) + time.perf_counter() - t0
                self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - c0


def bench_env() -> dict[str, str]:
    """The environment for benchmark subprocesses: this repo importable, hub offline."""
    env = dict(os.environ)
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{env['PYTHONPATH']}" if env.get("PYTHONPATH") else str(REPO)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env
