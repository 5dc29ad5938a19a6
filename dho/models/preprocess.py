"""Resize + normalise the shared un-normalised [0, 1] crop for one model."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class InputAdapter(nn.Module):
    """Maps a [B, 3, H, W] batch in [0, 1] to the model's input: resized to
    ``image_size`` x ``image_size`` if needed (antialiased) and normalised with mean/std."""

    def __init__(self, image_size: int, mean: Sequence[float], std: Sequence[float],
                 interpolation: str = "bilinear"):
        super().__init__()
        if interpolation not in ("bilinear", "bicubic"):
            raise ValueError(f"interpolation must be 'bilinear' or 'bicubic', got {interpolation!r}")
        self.image_size = int(image_size)
        self.interpolation = interpolation
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        if x01.ndim != 4 or x01.shape[1] != 3:
            raise ValueError(f"expected an image batch [B, 3, H, W], got shape {tuple(x01.shape)}")
        x = x01.float()
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode=self.interpolation,
                              align_corners=False, antialias=True)
            if self.interpolation == "bicubic":  # bicubic overshoots; keep the [0, 1] range
                x = x.clamp_(0.0, 1.0)
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"image_size={self.image_size}, interpolation={self.interpolation}"
