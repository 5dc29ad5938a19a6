"""dho.results.paper: paper-layout tables from fake runs.csv / evals.csv and the packaged reported numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dho.cli import main
from dho.errors import ConfigError
from dho.results.collect import collect_runs, write_runs_csv
from dho.results.heads import accuracy_grid, load_logits
from dho.results.paper import (FIG9_ALPHAS, FIG9_BETAS, FINE_GRAINED, LAYOUT_NAMES, cell_text, evals_as_runs,
                               get_layout, paper_cells)
from dho.results.reported import load_reported
from test_results_fakes import make_run


@pytest.fixture(scope="module")
def reported():
    return load_reported()


def _cell(cells, row, column):
    sel = cells[(cells["row"] == row) & (cells["column"] == column)]
    assert len(sel) == 1, (row, column)
    return sel.iloc[0]


@pytest.fixture
def table1_runs(tmp_path):
    root = tmp_path / "runs"
    for seed, acc in ((1, 50.0), (2, 53.0)):  # DHO, zero-shot teacher, 4-shot, two seeds
        make_run(root, dataset="imagenet", labels="4shot", student="resnet18_scratch", teacher="zs", method="dho",
                 seed=seed, test_acc=acc, teacher_test_acc=59.0)
    make_run(root, dataset="imagenet", labels="4shot", student="resnet18_scratch", teacher="none", method="ce",
             test_acc=2.0, teacher_test_acc=None)
    make_run(root, dataset="imagenet", labels="4shot", student="resnet18_scratch", teacher="fs", method="dho",
             test_acc=55.0, teacher_test_acc=62.0)
    # table1_kd0: KD without labels on the 1-shot split = the 0-shot column
    make_run(root, dataset="imagenet", labels="1shot", student="resnet18_scratch", teacher="zs",
             method="kd_unlabeled", test_acc=49.0, teacher_test_acc=59.0)
    return collect_runs(root, "table1")


def test_table1_cells_reproduced_reported_and_difference(table1_runs, reported):
    cells = paper_cells(get_layout("table1"), table1_runs, reported)
    dho = _cell(cells, "DHO", "ResNet-18 from scratch 4-shot")
    assert dho["reproduced"] == pytest.approx(51.5) and dho["n"] == 2
    assert dho["std"] == pytest.approx(np.std([50.0, 53.0], ddof=1))
    assert dho["reported"] == 52.6 and dho["diff"] == pytest.approx(51.5 - 52.6)
    assert dho["status"] == "ok"
    assert cell_text(dho) == "51.5 (52.6, -1.1)"
    dho_f = _cell(cells, "DHO-F", "ResNet-18 from scratch 4-shot")
    assert (dho_f["reproduced"], dho_f["reported"]) == (55.0, 54.8)
    ce = _cell(cells, "CE", "ResNet-18 from scratch 4-shot")
    assert (ce["reproduced"], ce["reported"]) == (2.0, 1.8)
    # the Tip-Adapter-F teacher row: its teacher accuracy once per split, not once per method
    fs = _cell(cells, "Tip-Adapter-F", "ResNet-18 from scratch 4-shot")
    assert (fs["reproduced"], fs["n"], fs["reported"]) == (62.0, 1, 62.5)
    kd0 = _cell(cells, "KD (logit), unlabeled only", "ResNet-18 from scratch 0-shot")
    assert (kd0["reproduced"], kd0["reported"]) == (49.0, 51.0)
    assert _cell(cells, "KD (logit), unlabeled only", "ResNet-18 from scratch 1-shot")["status"] == "empty"
    # the zero-shot teacher is printed in the 0-shot column, as in the paper
    zs = _cell(cells, "CLIP zero-shot", "ResNet-18 from scratch 0-shot")
    assert (zs["reproduced"], zs["reported"]) == (59.0, 60.3)


def test_rows_without_runs_are_missing_not_hidden(table1_runs, reported):
    cells = paper_cells(get_layout("table1"), table1_runs, reported)
    sskd = _cell(cells, "SSKD", "ResNet-18 from scratch 4-shot")
    assert sskd["status"] == "missing" and math.isnan(sskd["reproduced"]) and sskd["reported"] == 48.0
    assert cell_text(sskd) == "missing (48.0)"
    dino = _cell(cells, "DHO", "DINO ResNet-50 16-shot")  # no DINO student yet
    assert dino["status"] == "missing" and dino["reported"] == 64.7
    kd0 = _cell(cells, "KD (logit), unlabeled only", "DINO ResNet-50 0-shot")
    assert kd0["reported"] == 61.0 and kd0["status"] == "missing"
    # every row of the paper's Table 1 is there, in the paper's order
    assert list(dict.fromkeys(cells["row"])) == ["KD (logit), unlabeled only", "CE", "CE+KD (feature)",
                                                 "CE+KD (logit)", "SSKD", "DHKD", "DHO", "DHO-F",
                                                 "CLIP zero-shot", "Tip-Adapter-F"]
    # every number of the paper's Table 1 has a cell (78, teachers printed in both halves: +6)
    assert cells["reported"].notna().sum() == 84


def test_fig4_average_needs_every_dataset(tmp_path, reported):
    root = tmp_path / "runs"
    for i, d in enumerate(FINE_GRAINED):
        make_run(root, dataset=d, labels="1shot", student="resnet18", teacher="zs", method="dho", test_acc=50.0 + i)
    make_run(root, dataset="dtd", labels="2shot", student="resnet18", teacher="zs", method="dho", test_acc=70.0)
    cells = paper_cells(get_layout("fig4"), collect_runs(root, "fig4"), reported)
    avg = cells[(cells["block"] == "Average (10 datasets)") & (cells["row"] == "DHO")]
    one = avg[avg["column"] == "1-shot"].iloc[0]
    assert one["reproduced"] == pytest.approx(np.mean([50.0 + i for i in range(10)]))
    assert one["n"] == 10 and one["reported"] == 58.9  # Table 18, DHO (base), 10-dataset average
    two = avg[avg["column"] == "2-shot"].iloc[0]
    assert two["status"] == "missing" and two["reported"] == 62.2  # one dataset of ten is not an average
    dtd = cells[(cells["block"] == "DTD") & (cells["row"] == "DHO") & (cells["column"] == "2-shot")].iloc[0]
    assert dtd["status"] == "no_number" and cell_text(dtd) == "70.0"  # plots only in the paper


def test_fig6_head_columns_and_gain(tmp_path, reported):
    root = tmp_path / "runs"
    make_run(root, dataset="imagenet", labels="16shot", student="resnet18_scratch", teacher="zs", method="dho",
             test_acc=60.0)  # the fakes write test_acc_ce = test_acc - 1, test_acc_kd = test_acc - 2
    cells = paper_cells(get_layout("fig6"), collect_runs(root, "table1"), reported)
    block = cells[(cells["block"] == "16-shot") & (cells["row"] == "ImageNet")].set_index("column")
    assert block.loc["DHO", "reproduced"] == 60.0
    assert block.loc["DHO (h_CE)", "reproduced"] == 59.0 and block.loc["DHO (h_KD)", "reproduced"] == 58.0
    assert block.loc["DHO − DHO (h_CE)", "reproduced"] == pytest.approx(1.0)
    assert block.loc["DHO − DHO (h_CE)", "reported"] == 3.4


def test_fig9_grid_from_saved_logits(tmp_path, reported):
    root = tmp_path / "runs"
    run_dir = make_run(root, dataset="imagenet", labels="16shot", student="resnet18_scratch", teacher="zs",
                       method="dho", logits=(200, 5))
    runs = collect_runs(root, "table1")
    cells = paper_cells(get_layout("fig9"), runs, reported)
    a = load_logits(run_dir / "logits_test.npz")
    grid = accuracy_grid(a["ce"], a["kd"], a["labels"], FIG9_ALPHAS, FIG9_BETAS)
    i, j = np.unravel_index(int(np.argmax(grid)), grid.shape)
    mine = cells[cells["block"] == "ResNet-18 from scratch"]
    best = mine[mine["row"] == "best (α, β) of the grid"].set_index("column")
    assert best.loc["accuracy", "reproduced"] == pytest.approx(grid.max())
    assert (best.loc["α", "reproduced"], best.loc["β", "reproduced"]) == (FIG9_ALPHAS[i], FIG9_BETAS[j])
    heuristic = mine[mine["row"] == "heuristic α = 0.4, β = 0.5"].iloc[0]
    assert heuristic["reproduced"] == pytest.approx(accuracy_grid(a["ce"], a["kd"], a["labels"], (0.4,), (0.5,))[0, 0])
    paper = cells[(cells["block"] == "DINO ResNet-50 (the paper's)") & (cells["column"] == "accuracy")]
    assert sorted(paper["reported"]) == [64.7, 65.5] and (paper["status"] == "missing").all()


def test_table3_published_rows_and_runs(tmp_path, reported):
    root = tmp_path / "runs"
    make_run(root, dataset="imagenet", labels="10pct", student="clip_vit_l14_336", teacher="dfn", method="kd",
             test_acc=83.0, teacher_test_acc=84.0)
    cells = paper_cells(get_layout("table3"), collect_runs(root, "table3"), reported)
    kd = _cell(cells, "CE+KD (logit) ViT-L/14", "10 %")
    assert (kd["reproduced"], kd["reported"]) == (83.0, 83.6)
    msn = _cell(cells, "MSN ViT-B/4", "1 %")
    assert msn["status"] == "not_run" and cell_text(msn) == "– (75.7)"
    dfn = _cell(cells, "DFN ViT-H/14 (the teacher)", "1 %")
    assert (dfn["reproduced"], dfn["reported"]) == (84.0, 84.4)


def test_table17_from_evals():
    evals = pd.DataFrame([dict(suite="table17_dfn", from_suite="table3", dataset="imagenet", labels="1pct",
                               label_count=1.0, student="clip_vit_b16", teacher="dfn", method="dho", seed=1,
                               eval_dataset=d, test_acc=acc, source_test_acc=80.0)
                          for d, acc in (("imagenet_v2", 70.0), ("imagenet_a", 30.0))])
    cells = paper_cells(get_layout("table17"), evals_as_runs(evals), load_reported())
    row = cells[(cells["block"] == "ViT-B/16 student") & (cells["row"] == "1 %, ViT-H/14 teacher")].set_index("column")
    assert (row.loc["Val", "reproduced"], row.loc["Val", "reported"]) == (80.0, 81.6)
    assert row.loc["Val", "n"] == 1  # the run's own test accuracy once, not once per evaluation
    assert (row.loc["V2", "reproduced"], row.loc["V2", "reported"]) == (70.0, 72.6)
    assert (row.loc["A", "reproduced"], row.loc["A", "reported"]) == (30.0, 35.6)
    assert row.loc["Sketch", "status"] == "missing"


def test_table2_from_evals():
    """Every reported Tab2 number has its cell; a CoOp+DHO run's cells, its Avg over the five
    columns, and the PromptSRC / CasPL rows that show the paper's numbers only."""
    accs = dict(imagenet_v2=66.0, imagenet_sketch=49.0, imagenet_r=77.0, imagenet_a=51.0)
    evals = pd.DataFrame([dict(suite="table2_prompt_ood", from_suite="table2_prompt", dataset="imagenet",
                               labels="16shot", label_count=16.0, student="coop_vit_b16", teacher="l14", method="dho",
                               seed=1, eval_dataset=d, test_acc=acc, source_test_acc=74.0) for d, acc in accs.items()])
    reported = load_reported()
    cells = paper_cells(get_layout("table2"), evals_as_runs(evals), reported)
    assert cells["reported"].notna().sum() == (reported["table"] == "Tab2").sum()  # each number once
    row = cells[cells["row"] == "CoOp+DHO, with unlabeled data"].set_index("column")
    assert (row.loc["Val", "reproduced"], row.loc["Val", "reported"]) == (74.0, 73.4)
    assert (row.loc["A", "reproduced"], row.loc["A", "reported"]) == (51.0, 50.5)
    assert row.loc["Avg", "reproduced"] == pytest.approx((74.0 + 66.0 + 49.0 + 77.0 + 51.0) / 5)
    assert row.loc["Avg", "reported"] == 63.3
    assert row.loc["Val", "n"] == 1
    no_unlabeled = cells[cells["row"] == "CoOp+DHO, no unlabeled data"].set_index("column")
    assert set(no_unlabeled["status"]) == {"missing"} and no_unlabeled.loc["R", "reported"] == 76.4
    zero_shot = cells[cells["row"] == "CLIP ViT-B/16"].set_index("column")
    assert (zero_shot.loc["A", "reported"], zero_shot.loc["Avg", "reported"]) == (47.8, 59.1)
    src = cells[cells["row"] == "PromptSRC+DHO, with unlabeled data"].set_index("column")
    assert set(src["status"]) == {"not_run"} and src.loc["Val", "reported"] == 73.6
    caspl = cells[cells["row"] == "CoOp+CasPL (published)"].set_index("column")
    assert caspl.loc["R", "status"] == "not_run" and caspl.loc["A", "status"] == "empty"


