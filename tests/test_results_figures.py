"""dho.results.figures and dho.results.heads: PNG figures and (alpha, beta) grids from saved logits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dho.cli import main
from dho.errors import CheckpointError, DataError
from dho.results.collect import collect_runs, write_runs_csv
from dho.results.figures import (CAPTIONS, FIGURES, MissingRunFileWarning, accuracy_vs_labels,
                                 alpha_beta_grids, cosine_curves, grad_cosine, read_grad_cosine, write_figures)
from dho.results.style import method_style
from dho.inference import search_alpha_beta
from dho.results.heads import ALPHAS, BETAS, dual_head_methods, load_logits
from test_results_fakes import make_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parents[1]


def _sm(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for seed in (1, 2):
        for labels, acc in (("1shot", 50.0), ("4shot", 60.0)):
            make_run(root, method="dho", labels=labels, seed=seed, test_acc=acc + seed, logits=(30, 4),
                     cosine=[(0, 0.2), (10, 0.1), (20, 0.0)])
            make_run(root, method="kd", labels=labels, seed=seed, test_acc=acc - seed,
                     cosine=[(0, -0.2), (10, -0.3)])
            make_run(root, method="dho", labels=labels, seed=seed, teacher="fs_rn50", test_acc=acc + 2, logits=(30, 4),
                     cosine=[(0, 0.3), (10, 0.3)])
    make_run(root, method="ce", labels="4shot", teacher="none", test_acc=40.0, teacher_test_acc=None)
    return collect_runs(root, "demo")


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 5000, path


def test_write_figures_makes_non_empty_pdfs_and_pngs_and_captions(runs, tmp_path):
    paths = write_figures(runs, tmp_path / "figs")
    assert [p.name for p in paths] == [f"{n}.{e}" for n in FIGURES for e in ("pdf", "png")] + ["captions.md"]
    for path in paths[:-1:2]:
        assert path.read_bytes()[:5] == b"%PDF-", path
    for path in paths[1:-1:2]:
        _assert_png(path)
    assert paths[-1].read_text().count("\n- `") == len(FIGURES) - 1
    assert not list((tmp_path / "figs").glob(".*"))


def test_figures_without_data_still_written(runs, tmp_path):
    only_ce = runs[runs["method"] == "ce"]
    for path in write_figures(only_ce, tmp_path / "figs")[1:-1:2]:
        assert path.read_bytes()[:8] == PNG_MAGIC


def _lines(fig) -> dict[str, tuple[str, str]]:
    """Legend label -> (colour, marker) of every labelled line in the figure."""
    from matplotlib.colors import to_hex
    return {ln.get_label(): (to_hex(ln.get_color()), ln.get_marker()) for ax in fig.axes for ln in ax.get_lines()
            if not ln.get_label().startswith("_")}


def test_methods_keep_their_style_table_colour_and_panels_say_names_in_words(runs):
    fig = accuracy_vs_labels(runs)
    lines = _lines(fig)
    for method in ("dho", "kd", "ce"):
        style = method_style(method)
        assert lines[style.label] == (style.color, style.marker)
    titles = " / ".join(ax.get_title() for ax in fig.axes)
    assert "zero-shot (rn50) teacher" in titles and "Tip-Adapter-F (rn50) teacher" in titles
    assert "Caltech101, ResNet-18" in titles and "zs_rn50" not in titles
    ticks = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert ticks == ["1 shot", "4 shots"]
    # the same method, the same colour, whatever else is plotted
    only_two = accuracy_vs_labels(runs[runs["method"].isin(["dho", "ce"])])
    assert _lines(only_two)["DHO"] == lines["DHO"]


def test_grad_cosine_has_one_panel_per_label_level_and_teacher(runs):
    fig = grad_cosine(runs)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["1 shot, zero-shot (rn50) teacher", "4 shots, zero-shot (rn50) teacher",
                      "1 shot, Tip-Adapter-F (rn50) teacher", "4 shots, Tip-Adapter-F (rn50) teacher"]
    first = fig.axes[0]
    labels = [ln.get_label() for ln in first.get_lines() if not ln.get_label().startswith("_")]
    assert labels == ["KD (logit) (2 runs)", "DHO (2 runs)"]  # the paper's order: KD before DHO
    dho = next(ln for ln in first.get_lines() if ln.get_label() == "DHO (2 runs)")
    np.testing.assert_allclose(dho.get_ydata()[[0, -1]], [0.2, 0.0])  # this panel's runs only


def test_report_captions_say_what_each_figure_shows():
    rst = (ROOT / "workflow" / "report" / "figures.rst").read_text()
    for name, caption in CAPTIONS.items():
        assert f'"{name}"' in rst
        assert " ".join(caption.split()) in " ".join(rst.split()), name


def test_alpha_beta_grid_equals_direct_computation(runs):
    grids = alpha_beta_grids(runs)
    dho_runs = runs[runs["method"] == "dho"]
    assert list(grids) == ["caltech101"] and len(grids["caltech101"]) == len(dho_runs)
    first = load_logits(f"{dho_runs.iloc[0]['run_dir']}/logits_val.npz")
    ce, kd, y = first["ce"].astype(np.float64), first["kd"].astype(np.float64), first["labels"]
    grid = grids["caltech101"][0]
    assert grid.shape == (len(ALPHAS), len(BETAS))
    for i, j in ((0, 0), (10, 2), (20, 6), (7, 4)):
        p = ALPHAS[i] * _sm(ce) + (1 - ALPHAS[i]) * _sm(kd / BETAS[j])
        assert grid[i, j] == pytest.approx(100 * np.mean(p.argmax(1) == y))
    acc, alpha, beta = search_alpha_beta(ce, kd, y)
    j_best, i_best = np.argwhere(grid.T == grid.max())[0]  # the search walks beta-major
    assert (acc, alpha, beta) == pytest.approx((grid.max(), ALPHAS[i_best], BETAS[j_best]))


def test_missing_logits_warn_and_are_left_out(runs):
    victim = runs[runs["method"] == "dho"].iloc[0]["run_dir"]
    (Path(victim) / "logits_val.npz").unlink()
    with pytest.warns(MissingRunFileWarning, match="logits_val.npz"):
        grids = alpha_beta_grids(runs)
    assert len(grids["caltech101"]) == (runs["method"] == "dho").sum() - 1


def test_load_logits_rejects_bad_files(tmp_path):
    bad = tmp_path / "logits_val.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="logits_val.npz"):
        load_logits(bad)
    np.savez(bad, ce=np.zeros((2, 3)), kd=np.zeros((2, 3)), labels=np.array([{"a": 1}, {}], dtype=object))
    with pytest.raises(CheckpointError, match="logits_val.npz"):
        load_logits(bad)
    np.savez(bad, ce=np.zeros((2, 3)), kd=np.zeros((2, 3)))
    with pytest.raises(CheckpointError, match="lacks array"):
        load_logits(bad)
    np.savez(bad, ce=np.zeros((2, 3)), kd=np.zeros((2, 4)), labels=np.zeros(2, dtype=int))
    with pytest.raises(CheckpointError, match="one shape"):
        load_logits(bad)


def test_cosine_curves_interpolate_on_training_fraction(runs):
    curves = cosine_curves(runs, points=5)
    assert sorted(curves["method"].unique()) == ["dho", "kd"]  # ce logged no cosine file
    zs_dho = curves[(curves["method"] == "dho") & (curves["teacher"] == "zs_rn50")]
    one_dho = curves[curves["run_dir"] == zs_dho["run_dir"].iloc[0]]
    np.testing.assert_allclose(one_dho["progress"], [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(one_dho["cosine"], [0.2, 0.15, 0.1, 0.05, 0.0])
    one_kd = curves[curves["method"] == "kd"].groupby("run_dir")["cosine"].apply(list).iloc[0]
    np.testing.assert_allclose(one_kd, [-0.2, -0.225, -0.25, -0.275, -0.3])


def test_read_grad_cosine_checks_columns(tmp_path):
    path = tmp_path / "grad_cosine.csv"
    path.write_text("step,value\n1,0.5\n")
    with pytest.raises(DataError, match="grad_cosine.csv lacks column"):
        read_grad_cosine(path)
    path.write_text("step,cosine\n2,nan\n1,0.5\n")
    assert read_grad_cosine(path).values.tolist() == [[1.0, 0.5]]


def test_cli_figures(runs, tmp_path, capsys):
    runs_csv = write_runs_csv(runs, tmp_path / "runs.csv")
    assert main(["figures", "--runs", str(runs_csv), "--out-dir", str(tmp_path / "f")]) == 0
    assert f"wrote {tmp_path / 'f' / 'grad_cosine.png'}" in capsys.readouterr().out
    _assert_png(tmp_path / "f" / "alpha_beta_surface.png")


def test_dual_head_methods_come_from_the_method_registry():
    names = dual_head_methods()
    assert "dho" in names and "kd" not in names and "ce" not in names


def test_gradient_conflict_figure_from_the_runs_conflict_csv(runs):
    """Fig. 3 (plain): per quantity, the mean over runs of each method on the training-fraction axis."""
    from dho.results.figures import CONFLICT_QUANTITIES, conflict_curves, gradient_conflict

    logged = runs[(runs["teacher"] == "zs_rn50") & runs["method"].isin(["dho", "kd"])]
    for _, row in logged.iterrows():
        sign = 1.0 if row["method"] == "dho" else -1.0
        Path(row["run_dir"], "gradient_conflict.csv").write_text(
            "step,cos_theta,cos_w,inner\n" f"10,{0.1 * sign},{0.2 * sign},{0.3 * sign}\n"
            f"20,{0.3 * sign},{0.4 * sign},nan\n")
    curves = conflict_curves(runs, points=3)
    assert set(curves["run_dir"]) == set(logged["run_dir"]) and len(curves) == 3 * len(logged)
    last = curves[curves["progress"] == 1.0].groupby("method")[["cos_theta", "cos_w", "inner"]].mean()
    np.testing.assert_allclose(last.loc["dho"], [0.3, 0.4, 0.3])  # nan rows are skipped
    np.testing.assert_allclose(last.loc["kd"], [-0.3, -0.4, -0.3])
    fig = gradient_conflict(runs)
    axes = [ax for ax in fig.axes if ax.get_title()]
    # a row per label level (and teacher), a panel per quantity
    assert [ax.get_title() for ax in axes] == [f"{q}\n{lab}, zero-shot (rn50) teacher"
                                               for lab in ("1 shot", "4 shots") for q in CONFLICT_QUANTITIES.values()]
    dho = next(ln for ln in axes[0].get_lines() if ln.get_label().startswith("DHO"))
    np.testing.assert_allclose(dho.get_ydata()[-1], 0.3)
