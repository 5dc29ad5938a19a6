"""Label splits of a dataset's ``train`` split into labeled and unlabeled parts.

``split`` is the ``RunSpec.split`` dict:

* ``{"kind": "fewshot", "shots": N}`` (the authors' ``datasets/utils.py:
  generate_fewshot_dataset``): one ``random.Random(seed)``; classes in order of first
  appearance in the train items (split-file order, or label order for folder datasets);
  per class ``rng.sample(images, N)``, or ``rng.choices(images, k=N)`` (with
  replacement) for a class with fewer than ``N`` images.  Labeled items are listed in
  draw order (so a repeated image appears twice), as the authors' ``train_x``.
* ``{"kind": "percent", "percent": p}`` (the authors' ``datasets/imagenet_percent.py:
  subset_npercent_dataset(balanced=True)``; seed 13 there): the same number of images
  in every class, about ``N*p/K`` (``N`` train images, ``K`` classes), made integral by
  their cascade rounding and raised by ``1/K`` per class until the total reaches
  ``N*p``; then, classes in ascending label order, ``RandomState(seed).choice(class
  indices, n, replace=False)``.  Labeled items are listed in draw order.  NOT ``p`` %
  of each class.
* ``{"kind": "list", "file": F}`` (SimCLRv2 ``1percent.txt``/``10percent.txt``): one
  train file name (basename, e.g. ``n01440764_10026.JPEG``) per line.  ``F`` is used as
  given if it exists, else looked up in the dataset's folder.  The seed is recorded
  but not used.

In every kind the unlabeled set is the rest of ``train`` (labels dropped), in the
source's order; ``list`` labeled items keep the source's order.  The result is a :class:`SplitManifest`; the same
dataset files, split and seed give the same manifest on any machine.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import ConfigError, DataError
from ..io import atomic_write_text, read_json
from ..split import LabelSplit
from .source import DatasetSource

MANIFEST_KEYS = ("dataset", "split", "seed", "labeled", "unlabeled", "hash")


def split_label(split: dict) -> str:
    """Short name of a label split as used in tables and run paths: ``4shot``, ``1pct``,
    ``list-1percent`` (:class:`dho.split.LabelSplit`)."""
    return LabelSplit.from_dict(split).name


@dataclass
class SplitManifest:
    """Which train images are labeled (with labels) and which are unlabeled."""

    dataset: str
    split: dict
    seed: int
    labeled: list[tuple[str, int]]
    unlabeled: list[str]
    hash: str = ""

    def __post_init__(self) -> None:
        self.labeled = [(str(rel), int(label)) for rel, label in self.labeled]
        self.unlabeled = [str(rel) for rel in self.unlabeled]
        if not self.hash:
            self.hash = self.content_hash()

    def _content(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "split": self.split, "seed": self.seed,
                "labeled": [list(x) for x in self.labeled], "unlabeled": self.unlabeled}

    def content_hash(self) -> str:
        """sha256 of the canonical JSON of everything but the hash itself."""
        blob = json.dumps(self._content(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    @property
    def label_name(self) -> str:
        """Short name of the split as used in tables (:func:`split_label`)."""
        return split_label(self.split)

    def save(self, path: str | os.PathLike) -> None:
        """Write the manifest atomically as compact JSON (with its hash)."""
        obj = {**self._content(), "hash": self.content_hash()}
        atomic_write_text(path, json.dumps(obj, sort_keys=True, separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SplitManifest":
        """Read a manifest written by :meth:`save`; DataError if malformed or its hash
        does not match its content (edited or corrupted file)."""
        path = Path(path)
        data = read_json(path, what="split manifest")
        if not isinstance(data, dict) or set(data) != set(MANIFEST_KEYS):
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise DataError(f"split manifest {path}: expected keys {', '.join(MANIFEST_KEYS)}; got {got}")
        ok = (isinstance(data["dataset"], str) and isinstance(data["split"], dict)
              and isinstance(data["seed"], int) and isinstance(data["hash"], str)
              and isinstance(data["labeled"], list) and isinstance(data["unlabeled"], list)
              and all(isinstance(x, list) and len(x) == 2 and isinstance(x[0], str)
                      and isinstance(x[1], int) for x in data["labeled"])
              and all(isinstance(x, str) for x in data["unlabeled"]))
        if not ok:
            raise DataError(f"split manifest {path}: malformed content (expected dataset: str, split: object, "
                            f"seed: int, labeled: [[path, label], ...], unlabeled: [path, ...], hash: str)")
        manifest = cls(dataset=data["dataset"], split=data["split"], seed=data["seed"],
                       labeled=data["labeled"], unlabeled=data["unlabeled"], hash=data["hash"])
        actual = manifest.content_hash()
        if actual != data["hash"]:
            raise DataError(f"split manifest {path}: content does not match its hash "
                            f"(file edited or corrupted): recorded {data['hash'][:16]}, actual {actual[:16]}")
        return manifest


def _by_class(items: list[tuple[str, int]]) -> dict[int, list[str]]:
    """Images per label, labels in order of first appearance, images in source order."""
    groups: dict[int, list[str]] = defaultdict(list)
    for rel, label in items:
        groups[label].append(rel)
    return dict(groups)


def _fewshot(train: list[tuple[str, int]], shots: int, seed: int) -> list[tuple[str, int]]:
    rng = random.Random(seed)
    drawn: list[tuple[str, int]] = []
    for label, members in _by_class(train).items():
        pick = rng.sample(members, shots) if len(members) >= shots else rng.choices(members, k=shots)
        drawn.extend((rel, label) for rel in pick)
    return drawn


def cascade_round(values):
    """The authors' rounding: ``ceil`` where the running sum's fraction exceeds 0.5,
    else ``floor`` (``datasets/imagenet_percent.py: cascade_round``)."""
    import numpy as np

    out = np.zeros(len(values), dtype=np.int64)
    total = 0.0
    for i, v in enumerate(values):
        total += float(v)
        out[i] = math.ceil(v) if total - (total // 1) > 0.5 else math.floor(v)
    return out


def balanced_counts(counts, percent: float):
    """Images drawn per class for ``percent`` % of ``sum(counts)`` (module doc)."""
    import numpy as np

    counts = np.asarray(counts, dtype=np.float64)
    n, k, frac = counts.sum(), len(counts), percent / 100.0
    want = np.maximum(np.minimum(np.full(k, n / k * frac) - 1.0, counts), 1.0)
    rounded = np.minimum(cascade_round(want), counts)
    while rounded.sum() < n * frac:
        want = np.minimum(want + 1.0 / k, counts)
        rounded = np.minimum(cascade_round(want), counts)
    return rounded.astype(np.int64)


def _percent(train: list[tuple[str, int]], percent: float, seed: int) -> list[tuple[str, int]]:
    import numpy as np

    if percent >= 100:
        return list(train)
    labels = np.array([label for _, label in train])
    classes = np.unique(labels)
    counts = balanced_counts([int((labels == c).sum()) for c in classes], percent)
    rs = np.random.RandomState(seed)
    drawn: list[tuple[str, int]] = []
    for c, n in zip(classes, counts):
        for i in rs.choice(np.where(labels == c)[0], int(n), replace=False):
            drawn.append(train[int(i)])
    return drawn


def _resolve_list_file(source: DatasetSource, file: str) -> Path:
    given = Path(file)
    if given.is_file():
        return given
    in_folder = source.folder / file
    if not given.is_absolute() and in_folder.is_file():
        return in_folder
    raise DataError(f"label list file not found: {given} (also looked for {in_folder})")


def _from_list(source: DatasetSource, train: list[tuple[str, int]], file: str) -> set[str]:
    path = _resolve_list_file(source, file)
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read label list file {path}: {e}") from None
    if not names:
        raise DataError(f"label list file {path} is empty: expected one train file name per line")
    by_base: dict[str, list[str]] = defaultdict(list)
    for rel, _ in train:
        by_base[PurePosixPath(rel).name].append(rel)
    missing = [n for n in dict.fromkeys(names) if n not in by_base]
    if missing:
        raise DataError(f"label list file {path}: {len(missing)} name(s) not in the train split of "
                        f"'{source.name}', e.g. {', '.join(missing[:3])}")
    ambiguous = [n for n in names if len(by_base[n]) > 1]
    if ambiguous:
        raise DataError(f"label list file {path}: file name {ambiguous[0]} matches several train images: "
                        f"{', '.join(by_base[ambiguous[0]][:3])}")
    return {by_base[n][0] for n in names}


def make_split(source: DatasetSource, split: dict, seed: int) -> SplitManifest:
    """Split ``source``'s train items into labeled/unlabeled as ``split`` says (see module doc)."""
    if not isinstance(split, dict):
        raise ConfigError(f"split = {split!r}: expected a mapping with a 'kind' key")
    if not (isinstance(seed, int) and not isinstance(seed, bool)):
        raise ConfigError(f"split seed = {seed!r}: expected an integer")
    kind = LabelSplit.from_dict(split, source="split")  # checks kind and value
    train = source.items("train")
    if kind.kind == "fewshot":
        labeled = _fewshot(train, kind.value, seed)
    elif kind.kind == "percent":
        labeled = _percent(train, float(kind.value), seed)
    else:
        chosen = _from_list(source, train, kind.value)
        labeled = [(rel, label) for rel, label in train if rel in chosen]
    chosen = {rel for rel, _ in labeled}
    unlabeled = [rel for rel, _ in train if rel not in chosen]
    return SplitManifest(dataset=source.name, split=dict(split), seed=seed, labeled=labeled, unlabeled=unlabeled)


