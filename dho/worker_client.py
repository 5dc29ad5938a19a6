"""The thin client of the warm worker (:mod:`dho.worker`): standard library only.

``python -m dho ...`` with ``DHO_WORKER=SOCKET`` in its environment sends its command line,
working directory, environment and stdout/stderr (as file descriptors) to the server on
SOCKET and exits with the forked child's status.  When nothing listens there it returns
``None`` and the command runs in this process as usual.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

MAX_REQUEST = 1 << 20
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def send_message(conn: socket.socket, msg: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(msg).encode() + b"\n"
    if fds:
        socket.send_fds(conn, [data[:1]], fds)
        conn.sendall(data[1:])
    else:
        conn.sendall(data)


def read_message(conn: socket.socket, want_fds: bool = False) -> tuple[dict, list[int]]:
    """One newline-terminated JSON message (and the descriptors sent with its first byte)."""
    fds: list[int] = []
    buf = b""
    if want_fds:
        data, fds, _, _ = socket.recv_fds(conn, MAX_REQUEST, 4)
        buf = data
    while not buf.endswith(b"\n"):
        if len(buf) > MAX_REQUEST:
            raise ValueError("request too long")
        chunk = conn.recv(65536)
        if not chunk:
            break
        buf += chunk
    if not buf.strip():
        raise ValueError("empty message")
    return json.loads(buf), fds


def _connect(path: str, timeout: float | None = 5.0) -> socket.socket | None:
    if not path or not os.path.exists(path):
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    return conn


def request(path: str, msg: dict) -> dict | None:
    """A one-shot request (ping, stop); the answer, or None when no server answers."""
    conn = _connect(path)
    if conn is None:
        return None
    try:
        send_message(conn, msg)
        return read_message(conn)[0]
    except (OSError, ValueError):
        return None
    finally:
        conn.close()


def ping(path: str) -> dict | None:
    return request(path, {"op": "ping"})


def forward(path: str, argv: list[str]) -> int | None:
    """Run ``dho argv`` in the worker on ``path``; its exit status, or None without a worker."""
    conn = _connect(path)
    if conn is None:
        return None
    msg = {"op": "run", "argv": argv, "cwd": os.getcwd(), "env": dict(os.environ),
           "path": [p for p in sys.path if p]}
    try:
        send_message(conn, msg, fds=[sys.stdout.fileno(), sys.stderr.fileno()])
    except OSError:
        conn.close()
        return None
    conn.settimeout(None)

    def relay(signum, _frame):
        try:
            conn.sendall(json.dumps({"signal": int(signum)}).encode() + b"\n")
        except OSError:
            pass

    for sig in FORWARDED:
        signal.signal(sig, relay)
    while True:
        try:
            answer, _ = read_message(conn)
            return int(answer["exit"])
        except InterruptedError:
            continue
        except (OSError, ValueError, KeyError):
            print("error: the local worker went away before the command finished", file=sys.stderr)
            return 1
