"""MLflow tracking for training runs: one MLflow run per spec hash, logged with retries.

The run directory is the source of truth; MLflow is a view of it.  Therefore:

* every MLflow call goes through :func:`_retry` (exponential backoff on transient errors
  such as ``database is locked`` or a refused connection); if MLflow stays unavailable
  the tracker warns once, disables itself and the run goes on (``dho mlflow-sync`` later
  re-logs the run files);
* one MLflow run per run-directory *instance*: every MLflow run is tagged with
  ``spec_hash`` and the folder's own id ``run_uid`` (:func:`dho.rundir.run_uid`, written
  when training first starts there).  Run creation is idempotent: the MLflow run id is
  kept in ``RUN_DIR/mlflow_run_id`` and reused on resume/retry; without that file a run
  tagged with this folder's ``run_uid`` is reused; only then is a new run created.  A run
  directory deleted and trained again has a new ``run_uid``, so it gets a fresh MLflow run
  instead of a second history appended to the old one (``dho mlflow-check`` reports the
  old one as a duplicate);
* the sqlite store must be created once before runs fan out (:func:`init_store`, CLI
  ``dho mlflow-init``): processes creating a fresh sqlite database at once race.

CLI: ``dho mlflow-init``, ``dho mlflow-sync RUN_DIR...``, ``dho mlflow-check RESULTS_DIR``,
``dho mlflow-relocate --results DIR`` (a moved results folder: :func:`relocate_artifacts`)
(the tracking server, ``dho mlflow-server``, is in :mod:`dho.mlflow_server`).
"""

from __future__ import annotations

import csv
import math
import os
import random
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from .errors import ConfigError, DataError  # noqa: E402
from .io import atomic_path, atomic_write_json, atomic_write_text, file_lock  # noqa: E402
from .rundir import is_superseded, load_done, run_uid  # noqa: E402
from .spec import RunSpec  # noqa: E402

DEFAULT_URI = "sqlite:///results/mlflow.db"
RUN_ID_FILE = "mlflow_run_id"
ARTIFACT_FILES = ("metrics.json", "history.csv", "grad_cosine.csv", "spec.json")
# Artifact root of a sqlite store: ``<folder of the .db>/mlartifacts``.  It holds copies of
# run files (metrics.json, spec.json): anything that searches a results folder for run
# directories must skip it (:func:`is_artifact_copy`).
ARTIFACT_DIRNAME = "mlartifacts"
# "0": no template store (:func:`template_dir`); every new sqlite store runs MLflow's migrations.
TEMPLATE_ENV = "DHO_MLFLOW_TEMPLATE"
# Columns of MLflow's sqlite schema that hold artifact URIs (rewritten by relocate_artifacts).
ARTIFACT_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                    ("logged_models", "artifact_location"), ("model_versions", "storage_location"))
# Substrings (lower case) of error messages worth retrying.
TRANSIENT_MARKERS = (
    "is locked", "connection", "timed out", "timeout", "temporarily unavailable", "too many requests",
    "502", "503", "504", "max retries exceeded", "remote end closed",
)
# History column -> MLflow metric logged per epoch (step = epoch).  The per-measurement
# gradient cosines are the MLflow metric ``grad_cosine`` (step = global training step).
EPOCH_METRICS = {"train_loss": "train_loss", "lr": "lr", "val_acc_ce": "val_acc_ce", "val_acc_kd": "val_acc_kd",
                 "val_acc": "val_acc", "alpha": "alpha", "beta": "beta", "grad_cosine": "grad_cosine_epoch"}
# metrics.json key -> final MLflow metric (step 0); the best epoch's val_acc/alpha/beta get a
# ``best_`` prefix so they do not mix with the per-epoch series of the same name.
FINAL_METRICS = {"test_acc": "test_acc", "test_acc_ce": "test_acc_ce", "test_acc_kd": "test_acc_kd",
                 "val_acc": "best_val_acc", "alpha": "best_alpha", "beta": "best_beta", "best_epoch": "best_epoch",
                 "teacher_test_acc": "teacher_test_acc", "grad_cosine_mean": "grad_cosine_mean",
                 "grad_cos_theta_mean": "grad_cos_theta_mean", "grad_cos_w_mean": "grad_cos_w_mean",
                 "grad_inner_mean": "grad_inner_mean",
                 "wall_time_s": "wall_time_s", "images_per_s": "images_per_s", "gpu_hours": "gpu_hours"}


