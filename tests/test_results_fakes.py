"""Fake run directories honouring the metrics.json contract (docs/DESIGN.md, "One run").

Shared by the tests of ``dho.results``; the test below checks that the fakes carry
exactly the contract keys, so a contract change shows up here first.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from dho.rundir import METRICS_KEYS, REQUIRED_KEYS, inspect_run


def fake_hash(*parts) -> str:
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def contract_metrics(spec: dict, spec_hash: str, *, test_acc: float = 70.0, **overrides) -> dict:
    """A complete metrics.json with every contract key (``overrides`` replace values)."""
    metrics = {
        "status": "complete", "spec_hash": spec_hash, "spec": spec, "dataset": "caltech101", "labels": "4shot",
        "student": "resnet18", "teacher": "zs_rn50", "method": "dho", "method_args": {}, "seed": 1,
        "test_acc": test_acc, "test_acc_ce": test_acc - 1, "test_acc_kd": test_acc - 2,
        "val_acc": test_acc + 1, "alpha": 0.5, "beta": 1.0, "best_epoch": 3, "epochs": 5,
        "teacher_test_acc": 60.0, "grad_cosine_mean": None, "wall_time_s": 12.5,
        "images_per_s": 100.0, "gpu_hours": 0.01, "device": "cpu", "git_commit": None,
        "mlflow_run_id": None, "slurm_job_id": None,
    }
    metrics.update(overrides)
    return metrics


def make_run(root: Path, name: str | None = None, *, dataset="caltech101", labels="4shot",
             student="resnet18", teacher="zs_rn50", method="dho", seed=1, test_acc=70.0,
             teacher_test_acc: float | None = 60.0, status="complete", spec_hash=None,
             logits: tuple[int, int] | None = None, cosine: list[tuple[int, float]] | None = None,
             **overrides) -> Path:
    """Write a run directory under ``root``; ``logits=(n, classes)`` adds random val/test npz."""
    spec_hash = spec_hash or fake_hash(dataset, labels, student, teacher, method, seed)
    run_dir = Path(root) / (name or f"{dataset}-{labels}-{student}-{teacher}-{method}-s{seed}")
    run_dir.mkdir(parents=True, exist_ok=True)
    spec = {"dataset": dataset, "method": method, "seed": seed,
            "split": {"kind": "fewshot", "shots": int(labels[:-4])} if labels.endswith("shot")
            else {"kind": "percent", "percent": float(labels[:-3])}}
    metrics = contract_metrics(spec, spec_hash, status=status, dataset=dataset, labels=labels, student=student,
                               teacher=teacher, method=method, seed=seed, test_acc=test_acc,
                               teacher_test_acc=teacher_test_acc, **overrides)
    (run_dir / "spec.json").write_text(json.dumps({"spec": spec, "spec_hash": spec_hash}))
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    if logits is not None:
        rng = np.random.default_rng(int(spec_hash, 16) % 2**32)
        n, classes = logits
        for split in ("val", "test"):
            labels_arr = rng.integers(0, classes, n)
            ce = rng.normal(size=(n, classes)) + 1.5 * np.eye(classes)[labels_arr]
            kd = rng.normal(size=(n, classes)) * 3 + 2.0 * np.eye(classes)[labels_arr]
            np.savez(run_dir / f"logits_{split}.npz", ce=ce.astype(np.float32),
                     kd=kd.astype(np.float32), labels=labels_arr.astype(np.int64))
    if cosine is not None:
        lines = ["step,cosine"] + [f"{s},{c}" for s, c in cosine]
        (run_dir / "grad_cosine.csv").write_text("\n".join(lines) + "\n")
    return run_dir


def test_fake_run_has_exactly_the_contract_keys(tmp_path):
    run_dir = make_run(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(REQUIRED_KEYS) <= set(metrics) <= set(METRICS_KEYS)  # older runs lack the optional keys
    assert inspect_run(run_dir).done
