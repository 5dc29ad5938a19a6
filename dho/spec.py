"""One training run's full specification: what it is, how it is validated, its hash.

A spec is plain data (YAML/JSON file and/or ``--set key=value`` flags).  Every key has a
type; a wrong key or type raises :class:`ConfigError` naming the key.  The *spec hash*
covers only the keys that change results (not paths, devices or tracking settings), so
the same experiment on another machine or output folder has the same hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError, yaml_problem
from .split import LabelSplit

# Keys that do not change the numbers a run produces: excluded from the spec hash.
NON_SEMANTIC_KEYS = frozenset(
    {"data_root", "output_dir", "device", "num_workers", "mlflow_uri", "mlflow_experiment",
     "tags", "progress", "split_manifest", "teacher_file", "teacher_cache", "max_device_batch",
     "precision"}
)

# Keys added after runs existed: hashed only when they differ from the behaviour those runs
# had, so that the specs written before keep their hashes (top-k teacher logits change the
# targets KD sees; split forwards change what BatchNorm normalises with).
UNHASHED_DEFAULTS: dict[str, Any] = {"teacher_cache_topk": None, "student_forward": "joint"}


@dataclass
class RunSpec:
    # --- what is trained -------------------------------------------------------------
    dataset: str = "shapes"                  # dataset registry name (dho.data)
    data_root: str = "results/demo/data"     # folder holding the dataset folders
    # label split: {"kind": "fewshot", "shots": N} | {"kind": "percent", "percent": p}
    #              | {"kind": "list", "file": "1percent.txt"}; its own seed is split_seed
    split: dict = field(default_factory=lambda: {"kind": "fewshot", "shots": 4})
    split_seed: int = 1
    split_manifest: str | None = None        # precomputed manifest (dho split); else computed
    student: str = "resnet18"                # student registry name (dho.models)
    student_pretrained: bool = True          # torchvision/open_clip pretrained weights
    student_kwargs: dict = field(default_factory=dict)
    teacher_file: str | None = None          # teacher file (dho teacher ...); None: no teacher
    teacher_sha: str | None = None           # content hash of the teacher file (for the spec hash)
    teacher_cache: str | None = None         # teacher-output cache (dho teacher cache); None: teacher runs live
    teacher_cache_topk: int | None = None    # the cache holds the teacher's top-k logits (k), not its features
    method: str = "dho"                      # method registry name (dho.methods)
    method_args: dict = field(default_factory=dict)  # e.g. {"lam": 0.5, "temperature": 2.0}
    seed: int = 1
    # student (and teacher) calls per step: "joint" = one over cat([x_l, x_u]) (the authors'
    # ImageNet scripts); "split" = one per part (their few-shot train_others.py: BatchNorm
    # normalises each part with its own statistics and updates its running ones twice a step)
    student_forward: str = "joint"
    # --- optimisation ------------------------------------------------------------------
    epochs: int = 200
    epoch_length: str = "labeled"            # "labeled": zip over labeled loader (protocol 1)
    #                                          "unlabeled": over unlabeled, labeled cycled (protocol 2)
    batch_size: int = 64                     # labeled batch
    unlabeled_batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: float = 0.1                      # < 1: fraction of all steps; >= 1: number of steps
    warmup_start_factor: float = 0.0
    schedule: str = "linear"                 # "linear" decay | "cosine" | "chained_cosine" (dho.runtime)
    image_size: int = 224                    # augmentation resolution (shared crop)
    crop_scale_min: float = 0.5
    crop_interpolation: str = "bilinear"     # training crop resize: "bilinear" | "bicubic" (ImageNet scripts)
    # --- evaluation --------------------------------------------------------------------
    alpha_beta: str = "search"               # "search" on val | "fixed"
    alpha: float = 0.5                       # used when alpha_beta == "fixed"
    beta: float = 1.0
    epoch_select: str = "best_val"           # reported epoch: "best_val" | "last"
    test_selection: bool = False             # allow choosing on val where val IS test (dho.protocol)
    grad_cosine_every: int = 10              # steps between gradient-conflict measurements; 0 = off
    # --- where and how -----------------------------------------------------------------
    device: str = "auto"
    num_workers: int = 2
    precision: str = "auto"                  # student bf16 autocast: auto = on CUDA, bf16 = CUDA or CPU, fp32 = off
    max_device_batch: int | None = None      # most images one process forwards at once (gradient
    #                                          accumulation keeps the global batch); None = whole share
    output_dir: str | None = None
    mlflow_uri: str | None = None            # default: $MLFLOW_TRACKING_URI or sqlite:///results/mlflow.db
    mlflow_experiment: str = "dho"
    tags: dict = field(default_factory=dict)  # grid coordinates etc., logged as MLflow tags
    progress: bool = True

    # ------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "spec") -> "RunSpec":
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a mapping of spec keys, got {type(d).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        d = dict(d)
        recorded_hash = d.pop("spec_hash", None)  # a run's spec.json carries its hash
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ConfigError(f"{source}: unknown spec key(s) {', '.join(unknown)}; "
                              f"known keys: {', '.join(sorted(fields))}")
        kwargs = {k: _coerce(k, v, _field_type(fields[k]), source) for k, v in d.items()}
        spec = cls(**kwargs)
        spec.validate(source)
        if recorded_hash is not None and recorded_hash != spec.hash:
            raise ConfigError(f"{source}: key 'spec_hash' = {recorded_hash!r} does not match the spec's hash "
                              f"{spec.hash} (edited spec.json?); drop the key to use the spec as it is")
        return spec

    def validate(self, source: str = "spec") -> None:
        def need(cond: bool, key: str, what: str) -> None:
            if not cond:
                raise ConfigError(f"{source}: key '{key}' = {getattr(self, key)!r}: expected {what}")

        for key in ("dataset", "student", "method", "mlflow_experiment", "device"):
            need(getattr(self, key) != "", key, "a non-empty string")
        need(self.epochs >= 1, "epochs", "an integer >= 1")
        need(self.batch_size >= 1, "batch_size", "an integer >= 1")
        need(self.unlabeled_batch_size >= 1, "unlabeled_batch_size", "an integer >= 1")
        need(self.lr > 0 and math.isfinite(self.lr), "lr", "a positive number")
        need(self.weight_decay >= 0, "weight_decay", "a number >= 0")
        need(self.warmup >= 0, "warmup", "a number >= 0 (fraction < 1 or steps >= 1)")
        need(0 <= self.warmup_start_factor <= 1, "warmup_start_factor", "a number in [0, 1]")
        need(self.schedule in ("linear", "cosine", "chained_cosine"), "schedule",
             "'linear', 'cosine' or 'chained_cosine'")
        need(self.epoch_length in ("labeled", "unlabeled"), "epoch_length", "'labeled' or 'unlabeled'")
        need(self.student_forward in ("joint", "split"), "student_forward", "'joint' or 'split'")
        need(self.alpha_beta in ("search", "fixed"), "alpha_beta", "'search' or 'fixed'")
        need(self.epoch_select in ("best_val", "last"), "epoch_select", "'best_val' or 'last'")
        need(self.crop_interpolation in ("bilinear", "bicubic"), "crop_interpolation", "'bilinear' or 'bicubic'")
        need(0 <= self.alpha <= 1, "alpha", "a number in [0, 1]")
        need(self.beta > 0, "beta", "a positive number")
        need(self.image_size >= 8, "image_size", "an integer >= 8")
        need(0 < self.crop_scale_min <= 1, "crop_scale_min", "a number in (0, 1]")
        need(self.grad_cosine_every >= 0, "grad_cosine_every", "an integer >= 0")
        need(self.num_workers >= 0, "num_workers", "an integer >= 0")
        need(self.precision in ("auto", "bf16", "fp32"), "precision", "'auto', 'bf16' or 'fp32'")
        need(self.teacher_cache_topk is None or (self.teacher_cache_topk >= 1 and self.teacher_cache is not None),
             "teacher_cache_topk", "null, or an integer >= 1 with key 'teacher_cache' set")
        need(self.max_device_batch is None or self.max_device_batch >= 1, "max_device_batch", "null or an integer >= 1")
        LabelSplit.from_dict(self.split, source)
        for k, v in self.method_args.items():
            if not isinstance(v, (int, float, str, bool)) or (isinstance(v, float) and not math.isfinite(v)):
                raise ConfigError(f"{source}: key 'method_args.{k}' = {v!r}: expected a finite number, string or bool")
        from .protocol import check_protocol

        check_protocol(self, source)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def semantic_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_dict().items()
                if k not in NON_SEMANTIC_KEYS and not (k in UNHASHED_DEFAULTS and v == UNHASHED_DEFAULTS[k])}

    @property
    def hash(self) -> str:
        """sha256 (first 16 hex digits) of the canonical JSON of the semantic keys."""
        blob = json.dumps(self.semantic_dict(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def with_derived_keys(spec: RunSpec) -> RunSpec:
    """``spec`` with the keys derived from files filled in: ``teacher_sha`` (first 16 hex
    digits of the teacher file's sha256), so the spec hash changes whenever the teacher
    file does.  The one place they are computed: ``dho train``, ``dho submit`` and the
    submitit job all call it, so a spec file hashes the same whichever runs it."""
    if spec.teacher_file and spec.teacher_sha is None:
        path = Path(spec.teacher_file)
        if not path.is_file():
            raise ConfigError(f"key 'teacher_file': teacher file not found: {path}")
        from .io import file_sha256

        spec.teacher_sha = file_sha256(path)[:16]
    return spec


def _field_type(f: dataclasses.Field) -> str:
    return str(f.type).replace("typing.", "")


def _coerce(key: str, value: Any, typ: str, source: str) -> Any:
    """Check ``value`` against the declared type string; accept ints for floats."""
    optional = "None" in typ
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{source}: key '{key}' is null: expected {typ}")
    base = typ.split("|")[0].strip()
    ok = {
        "str": lambda v: isinstance(v, str),
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "dict": lambda v: isinstance(v, dict),
    }[base]
    if not ok(value):
        raise ConfigError(f"{source}: key '{key}' = {value!r}: expected {base}, got {type(value).__name__}")
    if base == "float":
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"{source}: key '{key}' = {value!r}: expected a finite number")
    return value


def _yaml_loader():
    """A SafeLoader that also reads ``5e-5``/``1e3`` as floats (YAML 1.1 needs a dot)."""
    import re

    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
        list("-+0123456789."))
    return Loader


def _yaml_load(text: str) -> Any:
    import yaml

    return yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass


def parse_set(items: list[str]) -> dict[str, Any]:
    """Parse ``key=value`` overrides; values are YAML scalars/flow mappings; dots nest."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        try:
            value = _yaml_load(raw) if raw != "" else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {yaml_problem(e)}") from None
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def load_spec(files: list[str] | tuple = (), overrides: list[str] | tuple = ()) -> RunSpec:
    """Merge spec files (YAML or JSON, in order) and ``key=value`` overrides into a RunSpec."""
    import yaml

    merged: dict[str, Any] = {}
    source = "spec"
    origin: dict[str, str] = {}  # top-level key -> the file or flag that set it last
    for f in files:
        p = Path(f)
        if not p.is_file():
            raise ConfigError(f"spec file not found: {p}")
        try:
            d = _yaml_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"spec file {p} is not valid YAML/JSON: {yaml_problem(e)}") from None
        if not isinstance(d, dict):
            raise ConfigError(f"spec file {p}: expected a mapping at the top level")
        merged = deep_merge(merged, d)
        source = str(p)
        origin.update(dict.fromkeys(map(str, d), str(p)))
    if overrides:
        sets = parse_set(list(overrides))
        merged = deep_merge(merged, sets)
        origin.update(dict.fromkeys(sets, "--set"))
    try:
        return RunSpec.from_dict(merged, source=source)
    except ConfigError as e:
        raise ConfigError(_name_the_origin(str(e), source, origin)) from None


def _name_the_origin(message: str, source: str, origin: dict[str, str]) -> str:
    """``<source>: key 'k' ...`` -> ``--set k ...`` or ``<the file that set k>: key 'k' ...``."""
    unknown = f"{source}: unknown spec key(s) "
    if message.startswith(unknown):
        keys = message[len(unknown):].split(";", 1)[0].split(", ")
        wheres = {origin.get(k, source) for k in keys}
        return f"{wheres.pop()}: unknown spec key(s) {message[len(unknown):]}" if len(wheres) == 1 else message
    prefix = f"{source}: key '"
    if not message.startswith(prefix):
        return message
    key = message[len(prefix):].split("'", 1)[0]
    where = origin.get(key.split(".", 1)[0], source)
    rest = message[len(prefix) + len(key) + 1:]  # after the closing quote: " = 3: expected ..."
    return f"--set {key}{rest}" if where == "--set" else f"{where}: key '{key}'{rest}"
