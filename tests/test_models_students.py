import os

import pytest
import torch
import torch.nn.functional as F

from dho.errors import CheckpointError, ConfigError, WeightsUnavailable
from dho.models import STUDENTS, build_student
from dho.models.clip import open_clip
from tiny_clip import make_tiny_clip
from dho.models.preprocess import IMAGENET_MEAN, IMAGENET_STD, InputAdapter

torch.set_num_threads(1)

TINY = "dho-test-students-clip"
CLASSES = ["red square", "green circle", "blue triangle"]
TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]


@pytest.fixture(scope="module")
def tiny_clip_weights(tmp_path_factory):
    """A registered tiny open_clip config and a file with (seeded random) weights for it."""
    return str(make_tiny_clip(tmp_path_factory.mktemp("clip"), TINY))


@pytest.fixture
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def test_registry_names():
    assert STUDENTS.names() == ["clip_tiny", "clip_vit_b16", "clip_vit_l14_336", "coop_tiny", "coop_vit_b16",
                                "dino_resnet50", "mobilenet_v2", "resnet18", "vpt_tiny", "vpt_vit_b16"]


def test_input_adapter_normalises_and_resizes():
    adapter = InputAdapter(4, IMAGENET_MEAN, IMAGENET_STD)
    x = torch.full((1, 3, 4, 4), 0.5)
    y = adapter(x)
    expected = [(0.5 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    assert torch.allclose(y[0, :, 0, 0], torch.tensor(expected))
    # a constant image stays constant after the antialiased resize
    assert adapter(torch.full((2, 3, 9, 7), 0.5)).shape == (2, 3, 4, 4)
    assert torch.allclose(adapter(torch.full((1, 3, 9, 7), 0.5)), y, atol=1e-6)


@pytest.mark.parametrize("name,kwargs,dim", [("resnet18", {"image_size": 32}, 512),
                                             ("resnet18", {"image_size": 32, "width": 8}, 64),
                                             ("mobilenet_v2", {"image_size": 32, "width_mult": 0.25}, 1280)])
def test_torchvision_students_shapes(name, kwargs, dim):
    torch.manual_seed(0)
    two = build_student(name, 5, heads=2, pretrained=False, **kwargs).eval()
    out = two(torch.rand(2, 3, 20, 20))
    assert out.feature.shape == (2, dim) and out.ce.shape == (2, 5) and out.kd.shape == (2, 5)
    assert (two.num_heads, two.image_size, two.feature_dim) == (2, 32, dim)
    assert not torch.equal(out.ce, out.kd)
    # the feature is the backbone output and the heads are linear maps of it
    assert torch.allclose(out.ce, out.feature @ two.ce_head.weight.t() + two.ce_head.bias, atol=1e-5)
    one = build_student(name, 5, heads=1, pretrained=False, **kwargs).eval()
    out1 = one(torch.rand(2, 3, 32, 32))
    assert out1.ce is out1.kd and one.num_heads == 1 and one.kd_head is None


def test_student_argument_errors():
    with pytest.raises(ConfigError, match="heads = 3"):
        build_student("resnet18", 5, heads=3, pretrained=False)
    with pytest.raises(ConfigError, match="unknown student 'resnet99'"):
        build_student("resnet99", 5)
    with pytest.raises(ConfigError, match="student 'resnet18': bad student_kwargs"):
        build_student("resnet18", 5, pretrained=False, no_such_arg=1)
    with pytest.raises(ConfigError, match="unknown student_kwargs colour; accepted: language_init"):
        build_student("clip_tiny", 5, pretrained=False, colour=1)
    with pytest.raises(ConfigError, match="width = 0: expected a positive integer"):
        build_student("resnet18", 5, pretrained=False, width=0)
    with pytest.raises(ConfigError, match="unknown student_kwargs model; accepted: language_init"):
        build_student("clip_vit_b16", 5, model="dho-tiny-clip")
    with pytest.raises(ConfigError, match="has no published weights"):
        build_student("clip_tiny", 5, pretrained=True)
    with pytest.raises(ConfigError, match="2 class names for 5 classes"):
        build_student("resnet18", 5, pretrained=False, classnames=["a", "b"])


def test_torchvision_weights_from_cache_and_local_file(offline, tmp_path):
    torch.manual_seed(0)
    import torchvision

    reference = torchvision.models.mobilenet_v2(weights=None, width_mult=0.25)
    state = reference.state_dict()
    # a local file with a non-default architecture
    local = tmp_path / "mnv2.pt"
    torch.save(state, local)
    student = build_student("mobilenet_v2", 3, pretrained=True, weights=str(local), width_mult=0.25)
    assert torch.equal(student.backbone.features[0][0].weight, state["features.0.0.weight"])
    # the enum's file in TORCH_HOME/hub/checkpoints is used without any download
    enum = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1
    cached = tmp_path / "torch" / "hub" / "checkpoints" / os.path.basename(enum.url)
    cached.parent.mkdir(parents=True)
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), cached)
    student = build_student("mobilenet_v2", 3, pretrained=True)
    assert student.feature_dim == 1280
    # default weights into a non-default architecture: clear ConfigError
    with pytest.raises(ConfigError, match="do not fit the architecture"):
        build_student("mobilenet_v2", 3, pretrained=True, width_mult=0.25)
    cached.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read weights file .*mobilenet_v2"):
        build_student("mobilenet_v2", 3, pretrained=True)


