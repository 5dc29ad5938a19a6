"""``dho submit``: launch one training run locally or through SLURM, and wait for it.

``--launcher local`` runs :class:`dho.train.TrainJob` in this process (no submitit local
executor: it would impose a 2-minute default timeout and hide the GPUs).  Stopping the
process stops the run; rerunning resumes from the run directory's checkpoint.

``--launcher slurm`` submits ``TrainJob`` with ``submitit.AutoExecutor(cluster="slurm")``
(logs in ``--log-dir/<job id>/``) and waits with a *bounded* wait: it polls ``squeue``
itself, never ``job.result()`` (which waits forever for a job killed by ``scancel``/OOM
when SLURM accounting is off).  The run is done only when the run directory's
``metrics.json`` is complete for the spec's hash; a job that left the queue without that
is a failure, reported with the tail of its log.  Preemption/timeouts requeue through
submitit's checkpoint (``TrainJob.checkpoint``), up to ``--max-requeues`` times, and the
run resumes from its last epoch checkpoint.

The job id is recorded in ``RUN_DIR/slurm_job.json``.  If this command is killed (e.g.
Snakemake was interrupted), the SLURM job keeps running; the next ``dho submit`` for the
same run directory and spec attaches to it instead of submitting a second job (an
``flock`` on ``RUN_DIR/.submit.lock`` serialises concurrent launchers).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .errors import ConfigError, OutputError, TrainingError
from .io import atomic_write_json
from .spec import RunSpec, load_spec

# squeue states of a job that may still produce a result
ACTIVE_STATES = frozenset({
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_FED",
    "REQUEUE_HOLD", "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT",
    "PREEMPTED", "RESV_DEL_HOLD",
})
JOB_FILE = "slurm_job.json"


@dataclass
class SlurmRequest:
    """What one run asks SLURM for."""

    gpus: int = 0
    cpus: int = 1
    mem_gb: float = 4.0
    time_min: int = 60
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    max_requeues: int = 3


def resolve_spec(spec: RunSpec) -> RunSpec:
    """Fill ``teacher_sha`` (first 16 hex digits of the teacher file's sha256) so that the
    spec hash changes whenever the teacher file does."""
    if spec.teacher_file and spec.teacher_sha is None:
        from .train import file_sha256

        path = Path(spec.teacher_file)
        if not path.is_file():
            raise ConfigError(f"key 'teacher_file': teacher file not found: {path}")
        spec.teacher_sha = file_sha256(path)[:16]
    return spec


def submit(spec: RunSpec, run_dir: str | Path, launcher: str = "local", request: SlurmRequest | None = None,
           log_dir: str | Path | None = None, poll_s: float = 5.0, max_wait_min: float | None = None,
           grace_s: float = 30.0) -> dict[str, Any]:
    """Run ``spec`` into ``run_dir`` with ``launcher``; return its ``metrics.json`` content."""
    from .train import TrainJob, load_done

    spec = resolve_spec(spec)
    run_dir = Path(run_dir)
    done = load_done(run_dir, spec.hash)
    if done is not None:
        return done
    if launcher == "local":
        return TrainJob()(spec.to_dict(), str(run_dir))
    if launcher != "slurm":
        raise ConfigError(f"--launcher {launcher!r}: expected 'local' or 'slurm'")
    request = request or SlurmRequest()
    log_dir = Path(log_dir) if log_dir is not None else run_dir / "logs"
    job_id = _submit_or_attach(spec, run_dir, request, log_dir)
    if max_wait_min is None:  # every allowed requeue running to its limit, plus a day in the queue
        max_wait_min = request.time_min * (request.max_requeues + 1) + 24 * 60
    return wait_for_run(spec, run_dir, job_id, log_dir, poll_s=poll_s, max_wait_s=max_wait_min * 60,
                        grace_s=grace_s)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _submit_or_attach(spec: RunSpec, run_dir: Path, request: SlurmRequest, log_dir: Path) -> str:
    """The id of a live SLURM job training this run dir with this spec, or of a new one."""
    import submitit

    from .train import TrainJob

    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {e.filename}: {e.strerror}") from None
    with _locked(run_dir / ".submit.lock"):
        previous = _read_job_file(run_dir)
        if previous and previous.get("spec_hash") == spec.hash:
            state, _ = squeue_state(previous["job_id"])
            if state in ACTIVE_STATES:
                print(f"{run_dir}: attaching to SLURM job {previous['job_id']} ({state})", file=sys.stderr)
                return previous["job_id"]
        executor = submitit.AutoExecutor(folder=str(log_dir / "%j"), cluster="slurm",
                                         slurm_max_num_timeout=request.max_requeues)
        params: dict[str, Any] = dict(
            name="dho-" + "-".join(str(v) for v in spec.tags.values()) if spec.tags else "dho-train",
            timeout_min=request.time_min, cpus_per_task=request.cpus, mem_gb=request.mem_gb,
            tasks_per_node=1, nodes=1,
        )
        if request.gpus > 0:
            params["gpus_per_node"] = request.gpus
        for key in ("partition", "account", "qos"):
            if getattr(request, key):
                params[f"slurm_{key}"] = getattr(request, key)
        executor.update_parameters(**params)
        # sbatch exports this process's environment: size the job's thread pools to its CPUs
        # (Snakemake sets OMP_NUM_THREADS to the rule's threads, 0 for a waiting launcher)
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(request.cpus)
        try:
            job = executor.submit(TrainJob(), spec.to_dict(), str(run_dir))
        except Exception as e:  # sbatch's own message (bad partition, gres, ...) is the useful part
            msg = str(e).strip().splitlines()
            raise TrainingError(f"sbatch failed for {run_dir}: {msg[-1] if msg else e}") from None
        atomic_write_json(run_dir / JOB_FILE, {"job_id": str(job.job_id), "spec_hash": spec.hash,
                                                "log_dir": str(log_dir), "submitted_at": time.time()})
        print(f"{run_dir}: submitted SLURM job {job.job_id}", file=sys.stderr)
        return str(job.job_id)


def _read_job_file(run_dir: Path) -> dict[str, Any] | None:
    try:
        d = json.loads((run_dir / JOB_FILE).read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) and "job_id" in d else None


def squeue_state(job_id: str) -> tuple[str | None, bool]:
    """(state, known): the job's squeue state, or (None, True) when SLURM no longer knows
    it, or (None, False) when squeue itself failed (controller unreachable)."""
    try:
        p = subprocess.run(["squeue", "-h", "-j", str(job_id), "-t", "all", "-o", "%T"],
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None, False
    if p.returncode != 0:
        return None, "Invalid job id" in p.stderr
    states = p.stdout.split()
    return (states[0] if states else None), True


def wait_for_run(spec: RunSpec, run_dir: Path, job_id: str, log_dir: Path, poll_s: float = 5.0,
                 max_wait_s: float = 86400.0, grace_s: float = 30.0) -> dict[str, Any]:
    """Poll until ``run_dir`` is done for ``spec``; fail when the job leaves the queue
    without a result (after ``grace_s`` for slow file systems) or after ``max_wait_s``
    (then the job is cancelled)."""
    from .train import load_done

    start = time.monotonic()
    gone_since: float | None = None
    last_state: str | None = None
    while True:
        done = load_done(run_dir, spec.hash)
        if done is not None:
            return done
        state, known = squeue_state(job_id)
        now = time.monotonic()
        if state in ACTIVE_STATES or not known:
            gone_since = None
            last_state = state or last_state
        elif gone_since is None:
            gone_since = now
            last_state = state or "no longer in the queue"
        elif now - gone_since > grace_s:
            raise TrainingError(f"SLURM job {job_id} for {run_dir} ended ({last_state}) without a complete "
                                f"metrics.json; log {log_dir / job_id}: {_log_tail(log_dir / job_id)}")
        if now - start > max_wait_s:
            subprocess.run(["scancel", str(job_id)], capture_output=True)
            raise TrainingError(f"SLURM job {job_id} for {run_dir} not done after {max_wait_s / 60:.0f} min "
                                f"(last state {last_state}); cancelled it")
        time.sleep(poll_s)


def _log_tail(folder: Path, lines: int = 3) -> str:
    """The last non-empty lines of the job's stderr log (submitit prints tracebacks there)."""
    logs = sorted(folder.glob("*_log.err")) if folder.is_dir() else []
    if not logs:
        return "(no log)"
    text = [ln.strip() for ln in logs[-1].read_text(errors="replace").splitlines() if ln.strip()]
    return " | ".join(text[-lines:]) or "(empty log)"


def _cmd_submit(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, args.set or [])
    request = SlurmRequest(gpus=args.gpus, cpus=args.cpus, mem_gb=args.mem_gb, time_min=args.time_min,
                           partition=args.partition, account=args.account, qos=args.qos,
                           max_requeues=args.max_requeues)
    m = submit(spec, args.out, launcher=args.launcher, request=request, log_dir=args.log_dir,
               poll_s=args.poll_s, max_wait_min=args.max_wait_min, grace_s=args.grace_s)
    print(f"{args.out}: done, test_acc {m['test_acc']:.2f} (slurm job {m.get('slurm_job_id') or '-'})")
    return 0


def _positive(kind):
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if v < 0:
            raise argparse.ArgumentTypeError(f"expected a value >= 0, got {text!r}")
        return v
    return parse


def add_cli(sub) -> None:
    p = sub.add_parser("submit", help="launch one training run (local or SLURM) and wait until it is done",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--launcher", choices=("local", "slurm"), default="local")
    p.add_argument("--spec", action="append", required=True, metavar="FILE",
                   help="spec file (YAML/JSON); repeat to merge several")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec key")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory")
    p.add_argument("--log-dir", default=None, help="SLURM logs folder (default RUN_DIR/logs); one subfolder per job")
    p.add_argument("--partition", default=None)
    p.add_argument("--account", default=None)
    p.add_argument("--qos", default=None)
    p.add_argument("--gpus", type=_positive(int), default=0, help="GPUs per job (default 0)")
    p.add_argument("--cpus", type=_positive(int), default=1, help="CPUs per job (default 1)")
    p.add_argument("--mem-gb", type=_positive(float), default=4.0, help="memory per job in GB (default 4)")
    p.add_argument("--time-min", type=_positive(int), default=60, help="time limit per job in minutes (default 60)")
    p.add_argument("--max-requeues", type=_positive(int), default=3,
                   help="preemptions/timeouts a run may requeue through (default 3)")
    p.add_argument("--max-wait-min", type=_positive(float), default=None,
                   help="give up (and scancel) after this long (default: time-min x (max-requeues + 1) + 1 day)")
    p.add_argument("--poll-s", type=_positive(float), default=5.0, help="seconds between squeue polls (default 5)")
    p.add_argument("--grace-s", type=_positive(float), default=30.0,
                   help="seconds a job may be out of the queue before its missing result is a failure (default 30)")
    p.set_defaults(func=_cmd_submit)
