"""The label split of a run as one value: :class:`LabelSplit`.

Three kinds, each with a dict form (``RunSpec.split``, split manifests), a short name
(run paths, tables: ``4shot``, ``1pct``, ``list-1percent``) and ``dho split`` flags:

* ``{"kind": "fewshot", "shots": N}``  -> ``Nshot``   (N labeled images per class)
* ``{"kind": "percent", "percent": p}`` -> ``ppct``   (p % of the train images labeled)
* ``{"kind": "list", "file": F}``       -> ``list-<stem of F>`` (SimCLRv2 list file)

Every place that formats, parses or validates a split goes through this class.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Union

from .errors import ConfigError

KINDS = ("fewshot", "percent", "list")
_KEY = {"fewshot": "shots", "percent": "percent", "list": "file"}
_NAME = re.compile(r"(?P<n>\d+(?:\.\d+)?)(?P<unit>shot|pct)")
# looser spellings of the paper and of hand-made tables: "16-shot", "4 shots", "1%", "10percent"
_LOOSE = re.compile(r"\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>-?shots?|pct|percent|%)\s*", re.I)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class LabelSplit:
    kind: str
    value: Union[int, float, str]  # shots, percent or list file

    def __post_init__(self) -> None:
        self.check()

    # -- construction --------------------------------------------------------------------
    @classmethod
    def fewshot(cls, shots: int) -> "LabelSplit":
        return cls("fewshot", shots)

    @classmethod
    def percent(cls, percent: float) -> "LabelSplit":
        return cls("percent", int(percent) if float(percent).is_integer() else float(percent))

    @classmethod
    def from_dict(cls, d: Any, source: str = "split") -> "LabelSplit":
        """The split of a ``RunSpec.split``-style dict; a bad one raises ConfigError naming
        ``source`` and the key."""
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a mapping with 'kind', got {d!r}")
        kind = d.get("kind")
        if kind not in KINDS:
            raise ConfigError(f"{source}: key 'split.kind' = {kind!r}: expected 'fewshot', 'percent' or 'list'")
        key = _KEY[kind]
        extra = sorted(set(d) - {"kind", key})
        if extra:
            raise ConfigError(f"{source}: unknown key(s) {', '.join(f'split.{k}' for k in extra)} "
                              f"of a {kind} split; expected 'kind' and '{key}'")
        try:
            value = d.get(key)
            return cls.percent(value) if kind == "percent" and _is_number(value) else cls(kind, value)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None

    @classmethod
    def parse(cls, name: str) -> "LabelSplit":
        """The split named ``4shot`` / ``1pct`` / ``list-<stem>`` (a list split's name keeps
        only the file's stem: its ``file`` is ``<stem>.txt``)."""
        text = str(name).strip()
        m = _NAME.fullmatch(text)
        if m:
            n = float(m["n"])
            if m["unit"] == "shot" and n.is_integer():
                return cls.fewshot(int(n))
            if m["unit"] == "pct":
                return cls.percent(n)
        if text.startswith("list-") and len(text) > 5:
            return cls("list", text[5:] + ".txt")
        raise ConfigError(f"label split {name!r}: expected '<N>shot', '<p>pct' or 'list-<name>'")

    # -- checks and forms ------------------------------------------------------------------
    def check(self) -> None:
        v = self.value
        if self.kind == "fewshot" and not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            raise ConfigError(f"key 'split.shots' = {v!r}: expected an integer >= 1")
        if self.kind == "percent" and not (_is_number(v) and 0 < v <= 100):
            raise ConfigError(f"key 'split.percent' = {v!r}: expected a number in (0, 100]")
        if self.kind == "list" and not (isinstance(v, str) and v):
            raise ConfigError("key 'split.file': expected the path of a list file")
        if self.kind not in KINDS:
            raise ConfigError(f"key 'split.kind' = {self.kind!r}: expected 'fewshot', 'percent' or 'list'")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, _KEY[self.kind]: self.value}

    @property
    def name(self) -> str:
        if self.kind == "fewshot":
            return f"{self.value}shot"
        if self.kind == "percent":
            return f"{self.value:g}pct"
        return f"list-{PurePosixPath(str(self.value)).stem}"

    def __str__(self) -> str:
        return self.name

    def cli_args(self) -> list[str]:
        """The flags of ``dho split`` that make this split."""
        flag = {"fewshot": "--shots", "percent": "--percent", "list": "--list-file"}[self.kind]
        return ["--kind", self.kind, flag, str(self.value)]

    @property
    def level(self) -> float:
        """The numeric label level: shots, percent, or the first number of a list file's name."""
        if self.kind != "list":
            return float(self.value)
        m = re.search(r"\d+(?:\.\d+)?", PurePosixPath(str(self.value)).name)
        return float(m.group(0)) if m else math.nan


def label_level(labels: str, split: Any = None) -> float:
    """Numeric level of a table's ``labels`` string (``4shot``, ``16-shot``, ``1%``, ...),
    else of the run's ``split`` dict; ``nan`` if neither says."""
    m = _LOOSE.fullmatch(str(labels))
    if m:
        return float(m["n"])
    try:
        return LabelSplit.from_dict(split).level
    except ConfigError:
        return math.nan


def label_kind_rank(labels: str) -> int:
    """Display order of a ``labels`` string's kind: shots, then percents, then others."""
    m = _LOOSE.fullmatch(str(labels))
    if not m:
        return 2
    return 0 if "shot" in m["unit"].lower() else 1
