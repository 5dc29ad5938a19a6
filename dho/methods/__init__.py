"""Training objectives, one module per method (``dho methods`` lists them).

``import dho.methods`` imports every module in this folder (except ``base`` and names
starting with ``_``), and each registers its method in :data:`METHODS`: a new method is
one new file, picked up without editing any list.  The contract a method fulfils (heads,
teacher need, arguments, hooks) is :mod:`dho.methods.base`.
"""

from __future__ import annotations

import importlib
import pkgutil

from .base import LAM, METHODS, TEMPERATURE, Arg, Batch, Method, TeacherMethod, Terms, register

__all__ = ["METHODS", "Arg", "Batch", "LAM", "Method", "TEMPERATURE", "TeacherMethod", "Terms",
           "add_cli", "describe", "register"]


def _import_method_modules() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")


def _format_default(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def describe(name: str) -> list[str]:
    """Lines describing method ``name``: heads, teacher, inference, then one per argument."""
    m = METHODS.get(name)
    infer = "CE head only" if m.fixed_alpha_beta == (1.0, 1.0) else (
        f"alpha, beta = {m.fixed_alpha_beta}" if m.fixed_alpha_beta else "spec's alpha/beta rule")
    extra = "" if m.teacher_outputs == ("logits",) else f"  teacher outputs: {', '.join(m.teacher_outputs)}"
    lines = [f"{name:<14} heads={m.heads}  teacher={'yes' if m.needs_teacher else 'no ':<3}  "
             f"inference: {infer}{extra}", f"    {m.description}"]
    lines += [f"    {a.name} = {_format_default(a.default)}  ({a.expected}) {a.help}".rstrip() for a in m.args]
    return lines


def describe_line(name: str) -> str:
    return describe(name)[0]


def _cmd_methods(args) -> int:
    for name in METHODS:
        print("\n".join(describe(name)))
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("methods", help="list the training methods with their method_args and defaults")
    p.set_defaults(func=_cmd_methods)


_import_method_modules()
