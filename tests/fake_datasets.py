"""Tiny fake copies of registered datasets in their real on-disk formats (tests only).

``make_fake_dataset(name, root)`` writes real JPEG files plus the real index files
(CoOp split JSON, FGVC-Aircraft list files, ImageNet-style ``classnames.txt`` and class
folders) for any registered dataset.  ``damage(name, root, kind)`` breaks a layout in
one way and returns the path that a check must name.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from dho.data import DATASETS
from dho.data.coop import CoopSplitDataset
from dho.data.datasets.fgvc_aircraft import FGVCAircraft
from dho.data.folders import ClassFolderDataset

DAMAGE_KINDS = ("no_index", "missing_image", "corrupt_image", "bad_json", "label_range", "entry_shape")


def classname(c: int) -> str:
    """Raw class name of fake class ``c`` as written in index files (underscores kept)."""
    return f"fake_class_{c}"


def wnid(c: int) -> str:
    return f"n{1000000 + c:08d}"


def _write_image(path: Path, size: int, rng: np.random.Generator, label: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    pixels[..., label % 3] = 200  # a class-dependent tint
    Image.fromarray(pixels).save(path, format="JPEG", quality=90)


def make_fake_dataset(name: str, root: str | Path, num_classes: int = 3,
                      per_class: tuple[int, int, int] = (6, 2, 2), size: int = 16, seed: int = 0) -> Path:
    """Lay out a fake ``name`` under ``root`` and return the dataset's folder.

    ``per_class`` is the number of (train, val, test) images per class; test-only
    datasets use the test count.  Partial datasets (ImageNet-A/-R) get folders for
    the even class indices only.
    """
    cls = DATASETS.get(name)
    source = cls(root)
    rng = np.random.default_rng(seed)
    source.folder.mkdir(parents=True, exist_ok=True)
    if isinstance(source, CoopSplitDataset):
        _make_coop(source, num_classes, per_class, size, rng)
    elif isinstance(source, FGVCAircraft):
        _make_fgvc(source, num_classes, per_class, size, rng)
    elif isinstance(source, ClassFolderDataset):
        _make_folders(source, num_classes, per_class, size, rng)
    else:
        raise ValueError(f"no fake layout for dataset type {type(source).__name__}")
    return source.folder


def _make_coop(source: CoopSplitDataset, num_classes, per_class, size, rng) -> None:
    split_data: dict[str, list] = {}
    counter = 0
    for split, n in zip(("train", "val", "test"), per_class):
        split_data[split] = []
        for c in range(num_classes):
            for _ in range(n):
                counter += 1
                if source.name == "stanford_cars":  # real: cars_train/00001.jpg, cars_test/00001.jpg
                    rel = f"{'cars_test' if split == 'test' else 'cars_train'}/{counter:05d}.jpg"
                else:
                    rel = f"{classname(c)}/image_{counter:04d}.jpg"
                _write_image(source.image_dir / rel, size, rng, c)
                split_data[split].append([rel, c, classname(c)])
    (source.folder / source.split_file).write_text(json.dumps(split_data, indent=4))


def _make_fgvc(source: FGVCAircraft, num_classes, per_class, size, rng) -> None:
    variants = [f"Variant {c}-100" for c in range(num_classes)]  # real names contain spaces
    (source.folder / "variants.txt").write_text("".join(v + "\n" for v in variants))
    counter = 1000000
    for split, n in zip(("train", "val", "test"), per_class):
        lines = []
        for c in range(num_classes):
            for _ in range(n):
                counter += 1
                image_id = f"{counter:07d}"
                _write_image(source.image_dir / f"{image_id}.jpg", size, rng, c)
                lines.append(f"{image_id} {variants[c]}\n")
        (source.folder / f"images_variant_{split}.txt").write_text("".join(lines))


def _make_folders(source: ClassFolderDataset, num_classes, per_class, size, rng) -> None:
    (source.folder / source.classnames_file).write_text(
        "".join(f"{wnid(c)} {classname(c).replace('_', ' ')}\n" for c in range(num_classes)))
    classes = range(0, num_classes, 2) if source.partial else range(num_classes)
    counts = dict(zip(("train", "val", "test"), per_class))
    written: set[str] = set()
    for split in source.splits:
        sub = source.split_dirs.get(split, "")
        if sub in written:  # ImageNet: val and test are the same folder
            continue
        written.add(sub)
        base = source.image_dir / sub if sub else source.image_dir
        for c in classes:
            folder = str(c) if source.folder_key == "index" else wnid(c)
            for i in range(counts[split]):
                fname = f"{wnid(c)}_{i + 1}.JPEG" if split == "train" else f"{split}_{c}_{i + 1:05d}.JPEG"
                _write_image(base / folder / fname, size, rng, c)
        if source.partial:
            (base / "README.txt").write_text("not an image folder\n")  # as in real ImageNet-A


def _first_item(name: str, root: Path, split: str) -> Path:
    source = DATASETS.get(name)(root)
    split = split if split in source.splits else source.splits[0]
    return source.path(source.items(split)[0][0])


def damage(name: str, root: str | Path, kind: str) -> Path:
    """Break the fake ``name`` under ``root`` in one way (``DAMAGE_KINDS``); return the
    path a check report must name.  ValueError if ``kind`` does not apply to ``name``."""
    root = Path(root)
    source = DATASETS.get(name)(root)
    coop = isinstance(source, CoopSplitDataset)
    fgvc = isinstance(source, FGVCAircraft)
    if kind == "no_index":
        path = (source.split_path if coop else source.folder / "images_variant_train.txt" if fgvc
                else source.classnames_path)
        path.unlink()
        return path
    if kind == "missing_image":
        if coop or fgvc:
            path = _first_item(name, root, "train")
            path.unlink()
            return path
        if source.partial:
            raise ValueError(f"{name}: a missing class folder is allowed (partial dataset)")
        split = source.splits[0]
        sub = source.split_dirs.get(split, "")
        base = source.image_dir / sub if sub else source.image_dir
        path = base / ("0" if source.folder_key == "index" else wnid(0))
        shutil.rmtree(path)
        return path
    if kind == "corrupt_image":
        path = _first_item(name, root, "test")
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])  # a truncated JPEG
        return path
    if kind == "bad_json":
        if not coop:
            raise ValueError(f"{name} has no JSON index")
        path = source.split_path
        text = path.read_text()
        path.write_text(text[: len(text) // 2])
        return path
    if kind == "label_range":
        if coop:
            data = json.loads(source.split_path.read_text())
            data["train"][0][1] = 99
            source.split_path.write_text(json.dumps(data))
            return source.split_path
        if fgvc:
            path = source.folder / "images_variant_val.txt"
            lines = path.read_text().splitlines()
            lines[0] = lines[0].split()[0] + " Unknown Variant 999"
            path.write_text("\n".join(lines) + "\n")
            return path
        split = source.splits[-1]
        sub = source.split_dirs.get(split, "")
        base = source.image_dir / sub if sub else source.image_dir
        path = base / ("99" if source.folder_key == "index" else "n09999999")
        _write_image(path / "x.JPEG", 8, np.random.default_rng(0), 0)
        return path
    if kind == "entry_shape":
        if coop:
            data = json.loads(source.split_path.read_text())
            data["val"][0] = data["val"][0][:2]
            source.split_path.write_text(json.dumps(data))
            return source.split_path
        path = source.folder / ("images_variant_test.txt" if fgvc else source.classnames_file)
        with path.open("a") as f:
            f.write("lonelytoken\n")
        return path
    raise ValueError(f"unknown damage kind {kind!r}; known: {', '.join(DAMAGE_KINDS)}")


def applicable_damage(name: str) -> list[str]:
    """The damage kinds that apply to ``name`` (those :func:`damage` accepts)."""
    source = DATASETS.get(name)("/nonexistent")
    kinds = list(DAMAGE_KINDS)
    if not isinstance(source, CoopSplitDataset):
        kinds.remove("bad_json")
    if isinstance(source, ClassFolderDataset) and source.partial:
        kinds.remove("missing_image")
    return kinds
