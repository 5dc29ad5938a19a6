"""``DatasetSource``: one dataset on disk (class names, prompt templates, split items).

A source is cheap to create; the first access to ``classnames`` or ``items(...)`` reads
the dataset's index (split file, list files or class folders) once.  A malformed index
raises :class:`~dho.errors.DataError` naming the file and what was expected;
:meth:`DatasetSource.check` instead collects every problem into a :class:`CheckReport`.
"""

from __future__ import annotations

import functools

import os
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import ConfigError, DataError

SPLITS = ("train", "val", "test")
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
# Missing images listed one by one in a check report; the rest are counted.
MAX_LISTED_MISSING = 5


# Decoded images kept in memory, per process, up to this many bytes (env DHO_DECODE_CACHE_MB,
# default 256; 0 turns it off): a small dataset is decoded once per run instead of once
# per epoch and view.  Images are added until the budget is spent (no eviction), so a
# large dataset costs at most the budget and decodes as before.
_DECODED: dict[tuple[str, int, int, int], object] = {}  # (path, mtime_ns, size, inode) -> image
_DECODED_BYTES = [0]


def _decode_budget() -> int:
    try:
        return int(float(os.environ.get("DHO_DECODE_CACHE_MB", "256")) * 2 ** 20)
    except ValueError:
        raise ConfigError(f"environment variable DHO_DECODE_CACHE_MB = "
                          f"{os.environ['DHO_DECODE_CACHE_MB']!r}: expected a number of MiB") from None


def open_rgb(path: str | os.PathLike):
    """Decode an image file as an RGB ``PIL.Image`` (a copy of the cached decode when this
    process has seen the file); DataError naming the file if it cannot."""
    from PIL import Image, UnidentifiedImageError

    try:  # a file rewritten in place (same path, new bytes) is a new key: never a stale decode
        st = os.stat(path)
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except OSError as e:
        raise DataError(f"cannot decode image {path}: {e}") from None
    key = (os.fspath(path), st.st_mtime_ns, st.st_size, st.st_ino)
    cached = _DECODED.get(key)
    if cached is not None:
        return cached.copy()
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise DataError(f"cannot decode image {path}: {e}") from None
    size = rgb.width * rgb.height * 3
    if _DECODED_BYTES[0] + size <= _decode_budget():
        _DECODED[key] = rgb.copy()
        _DECODED_BYTES[0] += size
    return rgb


def is_image_file(name: str) -> bool:
    """True for a non-hidden file name with an image extension (case-insensitive)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def is_safe_relpath(rel: str) -> bool:
    """True if ``rel`` is a non-empty relative path that stays inside its base folder."""
    p = PurePosixPath(rel.replace("\\", "/"))
    return bool(rel) and not p.is_absolute() and ".." not in p.parts


@dataclass
class Index:
    """What a dataset's index files say: class names and ``(relpath, label)`` per split."""

    classnames: list[str]
    items: dict[str, list[tuple[str, int]]]


@dataclass
class CheckReport:
    """Result of :meth:`DatasetSource.check` (also the ``dho data check --json`` record)."""

    dataset: str
    folder: str
    found: bool
    layout: str = ""
    counts: dict[str, int] = field(default_factory=dict)
    num_classes: int | None = None
    decoded: int = 0
    problems: list[str] = field(default_factory=list)
    #: the paper's Table 12 beside the counts found: {what: {"found": n, "paper": m}} (what =
    #: classes, train, val, test); empty for a dataset the paper does not list
    paper: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def paper_differs(self) -> list[str]:
        """``"train 4127 (paper 4128)"`` for each count that differs from the paper's Table 12."""
        return [f"{what} {c['found']:g} (paper {c['paper']:g})" for what, c in self.paper.items()
                if c["found"] != c["paper"]]

    @property
    def ok(self) -> bool:
        """Present and without problems."""
        return self.found and not self.problems

    def to_dict(self) -> dict:
        return {**asdict(self), "ok": self.ok, "paper_differs": self.paper_differs}