def test_missing_torchvision_weights_fail_fast(offline):
    with pytest.raises(WeightsUnavailable) as info:
        build_student("resnet18", 3, pretrained=True)
    msg = str(info.value)
    assert "ResNet18_Weights.IMAGENET1K_V1" in msg and str(offline / "torch" / "hub" / "checkpoints") in msg
    assert "\n" not in msg


def test_dino_resnet50_from_the_hub_cache(offline):
    """dino_resnet50 = torchvision ResNet-50 + DINO's headless state dict (as the
    facebookresearch/dino hubconf), read from TORCH_HOME/hub/checkpoints; one line if absent."""
    import torchvision

    from dho.models.students import DINO_RESNET50_URL

    with pytest.raises(WeightsUnavailable) as info:
        build_student("dino_resnet50", 3, pretrained=True)
    msg = str(info.value)
    assert "\n" not in msg and "DINO ResNet-50" in msg and "dino_resnet50_pretrain.pth" in msg
    torch.manual_seed(0)
    reference = torchvision.models.resnet50(weights=None).eval()
    headless = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    cached = offline / "torch" / "hub" / "checkpoints" / os.path.basename(DINO_RESNET50_URL)
    cached.parent.mkdir(parents=True)
    torch.save(headless, cached)
    student = build_student("dino_resnet50", 3, pretrained=True, image_size=32).eval()
    assert student.feature_dim == 2048 and student.num_heads == 2
    x01 = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    reference.fc = torch.nn.Identity()
    with torch.no_grad():
        expected = reference(student.adapter(x01))
        assert torch.allclose(student(x01).feature, expected, atol=1e-5)
    bad = dict(headless, **{"layer1.0.conv1.weight": torch.zeros(1)})
    torch.save(bad, cached)
    with pytest.raises(ConfigError, match="weights dino_resnet50 do not fit"):
        build_student("dino_resnet50", 3, pretrained=True)
    scratch = build_student("dino_resnet50", 3, pretrained=False)  # no file needed
    assert scratch.feature_dim == 2048


def test_missing_clip_weights_fail_fast(offline):
    with pytest.raises(WeightsUnavailable) as info:
        build_student("clip_vit_b16", 3, pretrained=True)
    msg = str(info.value)
    assert "ViT-B-16-quickgelu" in msg and "'openai'" in msg and str(offline / "hf" / "hub") in msg
    assert "HF_HUB_OFFLINE" in msg


