"""Teacher kinds of a suite's ``teachers`` block, one registry entry each.

A kind says whether its teacher file is made once per dataset or once per label split
(dataset x labels x split seed), which files it needs, and the ``dho`` command that makes
it.  The workflow has one rule per scope and asks this registry for the rest, so a new
kind is one :func:`TEACHER_KINDS.register` call here, not a workflow edit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..errors import ConfigError
from ..registry import Registry

if TYPE_CHECKING:
    from .compiler import Suite

TEACHER_KINDS = Registry("teacher kind")


@dataclass(frozen=True)
class TeacherJob:
    """One teacher file to make: ``labels``/``split_seed`` are None for a per-dataset kind."""

    suite: "Suite"
    teacher: str
    dataset: str
    labels: str | None = None
    split_seed: int | None = None

    @property
    def cfg(self) -> dict:
        return self.suite.cfg["teachers"][self.teacher]

    @property
    def key(self) -> str:
        return f"suites.{self.suite.name}.teachers.{self.teacher}"


@dataclass(frozen=True)
class TeacherKind:
    name: str
    per_split: bool  # one file per (dataset, labels, split seed) instead of per dataset
    check: Callable[["Suite", str], None]
    inputs: Callable[[TeacherJob], dict[str, str]]
    command: Callable[[TeacherJob], list[str]]  # `dho` arguments, without --out
    description: str = ""


def _user_flags(job: TeacherJob) -> list[str]:
    """--quiet, the suite's --device, then the teacher's own ``args`` (key epochs -> --epochs)."""
    flags = ["--quiet", "--device", job.suite.base_spec().device]
    for key, value in job.cfg.get("args", {}).items():
        flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags


# -- zero-shot CLIP ---------------------------------------------------------------------
def _zeroshot_check(suite: "Suite", teacher: str) -> None:
    t = suite.cfg["teachers"][teacher]
    if not t.get("model") or not t.get("pretrained"):
        raise ConfigError(f"config key 'suites.{suite.name}.teachers.{teacher}': a zeroshot teacher "
                          f"needs 'model' and 'pretrained'")


def _zeroshot_inputs(job: TeacherJob) -> dict[str, str]:
    return {"weights": job.suite.demo_clip_path()} if job.cfg["pretrained"] == "demo" else {}


def _zeroshot_command(job: TeacherJob) -> list[str]:
    pretrained = job.suite.demo_clip_path() if job.cfg["pretrained"] == "demo" else job.cfg["pretrained"]
    return (["teacher", "zeroshot", "--dataset", job.dataset, "--root", job.suite.data_root,
             "--model", job.cfg["model"], "--pretrained", pretrained] + _user_flags(job))


TEACHER_KINDS.register("zeroshot", TeacherKind(
    "zeroshot", per_split=False, check=_zeroshot_check, inputs=_zeroshot_inputs, command=_zeroshot_command,
    description="zero-shot CLIP (open_clip model + pretrained tag or file; 'demo' = the suite's tiny CLIP)"),
    help="zero-shot CLIP, one file per dataset")


# -- Tip-Adapter-F ----------------------------------------------------------------------
def _tip_check(suite: "Suite", teacher: str) -> None:
    base = suite.cfg["teachers"][teacher].get("base")
    teachers = suite.cfg["teachers"]
    if base not in teachers or teachers[base]["kind"] != "zeroshot":
        raise ConfigError(f"config key 'suites.{suite.name}.teachers.{teacher}.base' = {base!r}: "
                          f"expected the name of a zeroshot teacher of the suite")


def _tip_inputs(job: TeacherJob) -> dict[str, str]:
    base = TeacherJob(job.suite, job.cfg["base"], job.dataset)
    return {"base": job.suite.teacher_path(base),
            "split": job.suite.split_path(job.dataset, job.labels, job.split_seed)}


def _tip_command(job: TeacherJob) -> list[str]:
    spec, inputs = job.suite.base_spec(), _tip_inputs(job)
    return (["teacher", "tip-adapter-f", "--dataset", job.dataset, "--root", job.suite.data_root,
             "--base", inputs["base"], "--split-manifest", inputs["split"], "--seed", str(job.split_seed),
             "--image-size", str(spec.image_size), "--crop-scale-min", str(spec.crop_scale_min)]
            + _user_flags(job))


TEACHER_KINDS.register("tip_adapter_f", TeacherKind(
    "tip_adapter_f", per_split=True, check=_tip_check, inputs=_tip_inputs, command=_tip_command,
    description="Tip-Adapter-F on the labeled shots of one split, built on a zeroshot teacher ('base')"),
    help="Tip-Adapter-F, one file per dataset x labels x split seed")
