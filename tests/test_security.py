"""Security: nothing in dho unpickles data, config carries no credentials, the MLflow
server binds to loopback by default.

The static checks read dho/ with ``ast`` (so aliases, ``from torch import load`` and
``**kwargs`` are seen).  The real start of ``dho mlflow-server`` on 127.0.0.1 only is
checked in tests/test_faults_mlflow_server.py (one server start for both).
"""

import ast
import importlib
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

torch.set_num_threads(1)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

from conftest import REPO  # noqa: E402
from dho import mlflow_server  # noqa: E402
from dho.errors import CheckpointError  # noqa: E402

PICKLE_MODULES = {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "shelve", "marshal", "joblib"}
UNSAFE_YAML = {"yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load", "yaml.full_load_all",
               "yaml.Loader", "yaml.UnsafeLoader", "yaml.FullLoader", "yaml.CLoader", "yaml.CUnsafeLoader",
               "yaml.CFullLoader"}


# --------------------------------------------------------------------------------------
# Static check
# --------------------------------------------------------------------------------------
def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> full dotted name, from every import in the module (any scope)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


def _resolve(node: ast.AST, aliases: dict[str, str]) -> str | None:
    name = _dotted(node)
    if name is None:
        return None
    head, _, rest = name.partition(".")
    full = aliases.get(head, head)
    return f"{full}.{rest}" if rest else full


def _kw_is(call: ast.Call, key: str, value: bool) -> bool:
    return any(k.arg == key and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords)


def _safe_yaml_loader(expr: ast.AST, module: str | None) -> bool:
    """``Loader=`` of a yaml.load call: yaml.SafeLoader/CSafeLoader/BaseLoader, or a name (or a
    call without arguments) in the same module that gives a SafeLoader subclass."""
    import yaml

    name = _dotted(expr.func if isinstance(expr, ast.Call) and not expr.args and not expr.keywords else expr)
    if name in ("yaml.SafeLoader", "yaml.CSafeLoader", "yaml.BaseLoader"):
        return True
    if name is None or "." in name or module is None:
        return False
    obj = getattr(importlib.import_module(module), name, None)
    if isinstance(expr, ast.Call) and callable(obj):
        obj = obj()
    return isinstance(obj, type) and issubclass(obj, (yaml.SafeLoader, yaml.BaseLoader))


def scan_source(source: str, filename: str, module: str | None = None) -> tuple[list[str], dict[str, int]]:
    """(violations, counts of checked calls) of one module's source."""
    tree = ast.parse(source, filename)
    aliases = _aliases(tree)
    bad: list[str] = []
    counts = {"torch.load": 0, "numpy.load": 0, "yaml.load": 0}
    where = lambda n: f"{filename}:{n.lineno}"  # noqa: E731
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in PICKLE_MODULES:
                    bad.append(f"{where(node)}: import {a.name}")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PICKLE_MODULES:
            bad.append(f"{where(node)}: from {node.module} import ...")
        elif isinstance(node, (ast.Attribute, ast.Name)) and _resolve(node, aliases) in UNSAFE_YAML:
            bad.append(f"{where(node)}: {_resolve(node, aliases)}")
        if not isinstance(node, ast.Call):
            continue
        fn = _resolve(node.func, aliases)
        if _kw_is(node, "weights_only", False) or _kw_is(node, "allow_pickle", True):
            bad.append(f"{where(node)}: {fn}(...) turns unpickling on")
        if fn == "torch.load":
            counts["torch.load"] += 1
            if not _kw_is(node, "weights_only", True):
                bad.append(f"{where(node)}: torch.load without weights_only=True")
        elif fn == "numpy.load":
            counts["numpy.load"] += 1
            if not _kw_is(node, "allow_pickle", False):
                bad.append(f"{where(node)}: numpy.load without allow_pickle=False")
        elif fn in ("yaml.load", "yaml.load_all"):
            counts["yaml.load"] += 1
            loader = next((k.value for k in node.keywords if k.arg == "Loader"), None)
            if loader is None and len(node.args) > 1:
                loader = node.args[1]
            if loader is None or not _safe_yaml_loader(loader, module):
                bad.append(f"{where(node)}: {fn} without a SafeLoader (use yaml.safe_load)")
        elif fn in ("torch.serialization.load", "pickle.load", "pickle.loads"):
            bad.append(f"{where(node)}: {fn}")
    return bad, counts


