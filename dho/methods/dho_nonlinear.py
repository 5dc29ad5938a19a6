"""DHO with non-linear heads (DHO paper, Appendix F.1, Tables 18-19): "an initial linear
projection layer, followed by layer normalization, GELU activation, dropout, and a final
linear classification layer", replacing the CE head (``dho_nl_ce``), the KD head
(``dho_nl_kd``) or both (``dho_nl_both``).  The loss is DHO's (:mod:`dho.methods.dho`).

The paper gives neither the hidden width nor the dropout rate: ``hidden`` (default 0 =
the student's feature dimension) and ``dropout`` (default 0.1) are this harness's
choices (docs/DEVIATIONS.md).  The heads are the student's ``ce_head``/``kd_head``, so
they are saved, evaluated and combined like linear ones.
"""

from __future__ import annotations

from torch import nn

from .base import LAM, TEMPERATURE, Arg, TeacherMethod, number_in, register

NL_ARGS = (LAM, TEMPERATURE,
           Arg("hidden", 0, lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
               "an integer >= 0", "hidden width of a non-linear head (0: the feature dimension)"),
           Arg("dropout", 0.1, number_in(0, 1, hi_open=True), "a number in [0, 1)",
               "dropout rate inside a non-linear head"))


def nonlinear_head(in_dim: int, num_classes: int, hidden: int, dropout: float) -> nn.Sequential:
    """Linear -> LayerNorm -> GELU -> Dropout -> Linear (Appendix F.1)."""
    hidden = hidden or in_dim
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(dropout),
                         nn.Linear(hidden, num_classes))


class _NonLinearDHO(TeacherMethod):
    heads = 2
    args = NL_ARGS
    nonlinear: tuple[str, ...] = ()

    def setup_student(self, student, args, teacher=None):
        for head in self.nonlinear:
            setattr(student, head, nonlinear_head(student.feature_dim, student.num_classes, args["hidden"],
                                                  args["dropout"]))


@register
class DHONonLinearCE(_NonLinearDHO):
    name = "dho_nl_ce"
    nonlinear = ("ce_head",)
    description = "DHO with a non-linear CE head (Linear-LayerNorm-GELU-Dropout-Linear)"


@register
class DHONonLinearKD(_NonLinearDHO):
    name = "dho_nl_kd"
    nonlinear = ("kd_head",)
    description = "DHO with a non-linear KD head (Linear-LayerNorm-GELU-Dropout-Linear)"


@register
class DHONonLinearBoth(_NonLinearDHO):
    name = "dho_nl_both"
    nonlinear = ("ce_head", "kd_head")
    description = "DHO with non-linear CE and KD heads (Linear-LayerNorm-GELU-Dropout-Linear)"
