"""dho.results.tables and dho.results.reported: runs.csv -> comparison / summary tables."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from dho.cli import main
from dho.errors import DataError
from dho.results.collect import collect_runs, write_runs_csv
from dho.results.reported import find_reported, load_reported, matches
from dho.results.tables import comparison_cells, format_cell, latex_escape, summary_cells, to_latex, write_tables
from test_results_fakes import make_run

DHO_4 = [70.0, 72.5, 71.1]
KD_4 = [69.0, 73.0]
IMAGENET_1PCT = [80.0, 81.0]


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for seed, acc in enumerate(DHO_4, 1):
        make_run(root, method="dho", labels="4shot", seed=seed, test_acc=acc, teacher_test_acc=60.0 + seed)
    for seed, acc in enumerate(KD_4, 1):
        make_run(root, method="kd", labels="4shot", seed=seed, test_acc=acc, teacher_test_acc=60.0 + seed)
    make_run(root, method="dho", labels="16shot", test_acc=80.0, teacher_test_acc=65.0)
    make_run(root, method="kd", labels="16shot", test_acc=81.0, teacher_test_acc=65.0)
    make_run(root, method="dho", labels="4shot", teacher="fs_rn50", test_acc=75.0, teacher_test_acc=66.0)
    make_run(root, method="ce", labels="4shot", teacher="none", test_acc=50.0, teacher_test_acc=None)
    make_run(root, dataset="dtd", method="dho", labels="4shot", test_acc=40.0, teacher_test_acc=30.0)
    for seed, acc in enumerate(IMAGENET_1PCT, 1):
        make_run(root, dataset="imagenet", labels="1pct", student="clip_vit_b16", teacher="zs_vith14_dfn5b",
                 method="dho", seed=seed, test_acc=acc, teacher_test_acc=83.0)
    make_run(root, dataset="imagenet", labels="1pct", student="clip_vit_b16", teacher="zs_rn50",
             method="dho", test_acc=70.0, teacher_test_acc=55.0)
    return collect_runs(root, "demo")


def _cell(cells, **where):
    sel = cells
    for k, v in where.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, where
    return sel.iloc[0]


def test_cell_values_are_mean_std_n_over_seeds(runs):
    cells = comparison_cells(runs)
    dho = _cell(cells, dataset="caltech101", teacher="zs_rn50", row="method", method="dho", labels="4shot")
    assert dho["mean"] == pytest.approx(np.mean(DHO_4))
    assert dho["std"] == pytest.approx(np.std(DHO_4, ddof=1))
    assert dho["n"] == 3
    single = _cell(cells, dataset="caltech101", teacher="zs_rn50", method="dho", labels="16shot")
    assert single["n"] == 1 and np.isnan(single["std"])


def test_teacher_row_counts_each_seed_once(runs):
    cells = comparison_cells(runs)
    teacher = _cell(cells, dataset="caltech101", teacher="zs_rn50", row="teacher", labels="4shot")
    assert teacher["n"] == 3
    assert teacher["mean"] == pytest.approx(np.mean([61.0, 62.0, 63.0]))


def test_teacherless_method_appears_in_each_teacher_block(runs):
    cells = comparison_cells(runs)
    ce = cells[(cells["method"] == "ce") & (cells["dataset"] == "caltech101")]
    assert sorted(ce["teacher"]) == ["fs_rn50", "zs_rn50"]
    assert (ce["mean"] == 50.0).all()


def test_best_is_per_block_and_label_level(runs):
    cells = comparison_cells(runs)
    best = cells[cells["best"]]
    got = sorted(zip(best["dataset"], best["teacher"], best["labels"], best["method"]))
    assert got == [("caltech101", "fs_rn50", "4shot", "dho"), ("caltech101", "zs_rn50", "16shot", "kd"),
                   ("caltech101", "zs_rn50", "4shot", "dho"), ("dtd", "zs_rn50", "4shot", "dho"),
                   ("imagenet", "zs_rn50", "1pct", "dho"), ("imagenet", "zs_vith14_dfn5b", "1pct", "dho")]


def test_reported_difference_only_where_a_reported_number_matches(runs):
    cells = comparison_cells(runs, load_reported())
    hit = _cell(cells, dataset="imagenet", teacher="zs_vith14_dfn5b", row="method", labels="1pct")
    assert hit["reported"] == 81.6
    assert hit["diff"] == pytest.approx(np.mean(IMAGENET_1PCT) - 81.6)
    assert hit["reported_source"] == "Tab3, arXiv 2505.07675v2"
    others = cells.drop(index=cells.index[(cells["dataset"] == "imagenet") & (cells["teacher"] == "zs_vith14_dfn5b")
                                          & (cells["row"] == "method")])
    assert others["reported"].isna().all()


def md_rows(md: str) -> list[list[str]]:
    """The rows of the pipe table in a Markdown document, cells stripped (header and rule left out)."""
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines[2:]]


def test_markdown_bold_and_reported_rows(runs, tmp_path):
    paths = write_tables(runs, tmp_path / "tables", load_reported())
    assert sorted(p.name for p in paths) == sorted(
        f"{n}.{e}" for n in ("comparison", "summary") for e in ("md", "csv", "tex", "html"))
    assert not list((tmp_path / "tables").glob(".*"))
    md = (tmp_path / "tables" / "comparison.md").read_text()
    dho_cell = format_cell(np.mean(DHO_4), np.std(DHO_4, ddof=1), 3)
    assert dho_cell == "71.2 ± 1.3 (n=3)"
    rows = md_rows(md)
    assert ["Caltech101", "ResNet-18", "zero-shot (rn50)", "DHO", f"**{dho_cell}**", "80.0 (n=1)", "–"] in rows
    assert ["Caltech101", "ResNet-18", "zero-shot (rn50)", "KD (logit)", "71.0 ± 2.8 (n=2)", "**81.0 (n=1)**",
            "–"] in rows
    dfn = ["ImageNet", "CLIP ViT-B/16", "zero-shot (vith14_dfn5b)"]
    assert dfn + ["DHO (reported)", "–", "–", "81.6"] in rows
    assert dfn + ["DHO (Δ reported)", "–", "–", "-1.1"] in rows
    assert "DHO (reported)" not in md.split("vith14_dfn5b")[0]  # no reported row for other teachers
    back = pd.read_csv(tmp_path / "tables" / "comparison.csv")
    assert back["best"].sum() == 6
    page = (tmp_path / "tables" / "comparison.html").read_text()
    assert f"<td class=\"num\"><b>{dho_cell}</b></td>" in page and "<td>Caltech101</td>" in page
    assert page.count("<tr>") == len(md_rows(md))  # the same rows as the Markdown (the header is <tr style=...>)


def test_rows_follow_the_papers_method_order_with_the_teacher_first(runs, tmp_path):
    write_tables(runs, tmp_path / "t")
    rows = md_rows((tmp_path / "t" / "comparison.md").read_text())
    block = [r[3] for r in rows if r[:3] == ["Caltech101", "ResNet-18", "zero-shot (rn50)"]]
    assert block == ["teacher", "CE", "KD (logit)", "DHO"]
    teachers = list(dict.fromkeys(r[2] for r in rows if r[0] == "Caltech101"))
    assert teachers == ["zero-shot (rn50)", "Tip-Adapter-F (rn50)"]


def test_one_dataset_no_summary_and_constant_keys_in_the_title(tmp_path):
    root = tmp_path / "runs"
    for seed in (1, 2):
        for method, acc in (("dho", 70.0), ("kd", 66.0), ("sskd", 68.0)):
            make_run(root, method=method, labels="1shot", seed=seed, teacher="zs", test_acc=acc + seed)
        make_run(root, method="ce", labels="1shot", seed=seed, teacher="none", test_acc=50.0 + seed,
                 teacher_test_acc=None)
    out = tmp_path / "t"
    out.mkdir()
    (out / "summary.md").write_text("stale")
    paths = write_tables(collect_runs(root, "demo"), out)
    assert sorted(p.name for p in paths) == ["comparison.csv", "comparison.html", "comparison.md", "comparison.tex"]
    assert not (out / "summary.md").exists()
    md = (out / "comparison.md").read_text()
    assert md.startswith("# demo: test accuracy (Caltech101, ResNet-18, zero-shot)\n")
    assert "mean ± std over 2 seeds" in md and "(n=" not in md
    assert md_rows(md) == [["teacher (zero-shot)", "60.0 ± 0.0"], ["CE", "51.5 ± 0.7"], ["KD (logit)", "67.5 ± 0.7"],
                           ["SSKD", "69.5 ± 0.7"], ["DHO", "**71.5 ± 0.7**"]]


def test_latex_is_booktabs_with_escaped_underscores(runs):
    cells = comparison_cells(runs, load_reported())
    tex = to_latex(cells, ["dataset", "student", "teacher"], "suite_1 table")
    lines = tex.strip().splitlines()
    assert lines[0].startswith("%") and "booktabs" in lines[0]
    assert lines[1] == r"\begin{tabular}{llllrrr}"
    assert lines[2] == r"\toprule" and lines[4] == r"\midrule"
    assert lines[3] == r"dataset & student & teacher & method & 4 shots & 16 shots & 1 \% \\"
    assert lines[-2:] == [r"\bottomrule", r"\end{tabular}"]
    body = [ln for ln in lines[5:-2] if not ln.startswith("\\midrule")]
    assert len(lines[5:-2]) - len(body) == len(cells.groupby(["dataset", "student", "teacher"])) - 1
    for line in body:
        assert line.endswith(r" \\")
        assert len(re.findall(r"(?<!\\)&", line)) == 6, line
    assert not re.search(r"(?<!\\)_", "\n".join(lines[1:])), "unescaped underscore"
    assert r"zero-shot (vith14\_dfn5b)" in tex and r"\textbf{71.2 $\pm$ 1.3 (n=3)}" in tex
    assert r"$\Delta$ reported" in tex


def test_latex_escape():
    assert latex_escape("a_b & 10% #1 {x} $~^\\") == (
        r"a\_b \& 10\% \#1 \{x\} \$\textasciitilde{}\textasciicircum{}\textbackslash{}")


def test_summary_is_mean_over_datasets(runs):
    summary = summary_cells(runs)
    dho = _cell(summary, student="resnet18", teacher="zs_rn50", row="method", method="dho", labels="4shot")
    assert dho["n"] == 2
    assert dho["mean"] == pytest.approx((np.mean(DHO_4) + 40.0) / 2)


def test_no_runs_is_a_data_error(runs):
    with pytest.raises(DataError, match="no finished runs"):
        comparison_cells(runs.iloc[0:0])


def test_reported_matching_rules():
    row = {"dataset": "imagenet", "labels": "1pct", "student": "ViT-B/16", "teacher": "ViT-H/14 DFN5B",
           "method": "dho"}
    assert matches(row, "ImageNet", "1%", "ViT-B-16-quickgelu", "zs_ViT-H-14-378-quickgelu_dfn5b", "DHO")
    assert not matches(row, "imagenet", "1pct", "ViT-L-14", "vith14_dfn5b", "dho")
    assert not matches(row, "imagenet", "1shot", "vit_b16", "vith14_dfn5b", "dho")
    assert not matches(row, "imagenet", "1pct", "vit_b16", "vith14_openai", "dho")
    assert not matches(row, "imagenet_v2", "1pct", "vit_b16", "vith14_dfn5b", "dho")


def test_packaged_reported_numbers_match_suite_names():
    reported = load_reported()
    # the names of config.yaml's imagenet_semi / table3 suites
    assert find_reported(reported, "imagenet", "10pct", "clip_vit_l14_336", "dfn", "dho").value == 85.9
    assert find_reported(reported, "imagenet", "1pct", "clip_vit_b16", "dfn", "dho").value == 81.6
    assert find_reported(reported, "imagenet", "1pct", "clip_vit_b16", "dfn", "kd") is None
    assert find_reported(reported, "imagenet", "1pct", "clip_vit_b16", "zeroshot", "dho") is None


def test_bad_reported_file(tmp_path):
    path = tmp_path / "reported.csv"
    path.write_text("table,protocol,dataset,labels,student,teacher,method,metric,value,source\n"
                    "T,p,d,1pct,s,t,m,top1_acc,high,x\n")
    with pytest.raises(DataError, match="'value' on data row 1 = 'high'"):
        load_reported(path)
    path.write_text("dataset,value\nd,1\n")
    with pytest.raises(DataError, match=r"lacks column\(s\) table, protocol"):
        load_reported(path)


def test_cli_tables(runs, tmp_path, capsys):
    runs_csv = write_runs_csv(runs, tmp_path / "runs.csv")
    assert main(["tables", "--runs", str(runs_csv), "--out-dir", str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 't' / 'comparison.tex'}" in out
    assert (tmp_path / "t" / "summary.md").read_text().startswith("# demo: mean test accuracy")
    assert main(["tables", "--runs", str(tmp_path / "missing.csv"), "--out-dir", str(tmp_path / "t")]) == 2
    assert "error: runs table not found" in capsys.readouterr().err
