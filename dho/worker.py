"""A warm worker for local runs: import torch, torchvision and mlflow once, fork per command.

Every local job of the workflow is a fresh ``python -m dho ...`` process, and on a small
machine most of a short run is spent before it starts: importing torch, torchvision
(which pulls in ``torch._dynamo``) and mlflow takes about 8 s of CPU per process on the
2-core machine this was built on (``python -m benchmarks.overhead`` measures it).  With
the worker, a job's ``python -m dho ...`` is a thin client (:mod:`dho.worker_client`,
standard library only) that hands its command line, working directory, environment and
stdout/stderr to this server over a Unix socket; the server forks a child that already
holds the imports, and the child runs the command exactly as ``python -m dho`` would
(:func:`dho.cli.main`), writing to the client's own stdout/stderr (so to the job's log).
The client exits with the child's exit status.

Semantics kept from a plain process:

* signals: SIGTERM/SIGINT/SIGHUP sent to the client are forwarded to the child (its own
  process group); a client that dies without a word (SIGKILL) gets its child SIGKILLed,
  so a killed job leaves what a killed process leaves (the run directory's contract makes
  both resumable);
* environment, working directory and thread count come from the client's request
  (``torch.set_num_threads`` from ``OMP_NUM_THREADS``), never from the server;
* the server never runs torch code itself (a forked libgomp pool would hang), it only
  imports modules.

Without a server (``DHO_WORKER`` unset, or nothing listening) ``python -m dho`` runs in
its own process as before.  The workflow starts one server per local Snakemake invocation
(``onstart``, config key ``local_worker``) and stops it at the end; the server also stops
when its owner process is gone, or after ``--idle`` seconds without a request.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import ConfigError
from .worker_client import read_message, send_message

PRELOAD = ("torch", "torchvision", "open_clip", "mlflow", "mlflow.store.tracking.sqlalchemy_store", "pandas",
           "dho.train", "dho.cli", "dho.evaluate", "dho.results.cli", "dho.models.clip")
TICK_S = 0.2
KILL_GRACE_S = 10.0


def socket_path(results: str | Path) -> str:
    """The socket of the worker serving a results folder (short: Unix socket paths are
    limited to ~100 bytes, so it lives in the temporary folder, named by a hash)."""
    import hashlib
    import tempfile

    key = hashlib.sha256(str(Path(results).resolve()).encode()).hexdigest()[:16]
    return str(Path(tempfile.gettempdir(), f"dho-worker-{os.getuid()}-{key}.sock"))


def _run_cli(argv: list[str]) -> int:
    from .cli import main

    return main(argv)


@dataclass
class _Job:
    conn: socket.socket
    pid: int
    killed_at: float | None = None


class Server:
    """The fork server: one accepted connection = one command in one forked child."""

    def __init__(self, path: str, idle_s: float, owner: int | None, run: Callable[[list[str]], int] = _run_cli,
                 log=sys.stderr):
        self.path, self.idle_s, self.owner, self.run, self.log = path, idle_s, owner, run, log
        self.jobs: dict[int, _Job] = {}          # by child pid; the selector holds each job by its socket
        self.last_activity = time.monotonic()
        self.stopping = False
        self.served = 0

    def _say(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} worker[{os.getpid()}]: {text}", file=self.log, flush=True)

    # -- main loop ---------------------------------------------------------------------
    def serve(self, ready: Callable[[], None] = lambda: None) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(self.path):
            os.unlink(self.path)
        listener.bind(self.path)
        os.chmod(self.path, 0o600)
        listener.listen(64)
        listener.setblocking(False)
        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ, "accept")
        self._say(f"listening on {self.path} (pid {os.getpid()}, owner {self.owner}, idle {self.idle_s:g} s)")
        ready()
        try:
            while not (self.stopping and not self.jobs):
                for key, _ in sel.select(TICK_S):
                    if key.data == "accept":
                        self._accept(listener, sel)
                    else:
                        self._client_readable(key.data, sel)
                self._reap(sel)
                self._escalate()
                self._check_stop(sel, listener)
        finally:
            sel.close()
            if not self.stopping:
                listener.close()
                if os.path.exists(self.path):
                    os.unlink(self.path)
            self._say(f"stopped after {self.served} command(s)")

    def _check_stop(self, sel, listener) -> None:
        if self.stopping:
            return
        owner_gone = self.owner is not None and not _alive(self.owner)
        idle = not self.jobs and time.monotonic() - self.last_activity > self.idle_s
        if owner_gone or idle:
            self._say("owner process gone" if owner_gone else f"idle for {self.idle_s:g} s")
            self._stop_listening(sel, listener)

    def _stop_listening(self, sel, listener) -> None:
        """No new commands: clients that connect from now on run in their own process."""
        self.stopping = True
        sel.unregister(listener)
        listener.close()
        if os.path.exists(self.path):
            os.unlink(self.path)

    # -- requests ----------------------------------------------------------------------
    def _accept(self, listener, sel) -> None:
        try:
            conn, _ = listener.accept()
        except BlockingIOError:
            return
        conn.setblocking(True)
        conn.settimeout(5.0)
        try:
            msg, fds = read_message(conn, want_fds=True)
        except (OSError, ValueError) as e:
            self._say(f"bad request: {e}")
            conn.close()
            return
        self.last_activity = time.monotonic()
        if msg.get("op") == "stop":
            self._say("stop requested")
            self._stop_listening(sel, listener)
            send_message(conn, {"ok": True})
            conn.close()
            return
        if msg.get("op") == "ping":
            send_message(conn, {"ok": True, "pid": os.getpid(), "served": self.served})
            conn.close()
            return
        pid = self._fork(msg, fds, [listener.fileno(), conn.fileno(), *(j.conn.fileno() for j in self.jobs.values())])
        for fd in fds:
            os.close(fd)
        conn.settimeout(None)
        job = self.jobs[pid] = _Job(conn, pid)
        self.served += 1
        sel.register(conn, selectors.EVENT_READ, job)

    def _fork(self, msg: dict, fds: list[int], server_fds: list[int]) -> int:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: become the command
            code = 1
            try:
                for fd in server_fds:  # the server's sockets are not the command's
                    os.close(fd)
                code = _child(msg, fds, self.run)
            finally:
                os._exit(code)
        return pid

    def _client_readable(self, job: _Job, sel) -> None:
        try:
            data = job.conn.recv(4096)
        except OSError:
            data = b""
        if data:  # a forwarded signal: {"signal": N}
            for line in data.decode(errors="replace").splitlines():
                try:
                    signum = int(json.loads(line)["signal"])
                except (ValueError, KeyError, TypeError):
                    continue
                _killpg(job.pid, signum)
            return
        # the client went away without a word: it was SIGKILLed; so is its command
        sel.unregister(job.conn)
        _killpg(job.pid, signal.SIGKILL)
        job.killed_at = time.monotonic()

    def _reap(self, sel) -> None:
        while self.jobs:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            job = self.jobs.pop(pid, None)
            if job is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code   # killed by signal N -> 128 + N, as a shell says
            try:
                sel.unregister(job.conn)
            except (KeyError, ValueError):
                pass
            try:
                send_message(job.conn, {"exit": code})
            except OSError:
                pass
            job.conn.close()
            self.last_activity = time.monotonic()

    def _escalate(self) -> None:
        now = time.monotonic()
        for job in self.jobs.values():
            if job.killed_at is not None and now - job.killed_at > KILL_GRACE_S:
                _killpg(job.pid, signal.SIGKILL)


def _child(msg: dict, fds: list[int], run: Callable[[list[str]], int]) -> int:
    """In the forked child: take over the client's stdio, directory and environment, run."""
    os.setpgid(0, 0)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    for target, fd in zip((1, 2), fds):
        os.dup2(fd, target)
    os.chdir(msg["cwd"])
    os.environ.clear()
    os.environ.update(msg["env"])
    sys.argv = ["python -m dho", *msg["argv"]]
    sys.path[0:0] = [p for p in msg.get("path", []) if p not in sys.path]
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and threads.isdigit() and int(threads) > 0 and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))
    try:
        code = int(run(list(msg["argv"])) or 0)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        code = 130
    except BaseException:  # noqa: BLE001 - what an uncaught exception does in a plain process
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        import atexit

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def _killpg(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass
    except PermissionError:
        os.kill(pid, signum)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- start / stop ------------------------------------------------------------------------
def preload(modules=PRELOAD) -> float:
    """Import what commands need (no torch code runs here); seconds taken."""
    import importlib

    t0 = time.monotonic()
    for name in modules:
        importlib.import_module(name)
    return time.monotonic() - t0


def start(path: str, idle_s: float, owner: int | None, log_file: str | None, wait_s: float = 120.0) -> int:
    """Start a detached server on ``path`` (if none answers there) and return once it
    listens; its pid."""
    from .worker_client import ping

    answer = ping(path)
    if answer:
        return int(answer["pid"])
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # first child: a new session, then the daemon
        os.close(r)
        os.setsid()
        if os.fork():
            os._exit(0)
        try:
            _daemon(path, idle_s, owner, log_file, w)
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r) as ready:
        line = ready.readline().strip()
    if not line:
        raise ConfigError(f"the local worker did not start on {path} (see {log_file or 'its stderr'})")
    return int(line)


