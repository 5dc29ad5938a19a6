"""The method contract: what a training objective declares and the hooks the loop calls.

A method is a :class:`Method` subclass registered in :data:`METHODS` by its own module
in :mod:`dho.methods` (one file per method, imported automatically).  It declares

* ``heads`` (1 or 2 linear heads on the student's shared feature) and ``needs_teacher``;
* ``args``: its ``method_args`` as :class:`Arg` s (name, default, check, help); the
  resolved values are written to ``metrics.json`` and become ``runs.csv`` columns
  ``arg_<name>``, so a sweep over an argument is a column;
* ``teacher_outputs``: ``("logits",)`` or ``("logits", "embedding")`` (the teacher's
  L2-normalised image embedding, for feature distillation);
* ``fixed_alpha_beta``: ``None`` (the spec's inference rule applies) or an
  ``(alpha, beta)`` pair the method's inference always uses (``(1.0, 1.0)``: the CE
  head alone, as SSKD and DHKD predict);

and may override three hooks, so the training loop never branches on method names:

* :meth:`Method.setup_student` adds the trainable parts the method owns (a projection,
  non-linear heads) to the student before the optimiser is built (also called, with no
  teacher, when a finished run's student is rebuilt for evaluation);
* :meth:`Method.step` computes ``(total, terms)`` from one :class:`Batch` (default: the
  older ``loss(out_l, out_u, labels, t_l, t_u, **args)``);
* :meth:`Method.backward` turns the loss into gradients (default ``total.backward()``;
  PCGrad projects conflicting gradients here).

``terms`` holds the unweighted scalar terms, ``"sup"`` and ``"distill"`` where the
method has them: the loop's gradient-conflict cosine is taken between those two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..losses import kd_loss
from ..registry import Registry

METHODS = Registry("method")

Terms = dict[str, torch.Tensor]


def number_in(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Callable[[Any], bool]:
    """A check: a finite real number in the interval (bounds open or closed)."""
    def ok(v: Any) -> bool:
        return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi))
    return ok


def is_bool(v: Any) -> bool:
    return isinstance(v, bool)


@dataclass(frozen=True)
class Arg:
    """One ``method_args`` key: default, validity check, what is expected, one-line help."""

    name: str
    default: Any
    check: Callable[[Any], bool]
    expected: str
    help: str = ""


# arguments several methods share (one definition each)
LAM = Arg("lam", 0.5, number_in(0, 1), "a number in [0, 1]", "weight of the supervised term (1 - lam: distillation)")
TEMPERATURE = Arg("temperature", 2.0, number_in(0, math.inf, lo_open=True, hi_open=True), "a positive number",
                  "KD temperature T (T^2 * KL of softened distributions)")
POSITIVE = number_in(0, math.inf, hi_open=True)


@dataclass
class Batch:
    """What the loop hands a method for one step.

    ``out_l``/``out_u``: :class:`~dho.models.students.StudentOutput` of the labeled /
    unlabeled images (``out_u`` None: no unlabeled batch); ``t_l``/``t_u``: teacher
    logits (None without a teacher); ``teacher``: further teacher outputs the method
    asked for (``{"embedding": (e_l, e_u)}``); ``student``: the student (its
    method-owned parts live in ``student.method_parts``); ``args``: resolved method_args.
    """

    out_l: Any
    out_u: Any
    labels: torch.Tensor
    t_l: Optional[torch.Tensor] = None
    t_u: Optional[torch.Tensor] = None
    args: dict = field(default_factory=dict)
    student: Optional[nn.Module] = None
    teacher: dict = field(default_factory=dict)


class Method:
    """Base class; see the module docstring for what a subclass declares."""

    name: str = ""
    heads: int = 1
    needs_teacher: bool = True
    description: str = ""
    args: tuple[Arg, ...] = ()
    teacher_outputs: tuple[str, ...] = ("logits",)
    fixed_alpha_beta: Optional[tuple[float, float]] = None
    uses_unlabeled: Optional[bool] = None  # None: the unlabeled batch is loaded iff needs_teacher

    @property
    def loads_unlabeled(self) -> bool:
        """Whether the loop loads an unlabeled batch for this method."""
        return self.needs_teacher if self.uses_unlabeled is None else bool(self.uses_unlabeled)

    # -- arguments ------------------------------------------------------------------
    def resolve_args(self, method_args: dict[str, Any]) -> dict[str, Any]:
        """method_args with defaults filled in; unknown keys or bad values -> ConfigError."""
        names = [a.name for a in self.args]
        unknown = sorted(set(method_args) - set(names))
        if unknown:
            accepted = ", ".join(names) or "(none)"
            raise ConfigError(f"method '{self.name}': unknown method_args key(s) {', '.join(unknown)}; "
                              f"accepted: {accepted}")
        resolved = {}
        for a in self.args:
            value = method_args.get(a.name, a.default)
            if not a.check(value):
                raise ConfigError(f"method '{self.name}': method_args.{a.name} = {value!r}: expected {a.expected}")
            resolved[a.name] = value
        return resolved

    def _check_inputs(self, out_u, t_l, t_u) -> None:
        if self.needs_teacher and t_l is None:
            raise ConfigError(f"method '{self.name}' needs a teacher (set teacher_file)")
        if self.needs_teacher and (out_u is None) != (t_u is None):
            raise ValueError(f"method '{self.name}': out_u and t_u must both be given or both be None")

    # -- hooks ------------------------------------------------------------------------
    def setup_student(self, student: nn.Module, args: dict[str, Any], teacher: Any = None) -> None:
        """Add the parts this method owns to ``student`` (default: none).  ``teacher`` is
        None when a finished run is rebuilt for evaluation (training-only parts may be
        skipped then; their checkpoint keys are under ``method_parts.``)."""

    def step(self, batch: Batch) -> tuple[torch.Tensor, Terms]:
        """``(total, terms)`` for one step."""
        return self.loss(batch.out_l, batch.out_u, batch.labels, batch.t_l, batch.t_u, **batch.args)

    def backward(self, total: torch.Tensor, terms: Terms, args: dict[str, Any],
                 params: Iterable[torch.Tensor]) -> None:
        """Fill ``.grad`` of ``params`` (default: plain back-propagation of ``total``)."""
        total.backward()

    def loss(self, out_l, out_u, labels, t_l, t_u, **method_args) -> tuple[torch.Tensor, Terms]:
        raise NotImplementedError


class TeacherMethod(Method):
    """``lam * sup + (1 - lam) * distill`` with ``sup = CE(h_CE(z_l), y)`` and
    ``distill = D(h_KD(z_l), t_l) + D(h_KD(z_u), t_u)`` for a distillation term
    :meth:`distill` (``D``); subclasses change :meth:`supervised` or :meth:`distill_terms`."""

    args = (LAM, TEMPERATURE)

    def distill(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, args: dict) -> torch.Tensor:
        return kd_loss(student_logits, teacher_logits, args["temperature"])

    def supervised(self, out_l, labels, t_l, args: dict) -> torch.Tensor:
        return F.cross_entropy(out_l.ce, labels)

    def distill_terms(self, out_l, out_u, t_l, t_u, args: dict) -> torch.Tensor:
        distill = self.distill(out_l.kd, t_l, args)
        if out_u is not None:
            distill = distill + self.distill(out_u.kd, t_u, args)
        return distill

    def loss(self, out_l, out_u, labels, t_l, t_u, **method_args):
        args = self.resolve_args(method_args)
        self._check_inputs(out_u, t_l, t_u)
        sup = self.supervised(out_l, labels, t_l, args)
        distill = self.distill_terms(out_l, out_u, t_l, t_u, args)
        lam = args["lam"]
        return lam * sup + (1 - lam) * distill, {"sup": sup, "distill": distill}


def register(cls: type) -> type:
    """Class decorator: register one instance of ``cls`` under ``cls.name``."""
    METHODS.register(cls.name, cls(), help=cls.description)
    return cls


def method_parts(student: nn.Module) -> nn.ModuleDict:
    """``student.method_parts`` (created empty on first use): the method's trainable parts."""
    parts = getattr(student, "method_parts", None)
    if parts is None:
        parts = nn.ModuleDict()
        student.method_parts = parts
    return parts


