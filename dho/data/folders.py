"""Datasets stored as one folder per class (ImageNet and its OOD variants).

Class names and their order come from a ``classnames.txt`` with lines
``<wnid> <class name>`` (CoOp's file; line ``i`` is label ``i``).  Items are listed
in sorted order, so the same files give the same items on any machine.
"""

from __future__ import annotations

import os
from pathlib import Path

from .source import DatasetSource, Index, clean_classname, is_image_file


def read_classnames(path: Path, problems: list[str]) -> list[tuple[str, str]]:
    """``[(wnid, classname), ...]`` from a CoOp ``classnames.txt``; problems appended."""
    if not path.is_file():
        problems.append(f"class name file not found: {path} (expected lines '<wnid> <class name>')")
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        problems.append(f"cannot read class name file {path}: {e}")
        return []
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        parts = line.strip().split(maxsplit=1)
        if len(parts) != 2:
            problems.append(f"{path} line {n}: {line.strip()!r}: expected '<wnid> <class name>'")
            continue
        wnid, name = parts
        if wnid in seen:
            problems.append(f"{path} line {n}: folder name '{wnid}' appears twice")
            continue
        seen.add(wnid)
        out.append((wnid, name.strip()))
    if not out and not problems:
        problems.append(f"class name file {path} is empty (expected lines '<wnid> <class name>')")
    return out


def list_images(folder: Path) -> list[str]:
    """Sorted image file names directly inside ``folder`` (hidden/non-image files skipped)."""
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if is_image_file(e.name) and e.is_file())


def list_subfolders(folder: Path) -> list[str]:
    """Sorted names of the non-hidden sub-folders of ``folder``."""
    with os.scandir(folder) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


class ClassFolderDataset(DatasetSource):
    """``<image_dir>/<class folder>/<image>`` with class names from ``classnames.txt``.

    ``split_dirs`` maps each split to a sub-folder of ``image_dir`` ("" = image_dir).
    Class folders are named by wnid (``folder_key = "wnid"``) or by label index
    (``folder_key = "index"``, ImageNet-V2).  ``partial = True`` allows a subset of the
    classes (ImageNet-A/-R): labels stay indices into the full class list and
    :attr:`class_subset` lists the labels that occur; otherwise a class without a
    folder is a problem.
    """

    classnames_file: str = "classnames.txt"
    split_dirs: dict[str, str] = {}
    folder_key: str = "wnid"
    partial: bool = False
    items_from_listing = True
    # ImageNet-1k and its OOD sets: the authors prompt with the refined class names of their
    # datasets/imagenet.py (= open_clip's IMAGENET_CLASSNAMES, in sorted-wnid order)
    imagenet_prompt_names: bool = False

    @property
    def classnames_path(self) -> Path:
        return self.folder / self.classnames_file

    def layout(self) -> str:
        subs = dict.fromkeys(self.split_dirs.get(split, "") for split in self.splits)
        dirs = ", ".join(f"{self.image_dir / sub if sub else self.image_dir}/<class folder>/" for sub in subs)
        return f"{self.classnames_path} and images in {dirs}"

    @property
    def class_subset(self) -> list[int] | None:
        if not self.partial:
            return None
        labels = {label for split in self.splits for _, label in self._load().items[split]}
        return sorted(labels)

    def prompt_classnames(self, prompts: str = "authors") -> list[str]:
        """ImageNet with its 1000 classes in sorted-wnid order and prompt set ``authors``:
        the authors' refined names (open_clip ``IMAGENET_CLASSNAMES``); else :attr:`classnames`."""
        names = super().prompt_classnames(prompts)
        if not (self.imagenet_prompt_names and prompts == "authors" and len(names) == 1000):
            return names
        wnids = [wnid for wnid, _ in read_classnames(self.classnames_path, [])]
        if wnids != sorted(wnids):
            return names
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        return list(IMAGENET_CLASSNAMES)

    def _scan(self, problems: list[str]) -> Index:
        pairs = read_classnames(self.classnames_path, problems)
        classnames = [clean_classname(name) for _, name in pairs]
        if self.folder_key == "index":
            label_of = {str(i): i for i in range(len(pairs))}
            expected = f"a class index 0..{len(pairs) - 1}"
        else:
            label_of = {wnid: i for i, (wnid, _) in enumerate(pairs)}
            expected = f"a folder name listed in {self.classnames_path}"
        items: dict[str, list[tuple[str, int]]] = {}
        scanned: dict[str, list[tuple[str, int]]] = {}
        for split in self.splits:
            sub = self.split_dirs.get(split, "")
            if sub in scanned:  # ImageNet: val and test are the same folder
                items[split] = list(scanned[sub])
                continue
            items[split] = scanned[sub] = []
            base = self.image_dir / sub if sub else self.image_dir
            if not base.is_dir():
                problems.append(f"image folder not found: {base} (expected one sub-folder per class)")
                continue
            if not pairs:
                continue
            try:
                present = list_subfolders(base)
            except OSError as e:
                problems.append(f"cannot list image folder {base}: {e.strerror or e}")
                continue
            for name in present:
                if name not in label_of:
                    problems.append(f"unexpected class folder {base / name}: expected {expected}")
            if not self.partial:
                missing = [name for name in label_of if name not in set(present)]
                if missing:
                    problems.append(f"{len(missing)} class folder(s) missing under {base}, e.g. {base / missing[0]}")
            for name in sorted((n for n in present if n in label_of), key=label_of.get):
                prefix = f"{sub}/{name}" if sub else name
                try:
                    files = list_images(base / name)
                except OSError as e:
                    problems.append(f"cannot list class folder {base / name}: {e.strerror or e}")
                    continue
                items[split].extend((f"{prefix}/{f}", label_of[name]) for f in files)
        return Index(classnames=classnames, items=items)