def test_static_checker_catches_unsafe_loads():
    """The checker itself: each unsafe pattern is reported (so the scan below can fail)."""
    src = (
        "import torch as th\nimport numpy\nfrom numpy import load as npl\nimport yaml\n"
        "import cloudpickle\nfrom pickle import loads\nfrom torch import load\n"
        "def f(p, kw):\n"
        "    th.load(p)\n    load(p, weights_only=False)\n    th.load(p, **kw)\n"
        "    numpy.load(p)\n    npl(p, allow_pickle=True)\n"
        "    yaml.load(p)\n    yaml.load(p, Loader=yaml.Loader)\n    yaml.unsafe_load(p)\n"
        "    th.load(p, map_location='cpu', weights_only=True)\n    numpy.load(p, allow_pickle=False)\n"
        "    yaml.load(p, Loader=yaml.SafeLoader)\n    yaml.safe_load(p)\n"
    )
    bad, counts = scan_source(src, "x.py")
    text = "\n".join(bad)
    assert counts == {"torch.load": 4, "numpy.load": 3, "yaml.load": 3}
    for line in (9, 10, 11, 12, 13, 14, 15, 16):
        assert f"x.py:{line}:" in text, (line, text)
    assert "import cloudpickle" in text and "from pickle import" in text
    for line in (17, 18, 19, 20):  # the safe forms are not reported
        assert f"x.py:{line}:" not in text, text


