"""Students: a shared feature extractor ``g`` and one or two linear heads.

``build_student(name, num_classes, heads=2, ...)`` returns a :class:`Student` whose
``forward(x01)`` takes the shared un-normalised [0, 1] crop at any size, resizes and
normalises it itself, and returns ``StudentOutput(feature, ce, kd)``:

* ``feature`` = ``z = g(x)``, the tensor the gradient-conflict cosine is taken w.r.t.;
* ``ce`` = ``h_CE(z)`` (trained on labels), ``kd`` = ``h_KD(z)`` (trained on the teacher);
  with ``heads=1`` there is one head and ``ce`` and ``kd`` are the same tensor.

CLIP students ([code], ``train_imgnet_semi.py``): both heads are initialised from the
student's own text tower (``language_init``: weight = the raw, unnormalised mean of the
class's prompt embeddings, bias 0), and the KD logits are ``h_KD(normalize(z)) * 100``
(``kd_head_align``; the bias is scaled with the rest) while ``h_CE`` sees the raw ``z``.  With one head, the head sees the
raw feature (alignment is a property of a separate KD head).

student_kwargs:

* every student: ``freeze_backbone`` (default False: the feature extractor frozen, only
  the heads train; Table 2's dagger rows, linear evaluation / DHO on a frozen backbone);
* torchvision (``resnet18``, ``mobilenet_v2``, ``dino_resnet50``): ``image_size`` (default
  224), ``weights`` (a local state-dict file, used instead of the default weights: ImageNet-
  supervised for resnet18/mobilenet_v2, DINO's self-supervised ResNet-50 from the torch hub
  cache for dino_resnet50; a file without the classifier's keys is accepted); ``resnet18`` also
  ``width`` (channels of the first stage, default 64: a narrow ResNet-18 for CPU demos);
  anything else goes to torchvision's builder (e.g. ``width_mult`` for MobileNetV2).
* CLIP (``clip_vit_b16``, ``clip_vit_l14_336``, ``clip_tiny``): ``language_init``
  (default True: both heads; ``"ce"`` / ``"kd"``: that head only, the other random, as in
  Table 6's ablation), ``kd_head_align`` (default True), ``weights`` (a local open_clip weights file, used
  instead of the ``openai`` tag), ``progress``, ``prompts`` (the prompt set the heads are
  initialised from: ``authors`` or ``clip``; the run loop turns it into ``templates``
  with :meth:`dho.data.source.DatasetSource.prompt_templates`); ``clip_tiny`` also ``model`` (an open_clip
  config name, default ``dho-tiny-clip``) and has no tag: ``pretrained`` needs ``weights``.

An explicit ``weights`` file is loaded whatever ``pretrained`` says.
"""

from __future__ import annotations

import inspect
import os
from typing import Any, Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, ConfigError, WeightsUnavailable
from ..registry import Registry
from .clip import create_clip, first_line, offline_requested, preprocess_info, text_classifier
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, InputAdapter

STUDENTS = Registry("student")
# defaults of the torchvision students' kwargs (also what `dho demo student` matches)
RESNET_WIDTH = 64
IMAGE_SIZE = 224

DEFAULT_TEMPLATES = ("a photo of a {}.",)
KD_ALIGN_SCALE = 100.0  # CLIP's logit scale, applied to the aligned KD head's output


class StudentOutput(NamedTuple):
    feature: torch.Tensor  # [B, D] shared feature z
    ce: torch.Tensor       # [B, C] h_CE(z)
    kd: torch.Tensor       # [B, C] h_KD(z) (the same tensor as ce with one head)


