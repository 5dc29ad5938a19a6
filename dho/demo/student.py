"""Pretrain the demo's narrow ResNet-18 student on a disjoint synthetic task.

In the paper the students start from ImageNet weights: features learned on another,
larger labelled task.  The demo's analogue: the same narrow torchvision ResNet-18 the
``demo`` suite trains (``build_student("resnet18", ..., width=W, image_size=S)``), first
trained supervised on images rendered by :mod:`dho.demo.render` whose attributes are
*disjoint* from the benchmark's classes:

* shapes: those not in :data:`~dho.demo.render.BENCHMARK_SHAPES` (triangle, star,
  cross, hexagon);
* textures: those not in :data:`~dho.demo.render.BENCHMARK_TEXTURES` (checkered, plain);
* colours: all six (colour words are generic, like ImageNet's).

So no pretraining image shows a benchmark class (a benchmark class needs a benchmark
shape *and* texture), and the images come from their own seed stream
(:data:`PRETRAIN_STREAM`), never a benchmark or tiny-CLIP image.  The task is factorised:
one linear layer predicts the colour (6-way), texture (2-way) and shape (4-way) of the
main object, one cross-entropy per attribute, summed -- so the features are about colour,
pattern and outline in general, not about the downstream classes.

The file written is what ``build_student("resnet18", ..., weights=FILE)`` loads strictly
into torchvision's ResNet-18: the backbone's state dict plus ``fc.weight``/``fc.bias`` of
torchvision's 1000-way classifier, whose first rows hold the pretraining head (colour,
texture, shape logits in :func:`pretraining_labels` order) and the rest zeros.  The
student replaces ``fc`` with its own heads, so ``fc`` is only there to load.

Deterministic for a given config and thread count (:func:`dho.demo.teacher.deterministic_torch`);
torch is imported on first use.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ConfigError, TrainingError
from ..io import atomic_torch_save
from ..progress import Progress
from .render import BENCHMARK_SHAPES, BENCHMARK_TEXTURES, COLOUR_HUES, SHAPES, TEXTURES, Attributes, render
from .teacher import _lr_factor, deterministic_torch, validate_pretraining

PRETRAIN_STREAM = 2   # numpy seed-sequence stream id: 0 = benchmark images, 1 = tiny CLIP's
EVAL_OFFSET = 2 ** 30  # image indices of the held-out pretraining images
TORCHVISION_CLASSES = 1000  # rows of torchvision's ResNet-18 fc (what weights=FILE loads into)

COLOURS: tuple[str, ...] = tuple(COLOUR_HUES)
PRETRAIN_TEXTURES: tuple[str, ...] = tuple(t for t in TEXTURES if t not in BENCHMARK_TEXTURES)
PRETRAIN_SHAPES: tuple[str, ...] = tuple(s for s in SHAPES if s not in BENCHMARK_SHAPES)
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("colour", COLOURS), ("texture", PRETRAIN_TEXTURES), ("shape", PRETRAIN_SHAPES))
HEAD_SIZE = sum(len(values) for _, values in GROUPS)
DEMO_STUDENT = "resnet18"  # the student registry name this module pretrains


def pretraining_classes() -> list[Attributes]:
    """Every attribute combination the pretraining images show (none is a benchmark class)."""
    return [Attributes(c, t, s) for c in COLOURS for t in PRETRAIN_TEXTURES for s in PRETRAIN_SHAPES]


def pretraining_labels(attrs: Attributes) -> tuple[int, int, int]:
    """(colour, texture, shape) indices of ``attrs`` in :data:`GROUPS` order."""
    return (COLOURS.index(attrs.colour), PRETRAIN_TEXTURES.index(attrs.texture),
            PRETRAIN_SHAPES.index(attrs.shape))


def demo_student_flags(student_kwargs: dict, width: int | None = None, image_size: int | None = None) -> list[str]:
    """``dho demo student`` flags that match a grid student's kwargs (``width``,
    ``image_size``; where they are silent, ``width`` / ``image_size`` given here, else
    the registry student's defaults)."""
    if width is None or image_size is None:
        from ..models.students import IMAGE_SIZE, RESNET_WIDTH

        width, image_size = RESNET_WIDTH, IMAGE_SIZE
    return ["--width", str(student_kwargs.get("width", width)),
            "--size", str(student_kwargs.get("image_size", image_size))]


@dataclass(frozen=True)
class StudentPretrainConfig:
    """Architecture, budget and optimisation of the demo student's pretraining."""

    seed: int = 0
    width: int = 16            # ResNet-18 channels of the first stage (the suite's student kwarg)
    size: int = 32             # image size (the suite's student image_size)
    steps: int = 2500          # held-out shape accuracy 74 % (900: 51 %)
    batch_size: int = 128
    pool: int = 8000           # distinct pretraining images (rendered once, reused)
    lr: float = 2e-2
    weight_decay: float = 0.05
    warmup: float = 0.05       # fraction of steps with linear warm-up; cosine decay after
    eval_images: int = 600     # held-out pretraining images for the reported accuracy (0 = none)
    threads: int = 1           # torch CPU threads (results depend on it)

    def validate(self) -> None:
        validate_pretraining(self, ("width", "steps", "batch_size", "pool", "threads"))
        if self.size < 8:
            raise ConfigError(f"--size must be at least 8 pixels, got {self.size}")
        if self.eval_images < 0:
            raise ConfigError(f"eval_images must be 0 or more, got {self.eval_images}")


