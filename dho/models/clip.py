"""open_clip helpers shared by CLIP students and teachers.

* :func:`open_clip` imports open_clip once and registers the project's own model configs
  (``dho/models/configs/*.json``, e.g. the demo's ``dho-tiny-clip``).
* :func:`create_clip` builds a model by open_clip name with a pretrained *tag* (from the
  Hugging Face cache, downloaded if allowed) or a *local file*, turning every way of not
  finding the weights into :class:`~dho.errors.WeightsUnavailable` (fast when
  ``HF_HUB_OFFLINE`` is set).
* :func:`text_classifier` computes CLIP's zero-shot classifier from prompt templates.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ..data.templates import TEXT_NORMS
from ..errors import CheckpointError, ConfigError, WeightsUnavailable

CONFIG_DIR = Path(__file__).parent / "configs"
_REGISTERED = False


def open_clip():
    """Return the ``open_clip`` module with the project's model configs registered."""
    global _REGISTERED
    import open_clip as oc

    if not _REGISTERED:
        oc.add_model_config(CONFIG_DIR)
        _REGISTERED = True
    return oc


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name if empty), cut to ``limit``."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:limit]


def hf_cache_dir() -> str:
    """The Hugging Face hub cache folder, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface")
    return os.path.join(home, "hub")


def offline_requested() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set to a true value."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in ("1", "true", "yes", "on")


def _cached_hf_file(hf_hub: str, cache_dir: str) -> str | None:
    """Path of the cached weights file of an open_clip ``hf_hub`` entry, or None."""
    from huggingface_hub import try_to_load_from_cache
    from open_clip.pretrained import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    repo_id, filename = os.path.split(hf_hub)
    candidates = [filename] if filename else [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]
    if filename.endswith((".bin", ".pth")):
        candidates.insert(0, filename[:-4] + ".safetensors")
    for name in candidates:
        hit = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
        if isinstance(hit, str):
            return hit
    return None


def _unavailable(model: str, tag: str, cache_dir: str, why: str) -> WeightsUnavailable:
    return WeightsUnavailable(
        f"open_clip weights {model} (pretrained tag '{tag}') are not available offline ({why}); "
        f"looked in the Hugging Face cache {cache_dir} (HF_HOME/HF_HUB_CACHE): pre-fill it on a "
        f"machine with internet (python -c \"import open_clip; open_clip.create_model('{model}', "
        f"pretrained='{tag}')\") or pass a local weights file instead of the tag; "
        f"set HF_HUB_OFFLINE=1 to fail fast")


def create_clip(model: str, pretrained: str | None, device: str | torch.device | None = None):
    """Create the open_clip model ``model`` with ``pretrained`` = tag, local file or None, on
    ``device`` (default torch's current default device: the meta device inside
    ``with torch.device("meta")``, as ``dho plan`` counts FLOPs of the prompt students).

    None gives random weights (tiny test/demo models only).  Raises ConfigError for an
    unknown model name or tag, WeightsUnavailable when a tag's weights are not cached and
    cannot be downloaded, CheckpointError when a local file cannot be loaded.
    """
    oc = open_clip()
    device = torch.get_default_device() if device is None else device
    if oc.get_model_config(model) is None:
        raise ConfigError(f"unknown open_clip model '{model}'; expected a name from "
                          f"open_clip.list_models() or a config in {CONFIG_DIR}")
    if not pretrained:  # random weights asked for: open_clip's "no pretrained weights" warning is noise
        previous = logging.root.manager.disable
        logging.disable(max(previous, logging.WARNING))
        try:
            return oc.create_model(model, pretrained=None, device=device)
        finally:
            logging.disable(previous)
    if os.path.isfile(pretrained):
        try:
            return oc.create_model(model, pretrained=pretrained, device=device)
        except Exception as e:  # corrupt file, wrong architecture
            raise CheckpointError(f"cannot load open_clip weights file {pretrained} into "
                                  f"model '{model}': {first_line(e, 300)}") from None
    tag_cfg = oc.get_pretrained_cfg(model, pretrained)
    if not tag_cfg:
        tags = ", ".join(oc.list_pretrained_tags_by_model(model)) or "(none)"
        raise ConfigError(f"open_clip pretrained '{pretrained}' for model '{model}' is neither a "
                          f"known tag ({tags}) nor an existing file")
    cache_dir = hf_cache_dir()
    if offline_requested() and tag_cfg.get("hf_hub") and not _cached_hf_file(tag_cfg["hf_hub"], cache_dir):
        raise _unavailable(model, pretrained, cache_dir, "HF_HUB_OFFLINE is set and they are not cached")
    try:
        return oc.create_model(model, pretrained=pretrained, device=device, cache_dir=cache_dir)
    except RuntimeError as e:
        raise _unavailable(model, pretrained, cache_dir, first_line(e)) from None


def preprocess_info(clip_model) -> dict[str, Any]:
    """Input size, mean, std and interpolation the model's image tower expects."""
    cfg = clip_model.visual.preprocess_cfg
    size = cfg["size"]
    if isinstance(size, (tuple, list)):
        if size[0] != size[1]:
            raise ConfigError(f"non-square CLIP input size {tuple(size)} is not supported")
        size = size[0]
    interp = cfg.get("interpolation", "bicubic")
    return {"image_size": int(size), "mean": tuple(cfg["mean"]), "std": tuple(cfg["std"]),
            "interpolation": interp if interp in ("bilinear", "bicubic") else "bicubic"}




@torch.no_grad()
def text_classifier(clip_model, model_name: str, classnames: Sequence[str], templates: Sequence[str],
                    progress: bool = True, norm: str = "renormalized") -> torch.Tensor:
    """Zero-shot classifier ``W`` [D, C]: column c combines the text embeddings of class c
    under ``templates`` as ``norm`` says (:data:`TEXT_NORMS`; computed in float32 on the
    model's device)."""
    from tqdm.auto import tqdm

    if not classnames:
        raise ConfigError("text classifier: expected at least one class name")
    if not templates or any(t.count("{}") != 1 for t in templates):
        raise ConfigError(f"text classifier: expected prompt templates with exactly one '{{}}', "
                          f"got {list(templates)[:3]!r}")
    if norm not in TEXT_NORMS:
        raise ConfigError(f"text classifier: norm = {norm!r}: expected one of {', '.join(TEXT_NORMS)}")
    tokenizer = open_clip().get_tokenizer(model_name)
    device = next(clip_model.parameters()).device
    columns = []
    for name in tqdm(classnames, desc="text classifier", unit="class", disable=not progress):
        tokens = tokenizer([t.format(name) for t in templates]).to(device)
        emb = clip_model.encode_text(tokens).float()
        if norm == "raw_mean":
            columns.append(emb.mean(dim=0))
            continue
        mean = F.normalize(emb, dim=-1).mean(dim=0)
        columns.append(F.normalize(mean, dim=-1) if norm == "renormalized" else mean)
    return torch.stack(columns, dim=1)
