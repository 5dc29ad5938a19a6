"""CoOp and VPT students (Table 2) on a tiny open_clip model: what is learned, what is
frozen, logits shapes, and hand-checked cases against CLIP's own encoders."""

import json

import pytest
import torch
import torch.nn.functional as F

from dho.errors import ConfigError, WeightsUnavailable
from dho.models import build_student
from dho.models.clip import open_clip
from tiny_clip import tiny_clip_config

torch.set_num_threads(1)

TINY = "dho-test-prompt-clip"
CLASSES = ["red square", "green circle", "blue triangle"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A tiny CLIP with 2 image and 2 text layers (VPT-Deep has a second layer to prompt)."""
    folder = tmp_path_factory.mktemp("clip")
    cfg = tiny_clip_config(32)
    cfg["vision_cfg"]["layers"] = 2
    cfg["text_cfg"]["layers"] = 2
    (folder / f"{TINY}.json").write_text(json.dumps(cfg))
    oc = open_clip()
    oc.add_model_config(folder / f"{TINY}.json")
    torch.manual_seed(0)
    path = folder / "tiny.pt"
    torch.save(oc.create_model(TINY).state_dict(), path)
    return str(path)


def _clip(weights):
    return open_clip().create_model(TINY, pretrained=weights).eval()


def _images(n=4, seed=3):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def trainable(student):
    return sorted(n for n, p in student.named_parameters() if p.requires_grad)


# --------------------------------------------------------------------------- CoOp
def test_coop_trains_only_the_context_vectors(weights):
    torch.manual_seed(0)
    student = build_student("coop_tiny", 3, classnames=CLASSES, model=TINY, weights=weights, n_ctx=4)
    assert trainable(student) == ["ce_head.ctx", "kd_head.ctx"]
    assert student.ce_head.ctx.shape == (4, 32)
    assert not torch.equal(student.ce_head.ctx, student.kd_head.ctx)  # two independent prompt sets
    out = student.train()(_images())
    assert out.ce.shape == out.kd.shape == (4, 3) and out.feature.shape == (4, 32)
    (out.ce.sum() + out.kd.sum()).backward()
    for name, p in student.named_parameters():
        assert (p.grad is not None) == name.endswith(".ctx"), name
    assert student.ce_head.ctx.grad.abs().sum() > 0 and student.kd_head.ctx.grad.abs().sum() > 0
    assert not student.backbone.training  # the frozen image tower stays in eval mode


def test_coop_with_phrase_init_is_clips_zero_shot_classifier(weights):
    """Contexts = the word embeddings of "a photo of a": the prompt of class c is exactly
    the token sequence of "a photo of a <c>.", so the logits are CLIP's zero-shot logits."""
    clip = _clip(weights)
    student = build_student("coop_tiny", 3, heads=1, classnames=CLASSES, model=TINY, weights=weights,
                            ctx_init="a photo of a").eval()
    assert student.n_ctx == 4 and trainable(student) == ["ce_head.ctx"]
    x = _images()
    with torch.no_grad():
        out = student(x)
        text = clip.encode_text(open_clip().get_tokenizer(TINY)([f"a photo of a {c}." for c in CLASSES]),
                                normalize=True)
        image = clip.encode_image(student.adapter(x))
    assert torch.allclose(out.feature, image, atol=1e-5)  # z: the frozen image tower's embedding
    ref = clip.logit_scale.exp() * F.normalize(image, dim=-1) @ text.t()
    assert torch.allclose(out.ce, ref, atol=1e-4)
    assert torch.equal(out.ce.argmax(1), ref.argmax(1))
    assert out.ce is out.kd  # one head


def test_coop_is_rebuilt_from_its_checkpoint_without_class_names(weights):
    student = build_student("coop_tiny", 3, classnames=CLASSES, model=TINY, weights=weights, n_ctx=4).eval()
    rebuilt = build_student("coop_tiny", 3, pretrained=False, model=TINY, n_ctx=4)
    rebuilt.load_state_dict(student.state_dict())
    from dho.evaluate import state_num_classes

    assert state_num_classes(student.state_dict(), None) == 3
    x = _images()
    with torch.no_grad():
        assert torch.allclose(rebuilt.eval()(x).kd, student(x).kd, atol=1e-5)


def test_coop_eval_cache_follows_the_contexts(weights):
    student = build_student("coop_tiny", 3, classnames=CLASSES, model=TINY, weights=weights, n_ctx=4).eval()
    x = _images()
    with torch.no_grad():
        before = student(x).ce
        student.ce_head.ctx.add_(torch.randn(4, 32))  # an optimiser step or a loaded state (a constant
        # shift would not do: every LayerNorm removes it)
        after = student(x).ce
    assert not torch.allclose(before, after)


def test_coop_bad_kwargs_are_one_line_errors(weights):
    with pytest.raises(ConfigError, match="n_ctx"):
        build_student("coop_tiny", 3, pretrained=False, model=TINY, n_ctx=0)
    with pytest.raises(ConfigError, match="no room for class names"):
        build_student("coop_tiny", 3, pretrained=False, model=TINY, n_ctx=14)
    with pytest.raises(ConfigError, match="weights=FILE"):
        build_student("coop_tiny", 3, model=TINY)


# --------------------------------------------------------------------------- VPT
def _block_inputs(student, x):
    seen = []
    hooks = [b.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
             for b in student.backbone.visual.transformer.resblocks]
    try:
        with torch.no_grad():
            student(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


@pytest.mark.parametrize("deep", [True, False])
def test_vpt_inserts_prompts_and_trains_only_them_and_the_heads(weights, deep):
    student = build_student("vpt_tiny", 3, classnames=CLASSES, model=TINY, weights=weights, prompt_tokens=5,
                            deep=deep, progress=False)
    assert trainable(student) == ["backbone.prompts", "ce_head.bias", "ce_head.weight", "kd_head.bias",
                                  "kd_head.weight"]
    assert student.backbone.prompts.shape == ((2 if deep else 1), 5, 32)
    x = _images()
    seen = _block_inputs(student.eval(), x)
    patches = (32 // 8) ** 2
    assert [s.shape[1] for s in seen] == [1 + 5 + patches] * 2  # the sequence grows by the prompt count
    # hand check: the frozen tower's own tokens, with ln_pre(P_0) after [CLS] ...
    v = student.backbone.visual
    with torch.no_grad():
        own = v._embeds(student.adapter(x))  # CLIP's [CLS, patches] after ln_pre
        p0 = v.ln_pre(student.backbone.prompts[0])
    assert torch.allclose(seen[0][:, 0], own[:, 0], atol=1e-5)
    assert torch.allclose(seen[0][:, 1 + 5:], own[:, 1:], atol=1e-5)
    assert torch.allclose(seen[0][:, 1:6], p0.expand(4, -1, -1), atol=1e-5)
    if deep:  # ... VPT-Deep replaces the prompt positions at the second layer's input
        assert torch.equal(seen[1][:, 1:6], student.backbone.prompts[1].expand(4, -1, -1))
    else:  # ... VPT-Shallow carries the first layer's outputs there
        assert not torch.allclose(seen[1][:, 1:6], seen[0][:, 1:6])
    out = student.train()(x)
    assert out.ce.shape == out.kd.shape == (4, 3)
    (out.ce.sum() + out.kd.sum()).backward()
    for name, p in student.named_parameters():
        assert (p.grad is not None) == (name in trainable(student)), name
    assert student.backbone.prompts.grad.abs().sum() > 0
    assert not v.training  # the frozen tower stays in eval mode while the student trains


def test_vpt_bad_kwargs_are_one_line_errors():
    with pytest.raises(ConfigError, match="prompt_tokens"):
        build_student("vpt_tiny", 3, pretrained=False, model=TINY, prompt_tokens=0)
    with pytest.raises(ConfigError, match="deep"):
        build_student("vpt_tiny", 3, pretrained=False, model=TINY, deep="yes")


@pytest.mark.parametrize("name", ["coop_vit_b16", "vpt_vit_b16"])
def test_missing_weights_stop_with_one_line_saying_what_to_get(monkeypatch, tmp_path, name):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    with pytest.raises(WeightsUnavailable) as e:
        build_student(name, 3, classnames=CLASSES)
    message = str(e.value)
    assert "\n" not in message
    assert "open_clip.create_model('ViT-B-16-quickgelu', pretrained='openai')" in message


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def shapes_teacher(shapes_root, tmp_path_factory):
    """Weights of the project's tiny CLIP and a zero-shot teacher made from them on shapes."""
    from dho.data import get_dataset
    from dho.models import build_zeroshot_teacher, save_teacher
    from dho.models.clip import create_clip

    folder = tmp_path_factory.mktemp("teacher")
    torch.manual_seed(0)
    tiny = folder / "tiny_clip.pt"
    torch.save(create_clip("dho-tiny-clip", None).state_dict(), tiny)
    source = get_dataset("shapes", shapes_root)
    save_teacher(build_zeroshot_teacher("dho-tiny-clip", str(tiny), source.classnames, source.templates[:1],
                                        progress=False), folder / "teacher.pt")
    return tiny, folder / "teacher.pt"


@pytest.mark.slow
@pytest.mark.parametrize("student,kwargs,method,tuned", [
    ("coop_tiny", {"n_ctx": 4}, "dho", ("ce_head.ctx", "kd_head.ctx")),
    ("vpt_tiny", {"prompt_tokens": 3}, "dho_labeled", ("backbone.prompts", "ce_head.", "kd_head.")),
])
def test_prompt_students_train_end_to_end(shapes_root, shapes_teacher, tmp_path, student, kwargs, method, tuned):
    """`python -m dho train` on generated shapes: the run finishes, and its checkpoint differs
    from the pretrained CLIP only in the prompts and heads."""
    import subprocess
    import sys

    from conftest import REPO, tiny_spec  # noqa: E402

    tiny, teacher = shapes_teacher
    spec = tiny_spec(shapes_root, tmp_path, method=method, epochs=1, student=student, student_pretrained=True,
                     student_kwargs={"weights": str(tiny), **kwargs}, teacher_file=str(teacher),
                     grad_cosine_every=1)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out = subprocess.run([sys.executable, "-m", "dho", "train", "--spec", str(tmp_path / "spec.json"),
                          "--out", str(tmp_path / "run")], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0.0 <= metrics["test_acc"] <= 100.0 and metrics["method"] == method
    state = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=True)["best"]["state"]
    clip = torch.load(tiny, map_location="cpu", weights_only=True)
    # `dho evaluate` rebuilds the student from the checkpoint alone (no class names, no weights
    # file): on the run's own test split it reproduces the run's test accuracy
    rec = tmp_path / "eval.json"
    out = subprocess.run([sys.executable, "-m", "dho", "evaluate", "--run-dir", str(tmp_path / "run"), "--dataset",
                          "shapes", "--root", str(shapes_root), "--out", str(rec), "--device", "cpu", "--quiet"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(rec.read_text())["test_acc"] == pytest.approx(metrics["test_acc"])
    compared = 0
    for name, value in state.items():
        key = _clip_key(name)
        if name.startswith(tuned) or key is None:
            continue
        assert torch.equal(value, clip[key]), name  # frozen: bit-identical to the pretrained weights
        compared += 1
    assert compared >= 20  # every image-tower (and CoOp's text-tower) tensor


def _clip_key(name: str):
    """The open_clip state-dict key of a student's frozen tensor (None: the student's own)."""
    for prefix, to in (("backbone.visual.", "visual."), ("backbone.", "visual."), ("text.", "")):
        if name.startswith(prefix):
            return to + name[len(prefix):]
    return None
