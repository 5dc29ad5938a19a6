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


class _ListSource:
    """Just enough of a DatasetSource for make_split: a name and train items."""

    def __init__(self, train):
        self.name = "synthetic"
        self._train = train

    def items(self, split):
        assert split == "train"
        return list(self._train)


def _authors_fewshot(train, shots, seed):
    """Re-implementation, from reading erjui/DHO datasets/utils.py
    (generate_fewshot_dataset, repeat=True, after random.seed(1) in train_others.py),
    of which (path, label) items become the labeled set, in their order."""
    import random as global_random

    state = global_random.getstate()
    try:
        global_random.seed(seed)
        tracker = {}
        for item in train:
            tracker.setdefault(item[1], []).append(item)
        out = []
        for label in tracker:
            items = tracker[label]
            if len(items) >= shots:
                out.extend(global_random.sample(items, shots))
            else:
                out.extend(global_random.choices(items, k=shots))
        return out
    finally:
        global_random.setstate(state)


def _synthetic_train(sizes, shuffle_seed=None):
    """Train items of a synthetic dataset: class c has sizes[c] images; optionally the
    split file lists them in a shuffled order (classes then first appear out of order)."""
    import random as global_random

    train = [(f"c{c}/img{i:05d}.jpg", c) for c, n in enumerate(sizes) for i in range(n)]
    if shuffle_seed is not None:
        global_random.Random(shuffle_seed).shuffle(train)
    return train


@pytest.mark.parametrize("shots", [1, 4, 16])
def test_fewshot_draw_equals_authors_algorithm(shots):
    sizes = [20, 3, 17, 40, 9, 16, 2]  # some classes below 16: drawn with replacement
    train = _synthetic_train(sizes, shuffle_seed=5)
    assert [label for _, label in train[:3]] != [0, 1, 2]  # first appearance != label order
    m = make_split(_ListSource(train), {"kind": "fewshot", "shots": shots}, seed=1)
    assert m.labeled == _authors_fewshot(train, shots, 1)
    drawn = {rel for rel, _ in m.labeled}
    assert m.unlabeled == [rel for rel, _ in train if rel not in drawn]
    assert Counter(label for _, label in m.labeled) == {c: shots for c in range(len(sizes))}


def test_fewshot_small_class_drawn_with_replacement(pets):
    m = make_split(pets, {"kind": "fewshot", "shots": 8}, seed=1)  # each class has 7 images
    assert len(m.labeled) == 24 and len(set(m.labeled)) < 24  # random.choices repeats
    assert m.unlabeled == [rel for rel, _ in pets.items("train") if rel not in {r for r, _ in m.labeled}]


def _authors_balanced_subset(labels, percent, seed):
    """Re-implementation, from reading erjui/DHO datasets/imagenet_percent.py
    (subset_npercent_dataset, balanced=True), of the labeled indices in their order."""
    import numpy as np

    def rounding(arr):  # their cascade_round
        s, out = 0.0, np.zeros_like(arr)
        for i, a in enumerate(arr):
            s += a
            out[i] = math.ceil(a) if s - (s // 1) > .5 else math.floor(a)
        return out.astype(np.int32)

    frac = percent / 100.0
    np_state = np.random.get_state()
    try:
        np.random.seed(seed)
        y = np.array(labels)
        unique, counts = np.unique(y, return_counts=True)
        per_class = np.maximum(np.minimum(np.ones_like(counts) * ((y.shape[0] / counts.shape[0]) * frac) - 1.0,
                                          counts), 1.0)
        rounded = np.minimum(rounding(per_class), counts)
        while sum(rounded) < y.shape[0] * frac:
            per_class = np.minimum(per_class + (1 / counts.shape[0]), counts)
            rounded = np.minimum(rounding(per_class), counts)
        return list(np.hstack([np.random.choice(np.where(y == unique[k])[0], int(rounded[k]), replace=False)
                               for k in range(unique.shape[0])]))
    finally:
        np.random.set_state(np_state)


@pytest.mark.parametrize("percent", [1, 10])
def test_percent_subset_equals_authors_algorithm(percent):
    import numpy as np

    sizes = np.random.RandomState(0).randint(732, 1301, size=1000)  # ImageNet-like class sizes
    train = _synthetic_train(sizes)
    m = make_split(_ListSource(train), {"kind": "percent", "percent": percent}, seed=13)
    expected = [train[i] for i in _authors_balanced_subset([label for _, label in train], percent, 13)]
    assert m.labeled == expected
    total = int(sizes.sum())
    assert len(m.labeled) >= total * percent / 100  # topped up to at least N*p
    per_class = Counter(label for _, label in m.labeled)
    assert max(per_class.values()) - min(per_class.values()) <= 1  # class-balanced, not p % per class
    assert len(m.unlabeled) == total - len(m.labeled)


def test_percent_small_classes(tmp_path):
    make_fake_dataset("imagenet", tmp_path, num_classes=3, per_class=(9, 1, 1), size=8)
    src = get_dataset("imagenet", tmp_path)
    for p in (1, 10, 30, 50):
        m = make_split(src, {"kind": "percent", "percent": p}, seed=13)
        labels = [label for _, label in src.items("train")]
        assert m.labeled == [src.items("train")[i] for i in _authors_balanced_subset(labels, p, 13)], p
        _check_partition(src, m)
    assert len(make_split(src, {"kind": "percent", "percent": 100}, seed=13).labeled) == 27
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
               "--shots", "0", "--seed", "2", "--out", str(out)])
    assert rc == 2 and "dho split --shots 0: expected an integer >= 1" in capsys.readouterr().err


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
