"""Every registered dataset read from a tiny fake copy of its real on-disk layout."""

from __future__ import annotations

import json
import pkgutil
import sys

import pytest
import torch

torch.set_num_threads(1)

import dho.data  # noqa: E402
import dho.data.datasets  # noqa: E402
from dho.data import DATASETS, ImageList, eval_transform, get_dataset, train_transform  # noqa: E402
from dho.data.folders import ClassFolderDataset  # noqa: E402
from dho.errors import ConfigError, DataError  # noqa: E402

from fake_datasets import classname, make_fake_dataset  # noqa: E402

FEW_SHOT = ["imagenet", "caltech101", "oxford_pets", "stanford_cars", "flowers102", "food101",
            "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101"]
OOD = ["imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
PER_CLASS = (4, 2, 3)


def test_all_datasets_registered():
    assert set(FEW_SHOT + OOD) <= set(DATASETS.names())


def test_every_dataset_module_is_imported():
    modules = [m.name for m in pkgutil.iter_modules(dho.data.datasets.__path__) if not m.name.startswith("_")]
    assert "caltech101" in modules
    for m in modules:
        assert f"dho.data.datasets.{m}" in sys.modules


@pytest.mark.parametrize("name", FEW_SHOT)
def test_few_shot_loader(tmp_path, name):
    make_fake_dataset(name, tmp_path, num_classes=3, per_class=PER_CLASS, size=12)
    src = get_dataset(name, tmp_path)
    assert src.name == name
    assert src.num_classes == 3
    if name == "fgvc_aircraft":
        assert src.classnames == ["Variant 0-100", "Variant 1-100", "Variant 2-100"]
    else:
        assert src.classnames == [classname(c).replace("_", " ") for c in range(3)]
    # ImageNet's val and test are both images/val (the fake writes the val count there)
    counts = PER_CLASS if name != "imagenet" else PER_CLASS[:2] + PER_CLASS[1:2]
    for split, n in zip(("train", "val", "test"), counts):
        items = src.items(split)
        assert len(items) == 3 * n
        assert sorted(label for _, label in items) == sorted(list(range(3)) * n)
        assert all(src.path(rel).is_file() for rel, _ in items)
    assert src.class_subset is None
    assert src.templates and all(t.count("{}") == 1 for t in src.templates)


def test_imagenet_val_is_test(tmp_path):
    make_fake_dataset("imagenet", tmp_path, per_class=PER_CLASS)
    src = get_dataset("imagenet", tmp_path)
    assert src.items("val") == src.items("test")
    assert all(rel.startswith("val/") for rel, _ in src.items("test"))
    assert all(rel.startswith("train/") for rel, _ in src.items("train"))


@pytest.mark.parametrize("name", OOD)
def test_ood_loader(tmp_path, name):
    make_fake_dataset(name, tmp_path, num_classes=4, per_class=PER_CLASS)
    src = get_dataset(name, tmp_path)
    assert src.splits == ("test",)
    assert src.num_classes == 4  # labels index the full class list
    items = src.items("test")
    labels = sorted({label for _, label in items})
    if name in ("imagenet_a", "imagenet_r"):
        assert labels == [0, 2]
        assert src.class_subset == [0, 2]
    else:
        assert labels == [0, 1, 2, 3]
        assert src.class_subset is None
    assert len(items) == len(labels) * PER_CLASS[2]
    with pytest.raises(DataError, match="has no split 'train'"):
        src.items("train")


def test_imagenet_v2_folders_are_label_indices(tmp_path):
    make_fake_dataset("imagenet_v2", tmp_path, num_classes=3, per_class=PER_CLASS)
    src = get_dataset("imagenet_v2", tmp_path)
    assert all(rel.split("/")[0] == str(label) for rel, label in src.items("test"))


def test_item_order_is_sorted_not_listing_order(tmp_path):
    make_fake_dataset("imagenet", tmp_path, num_classes=2, per_class=PER_CLASS)
    items = get_dataset("imagenet", tmp_path).items("train")
    assert items == sorted(items, key=lambda x: (x[1], x[0]))


def test_split_file_order_and_label_name_mismatch(tmp_path):
    folder = make_fake_dataset("dtd", tmp_path, per_class=PER_CLASS)
    split = folder / "split_zhou_DescribableTextures.json"
    data = json.loads(split.read_text())
    data["train"][1][2] = "another_name"
    split.write_text(json.dumps(data))
    with pytest.raises(DataError, match=f"{split}.*train\\[1\\].*named 'another_name'"):
        get_dataset("dtd", tmp_path).classnames


def test_unknown_dataset_and_missing_folder(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        get_dataset("nope", tmp_path)
    with pytest.raises(DataError, match=str(tmp_path / "oxford_pets")):
        get_dataset("oxford_pets", tmp_path).items("train")


def test_absolute_or_escaping_relpath_rejected(tmp_path):
    folder = make_fake_dataset("eurosat", tmp_path, per_class=PER_CLASS)
    split = folder / "split_zhou_EuroSAT.json"
    data = json.loads(split.read_text())
    data["test"][0][0] = "../../etc/passwd"
    split.write_text(json.dumps(data))
    with pytest.raises(DataError, match="expected a relative path inside"):
        get_dataset("eurosat", tmp_path).items("test")


def test_image_list_and_transforms(tmp_path):
    make_fake_dataset("caltech101", tmp_path, per_class=PER_CLASS, size=20)
    src = get_dataset("caltech101", tmp_path)
    train = ImageList(src, src.items("train"), train_transform(16, scale_min=0.5))
    x, label, index = train[5]
    assert x.shape == (3, 16, 16) and x.dtype == torch.float32
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert (label, index) == (src.items("train")[5][1], 5)
    unlabeled = ImageList(src, [(rel, -1) for rel, _ in src.items("train")], eval_transform(8))
    x, label, index = unlabeled[0]
    assert x.shape == (3, 8, 8) and label == -1 and index == 0
    assert len(unlabeled) == len(src.items("train"))
    batch = next(iter(torch.utils.data.DataLoader(unlabeled, batch_size=4)))
    assert batch[0].shape == (4, 3, 8, 8) and batch[1].tolist() == [-1] * 4 and batch[2].tolist() == [0, 1, 2, 3]


def test_eval_transform_keeps_aspect_then_crops(tmp_path):
    from PIL import Image

    path = tmp_path / "wide.png"
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (0, 0, 6, 20))  # blue left strip: cropped away by the centre crop
    img.save(path)
    x = eval_transform(10)(Image.open(path).convert("RGB"))
    assert x.shape == (3, 10, 10)
    assert float(x[2].max()) < 0.1 and float(x[0].min()) > 0.9


def test_decode_error_names_the_file(tmp_path):
    make_fake_dataset("food101", tmp_path, per_class=PER_CLASS)
    src = get_dataset("food101", tmp_path)
    rel = src.items("val")[0][0]
    src.path(rel).write_bytes(b"not an image at all")
    ds = ImageList(src, src.items("val"), eval_transform(8))
    with pytest.raises(DataError, match=f"cannot decode image {src.path(rel)}"):
        ds[0]
    src.path(rel).unlink()
    with pytest.raises(DataError, match=f"image not found: {src.path(rel)}"):
        ds[0]


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_transform_arguments_validated(bad):
    with pytest.raises(ConfigError, match="image_size"):
        eval_transform(bad)
    with pytest.raises(ConfigError):
        train_transform(16, scale_min=bad)


def test_registry_stamps_name_on_new_dataset(tmp_path):
    from dho.data.coop import CoopSplitDataset

    assert all(isinstance(get_dataset(n, tmp_path), dho.data.DatasetSource) for n in DATASETS.names())
    assert issubclass(DATASETS.get("imagenet"), ClassFolderDataset)
    assert "tiny_test_set" not in DATASETS
    cls = type("Tiny", (CoopSplitDataset,), {"folder_name": "tiny", "split_file": "s.json"})
    DATASETS.register("tiny_test_set", cls)
    try:
        assert get_dataset("tiny_test_set", tmp_path).name == "tiny_test_set"
    finally:
        DATASETS._items.pop("tiny_test_set")
        DATASETS._help.pop("tiny_test_set")


def test_decode_cache_never_returns_a_stale_image(tmp_path, monkeypatch):
    """open_rgb keeps decoded images per process; a file rewritten in place (same path, same
    size: a corrupt replacement, or other pixels) is decoded again, never served from the cache."""
    import numpy as np
    from PIL import Image

    from dho.data import source

    monkeypatch.setattr(source, "_DECODED", {})
    monkeypatch.setattr(source, "_DECODED_BYTES", [0])
    path = tmp_path / "a.png"
    Image.new("RGB", (4, 4), (255, 0, 0)).save(path)
    first = source.open_rgb(path)
    assert source.open_rgb(path).getpixel((0, 0)) == (255, 0, 0) and len(source._DECODED) == 1  # cached
    first.putpixel((0, 0), (0, 0, 0))  # callers get copies: the cached decode is unchanged
    assert source.open_rgb(path).getpixel((0, 0)) == (255, 0, 0)
    Image.new("RGB", (4, 4), (0, 255, 0)).save(path)  # rewritten in place
    assert np.asarray(source.open_rgb(path)).tolist() == np.asarray(Image.new("RGB", (4, 4), (0, 255, 0))).tolist()
    size = path.stat().st_size
    path.write_bytes(b"\0" * size)  # corrupt, the same size
    with pytest.raises(DataError, match=r"cannot decode image .*a\.png"):
        source.open_rgb(path)
    path.unlink()
    with pytest.raises(DataError, match=r"image not found: .*a\.png"):
        source.open_rgb(path)
