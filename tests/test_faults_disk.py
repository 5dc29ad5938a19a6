"""Fault 6: an unwritable results folder and a full disk.

Works as root too (CI): a folder that is a regular file, a read-only bind mount in a
private mount namespace, a real full disk (ENOSPC: a small tmpfs mounted in a private
mount namespace), and ``RLIMIT_FSIZE`` with SIGXFSZ ignored, under which a write past the
limit fails with EFBIG at every write site.  The namespace tests fail instead of skipping
under CI=true.
"""

import hashlib
import json
import multiprocessing as mp
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

from conftest import REPO, StopAfterCheckpoint, skip_unless_ci, stop_after_checkpoint  # noqa: E402
from dho import io as dio  # noqa: E402
from dho import train  # noqa: E402
from dho.cli import main as cli_main  # noqa: E402
from dho.spec import RunSpec  # noqa: E402

LIMIT = 4 << 20  # bytes: above every run file and the sqlite store, below the ~36 MB checkpoint
UNSHARE = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-rm"]  # -r: a user namespace


def quick_spec(data_root: Path, tmp: Path, **over) -> dict:
    """A seconds-long CPU run on the shapes data (split computed in-process; the sqlite store
    is created by the run itself)."""
    spec = dict(dataset="shapes", data_root=str(data_root), split={"kind": "fewshot", "shots": 2},
                student="mobilenet_v2", student_pretrained=False, student_kwargs={"image_size": 16}, method="ce",
                epochs=1, batch_size=8, image_size=16, num_workers=0, device="cpu", progress=False,
                mlflow_uri=f"sqlite:///{tmp / 'mlflow.db'}", tags={"suite": "faults"})
    return {**spec, **over}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


