"""The run-directory contract in one place (docs/DESIGN.md, "One run"): the one reader of
``metrics.json`` that every other module uses (train, launch, tracking, collect, evaluate).

A run directory is **done** for a spec hash ``H`` iff

1. ``metrics.json`` parses and has ``status == "complete"`` (written last, atomically);
2. it validates against :data:`METRICS_SCHEMA` (every contract key, with its type);
3. its ``spec_hash`` is ``H``; with no ``H`` asked for, ``H`` is the run's own hash;
4. ``spec.json``, when present, holds the same ``spec_hash`` (otherwise the folder has been
   restarted with another spec since, and the metrics are a stale result).

Everything else in the folder is resumable state, never a result.  :func:`inspect_run`
says which of these holds (:class:`RunState`); readers decide what to do with a folder
that is not done: training resumes it, ``dho collect`` skips it with a warning (and fails
on an *invalid* one: a broken producer), ``dho evaluate`` refuses it.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import OutputError

METRICS_FILE = "metrics.json"
SPEC_FILE = "spec.json"
#: The run directory's own id: a random uuid written once, when training first starts in
#: the folder.  A folder deleted and trained again gets a new id, so its MLflow run is new.
RUN_UID_FILE = "run_uid"

_STR = {"type": "string", "minLength": 1}
_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_INT = {"type": "integer"}
_ID = {"type": ["string", "null"]}

#: JSON schema of a complete ``metrics.json`` (accuracies in percent).  ``required`` is
#: the contract every reader may rely on; the optional keys are newer additions that
#: older run directories lack.
METRICS_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "dho metrics.json (a done run)",
    "type": "object",
    "properties": {
        "status": {"const": "complete"}, "spec_hash": _STR, "spec": {"type": "object"},
        "dataset": _STR, "labels": _STR, "student": _STR, "teacher": _STR, "method": _STR,
        "method_args": {"type": "object"}, "run_uid": _STR, "seed": _INT,
        "test_acc": _NUM, "test_acc_ce": _NUM_OR_NULL, "test_acc_kd": _NUM_OR_NULL, "val_acc": _NUM_OR_NULL,
        "alpha": _NUM_OR_NULL, "beta": _NUM_OR_NULL, "best_epoch": _NUM_OR_NULL, "epochs": _INT,
        "teacher_test_acc": _NUM_OR_NULL, "grad_cosine_mean": _NUM_OR_NULL, "grad_cos_theta_mean": _NUM_OR_NULL,
        "grad_cos_w_mean": _NUM_OR_NULL, "grad_inner_mean": _NUM_OR_NULL, "wall_time_s": _NUM_OR_NULL,
        "images_per_s": _NUM_OR_NULL, "gpu_hours": _NUM_OR_NULL, "device": _STR,
        "git_commit": _ID, "mlflow_run_id": _ID, "slurm_job_id": _ID,
    },
    "required": ["status", "spec_hash", "spec", "dataset", "labels", "student", "teacher", "method", "seed",
                 "test_acc", "test_acc_ce", "test_acc_kd", "val_acc", "alpha", "beta", "best_epoch", "epochs",
                 "teacher_test_acc", "grad_cosine_mean", "wall_time_s", "images_per_s", "gpu_hours", "device",
                 "git_commit", "mlflow_run_id", "slurm_job_id"],
}
#: Every key a training run writes into ``metrics.json`` (the schema's properties).
METRICS_KEYS: tuple[str, ...] = tuple(METRICS_SCHEMA["properties"])
#: The keys every done run has (older runs lack the others).
REQUIRED_KEYS: tuple[str, ...] = tuple(METRICS_SCHEMA["required"])

#: States of a run directory (:attr:`RunState.state`).
DONE, MISSING, UNREADABLE, INCOMPLETE, INVALID, OTHER_SPEC, STALE = (
    "done", "missing", "unreadable", "incomplete", "invalid", "other_spec", "stale")


@dataclass(frozen=True)
class RunState:
    """What a run directory holds: ``state`` (one of the constants above), ``why`` it is
    not done (one line, empty when done) and the parsed ``metrics`` (None unless parsed)."""

    state: str
    why: str = ""
    metrics: dict[str, Any] | None = None

    @property
    def done(self) -> bool:
        return self.state == DONE


_validator = None


def _schema_validator():
    global _validator
    if _validator is None:
        import jsonschema

        _validator = jsonschema.Draft202012Validator(METRICS_SCHEMA)
    return _validator


def _expected(schema: dict[str, Any]) -> str:
    """Words for what a property schema accepts (``"a number or null"``)."""
    if "const" in schema:
        return repr(schema["const"])
    words = {"string": "a non-empty string" if schema.get("minLength") else "a string", "number": "a number",
             "integer": "an integer", "object": "a mapping", "null": "null"}
    types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    return " or ".join(words[t] for t in types)


def contract_problems(metrics: Any) -> list[str]:
    """Ways ``metrics`` breaks :data:`METRICS_SCHEMA`, one phrase each (empty if none)."""
    if not isinstance(metrics, dict):
        return [f"expected a JSON object, not {type(metrics).__name__}"]
    missing: list[str] = []
    bad: list[str] = []
    for err in sorted(_schema_validator().iter_errors(metrics), key=lambda e: list(e.path)):
        if err.validator == "required":
            missing.extend(k for k in METRICS_SCHEMA["required"] if k not in metrics and k not in missing)
        elif err.path:
            key = err.path[0]
            bad.append(f"key '{key}' = {metrics[key]!r}: expected {_expected(METRICS_SCHEMA['properties'][key])}")
        else:  # pragma: no cover - the schema has no other top-level keywords
            bad.append(err.message)
    lacks = [f"lacks contract key(s) {', '.join(missing)}"] if missing else []
    return lacks + list(dict.fromkeys(bad))


def _read_json(path: Path) -> tuple[Any, str]:
    """(parsed content, "") or (None, why not: "missing" or the error)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, "missing"
    except (OSError, UnicodeDecodeError) as e:
        return None, f"unreadable ({e})"
    try:
        return json.loads(text), ""
    except json.JSONDecodeError as e:
        return None, f"not valid JSON ({e})"


