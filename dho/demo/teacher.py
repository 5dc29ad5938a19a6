"""Pretrain the demo's tiny CLIP (``dho-tiny-clip``) contrastively on synthetic captions.

The teacher of the offline demo is a real, if small, CLIP: an open_clip model built from
``dho/models/configs/dho-tiny-clip.json`` and trained with CLIP's symmetric InfoNCE loss
(learnable logit scale) on image-caption pairs rendered by :mod:`dho.demo.render`:

* images come from a pretraining stream disjoint from the benchmark's images, and cover
  the whole attribute space (6 colours x 4 textures x 6 shapes = 144 combinations, of
  which the benchmark's 12 classes are a small part);
* captions describe the image with varied templates, sometimes naming only some of its
  attributes; none of the benchmark's prompt templates except CLIP's ubiquitous
  "a photo of a {}." is used, so the zero-shot classifier must transfer.

The budget (``steps``, ``pool``) sets how good the teacher is: the defaults give a
teacher that is clearly better than chance on the demo benchmark but leaves room for a
student.  Training runs on CPU and is deterministic for a given seed and thread count
(``torch.use_deterministic_algorithms``, seeded generators, no data-loader workers); the
thread count is fixed by the config (default 1), not taken from the machine.

The weights are saved as a plain state_dict (tensors only), loadable with
``open_clip.create_model("dho-tiny-clip", pretrained=FILE)``.  torch is imported on first
use, so that ``dho --help`` stays quick.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Iterator

import numpy as np

from ..errors import ConfigError, TrainingError
from ..io import atomic_torch_save
from ..progress import Progress
from .render import COLOUR_HUES, SHAPES, TEXTURES, Attributes, render

MODEL_NAME = "dho-tiny-clip"
PRETRAIN_STREAM = 1  # numpy seed-sequence stream id; the benchmark's images use 0

# Captions naming all three attributes ({c}olour, {t}exture, {s}hape) ...
FULL_CAPTIONS = (
    "a photo of a {c} {t} {s}.",
    "a {c} {t} {s}.",
    "a {t} {s} in {c}.",
    "a {c} {s} with a {p}.",
    "this {s} is {c} and {t}.",
    "there is a {c} {t} {s} in the picture.",
)
# ... and only some of them.
PARTIAL_CAPTIONS = (
    "a {c} {s}.",
    "a {t} {s}.",
    "a {c} {t} shape.",
    "something {c} with a {p}.",
)
PATTERN_NOUNS = {"striped": "striped pattern", "dotted": "pattern of dots",
                 "checkered": "checkered pattern", "plain": "plain surface"}


def validate_pretraining(config, counts: tuple[str, ...]) -> None:
    """The checks every demo pretraining config shares: a seed of 0 or more, the ``counts``
    at least 1, a positive peak learning rate and a warm-up fraction in [0, 1)."""
    if config.seed < 0:
        raise ConfigError(f"--seed must be 0 or more, got {config.seed}")
    for key in counts:
        if getattr(config, key) < 1:
            raise ConfigError(f"--{key.replace('_', '-')} must be at least 1, got {getattr(config, key)}")
    if not config.lr > 0:
        raise ConfigError(f"--lr must be positive, got {config.lr}")
    if not 0 <= config.warmup < 1:
        raise ConfigError(f"warmup must be in [0, 1), got {config.warmup}")


@dataclass(frozen=True)
class PretrainConfig:
    """Budget and optimisation of the tiny CLIP's pretraining."""

    seed: int = 0
    steps: int = 400
    batch_size: int = 128
    pool: int = 4000             # distinct pretraining images (rendered once, reused)
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup: float = 0.1          # fraction of steps with linear warm-up; cosine decay after
    partial_caption_prob: float = 0.2
    threads: int = 1             # torch CPU threads while pretraining (results depend on it)

    def validate(self) -> None:
        validate_pretraining(self, ("steps", "batch_size", "pool", "threads"))
        if self.batch_size < 2:
            raise ConfigError(f"--batch-size must be at least 2 for a contrastive loss, got {self.batch_size}")
        if not 0 <= self.partial_caption_prob <= 1:
            raise ConfigError(f"partial_caption_prob must be in [0, 1], got {self.partial_caption_prob}")


def caption(attrs: Attributes, rng: np.random.Generator, partial_prob: float) -> str:
    """One caption for an image of ``attrs``, drawn from ``rng``."""
    pool = PARTIAL_CAPTIONS if rng.uniform() < partial_prob else FULL_CAPTIONS
    template = pool[int(rng.integers(len(pool)))]
    return template.format(c=attrs.colour, t=attrs.texture, s=attrs.shape,
                           p=PATTERN_NOUNS[attrs.texture])


def pretraining_pool(seed: int, count: int, size: int,
                     progress: bool = True) -> tuple["torch.Tensor", list[Attributes]]:
    """``count`` pretraining images (``uint8 [N, 3, size, size]``) with their attributes.

    Attributes are uniform over all colour x texture x shape combinations.  Each image's
    generator is seeded by ``(PRETRAIN_STREAM, seed, index)``: never a benchmark image.
    """
    import torch

    colours, images, attrs = list(COLOUR_HUES), [], []
    for i in Progress(count, "render pretraining images", unit="img", bar=progress, min_interval_s=5).iterate(range(count)):
        rng = np.random.default_rng([PRETRAIN_STREAM, seed, i])
        a = Attributes(colours[int(rng.integers(len(colours)))],
                       TEXTURES[int(rng.integers(len(TEXTURES)))],
                       SHAPES[int(rng.integers(len(SHAPES)))])
        images.append(render(a, rng, size))
        attrs.append(a)
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous(), attrs