def _daemon(path: str, idle_s: float, owner: int | None, log_file: str | None, ready_fd: int) -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    if log_file:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        out = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    server = Server(path, idle_s, owner)
    server._say(f"preloaded {', '.join(PRELOAD)} in {preload():.1f} s")

    def ready() -> None:
        os.write(ready_fd, f"{os.getpid()}\n".encode())
        os.close(ready_fd)

    server.serve(ready)


def stop(path: str) -> bool:
    """Ask the server on ``path`` to stop once its commands finish; whether one answered."""
    from .worker_client import request

    return request(path, {"op": "stop"}) is not None


def _cmd_worker(args) -> int:
    from .worker_client import ping

    if args.action == "start":
        pid = start(args.socket, args.idle, args.owner, args.log)
        print(f"local worker {pid} on {args.socket}")
    elif args.action == "stop":
        print("stopped" if stop(args.socket) else f"no worker on {args.socket}")
    else:
        answer = ping(args.socket)
        print(f"worker {answer['pid']}: {answer['served']} command(s) served" if answer
              else f"no worker on {args.socket}")
        return 0 if answer else 1
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("worker", help="start, stop or ping the warm worker that runs local commands by fork",
                       description="Start, stop or ping the warm worker: a server that imports torch, torchvision "
                                   "and mlflow once and runs each `python -m dho ...` of a process with "
                                   "DHO_WORKER=SOCKET in a forked child (the workflow does this for local runs).")
    p.add_argument("action", choices=("start", "stop", "ping"))
    p.add_argument("--socket", required=True, help="Unix socket path (what DHO_WORKER names)")
    p.add_argument("--idle", type=float, default=600.0, help="stop after this many seconds without a command "
                                                              "(default 600)")
    p.add_argument("--owner", type=int, default=None, help="stop when this process is gone (e.g. Snakemake's pid)")
    p.add_argument("--log", default=None, help="the server's log file (start)")
    p.set_defaults(func=_cmd_worker)
