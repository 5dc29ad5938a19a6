"""Frozen CLIP teachers: zero-shot and Tip-Adapter-F, and the teacher file.

A teacher maps the shared un-normalised [0, 1] crop to logits [B, C]; it resizes and
normalises the crop itself (CLIP size, mean and std of its open_clip model).

* zero-shot: ``logits = 100 * normalize(f_img(x)) @ W``, ``W`` [D, C] from prompt templates
  (column normalisation as in the authors' code: :func:`default_text_norm`);
* Tip-Adapter-F: ``logits = clip_logits + alpha_tip * exp(-beta_tip * (1 - f @ K^T)) @ V``
  (fitted by :func:`dho.models.tip_adapter.fit_tip_adapter_f`).

A teacher file (:func:`save_teacher` / :func:`load_teacher`) is a dict of tensors, strings
and numbers; the image tower is re-created from the open_clip ``model``/``pretrained``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..io import atomic_torch_save
from ..registry import Registry
from ..data.templates import TEXT_NORMS
from .clip import create_clip, first_line, preprocess_info, text_classifier
from .preprocess import InputAdapter

TEACHERS = Registry("teacher")

FILE_FORMAT = "dho-teacher"
FILE_VERSION = 1
CLIP_LOGIT_SCALE = 100.0


class ZeroShotTeacher(nn.Module):
    """Zero-shot CLIP: ``100 * normalize(f_img(x)) @ W`` (frozen, always in eval mode)."""

    kind = "zeroshot"

    def __init__(self, visual: nn.Module, adapter: InputAdapter, text_classifier: torch.Tensor,
                 model: str, pretrained: str, classnames: Sequence[str]):
        super().__init__()
        if text_classifier.ndim != 2 or text_classifier.shape[1] != len(classnames):
            raise ValueError(f"text classifier of shape {tuple(text_classifier.shape)} "
                             f"does not match {len(classnames)} classes")
        self.adapter = adapter
        self.visual = visual
        self.register_buffer("text_classifier", text_classifier.float().clone())
        self.model = model
        self.pretrained = pretrained
        self.classnames = list(classnames)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "ZeroShotTeacher":
        return super().train(False)  # frozen: BatchNorm/dropout never switch to training

    @property
    def num_classes(self) -> int:
        return self.text_classifier.shape[1]

    @property
    def image_size(self) -> int:
        return self.adapter.image_size

    @property
    def device(self) -> torch.device:
        return self.text_classifier.device

    def encode(self, x01: torch.Tensor) -> torch.Tensor:
        """L2-normalised float32 image features [B, D] (no autograd; fp16 autocast on CUDA)."""
        x01 = x01.to(self.device, non_blocking=True)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16, enabled=x01.is_cuda):
            f = self.visual(self.adapter(x01))
        return F.normalize(f.float(), dim=-1)

    def clip_logits(self, features: torch.Tensor) -> torch.Tensor:
        return CLIP_LOGIT_SCALE * features @ self.text_classifier

    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.clip_logits(features)

    def forward(self, x01: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            logits = self.logits_from_features(self.encode(x01))
        return logits.clone()  # a normal tensor: usable as a target in autograd graphs

    @property
    def embedding_dim(self) -> int:
        """Dimension of the image embedding (:meth:`encode`)."""
        return self.text_classifier.shape[0]

    def outputs(self, x01: torch.Tensor, wanted: Sequence[str]) -> dict[str, torch.Tensor]:
        """Several outputs from one image-tower pass: ``"logits"`` and/or ``"embedding"``
        (the L2-normalised image embedding), as normal tensors."""
        unknown = sorted(set(wanted) - {"logits", "embedding"})
        if unknown:
            raise ConfigError(f"teacher outputs {', '.join(unknown)} are not available; known: embedding, logits")
        with torch.inference_mode():
            f = self.encode(x01)
            out = {"embedding": f, "logits": self.logits_from_features(f)} if "logits" in wanted else {"embedding": f}
        return {k: v.clone() for k, v in out.items() if k in wanted}

    def file_dict(self) -> dict[str, Any]:
        return {"format": FILE_FORMAT, "version": FILE_VERSION, "kind": self.kind, "model": self.model,
                "pretrained": self.pretrained, "classnames": list(self.classnames),
                "text_classifier": self.text_classifier.detach().cpu().contiguous()}

    @classmethod
    def from_file_dict(cls, d: dict[str, Any], visual: nn.Module, adapter: InputAdapter) -> "ZeroShotTeacher":
        return cls(visual, adapter, d["text_classifier"], d["model"], d["pretrained"], d["classnames"])


class TipAdapterTeacher(ZeroShotTeacher):
    """Tip-Adapter-F: zero-shot logits + ``alpha_tip * exp(-beta_tip * (1 - f K^T)) V``."""

    kind = "tip_adapter_f"

    def __init__(self, visual: nn.Module, adapter: InputAdapter, text_classifier: torch.Tensor,
                 model: str, pretrained: str, classnames: Sequence[str], cache_keys: torch.Tensor,
                 cache_values: torch.Tensor, alpha_tip: float, beta_tip: float):
        super().__init__(visual, adapter, text_classifier, model, pretrained, classnames)
        if (cache_keys.ndim != 2 or cache_values.ndim != 2 or cache_keys.shape[0] != cache_values.shape[0]
                or cache_keys.shape[1] != text_classifier.shape[0]
                or cache_values.shape[1] != text_classifier.shape[1]):
            raise ValueError(f"cache keys {tuple(cache_keys.shape)} / values {tuple(cache_values.shape)} do not "
                             f"match the text classifier {tuple(text_classifier.shape)}")
        self.register_buffer("cache_keys", cache_keys.float().clone().to(self.device))
        self.register_buffer("cache_values", cache_values.float().clone().to(self.device))
        self.alpha_tip = float(alpha_tip)
        self.beta_tip = float(beta_tip)

    @classmethod
    def from_base(cls, base: ZeroShotTeacher, cache_keys: torch.Tensor, cache_values: torch.Tensor,
                  alpha_tip: float, beta_tip: float) -> "TipAdapterTeacher":
        return cls(base.visual, base.adapter, base.text_classifier, base.model, base.pretrained,
                   base.classnames, cache_keys, cache_values, alpha_tip, beta_tip)

    def logits_from_features(self, features: torch.Tensor) -> torch.Tensor:
        cache = torch.exp(-self.beta_tip * (1.0 - features @ self.cache_keys.t())) @ self.cache_values
        return self.clip_logits(features) + self.alpha_tip * cache

    def file_dict(self) -> dict[str, Any]:
        d = super().file_dict()
        d.update(cache_keys=self.cache_keys.detach().cpu().contiguous(),
                 cache_values=self.cache_values.detach().cpu().contiguous(),
                 alpha_tip=self.alpha_tip, beta_tip=self.beta_tip)
        return d

    @classmethod
    def from_file_dict(cls, d: dict[str, Any], visual: nn.Module, adapter: InputAdapter) -> "TipAdapterTeacher":
        return cls(visual, adapter, d["text_classifier"], d["model"], d["pretrained"], d["classnames"],
                   d["cache_keys"], d["cache_values"], d["alpha_tip"], d["beta_tip"])


TEACHERS.register("zeroshot", ZeroShotTeacher, help="zero-shot CLIP: 100 * normalize(f(x)) @ W from prompt templates")
TEACHERS.register("tip_adapter_f", TipAdapterTeacher,
                  help="few-shot Tip-Adapter-F: zero-shot CLIP + fine-tuned cache model of the labeled shots")


def _adapter_for(clip_model) -> InputAdapter:
    info = preprocess_info(clip_model)
    return InputAdapter(info["image_size"], info["mean"], info["std"], info["interpolation"])


def default_text_norm(model: str, pretrained: str) -> str:
    """The authors' text-classifier normalisation for a teacher: the DFN5B ViT-H/14
    (``train_imgnet_semi.py``, open_clip path) averages the normalised prompt embeddings
    without normalising the mean again; every other teacher goes through their
    ``clip_classifier``, which does (:data:`dho.models.clip.TEXT_NORMS`)."""
    return "mean_of_normalized" if pretrained == "dfn5b" else "renormalized"


def build_zeroshot_teacher(model: str, pretrained: str, classnames: Sequence[str], templates: Sequence[str],
                           device: str | torch.device = "cpu", progress: bool = True,
                           text_norm: str = "auto", prompt_names: Sequence[str] | None = None) -> ZeroShotTeacher:
    """Zero-shot CLIP teacher from open_clip ``model`` with ``pretrained`` = tag or local file;
    ``text_norm``: one of :data:`~dho.models.clip.TEXT_NORMS` or "auto" (:func:`default_text_norm`);
    ``prompt_names``: the names put into the prompts (default ``classnames``, which the file keeps)."""
    if text_norm == "auto":
        text_norm = default_text_norm(model, pretrained)
    if text_norm not in TEXT_NORMS:
        raise ConfigError(f"--text-norm {text_norm!r}: expected auto or one of {', '.join(TEXT_NORMS)}")
    if not pretrained:
        raise ConfigError(f"teacher '{model}': pretrained is empty: expected an open_clip tag or a "
                          f"weights file (the teacher file re-creates the image tower from it)")
    clip_model = create_clip(model, pretrained, device).eval()
    W = text_classifier(clip_model, model, list(prompt_names or classnames), templates, progress=progress,
                        norm=text_norm)
    return ZeroShotTeacher(clip_model.visual, _adapter_for(clip_model), W, model, pretrained, classnames)


def save_teacher(teacher: ZeroShotTeacher, path: str | Path) -> None:
    """Write ``teacher`` as a teacher file (atomic; plain tensors/str/numbers only)."""
    atomic_torch_save(teacher.file_dict(), path)


_REQUIRED = {"kind": str, "model": str, "pretrained": str, "classnames": list, "text_classifier": torch.Tensor}
_REQUIRED_TIP = {"cache_keys": torch.Tensor, "cache_values": torch.Tensor, "alpha_tip": (int, float),
                 "beta_tip": (int, float)}


def _check_file_dict(d: Any, path: Path, expected_classes: int | Sequence[str] | None) -> None:
    if not isinstance(d, dict) or d.get("format") != FILE_FORMAT:
        raise CheckpointError(f"{path} is not a dho teacher file (no format '{FILE_FORMAT}')")
    if d.get("kind") not in TEACHERS:
        raise CheckpointError(f"teacher file {path}: unknown kind {d.get('kind')!r}; "
                              f"expected one of {', '.join(TEACHERS.names())}")
    required = dict(_REQUIRED, **(_REQUIRED_TIP if d["kind"] == "tip_adapter_f" else {}))
    for key, typ in required.items():
        if not isinstance(d.get(key), typ):
            raise CheckpointError(f"teacher file {path}: key '{key}' is missing or of the wrong type")
    if not d["pretrained"]:
        raise CheckpointError(f"teacher file {path}: key 'pretrained' is empty (the image tower cannot be re-created)")
    W = d["text_classifier"]
    n = len(d["classnames"])
    if W.ndim != 2 or W.shape[1] != n:
        raise CheckpointError(f"teacher file {path}: text_classifier of shape {tuple(W.shape)} "
                              f"does not match its {n} class names")
    if expected_classes is not None:
        names = None if isinstance(expected_classes, int) else list(expected_classes)
        count = expected_classes if names is None else len(names)
        if n != count:
            raise CheckpointError(f"teacher file {path} has {n} classes; expected {count} "
                                  f"(a teacher made for another dataset?)")
        if names is not None and d["classnames"] != names:
            first = next(i for i, (a, b) in enumerate(zip(d["classnames"], names)) if a != b)
            raise CheckpointError(f"teacher file {path}: class {first} is '{d['classnames'][first]}', expected "
                                  f"'{names[first]}' (a teacher made for another dataset or class order?)")
    if d["kind"] == "tip_adapter_f":
        K, V = d["cache_keys"], d["cache_values"]
        if K.ndim != 2 or V.ndim != 2 or K.shape[0] != V.shape[0] or K.shape[1] != W.shape[0] or V.shape[1] != n:
            raise CheckpointError(f"teacher file {path}: cache_keys {tuple(K.shape)} / cache_values "
                                  f"{tuple(V.shape)} do not match text_classifier {tuple(W.shape)}")


def read_teacher_file(path: str | Path, expected_classes: int | Sequence[str] | None = None) -> dict[str, Any]:
    """The checked dict of a teacher file (no image tower built); CheckpointError if bad."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"teacher file not found: {path}")
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"teacher file {path} cannot be read (corrupt or truncated?): "
                              f"{first_line(e)}") from None
    _check_file_dict(d, path, expected_classes)
    return d


