"""dho.results.paper: the appendix tables (13-16, 18, 19) from small hand-made runs and the packaged
reported numbers."""

from __future__ import annotations

import numpy as np
import pytest

from dho.inference import accuracy, combine_heads_entropy
from dho.results.collect import collect_runs
from dho.results.heads import load_logits
from dho.results.paper import EIGHT, FINE_GRAINED, cell_text, get_layout, paper_cells
from dho.results.reported import load_reported
from test_results_fakes import make_run


@pytest.fixture(scope="module")
def reported():
    return load_reported()


def _cells(name, root, reported):
    return paper_cells(get_layout(name), collect_runs(root, name), reported).set_index(["row", "column"])


def test_eight_datasets_are_the_ten_without_food_and_sun():
    assert set(FINE_GRAINED) - set(EIGHT) == {"food101", "sun397"} and len(EIGHT) == 8


def test_table13_average_of_eight_datasets(tmp_path, reported):
    root = tmp_path / "runs"
    for i, d in enumerate(EIGHT):
        make_run(root, dataset=d, labels="1shot", student="resnet18", teacher="zs", method="pcgrad", test_acc=50.0 + i)
    # Food101 is not one of Table 13's datasets: its run does not move the average
    make_run(root, dataset="food101", labels="1shot", student="resnet18", teacher="zs", method="pcgrad", test_acc=0.0)
    for d in EIGHT[:-1]:  # one dataset short: no average
        make_run(root, dataset=d, labels="1shot", student="resnet18", teacher="zs", method="kd", test_acc=40.0)
    cells = _cells("table13", root, reported)
    pc = cells.loc[("PCGrad", "1-shot")]
    assert pc["reproduced"] == pytest.approx(53.5) and pc["n"] == 8 and pc["reported"] == 56.8
    assert cell_text(pc) == "53.5 (56.8, -3.3)"
    kd = cells.loc[("CE+KD (logit)", "1-shot")]
    assert kd["status"] == "missing" and kd["reported"] == 56.2
    assert cells.loc[("DHO", "16-shot"), "reported"] == 79.1
    assert list(dict.fromkeys(r for r, _ in cells.index)) == ["CE+KD (logit)", "PCGrad", "DHO"]


def test_table14_imagenet_rows(tmp_path, reported):
    root = tmp_path / "runs"
    make_run(root, dataset="imagenet", labels="1shot", student="resnet18_scratch", teacher="zs", method="dkd_dho",
             test_acc=45.0)
    make_run(root, dataset="imagenet", labels="1shot", student="dino_resnet50", teacher="zs", method="dkd_dho",
             test_acc=60.0)  # another student: not Table 14's
    cells = _cells("table14", root, reported)
    row = cells.loc[("DKD+DHO", "1-shot")]
    assert (row["reproduced"], row["n"], row["reported"]) == (45.0, 1, 47.1)
    assert row["diff"] == pytest.approx(-2.1)
    assert cells.loc[("WKD", "4-shot"), "reported"] == 17.0 and cells.loc[("WKD", "4-shot"), "status"] == "missing"
    assert list(dict.fromkeys(r for r, _ in cells.index)) == ["DHO", "DKD", "DKD+DHO", "WKD", "WKD+DHO"]
    assert cells["reported"].notna().sum() == 25  # every number of the paper's Table 14


def test_table15_average_of_eight(tmp_path, reported):
    root = tmp_path / "runs"
    for d in EIGHT:
        for seed, acc in ((1, 78.0), (2, 80.0)):
            make_run(root, dataset=d, labels="16shot", student="resnet18", teacher="zs", method="wkd_dho",
                     seed=seed, test_acc=acc)
    cells = _cells("table15", root, reported)
    row = cells.loc[("WKD+DHO", "16-shot")]
    assert row["reproduced"] == pytest.approx(79.0) and row["reported"] == 79.6
    assert cells.loc[("DKD", "1-shot"), "reported"] == 28.7
    assert cells["reported"].notna().sum() == 25


