"""Fault 5, server half: a real `dho mlflow-server` (mlflow server + sqlite) on 127.0.0.1.

16 concurrent processes log through it; a run whose server is down finishes with a warning
and `dho mlflow-sync` later re-logs it as exactly one MLflow run; the server dying
mid-run does not fail the run.  One server per module (its start takes seconds).
"""

import contextlib
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

torch.set_num_threads(1)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

from mlflow import MlflowClient  # noqa: E402  (imported once here: the forked children share it)

from conftest import free_port  # noqa: E402
from test_faults_disk import quick_spec  # noqa: E402
from dho import tracking  # noqa: E402
from dho.cli import main as cli_main  # noqa: E402
from dho.io import atomic_write_json  # noqa: E402
from dho.rundir import load_done  # noqa: E402
from dho.spec import RunSpec  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
N_PROC, N_EPOCHS = 16, 6


def healthy(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def stop_group(proc: subprocess.Popen) -> None:
    """Stop the server and its uvicorn workers (its own process group); once."""
    if getattr(proc, "stopped", False):
        return
    proc.stopped = True
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers (workers) of the group
    except ProcessLookupError:
        pass
    proc.wait(timeout=20)


class Server(SimpleNamespace):
    def ready(self) -> "Server":
        """Wait (bounded) until the server answers /health."""
        deadline = time.time() + 180
        while not healthy(self.port):
            if self.proc.poll() is not None:
                self.log.seek(0)
                pytest.fail(f"dho mlflow-server exited with {self.proc.returncode}:\n{self.log.read()[-3000:]}")
            assert time.time() < deadline, "mlflow server not healthy after 180 s"
            time.sleep(0.3)
        return self


@contextlib.contextmanager
def serve(root: Path):
    """`dho mlflow-server` (default host) on a free port under ``root``, stopped at the end.
    Callers use ``server.ready()`` when they need it up, so its start overlaps other work."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    db = root / "results" / "mlflow.db"
    log = open(root / "server.log", "w+")
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "dho", "mlflow-server", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{db}", "--artifacts-destination", str(root / "results" / "mlartifacts")]
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield Server(proc=proc, port=port, uri=f"http://127.0.0.1:{port}", db=db, root=root, log=log)
    finally:
        stop_group(proc)
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server shared by the tests of this module; no test stops it."""
    with serve(tmp_path_factory.mktemp("mlflow-server")) as s:
        yield s


def listening_addresses(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:
                if len(addr) == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1]))
                else:
                    raw = bytes.fromhex(addr)
                    found.add(socket.inet_ntop(socket.AF_INET6, b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))))
    return found


