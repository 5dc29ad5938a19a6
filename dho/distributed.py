"""Data-parallel training: one process per GPU (or CPU process with gloo), each training
on its contiguous shard of every global batch, gradients averaged before each optimizer
step, so that the run follows the same schedule (global batch ``batch_size`` labeled +
``unlabeled_batch_size`` unlabeled) whatever the process count.

* Processes are started by submitit (``tasks_per_node`` = GPUs per node, ``nodes``) and
  joined with :func:`init_from_submitit` (submitit's ``TorchDistributedEnvironment``
  exports ``MASTER_ADDR/PORT``, ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), or by
  :func:`init_from_env` for any launcher that sets those variables (torchrun, tests).
* Gradient accumulation: spec key ``max_device_batch`` bounds the images one process
  forwards at once; a global batch is cut into ``world * accum`` shards
  (:func:`dho.data.views.shard`), ``accum`` of them per process.
* Gradients are averaged explicitly (:func:`average_gradients`: one coalesced all-reduce
  per optimizer step, after the method's own backward) rather than through the
  ``DistributedDataParallel`` wrapper: methods own their backward (PCGrad calls
  ``torch.autograd.grad``, which DDP's hooks never see).  Every shard's gradient is
  weighted equally, so with equal shards the step equals the one-process step on the
  whole global batch (BatchNorm aside: its statistics are per shard; on CUDA with more
  than one process it becomes ``SyncBatchNorm``).
* Rank 0 validates, writes every file (checkpoint, CSVs, metrics.json) and logs to
  MLflow; float buffers (BatchNorm running statistics) are averaged over ranks at the end
  of each epoch, so every rank holds the same model.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    group: bool = False  # a process group is initialised (collectives run, even for 1 process)

    @property
    def active(self) -> bool:
        return self.group

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def current() -> Dist:
    """This process's place in the initialised process group (one process if none)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return Dist()
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())), True)


def backend_for(device: str) -> str:
    return "nccl" if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()) else "gloo"


def init_from_env(device: str = "auto") -> Dist:
    """Join the process group described by ``RANK``/``WORLD_SIZE``/``MASTER_*`` (env://);
    nothing when ``WORLD_SIZE`` or ``MASTER_ADDR`` is absent."""
    import torch.distributed as dist

    if "WORLD_SIZE" not in os.environ or "MASTER_ADDR" not in os.environ or dist.is_initialized():
        return current()
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend, init_method="env://")
    return current()


def init_from_submitit(device: str = "auto") -> Dist:
    """Inside a submitit job with several tasks: export submitit's distributed environment
    (rank = ``SLURM_PROCID``, master = the job's first node name, port = ``MASTER_PORT``
    if set, else drawn from the job id) and join the group.  The job's own values replace
    any ``MASTER_ADDR``/``RANK``/``WORLD_SIZE`` that sbatch copied from the submitting
    shell (submitit refuses to export over them)."""
    import submitit

    try:
        env = submitit.JobEnvironment()
    except RuntimeError:  # not in a submitit job
        return init_from_env(device)
    if env.num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
    return init_from_env(device)


def accumulation_steps(images_per_step: int, world: int, max_device_batch: int | None) -> int:
    """Shards per process so that none forwards more than ``max_device_batch`` images."""
    if not max_device_batch:
        return 1
    return max(1, math.ceil(images_per_step / (world * max_device_batch)))


def device_for(spec_device: str, d: Dist) -> str:
    """``cuda`` -> ``cuda:LOCAL_RANK`` when several processes share a node."""
    if d.active and spec_device in ("cuda", "auto") and torch.cuda.is_available():
        return f"cuda:{d.local_rank}"
    return spec_device


def add_grads(params: list[torch.Tensor], acc: list[torch.Tensor] | None) -> list[torch.Tensor]:
    """``acc + grad`` for each parameter (a method's backward may overwrite ``.grad``)."""
    grads = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]
    return grads if acc is None else [a.add_(g) for a, g in zip(acc, grads)]


def average_gradients(params: list[torch.Tensor], grad_sum: list[torch.Tensor] | None, loss_sum: float,
                      count: int, d: Dist) -> float:
    """Set each ``.grad`` to the mean over all shards of all ranks (``grad_sum``: this rank's
    sum over its ``count`` shards, None = the current ``.grad`` of one shard); returns the
    mean loss.  One all-reduce of one flat buffer when several processes run."""
    if grad_sum is None:
        grad_sum = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    if d.active:
        import torch.distributed as dist

        device = grad_sum[0].device if grad_sum else torch.device("cpu")
        flat = torch.cat([g.reshape(-1) for g in grad_sum]
                         + [torch.tensor([loss_sum, float(count)], dtype=grad_sum[0].dtype, device=device)])
        dist.all_reduce(flat)
        loss_sum, count = float(flat[-2]), int(round(float(flat[-1])))
        offset = 0
        for g in grad_sum:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
    scale = 1.0 / max(1, count)
    for p, g in zip(params, grad_sum):
        p.grad = g.mul_(scale) if scale != 1.0 else g
    return loss_sum * scale


def sync_buffers(module: torch.nn.Module, d: Dist) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks."""
    if not d.active:
        return
    import torch.distributed as dist

    bufs = [b for b in module.buffers() if b.is_floating_point()]
    if not bufs:
        return
    flat = torch.cat([b.reshape(-1) for b in bufs])
    dist.all_reduce(flat)
    flat /= d.world
    offset = 0
    for b in bufs:
        b.copy_(flat[offset:offset + b.numel()].view_as(b))
        offset += b.numel()


def barrier(d: Dist) -> None:
    if d.active:
        import torch.distributed as dist

        dist.barrier()
