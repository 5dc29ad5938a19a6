"""dho readme-results: the README's results block from runs.csv / rechoose.csv."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dho.cli import main
from dho.errors import ConfigError
from dho.results.collect import collect_runs, write_runs_csv
from dho.results.paper import get_layout, paper_cells, to_markdown
from dho.results.readme import claims, claims_frame, markers, replace_block, results_block
from dho.results.reported import load_reported
from dho.results.rechoose import rechoose, write_rechoose
from dho.results.tables import write_tables
from test_results_fakes import make_run

ROOT = Path(__file__).resolve().parents[1]
# (method, teacher, labels) -> test accuracy of seeds 1, 2
ACC = {("dho", "zs", "1shot"): (40.0, 42.0), ("kd", "zs", "1shot"): (38.0, 37.0),
       ("dho", "zs", "4shot"): (45.0, 47.0), ("kd", "zs", "4shot"): (46.0, 48.0),
       ("ce", "none", "1shot"): (30.0, 31.0), ("ce", "none", "4shot"): (44.0, 50.0)}
COSINE = {"dho": 0.05, "kd": -0.3}


@pytest.fixture
def results(tmp_path):
    runs_root = tmp_path / "runs"
    for (method, teacher, labels), accs in ACC.items():
        for seed, acc in enumerate(accs, 1):
            make_run(runs_root, dataset="shapes", student="resnet18", method=method, teacher=teacher,
                     labels=labels, seed=seed, test_acc=acc,
                     teacher_test_acc=None if teacher == "none" else 39.0,
                     grad_cosine_mean=COSINE.get(method), logits=(40, 4) if method == "dho" else None)
    suite = tmp_path / "results" / "demo"
    runs = collect_runs(runs_root, "demo")
    write_runs_csv(runs, suite / "runs.csv")
    write_rechoose(runs, suite / "rechoose.csv")
    write_tables(runs, suite / "tables")
    return tmp_path / "results", runs


def _readme(tmp_path, suite="demo"):
    begin, end = markers(suite)
    path = tmp_path / "README.md"
    path.write_text(f"# Title\n\ntext before\n\n{begin}\nhand-typed 99.9\n{end}\n\ntext after\n")
    return path


def _rows(md: str) -> list[list[str]]:
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in md.splitlines() if ln.startswith("|")]


def test_block_is_rewritten_from_the_results_and_nothing_else_changes(results, tmp_path, capsys):
    results_dir, runs = results
    readme = _readme(tmp_path)
    args = ["readme-results", "--suite", "demo", "--results", str(results_dir), "--readme", str(readme),
            "--no-figures"]
    assert main(args) == 0
    text = readme.read_text()
    assert text.startswith("# Title\n\ntext before\n\n<!-- BEGIN results suite=demo")
    assert text.endswith("<!-- END results suite=demo -->\n\ntext after\n")
    assert "hand-typed" not in text
    # the demo's accuracy table is its Table 1 layout (results/paper/demo.md's own rows)
    layout = get_layout("demo")
    paper_rows = _rows(to_markdown(paper_cells(layout, runs, load_reported()), layout))
    block_rows = _rows(text)
    assert block_rows[:len(paper_rows)] == paper_rows
    assert ["DHO", "", "", "41.0 ± 1.4", "46.0 ± 1.4"] in [r[1:] for r in block_rows]  # no 0-shot DHO
    assert main(args) == 0 and readme.read_text() == text  # idempotent


def test_a_suite_without_a_paper_layout_shows_its_comparison_table(results, tmp_path):
    results_dir, _ = results
    shutil.copytree(results_dir / "demo", results_dir / "mini")
    readme = _readme(tmp_path, "mini")
    assert main(["readme-results", "--suite", "mini", "--results", str(results_dir), "--readme", str(readme),
                 "--no-figures"]) == 0
    # the accuracy table is the comparison table's own rows (one generator for both)
    table_rows = _rows((results_dir / "mini" / "tables" / "comparison.md").read_text())
    assert _rows(readme.read_text())[:len(table_rows)] == table_rows


def test_two_students_get_a_section_each_with_their_own_claims(results, tmp_path):
    results_dir, _ = results
    runs_root = tmp_path / "runs"
    for seed, (ce, dho) in enumerate(((10.0, 30.0), (12.0, 32.0)), 1):  # a weaker student from scratch
        make_run(runs_root, dataset="shapes", student="resnet18_scratch", method="ce", teacher="none",
                 labels="1shot", seed=seed, test_acc=ce, teacher_test_acc=None)
        make_run(runs_root, dataset="shapes", student="resnet18_scratch", method="dho", teacher="zs",
                 labels="1shot", seed=seed, test_acc=dho, teacher_test_acc=39.0, logits=(40, 4))
    runs = collect_runs(runs_root, "demo")
    write_runs_csv(runs, results_dir / "demo" / "runs.csv")
    write_rechoose(runs, results_dir / "demo" / "rechoose.csv")
    text = results_block(results_dir, "demo")
    assert text.count("#### ") == 2
    scratch = text.split("#### ResNet-18 from scratch (`resnet18_scratch`)", 1)[1]
    assert "yes: 39.0 vs 11.0" in scratch        # the teacher above this student's CE
    assert "no: 31.0 vs 39.0" in scratch         # its DHO below the teacher
    pretrained = text.split("#### ResNet-18 (`resnet18`)", 1)[1].split("####", 1)[0]
    assert "yes: 39.0 vs 30.5" in pretrained and "11.0" not in pretrained


def test_claims_are_computed_from_the_numbers(results):
    _, runs = results
    table = claims(runs, rechoose(runs)).set_index("claim")
    assert table.loc["the teacher above CE (Table 1's regime)", "verdict"] == "holds in 1 of 2 cells"  # 39 vs 30.5, 47
    assert table.loc["DHO above the teacher", "verdict"] == "holds"  # 41.0 and 46.0 vs 39.0
    assert table.loc["DHO ≥ KD (logit)", "verdict"] == "holds in 1 of 2 cells"  # 41.0 vs 37.5; 46.0 vs 47.0
    assert "zero-shot, 4 shots: 46.0 vs 47.0 (within 2 std)" in table.loc["DHO ≥ KD (logit)", "numbers"]
    above_ce = table.loc["KD (logit) / DHO above CE"]
    assert above_ce["verdict"] == "holds in 1 of 2 cells"  # 4 shots: CE 47.0 beats DHO 46.0
    assert "zero-shot, 1 shot: 37.5 / 41.0 vs 30.5" in above_ce["numbers"]
    assert table.loc["gradient cosine of DHO ≥ KD (logit)'s (less conflict)", "verdict"] == "holds"
    frame = claims_frame(runs, rechoose(runs)).set_index("claim")
    assert list(frame.columns) == ["verdict", "teacher", "1 shot", "4 shots"]
    assert list(frame.loc["DHO ≥ KD (logit)"]) == ["holds in 1 of 2 cells", "zero-shot", "yes: 41.0 vs 37.5",
                                                  "no: 46.0 vs 47.0 (within 2 std)"]


def test_figures_are_copied_next_to_the_readme_and_shown(results, tmp_path):
    results_dir, runs = results
    from dho.results.figures import write_figures

    write_figures(runs, results_dir / "demo" / "figures")
    readme = _readme(tmp_path)
    assert main(["readme-results", "--suite", "demo", "--results", str(results_dir), "--readme", str(readme)]) == 0
    assert (tmp_path / "docs" / "demo" / "accuracy_vs_labels.png").is_file()
    assert "![accuracy vs labels](docs/demo/accuracy_vs_labels.png)" in readme.read_text()


def test_missing_markers_or_results_are_one_line_errors(results, tmp_path, capsys):
    results_dir, _ = results
    with pytest.raises(ConfigError, match="needs exactly one line '<!-- BEGIN results suite=ci"):
        replace_block("# no markers\n", "ci", "x")
    readme = _readme(tmp_path, "demo")
    assert main(["readme-results", "--suite", "ci", "--results", str(results_dir), "--readme", str(readme)]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_the_project_readme_has_the_demo_block():
    text = (ROOT / "README.md").read_text()
    begin, end = markers("demo")
    assert text.count(begin) == 1 and text.count(end) == 1
    block = text.split(begin, 1)[1].split(end, 1)[0]
    assert block.lstrip().startswith("From `results/demo/runs.csv`") or "readme-results" in block
