"""``dho data check`` and ``assert_dataset_ok`` on good and damaged fake layouts."""

from __future__ import annotations

import json
import re

import pytest

from dho.cli import main
from dho.data import DATASETS, assert_dataset_ok, get_dataset
from dho.errors import DataError

from fake_datasets import DAMAGE_KINDS, applicable_damage, damage, make_fake_dataset

CASES = [(name, kind) for name in DATASETS.names() for kind in applicable_damage(name)]


def _check(root, *extra):
    return main(["data", "check", "--root", str(root), "--sample", "100", *extra])


def test_good_layouts_pass(tmp_path, capsys):
    for name in ("caltech101", "fgvc_aircraft", "imagenet", "imagenet_r"):
        make_fake_dataset(name, tmp_path, size=8)
    rc = _check(tmp_path)
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "caltech101       ok" in out and "imagenet_r       ok" in out
    assert "dtd              MISSING" in out  # absent, but not an error without --dataset
    rc = _check(tmp_path, "--dataset", "caltech101", "--dataset", "imagenet")
    assert rc == 0


def test_named_missing_dataset_fails(tmp_path, capsys):
    make_fake_dataset("dtd", tmp_path, size=8)
    assert _check(tmp_path, "--dataset", "dtd", "--dataset", "ucf101") == 1
    out = capsys.readouterr().out
    assert (f"ucf101           MISSING  (no folder {tmp_path / 'ucf101'}; expected "
            f"{tmp_path / 'ucf101' / 'split_zhou_UCF101.json'} (CoOp split JSON)") in out


def test_empty_root_fails_saying_where_it_looked_and_what_it_expected(tmp_path, capsys):
    assert _check(tmp_path) == 1
    captured = capsys.readouterr()
    assert "0 present" in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: no dataset found under {tmp_path}: expected dataset folders")
    assert _check(tmp_path, "--json") == 1
    assert json.loads(capsys.readouterr().out)["ok"] is False


def test_root_one_level_off_fails_with_a_hint(tmp_path, capsys):
    make_fake_dataset("dtd", tmp_path / "data", size=8)
    assert _check(tmp_path / "data" / "dtd") == 1
    assert f"looks like the folder of dataset 'dtd': use --root {tmp_path / 'data'}" in capsys.readouterr().err
    assert _check(tmp_path) == 1
    assert f"{tmp_path / 'data'} holds dataset folders: use --root {tmp_path / 'data'}" in capsys.readouterr().err
    assert _check(tmp_path / "data") == 0


def test_suite_checks_its_configured_datasets_under_its_data_root(tmp_path, capsys):
    make_fake_dataset("dtd", tmp_path / "d", size=8)
    config = tmp_path / "config.yaml"
    config.write_text(f"suites:\n  s:\n    data_root: {tmp_path / 'd'}\n    datasets: [dtd, eurosat]\n"
                      f"  t:\n    data_root: {tmp_path / 'd'}\n    datasets: [dtd]\n")
    args = ["data", "check", "--config", str(config), "--suite"]
    assert main(args + ["s"]) == 1
    assert f"eurosat          MISSING  (no folder {tmp_path / 'd' / 'eurosat'}" in capsys.readouterr().out
    assert main(args + ["t"]) == 0
    assert main(args + ["u"]) == 2
    assert "--suite u: no such suite in" in capsys.readouterr().err
    config.write_text("suites:\n  s: [\n")
    assert main(args + ["s"]) == 2
    assert re.search(r"error: config file .* is not valid YAML: line \d+, column \d+: ", capsys.readouterr().err)


def test_missing_root_and_unknown_name(tmp_path, capsys):
    assert _check(tmp_path / "nope") == 2
    assert f"data root not found: {tmp_path / 'nope'}" in capsys.readouterr().err
    assert _check(tmp_path, "--dataset", "cifar10") == 2
    assert "unknown dataset 'cifar10'" in capsys.readouterr().err