def resolve_split(source: DatasetSource, split: dict, seed: int,
                  manifest_path: str | os.PathLike | None = None) -> SplitManifest:
    """The label split of a run: ``make_split(source, split, seed)``, or the precomputed
    manifest at ``manifest_path`` after checking that it was made for this dataset,
    split and seed (ConfigError otherwise) and that its images and labels are those of
    ``source``'s train split (DataError otherwise)."""
    if manifest_path is None:
        return make_split(source, split, seed)
    path = Path(manifest_path)
    m = SplitManifest.load(path)
    if (m.dataset, m.split, m.seed) != (source.name, split, seed):
        raise ConfigError(f"split manifest {path} was made for dataset '{m.dataset}', split {m.split}, seed {m.seed}; "
                          f"the run asks for dataset '{source.name}', split {split}, seed {seed}")
    train = dict(source.items("train"))
    unknown = [rel for rel, _ in m.labeled if rel not in train] + [rel for rel in m.unlabeled if rel not in train]
    if unknown:
        raise DataError(f"split manifest {path}: {len(unknown)} image(s) not in the train split of "
                        f"'{source.name}' under {source.image_dir}, e.g. {unknown[0]}")
    wrong = [(rel, label) for rel, label in m.labeled if train[rel] != label]
    if wrong:
        rel, label = wrong[0]
        raise DataError(f"split manifest {path}: {len(wrong)} label(s) differ from the dataset's, e.g. "
                        f"{rel} has label {label} in the manifest but {train[rel]} in '{source.name}'")
    return m
