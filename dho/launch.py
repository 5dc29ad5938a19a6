"""``dho submit`` / ``dho submit-cmd``: launch work locally or through SLURM, and wait for it.

``dho submit`` launches one training run; ``dho submit-cmd ... -- COMMAND ...`` launches
any other ``dho`` command (teacher preparation, evaluation) the same way.

``--launcher local`` runs the work in this process (no submitit local executor: it would
impose a 2-minute default timeout and hide the GPUs).  Stopping the process stops it; a
training run resumes from the run directory's checkpoint when launched again.

``--launcher slurm`` submits a submitit callable (:class:`dho.job.TrainJob`, or :class:`CliJob`
for a command; both torch-free until called in the job) with ``submitit.AutoExecutor(cluster="slurm")`` (logs in
``--log-dir/<job id>/``) and waits with a *bounded* wait: it polls ``squeue`` itself, never
``job.result()`` (which waits forever for a job killed by ``scancel``/OOM when SLURM
accounting is off).  A training run is done only when the run directory's
``metrics.json`` is complete for the spec's hash; a command only when it exited 0 in the
job and its ``--done`` file exists.  A job that left the queue without that is a failure,
reported with one line: the command's own error, or else the tail of the job's log.
Preemption/timeouts requeue through submitit's checkpoint, up to ``--max-requeues``
times: a training run resumes from its last epoch checkpoint, a command starts over.

The job id is recorded (``RUN_DIR/slurm_job.json``; for a command ``.DONE.job.json``
beside the done file).  If this launcher is killed (e.g. Snakemake was interrupted), the
SLURM job keeps running; the next launch of the same run (same spec) or command (same
arguments and done file) attaches to it instead of submitting a second job (a file lock,
:func:`dho.io.file_lock`, serialises concurrent launchers).
"""

from __future__ import annotations

import argparse
import dataclasses
import contextlib
import io
import json
import os
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import submitit

from .errors import ConfigError, DhoError, OutputError, TrainingError
from .io import atomic_write_json, file_lock
from .job import TrainJob
from .rundir import load_done
from .spec import RunSpec, load_spec, with_derived_keys
from .squeue import QueueView

T = TypeVar("T")

# squeue states of a job that may still produce a result
ACTIVE_STATES = frozenset({
    "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_FED",
    "REQUEUE_HOLD", "RESIZING", "SUSPENDED", "STOPPED", "SIGNALING", "STAGE_OUT",
    "PREEMPTED", "RESV_DEL_HOLD",
})
# pending reasons (squeue %r) under which a job does not start unless its request or the
# cluster's configuration changes: the waiter says so at once instead of waiting silently
NEVER_STARTS_REASONS = {
    "PartitionNodeLimit": "more nodes than its partition allows or has up (resources.nodes)",
    "PartitionTimeLimit": "a longer time limit than its partition allows (resources.time_min)",
    "PartitionConfig": "more resources than its partition's configuration allows",
    "BadConstraints": "constraints no node satisfies",
    "InvalidAccount": "an account it may not use (slurm.account)",
    "InvalidQOS": "a QOS it may not use (slurm.qos)",
    "QOSMaxCpuPerJobLimit": "more CPUs than its QOS allows per job (resources.cpus)",
    "QOSMaxNodePerJobLimit": "more nodes than its QOS allows per job (resources.nodes)",
    "QOSMaxWallDurationPerJobLimit": "a longer time limit than its QOS allows (resources.time_min)",
}
JOB_FILE = "slurm_job.json"
# seconds between squeue snapshots (one per log folder, shared by its waiters), and the
# most seconds between checks of a waiter's own result files
POLL_S = 30.0
CHECK_S = 5.0
# commands that launch work themselves: not launched through `submit-cmd`
NOT_LAUNCHABLE = frozenset({"submit", "submit-cmd"})


class CommandError(DhoError):
    """A launched ``dho`` command failed (its own error line) or could not be launched.
    ``reported``: the command already printed its error here (local launcher)."""

    def __init__(self, message: str, rc: int = 2, reported: bool = False):
        super().__init__(message)
        self.rc, self.reported = rc, reported