@pytest.mark.parametrize("name, kind", CASES, ids=[f"{n}-{k}" for n, k in CASES])
def test_each_damage_is_reported_with_its_path(tmp_path, capsys, name, kind):
    make_fake_dataset(name, tmp_path, num_classes=3, per_class=(2, 1, 1), size=8)
    neighbour = "dtd" if name != "dtd" else "eurosat"  # an intact neighbour stays ok
    make_fake_dataset(neighbour, tmp_path, num_classes=2, per_class=(2, 1, 1), size=8)
    path = damage(name, tmp_path, kind)
    rc = _check(tmp_path)
    out = capsys.readouterr().out
    assert rc == 1
    assert str(path) in out
    assert f"{neighbour:<16} ok" in out
    with pytest.raises(DataError, match=f"dataset '{name}':.*{path}"):
        assert_dataset_ok(get_dataset(name, tmp_path), sample=100)


def test_damage_kinds_cover_issue_list():
    assert set(DAMAGE_KINDS) == {"no_index", "missing_image", "corrupt_image", "bad_json", "label_range",
                                 "entry_shape"}
    assert applicable_damage("caltech101") == list(DAMAGE_KINDS)


def test_json_output(tmp_path, capsys):
    make_fake_dataset("eurosat", tmp_path, num_classes=2, per_class=(3, 1, 2), size=8)
    make_fake_dataset("stanford_cars", tmp_path, num_classes=2, per_class=(3, 1, 2), size=8)
    missing = damage("stanford_cars", tmp_path, "missing_image")
    rc = _check(tmp_path, "--dataset", "eurosat", "--dataset", "stanford_cars", "--dataset", "sun397", "--json")
    report = json.loads(capsys.readouterr().out)
    assert rc == 1 and report["ok"] is False and report["root"] == str(tmp_path)
    by_name = {d["dataset"]: d for d in report["datasets"]}
    assert list(by_name) == ["eurosat", "stanford_cars", "sun397"]
    eurosat = by_name["eurosat"]
    assert eurosat == {"dataset": "eurosat", "folder": str(tmp_path / "eurosat"), "found": True, "ok": True,
                       "counts": {"train": 6, "val": 2, "test": 4}, "num_classes": 2, "decoded": 12,
                       "problems": [], "layout": f"{tmp_path / 'eurosat' / 'split_zhou_EuroSAT.json'} (CoOp split "
                                                 f"JSON) and the images under {tmp_path / 'eurosat' / '2750'}/",
                       "paper": {"classes": {"found": 2, "paper": 10}, "train": {"found": 6, "paper": 13500},
                                 "val": {"found": 2, "paper": 5400}, "test": {"found": 4, "paper": 8100}},
                       "paper_differs": ["classes 2 (paper 10)", "train 6 (paper 13500)", "val 2 (paper 5400)",
                                         "test 4 (paper 8100)"]}
    cars = by_name["stanford_cars"]
    assert cars["ok"] is False and cars["counts"]["train"] == 6
    assert cars["problems"] == [f"image not found: {missing} (listed in the index of {tmp_path / 'stanford_cars'})"]
    assert by_name["sun397"]["found"] is False and by_name["sun397"]["ok"] is False


def test_sample_limits_decoding(tmp_path, capsys):
    make_fake_dataset("flowers102", tmp_path, num_classes=2, per_class=(3, 2, 2), size=8)
    assert _check(tmp_path, "--dataset", "flowers102", "--json", "--sample", "1") == 0
    assert json.loads(capsys.readouterr().out)["datasets"][0]["decoded"] == 3  # one per split


def test_many_missing_images_are_summarised(tmp_path):
    make_fake_dataset("ucf101", tmp_path, num_classes=3, per_class=(3, 1, 1), size=8)
    src = get_dataset("ucf101", tmp_path)
    for rel, _ in src.items("train"):
        src.path(rel).unlink()
    report = src.check(sample=2)
    assert sum(p.startswith("image not found") for p in report.problems) == 5
    assert f"4 more listed images not found under {src.image_dir}" in report.problems
    assert report.counts == {"train": 9, "val": 3, "test": 3}


