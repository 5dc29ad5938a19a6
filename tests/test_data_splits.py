"""Label splits (few-shot, percent, list) and split manifests."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from dho.cli import main
from dho.data import get_dataset
from dho.data.splits import SplitManifest, make_split
from dho.errors import ConfigError, DataError

from fake_datasets import make_fake_dataset

ROOT_DIR = Path(__file__).resolve().parents[1]


@pytest.fixture
def pets(tmp_path):
    make_fake_dataset("oxford_pets", tmp_path, num_classes=3, per_class=(7, 1, 1), size=8)
    return get_dataset("oxford_pets", tmp_path)


def _check_partition(source, manifest):
    train = source.items("train")
    labeled_paths = [rel for rel, _ in manifest.labeled]
    assert set(labeled_paths).isdisjoint(manifest.unlabeled)
    assert sorted(labeled_paths + manifest.unlabeled) == sorted(rel for rel, _ in train)
    assert set(manifest.labeled) <= set(train)  # labels are the true ones


@pytest.mark.parametrize("shots", [1, 2, 7])
def test_fewshot_counts_and_partition(pets, shots):
    m = make_split(pets, {"kind": "fewshot", "shots": shots}, seed=1)
    assert Counter(label for _, label in m.labeled) == {0: shots, 1: shots, 2: shots}
    assert len(m.unlabeled) == 3 * (7 - shots)
    _check_partition(pets, m)
    assert m.label_name == f"{shots}shot" and m.dataset == "oxford_pets" and m.seed == 1


def test_fewshot_seed_changes_choice(pets):
    chosen = {tuple(make_split(pets, {"kind": "fewshot", "shots": 2}, seed=s).labeled) for s in range(1, 6)}
    assert len(chosen) > 1
    a = make_split(pets, {"kind": "fewshot", "shots": 2}, seed=3)
    assert a.labeled == make_split(pets, {"kind": "fewshot", "shots": 2}, seed=3).labeled


def test_fewshot_too_few_images_names_class(pets):
    with pytest.raises(ConfigError, match=r"class 0 'fake class 0'.*only 7 train image.*at least 8"):
        make_split(pets, {"kind": "fewshot", "shots": 8}, seed=1)


def test_percent_class_balanced(tmp_path):
    make_fake_dataset("imagenet", tmp_path, num_classes=3, per_class=(9, 1, 1), size=8)
    src = get_dataset("imagenet", tmp_path)
    for p, per_class in [(1, 1), (10, 1), (30, 3), (50, 5), (100, 9)]:  # max(1, floor(p/100*9 + 0.5))
        m = make_split(src, {"kind": "percent", "percent": p}, seed=13)
        assert Counter(label for _, label in m.labeled) == {0: per_class, 1: per_class, 2: per_class}, p
        assert per_class == max(1, math.floor(p / 100 * 9 + 0.5))
        _check_partition(src, m)
    assert make_split(src, {"kind": "percent", "percent": 1}, seed=13).label_name == "1pct"


def test_list_split(tmp_path):
    make_fake_dataset("imagenet", tmp_path, num_classes=2, per_class=(3, 1, 1), size=8)
    src = get_dataset("imagenet", tmp_path)
    names = [rel.split("/")[-1] for rel, _ in src.items("train")][::2]
    (src.folder / "1percent.txt").write_text("\n".join(names) + "\n\n")
    m = make_split(src, {"kind": "list", "file": "1percent.txt"}, seed=0)  # found in the dataset folder
    assert sorted(rel.split("/")[-1] for rel, _ in m.labeled) == sorted(names)
    _check_partition(src, m)
    assert m.label_name == "list-1percent"
    other = tmp_path / "mine.txt"
    other.write_text(f"{names[0]}\nn99999999_1.JPEG\nn99999999_2.JPEG\n")
    with pytest.raises(DataError, match=f"{other}: 2 name.*n99999999_1.JPEG, n99999999_2.JPEG"):
        make_split(src, {"kind": "list", "file": str(other)}, seed=0)
    with pytest.raises(DataError, match="label list file not found: nothere.txt"):
        make_split(src, {"kind": "list", "file": "nothere.txt"}, seed=0)


@pytest.mark.parametrize("split, match", [
    ({"kind": "fewshot"}, "split.shots"),
    ({"kind": "fewshot", "shots": 0}, "split.shots"),
    ({"kind": "percent", "percent": 0}, "split.percent"),
    ({"kind": "percent", "percent": 101}, "split.percent"),
    ({"kind": "list"}, "split.file"),
    ({"kind": "random"}, "split.kind"),
])
def test_bad_split_spec(pets, split, match):
    with pytest.raises(ConfigError, match=match):
        make_split(pets, split, seed=1)


def test_manifest_round_trip(pets, tmp_path):
    m = make_split(pets, {"kind": "fewshot", "shots": 2}, seed=1)
    path = tmp_path / "out" / "m.json"
    m.save(path)
    back = SplitManifest.load(path)
    assert back == m
    assert back.hash == m.hash == m.content_hash() and len(m.hash) == 64
    assert isinstance(back.labeled[0], tuple)
    assert not list(path.parent.glob(".*.tmp"))  # atomic write leaves no temp file


def test_manifest_tamper_detected(pets, tmp_path):
    path = tmp_path / "m.json"
    make_split(pets, {"kind": "fewshot", "shots": 2}, seed=1).save(path)
    good = path.read_text()
    data = json.loads(good)
    data["labeled"][0][1] = (data["labeled"][0][1] + 1) % 3
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=f"split manifest {path}: content does not match its hash"):
        SplitManifest.load(path)
    path.write_text(good[: len(good) // 2])
    with pytest.raises(DataError, match=f"split manifest {path} is not valid JSON"):
        SplitManifest.load(path)
    data = json.loads(good)
    del data["seed"]
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="expected keys"):
        SplitManifest.load(path)
    data = json.loads(good)
    data["labeled"][0] = "just-a-path"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match="malformed content"):
        SplitManifest.load(path)


SUBPROCESS_SCRIPT = """
import sys
from dho.data import get_dataset
from dho.data.splits import make_split
src = get_dataset(sys.argv[1], sys.argv[2])
split = {"kind": "fewshot", "shots": 2} if sys.argv[3] == "fewshot" else {"kind": "percent", "percent": 40}
print(make_split(src, split, seed=int(sys.argv[4])).hash)
"""


@pytest.mark.parametrize("kind", ["fewshot", "percent"])
def test_same_manifest_in_separate_processes(tmp_path, kind):
    make_fake_dataset("sun397", tmp_path, num_classes=3, per_class=(5, 1, 1), size=8)
    src = get_dataset("sun397", tmp_path)
    split = {"kind": "fewshot", "shots": 2} if kind == "fewshot" else {"kind": "percent", "percent": 40}
    expected = make_split(src, split, seed=5).hash
    hashes = []
    for hash_seed in ("1", "2"):  # different str-hash randomisation per process
        out = subprocess.run([sys.executable, "-c", SUBPROCESS_SCRIPT, "sun397", str(tmp_path), kind, "5"],
                             capture_output=True, text=True, cwd=ROOT_DIR, timeout=120,
                             env={"PYTHONHASHSEED": hash_seed, "PATH": "/usr/bin:/bin"})
        assert out.returncode == 0, out.stderr
        hashes.append(out.stdout.strip())
    assert hashes == [expected, expected]


def test_split_cli(pets, tmp_path, capsys):
    out = tmp_path / "manifest.json"
    rc = main(["split", "--dataset", "oxford_pets", "--root", str(pets.root), "--kind", "fewshot",
               "--shots", "3", "--seed", "2", "--out", str(out)])
    assert rc == 0
    m = SplitManifest.load(out)
    assert m == make_split(pets, {"kind": "fewshot", "shots": 3}, seed=2)
    assert f"wrote {out}" in capsys.readouterr().out
    rc = main(["split", "--dataset", "oxford_pets", "--root", str(pets.root), "--kind", "percent",
               "--seed", "2", "--out", str(out)])
    assert rc == 2 and "needs --percent" in capsys.readouterr().err
    rc = main(["split", "--dataset", "oxford_pets", "--root", str(pets.root), "--kind", "fewshot",
               "--shots", "50", "--seed", "2", "--out", str(out)])
    assert rc == 2 and "only 7 train image(s)" in capsys.readouterr().err


def test_resolve_split_checks_manifest(pets, tmp_path):
    from dho.data.splits import resolve_split

    split = {"kind": "fewshot", "shots": 2}
    assert resolve_split(pets, split, 4) == make_split(pets, split, 4)
    path = tmp_path / "m.json"
    make_split(pets, split, 4).save(path)
    assert resolve_split(pets, split, 4, path) == make_split(pets, split, 4)
    with pytest.raises(ConfigError, match=f"split manifest {path} was made for .*seed 4.*asks for.*seed 5"):
        resolve_split(pets, split, 5, path)
    with pytest.raises(ConfigError, match="was made for"):
        resolve_split(pets, {"kind": "fewshot", "shots": 3}, 4, path)
    m = make_split(pets, split, 4)
    SplitManifest("oxford_pets", split, 4, [(m.labeled[0][0], (m.labeled[0][1] + 1) % 3)] + m.labeled[1:],
                  m.unlabeled).save(path)
    with pytest.raises(DataError, match=f"{path}: 1 label.*{m.labeled[0][0]}"):
        resolve_split(pets, split, 4, path)
    SplitManifest("oxford_pets", split, 4, m.labeled, m.unlabeled + ["elsewhere/x.jpg"]).save(path)
    with pytest.raises(DataError, match="1 image.*not in the train split.*elsewhere/x.jpg"):
        resolve_split(pets, split, 4, path)
