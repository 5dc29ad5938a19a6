"""Atomic output helpers: write to a temp file in the same folder, fsync, rename.

A killed job therefore never leaves a file that looks complete.  OS errors (disk full,
read-only folder) become :class:`OutputError` naming the path.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import DataError, OutputError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to ``path``; rename it onto ``path`` if the block succeeds."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are shared files
        yield tmp_path
        with open(tmp_path, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    except OSError as e:
        tmp_path.unlink(missing_ok=True)
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (``filelock.FileLock``: an ``flock`` on Unix; the
    file is created if absent and kept) for the block; blocks until other holders release
    it.  The one lock helper of the package (run directories, submissions, squeue
    snapshots, the sqlite store's creation)."""
    from filelock import FileLock

    lock = FileLock(path, preserve_lock_file=True)  # kept: no unlink/recreate race between waiters
    try:
        lock.acquire()
    except OSError as e:  # read-only or foreign folder
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        yield
    finally:
        lock.release()


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's content (``hashlib.file_digest``)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:  # a Python file: a failed write (disk full) keeps its OSError
            try:
                torch.save(obj, f)
            except RuntimeError as e:  # torch wraps the OSError of f.write in a RuntimeError
                if isinstance(e.__context__, OSError):
                    raise e.__context__ from None  # -> OutputError naming the path
                raise


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Read JSON or raise DataError naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{what} {path} is not valid JSON: {e}") from None


def read_path_list(path: str | os.PathLike, what: str = "list file") -> list[Path]:
    """Paths listed one per line (blank lines and ``#`` comments ignored), or DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} not found: {path}")
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [Path(line) for line in lines if line]
