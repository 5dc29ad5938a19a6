"""CoOp students: prompt tuning of CLIP's text encoder, DHO's two heads as two prompt sets.

CoOp (Zhou et al., "Learning to Prompt for Vision-Language Models", IJCV 2022, Sec. 3.2,
Eq. 2 and the "unified context" variant): the prompt of class c fed to CLIP's *text*
encoder is ``t_c = [V]_1 [V]_2 ... [V]_M [CLASS_c].`` where ``[V]_m`` are M learnable
context vectors of the word-embedding width (shared by all classes, class token at the
end), and ``p(y=c|x) = softmax_c(cos(f(x), g(t_c)) / tau)`` with CLIP's frozen image
encoder ``f``, frozen text encoder ``g`` and CLIP's own temperature.  Only the context
vectors are learned; CoOp initialises them from N(0, 0.02^2) (or from the word embeddings
of an initial phrase such as "a photo of a").

With DHO (DHO paper, Table 2 "CoOp+DHO"; the paper gives no further detail, see
docs/DEVIATIONS.md): the classifier of a CoOp model *is* its prompt set, so the two heads
``h_CE`` and ``h_KD`` are two independent context sets over the same frozen encoders:
``h_CE(x)_c = s * cos(f(x), g(t^CE_c))``, ``h_KD(x)`` likewise with ``t^KD``, where
``s`` is CLIP's own logit scale (100 for OpenAI CLIP: the cosine form of DHO's aligned KD
head, Eq. 10).  With
one head (method ``ce``: plain CoOp) there is one context set.  The feature ``z`` is the
frozen image embedding.

student_kwargs: ``n_ctx`` (M, default 16: CoOp's ImageNet setting), ``ctx_init`` (a
phrase whose token embeddings initialise the contexts, M = its token count; default ""
= random N(0, 0.02^2)), ``weights`` (a local open_clip weights file instead of the tag),
``prompts`` (ignored: the prompts are learned); ``coop_tiny`` also ``model`` (default
``dho-tiny-clip``).  The class-name tokens are a buffer of the checkpoint, so a finished
run is rebuilt without class names.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .clip import create_clip, open_clip, preprocess_info
from .preprocess import InputAdapter
from .students import STUDENTS, Student, StudentOutput

CTX_STD = 0.02  # CoOp's initialisation of the context vectors


class PromptedText(nn.Module):
    """CLIP's frozen text tower, fed token *embeddings* (CoOp's learned contexts inside)."""

    def __init__(self, clip_model):
        super().__init__()
        if not hasattr(clip_model, "token_embedding"):
            raise ConfigError(f"CoOp student: open_clip model {type(clip_model).__name__} has no built-in text "
                              f"tower (token_embedding); expected an OpenAI-style CLIP model")
        self.token_embedding = clip_model.token_embedding
        self.positional_embedding = clip_model.positional_embedding
        self.transformer = clip_model.transformer
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.register_buffer("attn_mask", clip_model.attn_mask, persistent=False)
        self.pool_type = getattr(clip_model, "text_pool_type", "argmax")
        self.eos_id = getattr(clip_model, "text_eos_id", None)
        self.requires_grad_(False)

    @property
    def width(self) -> int:
        return int(self.token_embedding.weight.shape[1])

    def forward(self, embeds: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Text features [C, D] of prompt embeddings [C, L, W] whose token ids are ``tokens``."""
        from open_clip.transformer import text_global_pool

        x = embeds + self.positional_embedding.to(embeds.dtype)
        x = self.transformer(x, attn_mask=self.attn_mask)
        x = self.ln_final(x)
        x = text_global_pool(x, tokens, self.pool_type, eos_token_id=self.eos_id)
        if isinstance(self.text_projection, nn.Linear):
            return self.text_projection(x)
        return x if self.text_projection is None else x @ self.text_projection


class PromptHead(nn.Module):
    """One learned context set ``[V]_1..[V]_M`` (CoOp's unified context)."""

    def __init__(self, ctx: torch.Tensor):
        super().__init__()
        self.ctx = nn.Parameter(ctx.clone())

    @property
    def weight(self) -> torch.Tensor:  # what the gradient-conflict cosine takes as "W" (dho.conflict)
        return self.ctx