class Student(nn.Module):
    """Backbone + ``heads`` linear heads on its ``feature_dim``-d output."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, heads: int,
                 adapter: InputAdapter, kd_head_align: bool = False):
        super().__init__()
        self.adapter = adapter
        self.backbone = backbone
        self.ce_head = nn.Linear(feature_dim, num_classes)
        self.kd_head = nn.Linear(feature_dim, num_classes) if heads == 2 else None
        self.kd_head_align = bool(kd_head_align) and heads == 2
        self.num_heads = heads
        self.num_classes = num_classes
        self.feature_dim = feature_dim

    @property
    def image_size(self) -> int:
        return self.adapter.image_size

    def freeze_backbone(self) -> None:
        """No gradient to the feature extractor, which stays in eval mode (BatchNorm statistics
        and dropout frozen too); the heads train as usual."""
        self.backbone.requires_grad_(False)
        self.backbone_frozen = True
        self.backbone.eval()

    def train(self, mode: bool = True) -> "Student":
        super().train(mode)
        if getattr(self, "backbone_frozen", False):
            self.backbone.eval()
        return self

    def forward(self, x01: torch.Tensor) -> StudentOutput:
        z = self.backbone(self.adapter(x01))
        ce = self.ce_head(z)
        if self.kd_head is None:
            return StudentOutput(z, ce, ce)
        if self.kd_head_align:  # the authors' kd_head(normalize(z)) * 100: the bias is scaled too
            return StudentOutput(z, ce, KD_ALIGN_SCALE * self.kd_head(F.normalize(z, dim=-1)))
        return StudentOutput(z, ce, self.kd_head(z))

    @torch.no_grad()
    def init_heads_from_text(self, weight: torch.Tensor, which: bool | str = True) -> None:
        """Set the weight of the heads ``which`` names (True: every head; ``"ce"`` / ``"kd"``:
        that head only, Table 6's ablation) to ``weight`` [C, D] and their bias to zero."""
        heads = {True: (self.ce_head, self.kd_head), "ce": (self.ce_head,), "kd": (self.kd_head,)}[which]
        for head in heads:
            if head is not None:
                head.weight.copy_(weight.to(head.weight))
                head.bias.zero_()


def build_student(name: str, num_classes: int, heads: int = 2, pretrained: bool = True,
                  classnames: Sequence[str] | None = None, templates: Sequence[str] | None = None,
                  **kwargs: Any) -> Student:
    """Build the registered student ``name`` (see ``dho students``).

    ``freeze_backbone`` (any student): the feature extractor is frozen (no gradient, kept in
    eval mode), only the heads train: linear evaluation / DHO on a frozen backbone (the
    paper's Table 2 dagger rows)."""
    builder = STUDENTS.get(name)
    freeze = kwargs.pop("freeze_backbone", False)
    if not isinstance(freeze, bool):
        raise ConfigError(f"student '{name}': freeze_backbone = {freeze!r}: expected true or false")
    params = inspect.signature(builder).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        accepted = [k for k in params if k not in ("num_classes", "heads", "pretrained", "classnames", "templates")]
        unknown = sorted(set(kwargs) - set(accepted))
        if unknown:
            raise ConfigError(f"student '{name}': unknown student_kwargs {', '.join(unknown)}; "
                              f"accepted: {', '.join(accepted)}")
    if heads not in (1, 2):
        raise ConfigError(f"student '{name}': heads = {heads!r}: expected 1 or 2")
    if not (isinstance(num_classes, int) and num_classes >= 1):
        raise ConfigError(f"student '{name}': num_classes = {num_classes!r}: expected an integer >= 1")
    if classnames is not None and len(classnames) != num_classes:
        raise ConfigError(f"student '{name}': {len(classnames)} class names for {num_classes} classes")
    student = builder(num_classes=num_classes, heads=heads, pretrained=pretrained,
                      classnames=classnames, templates=templates, **kwargs)
    if freeze:
        student.freeze_backbone()
    return student


# --------------------------------------------------------------------------- torchvision
def _torchvision_state_dict(weights) -> dict[str, torch.Tensor]:
    """State dict of a torchvision weight enum, from the torch hub cache or downloaded."""
    enum_name = f"{type(weights).__name__}.{weights.name}"
    return _hub_state_dict(weights.url, f"torchvision weights {enum_name}",
                           f"python -c \"import torchvision; torchvision.models.{enum_name}.get_state_dict()\"")


def _hub_state_dict(url: str, what: str, fill_cmd: str) -> dict[str, torch.Tensor]:
    """State dict at ``url`` from the torch hub cache (``TORCH_HOME/hub/checkpoints``),
    downloaded there if missing; WeightsUnavailable (one line) when it cannot be."""
    from urllib.parse import urlparse

    filename = os.path.basename(urlparse(url).path)
    cached = os.path.join(torch.hub.get_dir(), "checkpoints", filename)
    if not os.path.isfile(cached):
        advice = (f"looked for {cached} (TORCH_HOME/hub/checkpoints): pre-fill it on a machine with "
                  f"internet ({fill_cmd}) or pass student_kwargs.weights=FILE; set HF_HUB_OFFLINE=1 to fail fast")
        if offline_requested():
            raise WeightsUnavailable(f"{what} are not cached and HF_HUB_OFFLINE is set; {advice}")
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        match = torch.hub.HASH_REGEX.search(filename)
        try:
            torch.hub.download_url_to_file(url, cached, match.group(1) if match else None, progress=True)
        except Exception as e:  # URLError, socket timeout, hash mismatch
            raise WeightsUnavailable(f"{what} cannot be downloaded ({first_line(e)}); {advice}") from None
    return _load_state_dict_file(cached)


def _load_state_dict_file(path: str) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read weights file {path} (corrupt or truncated?): "
                              f"{first_line(e)}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"weights file {path}: expected a state dict, got {type(state).__name__}")
    return state["state_dict"] if isinstance(state.get("state_dict"), dict) else state


def _resnet18(width: int = RESNET_WIDTH, **kwargs: Any) -> nn.Module:
    """torchvision ResNet-18; ``width`` != 64 scales every stage's channels (w, 2w, 4w, 8w)."""
    import torchvision
    from torchvision.models.resnet import BasicBlock

    if not (isinstance(width, int) and not isinstance(width, bool) and width >= 1):
        raise ConfigError(f"student 'resnet18': width = {width!r}: expected a positive integer (64 = standard)")
    model = torchvision.models.resnet18(weights=None, **kwargs)
    if width == 64:
        return model
    model.inplanes = width
    model.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
    model.bn1 = model._norm_layer(width)
    model.layer1 = model._make_layer(BasicBlock, width, 2)
    model.layer2 = model._make_layer(BasicBlock, 2 * width, 2, stride=2)
    model.layer3 = model._make_layer(BasicBlock, 4 * width, 2, stride=2)
    model.layer4 = model._make_layer(BasicBlock, 8 * width, 2, stride=2)
    model.fc = nn.Linear(8 * width, model.fc.out_features)
    for m in model.modules():  # torchvision's initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    return model


def _mobilenet_v2(**kwargs: Any) -> nn.Module:
    import torchvision

    return torchvision.models.mobilenet_v2(weights=None, **kwargs)


def _imagenet_weights(weights_attr: str) -> Callable[[], tuple[dict, str]]:
    """torchvision's ImageNet-supervised weights ``<weights_attr>.IMAGENET1K_V1``."""
    def load() -> tuple[dict, str]:
        import torchvision

        return (_torchvision_state_dict(getattr(torchvision.models, weights_attr).IMAGENET1K_V1),
                f"{weights_attr}.IMAGENET1K_V1")

    return load


DINO_RESNET50_URL = "https://dl.fbaipublicfiles.com/dino/dino_resnet50_pretrain/dino_resnet50_pretrain.pth"


def _dino_resnet50_weights() -> tuple[dict, str]:
    """DINO's self-supervised ResNet-50 (facebookresearch/dino hubconf ``dino_resnet50``:
    a torchvision ResNet-50 without ``fc``), from the torch hub cache."""
    fill = f"python -c \"import torch; torch.hub.load_state_dict_from_url('{DINO_RESNET50_URL}')\""
    return _hub_state_dict(DINO_RESNET50_URL, "DINO ResNet-50 weights", fill), "dino_resnet50"


def _load_backbone(model: nn.Module, state: dict, what: str, arch: str, arch_kwargs: dict,
                   classifier_attr: str) -> None:
    """Load ``state`` into ``model``; a headless state (DINO) may lack the classifier only."""
    prefix = f"{classifier_attr}."
    has_head = any(k.startswith(prefix) for k in state)
    try:
        missing, unexpected = model.load_state_dict(state, strict=has_head)
    except RuntimeError as e:
        missing, unexpected = ["?"], [first_line(e, 150)]
    if unexpected or any(not k.startswith(prefix) for k in missing):
        raise ConfigError(f"student '{arch}': weights {what} do not fit the architecture built "
                          f"with student_kwargs {arch_kwargs}; drop those kwargs or set "
                          f"student_pretrained false ({(unexpected or missing)[0]})")


def _torchvision_student(arch: str, make: Callable[..., nn.Module], default_weights: Callable[[], tuple[dict, str]],
                         classifier_attr: str, feature_dim: Callable[[nn.Module], int]) -> Callable[..., Student]:
    def build(num_classes: int, heads: int, pretrained: bool, classnames=None, templates=None,
              image_size: int = IMAGE_SIZE, weights: str | None = None, **arch_kwargs: Any) -> Student:
        if not (isinstance(image_size, int) and not isinstance(image_size, bool) and image_size >= 8):
            raise ConfigError(f"student '{arch}': image_size = {image_size!r}: expected an integer >= 8")
        try:
            model = make(**arch_kwargs)
        except TypeError as e:
            raise ConfigError(f"student '{arch}': bad student_kwargs {sorted(arch_kwargs)}: {e}") from None
        if pretrained or weights:
            state, what = (_load_state_dict_file(weights), weights) if weights else default_weights()
            _load_backbone(model, state, what, arch, arch_kwargs, classifier_attr)
        dim = feature_dim(model)
        setattr(model, classifier_attr, nn.Identity())
        adapter = InputAdapter(image_size, IMAGENET_MEAN, IMAGENET_STD, "bilinear")
        return Student(model, dim, num_classes, heads, adapter)

    return build


def _resnet50(**kwargs: Any) -> nn.Module:
    import torchvision

    return torchvision.models.resnet50(weights=None, **kwargs)


STUDENTS.register("resnet18", _torchvision_student(
    "resnet18", _resnet18, _imagenet_weights("ResNet18_Weights"), "fc", lambda m: m.fc.in_features),
    help="torchvision ResNet-18 (ImageNet weights ResNet18_Weights.IMAGENET1K_V1), 224 px")
STUDENTS.register("mobilenet_v2", _torchvision_student(
    "mobilenet_v2", _mobilenet_v2, _imagenet_weights("MobileNet_V2_Weights"), "classifier",
    lambda m: m.last_channel),
    help="torchvision MobileNetV2 (ImageNet weights MobileNet_V2_Weights.IMAGENET1K_V1), 224 px")
STUDENTS.register("dino_resnet50", _torchvision_student(
    "dino_resnet50", _resnet50, _dino_resnet50_weights, "fc", lambda m: m.fc.in_features),
    help="DINO self-supervised ResNet-50 (facebookresearch/dino dino_resnet50; no ImageNet labels), 224 px")


# --------------------------------------------------------------------------- CLIP
def _clip_student_from(name: str, source: str | None, num_classes: int, heads: int, classnames, templates,
                       language_init: bool, kd_head_align: bool, progress: bool) -> Student:
    clip_model = create_clip(name, source)
    info = preprocess_info(clip_model)
    # backbone = the image tower: image -> projected embedding (unnormalised)
    student = Student(clip_model.visual, int(clip_model.visual.output_dim), num_classes, heads,
                      InputAdapter(info["image_size"], info["mean"], info["std"], info["interpolation"]),
                      kd_head_align=kd_head_align)
    if language_init not in (True, False, "ce", "kd"):
        raise ConfigError(f"student_kwargs.language_init = {language_init!r}: expected true (both heads), false, "
                          f"'ce' or 'kd' (that head only)")
    if language_init and classnames is not None:
        W = text_classifier(clip_model, name, classnames, templates or DEFAULT_TEMPLATES, progress=progress,
                            norm="raw_mean")
        student.init_heads_from_text(W.t(), language_init)
    return student  # the text tower is dropped with clip_model


def _clip_student(model_name: str, tag: str) -> Callable[..., Student]:
    def build(num_classes: int, heads: int, pretrained: bool, classnames=None, templates=None,
              language_init: bool = True, kd_head_align: bool = True, weights: str | None = None,
              progress: bool = True, prompts: str = "authors") -> Student:
        source = weights or (tag if pretrained else None)
        return _clip_student_from(model_name, source, num_classes, heads, classnames, templates,
                                  language_init, kd_head_align, progress)

    return build


def _clip_tiny(num_classes: int, heads: int, pretrained: bool, classnames=None, templates=None,
               language_init: bool = True, kd_head_align: bool = True, weights: str | None = None,
               model: str = "dho-tiny-clip", progress: bool = True, prompts: str = "authors") -> Student:
    if pretrained and not weights:
        raise ConfigError(f"CLIP student 'clip_tiny' ({model}) has no published weights: pass "
                          f"student_kwargs.weights=FILE or set student_pretrained false")
    return _clip_student_from(model, weights, num_classes, heads, classnames, templates,
                              language_init, kd_head_align, progress)


STUDENTS.register("clip_vit_b16", _clip_student("ViT-B-16-quickgelu", "openai"),
                  help="CLIP ViT-B/16 image tower (open_clip ViT-B-16-quickgelu, openai), 224 px")
STUDENTS.register("clip_vit_l14_336", _clip_student("ViT-L-14-336-quickgelu", "openai"),
                  help="CLIP ViT-L/14 image tower (open_clip ViT-L-14-336-quickgelu, openai), 336 px")
STUDENTS.register("clip_tiny", _clip_tiny,
                  help="tiny CLIP from a project config (kwarg model, default dho-tiny-clip; weights=FILE)")
