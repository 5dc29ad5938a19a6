"""The suite compiler: one suite of config.yaml -> grid cells, run specs, paths,
resources and teacher jobs.  The workflow's rules only ask it; nothing here runs anything.

Layers of a run's spec (later wins): RunSpec defaults < suite ``train`` <
``dataset_train[dataset]`` < ``students[s].train`` < ``teachers[t].train`` <
``methods[m].train``, then the
cell's own keys (dataset, split, student, teacher file, method, seed, paths, tags).
Resources: the launcher's defaults (:class:`dho.launch.SlurmRequest`) < ``resources.default``
< ``resources.students[s]`` < ``resources.methods[m]`` (a teacher job: < ``resources.teacher``).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import ConfigError, DhoError
from ..split import LabelSplit
from .config import chosen_suites, validate_config
from .teachers import TEACHER_KINDS, TeacherJob

RUN = "{dataset}/{labels}/{student}/{teacher}/{method}/seed{seed}"
NO_TEACHER = "none"


class Cell(NamedTuple):
    suite: str
    dataset: str
    labels: str
    student: str
    teacher: str
    method: str
    seed: int

    @property
    def path(self) -> str:
        """The cell's relative run path (``dataset/labels/student/teacher/method/seedN``)."""
        return RUN.format(**self._asdict())

    @classmethod
    def of(cls, wildcards: Any) -> "Cell":
        """The cell named by an object with the seven fields as attributes (rule wildcards)."""
        return cls(*(getattr(wildcards, f) for f in cls._fields[:-1]), int(wildcards.seed))


@dataclass(frozen=True)
class Resources:
    gpus: int
    cpus: int
    mem_gb: float
    time_min: int
    nodes: int = 1  # SLURM nodes of one data-parallel run (gpus: per node; local runs ignore it)

    @property
    def mem_mb(self) -> int:
        return int(self.mem_gb * 1024)

    def flags(self) -> str:
        nodes = f" --nodes {self.nodes}" if self.nodes > 1 else ""
        return f"--gpus {self.gpus} --cpus {self.cpus} --mem-gb {self.mem_gb:g} --time-min {self.time_min}{nodes}"


def _default_resources() -> dict[str, Any]:
    from ..launch import SlurmRequest

    d = SlurmRequest()
    return {"gpus": d.gpus, "cpus": d.cpus, "mem_gb": d.mem_gb, "time_min": d.time_min}


@dataclass(frozen=True)
class MethodEntry:
    name: str            # the suite's name (run paths, tables)
    method: str          # dho.methods registry name
    args: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    teachers: tuple[str, ...] | None = None   # the suite's teachers it runs with (None: all)
    labels: tuple[str, ...] | None = None     # the suite's label levels it runs at (None: all)
    external: bool = False  # its runs come from a rule file in workflow/rules/baselines/, not dho train
    teacher: bool = True    # external only: whether its runs get a teacher (registry methods say it)

    @property
    def needs_teacher(self) -> bool:
        if self.external:
            return self.teacher
        from ..catalog import catalog

        needs = catalog()["methods"]
        if self.method not in needs:
            raise ConfigError(f"unknown method '{self.method}'; known methods: {', '.join(sorted(needs))}")
        return needs[self.method]


@dataclass(frozen=True)
class StudentEntry:
    name: str
    student: str
    pretrained: bool
    kwargs: dict
    train: dict
    methods: tuple[str, ...] | None = None   # the suite's methods it is trained with (None: all)

    def trains(self, method: str) -> bool:
        return self.methods is None or method in self.methods

    @property
    def demo_weights(self) -> bool:
        return self.kwargs.get("weights") == "demo"


def _known(kind: str) -> list[str]:
    """Registered names of ``kind``; students and methods from :func:`dho.catalog.catalog`
    (their registries import torch, the datasets' does not)."""
    if kind == "dataset":
        from ..data import DATASETS

        return DATASETS.names()
    from ..catalog import catalog

    return sorted(catalog()[{"student": "students", "method": "methods"}[kind]])


