"""The submitit job of one training run (:class:`TrainJob`), submitted by :mod:`dho.launch`."""

from __future__ import annotations

from typing import Any

import submitit

from .spec import RunSpec
from .train import run_training


class TrainJob(submitit.helpers.Checkpointable):
    """A submitit callable: runs one training run; on preemption/timeout it is requeued
    with the same arguments and resumes from the last epoch checkpoint."""

    def __call__(self, spec_dict: dict[str, Any], run_dir: str) -> dict[str, Any]:
        return run_training(RunSpec.from_dict(spec_dict), run_dir)

    def checkpoint(self, spec_dict: dict[str, Any], run_dir: str) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(TrainJob(), spec_dict, run_dir)
