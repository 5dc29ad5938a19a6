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


class EpochBatches(torch.utils.data.Sampler):
    """A batch sampler whose batches are set before each pass (:meth:`set`): a loader
    with persistent workers keeps its worker processes while each epoch still feeds it
    that epoch's own batch plan."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def set(self, batches) -> None:
        """``batches``: sequences of dataset indices (numpy arrays or lists of ints)."""
        self.batches = [b.tolist() if hasattr(b, "tolist") else [int(k) for k in b] for b in batches]

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class RunLoaders:
    """One ``DataLoader`` per dataset for the whole of a training run.

    With ``workers`` > 0 its worker processes start on the dataset's first pass and live
    until :meth:`close` (``persistent_workers``): they are not forked again each epoch,
    and each keeps its decoded images (:func:`~dho.data.source.open_rgb`).  Every loader
    seeds its workers from its own generator, not from torch's global one, so the global
    random stream of the training process is the same whatever the worker count.
    ``persistent=False`` builds a fresh loader per pass (the behaviour before, kept for
    ``benchmarks/loader_epochs.py``).  Pinned memory is for a CUDA device only.
    """

    def __init__(self, workers: int, pin_memory: bool = False, persistent: bool = True):
        self.workers, self.pin_memory, self.persistent = int(workers), bool(pin_memory), persistent
        self._loaders: dict[int, tuple[torch.utils.data.DataLoader, EpochBatches | None]] = {}

    def iterate(self, dataset, batches=None, batch_size: int = 1):
        """An iterator over ``dataset``: in order in batches of ``batch_size``, or over
        ``batches`` (lists of indices, e.g. this epoch's view keys) when given."""
        held = self._loaders.get(id(dataset)) if self.persistent else None
        if held is None:
            sampler = EpochBatches() if batches is not None else None
            kwargs = dict(batch_sampler=sampler) if sampler is not None else dict(batch_size=batch_size)
            loader = torch.utils.data.DataLoader(
                dataset, num_workers=self.workers, pin_memory=self.pin_memory,
                persistent_workers=self.persistent and self.workers > 0,
                generator=torch.Generator().manual_seed(0), **kwargs)
            held = (loader, sampler)
            if self.persistent:
                self._loaders[id(dataset)] = held
        loader, sampler = held
        if (sampler is None) != (batches is None):
            raise ValueError("a dataset is iterated either over given batches or in order, not both")
        if sampler is not None:
            sampler.set(batches)
        return iter(loader)

    def close(self) -> None:
        """Stop every loader's worker processes (they stop on their own when this process ends)."""
        for loader, _ in self._loaders.values():
            it, loader._iterator = getattr(loader, "_iterator", None), None
            if it is not None and hasattr(it, "_shutdown_workers"):
                it._shutdown_workers()
        self._loaders.clear()
