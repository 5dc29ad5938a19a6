"""VPT students: visual prompt tuning of CLIP's frozen image tower, with DHO's linear heads.

VPT (Jia et al., "Visual Prompt Tuning", ECCV 2022, Sec. 3.2, Eqs. 4-7): P learnable
prompt tokens of the transformer width are inserted into the input sequence of a frozen
ViT, between the [CLS] token and the patch embeddings, ``[x_0, P, E_0]``:

* VPT-Shallow (Eq. 4-5): prompts only at the first layer's input, carried through;
* VPT-Deep (Eq. 6-7): a fresh prompt set ``P_{i-1}`` replaces the prompt positions at the
  input of every layer ``L_i``;

only the prompts (and the classification head) are learned; the prompts are initialised
uniformly with VPT's xavier bound ``sqrt(6 / (3 * patch^2 + width))``.  On CLIP the
prompts enter after the positional embedding and before CLIP's ``ln_pre`` (as CLIP
prompt-learning code does, e.g. MaPLe / PromptSRC); they get no position embedding.

With DHO (DHO paper, Table 2 "VPT+DHO"): the prompted image tower is the feature
extractor ``g`` and ``h_CE`` / ``h_KD`` are the CLIP student's usual linear heads
(language-aware init, aligned KD head, :mod:`dho.models.students`); with one head (method
``ce``) it is plain VPT with a linear head.

student_kwargs: ``prompt_tokens`` (P, default 10), ``deep`` (default True: VPT-Deep),
``language_init``, ``kd_head_align``, ``weights``, ``progress``, ``prompts`` as for the
CLIP students; ``vpt_tiny`` also ``model`` (default ``dho-tiny-clip``).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from ..errors import ConfigError
from .clip import create_clip, preprocess_info, text_classifier
from .preprocess import InputAdapter
from .students import DEFAULT_TEMPLATES, STUDENTS, Student


class PromptedViT(nn.Module):
    """An open_clip VisionTransformer, frozen and in eval mode, with learned prompt tokens."""

    def __init__(self, visual: nn.Module, prompt_tokens: int, deep: bool):
        super().__init__()
        if not hasattr(visual, "class_embedding") or getattr(visual, "attn_pool", None) is not None:
            raise ConfigError(f"VPT student: image tower {type(visual).__name__} is not a plain CLIP "
                              f"VisionTransformer (class token, no attention pooling)")
        self.visual = visual.requires_grad_(False).eval()
        width = int(visual.class_embedding.shape[0])
        layers = len(visual.transformer.resblocks) if deep else 1
        patch = visual.conv1.kernel_size[0]
        bound = math.sqrt(6.0 / (3 * patch * patch + width))
        self.prompts = nn.Parameter(torch.empty(layers, prompt_tokens, width).uniform_(-bound, bound))
        self.output_dim = visual.output_dim

    @property
    def num_prompts(self) -> int:
        return int(self.prompts.shape[1])

    def train(self, mode: bool = True) -> "PromptedViT":
        super().train(mode)
        self.visual.eval()  # the backbone's dropout / patch dropout stay off
        return self

    def _embeds(self, x: torch.Tensor) -> torch.Tensor:
        """``[x_0, P_0, E_0]`` after CLIP's positional embedding and ``ln_pre``."""
        v = self.visual
        x = v.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + v.positional_embedding.to(x.dtype)
        x = v.patch_dropout(x)
        prompts = self.prompts[0].to(x.dtype).expand(x.shape[0], -1, -1)
        return v.ln_pre(torch.cat([x[:, :1], prompts, x[:, 1:]], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v, n = self.visual, self.num_prompts
        x = self._embeds(x)
        batch_first = getattr(v.transformer, "batch_first", True)
        for i, block in enumerate(v.transformer.resblocks):
            if 0 < i < self.prompts.shape[0]:  # VPT-Deep: fresh prompts at every layer's input
                x = torch.cat([x[:, :1], self.prompts[i].to(x.dtype).expand(x.shape[0], -1, -1), x[:, 1 + n:]], dim=1)
            x = block(x) if batch_first else block(x.transpose(0, 1)).transpose(0, 1)
        pooled, _ = v._pool(x)
        return pooled @ v.proj if v.proj is not None else pooled


class VPTStudent(Student):
    def freeze_backbone(self) -> None:
        """Already frozen: only the prompts and the heads train (``freeze_backbone`` is a no-op)."""


def build_vpt(model_name: str, source: str | None, num_classes: int, heads: int, classnames, templates,
              prompt_tokens: int = 10, deep: bool = True, language_init: bool = True,
              kd_head_align: bool = True, progress: bool = True) -> VPTStudent:
    if not (isinstance(prompt_tokens, int) and not isinstance(prompt_tokens, bool) and prompt_tokens >= 1):
        raise ConfigError(f"VPT student: student_kwargs.prompt_tokens = {prompt_tokens!r}: expected an integer >= 1")
    if not isinstance(deep, bool):
        raise ConfigError(f"VPT student: student_kwargs.deep = {deep!r}: expected true (VPT-Deep) or false")
    if language_init not in (True, False, "ce", "kd"):
        raise ConfigError(f"student_kwargs.language_init = {language_init!r}: expected true (both heads), false, "
                          f"'ce' or 'kd' (that head only)")
    clip_model = create_clip(model_name, source)
    info = preprocess_info(clip_model)
    student = VPTStudent(PromptedViT(clip_model.visual, prompt_tokens, deep), int(clip_model.visual.output_dim),
                         num_classes, heads,
                         InputAdapter(info["image_size"], info["mean"], info["std"], info["interpolation"]),
                         kd_head_align=kd_head_align)
    if language_init and classnames is not None:
        W = text_classifier(clip_model, model_name, classnames, templates or DEFAULT_TEMPLATES, progress=progress,
                            norm="raw_mean")
        student.init_heads_from_text(W.t(), language_init)
    return student


def _vpt_student(model_name: str, tag: str | None, fixed: bool) -> Callable[..., Student]:
    def build(num_classes: int, heads: int, pretrained: bool, classnames=None, templates=None,
              prompt_tokens: int = 10, deep: bool = True, language_init: bool = True, kd_head_align: bool = True,
              weights: str | None = None, progress: bool = True, prompts: str = "authors",
              model: str = model_name) -> Student:
        if pretrained and not weights and tag is None:
            raise ConfigError(f"VPT student on '{model}' has no published weights: pass "
                              f"student_kwargs.weights=FILE or set student_pretrained false")
        source = weights or (tag if pretrained else None)
        return build_vpt(model, source, num_classes, heads, classnames, templates, prompt_tokens, deep,
                         language_init, kd_head_align, progress)

    if not fixed:
        return build

    def fixed_build(num_classes: int, heads: int, pretrained: bool, classnames=None, templates=None,
                    prompt_tokens: int = 10, deep: bool = True, language_init: bool = True,
                    kd_head_align: bool = True, weights: str | None = None, progress: bool = True,
                    prompts: str = "authors") -> Student:
        return build(num_classes, heads, pretrained, classnames, templates, prompt_tokens, deep, language_init,
                     kd_head_align, weights, progress, prompts)

    return fixed_build


STUDENTS.register("vpt_vit_b16", _vpt_student("ViT-B-16-quickgelu", "openai", fixed=True),
                  help="VPT-Deep on CLIP ViT-B/16 (openai): frozen image tower, learned prompts + DHO heads")
STUDENTS.register("vpt_tiny", _vpt_student("dho-tiny-clip", None, fixed=False),
                  help="VPT on a tiny CLIP from a project config (kwarg model; weights=FILE)")
