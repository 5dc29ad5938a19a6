"""The teacher-output cache: the same teacher logits per view as the live teacher (fp16
tolerance), the same run result, shared across label levels and teachers on one image
tower, and refused when the teacher's weights, the seed or the views do not match."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

from dho import train  # noqa: E402
from dho.cli import main  # noqa: E402
from dho.data import get_dataset, views  # noqa: E402
from dho.errors import ConfigError  # noqa: E402
from dho.spec import RunSpec  # noqa: E402
from dho.teacher_cache import TeacherCache, build_cache, cache_meta, run_schedule  # noqa: E402
from fake_datasets import make_fake_dataset  # noqa: E402

RESULT_KEYS = ("test_acc", "test_acc_ce", "test_acc_kd", "val_acc", "alpha", "beta", "best_epoch",
               "teacher_test_acc")


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    from dho.models import build_zeroshot_teacher, save_teacher
    from dho.models.clip import create_clip

    root = tmp_path_factory.mktemp("cache")
    make_fake_dataset("dtd", root / "data", num_classes=3, per_class=(6, 2, 2), size=16)
    source = get_dataset("dtd", root / "data")
    torch.manual_seed(0)
    weights = root / "tiny_clip.pt"
    torch.save(create_clip("dho-tiny-clip", None).state_dict(), weights)
    for name, templates in (("teacher.pt", source.templates[:2]), ("teacher_b.pt", source.templates[:1])):
        teacher = build_zeroshot_teacher("dho-tiny-clip", str(weights), source.classnames, templates,
                                         progress=False)
        save_teacher(teacher, root / name)
    return root


def make_spec(assets: Path, tmp: Path, **kw) -> RunSpec:
    base = dict(dataset="dtd", data_root=str(assets / "data"), split={"kind": "fewshot", "shots": 2},
                student="mobilenet_v2", student_pretrained=False, student_kwargs={"image_size": 16},
                teacher_file=str(assets / "teacher.pt"), method="kd", epochs=2, batch_size=4,
                unlabeled_batch_size=4, image_size=16, num_workers=0, grad_cosine_every=0, progress=False,
                mlflow_uri=f"sqlite:///{tmp / 'mlflow.db'}", tags={"suite": "unit"})
    base.update(kw)
    return RunSpec(**base)


@pytest.fixture(scope="module")
def cache(assets, tmp_path_factory):
    """A cache built by the CLI for the 1- and 2-shot runs."""
    tmp = tmp_path_factory.mktemp("built")
    specs = [make_spec(assets, tmp, split={"kind": "fewshot", "shots": n}).to_dict() for n in (1, 2)]
    import json

    (tmp / "specs.json").write_text(json.dumps(specs))
    out = tmp / "cache.pt"
    assert main(["teacher", "cache", "--teacher", str(assets / "teacher.pt"), "--spec", str(tmp / "specs.json"),
                 "--device", "cpu", "--quiet", "--batch-size", "7", "--out", str(out)]) == 0
    return out


def _meta(assets, spec):
    from dho.models import read_teacher_file

    return cache_meta(get_dataset("dtd", assets / "data"), spec, read_teacher_file(spec.teacher_file))


def test_cached_logits_equal_live_teacher_per_view(assets, cache, tmp_path):
    from dho.models import load_teacher, load_teacher_head

    spec = make_spec(assets, tmp_path, split={"kind": "fewshot", "shots": 1})
    c = TeacherCache.load(cache, _meta(assets, spec))
    source = get_dataset("dtd", assets / "data")
    keys = run_schedule(spec, source).teacher_keys(2)
    assert np.isin(keys, c.keys).all() and len(c.keys) >= len(keys)
    ds = views.ViewDataset(source, source.items("train"), 16, 0.5, seed=1)
    x = torch.stack([ds[int(k)][0] for k in keys])
    for teacher_file in ("teacher.pt", "teacher_b.pt"):  # one cache serves both heads
        live = load_teacher(assets / teacher_file)(x)
        head = load_teacher_head(assets / teacher_file)
        cached = head.logits_from_features(c.features(torch.from_numpy(keys)).float())
        assert c.features_table.dtype == torch.float16
        torch.testing.assert_close(cached, live, atol=0.1, rtol=2e-3)  # 100 x fp16 rounding of unit features
        assert (cached.argmax(1) == live.argmax(1)).float().mean() > 0.9


def test_cached_run_gives_the_same_result(assets, cache, tmp_path):
    """fp16 cache: the same accuracies, (alpha, beta) and best epoch as the live teacher;
    fp32 cache: the same student logits too (Adam amplifies fp16-sized target changes)."""
    live = train.run_training(make_spec(assets, tmp_path / "a"), tmp_path / "live")
    cached = train.run_training(make_spec(assets, tmp_path / "b", teacher_cache=str(cache)), tmp_path / "cached")
    assert {k: cached[k] for k in RESULT_KEYS} == {k: live[k] for k in RESULT_KEYS}
    assert cached["spec_hash"] == live["spec_hash"]
    spec = make_spec(assets, tmp_path / "c")
    build_cache(assets / "teacher.pt", [spec], tmp_path / "c32.pt", dtype="float32", batch_size=5, device="cpu")
    exact = train.run_training(make_spec(assets, tmp_path / "c", teacher_cache=str(tmp_path / "c32.pt")),
                               tmp_path / "cached32")
    assert {k: exact[k] for k in RESULT_KEYS} == {k: live[k] for k in RESULT_KEYS}
    with np.load(tmp_path / "live" / "logits_test.npz") as a, np.load(tmp_path / "cached32" / "logits_test.npz") as b:
        for head in ("ce", "kd"):
            np.testing.assert_allclose(a[head], b[head], atol=1e-4, rtol=1e-4)


def test_cache_is_refused_when_it_does_not_fit(assets, cache, tmp_path):
    # the teacher's image-tower weights changed: a new encoder identity
    moved = tmp_path / "teacher_changed.pt"
    d = torch.load(assets / "teacher.pt", weights_only=True)
    w = torch.load(d["pretrained"], weights_only=True)
    first = next(iter(w))
    w[first] = w[first] + 1.0
    torch.save(w, tmp_path / "weights_changed.pt")
    d["pretrained"] = str(tmp_path / "weights_changed.pt")
    torch.save(d, moved)
    with pytest.raises(ConfigError, match="encoder"):
        train.run_training(make_spec(assets, tmp_path, teacher_file=str(moved), teacher_cache=str(cache)),
                           tmp_path / "r1")
    with pytest.raises(ConfigError, match="seed"):
        train.run_training(make_spec(assets, tmp_path, seed=2, teacher_cache=str(cache)), tmp_path / "r2")
    with pytest.raises(ConfigError, match="no view"):  # built for 2 epochs, asked for 3
        train.run_training(make_spec(assets, tmp_path, epochs=3, teacher_cache=str(cache)), tmp_path / "r3")


def test_cache_is_shared_across_label_levels(assets, tmp_path):
    """The union of two label levels' views is much smaller than their sum."""
    source = get_dataset("dtd", assets / "data")
    sets = [run_schedule(make_spec(assets, tmp_path, split={"kind": "fewshot", "shots": n}, epochs=4),
                         source).teacher_keys(4) for n in (1, 2, 4)]
    union = np.unique(np.concatenate(sets))
    assert len(union) < 0.75 * sum(len(s) for s in sets)


def test_build_rejects_specs_that_disagree(assets, tmp_path):
    specs = [make_spec(assets, tmp_path), make_spec(assets, tmp_path, seed=2)]
    with pytest.raises(ConfigError, match="seed"):
        build_cache(assets / "teacher.pt", specs, tmp_path / "c.pt", device="cpu")
    shutil.rmtree(tmp_path, ignore_errors=True)
