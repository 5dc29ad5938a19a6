"""Reproducible training views: every augmentation is a pure function of a key.

A *view key* is ``(epoch, pass, index)``: ``index`` is the image's position in the
dataset's ``train`` split (not in the labeled or unlabeled subset), ``pass`` counts the
passes of one loader within one epoch (0 unless a short loader is cycled).  With the run's
augmentation ``seed`` the key fixes the crop box and the flip through a counter-based
generator (numpy's Philox, keyed by a hash of ``(seed, epoch, pass, index)``), so the same
image gets the same view whatever the label level, the batch order, the loader worker or
the process (DDP rank) that decodes it.  The teacher-output cache (:mod:`dho.teacher_cache`)
stores teacher outputs under the same keys.

The crop follows ``torchvision.transforms.RandomResizedCrop.get_params`` (10 tries, then
the centre crop) and is expressed in source pixels, so one set of parameters gives the
same view at any output resolution (a student at 224 px and a teacher at 336 px see one
crop).

The epoch schedule (:func:`epoch_schedule`) is also a pure function: the labeled loader
permutes the labeled images, the unlabeled loader permutes the *whole* train split and
skips the labeled images, so runs at different label levels draw their unlabeled images
in the same order and share most view keys.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

# key packing: epoch (19 bits) | pass (12 bits) | index (32 bits) in one non-negative int64
_INDEX_BITS, _PASS_BITS = 32, 12
STREAM_LABELED, STREAM_UNLABELED = 1, 2


def pack_keys(epoch: int | np.ndarray, pass_: int | np.ndarray, index: int | np.ndarray) -> np.ndarray:
    """One int64 per view key ``(epoch, pass, index)``."""
    e, p, i = (np.asarray(a, dtype=np.int64) for a in (epoch, pass_, index))
    return (e << (_INDEX_BITS + _PASS_BITS)) | (p << _INDEX_BITS) | i


def unpack_keys(keys) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k = np.asarray(keys, dtype=np.int64)
    return k >> (_INDEX_BITS + _PASS_BITS), (k >> _INDEX_BITS) & ((1 << _PASS_BITS) - 1), k & ((1 << _INDEX_BITS) - 1)


def philox(*parts: int) -> np.random.Generator:
    """A numpy Philox generator keyed by a 128-bit hash of the integers ``parts``."""
    digest = hashlib.blake2b(np.asarray(parts, dtype=np.int64).tobytes(), digest_size=16).digest()
    key = np.frombuffer(digest, dtype=np.uint64)
    return np.random.Generator(np.random.Philox(key=key))


@dataclass(frozen=True)
class CropParams:
    """A crop box in source pixels (``top, left, height, width``) and a horizontal flip."""

    top: int
    left: int
    height: int
    width: int
    flip: bool


def crop_params(seed: int, key: int, width: int, height: int, scale_min: float,
                ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> CropParams:
    """RandomResizedCrop(scale=(scale_min, 1), ratio) + flip parameters for one view key."""
    rng = philox(seed, 0x56494557, int(key))  # "VIEW": apart from the schedule's streams
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    u = rng.random(41)  # 10 tries x 4 draws + the flip: a fixed budget keeps the flip's draw fixed
    for t in range(10):
        target = area * (scale_min + (1.0 - scale_min) * u[4 * t])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[4 * t + 1])
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(u[4 * t + 2] * (height - h + 1))
            left = int(u[4 * t + 3] * (width - w + 1))
            return CropParams(top, left, h, w, bool(u[40] < 0.5))
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        h, w = height, int(round(height * max(ratio)))
    else:
        w, h = width, height
    return CropParams((height - h) // 2, (width - w) // 2, h, w, bool(u[40] < 0.5))


def render_view(image, params: CropParams, size: int, interpolation: str = "bilinear"):
    """The view of a PIL image: crop, resize to ``size`` (antialiased ``interpolation``:
    "bilinear", or "bicubic" as the authors' ImageNet scripts), flip, [0, 1] tensor."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    out = TF.resized_crop(image, params.top, params.left, params.height, params.width, [size, size],
                          interpolation=InterpolationMode(interpolation), antialias=True)
    if params.flip:
        out = TF.hflip(out)
    return TF.to_tensor(out)