class MlflowUnavailable(Exception):
    """An MLflow call failed after all retries (internal; the tracker turns it into a warning)."""


def resolve_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///results/mlflow.db`` (relative to cwd).

    For a sqlite URI the database's parent folder is created.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    db = sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"MLflow tracking URI {uri}: cannot create {db.parent}: {e.strerror}") from None
    return uri


def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


def artifact_root(db: Path) -> str:
    """The artifact root of the sqlite store ``db``: ``mlartifacts`` beside it, as a file URI."""
    return (Path(db).parent.resolve() / ARTIFACT_DIRNAME).as_uri()


def _artifact_location(uri: str) -> str | None:
    """Artifacts of a sqlite store go next to the database (not into ``./mlruns`` of the cwd)."""
    db = sqlite_path(uri)
    return artifact_root(db) if db is not None else None


def _is_moved_root(location: str | None, root: str) -> bool:
    """True for an experiment's artifact location that is a sqlite store's artifact root
    (``file://.../mlartifacts``) other than ``root``: the store was moved since."""
    return (bool(location) and location != root and location.startswith("file://")
            and location.rstrip("/").endswith("/" + ARTIFACT_DIRNAME))


def relocate_artifacts(db: Path) -> dict[str, int]:
    """Point the artifact URIs stored in the sqlite store ``db`` at :func:`artifact_root` (db).

    MLflow stores absolute artifact URIs (each experiment's location, each run's
    ``artifact_uri``).  The artifacts of a sqlite store live under its folder, so after the
    folder is moved or copied (``mv results /elsewhere/results``) every URI that starts
    with an older ``.../mlartifacts`` root is rewritten to start with the current one.
    Other locations (``./mlruns`` of the Default experiment, remote stores) are left alone.
    Idempotent; returns ``{old root: rows rewritten}`` (empty when nothing had moved).
    """
    import sqlite3

    root = artifact_root(db)
    con = sqlite3.connect(db, timeout=60)
    try:
        with con:
            olds = sorted({loc for (loc,) in con.execute("SELECT artifact_location FROM experiments")
                           if _is_moved_root(loc, root)})
            return {old: sum(_rewrite_prefix(con, table, column, old, root) for table, column in ARTIFACT_COLUMNS)
                    for old in olds}
    finally:
        con.close()


def _rewrite_prefix(con, table: str, column: str, old: str, new: str) -> int:
    """In ``table.column``, replace the leading ``old`` (whole path components) by ``new``."""
    if column not in {row[1] for row in con.execute(f"PRAGMA table_info({table})")}:
        return 0  # a table or column this MLflow version does not have
    return con.execute(f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                       f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                       (new, len(old) + 1, old, len(old) + 1, old + "/")).rowcount


def is_artifact_copy(path: str | os.PathLike) -> bool:
    """True for a path inside an MLflow artifact root (a copy of a run file, not a run)."""
    return ARTIFACT_DIRNAME in Path(path).parts


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    text = f"{type(exc).__name__}: {exc}".lower()
    return any(m in text for m in TRANSIENT_MARKERS)


def _retry(fn: Callable[..., Any], *args: Any, attempts: int = 6, base_delay: float = 0.2, **kwargs: Any) -> Any:
    """Call ``fn``; on a transient error retry with exponential backoff + jitter.

    Raises :class:`MlflowUnavailable` when the error is not transient or persists.
    """
    for attempt in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - MLflow raises many types; classify by message
            if not is_transient(e) or attempt == attempts - 1:
                first = str(e).strip().splitlines()[0] if str(e).strip() else ""
                raise MlflowUnavailable(f"{type(e).__name__}: {first[:300]}") from e
            time.sleep(base_delay * (2 ** attempt) * (1 + random.random()))
    raise AssertionError("unreachable")


