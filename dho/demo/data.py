"""Write the demo "shapes" dataset to disk in the CoOp layout.

``root/shapes/images/<class_folder>/<split>_<index>.png`` plus
``root/shapes/split_zhou_Shapes.json`` (``{"train": [[relpath, label, classname], ...],
"val": [...], "test": [...]}``) and ``root/shapes/manifest.json`` (the parameters and a
SHA-256 over every written file).  Read back with ``dho.data.get_dataset("shapes", root)``.

Each image has its own generator seeded by ``(DATA_STREAM, seed, split, label, index)``,
so the pixels do not depend on the order of generation or on the other splits' sizes,
and never coincide with the teacher's pretraining images (another stream id).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, OutputError
from ..progress import Progress
from .render import Attributes, benchmark_classes, render

FOLDER_NAME = "shapes"
IMAGE_SUBDIR = "images"
SPLIT_FILE = "split_zhou_Shapes.json"
MANIFEST_FILE = "manifest.json"
SPLITS = ("train", "val", "test")
GENERATOR_VERSION = 1  # bump when rendering changes: old copies are then regenerated
DATA_STREAM = 0        # the benchmark's images; the teacher's pretraining uses another stream
MAX_SIZE = 512


@dataclass(frozen=True)
class ShapesParams:
    """What determines the generated dataset (recorded in ``manifest.json``)."""

    seed: int = 0
    train: int = 40   # images per class
    val: int = 10
    test: int = 20
    size: int = 32    # pixels (square)

    def validate(self) -> None:
        for key in ("train", "val", "test"):
            if getattr(self, key) < 1:
                raise ConfigError(f"--per-class {key} must be at least 1, got {getattr(self, key)}")
        if not 8 <= self.size <= MAX_SIZE:
            raise ConfigError(f"--size must be between 8 and {MAX_SIZE} pixels, got {self.size}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be 0 or more, got {self.seed}")

    def per_class(self, split: str) -> int:
        return getattr(self, split)

    def to_dict(self) -> dict:
        return {"generator_version": GENERATOR_VERSION, "classnames": class_names(), **asdict(self)}


def class_names() -> list[str]:
    """The demo benchmark's class names in label order."""
    return [a.phrase for a in benchmark_classes()]


def image_rng(seed: int, split: str, label: int, index: int,
              stream: int = DATA_STREAM) -> np.random.Generator:
    """The generator for one benchmark image."""
    return np.random.default_rng([stream, seed, SPLITS.index(split), label, index])


def render_split(params: ShapesParams, split: str) -> tuple[np.ndarray, np.ndarray]:
    """One split in memory: ``uint8 [N, size, size, 3]`` images and ``int64 [N]`` labels.

    The pixels equal those of the PNG files :func:`generate_shapes` writes (PNG is
    lossless), in the split file's order.
    """
    images, labels = [], []
    for label, attrs in enumerate(benchmark_classes()):
        for i in range(params.per_class(split)):
            images.append(render(attrs, image_rng(params.seed, split, label, i), params.size))
            labels.append(label)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _relpath(attrs: Attributes, split: str, index: int) -> str:
    return f"{attrs.phrase.replace(' ', '_')}/{split}_{index:04d}.png"


def _png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def content_hash(folder: Path, relpaths: list[str]) -> str:
    """SHA-256 over the split file and the listed images (path and bytes, in order)."""
    h = hashlib.sha256()
    for rel in [SPLIT_FILE] + [f"{IMAGE_SUBDIR}/{r}" for r in relpaths]:
        h.update(rel.encode("utf-8") + b"\0")
        h.update((folder / rel).read_bytes())
    return h.hexdigest()


def is_complete(folder: Path, params: ShapesParams) -> bool:
    """Whether ``folder`` holds a full, unmodified copy generated with ``params``."""
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        if manifest.get("params") != params.to_dict():
            return False
        split = json.loads((folder / SPLIT_FILE).read_text(encoding="utf-8"))
        relpaths = [entry[0] for s in SPLITS for entry in split[s]]
        return content_hash(folder, relpaths) == manifest.get("sha256")
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return False


def generate_shapes(root: str | os.PathLike, params: ShapesParams = ShapesParams(),
                    progress: bool = True) -> tuple[Path, bool]:
    """Write ``root/shapes`` for ``params``; return ``(folder, generated)``.

    Skips the work (``generated=False``) when a complete copy with the same parameters is
    already there.  Otherwise everything is written into a temporary folder next to it
    and renamed into place at the end, so ``root/shapes`` is never half-written; a stale
    copy (other parameters, or modified files) is replaced.
    """

    params.validate()
    root = Path(root)
    folder = root / FOLDER_NAME
    if is_complete(folder, params):
        return folder, False
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{FOLDER_NAME}.", suffix=".tmp", dir=root))
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the dataset is not
    except OSError as e:
        raise OutputError(f"cannot write the demo dataset under {root}: {e.strerror or e}") from None
    try:
        split_index: dict[str, list] = {}
        total = len(benchmark_classes()) * sum(params.per_class(s) for s in SPLITS)
        bar = Progress(total, "demo data", unit="img", bar=progress, min_interval_s=5)
        for split in SPLITS:
            split_index[split] = []
            for label, attrs in enumerate(benchmark_classes()):
                (tmp / IMAGE_SUBDIR / attrs.phrase.replace(" ", "_")).mkdir(parents=True, exist_ok=True)
                for i in range(params.per_class(split)):
                    rel = _relpath(attrs, split, i)
                    pixels = render(attrs, image_rng(params.seed, split, label, i), params.size)
                    (tmp / IMAGE_SUBDIR / rel).write_bytes(_png_bytes(pixels))
                    split_index[split].append([rel, label, attrs.phrase])
                    bar.update()
        bar.close()
        (tmp / SPLIT_FILE).write_text(json.dumps(split_index, indent=1) + "\n", encoding="utf-8")
        relpaths = [entry[0] for s in SPLITS for entry in split_index[s]]
        manifest = {"dataset": FOLDER_NAME, "params": params.to_dict(),
                    "counts": {s: len(split_index[s]) for s in SPLITS},
                    "sha256": content_hash(tmp, relpaths)}
        # written last; the rename of the whole folder below is what makes the copy appear atomically
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        _move_into_place(tmp, folder, params)
    except OSError as e:
        raise OutputError(f"cannot write the demo dataset {folder}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder, True


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _move_into_place(tmp: Path, folder: Path, params: ShapesParams) -> None:
    """Rename ``tmp`` to ``folder``, replacing a stale copy; tolerate a concurrent writer."""
    if folder.exists() or folder.is_symlink():
        if not folder.is_dir() or folder.is_symlink():
            raise DataError(f"{folder} exists and is not a dataset folder; remove it or choose another --root")
        stale = Path(tempfile.mkdtemp(prefix=f".{FOLDER_NAME}.", suffix=".old", dir=folder.parent))
        try:
            os.replace(folder, stale / FOLDER_NAME)
        except FileNotFoundError:
            pass  # another writer moved it away first
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.rename(tmp, folder)
    except OSError:
        # another process put a copy there in the meantime: keep it if it is the same one
        if not is_complete(folder, params):
            raise