def test_every_layout_renders_from_no_runs(tmp_path, reported):
    empty = collect_runs(tmp_path / "none", "x") if (tmp_path / "none").mkdir() is None else None
    for name in LAYOUT_NAMES:
        cells = paper_cells(get_layout(name), empty, reported)
        assert set(cells["status"]) <= {"missing", "not_run", "empty"}, name
    with pytest.raises(ConfigError, match="unknown paper table"):
        get_layout("table99")


def test_cli_writes_md_csv_tex(table1_runs, tmp_path, capsys):
    runs_csv = write_runs_csv(table1_runs, tmp_path / "runs.csv")
    assert main(["paper-table", "--layout", "table1", "--runs", str(runs_csv), "--out-dir", str(tmp_path / "p")]) == 0
    md = (tmp_path / "p" / "table1.md").read_text()
    # block name once per block; DHO has no 0-shot cell; 1-, 2-shot missing beside the paper's numbers
    assert "| Dual-head KD | SSKD |  | missing (42.5) |" in md
    assert "|  | DHO |  | missing (51.8) | missing (52.4) | 51.5 (52.6, -1.1) |" in md
    tex = (tmp_path / "p" / "table1.tex").read_text()
    assert "\\toprule" in tex and "51.5 (52.6, -1.1)" in tex
    csv = pd.read_csv(tmp_path / "p" / "table1.csv")
    assert len(csv) == 10 * 12 and set(csv["status"]) >= {"ok", "missing"}