class ViewDataset:
    """``dataset[key]`` for a packed view key: ``(view tensor, label, train index, key)``.

    ``items`` is the whole train split in the source's order (``(relpath, label)``); pass
    ``mask_labels=True`` for the unlabeled loader (labels become -1).
    """

    def __init__(self, source, items: Sequence[tuple[str, int]], size: int, scale_min: float, seed: int,
                 mask_labels: bool = False, interpolation: str = "bilinear"):
        self.source = source
        self.interpolation = str(interpolation)
        self.items = [(str(r), -1 if mask_labels else int(y)) for r, y in items]
        self.size = int(size)
        self.scale_min = float(scale_min)
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int):
        from .source import open_rgb

        key = int(key)
        index = key & ((1 << _INDEX_BITS) - 1)
        rel, label = self.items[index]
        image = open_rgb(self.source.path(rel))
        params = crop_params(self.seed, key, image.width, image.height, self.scale_min)
        return render_view(image, params, self.size, self.interpolation), label, index, key


def _batches_of(order: np.ndarray, size: int) -> list[np.ndarray]:
    return [order[i:i + size] for i in range(0, len(order), size)]


def stream_batches(seed: int, epoch: int, stream: int, members: np.ndarray, n_train: int, batch_size: int,
                   steps: int, over_train: bool) -> list[np.ndarray]:
    """``steps`` batches of packed view keys for one loader in one epoch.

    Each pass draws a permutation from Philox(seed, epoch, stream, pass); a pass ends with
    a partial batch (no drop_last) and the next pass follows if ``steps`` needs it.
    ``over_train``: permute all ``n_train`` indices and keep ``members`` (the unlabeled
    order is then the same whatever the labeled subset); else permute ``members``.
    """
    if len(members) == 0:
        return []
    keep = None
    if over_train:
        keep = np.zeros(n_train, dtype=bool)
        keep[members] = True
    out: list[np.ndarray] = []
    pass_ = 0
    while len(out) < steps:
        if pass_ >= 1 << _PASS_BITS:
            from ..errors import ConfigError

            raise ConfigError(f"an epoch cycles a loader of {len(members)} images more than {1 << _PASS_BITS} "
                              f"times; raise its batch size or use the other epoch_length")
        rng = philox(seed, epoch, stream, pass_)
        if over_train:
            perm = rng.permutation(n_train)
            order = perm[keep[perm]]
        else:
            order = members[rng.permutation(len(members))]
        out.extend(pack_keys(epoch, pass_, b) for b in _batches_of(order, batch_size))
        pass_ += 1
    return out[:steps]


@dataclass(frozen=True)
class Schedule:
    """Everything that fixes a run's sequence of view keys (no models, no files)."""

    seed: int
    n_train: int
    labeled: np.ndarray      # train indices of the labeled images
    unlabeled: np.ndarray    # train indices of the unlabeled images
    batch_size: int
    unlabeled_batch_size: int
    epoch_length: str        # "labeled" | "unlabeled"
    use_unlabeled: bool      # False for methods without a teacher

    @property
    def steps_per_epoch(self) -> int:
        if self.epoch_length == "labeled":
            return math.ceil(len(self.labeled) / self.batch_size)
        return math.ceil(len(self.unlabeled) / self.unlabeled_batch_size)

    def epoch(self, epoch: int) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """(labeled key batches, unlabeled key batches or None) for ``epoch`` (1-based)."""
        steps = self.steps_per_epoch
        lab = stream_batches(self.seed, epoch, STREAM_LABELED, self.labeled, self.n_train, self.batch_size,
                             steps, over_train=False)
        if not self.use_unlabeled or len(self.unlabeled) == 0:
            return lab, None
        unl = stream_batches(self.seed, epoch, STREAM_UNLABELED, self.unlabeled, self.n_train,
                             self.unlabeled_batch_size, steps, over_train=True)
        return lab, unl

    def teacher_keys(self, epochs: int) -> np.ndarray:
        """Sorted unique view keys the teacher is asked for over ``epochs`` epochs."""
        parts = []
        for e in range(1, epochs + 1):
            lab, unl = self.epoch(e)
            parts.extend(lab)
            parts.extend(unl or [])
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)


def train_indices(train_items: Sequence[tuple[str, int]], labeled: Sequence[tuple[str, int]],
                  unlabeled: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the labeled and unlabeled relative paths in the train split."""
    pos = {str(rel): i for i, (rel, _) in enumerate(train_items)}
    try:
        lab = np.array([pos[str(r)] for r, _ in labeled], dtype=np.int64)
        unl = np.array([pos[str(r)] for r in unlabeled], dtype=np.int64)
    except KeyError as e:
        from ..errors import DataError

        raise DataError(f"split image {e.args[0]} is not in the dataset's train split "
                        f"(a manifest made from other dataset files?)") from None
    return lab, unl


def shard(batch: np.ndarray, parts: int, part: int) -> np.ndarray:
    """Contiguous part ``part`` of ``parts`` of a batch (DDP ranks x accumulation steps)."""
    n = len(batch)
    return batch[part * n // parts:(part + 1) * n // parts]