@functools.cache
def _table12() -> "pd.DataFrame":
    from ..results.reported import load_reported

    reported = load_reported()
    return reported[reported["table"] == "Tab12"]


def paper_counts(dataset: str, counts: dict[str, int], classes: int) -> dict[str, dict[str, float]]:
    """``counts`` (images per split) and ``classes`` (classes that occur) beside the paper's Table 12.

    Only what the paper prints is compared; ImageNet's train size is printed in millions
    (1.28M) and compared at that precision.
    """
    rows = _table12()
    rows = rows[rows["dataset"] == dataset]
    paper = dict(zip(rows["metric"], rows["value"]))
    out: dict[str, dict[str, float]] = {}
    if "n_classes" in paper:
        out["classes"] = {"found": classes, "paper": paper["n_classes"]}
    for split in ("train", "val", "test"):
        if f"n_{split}" in paper and split in counts:
            out[split] = {"found": counts[split], "paper": paper[f"n_{split}"]}
    if "n_train_millions" in paper and "train" in counts:
        out["train (millions)"] = {"found": round(counts["train"] / 1e6, 2), "paper": paper["n_train_millions"]}
    return out


def summarise_problems(name: str, problems: list[str], limit: int = 3) -> str:
    """One line: the first ``limit`` problems and how many more there are."""
    head = "; ".join(problems[:limit])
    more = len(problems) - limit
    return f"dataset '{name}': {head}" + (f" (and {more} more problem(s); run `dho data check`)" if more > 0 else "")