def current_spec_hash(run_dir: str | os.PathLike) -> str | None:
    """The ``spec_hash`` in ``run_dir/spec.json`` (written when a run starts), or None."""
    spec, _ = _read_json(Path(run_dir) / SPEC_FILE)
    value = spec.get("spec_hash") if isinstance(spec, dict) else None
    return value if isinstance(value, str) else None


def inspect_run(run_dir: str | os.PathLike, spec_hash: str | None = None) -> RunState:
    """The :class:`RunState` of ``run_dir``: done for ``spec_hash`` (default: its own hash)?"""
    run_dir = Path(run_dir)
    metrics, error = _read_json(run_dir / METRICS_FILE)
    if error == "missing":
        return RunState(MISSING, f"no {METRICS_FILE} (run not finished)")
    if error:
        return RunState(UNREADABLE, f"{METRICS_FILE} is {error}")
    if not isinstance(metrics, dict) or metrics.get("status") != "complete":
        status = metrics.get("status") if isinstance(metrics, dict) else type(metrics).__name__
        return RunState(INCOMPLETE, f"{METRICS_FILE} status is {status!r}, not 'complete'", metrics)
    problems = contract_problems(metrics)
    if problems:
        return RunState(INVALID, f"complete {METRICS_FILE} {'; '.join(problems)} (see docs/DESIGN.md, 'One run')",
                        metrics)
    if spec_hash is not None and metrics["spec_hash"] != spec_hash:
        return RunState(OTHER_SPEC, f"{METRICS_FILE} is for spec {metrics['spec_hash']}, not {spec_hash}", metrics)
    current = current_spec_hash(run_dir)
    if current is not None and current != metrics["spec_hash"]:
        return RunState(STALE, f"{METRICS_FILE} is for spec {metrics['spec_hash']}, but {SPEC_FILE} now holds "
                               f"spec {current} (stale result)", metrics)
    return RunState(DONE, "", metrics)


def load_done(run_dir: str | os.PathLike, spec_hash: str | None = None) -> dict[str, Any] | None:
    """``metrics.json`` of ``run_dir`` if the run is done (for ``spec_hash``), else None."""
    state = inspect_run(run_dir, spec_hash)
    return state.metrics if state.done else None


def run_uid(run_dir: str | os.PathLike, create: bool = True) -> str | None:
    """The id in ``run_dir/run_uid``; with ``create``, a new uuid is written first when the
    folder has none (race-free: the first writer wins, every caller gets its id)."""
    path = Path(run_dir) / RUN_UID_FILE
    try:
        uid = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        uid = ""
    except (OSError, UnicodeDecodeError) as e:
        raise OutputError(f"cannot read {path}: {e}") from None
    if uid or not create:
        return uid or None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{RUN_UID_FILE}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(uuid.uuid4().hex + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        try:
            os.link(tmp, path)  # fails if another process created it meanwhile: its id wins
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
    return path.read_text(encoding="utf-8").strip()


# --------------------------------------------------------------------------------------
# A run directory asked to hold another spec: its old content is set aside, never reused
# and never reported (readers that scan for run directories skip SUPERSEDED folders).
SUPERSEDED = "superseded"
# what belongs to the directory, not to the spec it holds: launcher state and job logs
_KEPT = frozenset({".lock", ".submit.lock", "slurm_job.json", "logs", SUPERSEDED})


def is_superseded(path: str | os.PathLike) -> bool:
    """True for a path inside a run directory's ``superseded/`` folder."""
    return SUPERSEDED in Path(path).parts


def recorded_spec_hash(run_dir: str | os.PathLike) -> str | None:
    """The spec hash the run directory holds (``spec.json``, else ``metrics.json``), or None."""
    current = current_spec_hash(run_dir)
    if current is not None:
        return current
    metrics, _ = _read_json(Path(run_dir) / METRICS_FILE)
    value = metrics.get("spec_hash") if isinstance(metrics, dict) else None
    return value if isinstance(value, str) else None


def set_aside(run_dir: str | os.PathLike, spec_hash: str) -> Path | None:
    """Move the content of ``run_dir`` that belongs to another spec into
    ``superseded/<its hash>[-N]/`` so that ``spec_hash`` trains from scratch there; return
    that folder, or None when the directory holds no other spec.  Call it holding the
    run directory's lock."""
    run_dir = Path(run_dir)
    old = recorded_spec_hash(run_dir)
    if old is None or old == spec_hash:
        return None
    dest = run_dir / SUPERSEDED / old
    n = 1
    while dest.exists():
        n += 1
        dest = run_dir / SUPERSEDED / f"{old}-{n}"
    dest.mkdir(parents=True)
    for entry in run_dir.iterdir():
        if entry.name not in _KEPT:
            os.replace(entry, dest / entry.name)
    return dest