def test_demo_in_table1_layout_keeps_the_rows_it_runs(tmp_path, reported):
    root = tmp_path / "runs"
    for seed, acc in ((1, 40.0), (2, 44.0), (3, 45.0)):
        make_run(root, dataset="shapes", labels="4shot", student="resnet18", teacher="zs", method="dho", seed=seed,
                 test_acc=acc, teacher_test_acc=37.0)
        make_run(root, dataset="shapes", labels="4shot", student="resnet18_scratch", teacher="none", method="ce",
                 seed=seed, test_acc=acc - 20, teacher_test_acc=None)
    cells = paper_cells(get_layout("demo"), collect_runs(root, "demo"), reported)
    assert list(dict.fromkeys(cells["row"])) == ["CE", "DHO", "CLIP zero-shot"]  # Table 1's order, run rows only
    dho = _cell(cells, "DHO", "pretrained (demo) 4-shot")
    assert (dho["reproduced"], dho["n"], dho["status"]) == (pytest.approx(43.0), 3, "no_number")
    assert cell_text(dho) == f"43.0 ± {np.std([40.0, 44.0, 45.0], ddof=1):.1f}"  # no paper number: the seed spread
    assert _cell(cells, "CE", "from scratch 4-shot")["reproduced"] == pytest.approx(23.0)
    assert _cell(cells, "CLIP zero-shot", "pretrained (demo) 0-shot")["reproduced"] == 37.0
    assert cells["reported"].isna().all()
    # a column without any run is left out too (no 1- or 16-shot run here; the teacher is in both halves)
    assert sorted(set(cells["column"])) == ["from scratch 0-shot", "from scratch 4-shot", "pretrained (demo) 0-shot",
                                            "pretrained (demo) 4-shot"]
    from dho.results.paper import to_latex, to_markdown
    md = to_markdown(cells, get_layout("demo"))
    assert ("|  |  | from scratch 0-shot | from scratch 4-shot | pretrained (demo) 0-shot | pretrained (demo) 4-shot |"
            in md)
    assert "\\begin{tabular}{llrrrr}" in to_latex(cells, get_layout("demo"))