def test_dho_never_unpickles():
    files = sorted((REPO / "dho").rglob("*.py"))
    assert len(files) > 20
    bad: list[str] = []
    totals = {"torch.load": 0, "numpy.load": 0, "yaml.load": 0}
    for f in files:
        module = ".".join(f.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        found, counts = scan_source(f.read_text(encoding="utf-8"), str(f.relative_to(REPO)), module)
        bad += found
        totals = {k: totals[k] + counts[k] for k in totals}
    assert bad == []
    # the loaders that matter were seen (checkpoint, teacher file, weights; logits)
    assert totals["torch.load"] >= 3 and totals["numpy.load"] >= 1


# --------------------------------------------------------------------------------------
# Behaviour: a pickled payload is refused, never run
# --------------------------------------------------------------------------------------
class Payload:
    """Unpickling it creates the marker file (stands for arbitrary code)."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (io.open, (self.marker, "w"))


def test_pickled_payload_in_teacher_checkpoint_and_logits_is_refused(tmp_path):
    from dho.models import load_teacher
    from dho.results.heads import load_logits

    marker = tmp_path / "pwned"
    teacher = tmp_path / "teacher.pt"
    torch.save({"kind": "zeroshot", "model": "dho-tiny-clip", "pretrained": "", "classnames": ["a", "b"],
                "text_classifier": torch.zeros(8, 2), "extra": Payload(marker)}, teacher)
    with pytest.raises(CheckpointError, match=r"teacher file .*teacher\.pt cannot be read"):
        load_teacher(teacher, "cpu", expected_classes=2)
    assert not marker.exists()

    logits = tmp_path / "logits_test.npz"
    np.savez(logits, ce=np.array([Payload(marker)], dtype=object), kd=np.zeros((1, 2)), labels=np.zeros(1, int))
    with pytest.raises(CheckpointError, match=r"logits file .*logits_test\.npz"):
        load_logits(logits)
    assert not marker.exists()

    # control: the payload is live, an unsafe load runs it
    torch.load(teacher, weights_only=False)
    assert marker.exists()
    marker.unlink()
    with np.load(logits, allow_pickle=True) as z:
        z["ce"]
    assert marker.exists()


def test_pickled_payload_as_training_checkpoint_is_refused(shapes_root, tmp_path):
    from dho import train
    from dho.spec import RunSpec

    marker = tmp_path / "pwned"
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    torch.save({"spec_hash": "x", "model": Payload(marker)}, run_dir / "checkpoint.pt")
    spec = RunSpec(dataset="shapes", data_root=str(shapes_root), split={"kind": "fewshot", "shots": 1},
                   student="mobilenet_v2", student_pretrained=False, student_kwargs={"image_size": 16}, method="ce",
                   epochs=1, batch_size=4, image_size=16, num_workers=0, device="cpu", progress=False,
                   mlflow_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(CheckpointError, match=r"checkpoint .*checkpoint\.pt is corrupt"):
        train.run_training(spec, run_dir)
    assert not marker.exists()
    assert not (run_dir / "spec.json").exists() and not (tmp_path / "mlflow.db").exists()  # refused before anything


# --------------------------------------------------------------------------------------
# Configuration: no credentials
# --------------------------------------------------------------------------------------
CREDENTIAL_KEY = re.compile(r"pass(word|wd)?$|token|secret|api[_-]?key|access[_-]?key|credential|private[_-]?key",
                            re.I)
URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.I)
TOKEN_VALUE = re.compile(r"\b(ghp_[A-Za-z0-9]{20,}|github_pat_\w{20,}|AKIA[0-9A-Z]{16}|sk-[A-Za-z0-9]{20,}|"
                         r"hf_[A-Za-z0-9]{20,}|xox[abp]-[A-Za-z0-9-]{10,})")


def credentials(node, path: str = "") -> list[str]:
    """Paths of credential-like keys with a value, URLs with a password, token-like strings."""
    found: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            p = f"{path}.{k}" if path else str(k)
            # a number is a setting (VPT's prompt_tokens: 10), never a secret
            if (CREDENTIAL_KEY.search(str(k)) and v not in (None, "", [], {})
                    and not isinstance(v, (dict, bool, int, float))):
                found.append(p)
            found += credentials(v, p)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += credentials(v, f"{path}[{i}]")
    elif isinstance(node, str) and (URL_WITH_PASSWORD.search(node) or TOKEN_VALUE.search(node)):
        found.append(path)
    return found


def test_credential_check_finds_them():
    cfg = {"mlflow_uri": "http://bob:hunter2@10.0.0.5:5000", "slurm": {"api_token": "abc", "account": "x"},
           "db": {"password": "pw", "token": None}, "env": ["HF=hf_" + "a" * 30], "ok": "postgresql://mlflow@db/x",
           "vpt": {"prompt_tokens": 10}}
    assert sorted(credentials(cfg)) == ["db.password", "env[0]", "mlflow_uri", "slurm.api_token"]


def test_config_files_hold_no_credentials():
    files = [REPO / "config.yaml", *sorted((REPO / "slurm").glob("*.yaml")),
             *sorted((REPO / "profiles").rglob("*.yaml")), *sorted((REPO / "envs").glob("*.yaml"))]
    assert REPO / "config.yaml" in files and len(files) >= 3
    for f in files:
        assert credentials(yaml.safe_load(f.read_text())) == [], f


# --------------------------------------------------------------------------------------
# `dho mlflow-server` binds to loopback unless told otherwise
# --------------------------------------------------------------------------------------
def test_mlflow_server_defaults_to_loopback():
    from dho.cli import build_parser

    args = build_parser().parse_args(["mlflow-server"])
    assert args.host == "127.0.0.1" and args.func is mlflow_server._cmd_server
    cmd = mlflow_server.server_command(args.host, args.port, args.backend_store_uri, args.artifacts_destination,
                                       args.workers, args.allowed_hosts)
    assert cmd[1:4] == ["-m", "mlflow", "server"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd.count("--host") == 1
    assert "--disable-security-middleware" not in cmd and "--allowed-hosts" not in cmd
    assert cmd[cmd.index("--backend-store-uri") + 1] == "sqlite:///results/mlflow.db"
    assert mlflow_server.server_uri(args.host, args.port) == "http://127.0.0.1:5000"
    assert mlflow_server.exposure_warning(args.host) is None
    env = mlflow_server.server_env({})
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false" and env["MLFLOW_DISABLE_TELEMETRY"] == "true"

    other = build_parser().parse_args(["mlflow-server", "--host", "10.1.2.3", "--port", "5001"])
    assert mlflow_server.server_command(other.host, other.port)[4:6] == ["--host", "10.1.2.3"]
    assert "private address" in mlflow_server.exposure_warning("10.1.2.3")
    assert "private address" in mlflow_server.exposure_warning("0.0.0.0")
    assert mlflow_server.exposure_warning("localhost") is None and mlflow_server.exposure_warning("::1") is None
