"""The submitit job of one training run (:class:`TrainJob`), submitted by :mod:`dho.launch`.

This module imports no torch: the launcher that pickles the job and then waits for it
stays small (it can be one of a hundred waiting on a login node); the trainer (and
torch) is imported only when the job runs."""

from __future__ import annotations

from typing import Any

import submitit

from .rundir import load_done
from .spec import RunSpec


class TrainJob(submitit.helpers.Checkpointable):
    """A submitit callable: runs one training run.  On a time limit or ``scancel
    --signal=USR2`` submitit calls :meth:`checkpoint` and requeues the job; ``scontrol
    requeue`` (and preemption by requeue) kills the job without that call and SLURM starts
    it again.  Either way the new start resumes from the last epoch checkpoint (the
    epoch in progress is redone) and a finished run returns at once."""

    def __call__(self, spec_dict: dict[str, Any], run_dir: str) -> dict[str, Any]:
        spec = RunSpec.from_dict(spec_dict)
        # a job requeued after its run finished (``scontrol requeue`` of a completed job):
        # a no-op that returns in about a second, without importing torch
        done = load_done(run_dir, spec.hash)
        if done is not None:
            return done
        from .distributed import init_from_submitit
        from .train import run_training

        init_from_submitit(spec.device)  # a job of several tasks: one data-parallel rank each
        return run_training(spec, run_dir)

    def checkpoint(self, spec_dict: dict[str, Any], run_dir: str) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(TrainJob(), spec_dict, run_dir)
