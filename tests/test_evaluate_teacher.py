"""Zero-shot references of Table 17 (`dho evaluate-teacher`): a tiny open_clip teacher made
on fake ImageNet / ImageNet-V2 / ImageNet-A layouts, scored class-subset aware and checked
against a direct computation; its records through collect-evals into the paper-layout
table17; the suite compiler's teacher jobs and its refusal of a bad `evaluate.teachers`."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

torch.set_num_threads(1)

from dho import cli, evaluate  # noqa: E402
from dho.errors import ConfigError  # noqa: E402
from dho.results import evals as ev  # noqa: E402
from dho.results.paper import evals_as_runs, get_layout, paper_cells  # noqa: E402
from dho.results.reported import load_reported  # noqa: E402
from fake_datasets import make_fake_dataset  # noqa: E402
from tiny_clip import make_tiny_clip  # noqa: E402

N_CLASSES = 6
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Fake ImageNet / -V2 / -A (A: even classes only) and a tiny zero-shot teacher file per set."""
    from dho.data import get_dataset
    from dho.models import build_zeroshot_teacher, save_teacher

    base = tmp_path_factory.mktemp("evaluate_teacher")
    root = base / "data"
    for seed, name in enumerate(("imagenet", "imagenet_v2", "imagenet_a")):
        make_fake_dataset(name, root, num_classes=N_CLASSES, per_class=(1, 1, 5), size=16, seed=seed)
    weights = make_tiny_clip(base, "dho-test-zs-clip16", image_size=16)
    teachers = {}
    for name in ("imagenet", "imagenet_v2", "imagenet_a"):
        source = get_dataset(name, root)
        teacher = build_zeroshot_teacher("dho-test-zs-clip16", str(weights), source.classnames,
                                         source.prompt_templates(), progress=False)
        if source.class_subset is not None:  # class 1 (not in ImageNet-A) made the arg-max of every image
            teacher.text_classifier[:, 1] = _mean_feature(teacher, source)
        teachers[name] = base / f"{name}.pt"
        save_teacher(teacher, teachers[name])
    return {"root": root, "teachers": teachers}


def _mean_feature(teacher, source) -> torch.Tensor:
    from dho.data import ImageList, eval_transform

    images = ImageList(source, source.items("test"), eval_transform(teacher.image_size))
    f = teacher.encode(torch.stack([images[i][0] for i in range(len(images))])).mean(0)
    return f / f.norm()


def direct(tiny, dataset: str) -> tuple[np.ndarray, np.ndarray, list[int] | None]:
    """The teacher's logits on ``dataset``'s test images, computed here, and the labels."""
    from dho.data import ImageList, eval_transform, get_dataset
    from dho.models.teachers import load_teacher

    source = get_dataset(dataset, tiny["root"])
    teacher = load_teacher(tiny["teachers"][dataset], "cpu")
    items = source.items("test")
    images = ImageList(source, items, eval_transform(teacher.image_size))
    with torch.no_grad():
        logits = teacher(torch.stack([images[i][0] for i in range(len(items))])).double().numpy()
    return logits, np.array([y for _, y in items]), source.class_subset


def test_subset_argmax_ignores_classes_outside_the_subset():
    logits = torch.tensor([[0.0, 9.0, 1.0, 2.0], [5.0, 0.0, 1.0, 7.0]])
    assert evaluate.subset_argmax(logits).tolist() == [1, 3]
    assert evaluate.subset_argmax(logits, [0, 2]).tolist() == [2, 0]


@pytest.mark.parametrize("dataset", ["imagenet", "imagenet_v2", "imagenet_a"])
def test_cli_evaluate_teacher_matches_direct_computation(tiny, tmp_path, dataset, capsys):
    out = tmp_path / f"{dataset}.json"
    rc = cli.main(["evaluate-teacher", "--teacher", str(tiny["teachers"][dataset]), "--name", "clip_vit_b16",
                   "--dataset", dataset, "--root", str(tiny["root"]), "--device", "cpu", "--num-workers", "0",
                   "--batch-size", "4", "--out", str(out), "--quiet"])
    assert rc == 0, capsys.readouterr().err
    rec = json.loads(out.read_text())
    logits, y, subset = direct(tiny, dataset)
    cols = np.arange(N_CLASSES) if subset is None else np.asarray(subset)
    expected = 100.0 * np.mean(cols[logits[:, cols].argmax(1)] == y)
    assert rec["test_acc"] == pytest.approx(expected) and rec["source_test_acc"] == rec["test_acc"]
    assert rec["n_images"] == len(y) and rec["n_classes"] == len(cols)
    assert (rec["method"], rec["labels"], rec["student"], rec["teacher"]) == (
        "zero-shot", "zero-shot", "clip_vit_b16", "clip_vit_b16")
    assert rec["dataset"] == rec["eval_dataset"] == dataset and rec["alpha"] is None
    if subset is not None:
        assert subset == [0, 2, 4] and rec["n_classes"] == 3
        assert (logits.argmax(1) == 1).all() and rec["test_acc"] > 0  # scored over the subset only


