"""Label splits of a dataset's ``train`` split into labeled and unlabeled parts.

``split`` is the ``RunSpec.split`` dict:

* ``{"kind": "fewshot", "shots": N}`` (CoOp style): one ``random.Random(seed)`` draws
  ``N`` images per class with ``rng.sample``, classes in ascending label order, each
  class's images in the source's order (split-file order or sorted listing).  A class
  with fewer than ``N`` train images is a :class:`~dho.errors.ConfigError`.
* ``{"kind": "percent", "percent": p}`` (class-balanced, DHO's ImageNet code; the card
  uses seed 13): one ``numpy.random.RandomState(seed)`` permutes each class's images in
  ascending label order and keeps the first ``max(1, floor(p/100 * count + 0.5))``.
* ``{"kind": "list", "file": F}`` (SimCLRv2 ``1percent.txt``/``10percent.txt``): one
  train file name (basename, e.g. ``n01440764_10026.JPEG``) per line.  ``F`` is used as
  given if it exists, else looked up in the dataset's folder.  The seed is recorded
  but not used.

In every kind the unlabeled set is the rest of ``train`` (labels dropped).  Labeled
items keep the source's order.  The result is a :class:`SplitManifest`; the same
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
from .source import DatasetSource

MANIFEST_KEYS = ("dataset", "split", "seed", "labeled", "unlabeled", "hash")


def split_label(split: dict) -> str:
    """Short name of a label split as used in tables and run paths: ``4shot``, ``1pct``,
    ``list-1percent``."""
    kind = split.get("kind")
    if kind == "fewshot":
        return f"{split['shots']}shot"
    if kind == "percent":
        p = split["percent"]
        return f"{int(p) if float(p).is_integer() else p}pct"
    return f"list-{PurePosixPath(str(split.get('file', ''))).stem}"


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
    groups: dict[int, list[str]] = defaultdict(list)
    for rel, label in items:
        groups[label].append(rel)
    return dict(sorted(groups.items()))


def _fewshot(source: DatasetSource, train: list[tuple[str, int]], shots: int, seed: int) -> set[str]:
    rng = random.Random(seed)
    chosen: set[str] = set()
    groups = _by_class(train)
    names = source.classnames
    for label in range(len(names)):
        members = groups.get(label, [])
        if len(members) < shots:
            raise ConfigError(f"split.shots = {shots}: class {label} '{names[label]}' of dataset "
                              f"'{source.name}' has only {len(members)} train image(s); expected at least {shots}")
        chosen.update(rng.sample(members, shots))
    return chosen


def _percent(train: list[tuple[str, int]], percent: float, seed: int) -> set[str]:
    import numpy as np

    rs = np.random.RandomState(seed)
    chosen: set[str] = set()
    for _, members in _by_class(train).items():
        k = max(1, int(math.floor(percent / 100.0 * len(members) + 0.5)))
        order = rs.permutation(len(members))[:k]
        chosen.update(members[i] for i in order)
    return chosen


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
    kind = split.get("kind")
    train = source.items("train")
    if kind == "fewshot":
        shots = split.get("shots")
        if not (isinstance(shots, int) and not isinstance(shots, bool) and shots >= 1):
            raise ConfigError(f"split.shots = {shots!r}: expected an integer >= 1")
        chosen = _fewshot(source, train, shots, seed)
    elif kind == "percent":
        p = split.get("percent")
        if not (isinstance(p, (int, float)) and not isinstance(p, bool) and 0 < p <= 100):
            raise ConfigError(f"split.percent = {p!r}: expected a number in (0, 100]")
        chosen = _percent(train, float(p), seed)
    elif kind == "list":
        file = split.get("file")
        if not isinstance(file, str) or not file:
            raise ConfigError(f"split.file = {file!r}: expected the path of a label list file")
        chosen = _from_list(source, train, file)
    else:
        raise ConfigError(f"split.kind = {kind!r}: expected 'fewshot', 'percent' or 'list'")
    labeled = [(rel, label) for rel, label in train if rel in chosen]
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
