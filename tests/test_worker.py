"""The warm worker (dho.worker): commands run by fork give what a fresh process gives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, tiny_spec
from dho.worker import Server
from dho.worker_client import ping


def _start(sock: Path, env: dict, tmp: Path) -> None:
    p = subprocess.run([sys.executable, "-m", "dho", "worker", "start", "--socket", str(sock), "--idle", "120",
                        "--log", str(tmp / "worker.log")], env=env, cwd=REPO, capture_output=True, text=True,
                       timeout=180)
    assert p.returncode == 0, p.stderr
    assert ping(str(sock)) is not None


def _dho(args: list[str], env: dict, cwd: Path = REPO, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dho", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=300, **kw)


@pytest.fixture
def worker(tmp_path, env):
    sock = tmp_path / "w.sock"
    _start(sock, env, tmp_path)
    yield sock
    subprocess.run([sys.executable, "-m", "dho", "worker", "stop", "--socket", str(sock)], env=env, cwd=REPO,
                   capture_output=True, timeout=60)


def test_commands_run_in_the_worker_with_their_own_status_output_and_directory(worker, tmp_path, env):
    e = dict(env, DHO_WORKER=str(worker))
    ok = _dho(["methods"], e)
    assert ok.returncode == 0 and "dho " in ok.stdout and "kd " in ok.stdout
    bad = _dho(["train", "--spec", "missing.json"], e, cwd=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: spec file not found: missing.json"
    assert ping(str(worker))["served"] == 2  # both went through the worker, not a fresh process
    # a relative path is the client's: the child ran in tmp_path
    (tmp_path / "s.json").write_text("{not json")
    rel = _dho(["train", "--spec", "s.json"], e, cwd=tmp_path)
    assert rel.returncode == 2 and "s.json" in rel.stderr
    # stopped: the socket is gone and the same command runs in its own process
    stop = _dho(["worker", "stop", "--socket", str(worker)], env)
    assert stop.stdout.strip() == "stopped"
    deadline = time.monotonic() + 30
    while worker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not worker.exists()
    alone = _dho(["train", "--spec", "missing.json"], e, cwd=tmp_path)
    assert alone.returncode == 2 and alone.stderr.strip() == "error: spec file not found: missing.json"


@pytest.mark.slow
def test_a_training_run_through_the_worker_equals_one_in_its_own_process(worker, shapes_root, tmp_path, env):
    spec = tiny_spec(shapes_root, tmp_path, method="ce", epochs=2)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    metrics = {}
    for name, e in (("alone", dict(env, OMP_NUM_THREADS="1")), ("worker", dict(env, DHO_WORKER=str(worker), OMP_NUM_THREADS="1"))):
        p = _dho(["train", "--spec", str(tmp_path / "spec.json"), "--out", str(tmp_path / name)], e)
        assert p.returncode == 0, p.stderr
        metrics[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert ping(str(worker))["served"] == 1
    for key in ("test_acc", "val_acc", "best_epoch"):
        assert metrics["worker"][key] == metrics["alone"][key]
    hist = [(tmp_path / n / "history.csv").read_text() for n in ("alone", "worker")]
    assert hist[0] == hist[1]  # every epoch's loss and accuracy, bit for bit


def _sleeper(argv: list[str]) -> int:
    Path(argv[0]).write_text(str(os.getpid()))
    time.sleep(120)
    return 0


@pytest.fixture
def sleeper_server(tmp_path):
    """A server whose command writes its pid to argv[0] and sleeps (forked from this test)."""
    sock = str(tmp_path / "s.sock")
    pid = os.fork()
    if pid == 0:
        try:
            with open(tmp_path / "server.log", "w") as log:
                Server(sock, idle_s=120, owner=None, run=_sleeper, log=log).serve()
        finally:
            os._exit(0)
    deadline = time.monotonic() + 30
    while ping(sock) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    yield sock
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _client(sock: str, pid_file: Path) -> subprocess.Popen:
    code = f"import sys; from dho.worker_client import forward; sys.exit(forward({sock!r}, [{str(pid_file)!r}]))"
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)))


def _wait_pid(pid_file: Path) -> int:
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)
    return int(pid_file.read_text())


def _gone(pid: int, within: float = 15) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_sigterm_to_the_client_reaches_the_command_and_its_status_comes_back(sleeper_server, tmp_path):
    client = _client(sleeper_server, tmp_path / "pid")
    child = _wait_pid(tmp_path / "pid")
    client.send_signal(signal.SIGTERM)
    assert client.wait(timeout=30) == 128 + signal.SIGTERM  # what a shell reports for a SIGTERMed process
    assert _gone(child)


def test_a_sigkilled_client_takes_its_command_with_it(sleeper_server, tmp_path):
    client = _client(sleeper_server, tmp_path / "pid")
    child = _wait_pid(tmp_path / "pid")
    client.kill()
    client.wait(timeout=30)
    assert _gone(child)  # as a killed process would: nothing keeps running behind the job's back
    assert ping(sleeper_server) is not None  # the server itself goes on


def test_no_worker_means_in_process(tmp_path, env):
    e = dict(env, DHO_WORKER=str(tmp_path / "nobody.sock"))
    p = _dho(["train", "--spec", "missing.json"], e, cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.strip() == "error: spec file not found: missing.json"
