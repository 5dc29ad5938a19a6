"""Protocol 3 end to end on tiny fakes: a real tiny training run on a fake ImageNet (4
classes), `dho evaluate` on fake ImageNet-V2 and ImageNet-A (class_subset) layouts checked
against a direct computation, evals.csv and the OOD table, the workflow's rules, and the
bad inputs (class-count mismatch, unfinished run, broken files)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

torch.set_num_threads(1)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

from conftest import snakemake  # noqa: E402
from dho import cli, evaluate  # noqa: E402
from dho.errors import CheckpointError, ConfigError, DataError  # noqa: E402
from dho.results import evals as ev  # noqa: E402
from fake_datasets import make_fake_dataset  # noqa: E402

N_CLASSES = 4
TAGS = {"suite": "src", "dataset": "imagenet", "labels": "2shot", "student": "resnet18", "teacher": "zs",
        "method": "dho", "seed": "1"}
RUN_REL = "imagenet/2shot/resnet18/zs/dho/seed1"


class NoTracking:
    """Stands in for dho.tracking.RunTracker: MLflow is not what these tests are about (a
    fresh sqlite store costs ~10 s of schema creation)."""

    def __init__(self, spec, run_dir, *args, **kwargs):
        pass

    def start(self, tags=None):
        return None

    def log_epoch(self, row):
        pass

    def log_grad_cosines(self, points):
        pass

    def finish(self, metrics, status="FINISHED"):
        pass


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Fake ImageNet + OOD sets under one root, a tiny zero-shot teacher and one finished
    DHO run (two heads) trained on the fake ImageNet.  ImageNet's val is its test set, so the
    run follows the protocol (dho.protocol): a fixed (alpha, beta), not the defaults so that
    an evaluation falling back to them would show, and the last epoch."""
    from dho.data import get_dataset
    from dho.data.splits import make_split
    from dho.models import build_zeroshot_teacher, save_teacher
    from dho.models.clip import create_clip
    from dho.spec import RunSpec
    from dho.train import run_training

    base = tmp_path_factory.mktemp("evaluate")
    root = base / "data"
    make_fake_dataset("imagenet", root, num_classes=N_CLASSES, per_class=(4, 3, 3), size=16, seed=0)
    make_fake_dataset("imagenet_v2", root, num_classes=N_CLASSES, per_class=(0, 0, 4), size=16, seed=1)
    make_fake_dataset("imagenet_a", root, num_classes=N_CLASSES, per_class=(0, 0, 4), size=16, seed=2)
    make_fake_dataset("imagenet_sketch", root, num_classes=N_CLASSES + 1, per_class=(0, 0, 2), size=16, seed=3)
    source = get_dataset("imagenet", root)
    torch.manual_seed(0)
    weights = base / "tiny_clip.pt"
    torch.save(create_clip("dho-tiny-clip", None).state_dict(), weights)
    teacher = build_zeroshot_teacher("dho-tiny-clip", str(weights), source.classnames, source.templates[:1],
                                     progress=False)
    save_teacher(teacher, base / "teacher.pt")
    split = {"kind": "fewshot", "shots": 2}
    make_split(source, split, 1).save(base / "split.json")
    spec = RunSpec(dataset="imagenet", data_root=str(root), split=split, split_manifest=str(base / "split.json"),
                   student="resnet18", student_pretrained=False, student_kwargs={"image_size": 32, "width": 8},
                   teacher_file=str(base / "teacher.pt"), method="dho", alpha_beta="fixed", alpha=0.3, beta=2.0,
                   epoch_select="last", lr=0.01, epochs=4, batch_size=4,
                   unlabeled_batch_size=4, image_size=16, num_workers=0, grad_cosine_every=0, progress=False,
                   device="cpu", tags=dict(TAGS))
    run_dir = base / "results/src/runs" / RUN_REL
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("dho.tracking.RunTracker", NoTracking)
        metrics = run_training(spec, run_dir)
    return {"base": base, "root": root, "run_dir": run_dir, "metrics": metrics, "spec": spec}


