"""``dho mlflow-server``: an MLflow tracking server for runs on several nodes.

sqlite on a shared file system is unsafe; with a server only the server process touches
the database.  The server binds 127.0.0.1 unless ``--host`` says otherwise (it has no
authentication).  Clients use :mod:`dho.tracking` with ``MLFLOW_TRACKING_URI`` set to the
URI this command prints.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import ConfigError
from .tracking import DEFAULT_URI, init_store, sqlite_path

SERVER_HOST = "127.0.0.1"
SERVER_PORT = 5000
SERVER_ARTIFACTS = "results/mlartifacts"


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    import ipaddress

    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def server_uri(host: str, port: int) -> str:
    """The tracking URI clients use for a server bound to ``host``.

    A wildcard bind (``0.0.0.0``/``::``) is reached through this machine's address.
    """
    import socket

    if host in ("0.0.0.0", "::", "[::]"):
        try:
            host = socket.gethostbyname(socket.gethostname())
        except OSError:
            host = socket.gethostname()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6 literal
    return f"http://{host}:{port}"


def server_command(host: str = SERVER_HOST, port: int = SERVER_PORT, backend_store_uri: str = DEFAULT_URI,
                   artifacts_destination: str = SERVER_ARTIFACTS, workers: int = 2,
                   allowed_hosts: str | None = None) -> list[str]:
    """The ``mlflow server`` command line (run with this interpreter)."""
    if "://" not in artifacts_destination:  # a local folder: absolute, so the cwd of the server does not matter
        artifacts_destination = str(Path(artifacts_destination).resolve())
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port),
           "--backend-store-uri", backend_store_uri, "--artifacts-destination", artifacts_destination,
           "--workers", str(workers)]
    if allowed_hosts:
        cmd += ["--allowed-hosts", allowed_hosts]
    return cmd


def exposure_warning(host: str) -> str | None:
    """The warning printed when the server binds to a non-loopback address (else None)."""
    if is_loopback(host):
        return None
    return (f"warning: the MLflow server binds to {host}: it has no authentication, so {host} must be a "
            f"private address reachable only from your own machines (cluster network), never the internet")


def server_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of the server: telemetry off and MLflow's GenAI job runner off (dho does not
    use it; it starts ~8 extra processes), unless the caller set them."""
    env = dict(os.environ if environ is None else environ)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    return env


def _check_free(host: str, port: int) -> None:
    """ConfigError unless ``host:port`` can be bound (a clear line instead of uvicorn's traceback)."""
    import socket

    addr = host.strip("[]")
    try:
        family = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            s.bind((addr, port))
    except OSError as e:
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e} (another server running? "
                          f"pick another --port)") from None


def mlflow_server(host: str = SERVER_HOST, port: int = SERVER_PORT, backend_store_uri: str = DEFAULT_URI,
                  artifacts_destination: str = SERVER_ARTIFACTS, workers: int = 2, experiment: str = "dho",
                  allowed_hosts: str | None = None) -> None:
    """Create the store (sqlite: once, before the server's workers start: the fresh-sqlite
    race), print the URI for ``MLFLOW_TRACKING_URI``, then exec ``mlflow server`` (this
    process becomes the server; stop it with Ctrl-C / SIGTERM)."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port {port}: expected 1..65535")
    if workers < 1:
        raise ConfigError(f"--workers {workers}: expected at least 1")
    _check_free(host, port)
    if sqlite_path(backend_store_uri) is not None:
        init_store(backend_store_uri, experiment)
    cmd = server_command(host, port, backend_store_uri, artifacts_destination, workers, allowed_hosts)
    uri = server_uri(host, port)
    warning = exposure_warning(host)
    if warning:
        print(warning, file=sys.stderr)
    print(f"MLflow server: store {backend_store_uri}, artifacts {cmd[cmd.index('--artifacts-destination') + 1]}")
    print(f"export MLFLOW_TRACKING_URI={uri}", flush=True)
    sys.stderr.flush()
    try:
        os.execve(sys.executable, cmd, server_env())
    except OSError as e:
        raise ConfigError(f"cannot start mlflow server ({' '.join(cmd)}): {e.strerror}") from None


def _cmd_server(args) -> int:
    mlflow_server(args.host, args.port, args.backend_store_uri, args.artifacts_destination, args.workers,
                  args.experiment, args.allowed_hosts)
    return 0  # not reached: the process is now the server


def add_cli(sub) -> None:
    p = sub.add_parser("mlflow-server", help="start an MLflow tracking server (binds 127.0.0.1 by default)")
    p.add_argument("--host", default=SERVER_HOST,
                   help=f"address to bind (default {SERVER_HOST}; any other must be a private address)")
    p.add_argument("--port", type=int, default=SERVER_PORT, help=f"port (default {SERVER_PORT})")
    p.add_argument("--backend-store-uri", default=DEFAULT_URI, help=f"database URI (default {DEFAULT_URI})")
    p.add_argument("--artifacts-destination", default=SERVER_ARTIFACTS,
                   help=f"where the server stores uploaded artifacts (default {SERVER_ARTIFACTS})")
    p.add_argument("--workers", type=int, default=2, help="server worker processes (default 2)")
    p.add_argument("--experiment", default="dho", help="experiment created with the store (default: dho)")
    p.add_argument("--allowed-hosts", default=None,
                   help="Host headers the server accepts (mlflow default: localhost and private IPs)")
    p.set_defaults(func=_cmd_server)
