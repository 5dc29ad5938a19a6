"""Torch side of the data: :class:`ImageList` and the shared train/eval transforms.

Transforms yield **un-normalised** float tensors in ``[0, 1]`` (``C x H x W``); the
student and the teacher each resize and normalise that one crop themselves.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset
from torchvision import transforms as T

from ..errors import ConfigError
from .source import DatasetSource, open_rgb


class ImageList(Dataset):
    """A torch ``Dataset`` over ``(relpath, label)`` items of a :class:`DatasetSource`.

    ``dataset[i]`` is ``(transform(rgb_image), label, i)``; pass label ``-1`` for
    unlabeled items (e.g. ``[(p, -1) for p in manifest.unlabeled]``).  An image that
    cannot be read raises :class:`~dho.errors.DataError` naming the file.
    """

    def __init__(self, source: DatasetSource, items: Sequence[tuple[str, int]],
                 transform: Callable | None = None):
        self.source = source
        self.items = [(str(rel), int(label)) for rel, label in items]
        self.transform = transform if transform is not None else T.ToTensor()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        rel, label = self.items[index]
        image = open_rgb(self.source.path(rel))
        return self.transform(image), label, index


def _check_size(image_size: int) -> None:
    if not (isinstance(image_size, int) and not isinstance(image_size, bool) and image_size >= 1):
        raise ConfigError(f"image_size = {image_size!r}: expected a positive integer")


def train_transform(image_size: int, scale_min: float = 0.5) -> Callable:
    """``RandomResizedCrop(image_size, scale=(scale_min, 1))`` (torchvision's default
    aspect ratios 3/4..4/3 and bilinear interpolation with antialias) + horizontal flip,
    then ``ToTensor`` ([0, 1] floats, no normalisation)."""
    _check_size(image_size)
    if not (isinstance(scale_min, (int, float)) and 0 < scale_min <= 1):
        raise ConfigError(f"crop scale_min = {scale_min!r}: expected a number in (0, 1]")
    return T.Compose([
        T.RandomResizedCrop(image_size, scale=(float(scale_min), 1.0), interpolation=T.InterpolationMode.BILINEAR),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
    ])


def eval_transform(image_size: int) -> Callable:
    """``Resize(image_size)`` (shorter side, bilinear) + ``CenterCrop(image_size)`` +
    ``ToTensor`` ([0, 1] floats, no normalisation)."""
    _check_size(image_size)
    return T.Compose([
        T.Resize(image_size, interpolation=T.InterpolationMode.BILINEAR),
        T.CenterCrop(image_size),
        T.ToTensor(),
    ])