def direct_logits(tiny, dataset: str):
    """Both heads' logits on ``dataset``'s test split, computed here from the checkpoint."""
    from dho.data import ImageList, eval_transform, get_dataset
    from dho.models import build_student

    ckpt = torch.load(tiny["run_dir"] / "checkpoint.pt", map_location="cpu", weights_only=True)
    student = build_student("resnet18", N_CLASSES, heads=2, pretrained=False, image_size=32, width=8)
    student.load_state_dict(ckpt["best"]["state"])
    student.eval()
    source = get_dataset(dataset, tiny["root"])
    items = source.items("test")
    x = torch.stack([ImageList(source, items, eval_transform(16))[i][0] for i in range(len(items))])
    with torch.no_grad():
        out = student(x)
    return out.ce.double().numpy(), out.kd.double().numpy(), np.array([y for _, y in items]), source.class_subset


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def expected_accuracies(ce, kd, y, alpha, beta, subset=None):
    cols = np.arange(ce.shape[1]) if subset is None else np.asarray(subset)
    ce, kd = ce[:, cols], kd[:, cols]
    p = alpha * softmax(ce) + (1 - alpha) * softmax(kd / beta)
    return tuple(100.0 * np.mean(cols[s.argmax(1)] == y) for s in (p, ce, kd))


# --------------------------------------------------------------------------------------
def test_own_test_split_reproduces_the_runs_metrics(tiny):
    m = tiny["metrics"]
    rec = evaluate.evaluate_run(tiny["run_dir"], "imagenet", tiny["root"], device="cpu", progress=False)
    assert (rec["test_acc"], rec["test_acc_ce"], rec["test_acc_kd"]) == (m["test_acc"], m["test_acc_ce"],
                                                                        m["test_acc_kd"])
    assert rec["n_images"] == N_CLASSES * 3 and rec["n_classes"] == N_CLASSES
    assert (rec["alpha"], rec["beta"]) == (m["alpha"], m["beta"])


@pytest.mark.parametrize("dataset", ["imagenet_v2", "imagenet_a"])
def test_cli_evaluate_matches_direct_computation(tiny, tmp_path, dataset, capsys):
    out = tmp_path / f"{dataset}.json"
    rc = cli.main(["evaluate", "--run-dir", str(tiny["run_dir"]), "--dataset", dataset, "--root", str(tiny["root"]),
                   "--out", str(out), "--device", "cpu", "--batch-size", "3", "--quiet"])
    assert rc == 0 and f"{dataset} test_acc" in capsys.readouterr().out
    rec = json.loads(out.read_text())
    assert set(evaluate.EVAL_KEYS) <= set(rec)
    m = tiny["metrics"]
    for key in ("dataset", "labels", "student", "teacher", "method", "seed", "spec_hash", "alpha", "beta"):
        assert rec[key] == m[key], key
    assert rec["suite"] == "src" and rec["eval_dataset"] == dataset and rec["source_test_acc"] == m["test_acc"]
    ce, kd, y, subset = direct_logits(tiny, dataset)
    if dataset == "imagenet_a":
        assert subset == [0, 2] and rec["n_classes"] == 2 and set(y) == {0, 2}
    else:
        assert subset is None and rec["n_classes"] == N_CLASSES
    assert rec["n_images"] == len(y)
    want = expected_accuracies(ce, kd, y, m["alpha"], m["beta"], subset)
    assert [rec["test_acc"], rec["test_acc_ce"], rec["test_acc_kd"]] == pytest.approx(want, abs=1e-9)
    if subset is not None:  # the restriction matters here: the KD head prefers a class outside the subset
        assert expected_accuracies(ce, kd, y, m["alpha"], m["beta"])[2] < want[2]