@dataclass
class SlurmRequest:
    """What one job asks SLURM for."""

    gpus: int = 0
    cpus: int = 1
    mem_gb: float = 4.0
    time_min: int = 60
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    max_requeues: int = 3
    nodes: int = 1
    tasks_per_node: int = 1  # processes per node: data-parallel ranks of a training run

    @property
    def tasks(self) -> int:
        return max(1, self.tasks_per_node)

    @property
    def cpus_per_task(self) -> int:
        """``cpus`` is per node: its tasks share them (8 GPUs and 64 CPUs: 8 per rank)."""
        return max(1, self.cpus // self.tasks)

    def default_max_wait_min(self) -> float:
        """Every allowed requeue running to its limit, plus a day in the queue."""
        return self.time_min * (self.max_requeues + 1) + 24 * 60


# --------------------------------------------------------------------------------------
# Training runs: dho submit
def submit(spec: RunSpec, run_dir: str | Path, launcher: str = "local", request: SlurmRequest | None = None,
           log_dir: str | Path | None = None, poll_s: float = POLL_S, max_wait_min: float | None = None,
           grace_s: float = 30.0) -> dict[str, Any]:
    """Run ``spec`` into ``run_dir`` with ``launcher``; return its ``metrics.json`` content."""
    spec = with_derived_keys(spec)
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
    record = _submit_or_attach(spec, run_dir, request, log_dir)
    if max_wait_min is None:
        max_wait_min = request.default_max_wait_min()
    return wait_for_run(spec, run_dir, record, log_dir, poll_s=poll_s, max_wait_s=max_wait_min * 60,
                        grace_s=grace_s)


def _submit_or_attach(spec: RunSpec, run_dir: Path, request: SlurmRequest, log_dir: Path) -> dict[str, Any]:
    """The record of a live SLURM job training this run dir with this spec, or of a new one."""
    name = "dho-" + "-".join(str(v) for v in spec.tags.values()) if spec.tags else "dho-train"
    record = submit_or_attach(
        lock=run_dir / ".submit.lock", job_file=run_dir / JOB_FILE, identity={"spec_hash": spec.hash},
        make_job=lambda record: (TrainJob(), (spec.to_dict(), str(run_dir))),
        request=request, log_dir=log_dir, name=name, what=str(run_dir))
    return record


def wait_for_run(spec: RunSpec, run_dir: Path, record: dict[str, Any], log_dir: Path, poll_s: float = POLL_S,
                 max_wait_s: float = 86400.0, grace_s: float = 30.0) -> dict[str, Any]:
    """Poll until ``run_dir`` is done for ``spec``; fail when the job leaves the queue
    without a result (after ``grace_s`` for slow file systems) or after ``max_wait_s``
    (then the job is cancelled)."""
    return wait_for_job(record["job_id"], log_dir, lambda: load_done(run_dir, spec.hash), what=str(run_dir),
                        missing="a complete metrics.json", poll_s=poll_s, max_wait_s=max_wait_s,
                        grace_s=grace_s, submitted_at=record.get("submitted_at", 0.0))


# --------------------------------------------------------------------------------------
# Shared SLURM machinery: submit (or attach to) a job, bounded wait
def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def submit_or_attach(lock: Path, job_file: Path, identity: dict[str, Any],
                     make_job: Callable[[dict[str, Any]], tuple[Callable, tuple]], request: SlurmRequest,
                     log_dir: Path, name: str, what: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The record (``job_file`` content) of a live SLURM job whose record carries
    ``identity``, or of a newly submitted one.  ``make_job(record)`` gives the callable
    and its arguments (the record holds ``extra``, e.g. a token the job reports back)."""
    try:
        for folder in (lock.parent, job_file.parent, log_dir):
            folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {e.filename}: {e.strerror}") from None
    with file_lock(lock):
        previous = _read_json(job_file)
        if previous and "job_id" in previous and all(previous.get(k) == v for k, v in identity.items()):
            state, _ = QueueView(log_dir).state(previous["job_id"], previous.get("submitted_at", 0.0),
                                                fresher_than=time.time())
            if state in ACTIVE_STATES:
                print(f"{what}: attaching to SLURM job {previous['job_id']} ({state})", file=sys.stderr)
                return previous
        record: dict[str, Any] = {**identity, **(extra or {}), "log_dir": str(log_dir)}
        fn, args = make_job(record)
        job = _sbatch(fn, args, request, log_dir, name, what)
        record.update(job_id=str(job.job_id), submitted_at=time.time())
        atomic_write_json(job_file, record)
        print(f"{what}: submitted SLURM job {job.job_id}", file=sys.stderr)
        return record


def _sbatch(fn: Callable, args: tuple, request: SlurmRequest, log_dir: Path, name: str, what: str):
    """Submit ``fn(*args)`` with ``request`` through submitit; sbatch errors as one line."""
    executor = submitit.AutoExecutor(folder=str(log_dir / "%j"), cluster="slurm",
                                     slurm_max_num_timeout=request.max_requeues)
    params: dict[str, Any] = dict(name=name, timeout_min=request.time_min, cpus_per_task=request.cpus_per_task,
                                  mem_gb=request.mem_gb, tasks_per_node=request.tasks, nodes=request.nodes)
    if request.gpus > 0:
        params["gpus_per_node"] = request.gpus
    for key in ("partition", "account", "qos"):
        if getattr(request, key):
            params[f"slurm_{key}"] = getattr(request, key)
    executor.update_parameters(**params)
    # sbatch exports this process's environment: size the job's thread pools to its CPUs
    # (Snakemake sets OMP_NUM_THREADS to the rule's threads, 0 for a waiting launcher)
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(request.cpus_per_task)
    try:
        return executor.submit(fn, *args)
    except Exception as e:  # sbatch's own message (bad partition, gres, ...) is the useful part
        msg = str(e).strip().splitlines()
        raise TrainingError(f"sbatch failed for {what}: {msg[-1] if msg else e}") from None


def wait_for_job(job_id: str, log_dir: Path, result: Callable[[], T | None], what: str, missing: str,
                 poll_s: float = POLL_S, max_wait_s: float = 86400.0, grace_s: float = 30.0,
                 submitted_at: float = 0.0) -> T:
    """Poll ``result()`` (None while not done; it may raise for a definite failure) every
    few seconds until it gives a value; fail when the job leaves the queue without one
    (after ``grace_s`` for slow file systems) or after ``max_wait_s`` (then the job is
    cancelled).  The job's state comes from the queue snapshot shared by every waiter of
    ``log_dir`` (:class:`dho.squeue.QueueView`), refreshed at most every ``poll_s``."""
    queue = QueueView(log_dir, max_age_s=poll_s)
    start = time.monotonic()
    gone_since: float | None = None
    last_state: str | None = None
    pending: str | None = None  # the last pending reason seen
    while True:
        value = result()
        if value is not None:
            return value
        state, known = queue.state(job_id, submitted_at)
        pending = _tell_pending_reason(job_id, what, queue.pending_reason(job_id) if state == "PENDING" else None,
                                       pending)
        now = time.monotonic()
        if state in ACTIVE_STATES or not known:
            gone_since = None
            last_state = state or last_state
        elif gone_since is None:
            gone_since = now
            last_state = state or "no longer in the queue"
        elif now - gone_since > grace_s:
            raise TrainingError(f"SLURM job {job_id} for {what} ended ({last_state}) without {missing}; "
                                f"log {log_dir / job_id}: {_log_tail(log_dir / job_id)}")
        if now - start > max_wait_s:
            subprocess.run(["scancel", str(job_id)], capture_output=True)
            raise TrainingError(f"SLURM job {job_id} for {what} not done after {max_wait_s / 60:.0f} min "
                                f"(last state {last_state}{f', pending reason {pending}' if pending else ''}); cancelled it")
        # result files are cheap to check; jitter keeps waiters from polling in step
        time.sleep(min(poll_s, CHECK_S) * random.uniform(0.8, 1.2))


def _tell_pending_reason(job_id: str, what: str, reason: str | None, last: str | None) -> str | None:
    """Print one line to stderr when the pending job's reason changes to one under which it
    cannot start (:data:`NEVER_STARTS_REASONS`); the reason now, or the last one seen."""
    if reason is not None and reason != last and reason in NEVER_STARTS_REASONS:
        print(f"warning: SLURM job {job_id} for {what} is pending with reason {reason}: it asks for "
              f"{NEVER_STARTS_REASONS[reason]}, so it will not start until that changes (scancel {job_id}, "
              f"fix the suite's key and rerun)", file=sys.stderr, flush=True)
    return reason or last


def _log_tail(folder: Path, lines: int = 3, suffix: str = "_log.err") -> str:
    """The last non-empty lines of the job's stderr log (submitit prints tracebacks there)."""
    logs = sorted(folder.glob(f"*{suffix}")) if folder.is_dir() else []
    if not logs:
        return "(no log)"
    text = [ln.strip() for ln in logs[-1].read_text(errors="replace").splitlines() if ln.strip()]
    return " | ".join(text[-lines:]) or "(empty log)"


# --------------------------------------------------------------------------------------
# Any other dho command: dho submit-cmd
class _StderrTail(io.TextIOBase):
    """Passes writes through to ``stream`` and keeps the last lines written."""

    def __init__(self, stream, keep: int = 50):
        self.stream, self.keep, self.lines, self.partial = stream, keep, [], ""

    def write(self, text: str) -> int:
        self.stream.write(text)
        parts = (self.partial + text).replace("\r", "\n").split("\n")
        self.partial = parts.pop()
        self.lines = (self.lines + [p for p in parts if p.strip()])[-self.keep:]
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def fileno(self) -> int:
        return self.stream.fileno()

    def isatty(self) -> bool:
        return False

    def error_line(self) -> str | None:
        """The command's ``error: ...`` line (dho.cli prints user errors so), else its last line."""
        lines = self.lines + ([self.partial] if self.partial.strip() else [])
        errors = [ln for ln in lines if ln.startswith("error: ")]
        return (errors or lines or [None])[-1]


def run_command(argv: list[str]) -> tuple[int, str | None]:
    """Run ``dho ARGV`` in this process: (exit status, its error line or None)."""
    from .cli import main

    tail = _StderrTail(sys.stderr)
    sys.stderr = tail
    try:
        rc = main(list(argv))
    finally:
        sys.stderr = tail.stream
    return rc, tail.error_line()


def _command_text(argv: list[str]) -> str:
    """``dho teacher zeroshot``: the command words before the first option."""
    words = []
    for a in argv[:2]:
        if a.startswith("-"):
            break
        words.append(a)
    return " ".join(["dho", *words])


def _failure(argv: list[str], rc: int, error: str | None) -> str:
    reason = error[len("error: "):] if error and error.startswith("error: ") else (error or "no error message")
    return f"`{_command_text(argv)}` failed (exit status {rc}): {reason}"


class CliJob(submitit.helpers.Checkpointable):
    """A submitit callable: runs ``dho ARGV`` (:func:`dho.cli.main`) in the job and raises
    :class:`CommandError` (with the command's error line) if it exits non-zero or leaves
    no ``done`` file.  It reports the outcome in ``status_file`` (JSON, with the
    launcher's ``token``).  On preemption/timeout it is requeued and reruns the command
    from the start (dho commands write their outputs atomically)."""

    def __call__(self, argv: list[str], done: str, status_file: str | None = None,
                 token: str | None = None) -> int:
        try:
            rc, error = run_command(argv)
            if rc == 0 and not Path(done).exists():
                rc, error = 1, f"error: it exited 0 but wrote no done file {done}"
        except Exception as e:  # a crash, not a user error: still report one line
            first = str(e).strip().splitlines()
            rc, error = 1, f"error: {type(e).__name__}: {first[0] if first else ''}".rstrip(": ")
            self._report(status_file, token, rc, error)
            raise
        self._report(status_file, token, rc, error)
        if rc != 0:
            raise CommandError(_failure(argv, rc, error))
        return rc

    @staticmethod
    def _report(status_file: str | None, token: str | None, rc: int, error: str | None) -> None:
        if status_file:
            atomic_write_json(status_file, {"token": token, "rc": rc, "error": error,
                                            "job_id": os.environ.get("SLURM_JOB_ID")})


def _sidecar(done: Path, kind: str) -> Path:
    """``.DONE.<kind>`` beside the done file: launcher state of a command."""
    return done.parent / f".{done.name}.{kind}"


def check_command(argv: list[str], isolated: bool = False) -> list[str]:
    """``argv`` without a leading ``--``, checked against dho's parser (so that a usage
    error shows now, not in a SLURM job).  ``isolated``: parse in a child process, so that
    this one (which only waits) never imports the command's module and torch with it."""
    argv = list(argv[1:] if argv[:1] == ["--"] else argv)
    if not argv:
        raise CommandError("no command to launch: expected `dho submit-cmd [options] -- COMMAND ...`")
    if argv[0] in NOT_LAUNCHABLE:
        raise CommandError(f"`dho {argv[0]}` cannot be launched by submit-cmd (it launches work itself)")
    if not isolated:
        _check_usage(argv)
        return argv
    p = subprocess.run([sys.executable, "-m", "dho.launch", *argv], capture_output=True, text=True)
    if p.returncode != 0:
        lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
        raise CommandError(lines[-1] if lines else f"cannot check `dho {' '.join(argv)}` (exit {p.returncode})")
    return argv


def _check_usage(argv: list[str]) -> None:
    """Raise :class:`CommandError` with the parser's last line if ``dho ARGV`` is a usage error
    or only prints help (imports the command's module only)."""
    from .cli import build_parser

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            build_parser(argv[0]).parse_args(argv)
        except SystemExit as e:
            if e.code:
                lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
                raise CommandError(f"bad command `dho {' '.join(argv)}`: "
                                   f"{lines[-1] if lines else 'usage error'}") from None
            raise CommandError(f"`dho {' '.join(argv)}` only prints help: nothing to launch") from None


def submit_command(argv: list[str], done: str | Path, launcher: str = "local", request: SlurmRequest | None = None,
                   log_dir: str | Path | None = None, name: str | None = None, poll_s: float = POLL_S,
                   max_wait_min: float | None = None, grace_s: float = 30.0) -> dict[str, Any]:
    """Run ``dho ARGV`` with ``launcher`` until it exits 0 and ``done`` exists; return
    ``{"rc": 0, "job_id": ...}``.  A failure raises :class:`CommandError` (the command's
    error line) or :class:`TrainingError` (job lost / out of time, with the log tail)."""
    argv = check_command(argv, isolated=launcher == "slurm")
    done = Path(done).absolute()
    if launcher == "local":
        rc, error = run_command(argv)
        if rc != 0:  # its `error: ...` line is already on stderr
            raise CommandError(_failure(argv, rc, error), rc=rc, reported=True)
        if not done.exists():
            raise CommandError(f"`{_command_text(argv)}` exited 0 but wrote no done file {done}")
        return {"rc": 0, "job_id": None}
    if launcher != "slurm":
        raise ConfigError(f"--launcher {launcher!r}: expected 'local' or 'slurm'")
    if log_dir is None:
        raise ConfigError("--log-dir is required with --launcher slurm (the SLURM logs folder)")
    request = request or SlurmRequest()
    log_dir = Path(log_dir).absolute()
    status_file = _sidecar(done, "status.json")
    name = name or _command_text(argv).replace(" ", "-")
    record = submit_or_attach(
        lock=_sidecar(done, "lock"), job_file=_sidecar(done, "job.json"),
        identity={"argv": argv, "done": str(done), "cwd": os.getcwd()}, extra={"token": uuid.uuid4().hex},
        make_job=lambda r: (CliJob(), (argv, str(done), str(status_file), r["token"])),
        request=request, log_dir=log_dir, name=name, what=str(done))
    job_id, token = record["job_id"], record["token"]

    def outcome() -> dict[str, Any] | None:
        status = _read_json(status_file)
        if not status or status.get("token") != token:
            return None  # not finished (or the file of an earlier job)
        if status.get("rc") != 0:
            raise CommandError(f"SLURM job {job_id}: {_failure(argv, status.get('rc'), status.get('error'))}")
        return {"rc": 0, "job_id": job_id} if done.exists() else None

    if max_wait_min is None:
        max_wait_min = request.default_max_wait_min()
    result = wait_for_job(job_id, log_dir, outcome, what=f"`{_command_text(argv)}` ({done})",
                          missing=f"a successful exit and {done.name}", poll_s=poll_s,
                          max_wait_s=max_wait_min * 60, grace_s=grace_s,
                          submitted_at=record.get("submitted_at", 0.0))
    for log in sorted((log_dir / job_id).glob("*_log.out"))[-1:]:  # the command's last output line
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines()
                 if ln.strip() and not ln.startswith("submitit ")]
        if lines:
            print(f"SLURM job {job_id}: {lines[-1]}")
    return result


# --------------------------------------------------------------------------------------
# CLI
def _request(args: argparse.Namespace) -> SlurmRequest:
    return SlurmRequest(gpus=args.gpus, cpus=args.cpus, mem_gb=args.mem_gb, time_min=args.time_min,
                        partition=args.partition, account=args.account, qos=args.qos,
                        max_requeues=args.max_requeues, nodes=args.nodes, tasks_per_node=max(1, args.tasks_per_node))


def _cmd_submit(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, args.set or [])
    request = _request(args)
    if not args.tasks_per_node:  # a training run: one data-parallel rank per GPU
        request = dataclasses.replace(request, tasks_per_node=max(1, request.gpus))
    m = submit(spec, args.out, launcher=args.launcher, request=request, log_dir=args.log_dir,
               poll_s=args.poll_s, max_wait_min=args.max_wait_min, grace_s=args.grace_s)
    print(f"{args.out}: done, test_acc {m['test_acc']:.2f} (slurm job {m.get('slurm_job_id') or '-'})")
    return 0


def _cmd_submit_cmd(args: argparse.Namespace) -> int:
    try:
        r = submit_command(args.command, args.done, launcher=args.launcher, request=_request(args),
                           log_dir=args.log_dir, name=args.name, poll_s=args.poll_s,
                           max_wait_min=args.max_wait_min, grace_s=args.grace_s)
    except CommandError as e:
        if e.reported:  # one error line, the command's own
            return e.rc
        raise
    print(f"{args.done}: done (slurm job {r['job_id'] or '-'})")
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


def _add_launch_args(p: argparse.ArgumentParser, log_dir_help: str) -> None:
    """--launcher, --log-dir and the SLURM request / wait flags (shared by submit and submit-cmd)."""
    p.add_argument("--launcher", choices=("local", "slurm"), default="local")
    p.add_argument("--log-dir", default=None, help=log_dir_help)
    p.add_argument("--partition", default=None)
    p.add_argument("--account", default=None)
    p.add_argument("--qos", default=None)
    p.add_argument("--gpus", type=_positive(int), default=0, help="GPUs per node (default 0)")
    p.add_argument("--cpus", type=_positive(int), default=1, help="CPUs per node, shared by its tasks (default 1)")
    p.add_argument("--nodes", type=_positive(int), default=1, help="nodes per job (data-parallel; default 1)")
    p.add_argument("--tasks-per-node", type=int, default=0,
                   help="processes per node, one data-parallel rank each (dho submit: default one per GPU; "
                        "submit-cmd: 1)")
    p.add_argument("--mem-gb", type=_positive(float), default=4.0, help="memory per node in GB (default 4)")
    p.add_argument("--time-min", type=_positive(int), default=60, help="time limit per job in minutes (default 60)")
    p.add_argument("--max-requeues", type=_positive(int), default=3,
                   help="preemptions/timeouts a job may requeue through (default 3)")
    p.add_argument("--max-wait-min", type=_positive(float), default=None,
                   help="give up (and scancel) after this long (default: time-min x (max-requeues + 1) + 1 day)")
    p.add_argument("--poll-s", type=_positive(float), default=POLL_S,
                   help=f"seconds between squeue calls, one `squeue --me` per log folder shared by every "
                        f"waiter of that folder (default {POLL_S:g}); result files are checked every "
                        f"min(poll-s, {CHECK_S:g}) s")
    p.add_argument("--grace-s", type=_positive(float), default=30.0,
                   help="seconds a job may be out of the queue before its missing result is a failure (default 30)")


SUBMIT_HELP = """\
Launch one training run, in this process (--launcher local) or as a SLURM job
(--launcher slurm), and wait until it is done. A run whose run directory already holds
its finished metrics is not run again. If this command is stopped while a SLURM job
runs, the job keeps running and the next identical command waits on it instead of
submitting a second one. A preempted or timed-out job is requeued (up to
--max-requeues times) and resumes from its last epoch checkpoint. A job that ends
without a result is reported in one line: the run's own error, or the tail of its log.
SLURM logs go to --log-dir/<job id>/."""

SUBMIT_CMD_HELP = """\
Run another dho command (teacher preparation, evaluation) the same way as `dho submit`:
in this process or as a SLURM job, waiting until it is done. Success means exit status
0 and the --done file exists; a second identical call while the job is queued or
running waits on that job instead of submitting another."""


def add_cli(sub) -> None:
    p = sub.add_parser("submit", help="launch one training run (local or SLURM) and wait until it is done",
                       description=SUBMIT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", action="append", required=True, metavar="FILE",
                   help="spec file (YAML/JSON); repeat to merge several")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a spec key")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory")
    _add_launch_args(p, "SLURM logs folder (default RUN_DIR/logs); one subfolder per job")
    p.set_defaults(func=_cmd_submit)

    c = sub.add_parser("submit-cmd", help="launch another dho command (local or SLURM) and wait until it is done",
                       usage="dho submit-cmd [options] --done FILE -- COMMAND [ARGS ...]",
                       description=SUBMIT_CMD_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("--done", required=True, metavar="FILE",
                   help="file the command writes: success = exit status 0 and this file exists")
    c.add_argument("--name", default=None, help="SLURM job name (default dho-COMMAND)")
    _add_launch_args(c, "SLURM logs folder (required with --launcher slurm); one subfolder per job")
    c.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND ...",
                   help="the dho command and its arguments, after `--`")
    c.set_defaults(func=_cmd_submit_cmd)


if __name__ == "__main__":  # `python -m dho.launch ARGV`: the isolated usage check of check_command
    try:
        _check_usage(sys.argv[1:])
    except CommandError as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
