"""Shared fixtures: the repo's workflow in a temp folder, a tiny shapes dataset, and the
`slurm` marker policy (skip without SLURM, but fail under CI=true)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import benchmarks.common

# One OpenMP (torch) thread per process, the tests' subprocesses included, unless set.  The
# suite keeps the machine's cores busy (2 pytest-xdist workers, SLURM jobs); a process with
# one thread per core then spins in OpenMP barriers while its other thread waits for a core:
# a tiny `dho train` epoch took ~5x the CPU time and ~4x the wall time with 2 threads as
# with 1 on a loaded 2-core machine.  (Snakemake jobs get the rule's threads, SLURM jobs
# their CPUs, and many test modules set 1 in-process: this only covers the rest.)
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "config.yaml", "workflow", "profiles", "slurm")


def slurm_available() -> bool:
    """sbatch is installed and the controller answers."""
    if shutil.which("sbatch") is None:
        return False
    p = subprocess.run(["sinfo", "-h"], capture_output=True, text=True)
    return p.returncode == 0 and bool(p.stdout.strip())


def skip_unless_ci(reason: str) -> None:
    """Skip a test that needs something this machine lacks; under CI=true fail instead, so
    that a CI runner without it cannot pass by skipping."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist's ``--dist loadgroup`` (pyproject's addopts: 2 workers), the SLURM
    tests run one after another on one worker, started first: the one-node cluster has 2
    CPUs and they mostly wait on it, while the other worker runs the rest.  The other tests
    go by file, so that a module's fixtures are built once; the files with a `slow` test
    are handed out first (the groups go out in this order, each to the next free worker), so
    that the last file to start is a short one and neither worker waits long for the other."""
    if not config.getoption("loadgroup", default=False):  # (set on pytest-xdist's workers)
        return

    def group(item: pytest.Item) -> str:
        return "slurm" if item.get_closest_marker("slurm") else item.path.name

    slow = {group(item) for item in items if item.get_closest_marker("slow")}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group(item)))
    items.sort(key=lambda item: (group(item) != "slurm", group(item) not in slow))  # (stable)


def pytest_configure(config: pytest.Config) -> None:
    """Stop rather than run the SLURM tests side by side: pytest-xdist 3.8 cannot group
    tests on pytest 9.2 (pytest-dev/pytest-xdist#1386; it just ignores the groups)."""
    if config.getoption("dist", default="no") == "loadgroup" and pytest.version_tuple[:2] >= (9, 2):
        from importlib.metadata import version

        if tuple(int(x) for x in version("pytest-xdist").split(".")[:2]) <= (3, 8):
            raise pytest.UsageError(f"pytest {pytest.__version__} with pytest-xdist {version('pytest-xdist')} "
                                    "cannot group the SLURM tests on one worker (pytest-dev/pytest-xdist#1386): "
                                    "install pyproject's test extra (pytest<9.2) or run with -n0")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("slurm") and not slurm_available():
        skip_unless_ci("needs a running SLURM cluster (run .ci/slurm-up.sh as root)")


@pytest.fixture(autouse=True)
def restore_process_state():
    """Each test leaves the environment variables and torch's thread counts as it found
    them (a test that changes them cannot leak into the tests after it)."""
    environ = dict(os.environ)
    torch = sys.modules.get("torch")
    threads = (torch.get_num_threads(), torch.get_num_interop_threads()) if torch else None
    yield
    for key in set(os.environ) - set(environ):
        del os.environ[key]
    for key, value in environ.items():
        if os.environ.get(key) != value:
            os.environ[key] = value
    if threads is not None and torch.get_num_threads() != threads[0]:
        torch.set_num_threads(threads[0])  # (the interop count can only be set once per process)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on: bound once by the OS, then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class StopAfterCheckpoint(Exception):
    """What a training run patched by :func:`stop_after_checkpoint` raises."""


def stop_after_checkpoint(monkeypatch) -> None:
    """Make training runs raise :class:`StopAfterCheckpoint` right after their first epoch
    checkpoint is written (a run stopped there resumes from it)."""
    from dho import train

    real = train._Run._save_checkpoint

    def save_then_stop(self):
        real(self)
        raise StopAfterCheckpoint()

    monkeypatch.setattr(train._Run, "_save_checkpoint", save_then_stop)


@pytest.fixture(scope="session")
def env() -> dict[str, str]:
    """Environment for subprocesses: this interpreter's bin first on PATH (rules call
    `python -m dho`), the repo importable, MLflow telemetry off, hub offline."""
    e = dict(os.environ)
    e["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{e.get('PATH', '')}"
    e["PYTHONPATH"] = f"{REPO}{os.pathsep}{e['PYTHONPATH']}" if e.get("PYTHONPATH") else str(REPO)
    e["MLFLOW_DISABLE_TELEMETRY"] = "true"
    e["HF_HUB_OFFLINE"] = "1"
    return e


def copy_repo(dst: Path, names=WORKFLOW_FILES) -> Path:
    """Copy ``names`` (default: the workflow files) of the repo into ``dst``."""
    return benchmarks.common.copy_repo(dst, names)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of the repo's workflow (Snakefile, config, rules, profiles) in a temp folder."""
    return copy_repo(tmp_path)


def edit_suite(workdir: Path, suite: str, edit) -> None:
    """Apply ``edit(suite_dict)`` to suite ``suite`` of ``workdir``'s config.yaml in place."""
    import yaml

    cfg = yaml.safe_load((workdir / "config.yaml").read_text())
    edit(cfg["suites"][suite])
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))


