# Config validation, the grid of each suite, paths and per-run settings.
#
# Nothing here trains anything: rules only call `python -m dho ...`.  The grid is built
# lazily (first use during DAG construction, i.e. after every rule file, baselines
# included, has been read), and unknown suites/methods/students/datasets stop the
# workflow there with one line naming the config key.

import functools
import json
from collections import namedtuple
from pathlib import Path

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml", set_default=True)

R = config["results"]
PY = "python -m dho"
LAUNCHER = config["launcher"]


class ConfigKeyError(ValueError):
    """A config value that the schema cannot check (a name that must exist somewhere)."""


def chosen_suites():
    """`config[suite]` (a name, a group name or a list of them) as a list of suite names."""
    requested = config["suite"]
    requested = [requested] if isinstance(requested, str) else list(requested)
    out = []
    for name in requested:
        names = config["groups"].get(name, [name])
        for n in names:
            if n not in config["suites"]:
                known = ", ".join(sorted(config["suites"]) + sorted(config["groups"]))
                raise ConfigKeyError(f"config key 'suite': unknown suite '{n}'; known: {known}")
            if n not in out:
                out.append(n)
    return out


SUITES = chosen_suites()

# --------------------------------------------------------------------------------------
# Baselines: workflow/rules/baselines/<name>.smk calls register_baseline() and defines one
# rule.  Registered methods join every grid cell of the suites they name.
BASELINES = {}


def register_baseline(name, *, suites, method=None, teacher=True, args=None, train=None):
    """Add method `name` to the grids of `suites` ("all" = every suite with a training
    grid).  `method`: the dho.methods registry name (default `name`); `teacher`: whether
    its runs need a teacher; `args`: method_args; `train`: RunSpec overrides for its runs."""
    if name in BASELINES:
        raise ConfigKeyError(f"baseline '{name}' is registered twice")
    BASELINES[name] = {"suites": suites, "method": method or name, "teacher": teacher,
                       "args": dict(args or {}), "train": dict(train or {})}


# --------------------------------------------------------------------------------------
Cell = namedtuple("Cell", "suite dataset labels student teacher method seed")


def label_names(suite_cfg):
    """{'4shot': {'kind': 'fewshot', 'shots': 4}, '1pct': {'kind': 'percent', ...}}"""
    out = {}
    for n in suite_cfg["labels"].get("shots", []):
        out[f"{n}shot"] = {"kind": "fewshot", "shots": n}
    for p in suite_cfg["labels"].get("percent", []):
        out[f"{p:g}pct"] = {"kind": "percent", "percent": p}
    return out


@functools.cache
def known(kind):
    """Registered names of the package: datasets, students, methods."""
    import importlib

    modname, attr = {"dataset": ("dho.data", "DATASETS"), "student": ("dho.models", "STUDENTS"),
                     "method": ("dho.methods", "METHODS")}[kind]
    return set(getattr(importlib.import_module(modname), attr).names())


def methods_of(suite):
    """The suite's methods, registered baselines included: name -> settings."""
    cfg = config["suites"][suite]
    out = {}
    for name, m in cfg.get("methods", {}).items():
        out[name] = {"method": m.get("method", name), "teacher": m.get("teacher", name != "ce"),
                     "args": m.get("args", {}), "train": m.get("train", {})}
    for name, b in BASELINES.items():
        if b["suites"] == "all" or suite in b["suites"]:
            out.setdefault(name, b)
    return out


def students_of(suite):
    return {name: {"student": s.get("student", name), "pretrained": s.get("pretrained", True),
                   "kwargs": s.get("kwargs", {}), "train": s.get("train", {})}
            for name, s in config["suites"][suite]["students"].items()}


DEMO_STUDENT = "resnet18"  # the registry student `dho demo student` pretrains


def demo_student_path(suite, student):
    """The suite's pretrained demo student file (`dho demo student`) of grid student `student`."""
    return f"{R}/{suite}/demo/student_{student}.pt"


def uses_demo_student(suite, student):
    return students_of(suite)[student]["kwargs"].get("weights") == "demo"