def encoder_identity(d: dict[str, Any]) -> dict[str, str]:
    """What fixes a teacher file's image features: the open_clip model, its pretrained tag
    or weights file, and that file's sha256 (a changed file changes the identity)."""
    from ..io import file_sha256

    ident = {"model": str(d["model"]), "pretrained": str(d["pretrained"]), "weights_sha256": ""}
    if Path(d["pretrained"]).is_file():
        ident["weights_sha256"] = file_sha256(d["pretrained"])
    return ident


def head_identity(d: dict[str, Any]) -> dict[str, str]:
    """What fixes a teacher file's head (features -> logits): its kind and the sha256 of its
    head tensors and numbers (text classifier; Tip-Adapter-F's cache model and alpha/beta)."""
    import hashlib

    h = hashlib.sha256(str(d["kind"]).encode())
    for key in ("text_classifier", *(_REQUIRED_TIP if d["kind"] == "tip_adapter_f" else ())):
        v = d[key]
        h.update(v.detach().cpu().float().contiguous().numpy().tobytes() if isinstance(v, torch.Tensor)
                 else repr(float(v)).encode())
    return {"kind": str(d["kind"]), "sha256": h.hexdigest()}


def load_teacher_head(path: str | Path, device: str | torch.device = "cpu",
                      expected_classes: int | Sequence[str] | None = None) -> ZeroShotTeacher:
    """A teacher without its image tower: only ``logits_from_features`` works (for logits
    from cached image features, :mod:`dho.teacher_cache`)."""
    d = read_teacher_file(path, expected_classes)
    return TEACHERS.get(d["kind"]).from_file_dict(d, nn.Identity(), None).to(device)


def load_teacher(path: str | Path, device: str | torch.device = "cpu",
                 expected_classes: int | Sequence[str] | None = None) -> ZeroShotTeacher:
    """Load a teacher file; the image tower is re-created from its open_clip model/pretrained.

    ``expected_classes``: a class count, or the class names (checked in order).  Raises
    CheckpointError for a missing, corrupt, truncated or mismatched file.
    """
    path = Path(path)
    d = read_teacher_file(path, expected_classes)
    try:
        clip_model = create_clip(d["model"], d["pretrained"], device).eval()
    except ConfigError as e:  # e.g. its local weights file was moved
        raise CheckpointError(f"teacher file {path}: {e}") from None
    dim = int(clip_model.visual.output_dim)
    if dim != d["text_classifier"].shape[0]:
        raise CheckpointError(f"teacher file {path}: text_classifier has dimension {d['text_classifier'].shape[0]} "
                              f"but the image tower of {d['model']} ({d['pretrained']}) gives {dim}")
    teacher = TEACHERS.get(d["kind"]).from_file_dict(d, clip_model.visual, _adapter_for(clip_model))
    return teacher.to(device)
