import math

import pytest
import torch
import torch.nn.functional as F

from dho.errors import CheckpointError, ConfigError, WeightsUnavailable
from dho.inference import accuracy
from dho.losses import kd_loss
from dho.models import (TEACHERS, TipAdapterTeacher, ZeroShotTeacher, build_zeroshot_teacher,
                        fit_tip_adapter_f, load_teacher, save_teacher)
from dho.models.clip import open_clip
from tiny_clip import make_tiny_clip
from dho.models.tip_adapter import build_cache

torch.set_num_threads(1)

TINY = "dho-test-teachers-clip"
CLASSES = ["red", "green", "blue"]
TEMPLATES = ["a photo of a {}.", "a {} thing."]
COLOURS = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.9, 0.1], [0.1, 0.1, 0.9]])


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return str(make_tiny_clip(tmp_path_factory.mktemp("clip"), TINY))


@pytest.fixture(scope="module")
def teacher(weights):
    return build_zeroshot_teacher(TINY, weights, CLASSES, TEMPLATES, progress=False)


def colour_images(per_class: int, seed: int, size: int = 32):
    """Solid-colour images (one colour per class) with pixel noise: (x01, labels)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(len(CLASSES)).repeat_interleave(per_class)
    x = COLOURS[labels].view(-1, 3, 1, 1).expand(-1, 3, size, size)
    x = (x + 0.15 * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    return x, labels


class Loader:
    """A DataLoader stand-in yielding (x01, label, index); ``augment`` re-noises and shuffles each pass."""

    def __init__(self, x, y, batch_size=4, augment=False, seed=0):
        self.x, self.y, self.batch_size, self.augment = x, y, batch_size, augment
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self):
        return math.ceil(len(self.y) / self.batch_size)

    def __iter__(self):
        order = torch.randperm(len(self.y), generator=self.gen) if self.augment else torch.arange(len(self.y))
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            x = self.x[idx]
            if self.augment:
                x = (x + 0.05 * torch.randn(x.shape, generator=self.gen)).clamp(0, 1)
            yield x, self.y[idx], idx


def test_registry():
    assert TEACHERS.names() == ["tip_adapter_f", "zeroshot"]
    assert TEACHERS.get("zeroshot") is ZeroShotTeacher and TEACHERS.get("tip_adapter_f") is TipAdapterTeacher


def test_zeroshot_logits_match_open_clip(teacher, weights):
    oc = open_clip()
    model = oc.create_model(TINY, pretrained=weights).eval()
    tok = oc.get_tokenizer(TINY)
    x01 = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    cfg = model.visual.preprocess_cfg
    x = (x01 - torch.tensor(cfg["mean"]).view(1, 3, 1, 1)) / torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        f = F.normalize(model.encode_image(x), dim=-1)
        W = torch.stack([F.normalize(F.normalize(model.encode_text(tok([t.format(c) for t in TEMPLATES])),
                                                 dim=-1).mean(0), dim=0) for c in CLASSES], dim=1)
    logits = teacher(x01)
    assert logits.shape == (4, 3) and (teacher.num_classes, teacher.image_size) == (3, 32)
    assert torch.allclose(logits, 100 * f @ W, atol=1e-3)
    assert torch.allclose(teacher.text_classifier, W, atol=1e-6)
    # frozen, and stays in eval mode
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training and not teacher.visual.training


def test_text_norms_follow_the_authors_code(teacher, weights):
    """RN50/OpenAI teachers: normalised mean re-normalised (clip_classifier); DFN5B: the
    normalised mean, not re-normalised (train_imgnet_semi.py); CLIP students: raw mean."""
    from dho.models.clip import text_classifier
    from dho.models.teachers import default_text_norm

    oc = open_clip()
    model = oc.create_model(TINY, pretrained=weights).eval()
    tok = oc.get_tokenizer(TINY)
    with torch.no_grad():
        raw = [model.encode_text(tok([t.format(c) for t in TEMPLATES])) for c in CLASSES]
        W = {norm: text_classifier(model, TINY, CLASSES, TEMPLATES, progress=False, norm=norm)
             for norm in ("renormalized", "mean_of_normalized", "raw_mean")}
    mean_norm = torch.stack([F.normalize(e, dim=-1).mean(0) for e in raw], dim=1)
    assert torch.allclose(W["mean_of_normalized"], mean_norm, atol=1e-6)
    assert (W["mean_of_normalized"].norm(dim=0) < 0.999).all()  # two templates: the mean is shorter
    assert torch.allclose(W["renormalized"], F.normalize(mean_norm, dim=0), atol=1e-6)
    assert torch.allclose(W["raw_mean"], torch.stack([e.mean(0) for e in raw], dim=1), atol=1e-5)
    assert default_text_norm("ViT-H-14-378-quickgelu", "dfn5b") == "mean_of_normalized"
    assert default_text_norm("RN50-quickgelu", "openai") == "renormalized"
    dfn_like = build_zeroshot_teacher(TINY, weights, CLASSES, TEMPLATES, progress=False, text_norm="mean_of_normalized")
    assert torch.allclose(dfn_like.text_classifier, mean_norm, atol=1e-6)
    with pytest.raises(ConfigError, match="--text-norm 'unit'"):
        build_zeroshot_teacher(TINY, weights, CLASSES, TEMPLATES, progress=False, text_norm="unit")


def test_teacher_output_is_usable_as_a_training_target(teacher):
    x01 = torch.rand(2, 3, 40, 40)  # any size: the teacher resizes
    t = teacher(x01)
    s = torch.zeros(2, 3, requires_grad=True)
    kd_loss(s, t).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all()


def test_save_load_round_trip_gives_identical_logits(teacher, tmp_path):
    path = tmp_path / "zs.pt"
    save_teacher(teacher, path)
    raw = torch.load(path, weights_only=True)
    assert raw["kind"] == "zeroshot" and raw["model"] == TINY and raw["classnames"] == CLASSES
    loaded = load_teacher(path, expected_classes=3)
    assert isinstance(loaded, ZeroShotTeacher) and loaded.classnames == CLASSES
    x01 = torch.rand(3, 3, 32, 32)
    assert torch.equal(loaded(x01), teacher(x01))


def test_load_errors(teacher, tmp_path):
    path = tmp_path / "zs.pt"
    save_teacher(teacher, path)
    with pytest.raises(CheckpointError, match=r"zs\.pt has 3 classes; expected 5"):
        load_teacher(path, expected_classes=5)
    assert load_teacher(path, expected_classes=CLASSES).num_classes == 3
    with pytest.raises(CheckpointError, match=r"zs\.pt: class 1 is 'green', expected 'yellow'"):
        load_teacher(path, expected_classes=["red", "yellow", "blue"])
    with pytest.raises(CheckpointError, match="teacher file not found"):
        load_teacher(tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pt cannot be read"):
        load_teacher(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00not a torch file" * 10)
    with pytest.raises(CheckpointError, match=r"garbage\.pt cannot be read"):
        load_teacher(garbage)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="is not a dho teacher file"):
        load_teacher(other)
    d = torch.load(path, weights_only=True)
    d["text_classifier"] = d["text_classifier"][:, :2]
    bad = tmp_path / "bad_shape.pt"
    torch.save(d, bad)
    with pytest.raises(CheckpointError, match=r"bad_shape\.pt: text_classifier of shape \(32, 2\) does not match its 3"):
        load_teacher(bad)
    d = torch.load(path, weights_only=True)
    d["pretrained"] = str(tmp_path / "moved.pt")
    torch.save(d, bad)
    with pytest.raises(CheckpointError, match=r"bad_shape\.pt: open_clip pretrained .*moved\.pt.* nor an existing file"):
        load_teacher(bad)
    d = torch.load(path, weights_only=True)
    d["text_classifier"] = torch.zeros(16, 3)
    torch.save(d, bad)
    with pytest.raises(CheckpointError, match="image tower .* gives 32"):
        load_teacher(bad)


def test_teacher_needs_weights(offline_env):
    with pytest.raises(ConfigError, match="pretrained is empty"):
        build_zeroshot_teacher(TINY, "", CLASSES, TEMPLATES)
    with pytest.raises(ConfigError, match="neither a known tag"):
        build_zeroshot_teacher("RN50-quickgelu", "no-such-tag", CLASSES, TEMPLATES)
    with pytest.raises(WeightsUnavailable, match="RN50-quickgelu.*'openai'"):
        build_zeroshot_teacher("RN50-quickgelu", "openai", CLASSES, TEMPLATES)


@pytest.fixture
def offline_env(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)


def test_cache_is_aligned_by_index(teacher):
    x, y = colour_images(2, seed=5)
    keys, values = build_cache(teacher, Loader(x, y, batch_size=4, augment=True, seed=1), augment_epochs=1,
                               progress=False)
    # one pass with noise: compare against the clean features in index order via one-hot values
    assert torch.equal(values, F.one_hot(y, 3).float())
    assert torch.allclose(keys.norm(dim=1), torch.ones(len(y)), atol=1e-5)
    clean = teacher.encode(x)
    assert ((keys * clean).sum(1) > 0.9).all()  # each key is the (noisy) feature of its own image


def test_tip_adapter_f_improves_over_zero_shot_base(teacher, tmp_path):
    x_l, y_l = colour_images(4, seed=10)
    x_v, y_v = colour_images(6, seed=11)
    base_acc = accuracy(teacher(x_v), y_v)
    assert base_acc < 50  # precondition: the random tiny CLIP's zero-shot is poor here
    tip = fit_tip_adapter_f(teacher, Loader(x_l, y_l, augment=True, seed=2), Loader(x_v, y_v),
                            augment_epochs=2, epochs=3, progress=False)
    assert isinstance(tip, TipAdapterTeacher)
    assert tip.cache_keys.shape == (12, 32) and torch.equal(tip.cache_values, F.one_hot(y_l, 3).float())
    tip_acc = accuracy(tip(x_v), y_v)
    assert tip_acc >= base_acc + 50  # 0 % -> 66.7 % with this seed
    assert not torch.allclose(tip.cache_keys.norm(dim=1), torch.ones(12))  # keys were fine-tuned
    # logits follow the Tip-Adapter formula
    f = teacher.encode(x_v)
    expected = 100 * f @ teacher.text_classifier + tip.alpha_tip * torch.exp(
        -tip.beta_tip * (1 - f @ tip.cache_keys.t())) @ tip.cache_values
    assert torch.allclose(tip(x_v), expected, atol=1e-4)
    # choosing the epoch on another loader that holds the val images gives the same teacher
    again = fit_tip_adapter_f(teacher, Loader(x_l, y_l, augment=True, seed=2), Loader(x_v, y_v),
                              augment_epochs=2, epochs=3, progress=False, epoch_loader=Loader(x_v, y_v))
    assert torch.equal(again.cache_keys, tip.cache_keys)
    # round trip through a teacher file
    path = tmp_path / "tip.pt"
    save_teacher(tip, path)
    loaded = load_teacher(path, expected_classes=3)
    assert isinstance(loaded, TipAdapterTeacher)
    assert (loaded.alpha_tip, loaded.beta_tip) == (tip.alpha_tip, tip.beta_tip)
    assert torch.equal(loaded(x_v), tip(x_v))
    d = torch.load(path, weights_only=True)
    d["cache_values"] = d["cache_values"][:, :2]
    torch.save(d, path)
    with pytest.raises(CheckpointError, match="cache_keys .* cache_values"):
        load_teacher(path)