def test_assert_dataset_ok_passes_and_loads(tmp_path):
    make_fake_dataset("caltech101", tmp_path, size=8)
    src = get_dataset("caltech101", tmp_path)
    report = assert_dataset_ok(src)
    assert report.ok and report.num_classes == 3
    with pytest.raises(DataError, match=f"dataset 'dtd' not found: expected the folder {tmp_path / 'dtd'}"):
        assert_dataset_ok(get_dataset("dtd", tmp_path))


@pytest.mark.parametrize("edit, message", [
    (lambda d: [d["train"]], "got a JSON list, expected a JSON object"),
    (lambda d: {k: v for k, v in d.items() if k != "val"}, "key 'val': no such key, expected a list"),
    (lambda d: {**d, "test": {"a": 1}}, "key 'test': a dict, expected a list"),
    (lambda d: {**d, "train": d["train"] + [[d["train"][0][0], 0, "fake_class_0"]]}, "image listed twice in 'train'"),
    (lambda d: {**d, "val": [[d["val"][0][0], -1, "fake_class_0"]] + d["val"][1:]}, "label -1 is negative"),
    (lambda d: {**d, "val": [[d["val"][0][0], True, "fake_class_0"]] + d["val"][1:]}, "expected \\[relpath"),
])
def test_coop_split_file_problems(tmp_path, edit, message):
    folder = make_fake_dataset("oxford_pets", tmp_path, num_classes=2, per_class=(2, 1, 1), size=8)
    split = folder / "split_zhou_OxfordPets.json"
    split.write_text(json.dumps(edit(json.loads(split.read_text()))))
    report = get_dataset("oxford_pets", tmp_path).check(sample=1)
    assert not report.ok
    assert any(str(split) in p and re.search(message, p) for p in report.problems), report.problems
    with pytest.raises(DataError, match=str(split)):
        get_dataset("oxford_pets", tmp_path).items("train")


def test_counts_compared_with_the_papers_table12(tmp_path, capsys):
    make_fake_dataset("caltech101", tmp_path, size=8)
    assert _check(tmp_path, "--dataset", "caltech101", "--json") == 0  # a different size is not a problem
    rec = json.loads(capsys.readouterr().out)["datasets"][0]
    assert rec["paper"]["classes"] == {"found": 3, "paper": 100}
    assert rec["paper"]["train"]["paper"] == 4128 and rec["paper"]["test"]["paper"] == 2465
    assert "classes 3 (paper 100)" in rec["paper_differs"]
    assert _check(tmp_path, "--dataset", "caltech101") == 0
    out = capsys.readouterr().out
    assert "differs from the paper's Table 12: classes 3 (paper 100), train " in out
    assert "image/class counts vs the paper's Table 12: 0 of 1 dataset(s) equal; differ: caltech101" in out


def test_table12_counts_of_the_real_datasets_are_equal():
    from dho.data.source import CheckReport, paper_counts

    def differs(name, counts, classes):
        return CheckReport(name, "f", True, counts=counts, paper=paper_counts(name, counts, classes)).paper_differs

    assert differs("stanford_cars", {"train": 6509, "val": 1635, "test": 8041}, 196) == []
    assert differs("imagenet", {"train": 1_281_167, "val": 50_000, "test": 50_000}, 1000) == []  # 1.28M
    assert differs("imagenet_a", {"test": 7500}, 200) == []
    assert differs("eurosat", {"train": 13500, "val": 5400, "test": 8100}, 10) == []
    assert differs("oxford_pets", {"train": 2944, "val": 736, "test": 3669}, 37) == []
    assert differs("sun397", {"train": 15880, "val": 3970, "test": 19849}, 397) == ["test 19849 (paper 19850)"]
    assert paper_counts("shapes", {"train": 10}, 3) == {}  # not in the paper