def cut_ci(methods=None) -> Callable[[dict], None]:
    """An :func:`edit_suite` edit: :func:`benchmarks.common.cut_ci_suite` with ``methods``."""
    return lambda s: benchmarks.common.cut_ci_suite(s, methods)


def slurm_polls_every_second(workdir: Path) -> None:
    """``workdir``'s launchers look at the queue and their results every second (config
    ``slurm.poll_s``; default 30 s and 5 s): a finished SLURM job is seen at once."""
    import yaml

    cfg = yaml.safe_load((workdir / "config.yaml").read_text())
    cfg["slurm"]["poll_s"] = 1
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))


def snakemake(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 120, check: bool = False
              ) -> subprocess.CompletedProcess:
    """Run this venv's snakemake in ``cwd``; output in ``.stdout`` (stderr merged)."""
    exe = Path(sys.executable).parent / "snakemake"
    p = subprocess.run([str(exe), *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{p.stdout[-4000:]}")
    return p


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny generated shapes dataset (16 px, 10/4/4 images per class)."""
    from dho.demo.data import ShapesParams, generate_shapes

    root = tmp_path_factory.mktemp("data")
    generate_shapes(root, ShapesParams(train=10, val=4, test=4, size=16), progress=False)
    return root


def tiny_spec(root: Path, tmp: Path, method: str = "ce", epochs: int = 2, **over) -> dict:
    """A RunSpec dict of a seconds-long CPU run on ``shapes_root`` (teacher-free by default)."""
    from dho.spec import RunSpec

    split = tmp / "split.json"
    if not split.exists():
        subprocess.run([sys.executable, "-m", "dho", "split", "--dataset", "shapes", "--root", str(root),
                        "--kind", "fewshot", "--shots", "2", "--seed", "1", "--out", str(split)],
                       check=True, capture_output=True, cwd=REPO)
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    if not (tmp / "mlflow.db").exists():  # created once, before runs fan out
        subprocess.run([sys.executable, "-m", "dho", "mlflow-init", "--uri", uri, "--experiment", "test"],
                       check=True, capture_output=True, cwd=REPO)
    spec = dict(dataset="shapes", data_root=str(root), split={"kind": "fewshot", "shots": 2},
                split_manifest=str(split), student="resnet18", student_pretrained=False,
                student_kwargs={"image_size": 16}, method=method, epochs=epochs, batch_size=8,
                unlabeled_batch_size=8, image_size=16, num_workers=0, device="cpu", progress=False,
                mlflow_uri=uri, mlflow_experiment="test", tags={"suite": "test"})
    spec.update(over)
    RunSpec.from_dict(spec)  # fail early on a bad test spec
    return spec
