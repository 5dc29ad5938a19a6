"""The CUDA paths that the CPU tests cannot reach, in one prepared script for a session
with a GPU (``bash benchmarks/gpu_check.sh`` or ``python -m benchmarks.gpu_check``):

1. a tiny run on ``cuda`` (bf16 autocast + channels-last student, fp16 teacher) finishes
   with finite numbers, and with ``precision: fp32`` its accuracies stay close;
2. a cached run (``dho teacher cache`` built on the GPU) and a live one agree on the
   teacher's logits per view (fp16 tolerance) and give a complete run;
3. checkpoint/resume on CUDA: the checkpoint holds the CUDA RNG state, and a run stopped
   after epoch 1 and resumed ends like the uninterrupted one (accuracies equal);
4. data-parallel plumbing with NCCL: one process joins an ``nccl`` group (world 1) and
   trains through the all-reduce path; result equal to the plain run's accuracies.

Prints one line per check (``ok`` / ``FAIL: ...``) and exits 1 if any failed.  CPU-only
machines print ``skip: no CUDA`` and exit 0.  Needs nothing downloaded (tiny CLIP,
generated data).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEYS = ("test_acc", "test_acc_ce", "test_acc_kd", "val_acc", "best_epoch")
DEVICE = "cuda"  # --device cpu runs the same checks on CPU (gloo), to test this script itself


def _assets(root: Path) -> dict:
    import torch

    sys.path.insert(0, str(REPO / "tests"))
    from fake_datasets import make_fake_dataset

    from dho.data import get_dataset
    from dho.models import build_zeroshot_teacher, save_teacher
    from dho.models.clip import create_clip

    make_fake_dataset("dtd", root / "data", num_classes=3, per_class=(8, 3, 3), size=32)
    source = get_dataset("dtd", root / "data")
    torch.manual_seed(0)
    torch.save(create_clip("dho-tiny-clip", None).state_dict(), root / "clip.pt")
    save_teacher(build_zeroshot_teacher("dho-tiny-clip", str(root / "clip.pt"), source.classnames,
                                        source.templates[:1], progress=False), root / "teacher.pt")
    return dict(dataset="dtd", data_root=str(root / "data"), split={"kind": "fewshot", "shots": 4},
                student="resnet18", student_pretrained=False, student_kwargs={"image_size": 32},
                teacher_file=str(root / "teacher.pt"), method="dho", epochs=2, batch_size=4,
                unlabeled_batch_size=4, image_size=32, num_workers=2, grad_cosine_every=2, progress=False,
                device=DEVICE, mlflow_uri=f"sqlite:///{root / 'mlflow.db'}")


def _run(base: dict, out: Path, **kw) -> dict:
    from dho.spec import RunSpec
    from dho.train import run_training

    return run_training(RunSpec.from_dict({**base, **kw}), out)


def check_autocast(base: dict, tmp: Path) -> None:
    import math

    bf16 = _run(base, tmp / "bf16")
    fp32 = _run(base, tmp / "fp32", precision="fp32")
    assert bf16["device"].startswith(DEVICE) and all(math.isfinite(bf16[k]) for k in KEYS[:4]), bf16
    assert abs(bf16["test_acc"] - fp32["test_acc"]) <= 25.0, (bf16["test_acc"], fp32["test_acc"])


def check_cache(base: dict, tmp: Path) -> None:
    import torch

    from dho.data import get_dataset, views
    from dho.models import load_teacher, load_teacher_head, read_teacher_file
    from dho.spec import RunSpec
    from dho.teacher_cache import TeacherCache, build_cache, cache_meta, run_schedule

    spec = RunSpec.from_dict(base)
    build_cache(spec.teacher_file, [spec], tmp / "cache.pt", device=DEVICE, num_workers=2)
    source = get_dataset("dtd", spec.data_root)
    cache = TeacherCache.load(tmp / "cache.pt", cache_meta(source, spec, read_teacher_file(spec.teacher_file)))
    keys = run_schedule(spec, source).teacher_keys(1)[:16]
    ds = views.ViewDataset(source, source.items("train"), spec.image_size, spec.crop_scale_min, spec.seed)
    x = torch.stack([ds[int(k)][0] for k in keys]).to(DEVICE)
    live = load_teacher(spec.teacher_file, DEVICE)(x).float()
    cached = load_teacher_head(spec.teacher_file, DEVICE).logits_from_features(
        cache.features(torch.from_numpy(keys)).to(DEVICE).float())
    torch.testing.assert_close(cached, live, atol=0.15, rtol=5e-3)
    m = _run(base, tmp / "cached", teacher_cache=str(tmp / "cache.pt"))
    assert m["status"] == "complete"


def check_resume(base: dict, tmp: Path) -> None:
    import torch

    from dho import train

    full = _run(base, tmp / "full", epochs=3)
    real = train._Run._save_checkpoint

    class Stop(Exception):
        pass

    def stop(self):
        real(self)
        raise Stop()

    train._Run._save_checkpoint = stop
    try:
        _run(base, tmp / "resumed", epochs=3)
    except Stop:
        pass
    finally:
        train._Run._save_checkpoint = real
    ckpt = torch.load(tmp / "resumed" / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1, ckpt["epoch"]
    assert DEVICE == "cpu" or len(ckpt["rng"]["cuda"]) >= 1, "no CUDA RNG state in the checkpoint"
    resumed = _run(base, tmp / "resumed", epochs=3)
    assert {k: resumed[k] for k in KEYS} == {k: full[k] for k in KEYS}, (resumed, full)


def check_nccl(base: dict, tmp: Path) -> None:
    import torch.distributed as dist

    from dho import distributed

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    d = distributed.init_from_env(DEVICE)
    try:
        assert d.active and dist.get_backend() == distributed.backend_for(DEVICE), (d, dist.get_backend())
        plain_dir, ddp_dir = tmp / "plain", tmp / "ddp"
        ddp = _run(base, ddp_dir, max_device_batch=4)
    finally:
        dist.destroy_process_group()
        for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK"):
            os.environ.pop(k, None)
    plain = _run(base, plain_dir, max_device_batch=4)
    assert abs(ddp["test_acc"] - plain["test_acc"]) <= 25.0 and ddp["status"] == "complete", (ddp, plain)


CHECKS = {"autocast": check_autocast, "cache": check_cache, "resume": check_resume, "nccl": check_nccl}


def main(argv: list[str] | None = None) -> int:
    import argparse

    global DEVICE
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"), help="cpu: test this script itself")
    ap.add_argument("--only", default=None, help=f"comma-separated checks of {', '.join(CHECKS)}")
    args = ap.parse_args(argv)
    DEVICE = args.device
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.path.insert(0, str(REPO))
    import torch

    if DEVICE == "cuda" and not torch.cuda.is_available():
        print("skip: no CUDA")
        return 0
    print(f"{torch.cuda.get_device_name(0) if DEVICE == 'cuda' else 'CPU'}, torch {torch.__version__}")
    failed = 0
    with tempfile.TemporaryDirectory(prefix="dho-gpu-check-") as d:
        base = _assets(Path(d))
        for name, fn in CHECKS.items():
            if args.only and name not in args.only.split(","):
                continue
            tmp = Path(d) / name
            tmp.mkdir()
            try:
                fn(base, tmp)
                print(f"{name}: ok")
            except Exception as e:  # noqa: BLE001 - report every check
                failed += 1
                print(f"{name}: FAIL: {type(e).__name__}: {str(e)[:500]}")
                traceback.print_exc(limit=3)
    print(json.dumps({"failed": failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