@contextlib.contextmanager
def deterministic_torch(seed: int, threads: int) -> Iterator[None]:
    """Seed torch's global RNG, force deterministic kernels and fix the CPU thread count
    (float reductions depend on it); restore all three afterwards."""
    import torch

    previous = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(True)
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous_threads)
            torch.use_deterministic_algorithms(previous, warn_only=warn_only)


def _lr_factor(step: int, total: int, warmup: float) -> float:
    warm = int(round(warmup * total))
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def pretrain_tiny_clip(config: PretrainConfig = PretrainConfig(),
                       progress: bool = True) -> tuple["torch.nn.Module", dict]:
    """Pretrain ``dho-tiny-clip`` from scratch on CPU; return ``(model, stats)``.

    ``stats`` holds the config, the parameter count, the last loss and logit scale and
    the wall time of rendering and of training.
    """
    import torch
    import torch.nn.functional as F

    from ..models.clip import open_clip, preprocess_info
    from ..models.preprocess import InputAdapter

    config.validate()
    oc = open_clip()
    t0 = time.perf_counter()
    with deterministic_torch(config.seed, config.threads):
        logging.disable(logging.WARNING)  # open_clip warns that the weights are random: they are meant to be
        try:
            model = oc.create_model(MODEL_NAME, pretrained=None, device="cpu")
        finally:
            logging.disable(logging.NOTSET)
        info = preprocess_info(model)
        adapt = InputAdapter(info["image_size"], info["mean"], info["std"], info["interpolation"])
        tokenizer = oc.get_tokenizer(MODEL_NAME)
        images, attrs = pretraining_pool(config.seed, config.pool, info["image_size"], progress)
        t_render = time.perf_counter() - t0

        decay = [p for p in model.parameters() if p.ndim >= 2]
        no_decay = [p for p in model.parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": config.weight_decay},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=config.lr, betas=(0.9, 0.98), eps=1e-6)
        batch_gen = torch.Generator().manual_seed(config.seed)
        caption_rng = np.random.default_rng([PRETRAIN_STREAM, config.seed, 2 ** 31])
        token_cache: dict[str, torch.Tensor] = {}
        targets = torch.arange(config.batch_size)
        max_logit_scale = math.log(100.0)
        model.train()
        loss_value = float("nan")
        bar = Progress(config.steps, "pretrain tiny CLIP", bar=progress)
        for step in bar.iterate(range(config.steps)):
            for group in optimizer.param_groups:
                group["lr"] = config.lr * _lr_factor(step, config.steps, config.warmup)
            idx = torch.randint(len(attrs), (config.batch_size,), generator=batch_gen)
            texts = [caption(attrs[i], caption_rng, config.partial_caption_prob) for i in idx.tolist()]
            for t in texts:
                if t not in token_cache:
                    token_cache[t] = tokenizer([t])[0]
            tokens = torch.stack([token_cache[t] for t in texts])
            x = adapt(images[idx].float().div_(255.0))
            img = F.normalize(model.encode_image(x), dim=-1)
            txt = F.normalize(model.encode_text(tokens), dim=-1)
            logits = model.logit_scale.exp() * img @ txt.t()
            loss = 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets))
            if not torch.isfinite(loss):
                raise TrainingError(f"tiny CLIP pretraining diverged at step {step} (loss {loss.item()}); "
                                    f"try a lower --lr than {config.lr}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0.0, max_logit_scale)
            loss_value = loss.item()
            if step % 10 == 0 or step == config.steps - 1:
                bar.set(loss=round(loss_value, 3), scale=round(model.logit_scale.exp().item(), 1))
    model.eval()
    stats = {
        "model": MODEL_NAME,
        "config": asdict(config),
        "parameters": sum(p.numel() for p in model.parameters()),
        "final_loss": loss_value,
        "logit_scale": round(model.logit_scale.exp().item(), 2),
        "render_s": round(t_render, 2),
        "train_s": round(time.perf_counter() - t0 - t_render, 2),
    }
    return model, stats


def save_tiny_clip(model: "torch.nn.Module", path: str | os.PathLike) -> None:
    """Save the weights as a plain state_dict of tensors (atomic)."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    atomic_torch_save(state, path)


def teacher_accuracy(teacher: "torch.nn.Module", images: np.ndarray, labels: np.ndarray,
                     batch_size: int = 256) -> float:
    """Top-1 accuracy (percent) of a teacher (``x01 -> logits``) on ``uint8 [N, H, W, 3]`` images."""
    import torch

    x_all = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    y_all = torch.from_numpy(np.asarray(labels))
    correct = 0
    for start in range(0, len(x_all), batch_size):
        with torch.no_grad():
            logits = teacher(x_all[start:start + batch_size].float().div_(255.0))
        correct += int((logits.argmax(dim=1).cpu() == y_all[start:start + batch_size]).sum())
    return 100.0 * correct / max(1, len(x_all))