def _need_known(kind: str, name: str, key: str) -> None:
    known = _known(kind)
    if name not in known:
        raise ConfigError(f"config key '{key}': unknown {kind} '{name}'; known: {', '.join(known)}")


class Suite:
    """One compiled suite (``config['suites'][name]`` with the workflow's settings)."""

    def __init__(self, workflow: "Workflow", name: str):
        self.workflow, self.name = workflow, name
        self.cfg = workflow.config["suites"][name]
        self.results = workflow.results
        self.dir = f"{self.results}/{name}"
        self.data_root = f"{self.dir}/data" if "demo" in self.cfg else self.cfg.get("data_root", "data")
        self._resources: dict[tuple, Resources] = {}

    @property
    def key(self) -> str:
        return f"suites.{self.name}"

    @property
    def evaluates(self) -> bool:
        return "evaluate" in self.cfg

    # -- the grid ------------------------------------------------------------------------
    @functools.cached_property
    def labels(self) -> dict[str, LabelSplit]:
        splits = ([LabelSplit.fewshot(n) for n in self.cfg["labels"].get("shots", [])]
                  + [LabelSplit.percent(p) for p in self.cfg["labels"].get("percent", [])])
        return {s.name: s for s in splits}

    @functools.cached_property
    def methods(self) -> dict[str, MethodEntry]:
        return {name: MethodEntry(name, m.get("method", name), dict(m.get("args", {})), dict(m.get("train", {})),
                                  tuple(m["teachers"]) if m.get("teachers") else None,
                                  tuple(m["labels"]) if m.get("labels") else None,
                                  bool(m.get("external", False)), bool(m.get("teacher", True)))
                for name, m in self.cfg["methods"].items()}

    def teachers_of(self, method: str) -> list[str]:
        """The teachers a method runs with: ``none`` without a teacher, else its ``teachers``
        (default: all of the suite's)."""
        m = self.methods[method]
        if not m.needs_teacher:
            return [NO_TEACHER]
        return list(m.teachers or self.cfg.get("teachers", {}))

    @functools.cached_property
    def students(self) -> dict[str, StudentEntry]:
        return {name: StudentEntry(name, s.get("student", name), s.get("pretrained", True),
                                   dict(s.get("kwargs", {})), dict(s.get("train", {})),
                                   tuple(s["methods"]) if s.get("methods") else None)
                for name, s in self.cfg["students"].items()}

    @functools.cached_property
    def grid(self) -> tuple[Cell, ...]:
        """Every training cell (none for an evaluation suite), the config checked first."""
        if self.evaluates:
            return ()
        self.check()
        return tuple(Cell(self.name, dataset, labels, student, teacher, method, seed)
                     for dataset in self.cfg["datasets"] for labels in self.labels
                     for student in self.students for method in self.methods
                     if self.students[student].trains(method)
                     and (self.methods[method].labels is None or labels in self.methods[method].labels)
                     for teacher in self.teachers_of(method)
                     for seed in self.cfg["seeds"])

    def check(self) -> None:
        """Names that must exist in the package's registries, and the spec of every
        (dataset, student, method) layer combination."""
        for key in ("datasets", "labels", "students", "methods", "seeds"):
            if key not in self.cfg:
                raise ConfigError(f"config key '{self.key}.{key}' is missing (a suite without 'evaluate' "
                                  f"needs datasets, labels, students, methods, seeds)")
        for d in self.cfg["datasets"]:
            _need_known("dataset", d, f"{self.key}.datasets")
        for name, s in self.students.items():
            _need_known("student", s.student, f"{self.key}.students.{name}")
            if s.demo_weights:
                from ..demo.student import DEMO_STUDENT

                if s.student != DEMO_STUDENT:
                    raise ConfigError(f"config key '{self.key}.students.{name}.kwargs.weights' = 'demo': only "
                                      f"student '{DEMO_STUDENT}' has a demo pretraining, not '{s.student}'")
        for name, m in self.methods.items():
            if not m.external:
                if "teacher" in self.cfg["methods"][name]:  # one source of truth: the registry
                    raise ConfigError(f"config key '{self.key}.methods.{name}.teacher': only an external method "
                                      f"(external: true) says whether it needs a teacher; '{m.method}' "
                                      f"declares it in dho.methods")
                _need_known("method", m.method, f"{self.key}.methods.{name}")
        for teacher, t in self.cfg.get("teachers", {}).items():
            if t["kind"] not in TEACHER_KINDS:
                raise ConfigError(f"config key '{self.key}.teachers.{teacher}.kind' = {t['kind']!r}: "
                                  f"expected one of {', '.join(TEACHER_KINDS.names())}")
            TEACHER_KINDS.get(t["kind"]).check(self, teacher)
        if any(m.needs_teacher for m in self.methods.values()) and not self.cfg.get("teachers"):
            raise ConfigError(f"config key '{self.key}.teachers' is empty but a method needs a teacher")
        for name, m in self.methods.items():
            for t in m.teachers or ():
                if t not in self.cfg.get("teachers", {}):
                    raise ConfigError(f"config key '{self.key}.methods.{name}.teachers': unknown teacher '{t}'; "
                                      f"the suite's teachers: {', '.join(self.cfg.get('teachers', {}))}")
            for level in m.labels or ():
                if level not in self.labels:
                    raise ConfigError(f"config key '{self.key}.methods.{name}.labels': unknown label level "
                                      f"'{level}'; the suite's: {', '.join(self.labels)}")
        for name, s in self.students.items():
            for method in s.methods or ():
                if method not in self.methods:
                    raise ConfigError(f"config key '{self.key}.students.{name}.methods': unknown method "
                                      f"'{method}'; the suite's methods: {', '.join(self.methods)}")
        self._check_cache_topk()
        for dataset in self.cfg["datasets"]:  # RunSpec types, ranges and protocol checks (dho.protocol)
            for name, s in self.students.items():
                for method in filter(s.trains, self.methods):
                    for teacher in self.teachers_of(method):
                        settings = dict(self.train_settings(dataset, name, method, teacher), dataset=dataset,
                                        student=s.student, student_pretrained=s.pretrained, student_kwargs=s.kwargs)
                        self._spec_of(settings, f"config key '{self.key}.train' (with the overrides of "
                                                f"{dataset}, {name}, {method}, {teacher})")
        if self.linear_evaluates:
            _ = self.linear_eval

    # -- settings --------------------------------------------------------------------------
    def train_settings(self, dataset: str, student: str, method: str, teacher: str = NO_TEACHER) -> dict[str, Any]:
        """RunSpec keys of the config: suite train < dataset_train < student < teacher < method."""
        out: dict[str, Any] = {}
        teacher_train = self.cfg.get("teachers", {}).get(teacher, {}).get("train", {})
        for layer in (self.cfg.get("train", {}), self.cfg.get("dataset_train", {}).get(dataset, {}),
                      self.students[student].train, teacher_train, self.methods[method].train):
            out.update(layer)
        return out

    @staticmethod
    def _spec_of(settings: dict[str, Any], source: str):
        from ..spec import RunSpec

        return RunSpec.from_dict(settings, source=source)

    def base_spec(self):
        """The suite-level settings as a RunSpec (package defaults for the rest)."""
        return self._spec_of(dict(self.cfg.get("train", {})), f"config key '{self.key}.train'")

    def split_seed(self, seed: int) -> int:
        return int(self.cfg.get("train", {}).get("split_seed", seed))

    def resources(self, student: str | None = None, method: str | None = None, teacher: bool = False) -> Resources:
        """What one job asks for: a training run (student, method) or a teacher job (asked
        for several times per job while Snakemake builds the DAG: kept per argument)."""
        key = (student, method, teacher)
        if key not in self._resources:
            self._resources[key] = self._merge_resources(student, method, teacher)
        return self._resources[key]

    def _merge_resources(self, student: str | None, method: str | None, teacher: bool) -> Resources:
        cfg = self.cfg.get("resources", {})
        layers = ([cfg.get("default", {}), cfg.get("teacher", {})] if teacher else
                  [cfg.get("default", {}), cfg.get("students", {}).get(student, {}),
                   cfg.get("methods", {}).get(method, {})])
        res = _default_resources()
        for layer in layers:
            res.update(layer)
        return Resources(**res)

    # -- paths -------------------------------------------------------------------------------
    def run_dir(self, cell: Cell) -> str:
        return f"{self.dir}/runs/{cell.path}"

    def metrics_path(self, cell: Cell) -> str:
        return f"{self.run_dir(cell)}/metrics.json"

    def spec_path(self, cell: Cell) -> str:
        return f"{self.dir}/specs/{cell.path}.json"

    def split_path(self, dataset: str, labels: str, split_seed: int) -> str:
        return f"{self.dir}/splits/{dataset}/{labels}/split{split_seed}.json"

    def data_ok(self, dataset: str) -> str:
        return f"{self.dir}/checks/{dataset}.json"

    def mlflow_ok(self) -> str:
        return f"{self.dir}/mlflow.ok"

    def demo_clip_path(self) -> str:
        return f"{self.dir}/demo/tiny_clip.pt"

    def demo_student_path(self, student: str) -> str:
        return f"{self.dir}/demo/student_{student}.pt"

    def teacher_job(self, cell: Cell) -> TeacherJob:
        kind = TEACHER_KINDS.get(self.cfg["teachers"][cell.teacher]["kind"])
        if kind.per_split:
            return TeacherJob(self, cell.teacher, cell.dataset, cell.labels, self.split_seed(cell.seed))
        return TeacherJob(self, cell.teacher, cell.dataset)

    def teacher_path(self, job: TeacherJob) -> str:
        if job.labels is None:
            return f"{self.dir}/teachers/{job.dataset}/{job.teacher}.pt"
        return f"{self.dir}/teachers/{job.dataset}/{job.labels}/split{job.split_seed}/{job.teacher}.pt"

    def teacher_file(self, cell: Cell) -> str | None:
        return None if cell.teacher == NO_TEACHER else self.teacher_path(self.teacher_job(cell))

    def teacher_kind(self, teacher: str):
        return TEACHER_KINDS.get(self.cfg["teachers"][teacher]["kind"])

    def teacher_job_of(self, teacher: str, dataset: str, labels: str | None = None,
                       split_seed: int | str | None = None) -> TeacherJob:
        """The teacher job of a teacher rule's wildcards (labels/seed only for a per-split kind)."""
        per_split = self.teacher_kind(teacher).per_split
        return TeacherJob(self, teacher, dataset, labels if per_split else None,
                          int(split_seed) if per_split else None)

    def teacher_jobs(self) -> list[TeacherJob]:
        """Every teacher file the grid (an evaluation suite: its zero-shot references) needs, each once."""
        if self.evaluates:
            return [TeacherJob(self, t, d) for d in self.teacher_eval_datasets() for t in self.evaluate_teachers()]
        return list(dict.fromkeys(self.teacher_job(c) for c in self.grid if c.teacher != NO_TEACHER))

    def teacher_command(self, job: TeacherJob) -> str:
        return " ".join(self.teacher_kind(job.teacher).command(job))

    def teacher_inputs(self, job: TeacherJob) -> dict[str, str]:
        return {"data": self.data_ok(job.dataset), "settings": self.settings_path(self._teacher_settings_name(job)),
                **self.teacher_kind(job.teacher).inputs(job)}

    def teacher_job_name(self, job: TeacherJob) -> str:
        where = [job.dataset] + ([job.labels, f"split{job.split_seed}"] if job.labels is not None else [])
        return "-".join(["dho-teacher", self.name, *where, job.teacher])

    # -- teacher-output cache (suite key teacher_cache; dho.teacher_cache) -----------------
    @property
    def caches(self) -> bool:
        return bool(self.cfg.get("teacher_cache", False))

    @property
    def cache_topk(self) -> int | None:
        """k of ``teacher_cache: {topk: k}`` (the cache holds top-k logits); None: features."""
        value = self.cfg.get("teacher_cache")
        return value.get("topk") if isinstance(value, dict) else None

    def _check_cache_topk(self) -> None:
        """A top-k cache holds a zero-shot head's logits: no teacher or method that needs features."""
        k = self.cache_topk
        if k is None:
            return
        for teacher in {t for m in self.methods for t in self.teachers_of(m) if t != NO_TEACHER}:
            kind = self.cfg["teachers"][teacher]["kind"]
            if kind != "zeroshot":
                raise ConfigError(f"config key '{self.key}.teacher_cache' = {{topk: {k}}}: teacher '{teacher}' is "
                                  f"{kind}, whose head needs the image features; use teacher_cache: true")
        from ..catalog import catalog

        outputs = catalog()["teacher_outputs"]
        for name, m in self.methods.items():
            needs = sorted(set(outputs.get(m.method, ["logits"])) - {"logits"})
            if not m.external and needs and self.teachers_of(name) != [NO_TEACHER]:
                raise ConfigError(f"config key '{self.key}.teacher_cache' = {{topk: {k}}}: method '{name}' needs "
                                  f"the teacher's {', '.join(needs)}; use teacher_cache: true")

    def tower(self, teacher: str) -> str:
        """The teacher whose image tower ``teacher`` uses: its ``base`` (Tip-Adapter-F) or itself."""
        return self.cfg["teachers"][teacher].get("base", teacher)

    def cache_path(self, dataset: str, tower: str, seed: int | str, suffix: str = ".pt") -> str:
        return f"{self.dir}/teacher_cache/{dataset}/{tower}/seed{seed}{suffix}"

    def cache_of(self, cell: Cell) -> str | None:
        if not self.caches or cell.teacher == NO_TEACHER:
            return None
        return self.cache_path(cell.dataset, self.tower(cell.teacher), cell.seed)

    def cache_cells(self, dataset: str, tower: str, seed: int | str) -> list[Cell]:
        """The runs whose teacher sees its views through one cache."""
        return [c for c in self.grid if c.teacher != NO_TEACHER and c.dataset == dataset
                and str(c.seed) == str(seed) and self.tower(c.teacher) == tower]

    def cache_inputs(self, dataset: str, tower: str, seed: int | str) -> dict[str, Any]:
        cells = self.cache_cells(dataset, tower, seed)
        return {"teacher": self.teacher_path(self.teacher_job_of(tower, dataset)), "data": self.data_ok(dataset),
                "specs": self.cache_path(dataset, tower, seed, ".specs.json"),
                "splits": sorted({self.split_path(c.dataset, c.labels, self.split_seed(c.seed)) for c in cells})}

    def cache_files(self) -> dict[str, list[dict[str, Any]]]:
        """specs-list path -> the run specs of each cache (the `dho teacher cache --spec` file)."""
        out: dict[str, list[dict[str, Any]]] = {}
        if self.caches:
            for c in self.grid:
                if c.teacher != NO_TEACHER:
                    path = self.cache_path(c.dataset, self.tower(c.teacher), c.seed, ".specs.json")
                    out.setdefault(path, []).append(self.run_spec(c))
        return out

    # -- settings files: a job's command line, rewritten only when it changes ---------------
    @staticmethod
    def _teacher_settings_name(job: TeacherJob) -> str:
        where = [job.dataset] + ([job.labels, f"split{job.split_seed}"] if job.labels is not None else [])
        return "/".join(["teachers", *where, job.teacher])

    def settings_path(self, name: str) -> str:
        return f"{self.dir}/settings/{name}.json"

    def settings(self) -> dict[str, list[str]]:
        """name -> the command-line arguments of every teacher/demo job of the suite."""
        out: dict[str, list[str]] = {}
        if self.evaluates:
            return {self._teacher_settings_name(job): self.teacher_kind(job.teacher).command(job)
                    for job in self.teacher_jobs()}
        demo = self.cfg.get("demo")
        if demo is not None:
            out["demo_data"] = list(demo["data_args"])
            out["demo_teacher"] = list(demo["teacher_args"])
        for name, s in self.students.items():
            if s.demo_weights:
                out[f"demo_student_{name}"] = self.demo_student_flags(name)
        for job in self.teacher_jobs():
            out[self._teacher_settings_name(job)] = self.teacher_kind(job.teacher).command(job)
        return out

    # -- one run ---------------------------------------------------------------------------------
    def run_spec(self, cell: Cell) -> dict[str, Any]:
        """The RunSpec dict of ``cell`` (paths included)."""
        student = self.students[cell.student]
        kwargs = dict(student.kwargs)
        if student.demo_weights:
            kwargs["weights"] = self.demo_student_path(cell.student)
        spec = self.train_settings(cell.dataset, cell.student, cell.method, cell.teacher)
        spec.update(
            dataset=cell.dataset, data_root=self.data_root, split=self.labels[cell.labels].to_dict(),
            split_seed=self.split_seed(cell.seed),
            split_manifest=self.split_path(cell.dataset, cell.labels, self.split_seed(cell.seed)),
            student=student.student, student_pretrained=student.pretrained, student_kwargs=kwargs,
            teacher_file=self.teacher_file(cell), method=self.methods[cell.method].method,
            method_args=self.methods[cell.method].args, seed=cell.seed, output_dir=self.run_dir(cell),
            mlflow_uri=self.workflow.mlflow_uri, mlflow_experiment=self.name,
            tags={"suite": self.name, "dataset": cell.dataset, "labels": cell.labels, "student": cell.student,
                  "teacher": cell.teacher, "method": cell.method, "seed": str(cell.seed)})
        if self.cache_of(cell) is not None:
            spec["teacher_cache"] = self.cache_of(cell)
            if self.cache_topk is not None:
                spec["teacher_cache_topk"] = self.cache_topk
        return spec

    def train_inputs(self, cell: Cell) -> dict[str, str]:
        inputs = {"spec": self.spec_path(cell),
                  "split": self.split_path(cell.dataset, cell.labels, self.split_seed(cell.seed)),
                  "data": self.data_ok(cell.dataset), "mlflow": self.mlflow_ok()}
        teacher = self.teacher_file(cell)
        if teacher is not None:
            inputs["teacher"] = teacher
        if self.cache_of(cell) is not None:
            inputs["teacher_cache"] = self.cache_of(cell)
        if self.students[cell.student].demo_weights:
            inputs["student_weights"] = self.demo_student_path(cell.student)
        return inputs

    def demo_student_flags(self, student: str) -> list[str]:
        from ..catalog import catalog
        from ..demo.student import demo_student_flags

        flags = demo_student_flags(self.students[student].kwargs, **catalog()["student_defaults"])
        return flags + list(self.cfg.get("demo", {}).get("student_args", []))

    # -- evaluation suites -------------------------------------------------------------------------
    @functools.cached_property
    def evaluate(self) -> dict[str, Any]:
        """The ``evaluate`` block, its names checked against the config and registries."""
        if not self.evaluates:
            raise ConfigError(f"config key '{self.key}.evaluate' is missing: suite '{self.name}' evaluates nothing")
        ev = self.cfg["evaluate"]
        for d in ev["datasets"]:
            _need_known("dataset", d, f"{self.key}.evaluate.datasets")
        src = ev["from"]
        suites = self.workflow.config["suites"]
        if src not in suites:
            raise ConfigError(f"config key '{self.key}.evaluate.from': unknown suite '{src}'; "
                              f"known: {', '.join(sorted(suites))}")
        if "evaluate" in suites[src]:
            raise ConfigError(f"config key '{self.key}.evaluate.from' = '{src}': expected a suite that "
                              f"trains runs, not another evaluation suite")
        return ev

    def evaluate_teachers(self) -> list[str]:
        """``evaluate.teachers``: zeroshot teachers of the suite's ``teachers`` block (checked)."""
        names = list(self.evaluate.get("teachers", []))
        teachers = self.cfg.get("teachers", {})
        for name in names:
            if teachers.get(name, {}).get("kind") != "zeroshot":
                raise ConfigError(f"config key '{self.key}.evaluate.teachers': '{name}' is not a zeroshot teacher "
                                  f"of '{self.key}.teachers' (known: {', '.join(teachers) or 'none'})")
            TEACHER_KINDS.get("zeroshot").check(self, name)
        return names

    def teacher_eval_datasets(self) -> list[str]:
        """Where the zero-shot references are scored: the datasets of ``from``, then ``evaluate.datasets``."""
        ev = self.evaluate
        return list(dict.fromkeys([*self.workflow.suite(ev["from"]).cfg.get("datasets", []), *ev["datasets"]]))

    def eval_json(self, eval_dataset: str, cell: Cell) -> str:
        return f"{self.dir}/evals/{eval_dataset}/{cell.suite}/{cell.path}.json"

    def teacher_eval_json(self, eval_dataset: str, teacher: str) -> str:
        return f"{self.dir}/evals/{eval_dataset}/zero-shot/{teacher}.json"

    def eval_jsons(self) -> list[str]:
        ev = self.evaluate
        return ([self.eval_json(d, c) for d in ev["datasets"] for c in self.workflow.suite(ev["from"]).grid]
                + [self.teacher_eval_json(d, t) for d in self.teacher_eval_datasets()
                   for t in self.evaluate_teachers()])

    # -- linear evaluation (suite key linear_eval; dho linear-eval) -----------------------------
    @property
    def linear_evaluates(self) -> bool:
        return "linear_eval" in self.cfg

    @functools.cached_property
    def linear_eval(self) -> dict[str, Any]:
        """The ``linear_eval`` block, each filter's names checked against the suite's grid."""
        if not self.linear_evaluates:
            raise ConfigError(f"config key '{self.key}.linear_eval' is missing: suite '{self.name}' "
                              f"linear-evaluates nothing")
        block = self.cfg["linear_eval"]
        known = {"labels": list(self.labels), "students": list(self.students),
                 "teachers": list(dict.fromkeys(t for m in self.methods for t in self.teachers_of(m))),
                 "methods": list(self.methods)}
        for key, names in known.items():
            for name in block.get(key, []):
                if name not in names:
                    raise ConfigError(f"config key '{self.key}.linear_eval.{key}': '{name}' is not in the suite's "
                                      f"grid (known: {', '.join(names)})")
        return block

    def linear_eval_cells(self) -> list[Cell]:
        """The grid's runs that ``linear_eval`` selects."""
        block = self.linear_eval
        fields = (("labels", "labels"), ("students", "student"), ("teachers", "teacher"), ("methods", "method"))
        return [c for c in self.grid
                if all(key not in block or getattr(c, attr) in block[key] for key, attr in fields)]

    def linear_eval_json(self, cell: Cell) -> str:
        return f"{self.dir}/linear_eval/{cell.path}.json"

    def linear_eval_resources(self) -> Resources:
        res = _default_resources()
        for layer in (self.cfg.get("resources", {}).get("default", {}), self.linear_eval.get("resources", {})):
            res.update(layer)
        return Resources(**res)

    def targets(self) -> list[str]:
        """What the workflow's `all` builds for this suite."""
        if self.evaluates:
            return [f"{self.dir}/evals.csv"] + [f"{self.dir}/tables/ood.{ext}" for ext in ("md", "csv", "tex")]
        linear = [f"{self.dir}/linear_eval.csv"] if self.linear_evaluates else []
        return [f"{self.dir}/{name}" for name in ("runs.csv", "tables", "figures", "rechoose.csv")] + linear


