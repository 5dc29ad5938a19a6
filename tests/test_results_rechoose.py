"""dho.results.rechoose: the inference rule re-chosen on saved logits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dho.cli import main
from dho.results.collect import collect_runs, write_runs_csv
from dho.results.heads import ALPHAS, BETAS, load_logits
from dho.results.rechoose import RECHOOSE_COLUMNS, rechoose, write_rechoose
from test_results_fakes import make_run


def _sm(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _acc(p, y):
    return 100 * np.mean(p.argmax(1) == y)


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    for seed in (1, 2, 3):
        make_run(root, method="dho", seed=seed, logits=(50, 5))
    make_run(root, method="dho", dataset="dtd", logits=(20, 3))
    make_run(root, method="dho2", logits=(20, 3))
    make_run(root, method="kd")
    return collect_runs(root, "demo")


def test_rechoose_equals_direct_computation(runs):
    table = rechoose(runs)
    assert list(table.columns) == RECHOOSE_COLUMNS
    assert sorted(table["method"].unique()) == ["dho"]
    assert len(table) == 4 * 5
    for run_dir, got in table.groupby("run_dir"):
        val = load_logits(f"{run_dir}/logits_val.npz")
        test = load_logits(f"{run_dir}/logits_test.npz")
        vce, vkd, vy = (val[k].astype(np.float64) for k in ("ce", "kd", "labels"))
        tce, tkd, ty = (test[k].astype(np.float64) for k in ("ce", "kd", "labels"))
        best, pair = -1.0, None
        for b in BETAS:  # beta-major, first best pair wins (dho.inference.search_alpha_beta)
            for a in ALPHAS:
                acc = _acc(a * _sm(vce) + (1 - a) * _sm(vkd / b), vy)
                if acc > best:
                    best, pair = acc, (a, b)
        rows = got.set_index("rule")
        assert rows.loc["fixed", "test_acc"] == pytest.approx(_acc(0.5 * _sm(tce) + 0.5 * _sm(tkd), ty))
        assert (rows.loc["searched", "alpha"], rows.loc["searched", "beta"]) == pair
        assert rows.loc["searched", "val_acc"] == pytest.approx(best)
        a, b = pair
        assert rows.loc["searched", "test_acc"] == pytest.approx(_acc(a * _sm(tce) + (1 - a) * _sm(tkd / b), ty))
        assert rows.loc["ce_only", "test_acc"] == pytest.approx(_acc(tce, ty))
        assert rows.loc["kd_only", "test_acc"] == pytest.approx(_acc(tkd, ty))
        assert rows.loc["ce_only", "val_acc"] == pytest.approx(_acc(vce, vy))
        # Eq. 42: per-image alpha from the heads' entropies, beta 1
        ent = lambda p: -(p * np.log(p)).sum(-1, keepdims=True)  # noqa: E731
        w = np.exp(-ent(_sm(tce))) / (np.exp(-ent(_sm(tce))) + np.exp(-ent(_sm(tkd))))
        assert rows.loc["entropy", "test_acc"] == pytest.approx(_acc(w * _sm(tce) + (1 - w) * _sm(tkd), ty))
        assert rows.loc["entropy", "alpha"] == pytest.approx(w.mean(), rel=1e-5)


def test_rechoose_method_selection(runs):
    assert sorted(rechoose(runs, methods=("dho2",))["method"].unique()) == ["dho2"]


def test_write_rechoose_csv_and_markdown(runs, tmp_path):
    csv_path, md_path = write_rechoose(runs, tmp_path / "tables" / "alpha_beta.csv")
    table = pd.read_csv(csv_path)
    assert md_path.name == "alpha_beta.md"
    md = md_path.read_text()
    fixed = table[(table["dataset"] == "caltech101") & (table["rule"] == "fixed")]["test_acc"].to_numpy()
    cell = f"{fixed.mean():.1f} ± {fixed.std(ddof=1):.1f} (n=3)"
    rows = [[c.strip() for c in ln.strip("|").split(" | ")] for ln in md.splitlines() if ln.startswith("|")]
    assert rows[0][:3] == ["dataset", "labels", "fixed α=0.5, β=1"]  # one student, teacher, method: no column
    assert ["Caltech101", "4 shots", cell] == rows[2][:3]
    assert ["DTD", "4 shots"] == rows[3][:2]


def test_cli_rechoose(runs, tmp_path, capsys):
    runs_csv = write_runs_csv(runs, tmp_path / "runs.csv")
    out = tmp_path / "t" / "alpha_beta.csv"
    assert main(["rechoose", "--runs", str(runs_csv), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert len(pd.read_csv(out)) == 4 * 5  # 4 dual-head runs x 5 rules
    empty = write_runs_csv(runs[runs["method"] == "kd"], tmp_path / "kd.csv")
    assert main(["rechoose", "--runs", str(empty), "--out", str(tmp_path / "e.csv")]) == 0
    assert "No dual-head run" in (tmp_path / "e.md").read_text()


def test_entropy_alpha_hand_case():
    from dho.inference import combine_heads_entropy, entropy_alpha

    # CE head one-hot-ish (H ~ 0), KD head uniform over 2 classes (H = log 2): alpha = 1 / (1 + 1/2) = 2/3
    ce = np.array([[60.0, 0.0]])
    kd = np.array([[0.0, 0.0]])
    assert float(entropy_alpha(ce, kd)[0]) == pytest.approx(2 / 3, rel=1e-6)
    assert combine_heads_entropy(ce, kd).numpy()[0] == pytest.approx([2 / 3 + 1 / 6, 1 / 6], rel=1e-6)
    # equal heads: alpha 1/2
    assert float(entropy_alpha(kd, kd)[0]) == pytest.approx(0.5)


def test_markdown_says_when_val_is_the_test_set(tmp_path):
    """ImageNet's val is its test set: the re-chosen 'searched on val' row is flagged."""
    from dho.results.rechoose import to_markdown

    root = tmp_path / "runs"
    make_run(root, method="dho", dataset="imagenet", logits=(20, 3))
    make_run(root, method="dho", dataset="dtd", logits=(20, 3))
    md = to_markdown(rechoose(collect_runs(root, "demo")))
    assert "ImageNet: val is the test set" in md and "DTD: val" not in md
    md_dtd = to_markdown(rechoose(collect_runs(root, "demo").query("dataset == 'dtd'")))
    assert "val is the test set" not in md_dtd