def test_teacher_of_another_class_list_is_refused(tiny, tmp_path):
    make_fake_dataset("imagenet_sketch", tmp_path, num_classes=N_CLASSES + 1, per_class=(0, 0, 1), size=16)
    with pytest.raises(Exception, match="class"):
        evaluate.evaluate_teacher(tiny["teachers"]["imagenet"], "x", "imagenet_sketch", tmp_path, device="cpu",
                                  num_workers=0, progress=False)


def test_records_fill_the_zero_shot_rows_of_table17(tiny, tmp_path):
    """Real records for three datasets (+ a trained run's record) -> evals.csv -> table17 cells."""
    folder = tmp_path / "evals"
    accs = {}
    for dataset in ("imagenet", "imagenet_v2", "imagenet_a"):
        rec = evaluate.evaluate_teacher(tiny["teachers"][dataset], "clip_vit_b16", dataset, tiny["root"],
                                        device="cpu", num_workers=0, progress=False)
        accs[dataset] = rec["test_acc"]
        (folder / dataset / "zero-shot").mkdir(parents=True)
        (folder / dataset / "zero-shot" / "clip_vit_b16.json").write_text(json.dumps(rec))
    run = dict(status="complete", suite="table3", dataset="imagenet", labels="1pct", split=None,
               student="clip_vit_b16", teacher="dfn", method="dho", seed=1, spec_hash="h1",
               eval_dataset="imagenet_v2", test_acc=70.0, test_acc_ce=69.0, test_acc_kd=68.0, n_images=5,
               n_classes=6, alpha=0.5, beta=1.0, source_test_acc=80.0)
    (folder / "imagenet_v2" / "run.json").write_text(json.dumps(run))
    csv = tmp_path / "evals.csv"
    assert cli.main(["collect-evals", "--suite", "table17_dfn", "--evals-root", str(folder), "--out", str(csv)]) == 0
    cells = paper_cells(get_layout("table17"), evals_as_runs(ev.read_evals_csv(csv)), load_reported())
    zs = cells[cells["row"] == "CLIP ViT-B/16 zero-shot"].set_index("column")
    for column, dataset, reported in (("Val", "imagenet", 66.7), ("V2", "imagenet_v2", 60.8),
                                      ("A", "imagenet_a", 47.0)):
        assert zs.loc[column, "reproduced"] == pytest.approx(accs[dataset], abs=1e-4)
        assert (zs.loc[column, "n"], zs.loc[column, "reported"], zs.loc[column, "status"]) == (1, reported, "ok")
    assert zs.loc["Sketch", "status"] == "missing"
    assert cells[cells["row"] == "CLIP ViT-L/14 zero-shot"]["status"].eq("missing").all()
    trained = cells[(cells["block"] == "ViT-B/16 student") & (cells["row"] == "1 %, ViT-H/14 teacher")]
    trained = trained.set_index("column")
    assert (trained.loc["Val", "reproduced"], trained.loc["Val", "n"]) == (80.0, 1)
    assert trained.loc["V2", "reproduced"] == 70.0
    # the OOD table of the suite still renders with the zero-shot rows (no heads, no alpha/beta)
    assert cli.main(["ood-tables", "--evals", str(csv), "--out-dir", str(tmp_path / "tables")]) == 0
    ood = pd.read_csv(tmp_path / "tables" / "ood.csv")
    assert set(ood["method"]) == {"zero-shot", "dho"}


# -- the suite compiler ------------------------------------------------------------------
def _workflow(edit=None):
    from dho.suite import Workflow

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config = copy.deepcopy(config)
    config["suite"] = "table17_dfn"
    if edit:
        edit(config["suites"]["table17_dfn"])
    return Workflow(config, REPO / "workflow/schemas/config.schema.yaml")


def test_compiler_lists_the_zero_shot_teacher_jobs_and_records():
    suite = _workflow().suite("table17_dfn")
    datasets = ["imagenet", "imagenet_v2", "imagenet_sketch", "imagenet_r", "imagenet_a"]
    assert suite.teacher_eval_datasets() == datasets
    jobs = suite.teacher_jobs()
    assert {(j.teacher, j.dataset) for j in jobs} == {(t, d) for t in ("clip_vit_b16", "clip_vit_l14", "dfn")
                                                      for d in datasets}
    jsons = [p for p in suite.eval_jsons() if "/zero-shot/" in p]
    assert len(jsons) == 15 and f"{suite.dir}/evals/imagenet_a/zero-shot/dfn.json" in jsons
    settings = suite.settings()
    assert settings["teachers/imagenet_r/clip_vit_l14"][:6] == ["teacher", "zeroshot", "--dataset", "imagenet_r",
                                                                "--root", "data"]


@pytest.mark.parametrize("edit, match", [
    (lambda s: s["evaluate"].update(teachers=["nosuch"]), "'nosuch' is not a zeroshot teacher"),
    (lambda s: s["teachers"]["dfn"].pop("model"), "needs 'model' and 'pretrained'"),
])
def test_bad_evaluate_teachers_is_a_config_error(edit, match):
    with pytest.raises(ConfigError, match=match):
        _workflow(edit).suite("table17_dfn").eval_jsons()