def limit_file_size(nbytes: int) -> None:
    """In a child: writes past ``nbytes`` fail with EFBIG (the signal would kill instead)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, resource.RLIM_INFINITY))


def error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr, stderr[-3000:]
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def resumable(shapes_root, tmp_path_factory):
    """(spec file, run dir): a 2-epoch run stopped after its epoch-1 checkpoint."""
    tmp = tmp_path_factory.mktemp("disk")
    spec_dict = quick_spec(shapes_root, tmp, epochs=2)
    spec = RunSpec.from_dict(spec_dict)
    run_dir = tmp / "run"
    with pytest.MonkeyPatch.context() as patch, pytest.raises(StopAfterCheckpoint):
        stop_after_checkpoint(patch)  # as if killed right after its epoch-1 checkpoint
        train.run_training(spec, run_dir)
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert (run_dir / "checkpoint.pt").stat().st_size > 2 * LIMIT
    spec_file = tmp / "spec.json"
    spec_file.write_text(json.dumps(spec_dict))
    return spec_file, run_dir


def copy_run(run_dir: Path, dest: Path) -> Path:
    shutil.copytree(run_dir, dest)
    return dest


# unwritable results folder ---------------------------------------------------------------
def test_results_folder_that_is_a_file(resumable, tmp_path, capsys):
    spec_file, _ = resumable
    blocker = tmp_path / "results"
    blocker.write_text("not a folder\n")
    for out in (blocker / "run", blocker):  # below a file; the run dir itself a file
        assert cli_main(["train", "--spec", str(spec_file), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        lines = error_lines(err)
        assert len(lines) == 1 and f"cannot create run directory {out}" in lines[0], err
    assert blocker.read_text() == "not a folder\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


def test_read_only_results_folder(resumable, tmp_path, env):
    """`dho train` into a run dir on a read-only mount: exit 2, one error line, state untouched."""
    spec_file, run_dir = resumable
    if shutil.which("unshare") is None:
        skip_unless_ci("needs unshare (util-linux) for a read-only bind mount")
    results = tmp_path / "results"
    target = copy_run(run_dir, results / "run")
    before = {p.name: sha(p) for p in target.iterdir()}
    script = 'mount --bind -o ro "$0" "$0" || exit 97; exec "$@"'
    p = subprocess.run([*UNSHARE, "sh", "-c", script, str(results), sys.executable, "-m", "dho", "train",
                        "--spec", str(spec_file), "--out", str(target)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    if p.returncode == 97 or "unshare failed" in p.stderr:
        skip_unless_ci(f"no private mount namespace here: {p.stderr.strip()[-200:]}")
    assert p.returncode == 2, p.stderr[-3000:]
    lines = error_lines(p.stderr)
    assert len(lines) == 1 and str(target) in lines[0] and "Read-only file system" in lines[0], p.stderr
    assert {p.name: sha(p) for p in target.iterdir()} == before


# disk full -------------------------------------------------------------------------------
def _writes_on_a_full_disk(folder: str, conn) -> None:
    """Child: overwrite good files with ones larger than the limit; report what was raised."""
    limit_file_size(64 << 10)
    folder = Path(folder)
    big = torch.zeros(1 << 16)  # 256 KiB
    attempts = {
        "metrics.json": lambda: dio.atomic_write_json(folder / "metrics.json", {"pad": "x" * (128 << 10)}),
        "checkpoint.pt": lambda: dio.atomic_torch_save({"model": {"w": big}}, folder / "checkpoint.pt"),
        "history.csv": lambda: dio.atomic_write_text(folder / "history.csv", "epoch\n" * (40 << 10)),
        "logits_test.npz": lambda: train.save_logits(folder / "logits_test.npz", big.view(-1, 64), big.view(-1, 64),
                                                     torch.zeros(1024, dtype=torch.long)),
    }
    out = {}
    for name, fn in attempts.items():
        try:
            fn()
            out[name] = "no error"
        except BaseException as e:  # noqa: BLE001 - report anything, the parent judges
            out[name] = f"{type(e).__name__}: {e}"
    conn.send(out)


def test_atomic_writes_on_a_full_disk_keep_the_old_file(tmp_path):
    dio.atomic_write_json(tmp_path / "metrics.json", {"status": "complete", "test_acc": 50.0})
    dio.atomic_torch_save({"model": {"w": torch.ones(3)}}, tmp_path / "checkpoint.pt")
    dio.atomic_write_text(tmp_path / "history.csv", "epoch\n1\n")
    train.save_logits(tmp_path / "logits_test.npz", torch.ones(2, 3), torch.ones(2, 3), torch.zeros(2))
    before = {p.name: sha(p) for p in tmp_path.iterdir()}

    ctx = mp.get_context("fork")  # torch already imported; the limit stays in the child
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_writes_on_a_full_disk, args=(str(tmp_path), send))
    child.start()
    assert recv.poll(120), "child reported nothing"
    got = recv.recv()
    child.join(30)
    assert child.exitcode == 0
    for name in before:
        assert got[name] == f"OutputError: cannot write {tmp_path / name}: File too large", got
    assert {p.name: sha(p) for p in tmp_path.iterdir()} == before  # the good versions, nothing else
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"]["w"].tolist() == [1.0] * 3
    with np.load(tmp_path / "logits_test.npz", allow_pickle=False) as z:
        assert z["ce"].shape == (2, 3)


def _cli_on_a_full_disk(argv: list[str], log: str, nbytes: int) -> None:
    """Child: ``dho ARGV`` (the CLI entry point) with stdout/stderr in ``log``; exits with its status."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = sys.stderr = open(log, "a", buffering=1)
    limit_file_size(nbytes)
    try:
        rc = cli_main(argv)
    except BaseException:  # a traceback is a failure of the test; the parent reads it in the log
        import traceback

        traceback.print_exc()
        rc = 1
    sys.stdout.flush()
    os._exit(rc)