KD_TEMPERATURE = Arg("kd_temperature", 2.0, number_in(0, math.inf, lo_open=True, hi_open=True), "a positive number",
                     "temperature of the DHO KD head's term")


class LabeledDistillMethod(TeacherMethod):
    """A distillation loss that needs the ground-truth label (DKD, WKD), applied to the
    CE head's outputs on the labeled images only (DHO paper, Appendix E.3):

    * one head (``with_dho`` False): ``lam * CE(h(z_l), y) + (1 - lam) * D(h(z_l), t_l, y)``;
    * with DHO: ``lam * CE(h_CE(z_l), y) + (1 - lam) * [D(h_CE(z_l), t_l, y) + KD(h_KD(z_l), t_l)
      + KD(h_KD(z_u), t_u)]``, KD at ``kd_temperature``.

    Subclasses define :meth:`label_distill` (``D``)."""

    with_dho = False

    @property
    def loads_unlabeled(self) -> bool:
        return self.with_dho

    def label_distill(self, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def step(self, batch: Batch):
        args = self.resolve_args(batch.args)
        self._check_inputs(batch.out_u, batch.t_l, batch.t_u)
        sup = F.cross_entropy(batch.out_l.ce, batch.labels)
        distill = self.label_distill(Batch(**{**batch.__dict__, "args": args}))
        if self.with_dho:
            distill = distill + self.distill_terms(batch.out_l, batch.out_u, batch.t_l, batch.t_u,
                                                   {"temperature": args["kd_temperature"]})
        lam = args["lam"]
        return lam * sup + (1 - lam) * distill, {"sup": sup, "distill": distill}

    def loss(self, out_l, out_u, labels, t_l, t_u, **method_args):
        return self.step(Batch(out_l, out_u, labels, t_l, t_u, method_args))