class CoOpStudent(Student):
    """Frozen CLIP image and text towers; the heads are learned prompt contexts."""

    def __init__(self, clip_model, num_classes: int, heads: int, n_ctx: int, ctx_init: torch.Tensor | None):
        info = preprocess_info(clip_model)
        super().__init__(clip_model.visual, int(clip_model.visual.output_dim), num_classes, heads,
                         InputAdapter(info["image_size"], info["mean"], info["std"], info["interpolation"]))
        self.text = PromptedText(clip_model)
        self.n_ctx = n_ctx
        self.register_buffer("prompt_tokens", torch.zeros(num_classes, clip_model.context_length, dtype=torch.long))
        self.register_buffer("logit_scale", clip_model.logit_scale.detach().exp().clone())

        def context() -> torch.Tensor:
            return ctx_init.clone() if ctx_init is not None else torch.randn(n_ctx, self.text.width) * CTX_STD

        self.ce_head = PromptHead(context())
        self.kd_head = PromptHead(context()) if heads == 2 else None
        self.freeze_backbone()
        self._cache: tuple | None = None

    def freeze_backbone(self) -> None:
        self.backbone.requires_grad_(False)
        self.backbone_frozen = True
        self.backbone.eval()

    def class_embeds(self, head: PromptHead) -> torch.Tensor:
        """Prompt embeddings [C, L, W]: SOS, the M contexts, then the class name, '.', EOS."""
        tok = self.text.token_embedding(self.prompt_tokens)
        ctx = head.ctx.to(tok.dtype).unsqueeze(0).expand(tok.shape[0], -1, -1)
        return torch.cat([tok[:, :1], ctx, tok[:, 1 + self.n_ctx:]], dim=1)

    def text_features(self, head: PromptHead) -> torch.Tensor:
        """L2-normalised class embeddings [C, D] of ``head``'s prompts."""
        return F.normalize(self.text(self.class_embeds(head), self.prompt_tokens).float(), dim=-1)

    def _head_features(self) -> list[torch.Tensor]:
        heads = [h for h in (self.ce_head, self.kd_head) if h is not None]
        if torch.is_grad_enabled():
            self._cache = None
            return [self.text_features(h) for h in heads]
        key = tuple((h.ctx._version, h.ctx.data_ptr()) for h in heads) + (self.prompt_tokens._version,)
        if self._cache is None or self._cache[0] != key:  # evaluation: the prompts do not change
            self._cache = (key, [self.text_features(h) for h in heads])
        return self._cache[1]

    def forward(self, x01: torch.Tensor) -> StudentOutput:
        z = self.backbone(self.adapter(x01))
        zn = F.normalize(z.float(), dim=-1)
        logits = [self.logit_scale * zn @ t.t() for t in self._head_features()]
        return StudentOutput(z, logits[0], logits[-1])


def _tokens(model_name: str, classnames: Sequence[str], n_ctx: int, context_length: int) -> torch.Tensor:
    """Token ids of ``"X X ... X <class>."`` (M placeholders), CoOp's prompt layout."""
    tokenizer = open_clip().get_tokenizer(model_name)
    tokens = tokenizer([" ".join(["X"] * n_ctx) + f" {name}." for name in classnames])
    if tokens.shape[1] != context_length:
        raise ConfigError(f"CoOp student: tokenizer context {tokens.shape[1]} != model context {context_length}")
    return tokens


def _ctx_init(clip_model, model_name: str, phrase: str) -> torch.Tensor:
    """Word embeddings of ``phrase``'s tokens [M, W] (CoOp's initialisation from words)."""
    ids = open_clip().get_tokenizer(model_name)([phrase])[0]
    n = int((ids != 0).sum()) - 2  # without SOS and EOS
    with torch.no_grad():
        return clip_model.token_embedding(ids[1:1 + n]).float().clone()


def build_coop(model_name: str, source: str | None, num_classes: int, heads: int, classnames,
               n_ctx: int = 16, ctx_init: str = "") -> CoOpStudent:
    if not (isinstance(n_ctx, int) and not isinstance(n_ctx, bool) and n_ctx >= 1):
        raise ConfigError(f"CoOp student: student_kwargs.n_ctx = {n_ctx!r}: expected an integer >= 1")
    if not isinstance(ctx_init, str):
        raise ConfigError(f"CoOp student: student_kwargs.ctx_init = {ctx_init!r}: expected a phrase or ''")
    clip_model = create_clip(model_name, source)
    init = _ctx_init(clip_model, model_name, ctx_init) if ctx_init.strip() else None
    n_ctx = int(init.shape[0]) if init is not None else n_ctx
    if n_ctx + 3 > clip_model.context_length:  # SOS, >= 1 class token, EOS
        raise ConfigError(f"CoOp student: n_ctx = {n_ctx} leaves no room for class names in the "
                          f"{clip_model.context_length}-token context of '{model_name}'")
    student = CoOpStudent(clip_model, num_classes, heads, n_ctx, init)
    if classnames is not None:
        student.prompt_tokens.copy_(_tokens(model_name, classnames, n_ctx, clip_model.context_length))
    return student


def _coop_student(model_name: str, tag: str | None) -> Callable[..., Student]:
    def build(num_classes: int, heads: int, pretrained: bool, classnames=None, templates=None,
              n_ctx: int = 16, ctx_init: str = "", weights: str | None = None, prompts: str = "authors",
              model: str = model_name) -> Student:
        if pretrained and not weights and tag is None:
            raise ConfigError(f"CoOp student on '{model}' has no published weights: pass "
                              f"student_kwargs.weights=FILE or set student_pretrained false")
        source = weights or (tag if pretrained else None)
        return build_coop(model, source, num_classes, heads, classnames, n_ctx, ctx_init)

    return build


def _fixed_model(build: Callable[..., Student]) -> Callable[..., Student]:
    """``build`` without the ``model`` kwarg (the registered CLIP sizes are fixed)."""
    def fixed(num_classes: int, heads: int, pretrained: bool, classnames=None, templates=None,
              n_ctx: int = 16, ctx_init: str = "", weights: str | None = None, prompts: str = "authors") -> Student:
        return build(num_classes, heads, pretrained, classnames, templates, n_ctx, ctx_init, weights, prompts)

    return fixed


STUDENTS.register("coop_vit_b16", _fixed_model(_coop_student("ViT-B-16-quickgelu", "openai")),
                  help="CoOp on CLIP ViT-B/16 (openai): frozen towers, learned text contexts per head")
STUDENTS.register("coop_tiny", _coop_student("dho-tiny-clip", None),
                  help="CoOp on a tiny CLIP from a project config (kwarg model; weights=FILE)")