def student_kwargs(suite, student):
    """The student's kwargs, `weights: demo` resolved to its pretrained demo student file."""
    kwargs = dict(students_of(suite)[student]["kwargs"])
    if kwargs.get("weights") == "demo":
        kwargs["weights"] = demo_student_path(suite, student)
    return kwargs


@functools.cache
def grid(suite):
    """Every training cell of a suite (validated against the package registries)."""
    cfg = config["suites"][suite]
    if "evaluate" in cfg:
        return ()
    for key in ("datasets", "labels", "students", "methods", "seeds"):
        if key not in cfg:
            raise ConfigKeyError(f"config key 'suites.{suite}.{key}' is missing (a suite without "
                                 f"'evaluate' needs datasets, labels, students, methods, seeds)")
    for d in cfg["datasets"]:
        if d not in known("dataset"):
            raise ConfigKeyError(f"config key 'suites.{suite}.datasets': unknown dataset '{d}'; "
                                 f"known: {', '.join(sorted(known('dataset')))}")
    students = students_of(suite)
    for name, s in students.items():
        if s["student"] not in known("student"):
            raise ConfigKeyError(f"config key 'suites.{suite}.students.{name}': unknown student "
                                 f"'{s['student']}'; known: {', '.join(sorted(known('student')))}")
        if s["kwargs"].get("weights") == "demo" and s["student"] != DEMO_STUDENT:
            raise ConfigKeyError(f"config key 'suites.{suite}.students.{name}.kwargs.weights' = 'demo': "
                                 f"only student '{DEMO_STUDENT}' has a demo pretraining, not '{s['student']}'")
    methods = methods_of(suite)
    for name, m in methods.items():
        if m["method"] not in known("method"):
            raise ConfigKeyError(f"config key 'suites.{suite}.methods.{name}': unknown method "
                                 f"'{m['method']}'; known: {', '.join(sorted(known('method')))}")
    from dho.spec import RunSpec

    for dataset in cfg["datasets"]:  # RunSpec types, ranges and protocol checks (dho.protocol)
        for student in students:
            for method in methods:
                s = students[student]
                RunSpec.from_dict(dict(train_settings(suite, dataset, student, method), dataset=dataset,
                                       student=s["student"], student_pretrained=s["pretrained"],
                                       student_kwargs=s["kwargs"]),
                                  source=f"config key 'suites.{suite}.train' (with the overrides of "
                                         f"{dataset}, {student}, {method})")
    teachers = list(cfg.get("teachers", {}))
    if any(m["teacher"] for m in methods.values()) and not teachers:
        raise ConfigKeyError(f"config key 'suites.{suite}.teachers' is empty but a method needs a teacher")
    cells = []
    for dataset in cfg["datasets"]:
        for labels in label_names(cfg):
            for student in students:
                for method, m in methods.items():
                    for teacher in (teachers if m["teacher"] else ["none"]):
                        for seed in cfg["seeds"]:
                            cells.append(Cell(suite, dataset, labels, student, teacher, method, seed))
    return tuple(cells)


# --------------------------------------------------------------------------------------
# Paths
def suite_dir(suite):
    return f"{R}/{suite}"


def data_root(suite):
    cfg = config["suites"][suite]
    return f"{R}/{suite}/data" if "demo" in cfg else cfg.get("data_root", "data")


RUN = "{dataset}/{labels}/{student}/{teacher}/{method}/seed{seed}"
RUN_DIR = R + "/{suite}/runs/" + RUN


def run_dir(cell):
    return RUN_DIR.format(**cell._asdict())


def metrics_path(cell):
    return run_dir(cell) + "/metrics.json"


def split_seed(suite, seed):
    return config["suites"][suite].get("train", {}).get("split_seed", seed)


def split_path(suite, dataset, labels, seed):
    return f"{R}/{suite}/splits/{dataset}/{labels}/split{split_seed(suite, int(seed))}.json"