def test_train_on_a_full_disk_keeps_the_last_checkpoint_then_resumes(resumable, tmp_path):
    """`dho train` in a forked child (imports shared: seconds, not tens) under RLIMIT_FSIZE."""
    spec_file, run_dir = resumable
    target = copy_run(run_dir, tmp_path / "run")
    good = sha(target / "checkpoint.pt")
    log = tmp_path / "train.log"
    child = mp.get_context("fork").Process(
        target=_cli_on_a_full_disk, args=(["train", "--spec", str(spec_file), "--out", str(target)], str(log), LIMIT))
    child.start()
    child.join(300)
    if child.is_alive():
        child.kill()
        child.join(10)
    stderr = log.read_text()
    assert child.exitcode == 2, stderr[-3000:]
    lines = error_lines(stderr)
    assert lines == [f"error: cannot write {target / 'checkpoint.pt'}: File too large"], stderr[-3000:]
    assert sha(target / "checkpoint.pt") == good  # the epoch-1 checkpoint survived
    assert leftovers(target) == [] and not (target / "metrics.json").exists()

    # space is back: the same command resumes from epoch 1 and completes
    m = train.run_training(RunSpec.from_dict(json.loads(spec_file.read_text())), target)
    assert m["status"] == "complete" and m["epochs"] == 2
    assert torch.load(target / "checkpoint.pt", weights_only=True)["epoch"] == 2
    assert [r.split(",")[0] for r in (target / "history.csv").read_text().splitlines()[1:]] == ["1", "2"]
    assert leftovers(target) == []


_FULL_DISK = r"""
disk="$1"; size="$2"; src="$3"; spec="$4"; out="$5"
mount -t tmpfs -o "size=$size" tmpfs "$disk" || exit 97
cp -a "$src" "$disk/run" || exit 98
python -m dho train --spec "$spec" --out "$disk/run" 2> "$out/full.err"; echo $? > "$out/full.rc"
sha256sum "$disk/run/checkpoint.pt" | cut -d' ' -f1 > "$out/full.sha"
ls -A "$disk/run" > "$out/full.ls"
mount -o remount,size=1g "$disk" || exit 99   # space is back
python -m dho train --spec "$spec" --out "$disk/run" 2> "$out/again.err"; echo $? > "$out/again.rc"
cp "$disk/run/metrics.json" "$disk/run/history.csv" "$out/" 2>/dev/null
exit 0
"""


def test_train_on_a_real_full_disk_keeps_the_last_checkpoint_then_resumes(resumable, tmp_path, env):
    """README fault table, disk-full row, with a real ENOSPC: `dho train` resuming a run on a
    tmpfs too small for its next checkpoint exits 2 with one error line, the epoch-1
    checkpoint intact and no temp file left; with space back it resumes and completes."""
    spec_file, run_dir = resumable
    if shutil.which("unshare") is None:
        skip_unless_ci("needs unshare (util-linux) to mount a small tmpfs")
    size_kb = sum(p.stat().st_size for p in run_dir.iterdir()) // 1024 + 4096  # room for all but a checkpoint
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir()
    out.mkdir()
    p = subprocess.run([*UNSHARE, "sh", "-c", _FULL_DISK, "sh", str(disk), f"{size_kb}k", str(run_dir),
                        str(spec_file), str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if p.returncode == 97 or "unshare failed" in p.stderr:
        skip_unless_ci(f"cannot mount a tmpfs in a private mount namespace here: {p.stderr.strip()[-200:]}")
    assert p.returncode == 0, p.stderr[-3000:]
    full_err = (out / "full.err").read_text()
    assert (out / "full.rc").read_text().strip() == "2", full_err[-3000:]
    lines = error_lines(full_err)
    assert len(lines) == 1 and "checkpoint.pt" in lines[0] and "No space left on device" in lines[0], full_err
    assert (out / "full.sha").read_text().strip() == sha(run_dir / "checkpoint.pt")  # epoch 1 survived
    left = (out / "full.ls").read_text().split()
    assert "metrics.json" not in left and not [n for n in left if n.endswith(".tmp")], left
    # space is back: the same command resumes from epoch 1 and completes
    assert (out / "again.rc").read_text().strip() == "0", (out / "again.err").read_text()[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["status"] == "complete" and m["epochs"] == 2
    assert [r.split(",")[0] for r in (out / "history.csv").read_text().splitlines()[1:]] == ["1", "2"]
