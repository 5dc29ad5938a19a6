"""The submitit job of one training run (:class:`TrainJob`), submitted by :mod:`dho.launch`.

This module imports no torch: the launcher that pickles the job and then waits for it
stays small (it can be one of a hundred waiting on a login node); the trainer (and
torch) is imported only when the job runs."""

from __future__ import annotations

from typing import Any

import submitit

from .spec import RunSpec


class TrainJob(submitit.helpers.Checkpointable):
    """A submitit callable: runs one training run; on preemption/timeout it is requeued
    with the same arguments and resumes from the last epoch checkpoint."""

    def __call__(self, spec_dict: dict[str, Any], run_dir: str) -> dict[str, Any]:
        from .distributed import init_from_submitit
        from .train import run_training

        spec = RunSpec.from_dict(spec_dict)
        init_from_submitit(spec.device)  # a job of several tasks: one data-parallel rank each
        return run_training(spec, run_dir)

    def checkpoint(self, spec_dict: dict[str, Any], run_dir: str) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(TrainJob(), spec_dict, run_dir)