def non_loopback_ipv4() -> str | None:
    """This machine's outgoing IPv4 address (no packet is sent), or None without a route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.254.254.254", 1))
        except OSError:
            return None
        ip = s.getsockname()[0]
    return None if ip.startswith("127.") else ip


# --------------------------------------------------------------------------------------
def _search(uri: str, spec_hash: str):
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("faults")
    return [] if exp is None else client.search_runs([exp.experiment_id], f"tags.spec_hash = '{spec_hash}'")


def test_run_with_server_down_finishes_then_sync_logs_exactly_one_run(server, shapes_root, tmp_path, monkeypatch,
                                                                       capsys):
    from dho import train

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    monkeypatch.setattr("dho.tracking.time.sleep", lambda s: None)  # no backoff waits; the retries still run
    down = f"http://127.0.0.1:{free_port()}"  # nothing listens there: the server is down for this run
    spec = RunSpec.from_dict(quick_spec(shapes_root, tmp_path, mlflow_uri=down, mlflow_experiment="faults"))
    run_dir = tmp_path / "runs" / "r"
    with pytest.warns(RuntimeWarning, match=r"MLflow \(http://127\.0\.0\.1:\d+\) unavailable"):
        m = train.run_training(spec, run_dir)
    assert m["status"] == "complete" and m["mlflow_run_id"] is None
    assert not (run_dir / "mlflow_run_id").exists()
    assert _search(server.ready().uri, spec.hash) == []

    # the server is reachable again: `dho mlflow-sync`, twice -> one run
    ids = []
    for _ in range(2):
        capsys.readouterr()
        assert cli_main(["mlflow-sync", str(run_dir), "--uri", server.uri]) == 0
        ids.append(capsys.readouterr().out.split("MLflow run ")[-1].strip())
    runs = _search(server.uri, spec.hash)
    assert len(runs) == 1 and ids == [runs[0].info.run_id] * 2
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.metrics["test_acc"] == pytest.approx(m["test_acc"])
    client = MlflowClient(tracking_uri=server.uri)
    assert [h.step for h in client.get_metric_history(run.info.run_id, "val_acc")] == [1]
    # a new experiment through the server stores artifacts via its proxy in --artifacts-destination
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"metrics.json", "history.csv"}
    assert list((server.root / "results" / "mlartifacts").rglob("metrics.json"))
    assert load_done(run_dir)["mlflow_run_id"] == run.info.run_id
    assert tracking.check_results(tmp_path / "runs", server.uri) == (1, [])


def test_server_prints_its_uri_and_listens_on_loopback_only(server):
    server.ready()
    out = (server.root / "server.log").read_text()
    assert f"export MLFLOW_TRACKING_URI=http://127.0.0.1:{server.port}" in out
    assert "warning:" not in out.split("export MLFLOW_TRACKING_URI")[0]  # loopback: no exposure warning
    assert server.db.is_file()  # created by init_store before the server's workers started
    assert listening_addresses(server.port) == {"127.0.0.1"}
    ip = non_loopback_ipv4()
    if ip is not None:  # the same port through this machine's network address is closed
        with pytest.raises(OSError):
            socket.create_connection((ip, server.port), timeout=2).close()


def test_second_server_on_a_busy_port_is_one_error_line(server, tmp_path, env):
    server.ready()
    p = subprocess.Popen([sys.executable, "-m", "dho", "mlflow-server", "--port", str(server.port),
                          "--backend-store-uri", f"sqlite:///{tmp_path / 'm.db'}"], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            stop_group(p)  # had it exec'd a server after all
    assert p.returncode == 2, err[-2000:]
    assert err.strip().splitlines() == [f"error: cannot listen on 127.0.0.1:{server.port}: Address already in use "
                                        f"(another server running? pick another --port)"]
    assert not (tmp_path / "m.db").exists()  # refused before creating anything


def _log_through_server(uri: str, run_dir: str, seed: int) -> None:
    """Child process: one run with a series of metrics, then finish; exit 3 if MLflow gave up."""
    spec = RunSpec(mlflow_uri=uri, seed=seed, epochs=N_EPOCHS, tags={"suite": "server"})
    tr = tracking.RunTracker(spec, run_dir, attempts=8, base_delay=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tr.start()
        for epoch in range(1, N_EPOCHS + 1):
            tr.log_epoch({"epoch": epoch, "train_loss": 1.0 / epoch, "lr": 1e-3, "val_acc": seed * 100.0 + epoch,
                          "val_acc_ce": float(epoch), "grad_cosine": -0.1})
            tr.log_grad_cosines([(epoch * 10, seed / 100.0)])
        atomic_write_json(Path(run_dir) / "metrics.json", {"test_acc": float(seed)})
        tr.finish({"test_acc": float(seed)})
    unavailable = [str(w.message) for w in caught if "unavailable" in str(w.message)]
    if unavailable or not tr.enabled or tr.run_id is None:
        print(unavailable, file=sys.stderr)
        os._exit(3)


def test_16_concurrent_processes_lose_no_metric(server, tmp_path):
    server.ready()
    ctx = mp.get_context("fork")  # cheap children (mlflow keys its HTTP sessions by pid: fork-safe)
    procs = []
    for seed in range(1, N_PROC + 1):
        d = tmp_path / f"run{seed}"
        d.mkdir()
        procs.append(ctx.Process(target=_log_through_server, args=(server.uri, str(d), seed)))
    for p in procs:
        p.start()
    deadline = time.time() + 240
    for p in procs:
        p.join(timeout=max(1.0, deadline - time.time()))
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join(5)
    assert [p.exitcode for p in procs] == [0] * N_PROC

    client = MlflowClient(tracking_uri=server.uri)
    exp = client.get_experiment_by_name("dho")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.suite = 'server'", max_results=100)
    assert len(runs) == N_PROC
    assert sorted(int(r.data.params["seed"]) for r in runs) == list(range(1, N_PROC + 1))
    for run in runs:
        seed = int(run.data.params["seed"])
        rid = run.info.run_id
        assert run.info.status == "FINISHED"
        assert (tmp_path / f"run{seed}" / "mlflow_run_id").read_text().strip() == rid
        val = sorted((m.step, m.value) for m in client.get_metric_history(rid, "val_acc"))
        assert val == [(e, seed * 100.0 + e) for e in range(1, N_EPOCHS + 1)]
        for key in ("train_loss", "lr", "val_acc_ce", "grad_cosine_epoch", "grad_cosine"):
            assert len(client.get_metric_history(rid, key)) == N_EPOCHS, key
        assert run.data.metrics["test_acc"] == float(seed)
        assert "metrics.json" in {a.path for a in client.list_artifacts(rid)}


@pytest.fixture
def own_server(tmp_path):
    """A server of this test alone (the test stops it; the module's server stays up)."""
    with serve(tmp_path / "own-server") as s:
        yield s


def test_server_dying_mid_run_only_warns(own_server, tmp_path, monkeypatch):
    server = own_server
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    spec = RunSpec(mlflow_uri=server.ready().uri, seed=99, epochs=3, tags={"suite": "dying"})
    tr = tracking.RunTracker(spec, tmp_path, attempts=3, base_delay=0.05)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_id = tr.start()
        tr.log_epoch({"epoch": 1, "val_acc": 10.0})
    assert run_id is not None

    stop_group(server.proc)
    assert not healthy(server.port)
    with pytest.warns(RuntimeWarning, match="unavailable while logging metrics") as rec:
        tr.log_epoch({"epoch": 2, "val_acc": 20.0})
        tr.log_grad_cosines([(5, 0.5)])
        tr.finish({"test_acc": 1.0})
    assert len([w for w in rec if "unavailable" in str(w.message)]) == 1  # warned once, then silent
    assert not tr.enabled
    assert (tmp_path / "mlflow_run_id").read_text().strip() == run_id  # kept for a later mlflow-sync