class Workflow:
    """config.yaml compiled: the chosen suites (and the suites they evaluate)."""

    def __init__(self, config: dict[str, Any], schema_file: str | Path):
        self.config = validate_config(config, schema_file)
        self.results = self.config["results"]
        self.launcher = self.config["launcher"]
        self.worker_socket = None
        if self.launcher == "local" and self.config["local_worker"]:
            from ..worker import socket_path

            self.worker_socket = socket_path(self.results)
        self.mlflow_uri = self.config["mlflow_uri"] or f"sqlite:///{self.results}/mlflow.db"
        self.chosen = chosen_suites(self.config)
        self._suites: dict[str, Suite] = {}

    def suite(self, name: str) -> Suite:
        if name not in self._suites:
            if name not in self.config["suites"]:
                raise ConfigError(f"config key 'suites': unknown suite '{name}'")
            self._suites[name] = Suite(self, name)
        return self._suites[name]

    def compiled(self) -> list[Suite]:
        """Every chosen suite and the suites they evaluate, each checked."""
        names = list(self.chosen)
        for name in self.chosen:
            suite = self.suite(name)
            if suite.evaluates and suite.evaluate["from"] not in names:
                names.append(suite.evaluate["from"])
        for name in names:
            _ = self.suite(name).grid  # checks the suite
        return [self.suite(n) for n in names]

    def slurm_flags(self) -> str:
        s = self.config["slurm"]
        flags = [f"--max-requeues {s['max_requeues']}"]
        flags += [f"--{key} {s[key]}" for key in ("partition", "account", "qos") if s[key]]
        if s.get("poll_s") is not None:
            flags.append(f"--poll-s {s['poll_s']:g}")
        return " ".join(flags)

    def launch_flags(self, suite: Suite, res: Resources, name: str | None = None) -> str:
        """`dho submit` / `dho submit-cmd` flags: launcher, logs, resources, SLURM settings."""
        job = f" --name {name}" if name else ""
        return (f"--launcher {self.launcher}{job} --log-dir {suite.dir}/logs {res.flags()} "
                f"{self.slurm_flags()}")

    def threads(self, res: Resources) -> int:
        """Local jobs occupy their CPUs here; a SLURM job is only a waiting launcher (0
        threads: the profile's `jobs` bounds how many are in flight)."""
        return 0 if self.launcher == "slurm" else res.cpus

    def teacher_kinds(self) -> dict[Any, list[str]]:
        """Teacher kind -> names of the compiled suites' teachers of that kind."""
        out: dict[Any, list[str]] = {}
        for suite in self.compiled():
            for name, t in suite.cfg.get("teachers", {}).items():
                names = out.setdefault(TEACHER_KINDS.get(t["kind"]), [])
                if name not in names:
                    names.append(name)
        return out

    def files(self) -> dict[str, Any]:
        """path -> content of every spec and settings file of the compiled suites."""
        out: dict[str, Any] = {}
        for suite in self.compiled():
            out.update({suite.spec_path(cell): suite.run_spec(cell) for cell in suite.grid})
            out.update({suite.settings_path(name): args for name, args in suite.settings().items()})
            out.update(suite.cache_files())
        return out

    def write_files(self) -> int:
        """Write every spec and settings file; one whose content is unchanged is left
        alone (its mtime tells the workflow what is out of date).  Returns how many
        files were (re)written."""
        from ..io import atomic_write_text

        written = 0
        for path, content in self.files().items():
            text = json.dumps(content, indent=1, sort_keys=True) + "\n"
            try:
                same = Path(path).read_text() == text
            except OSError:
                same = False
            if not same:
                atomic_write_text(Path(path), text)
                written += 1
        return written


def compile_workflow(config: dict[str, Any], schema_file: str | Path, write_specs: bool = True) -> Workflow:
    """The compiled workflow (every chosen suite checked); its spec files written."""
    workflow = Workflow(config, schema_file)
    if write_specs:
        workflow.write_files()
    else:
        workflow.compiled()
    return workflow


def exit_on_config_error(fn, *args, **kwargs):
    """``fn(*args)``, or print ``error: <one line>`` and exit 1 on a user error (the
    Snakefile's way to stop at parse time without a traceback)."""
    import sys

    try:
        return fn(*args, **kwargs)
    except DhoError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