def _client(uri: str):
    """An MlflowClient; a fresh sqlite database is created under a file lock first, so that
    processes starting at once do not race on schema creation (the INTEGRATION trap)."""
    from mlflow import MlflowClient

    db = sqlite_path(uri)
    if db is None:
        return MlflowClient(tracking_uri=uri)
    # (even a database file that exists may still be mid-creation by another process)
    with file_lock(db.parent / f".{db.name}.lock"):
        if not db.exists() or db.stat().st_size == 0:
            _copy_template_store(db)
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)  # creates/migrates the schema if needed
        relocate_artifacts(db)  # a results folder moved since: its artifact links follow it
    return client


def template_dir() -> Path | None:
    """Where the migrated empty sqlite store of this MLflow version is kept:
    ``$XDG_CACHE_HOME/dho`` (default ``~/.cache/dho``) ``/mlflow-store-<version>``; None
    when ``$DHO_MLFLOW_TEMPLATE`` is ``0`` (every store is then made by MLflow's migrations)."""
    if os.environ.get(TEMPLATE_ENV, "1") == "0":
        return None
    from importlib.metadata import version

    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "dho" / f"mlflow-store-{version('mlflow')}"


def _template(folder: Path) -> Path:
    """``folder`` holding ``mlflow.db`` (an empty store MLflow made: schema, migrations,
    the Default experiment) and ``cwd`` (the working folder it was made in, to which MLflow
    resolved the Default experiment's ``./mlruns``); built once, atomically (a folder
    renamed into place: a process that loses the race keeps the winner's)."""
    if (folder / "cwd").is_file():
        return folder
    from mlflow import MlflowClient

    folder.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        MlflowClient(tracking_uri=f"sqlite:///{build / 'mlflow.db'}").search_experiments(max_results=1)
        (build / "cwd").write_text(os.getcwd())
        try:
            os.rename(build, folder)
        except OSError:
            if not (folder / "cwd").is_file():
                raise
    finally:
        shutil.rmtree(build, ignore_errors=True)  # (gone when renamed into place)
    return folder


def _copy_template_store(db: Path) -> bool:
    """Create the absent sqlite store ``db`` as a copy of :func:`_template` (MLflow's schema
    migrations cost seconds per new store): the Default experiment's artifact location
    moved from the template's working folder to this one and its times set to now, so the
    copy holds what MLflow itself would have written here.  False (and nothing written)
    when the template is switched off or cannot be made; MLflow then creates the store."""
    import sqlite3

    folder = template_dir()
    try:
        folder = _template(folder) if folder is not None else None
    except Exception as e:  # noqa: BLE001 - any failure: MLflow makes the store as without a template
        warnings.warn(f"MLflow store template {folder}: {e}; creating {db} with MLflow's migrations",
                      RuntimeWarning, stacklevel=2)
        folder = None
    if folder is None:
        return False
    now = int(time.time() * 1000)
    with atomic_path(db) as tmp:
        shutil.copyfile(folder / "mlflow.db", tmp)
        con = sqlite3.connect(tmp)
        try:
            with con:
                built_in = (folder / "cwd").read_text()
                for exp_id, location in con.execute("SELECT experiment_id, artifact_location FROM experiments").fetchall():
                    if location and Path(location).is_relative_to(built_in):
                        location = os.path.join(os.getcwd(), os.path.relpath(location, built_in))
                    con.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
                                "WHERE experiment_id = ?", (location, now, now, exp_id))
        finally:
            con.close()
    return True


def _get_or_create_experiment(client, name: str, uri: str) -> str:
    exp = _retry(client.get_experiment_by_name, name)
    if exp is not None:
        return exp.experiment_id
    try:
        return _retry(client.create_experiment, name, artifact_location=_artifact_location(uri))
    except MlflowUnavailable:
        exp = _retry(client.get_experiment_by_name, name)  # created concurrently by another process
        if exp is None:
            raise
        return exp.experiment_id


