"""Training objectives, one registry entry each (``dho methods`` lists them).

A method declares how many heads its student has, whether it needs a teacher, and its
loss ``loss(out_l, out_u, labels, t_l, t_u, **method_args) -> (total, terms)``:
``out_*`` are :class:`~dho.models.students.StudentOutput` s of the labeled / unlabeled
batch, ``t_*`` the teacher's logits (``out_u``/``t_u`` may be None: no unlabeled batch).
``terms`` holds the *unweighted* scalar terms: ``"sup"`` (supervised) and ``"distill"``
(distillation, labeled + unlabeled); ``total = lam * sup + (1 - lam) * distill``.
The training loop takes the gradient cosine between ``terms["sup"]`` and
``terms["distill"]`` w.r.t. the student's feature; it never branches on method names.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F

from .errors import ConfigError
from .losses import kd_loss
from .registry import Registry

METHODS = Registry("method")

Terms = dict[str, torch.Tensor]


def _number_in(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi))
    return ok


# accepted method_args: name -> (default, validity check, what is expected)
_ARG_SPECS: dict[str, tuple[Any, Callable[[Any], bool], str]] = {
    "lam": (0.5, _number_in(0, 1), "a number in [0, 1]"),
    "temperature": (2.0, _number_in(0, math.inf, lo_open=True, hi_open=True), "a positive number"),
    "threshold": (0.0, _number_in(0, 1, hi_open=True), "a number in [0, 1)"),
}


class Method:
    """Base class: name, heads, needs_teacher, description, accepted method_args."""

    name: str = ""
    heads: int = 1
    needs_teacher: bool = True
    description: str = ""
    args: tuple[str, ...] = ()

    def resolve_args(self, method_args: dict[str, Any]) -> dict[str, Any]:
        """method_args with defaults filled in; unknown keys or bad values -> ConfigError."""
        unknown = sorted(set(method_args) - set(self.args))
        if unknown:
            accepted = ", ".join(self.args) or "(none)"
            raise ConfigError(f"method '{self.name}': unknown method_args key(s) {', '.join(unknown)}; "
                              f"accepted: {accepted}")
        resolved = {}
        for key in self.args:
            default, ok, expected = _ARG_SPECS[key]
            value = method_args.get(key, default)
            if not ok(value):
                raise ConfigError(f"method '{self.name}': method_args.{key} = {value!r}: expected {expected}")
            resolved[key] = value
        return resolved

    def _check_inputs(self, out_u, t_l, t_u) -> None:
        if self.needs_teacher and t_l is None:
            raise ConfigError(f"method '{self.name}' needs a teacher (set teacher_file)")
        if self.needs_teacher and (out_u is None) != (t_u is None):
            raise ValueError(f"method '{self.name}': out_u and t_u must both be given or both be None")

    def loss(self, out_l, out_u, labels, t_l, t_u, **method_args) -> tuple[torch.Tensor, Terms]:
        raise NotImplementedError


class CrossEntropy(Method):
    name = "ce"
    heads = 1
    needs_teacher = False
    description = "supervised baseline: cross-entropy on the labeled images only"

    def loss(self, out_l, out_u, labels, t_l, t_u, **method_args):
        self.resolve_args(method_args)
        sup = F.cross_entropy(out_l.ce, labels)
        return sup, {"sup": sup}


class _TeacherMethod(Method):
    """``lam * sup + (1 - lam) * [D(out_l.kd, t_l) + D(out_u.kd, t_u)]`` for a distillation term D."""

    def distill(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, args: dict) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, out_l, out_u, labels, t_l, t_u, **method_args):
        args = self.resolve_args(method_args)
        self._check_inputs(out_u, t_l, t_u)
        sup = F.cross_entropy(out_l.ce, labels)
        distill = self.distill(out_l.kd, t_l, args)
        if out_u is not None:
            distill = distill + self.distill(out_u.kd, t_u, args)
        lam = args["lam"]
        return lam * sup + (1 - lam) * distill, {"sup": sup, "distill": distill}


class SingleHeadKD(_TeacherMethod):
    name = "kd"
    heads = 1
    description = "single-head KD: lam*CE(h(z_l),y) + (1-lam)*[KD(h(z_l),t_l) + KD(h(z_u),t_u)]"
    args = ("lam", "temperature")

    def distill(self, student_logits, teacher_logits, args):
        return kd_loss(student_logits, teacher_logits, args["temperature"])


class DualHead(SingleHeadKD):
    name = "dho"
    heads = 2
    description = "DHO: lam*CE(h_CE(z_l),y) + (1-lam)*[KD(h_KD(z_l),t_l) + KD(h_KD(z_u),t_u)]"


class PseudoLabel(_TeacherMethod):
    name = "pseudo_label"
    heads = 1
    description = ("hard pseudo-labels: lam*CE(h(z_l),y) + (1-lam)*[CE(h(z_l),argmax t_l) + "
                   "CE(h(z_u),argmax t_u)], teacher confidence >= threshold")
    args = ("lam", "threshold")

    def distill(self, student_logits, teacher_logits, args):
        teacher_logits = teacher_logits.detach()
        confidence, target = teacher_logits.float().softmax(dim=-1).max(dim=-1)
        keep = (confidence >= args["threshold"]).to(student_logits.dtype)
        per_image = F.cross_entropy(student_logits, target, reduction="none")
        return (per_image * keep).sum() / student_logits.shape[0]  # FixMatch-style: mean over the batch


for _cls in (CrossEntropy, SingleHeadKD, DualHead, PseudoLabel):
    METHODS.register(_cls.name, _cls(), help=_cls.description)


def describe_line(name: str) -> str:
    m = METHODS.get(name)
    return f"{name:<14} heads={m.heads}  teacher={'yes' if m.needs_teacher else 'no ':<3}  {m.description}"


def _cmd_methods(args) -> int:
    for name in METHODS:
        print(describe_line(name))
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("methods", help="list the training methods")
    p.set_defaults(func=_cmd_methods)