def test_class_subset_restricts_logits_before_combining():
    # class 1 wins over all 4 classes, but is not in the subset {0, 2}: 2 must be predicted
    ce = torch.tensor([[0.0, 9.0, 1.0, 0.0], [3.0, 9.0, 1.0, 0.0]])
    kd = torch.tensor([[0.0, 9.0, 2.0, 0.0], [0.0, 9.0, 2.5, 0.0]])
    full = evaluate.predictions(ce, kd, 0.5, 1.0)
    assert [p.tolist() for p in full] == [[1, 1], [1, 1], [1, 1]]
    comb, p_ce, p_kd = evaluate.predictions(ce, kd, 0.5, 1.0, [0, 2])
    assert p_ce.tolist() == [2, 0] and p_kd.tolist() == [2, 2]
    # row 2 combined over the subset: softmax([3, 1]) vs softmax([0, 2.5]) -> class 2 by a hair
    sub_ce, sub_kd = np.array([[0.0, 1.0], [3.0, 1.0]]), np.array([[0.0, 2.0], [0.0, 2.5]])
    p = 0.5 * softmax(sub_ce) + 0.5 * softmax(sub_kd)
    assert comb.tolist() == [[0, 2][i] for i in p.argmax(1)] == [2, 2]


# --------------------------------------------------------------------------------------
def test_class_count_mismatch_is_a_config_error(tiny, tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"'imagenet_sketch' has 5 classes .* 4 classes"):
        evaluate.evaluate_run(tiny["run_dir"], "imagenet_sketch", tiny["root"], device="cpu", progress=False)
    out = tmp_path / "x.json"
    rc = cli.main(["evaluate", "--run-dir", str(tiny["run_dir"]), "--dataset", "imagenet_sketch",
                   "--root", str(tiny["root"]), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and not out.exists()


def _copy_run(tiny, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(tiny["run_dir"], run)
    return run


@pytest.mark.parametrize("damage, error, match", [
    ("no_metrics", DataError, r"is not a finished run directory: no metrics.json"),
    ("running", DataError, r"status is 'running', not 'complete'"),
    ("truncated_metrics", DataError, r"metrics.json is not valid JSON"),
    ("missing_key", DataError, r"lacks contract key\(s\) alpha"),
    ("stale_spec", DataError, r"spec.json: spec hash .* differs"),
    ("corrupt_checkpoint", CheckpointError, r"checkpoint.pt is corrupt or truncated"),
    ("no_checkpoint", CheckpointError, r"checkpoint not found"),
    ("unknown_dataset", ConfigError, r"unknown dataset 'imagenet_z'"),
    ("missing_dataset", DataError, r"dataset 'imagenet_r' not found"),
    ("batch_size", ConfigError, r"--batch-size = 0: expected an integer >= 1"),
])
def test_bad_inputs(tiny, tmp_path, damage, error, match):
    run = _copy_run(tiny, tmp_path)
    dataset = {"unknown_dataset": "imagenet_z", "missing_dataset": "imagenet_r"}.get(damage, "imagenet_v2")
    metrics = run / "metrics.json"
    if damage == "no_metrics":
        metrics.unlink()
    elif damage == "running":
        metrics.write_text(json.dumps({**tiny["metrics"], "status": "running"}))
    elif damage == "truncated_metrics":
        metrics.write_text(metrics.read_text()[:40])
    elif damage == "missing_key":
        metrics.write_text(json.dumps({k: v for k, v in tiny["metrics"].items() if k != "alpha"}))
    elif damage == "stale_spec":
        spec = json.loads((run / "spec.json").read_text())
        spec.pop("spec_hash")
        spec["seed"] = 7  # another spec now lives in the run directory
        (run / "spec.json").write_text(json.dumps(spec))
    elif damage == "corrupt_checkpoint":
        data = (run / "checkpoint.pt").read_bytes()
        (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    elif damage == "no_checkpoint":
        (run / "checkpoint.pt").unlink()
    with pytest.raises(error, match=match):
        evaluate.evaluate_run(run, dataset, tiny["root"], device="cpu", progress=False,
                              batch_size=0 if damage == "batch_size" else None)


# --------------------------------------------------------------------------------------
def _fake_record(rec: dict, seed: int, delta: float) -> dict:
    return {**rec, "seed": seed, "spec_hash": f"{rec['spec_hash']}-{seed}", "test_acc": rec["test_acc"] + delta,
            "source_test_acc": rec["source_test_acc"] + delta}


def test_collect_evals_and_ood_table(tiny, tmp_path, capsys):
    """Two real evaluations + copies as a second seed and as a CE run -> evals.csv -> ood.*"""
    root = tmp_path / "evals"
    recs = {}
    for d in ("imagenet_v2", "imagenet_a"):
        recs[d] = evaluate.evaluate_run(tiny["run_dir"], d, tiny["root"], device="cpu", progress=False)
        (root / d).mkdir(parents=True)
        (root / d / "seed1.json").write_text(json.dumps(recs[d]))
        (root / d / "seed2.json").write_text(json.dumps(_fake_record(recs[d], 2, 10.0)))
        ce = {**recs[d], "method": "ce", "teacher": "none", "spec_hash": "cehash", "test_acc": 1.0}
        (root / d / "ce.json").write_text(json.dumps(ce))
    (root / "imagenet_v2" / "copy.json").write_text(json.dumps(recs["imagenet_v2"]))  # a duplicate
    out = tmp_path / "evals.csv"
    assert cli.main(["collect-evals", "--suite", "ood", "--evals-root", str(root), "--out", str(out)]) == 0
    assert "warning: evaluation of spec" in capsys.readouterr().err
    df = ev.read_evals_csv(out)
    assert len(df) == 6 and list(df.columns) == list(ev.EVALS_COLUMNS)
    assert set(df["suite"]) == {"ood"} and set(df["from_suite"]) == {"src"} and set(df["label_count"]) == {2.0}
    dho = df[df["method"] == "dho"]
    assert sorted(dho["seed"]) == [1, 1, 2, 2]

    tables = tmp_path / "tables"
    assert cli.main(["ood-tables", "--evals", str(out), "--out-dir", str(tables)]) == 0
    cells = pd.read_csv(tables / "ood.csv")
    row = cells[cells["method"] == "dho"].set_index("column")
    v2, a = recs["imagenet_v2"]["test_acc"], recs["imagenet_a"]["test_acc"]
    assert row.loc["imagenet_v2", "mean"] == pytest.approx(v2 + 5.0, abs=1e-4)
    assert row.loc["imagenet_v2", "std"] == pytest.approx(np.std([v2, v2 + 10], ddof=1), abs=1e-4)
    assert row.loc["imagenet_a", "n"] == 2
    assert row.loc["OOD avg", "mean"] == pytest.approx((v2 + a) / 2 + 5.0, abs=1e-4)
    src = recs["imagenet_v2"]["source_test_acc"]
    assert row.loc["imagenet (ID)", "mean"] == pytest.approx(src + 5.0, abs=1e-4)
    assert list(row.index) == ["imagenet (ID)", "imagenet_v2", "imagenet_a", "OOD avg"]
    ce_row = cells[cells["method"] == "ce"].set_index("column")
    assert ce_row.loc["OOD avg", "mean"] == 1.0 and ce_row.loc["OOD avg", "n"] == 1
    assert bool(row.loc["OOD avg", "best"]) and not bool(ce_row.loc["OOD avg", "best"])
    md = (tables / "ood.md").read_text()
    header = next(ln for ln in md.splitlines() if ln.startswith("|"))
    assert [c.strip() for c in header.strip("|").split("|")][-4:] == [
        "ImageNet (ID)", "ImageNet-V2", "ImageNet-A", "OOD avg"]
    assert f"**{(v2 + a) / 2 + 5.0:.1f} ± " in md
    tex = (tables / "ood.tex").read_text()
    assert "\\toprule" in tex and "ImageNet-V2" in tex and "$\\pm$" in tex


def test_collect_evals_bad_record_names_the_file(tmp_path, capsys):
    (tmp_path / "evals").mkdir()
    bad = tmp_path / "evals" / "bad.json"
    bad.write_text('{"status": "complete", "test_acc": 3}')
    with pytest.raises(DataError, match=r"bad.json lacks key\(s\)"):
        ev.collect_evals([bad])
    rc = cli.main(["collect-evals", "--evals-root", str(tmp_path / "evals"), "--out", str(tmp_path / "e.csv")])
    assert rc == 2 and "bad.json" in capsys.readouterr().err and not (tmp_path / "e.csv").exists()
    with pytest.raises(DataError, match="nothing to tabulate"):
        ev.ood_cells(ev.collect_evals([]))


# --------------------------------------------------------------------------------------
def _tiny_suites(workdir: Path, root: Path) -> None:
    import yaml

    cfg = yaml.safe_load((workdir / "config.yaml").read_text())
    cfg["suites"]["src"] = {
        "data_root": str(root), "datasets": ["imagenet"], "labels": {"shots": [2]},
        "students": {"resnet18": {"pretrained": False, "kwargs": {"image_size": 32, "width": 8}}},
        "teachers": {"zs": {"kind": "zeroshot", "model": "dho-tiny-clip", "pretrained": "demo"}},
        "methods": {"dho": {}}, "seeds": [1],
        "train": {"epochs": 2, "image_size": 16, "device": "cpu", "num_workers": 0,
                  "alpha_beta": "fixed", "alpha": 0.3, "beta": 2.0, "epoch_select": "last"}}
    cfg["suites"]["tinyood"] = {
        "data_root": str(root), "evaluate": {"from": "src", "datasets": ["imagenet_a"]},
        "resources": {"default": {"gpus": 0, "cpus": 1, "mem_gb": 1, "time_min": 5}}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))


def test_workflow_evaluates_every_run_and_builds_the_table(tiny, workdir, env):
    """Dry run of `ood` (every imagenet_semi run x 4 OOD sets, after its training), then a
    real run of a tiny evaluation suite over the finished fake run."""
    from dho.data import get_dataset

    p = snakemake(["-n", "--config", "suite=ood"], workdir, env, check=True)
    ood_jobs = p.stdout.count("rule evaluate:")
    assert ood_jobs == 4 * 12 and p.stdout.count("rule train:") == 12
    assert "results/ood/evals/imagenet_a/imagenet_semi/imagenet/1pct/clip_vit_l14_336/dfn/dho/seed1.json" in p.stdout
    assert "results/imagenet_semi/runs/imagenet/10pct/clip_vit_b16/none/ce/seed1/metrics.json" in p.stdout
    _tiny_suites(workdir, tiny["root"])
    shutil.copytree(tiny["run_dir"], workdir / "results/src/runs" / RUN_REL)
    # what rule data_check writes (saves a subprocess: the check itself is tested elsewhere)
    report = get_dataset("imagenet_a", tiny["root"]).check(sample=2).to_dict()
    assert report["ok"]
    check = workdir / "results/tinyood/checks/imagenet_a.json"
    check.parent.mkdir(parents=True)
    check.write_text(json.dumps({"root": str(tiny["root"]), "ok": True, "datasets": [report]}))
    snakemake(["--cores", "1", "--config", "suite=tinyood", "--allowed-rules", "evaluate", "collect_evals",
               "ood_tables", "all"], workdir, env, check=True, timeout=300)
    res = workdir / "results/tinyood"
    df = ev.read_evals_csv(res / "evals.csv")
    assert list(df["eval_dataset"]) == ["imagenet_a"] and list(df["suite"]) == ["tinyood"]
    rec = json.loads((res / "evals/imagenet_a/src" / f"{RUN_REL}.json").read_text())
    ce, kd, y, subset = direct_logits(tiny, "imagenet_a")
    want = expected_accuracies(ce, kd, y, rec["alpha"], rec["beta"], subset)
    assert [rec["test_acc"], rec["test_acc_ce"], rec["test_acc_kd"]] == pytest.approx(want, abs=1e-9)
    assert df.loc[0, "test_acc"] == pytest.approx(want[0], abs=1e-6)
    cells = pd.read_csv(res / "tables/ood.csv").set_index("column")
    assert cells.loc["imagenet_a", "mean"] == pytest.approx(want[0], abs=1e-4)
    assert cells.loc["OOD avg", "mean"] == pytest.approx(want[0], abs=1e-4)
    assert "OOD avg" in (res / "tables/ood.md").read_text() and (res / "tables/ood.tex").is_file()
