"""One shared view of this user's SLURM queue for every waiting launcher.

A waiting ``dho submit`` / ``dho submit-cmd`` needs to know whether its job is still in
the queue.  Asking ``squeue -j ID`` from every waiter makes the load on the SLURM
controller grow with the number of jobs in flight (``jobs: 100`` waiters polling every
5 s is 20 calls a second).  Instead, waiters that share a folder (the suite's SLURM log
folder, ``results/<suite>/logs``) share one snapshot of the queue:

- ``<folder>/.squeue.json`` holds ``{"taken_at": epoch s, "ok": bool, "states": {job id:
  state}, "reasons": {job id: reason}}``, the output of one ``squeue --me -h -t all -o
  "%i %T %r"`` (reasons of pending jobs only: why SLURM has not started them);
- a waiter reads it; when it is older than ``max_age_s`` the waiter takes
  ``<folder>/.squeue.lock`` (:func:`dho.io.file_lock`), reads it again (another waiter may just have
  refreshed it) and only then runs ``squeue`` itself and rewrites the file atomically.

So there is at most one ``squeue`` call per ``max_age_s`` per folder, however many jobs
wait on it.  A failed ``squeue`` (controller unreachable) is recorded too, so waiters do
not retry it faster than ``max_age_s``.

A job missing from a snapshot taken before the job was submitted is *unknown*, not gone:
the snapshot predates it.  This module imports no torch.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

from .io import atomic_write_json, file_lock

SNAPSHOT = ".squeue.json"
LOCK = ".squeue.lock"
SQUEUE = ("squeue", "--me", "-h", "-t", "all", "-o", "%i %T %r")


def run_squeue(timeout_s: float = 60.0) -> tuple[dict[str, str], dict[str, str]] | None:
    """This user's jobs: their states (``{"123": "RUNNING"}``) and, for pending jobs, the
    reason SLURM gives (``{"124": "Resources"}``); None when squeue failed."""
    try:
        p = subprocess.run(SQUEUE, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    states: dict[str, str] = {}
    reasons: dict[str, str] = {}
    for line in p.stdout.splitlines():
        parts = line.split(maxsplit=2)
        if len(parts) >= 2:
            states[parts[0]] = parts[1]
        if len(parts) == 3 and parts[1] == "PENDING":
            reasons[parts[0]] = parts[2]
    return states, reasons


class QueueView:
    """The shared snapshot of the queue kept in ``folder`` (see the module docstring)."""

    def __init__(self, folder: str | Path, max_age_s: float = 30.0):
        self.folder = Path(folder)
        self.max_age_s = max_age_s
        self.last: dict[str, Any] | None = None  # the snapshot the last state() read

    def _read(self) -> dict[str, Any] | None:
        try:
            snap = json.loads((self.folder / SNAPSHOT).read_text())
        except (OSError, ValueError):
            return None
        ok = isinstance(snap, dict) and isinstance(snap.get("taken_at"), (int, float))
        return snap if ok and isinstance(snap.get("states"), dict) else None

    def snapshot(self, fresher_than: float | None = None) -> dict[str, Any]:
        """A snapshot taken after ``fresher_than`` (epoch s; default: now - max_age_s);
        runs squeue only if the file holds none."""
        wanted = time.time() - self.max_age_s if fresher_than is None else fresher_than
        snap = self._read()
        if snap is not None and snap["taken_at"] >= wanted:
            self.last = snap
            return snap
        self.folder.mkdir(parents=True, exist_ok=True)
        with file_lock(self.folder / LOCK):
            snap = self._read()  # another waiter may have refreshed it while we waited
            if snap is not None and snap["taken_at"] >= wanted:
                self.last = snap
                return snap
            taken_at = time.time()
            queue = run_squeue()
            states, reasons = queue if queue is not None else ({}, {})
            snap = {"taken_at": taken_at, "ok": queue is not None, "states": states, "reasons": reasons}
            atomic_write_json(self.folder / SNAPSHOT, snap)
        self.last = snap
        return snap

    def state(self, job_id: str, submitted_at: float = 0.0,
              fresher_than: float | None = None) -> tuple[str | None, bool]:
        """(state, known): the job's state, or (None, True) when SLURM no longer lists
        it, or (None, False) when squeue failed or the snapshot predates the job."""
        snap = self.snapshot(fresher_than)
        if not snap["ok"]:
            return None, False
        state = snap["states"].get(str(job_id))
        if state is None and snap["taken_at"] < submitted_at:
            return None, False
        return state, True

    def pending_reason(self, job_id: str) -> str | None:
        """Why SLURM has not started the pending job, from the snapshot the last
        :meth:`state` read (no file read, no squeue call); None when it is not pending or
        that snapshot has no reasons."""
        reasons = self.last.get("reasons") if self.last is not None else None
        return reasons.get(str(job_id)) if isinstance(reasons, dict) else None
