"""Runtime utilities of a training run: device, seeding and RNG state, the learning-rate
schedule, git/SLURM ids (file hashing and locks: :mod:`dho.io`).

Nothing here knows about specs, models or MLflow; :mod:`dho.train` uses these pieces.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda if available else cpu; anything else must be a valid torch device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"key 'device' = {name!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"key 'device' = {name!r}: CUDA is not available on this machine")
    return dev


def derive_seed(*parts: int) -> int:
    """A 31-bit seed derived from integers (e.g. ``(seed, epoch, stream)``)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0]) & 0x7FFFFFFF


def set_deterministic(enabled: bool, warn_only: bool = False) -> None:
    """``torch.use_deterministic_algorithms`` without its import of ``torch._inductor``
    (about 1.5 s per process; this harness never compiles, so only the eager flag matters)."""
    torch._C._set_deterministic_algorithms(enabled, warn_only=warn_only)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """RNG states as plain lists/tensors (loadable with ``weights_only=True``)."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        # a job resumed with fewer GPUs visible (another node type, one GPU per task) sets the
        # ones it has (each epoch re-seeds them anyway); set_rng_state_all would fail on the rest
        for device, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)


def lr_factor(step: int, total_steps: int, warmup: float, start_factor: float, schedule: str) -> float:
    """LR multiplier: linear warm-up from ``start_factor`` over ``warmup`` (fraction of all
    steps if < 1, else a step count), then linear decay to 0 or cosine.

    ``chained_cosine`` is the authors' ``train_imgnet_semi.py`` schedule, torch's
    ``ChainedScheduler([LinearLR(start_factor, 1, warm), CosineAnnealingLR(total - warm)])``:
    the warm-up factor times a cosine that starts at step 0 with period ``total - warm``
    (so it reaches 0 at ``total - warm`` and rises again over the last ``warm`` steps)."""
    warm = int(round(warmup * total_steps)) if warmup < 1 else int(warmup)
    warm = min(warm, total_steps)
    if schedule == "chained_cosine":
        linear = start_factor + (1.0 - start_factor) * min(step, warm) / warm if warm else 1.0
        return linear * 0.5 * (1.0 + math.cos(math.pi * step / max(1, total_steps - warm)))
    if step < warm:
        return start_factor + (1.0 - start_factor) * step / warm
    progress = min(1.0, (step - warm) / max(1, total_steps - warm))
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0 - progress


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def slurm_job_id() -> str | None:
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or None


# -- the faster step where it is free: GPU only, so CPU results stay exactly the same -------
def autocast(device: torch.device, precision: str = "auto"):
    """bf16 autocast of the student: ``auto`` on a CUDA device that supports bf16 (a no-op
    on CPU, so CPU results stay those of fp32); ``bf16`` on such a CUDA device or on the
    CPU (slow on most CPUs, but the mixed-precision path of every method then runs without
    a GPU: the tests do); ``fp32`` never."""
    if precision == "fp32" or device.type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    on = torch.cuda.is_bf16_supported() if device.type == "cuda" else precision == "bf16"
    return torch.autocast(device.type, dtype=torch.bfloat16) if on else contextlib.nullcontext()


def channels_last(device: torch.device) -> torch.memory_format:
    """NHWC on CUDA (faster convolutions with cuDNN), the layout as it is on CPU."""
    return torch.channels_last if device.type == "cuda" else torch.preserve_format


def nhwc(x: torch.Tensor) -> torch.Tensor:
    """An image batch on CUDA in channels-last layout; unchanged on CPU."""
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda and x.dim() == 4 else x


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask, at most SLURM's ``--cpus-per-task``
    (``SLURM_CPUS_PER_TASK``: a cluster without task affinity, ``TaskPlugin=task/none``,
    shows every task of a job all of its node's CPUs)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    per_task = os.environ.get("SLURM_CPUS_PER_TASK", "")
    return min(cpus, int(per_task)) if per_task.isdigit() and int(per_task) > 0 else cpus


def loader_workers(requested: int) -> int:
    """``requested`` loader workers, at most the CPUs this process may use minus one (under
    SLURM the task's share of the job's CPUs: :func:`usable_cpus`)."""
    return max(0, min(int(requested), usable_cpus() - 1))
