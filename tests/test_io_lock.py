"""dho.io.file_lock (filelock) and file_sha256 (hashlib.file_digest)."""

from __future__ import annotations

import fcntl
import hashlib
import multiprocessing as mp
import os
import threading

import pytest

from dho.errors import OutputError
from dho.io import file_lock, file_sha256


def _count_inside(lock_path: str, log_path: str, n: int) -> None:
    for _ in range(n):
        with file_lock(lock_path):
            with open(log_path, "a") as f:  # an unlocked writer would interleave "in"/"out" lines
                f.write("in\n")
                f.flush()
                f.write("out\n")


def test_file_lock_excludes_other_processes_and_keeps_the_file(tmp_path):
    lock, log = str(tmp_path / ".lock"), str(tmp_path / "log")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_count_inside, args=(lock, log, 20)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 4
    assert open(log).read() == "in\nout\n" * 80
    assert os.path.exists(lock)  # kept (preserve_lock_file): no unlink/recreate race


def test_file_lock_waits_for_a_plain_flock_holder(tmp_path):
    """Compatible with flock: a lock taken by another tool (or an older dho) is respected."""
    path = tmp_path / ".lock"
    entered = threading.Event()
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        t = threading.Thread(target=lambda: (file_lock(path).__enter__(), entered.set()))
        t.start()
        assert not entered.wait(0.5)  # still blocked while the flock is held
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    t.join(timeout=30)
    assert entered.is_set()


def test_file_lock_that_cannot_be_created_is_an_output_error(tmp_path):
    (tmp_path / "file").write_text("")  # a file where the lock's folder should be
    with pytest.raises(OutputError, match="cannot write .*file/.lock"):
        with file_lock(tmp_path / "file" / ".lock"):
            pass


def test_file_sha256_matches_hashlib(tmp_path):
    path = tmp_path / "blob"
    data = os.urandom(3 << 20)
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