class DatasetSource:
    """One dataset under ``root/<folder_name>``.

    Subclasses set ``folder_name``, ``image_subdir`` (images live in
    ``root/<folder_name>/<image_subdir>/<relpath>``; empty = the folder itself),
    ``templates`` and implement :meth:`_scan`.  ``name`` is set by the registry.

    Class names are cleaned the way CoOp's prompt learner does (``_`` -> space).
    ``class_subset`` is ``None`` unless the dataset covers only some of its classes
    (ImageNet-A/-R): then it lists the label indices that occur.
    """

    name: str = ""
    folder_name: str = ""
    image_subdir: str = ""
    templates: list[str] = ["a photo of a {}."]   # the authors' prompts (prompt set "authors")
    clip_templates: list[str] | None = None      # CLIP's ensemble (prompt set "clip"); None: templates
    splits: tuple[str, ...] = SPLITS
    val_is_test: bool = False      # True: "val" is the test set (no choice may be made on it)
    imagenet_train: bool = False   # True: train images are ImageNet-1k train's (label leak)
    # True when items come from listing the image folders (they exist by construction,
    # so check() skips one stat per image: 1.3M on ImageNet).
    items_from_listing: bool = False

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.folder = self.root / self.folder_name
        self.image_dir = self.folder / self.image_subdir if self.image_subdir else self.folder
        self._index: Index | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, folder={str(self.folder)!r})"

    # -- to implement ------------------------------------------------------------------
    def _scan(self, problems: list[str]) -> Index:
        """Read the index; append one line per problem (naming the file) and skip bad entries."""
        raise NotImplementedError

    # -- public ------------------------------------------------------------------------
    def layout(self) -> str:
        """What this dataset's files look like under ``root`` (for messages about a missing dataset)."""
        return f"the folder {self.folder}/ with its index files"

    def exists(self) -> bool:
        """Whether the dataset's folder is present under ``root``."""
        return self.folder.is_dir()

    @property
    def classnames(self) -> list[str]:
        return list(self._load().classnames)

    @property
    def num_classes(self) -> int:
        return len(self._load().classnames)

    @property
    def class_subset(self) -> list[int] | None:
        return None

    def prompt_classnames(self, prompts: str = "authors") -> list[str]:
        """The class names put into the prompts (:attr:`classnames` unless a dataset
        knows the names the authors prompted with: ImageNet)."""
        self.prompt_templates(prompts)  # checks the name
        return self.classnames

    def prompt_templates(self, prompts: str = "authors") -> list[str]:
        """The prompt templates of the named set (``dho.data.templates.PROMPT_SETS``)."""
        from .templates import PROMPT_SETS

        if prompts not in PROMPT_SETS:
            raise ConfigError(f"prompts = {prompts!r}: expected one of {', '.join(PROMPT_SETS)}")
        chosen = self.clip_templates if prompts == "clip" else None
        return list(chosen or self.templates)

    def items(self, split: str) -> list[tuple[str, int]]:
        """``(path relative to image_dir, label)`` for ``split``, in a fixed (sorted/file) order."""
        if split not in self.splits:
            raise DataError(f"dataset '{self.name}' has no split '{split}'; it has: {', '.join(self.splits)}")
        return list(self._load().items[split])

    def path(self, relpath: str) -> Path:
        """Absolute path of an item."""
        return self.image_dir / relpath

    def check(self, sample: int = 8) -> CheckReport:
        """Look for every problem: index files, labels, missing images, and decode
        ``sample`` images per split (a fixed pseudo-random choice)."""
        report = CheckReport(dataset=self.name, folder=str(self.folder), found=self.exists(), layout=self.layout())
        if not report.found:
            return report
        problems: list[str] = []
        index = self._scan(problems)
        report.num_classes = len(index.classnames)
        missing: list[Path] = []
        for split in self.splits:
            entries = index.items.get(split, [])
            report.counts[split] = len(entries)
            if not entries and not problems:  # an unreadable index already explains it
                problems.append(f"split '{split}' of {self.folder} has no images")
            if self.items_from_listing:
                continue
            for rel, _ in entries:
                p = self.image_dir / rel
                if not p.is_file():
                    missing.append(p)
        for p in missing[:MAX_LISTED_MISSING]:
            problems.append(f"image not found: {p} (listed in the index of {self.folder})")
        if len(missing) > MAX_LISTED_MISSING:
            problems.append(f"{len(missing) - MAX_LISTED_MISSING} more listed images not found under {self.image_dir}")
        missing_set = set(missing)
        rng = random.Random(0)
        for split in self.splits:
            present = [self.image_dir / rel for rel, _ in index.items.get(split, [])]
            present = [p for p in present if p not in missing_set]
            for p in rng.sample(present, min(sample, len(present))):
                try:
                    open_rgb(p)
                    report.decoded += 1
                except DataError as e:
                    problems.append(str(e))
        report.problems = list(dict.fromkeys(problems))
        occurring = {label for entries in index.items.values() for _, label in entries}
        report.paper = paper_counts(self.name, report.counts, len(occurring))
        if not problems:
            self._index = index
        return report

    # -- internals ---------------------------------------------------------------------
    def _load(self) -> Index:
        if self._index is None:
            if not self.folder.is_dir():
                raise DataError(f"dataset '{self.name}' not found: expected the folder {self.folder}")
            problems: list[str] = []
            index = self._scan(problems)
            if problems:
                raise DataError(summarise_problems(self.name, list(dict.fromkeys(problems))))
            self._index = index
        return self._index


def clean_classname(name: str) -> str:
    """CoOp's prompt-side cleaning: underscores become spaces, outer spaces stripped."""
    return name.replace("_", " ").strip()


def assert_dataset_ok(source: DatasetSource, sample: int = 4) -> CheckReport:
    """Run :meth:`DatasetSource.check`; raise DataError with the first problem(s) if the
    dataset is missing or broken (called before a training run starts)."""
    report = source.check(sample=sample)
    if not report.found:
        raise DataError(f"dataset '{source.name}' not found: expected the folder {source.folder}")
    if report.problems:
        raise DataError(summarise_problems(source.name, report.problems))
    return report