def render_pool(seed: int, start: int, count: int, size: int,
                progress: bool = True) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Images ``start .. start+count-1`` of the pretraining stream: ``uint8 [N, 3, S, S]``
    and ``int64 [N, 3]`` (colour, texture, shape) labels, attributes uniform over
    :func:`pretraining_classes`.  Image ``i`` is seeded by ``(PRETRAIN_STREAM, seed, i)``."""
    import torch

    images, labels = [], []
    rendering = Progress(count, "render student pretraining images", unit="img", bar=progress, min_interval_s=5)
    for i in rendering.iterate(range(start, start + count)):
        rng = np.random.default_rng([PRETRAIN_STREAM, seed, i])
        a = Attributes(COLOURS[int(rng.integers(len(COLOURS)))],
                       PRETRAIN_TEXTURES[int(rng.integers(len(PRETRAIN_TEXTURES)))],
                       PRETRAIN_SHAPES[int(rng.integers(len(PRETRAIN_SHAPES)))])
        images.append(render(a, rng, size))
        labels.append(pretraining_labels(a))
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(labels, dtype=torch.int64).reshape(-1, len(GROUPS))


def _loss_and_correct(logits: "torch.Tensor", labels: "torch.Tensor") -> tuple["torch.Tensor", list[int]]:
    import torch.nn.functional as F

    loss, correct, start = 0.0, [], 0
    for g, (_, values) in enumerate(GROUPS):
        part = logits[:, start:start + len(values)]
        loss = loss + F.cross_entropy(part, labels[:, g])
        correct.append(int((part.argmax(dim=1) == labels[:, g]).sum()))
        start += len(values)
    return loss, correct


def pretrain_student(config: StudentPretrainConfig = StudentPretrainConfig(),
                     progress: bool = True) -> tuple["dho.models.Student", dict]:
    """Pretrain the narrow ResNet-18 on CPU; return ``(student, stats)``.

    ``student`` is the :class:`dho.models.Student` (one head = the pretraining head);
    ``stats`` holds the config, the last loss, the held-out accuracy per attribute and the
    wall times.
    """
    import torch

    from ..models import build_student

    config.validate()
    t0 = time.perf_counter()
    with deterministic_torch(config.seed, config.threads):
        student = build_student("resnet18", HEAD_SIZE, heads=1, pretrained=False,
                                width=config.width, image_size=config.size)
        images, labels = render_pool(config.seed, 0, config.pool, config.size, progress)
        t_render = time.perf_counter() - t0

        decay = [p for p in student.parameters() if p.ndim >= 2]
        no_decay = [p for p in student.parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
        batch_gen = torch.Generator().manual_seed(config.seed)
        student.train()
        loss_value = float("nan")
        bar = Progress(config.steps, "pretrain demo student", bar=progress)
        for step in bar.iterate(range(config.steps)):
            for group in optimizer.param_groups:
                group["lr"] = config.lr * _lr_factor(step, config.steps, config.warmup)
            idx = torch.randint(len(labels), (config.batch_size,), generator=batch_gen)
            x = images[idx].float().div_(255.0)
            flip = torch.rand(len(idx), generator=batch_gen) < 0.5
            x[flip] = x[flip].flip(-1)
            loss, _ = _loss_and_correct(student(x).ce, labels[idx])
            if not torch.isfinite(loss):
                raise TrainingError(f"demo student pretraining diverged at step {step} (loss {loss.item()}); "
                                    f"try a lower --lr than {config.lr}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_value = loss.item()
            if step % 10 == 0 or step == config.steps - 1:
                bar.set(loss=round(loss_value, 3))
        t_train = time.perf_counter() - t0 - t_render
        student.eval()
        accuracy = {}
        if config.eval_images:
            x_eval, y_eval = render_pool(config.seed, EVAL_OFFSET, config.eval_images, config.size, False)
            correct = [0] * len(GROUPS)
            with torch.no_grad():
                for start in range(0, len(y_eval), 256):
                    _, c = _loss_and_correct(student(x_eval[start:start + 256].float().div_(255.0)).ce,
                                             y_eval[start:start + 256])
                    correct = [a + b for a, b in zip(correct, c)]
            accuracy = {name: round(100.0 * c / len(y_eval), 1) for (name, _), c in zip(GROUPS, correct)}
    stats = {
        "student": "resnet18",
        "config": asdict(config),
        "classes": {name: list(values) for name, values in GROUPS},
        "parameters": sum(p.numel() for p in student.backbone.parameters()),
        "final_loss": loss_value,
        "heldout_acc": accuracy,
        "render_s": round(t_render, 2),
        "train_s": round(t_train, 2),
    }
    return student, stats


def student_state_dict(student: "dho.models.Student") -> dict:
    """What ``build_student("resnet18", ..., weights=FILE)`` loads: the torchvision
    ResNet-18 state dict, ``fc`` = the pretraining head in its first rows, zeros after."""
    import torch

    state = {k: v.detach().cpu().clone() for k, v in student.backbone.state_dict().items()}
    head = student.ce_head
    weight = torch.zeros(TORCHVISION_CLASSES, head.in_features)
    bias = torch.zeros(TORCHVISION_CLASSES)
    weight[:head.out_features] = head.weight.detach().cpu()
    bias[:head.out_features] = head.bias.detach().cpu()
    state["fc.weight"], state["fc.bias"] = weight, bias
    return state


def save_student(student: "dho.models.Student", path: str | os.PathLike) -> None:
    """Save :func:`student_state_dict` (plain tensors, atomic)."""
    atomic_torch_save(student_state_dict(student), path)