def test_table16_entropy_alpha_from_saved_test_logits(tmp_path, reported):
    root = tmp_path / "runs"
    run_dir = make_run(root, dataset="imagenet", labels="10pct", student="clip_vit_l14_336", teacher="dfn",
                       method="dho", test_acc=85.0, logits=(300, 6))
    make_run(root, dataset="imagenet", labels="1pct", student="clip_vit_b16", teacher="dfn", method="dho",
             test_acc=81.0)  # no saved logits: its DHO+Ent cell stays missing
    cells = _cells("table16", root, reported)
    a = load_logits(run_dir / "logits_test.npz")
    ent = cells.loc[("DHO+Ent", "ViT-L/14 10 %")]
    assert ent["reproduced"] == pytest.approx(accuracy(combine_heads_entropy(a["ce"], a["kd"]), a["labels"]))
    assert ent["reported"] == 85.92
    fixed = cells.loc[("DHO (α = 0.5, β = 0.5)", "ViT-L/14 10 %")]
    assert (fixed["reproduced"], fixed["reported"]) == (85.0, 85.94)
    assert cells.loc[("DHO+Ent", "ViT-B/16 1 %"), "status"] == "missing"
    assert cells.loc[("DHO (α = 0.5, β = 0.5)", "ViT-B/16 1 %"), "reproduced"] == 81.0
    assert cell_text(fixed, digits=get_layout("table16").digits) == "85.00 (85.94, -0.94)"


def test_table18_imagenet_and_ten_dataset_average(tmp_path, reported):
    root = tmp_path / "runs"
    make_run(root, dataset="imagenet", labels="16shot", student="dino_resnet50", teacher="zs", method="dho_nl_kd",
             test_acc=66.0)
    for i, d in enumerate(FINE_GRAINED):
        make_run(root, dataset=d, labels="2shot", student="resnet18", teacher="zs", method="dho_nl_ce",
                 test_acc=60.0 + i)
    cells = _cells("table18", root, reported)
    nl_kd = cells.loc[("DHO+NL-Head-KD", "ImageNet 16-shot")]
    assert (nl_kd["reproduced"], nl_kd["reported"]) == (66.0, 65.9)
    nl_ce = cells.loc[("DHO+NL-Head-CE", "Average of 10 2-shot")]
    assert nl_ce["reproduced"] == pytest.approx(np.mean([60.0 + i for i in range(10)])) and nl_ce["reported"] == 62.1
    assert cells.loc[("DHO (base)", "Average of 10 4-shot"), "reported"] == 68.4
    assert cells["reported"].notna().sum() == 40


def test_table19_head_accuracies(tmp_path, reported):
    root = tmp_path / "runs"
    # the fakes write test_acc_ce = test_acc - 1 and test_acc_kd = test_acc - 2
    make_run(root, dataset="imagenet", labels="16shot", student="dino_resnet50", teacher="zs", method="dho_nl_both",
             test_acc=65.0)
    make_run(root, dataset="imagenet", labels="8shot", student="dino_resnet50", teacher="zs", method="dho_nl_both",
             test_acc=10.0)  # Table 19 is 16-shot only
    cells = _cells("table19", root, reported)
    assert (cells.loc[("DHO+NL-Head-CE+KD", "CE Head"), "reproduced"], cells.loc[("DHO+NL-Head-CE+KD", "CE Head"),
                                                                                 "reported"]) == (64.0, 61.66)
    assert (cells.loc[("DHO+NL-Head-CE+KD", "KD Head"), "reproduced"], cells.loc[("DHO+NL-Head-CE+KD", "KD Head"),
                                                                                 "reported"]) == (63.0, 61.81)
    assert (cells.loc[("DHO+NL-Head-CE+KD", "Combined"), "reproduced"], cells.loc[("DHO+NL-Head-CE+KD", "Combined"),
                                                                                  "reported"]) == (65.0, 65.59)
    assert cells.loc[("DHO (base)", "Combined"), "reported"] == 65.37
    assert cells["reported"].notna().sum() == 12
