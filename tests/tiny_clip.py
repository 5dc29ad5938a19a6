"""A tiny open_clip model for tests: a registered config and a file of seeded random weights."""

import json
from pathlib import Path

import torch

from dho.models.clip import open_clip


def tiny_clip_config(image_size: int = 32) -> dict:
    return {"embed_dim": 32,
            "vision_cfg": {"image_size": image_size, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
            "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


def make_tiny_clip(folder: Path, name: str, image_size: int = 32) -> Path:
    """Register open_clip config ``name`` (written to ``folder``) and save its weights
    (``torch.manual_seed(0)`` initialisation) as ``folder/tiny.pt``; returns that path."""
    config = folder / f"{name}.json"
    config.write_text(json.dumps(tiny_clip_config(image_size)))
    oc = open_clip()
    oc.add_model_config(config)
    torch.manual_seed(0)
    path = folder / "tiny.pt"
    torch.save(oc.create_model(name).state_dict(), path)
    return path