def teacher_path(suite, dataset, labels, teacher, seed):
    kind = config["suites"][suite]["teachers"][teacher]["kind"]
    if kind == "zeroshot":
        return f"{R}/{suite}/teachers/{dataset}/{teacher}.pt"
    return f"{R}/{suite}/teachers/{dataset}/{labels}/split{split_seed(suite, int(seed))}/{teacher}.pt"


def data_ok(suite, dataset):
    return f"{R}/{suite}/checks/{dataset}.json"


def mlflow_uri():
    return config["mlflow_uri"] or f"sqlite:///{R}/mlflow.db"


def mlflow_ok(suite):
    return f"{R}/{suite}/mlflow.ok"


# --------------------------------------------------------------------------------------
# One run: its spec and the resources it asks for
def run_spec(wc):
    """The RunSpec dict of the cell named by the wildcards (paths included)."""
    suite, cfg = wc.suite, config["suites"][wc.suite]
    student = students_of(suite)[wc.student]
    method = methods_of(suite)[wc.method]
    spec = train_settings(suite, wc.dataset, wc.student, wc.method)
    spec.update(
        dataset=wc.dataset,
        data_root=data_root(suite),
        split=label_names(cfg)[wc.labels],
        split_seed=split_seed(suite, int(wc.seed)),
        split_manifest=split_path(suite, wc.dataset, wc.labels, wc.seed),
        student=student["student"],
        student_pretrained=student["pretrained"],
        student_kwargs=student_kwargs(suite, wc.student),
        teacher_file=(None if wc.teacher == "none"
                      else teacher_path(suite, wc.dataset, wc.labels, wc.teacher, wc.seed)),
        method=method["method"],
        method_args=method["args"],
        seed=int(wc.seed),
        mlflow_uri=mlflow_uri(),
        mlflow_experiment=suite,
        tags={"suite": suite, "dataset": wc.dataset, "labels": wc.labels, "student": wc.student,
              "teacher": wc.teacher, "method": wc.method, "seed": str(wc.seed)},
    )
    return spec


def train_settings(suite, dataset, student, method):
    """RunSpec keys of the config: suite train < dataset_train < student < method."""
    cfg = config["suites"][suite]
    out = {}
    for layer in (cfg.get("train", {}), cfg.get("dataset_train", {}).get(dataset, {}),
                  students_of(suite)[student]["train"], methods_of(suite)[method]["train"]):
        out.update(layer)
    return out


def run_resources(suite, student, method):
    """default < students[student] < methods[method] of the suite's `resources`."""
    res = {"gpus": 0, "cpus": 1, "mem_gb": 4, "time_min": 60}
    cfg = config["suites"][suite].get("resources", {})
    for layer in (cfg.get("default", {}), cfg.get("students", {}).get(student, {}),
                  cfg.get("methods", {}).get(method, {})):
        res.update(layer)
    return res


def _res(key):
    return lambda wc: run_resources(wc.suite, wc.student, wc.method)[key]


def train_inputs(wc):
    inputs = {"split": split_path(wc.suite, wc.dataset, wc.labels, wc.seed),
              "data": data_ok(wc.suite, wc.dataset), "mlflow": mlflow_ok(wc.suite)}
    if wc.teacher != "none":
        inputs["teacher"] = teacher_path(wc.suite, wc.dataset, wc.labels, wc.teacher, wc.seed)
    if uses_demo_student(wc.suite, wc.student):
        inputs["student_weights"] = demo_student_path(wc.suite, wc.student)
    return inputs


def slurm_flags():
    s = config["slurm"]
    flags = [f"--max-requeues {s['max_requeues']}"]
    for key in ("partition", "account", "qos"):
        if s[key]:
            flags.append(f"--{key} {s[key]}")
    return " ".join(flags)


def train_threads(wc):
    """Local runs occupy their CPUs here; a SLURM run is only a waiting `dho submit` (0
    threads: the profile's `jobs` bounds how many are in flight)."""
    return 0 if LAUNCHER == "slurm" else run_resources(wc.suite, wc.student, wc.method)["cpus"]