def _zero_shot_reference(weights: str, x01: torch.Tensor):
    """Raw image features of the tiny CLIP and W = the raw (unnormalised) mean over
    templates of the class's text embeddings (the authors' student head init), computed
    directly with open_clip."""
    oc = open_clip()
    model = oc.create_model(TINY, pretrained=weights).eval()
    tok = oc.get_tokenizer(TINY)
    mean = torch.tensor(model.visual.preprocess_cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(model.visual.preprocess_cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        feats = model.encode_image((x01 - mean) / std)
        cols = []
        for c in CLASSES:
            e = model.encode_text(tok([t.format(c) for t in TEMPLATES]))
            cols.append(e.mean(0))
        W = torch.stack(cols, dim=1)
    return 100 * F.normalize(feats, dim=-1) @ W, feats, W


def test_clip_student_language_init_matches_zero_shot(tiny_clip_weights):
    x01 = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    zs_logits, feats, W = _zero_shot_reference(tiny_clip_weights, x01)
    student = build_student("clip_tiny", 3, classnames=CLASSES, templates=TEMPLATES, model=TINY,
                            weights=tiny_clip_weights, progress=False).eval()
    assert (student.image_size, student.feature_dim, student.num_heads) == (32, 32, 2)
    with torch.no_grad():
        out = student(x01)
    assert torch.allclose(out.feature, feats, atol=1e-5)
    assert not torch.allclose(W.norm(dim=0), torch.ones(3))                # W is not normalised
    assert torch.allclose(out.kd, zs_logits, atol=1e-3)                    # 100 * normalize(z) @ W
    assert torch.equal(out.kd.argmax(1), zs_logits.argmax(1))
    assert torch.allclose(out.ce, feats @ W, atol=1e-4)                     # raw feature, zero bias
    assert torch.count_nonzero(student.ce_head.bias) == 0 and torch.count_nonzero(student.kd_head.bias) == 0
    # the text tower is not part of the student
    visual = open_clip().create_model(TINY).visual
    n_visual = sum(p.numel() for p in visual.parameters())
    assert sum(p.numel() for p in student.parameters()) == n_visual + 2 * (32 * 3 + 3)
    assert not any("token_embedding" in n for n, _ in student.named_parameters())


def test_aligned_kd_head_scales_its_bias():
    """kd = kd_head(normalize(z)) * 100 (train_imgnet_semi.py), worked by hand:
    z = (3, 4) -> normalize = (0.6, 0.8); weight = I, bias = (0.5, -0.25)
    -> 100 * (0.6 + 0.5, 0.8 - 0.25) = (110, 55); ce = z @ I^T + 0 = (3, 4)."""
    from dho.models.preprocess import InputAdapter
    from dho.models.students import Student

    class Flat(torch.nn.Module):
        def forward(self, x):
            return x.flatten(1)

    student = Student(Flat(), 2, 2, heads=2, adapter=InputAdapter(1, (0.0,) * 3, (1.0,) * 3, "bilinear"),
                      kd_head_align=True)
    student.adapter = torch.nn.Identity()  # feed z directly
    with torch.no_grad():
        for head in (student.ce_head, student.kd_head):
            head.weight.copy_(torch.eye(2))
        student.ce_head.bias.zero_()
        student.kd_head.bias.copy_(torch.tensor([0.5, -0.25]))
        out = student(torch.tensor([[3.0, 4.0]]))
    assert torch.allclose(out.kd, torch.tensor([[110.0, 55.0]]))
    assert torch.allclose(out.ce, torch.tensor([[3.0, 4.0]]))


def test_clip_student_ablation_switches(tiny_clip_weights):
    x01 = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    _, feats, W = _zero_shot_reference(tiny_clip_weights, x01)
    no_align = build_student("clip_tiny", 3, classnames=CLASSES, templates=TEMPLATES, model=TINY,
                             weights=tiny_clip_weights, kd_head_align=False, progress=False).eval()
    with torch.no_grad():
        out = no_align(x01)
    assert torch.allclose(out.kd, feats @ W, atol=1e-4) and torch.allclose(out.ce, out.kd)
    torch.manual_seed(0)
    random_heads = build_student("clip_tiny", 3, classnames=CLASSES, templates=TEMPLATES, model=TINY,
                                 weights=tiny_clip_weights, language_init=False, progress=False)
    assert not torch.allclose(random_heads.ce_head.weight, W.t())
    one = build_student("clip_tiny", 3, heads=1, classnames=CLASSES, templates=TEMPLATES, model=TINY,
                        weights=tiny_clip_weights, progress=False).eval()
    with torch.no_grad():
        out1 = one(x01)
    assert out1.ce is out1.kd and torch.allclose(out1.ce, feats @ W, atol=1e-4)


def test_clip_student_random_weights_and_resize():
    open_clip()
    student = build_student("clip_tiny", 4, pretrained=False, model="dho-tiny-clip").eval()
    out = student(torch.rand(2, 3, 48, 48))
    assert out.ce.shape == (2, 4) and out.feature.shape == (2, student.feature_dim)


def test_prompts_kwarg_picks_the_head_init_templates(tiny_clip_weights, tmp_path):
    """student_kwargs.prompts names the prompt set (the run loop resolves it with the
    dataset's prompt_templates); torchvision students have no heads to initialise."""
    from dho.data import get_dataset

    dtd = get_dataset("dtd", tmp_path)
    heads = {}
    for prompts in ("authors", "clip"):
        s = build_student("clip_tiny", 3, classnames=CLASSES, templates=dtd.prompt_templates(prompts), model=TINY,
                          weights=tiny_clip_weights, progress=False, prompts=prompts)
        heads[prompts] = s.ce_head.weight.detach().clone()
    assert not torch.allclose(heads["authors"], heads["clip"])
    with pytest.raises(ConfigError, match=r"student 'resnet18': bad student_kwargs \['prompts'\]"):
        build_student("resnet18", 3, pretrained=False, prompts="clip")


def test_clip_student_language_init_of_one_head(tiny_clip_weights):
    """Table 6's second row: language-aware init of h_CE only (h_KD keeps its random init)."""
    _, _, W = _zero_shot_reference(tiny_clip_weights, torch.rand(1, 3, 32, 32))
    torch.manual_seed(0)
    ce_only = build_student("clip_tiny", 3, classnames=CLASSES, templates=TEMPLATES, model=TINY,
                            weights=tiny_clip_weights, language_init="ce", kd_head_align=False, progress=False)
    assert torch.allclose(ce_only.ce_head.weight, W.t()) and torch.count_nonzero(ce_only.ce_head.bias) == 0
    assert not torch.allclose(ce_only.kd_head.weight, W.t())
    kd_only = build_student("clip_tiny", 3, classnames=CLASSES, templates=TEMPLATES, model=TINY,
                            weights=tiny_clip_weights, language_init="kd", progress=False)
    assert torch.allclose(kd_only.kd_head.weight, W.t()) and not torch.allclose(kd_only.ce_head.weight, W.t())
    with pytest.raises(ConfigError, match="student_kwargs.language_init = 'both'"):
        build_student("clip_tiny", 3, classnames=CLASSES, templates=TEMPLATES, model=TINY,
                      weights=tiny_clip_weights, language_init="both", progress=False)