def init_store(uri: str | None = None, experiment: str = "dho") -> str:
    """Create the tracking store (sqlite schema) and the experiment once; return its id.

    Call this before runs fan out: concurrent processes creating one fresh sqlite
    database race on schema creation.
    """
    uri = resolve_uri(uri)
    try:
        return _get_or_create_experiment(_client(uri), experiment, uri)
    except MlflowUnavailable as e:
        raise ConfigError(f"cannot initialise MLflow store {uri} (experiment {experiment!r}): {e}") from None


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> ``{"a.b": "value"}`` with string values (MLflow params)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = str(v)[:6000]
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class RunTracker:
    """The MLflow side of one training run (see module docstring).

    Every public method is safe to call when MLflow is down: it warns once and does
    nothing from then on (``self.enabled`` becomes False).
    """

    def __init__(self, spec: RunSpec, run_dir: str | os.PathLike, uri: str | None = None,
                 *, attempts: int = 6, base_delay: float = 0.2):
        self.spec = spec
        self.run_dir = Path(run_dir)
        self.uri = resolve_uri(uri or spec.mlflow_uri)
        self.attempts = attempts
        self.base_delay = base_delay
        self.run_id: str | None = None
        self.enabled = True
        self._client_obj = None

    # -- plumbing ------------------------------------------------------------------------
    def _client(self):
        if self._client_obj is None:
            self._client_obj = _retry(_client, self.uri, attempts=self.attempts, base_delay=self.base_delay)
        return self._client_obj

    def _call(self, fn_name: str, *args: Any, **kwargs: Any) -> Any:
        fn = getattr(self._client(), fn_name)
        return _retry(fn, *args, attempts=self.attempts, base_delay=self.base_delay, **kwargs)

    def _guard(self, what: str, fn: Callable[[], Any]) -> Any:
        if not self.enabled:
            return None
        try:
            return fn()
        except MlflowUnavailable as e:
            self.enabled = False
            warnings.warn(f"MLflow ({self.uri}) unavailable while {what}: {e}; continuing without "
                          f"MLflow (run files are the source of truth; re-log later with "
                          f"`dho mlflow-sync {self.run_dir}`)", RuntimeWarning, stacklevel=3)
            return None

    # -- run lifecycle -------------------------------------------------------------------
    def start(self, tags: dict[str, Any] | None = None) -> str | None:
        """Find or create the MLflow run of this spec, mark it RUNNING, log params and tags.

        Returns the run id (also written to ``RUN_DIR/mlflow_run_id``), or None if MLflow
        is unavailable.
        """
        return self._guard("starting the run", lambda: self._start(tags or {}))

    def _start(self, tags: dict[str, Any]) -> str:
        spec_hash = self.spec.hash
        uid = run_uid(self.run_dir)
        exp_id = _get_or_create_experiment(self._client(), self.spec.mlflow_experiment, self.uri)
        run_id = self._existing_run_id(exp_id, spec_hash, uid)
        all_tags = {"spec_hash": spec_hash, "run_uid": uid, **{str(k): str(v) for k, v in self.spec.tags.items()},
                    **{k: str(v) for k, v in tags.items() if v is not None}}
        if run_id is None:
            run = self._call("create_run", exp_id, tags=all_tags, run_name=f"{self.spec.method}-{spec_hash}")
            run_id = run.info.run_id
        else:
            self._call("update_run", run_id, status="RUNNING")
            self._log_tags(run_id, all_tags)
        self.run_id = run_id
        atomic_write_text(self.run_dir / RUN_ID_FILE, run_id + "\n")
        self._log_params(run_id, flatten(self.spec.to_dict()))
        return run_id

    def _existing_run_id(self, exp_id: str, spec_hash: str, uid: str) -> str | None:
        """The id in RUN_DIR/mlflow_run_id if that run exists with our spec_hash (and no other
        folder's run_uid), else a run of the experiment tagged with this spec_hash and this
        folder's ``run_uid`` (oldest first), else None."""
        id_file = self.run_dir / RUN_ID_FILE
        if id_file.is_file():
            stored = id_file.read_text().strip()
            if stored:
                try:
                    run = self._call("get_run", stored)
                except MlflowUnavailable as e:
                    if is_transient(e.__cause__ or e):
                        raise
                    run = None  # deleted or from another store: fall back to the search
                if (run is not None and run.info.lifecycle_stage == "active"
                        and run.data.tags.get("spec_hash") == spec_hash
                        and run.data.tags.get("run_uid", uid) == uid):
                    return stored
        runs = self._call("search_runs", [exp_id],
                          filter_string=f"tags.spec_hash = '{spec_hash}' and tags.run_uid = '{uid}'",
                          order_by=["attributes.start_time ASC"], max_results=10)
        return runs[0].info.run_id if runs else None

    def _log_tags(self, run_id: str, tags: dict[str, str]) -> None:
        from mlflow.entities import RunTag

        self._call("log_batch", run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def _log_params(self, run_id: str, params: dict[str, str]) -> None:
        """Log params not logged yet; params are immutable in MLflow, so a differing
        existing value (e.g. another output_dir for the same spec hash) is kept."""
        from mlflow.entities import Param

        existing = self._call("get_run", run_id).data.params
        new = [Param(k, v) for k, v in params.items() if k not in existing]
        for i in range(0, len(new), 100):
            self._call("log_batch", run_id, params=new[i:i + 100])

    def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        """Log finite numeric values of ``metrics`` at ``step`` (one batch)."""
        self.log_series({k: [(step, v)] for k, v in metrics.items()})

    def log_series(self, series: dict[str, Iterable[tuple[int, Any]]]) -> None:
        """Log ``{key: [(step, value), ...]}`` in batches (non-finite values are skipped)."""
        def do() -> None:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            items = [Metric(k, float(v), now, int(s)) for k, pts in series.items() for s, v in pts if _finite(v)]
            for i in range(0, len(items), 500):
                self._call("log_batch", self.run_id, metrics=items[i:i + 500])

        if self.run_id is not None:
            self._guard("logging metrics", do)

    def log_epoch(self, row: dict[str, Any]) -> None:
        """Log one history row (the per-epoch metrics) at ``step=row['epoch']``."""
        self.log_metrics({name: row.get(col) for col, name in EPOCH_METRICS.items()}, step=int(row["epoch"]))

    def log_grad_cosines(self, points: Iterable[tuple[int, float]]) -> None:
        """Log gradient-conflict cosines as metric ``grad_cosine`` at their training steps."""
        self.log_series({"grad_cosine": list(points)})

    def finish(self, metrics: dict[str, Any] | None, status: str = "FINISHED") -> None:
        """Log the final metrics and the run files as artifacts, then end the run."""
        if self.run_id is None:
            return

        def do() -> None:
            if metrics:
                logged = self._call("get_run", self.run_id).data.metrics
                final = {name: metrics.get(k) for k, name in FINAL_METRICS.items()}
                self.log_metrics({k: v for k, v in final.items() if logged.get(k) != v}, step=0)
            for name in ARTIFACT_FILES:
                if (self.run_dir / name).is_file():
                    self._call("log_artifact", self.run_id, str(self.run_dir / name))
            self._call("set_terminated", self.run_id, status)

        self._guard("finishing the run", do)

    # -- re-logging a finished run (mlflow-sync) -----------------------------------------
    def sync_history(self, history_csv: Path, grad_csv: Path) -> None:
        """Log history rows / gradient cosines whose (key, step) is not in MLflow yet."""
        def do() -> None:
            series: dict[str, list[tuple[int, Any]]] = {}
            for row in _read_csv(history_csv):
                for col, name in EPOCH_METRICS.items():
                    series.setdefault(name, []).append((int(row["epoch"]), _to_float(row.get(col))))
            series["grad_cosine"] = [(int(r["step"]), _to_float(r["cosine"])) for r in _read_csv(grad_csv)]
            missing: dict[str, list[tuple[int, Any]]] = {}
            for key, pts in series.items():
                have = {m.step for m in self._call("get_metric_history", self.run_id, key)}
                missing[key] = [(s, v) for s, v in pts if s not in have]
            self.log_series(missing)

        if self.run_id is not None:
            self._guard("syncing history", do)


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _to_float(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


# ---------------------------------------------------------------------------------------
# Done runs and the CLI
# ---------------------------------------------------------------------------------------
def sync_run(run_dir: Path, uri: str | None = None) -> str | None:
    """Re-log a done run's files to MLflow (idempotent); returns the MLflow run id."""
    run_dir = Path(run_dir)
    metrics = load_done(run_dir)
    if metrics is None:
        raise DataError(f"{run_dir} is not a done run (no complete metrics.json matching its spec)")
    spec = RunSpec.from_dict(metrics["spec"], source=str(run_dir / "metrics.json"))
    tracker = RunTracker(spec, run_dir, uri=uri, attempts=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_id = tracker.start({"git_commit": metrics.get("git_commit"), "slurm_job_id": metrics.get("slurm_job_id")})
        tracker.sync_history(run_dir / "history.csv", run_dir / "grad_cosine.csv")
        if run_id is not None and metrics.get("mlflow_run_id") != run_id:
            atomic_write_json(run_dir / "metrics.json", {**metrics, "mlflow_run_id": run_id})
        tracker.finish(metrics)
    if caught or not tracker.enabled:
        msg = str(caught[0].message) if caught else "MLflow unavailable"
        raise DataError(f"mlflow-sync {run_dir}: {msg}")
    return run_id


def _done_runs(results_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(run directory, metrics) of every done run under ``results_dir`` (artifact copies skipped)."""
    found = []
    for mfile in sorted(results_dir.rglob("metrics.json")):
        if not is_artifact_copy(mfile.relative_to(results_dir)) and not is_superseded(mfile.relative_to(results_dir)):
            m = load_done(mfile.parent)
            if m is not None:
                found.append((mfile.parent, m))
    return found


def _repeated_steps(client, run_id: str) -> list[str]:
    """``"key: N values at step S"`` for each logged series with several values at one step
    (two training histories appended to one MLflow run)."""
    problems = []
    for key in (*EPOCH_METRICS.values(), "grad_cosine"):
        steps: dict[int, int] = {}
        for point in _retry(client.get_metric_history, run_id, key):
            steps[point.step] = steps.get(point.step, 0) + 1
        problems += [f"{key}: {count} values at step {step}" for step, count in sorted(steps.items()) if count > 1]
    return problems


def _check_one(client, exp_id: str, run_dir: Path, m: dict[str, Any], n_dirs: int) -> list[str]:
    """Mismatches between one done run directory and MLflow (see :func:`check_results`)."""
    spec_hash = m["spec_hash"]
    runs = _retry(client.search_runs, [exp_id], filter_string=f"tags.spec_hash = '{spec_hash}'")
    problems = []
    if len(runs) > n_dirs:
        ids = ", ".join(r.info.run_id for r in runs)
        problems.append(f"{run_dir}: {len(runs)} MLflow runs with spec_hash {spec_hash} but {n_dirs} run "
                        f"director{'y' if n_dirs == 1 else 'ies'} (duplicates, e.g. from a deleted and "
                        f"retrained run directory): {ids}")
    uid = m.get("run_uid") or run_uid(run_dir, create=False)
    mine = [r for r in runs if r.data.tags.get("run_uid") == uid] if uid else runs
    if len(mine) != 1:
        which = f"run_uid {uid}" if uid else f"spec_hash {spec_hash}"
        return problems + [f"{run_dir}: {len(mine)} MLflow runs with {which} (expected 1)"]
    run = mine[0]
    logged = run.data.metrics.get("test_acc")
    if logged is None or not math.isclose(logged, float(m["test_acc"]), rel_tol=0, abs_tol=1e-6):
        problems.append(f"{run_dir}: test_acc {m['test_acc']} in metrics.json but {logged} in MLflow run "
                        f"{run.info.run_id}")
    problems += [f"{run_dir}: MLflow run {run.info.run_id} {p}" for p in _repeated_steps(client, run.info.run_id)]
    return problems


def check_results(results_dir: Path, uri: str | None = None) -> tuple[int, list[str]]:
    """Cross-check done runs under ``results_dir`` against MLflow.

    Returns (number of done runs, list of mismatch lines).  Each done run directory must
    have exactly one MLflow run tagged with its ``run_uid`` (older folders without one:
    with its spec_hash) whose ``test_acc`` equals metrics.json's and whose series have one
    value per step; a spec hash must not have more MLflow runs than run directories.
    """
    from mlflow.exceptions import MlflowException

    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise DataError(f"results folder not found: {results_dir}")
    uri = resolve_uri(uri)
    client = _client(uri)
    done = _done_runs(results_dir)
    n_dirs: dict[str, int] = {}
    for _, m in done:
        n_dirs[m["spec_hash"]] = n_dirs.get(m["spec_hash"], 0) + 1
    problems: list[str] = []
    exp_ids: dict[str, str | None] = {}
    try:
        for run_dir, m in done:
            exp_name = m["spec"].get("mlflow_experiment", "dho")
            if exp_name not in exp_ids:
                exp = _retry(client.get_experiment_by_name, exp_name)
                exp_ids[exp_name] = exp.experiment_id if exp else None
            if exp_ids[exp_name] is None:
                problems.append(f"{run_dir}: MLflow experiment {exp_name!r} does not exist")
                continue
            problems += _check_one(client, exp_ids[exp_name], run_dir, m, n_dirs[m["spec_hash"]])
    except (MlflowUnavailable, MlflowException) as e:
        raise DataError(f"cannot read MLflow store {uri}: {e}") from None
    return len(done), problems


def _cmd_init(args) -> int:
    exp_id = init_store(args.uri, args.experiment)
    print(f"MLflow store {resolve_uri(args.uri)}: experiment {args.experiment!r} (id {exp_id}) ready")
    return 0


def _cmd_sync(args) -> int:
    for run_dir in args.run_dirs:
        run_id = sync_run(Path(run_dir), args.uri)
        print(f"{run_dir}: MLflow run {run_id}")
    return 0


def _cmd_check(args) -> int:
    n, problems = check_results(Path(args.results_dir), args.uri)
    for line in problems:
        print(line)
    print(f"{n} done run(s) checked, {len(problems)} mismatch(es)", file=sys.stderr)
    return 1 if problems else 0


def relocate_store(results_dir: Path | None = None, uri: str | None = None) -> tuple[Path, dict[str, int]]:
    """``dho mlflow-relocate``: the sqlite store (``RESULTS_DIR/mlflow.db`` or ``uri``) and
    what :func:`relocate_artifacts` rewrote in it."""
    if results_dir is not None:
        db = Path(results_dir) / sqlite_path(DEFAULT_URI).name
    else:
        db = sqlite_path(uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI)
    if db is None:
        raise ConfigError(f"--uri {uri}: expected a sqlite:/// store (a tracking server keeps its own "
                          f"--artifacts-destination)")
    if not db.is_file():
        raise DataError(f"MLflow store not found: {db}")
    try:
        with file_lock(db.parent / f".{db.name}.lock"):
            return db, relocate_artifacts(db)
    except Exception as e:  # noqa: BLE001 - sqlite3 errors: not a store, locked, read-only
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"cannot relocate MLflow store {db}: {first}") from None


def _cmd_relocate(args) -> int:
    db, moved = relocate_store(args.results, args.uri)
    root = artifact_root(db)
    for old, n in moved.items():
        print(f"{db}: {n} artifact location(s) moved from {old} to {root}")
    if not moved:
        print(f"{db}: artifact locations already under {root}")
    return 0


def add_cli(sub) -> None:
    p = sub.add_parser("mlflow-init", help="create the MLflow tracking store and experiment once")
    p.add_argument("--uri", default=None, help=f"tracking URI (default $MLFLOW_TRACKING_URI or {DEFAULT_URI})")
    p.add_argument("--experiment", default="dho", help="experiment name (default: dho)")
    p.set_defaults(func=_cmd_init)

    p = sub.add_parser("mlflow-sync", help="re-log done runs' files to MLflow (idempotent)")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--uri", default=None, help="tracking URI (default: the run's spec, $MLFLOW_TRACKING_URI, "
                                               f"{DEFAULT_URI})")
    p.set_defaults(func=_cmd_sync)

    p = sub.add_parser("mlflow-relocate", help="point a moved results folder's MLflow artifact links at it again")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--results", default=None, metavar="DIR",
                       help="the results folder holding mlflow.db and mlartifacts/ (where it is now)")
    where.add_argument("--uri", default=None, help=f"sqlite tracking URI (default $MLFLOW_TRACKING_URI or {DEFAULT_URI})")
    p.set_defaults(func=_cmd_relocate)

    p = sub.add_parser("mlflow-check", help="check every done run has one MLflow run with the same test_acc")
    p.add_argument("results_dir", metavar="RESULTS_DIR")
    p.add_argument("--uri", default=None, help=f"tracking URI (default $MLFLOW_TRACKING_URI or {DEFAULT_URI})")
    p.set_defaults(func=_cmd_check)
