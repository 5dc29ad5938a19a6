"""Reproducible views (dho.data.views): a view is a pure function of (seed, epoch, pass,
train index), independent of label level, batch order, loader workers and resolution."""

import numpy as np
import pytest
import torch
from PIL import Image

from dho.data import views
from dho.data.splits import make_split
from fake_datasets import make_fake_dataset


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from dho.data import get_dataset

    root = tmp_path_factory.mktemp("views")
    make_fake_dataset("dtd", root / "data", num_classes=3, per_class=(8, 2, 2), size=24)
    return get_dataset("dtd", root / "data")


def test_keys_pack_and_unpack():
    keys = views.pack_keys([1, 7, 200], [0, 3, 4095], [0, 12345, 2**32 - 1])
    e, p, i = views.unpack_keys(keys)
    assert e.tolist() == [1, 7, 200] and p.tolist() == [0, 3, 4095] and i.tolist() == [0, 12345, 2**32 - 1]
    assert (keys >= 0).all() and len(set(keys.tolist())) == 3


def test_crop_params_depend_only_on_the_key():
    a = views.crop_params(1, 5, 64, 48, 0.5)
    assert a == views.crop_params(1, 5, 64, 48, 0.5)
    draws = {views.crop_params(1, k, 64, 48, 0.5) for k in range(200)}
    assert len(draws) > 150  # keys give different crops
    assert views.crop_params(2, 5, 64, 48, 0.5) != a or views.crop_params(2, 6, 64, 48, 0.5) != views.crop_params(1, 6, 64, 48, 0.5)
    for p in draws:
        assert 0 <= p.top and p.top + p.height <= 48 and 0 <= p.left and p.left + p.width <= 64
        assert p.height * p.width >= 0.5 * 64 * 48 * 0.9  # scale >= scale_min (rounding aside)
    assert 0.3 < np.mean([p.flip for p in draws]) < 0.7


def test_same_crop_at_two_resolutions():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    p = views.crop_params(3, 11, img.width, img.height, 0.5)
    big, small = views.render_view(img, p, 64), views.render_view(img, p, 16)
    down = torch.nn.functional.interpolate(big[None], size=16, mode="bilinear", antialias=True)[0]
    assert big.shape == (3, 64, 64) and small.shape == (3, 16, 16)
    assert (down - small).abs().mean() < 0.03  # the same region of the image


def test_view_dataset_is_independent_of_workers_and_order(source):
    items = source.items("train")
    ds = views.ViewDataset(source, items, 16, 0.5, seed=1)
    keys = views.pack_keys(1, 0, np.arange(len(items)))
    direct = torch.stack([ds[int(k)][0] for k in keys])
    loader = torch.utils.data.DataLoader(ds, batch_sampler=[keys[::-1].tolist()], num_workers=2)
    (x, y, idx, got_keys), = list(loader)
    assert torch.equal(x.flip(0), direct)
    assert idx.flip(0).tolist() == list(range(len(items)))
    assert views.ViewDataset(source, items, 16, 0.5, seed=1, mask_labels=True)[0][1] == -1
    assert not torch.equal(ds[int(views.pack_keys(2, 0, 0))][0], direct[0])  # another epoch, another view


def test_unlabeled_order_is_shared_across_label_levels(source):
    items = source.items("train")

    def schedule(shots):
        m = make_split(source, {"kind": "fewshot", "shots": shots}, seed=1)
        lab, unl = views.train_indices(items, m.labeled, m.unlabeled)
        return views.Schedule(seed=1, n_train=len(items), labeled=lab, unlabeled=unl, batch_size=2,
                              unlabeled_batch_size=4, epoch_length="labeled", use_unlabeled=True)

    s1, s4 = schedule(1), schedule(4)
    for e in (1, 2):
        _, u1 = s1.epoch(e)
        _, u4 = s4.epoch(e)
        labeled = set(views.pack_keys(e, 0, np.concatenate([s1.labeled, s4.labeled])).tolist())
        order1 = [k for b in u1 for k in b.tolist() if k not in labeled]
        order4 = [k for b in u4 for k in b.tolist() if k not in labeled]
        n = min(len(order1), len(order4))
        assert n > 3 and order1[:n] == order4[:n]  # one unlabeled sequence, each level's labeled images skipped
    # a labeled image's view key is its train index: shared by both label levels
    assert set(s1.labeled.tolist()) != set(s4.labeled.tolist())
    keys1, keys4 = s1.teacher_keys(3), s4.teacher_keys(3)
    assert len(np.intersect1d(keys1, keys4)) > 0.5 * len(keys1)


def test_schedule_cycles_a_short_loader_with_new_passes(source):
    items = source.items("train")
    s = views.Schedule(seed=1, n_train=24, labeled=np.arange(3), unlabeled=np.arange(3, 24), batch_size=2,
                       unlabeled_batch_size=4, epoch_length="unlabeled", use_unlabeled=True)
    lab, unl = s.epoch(1)
    assert len(lab) == len(unl) == 6
    _, passes, idx = views.unpack_keys(np.concatenate(lab))
    assert passes.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3][:len(passes)]
    assert sorted(idx[:3].tolist()) == [0, 1, 2]
    assert len(items) == 24
    none = views.Schedule(seed=1, n_train=24, labeled=np.arange(3), unlabeled=np.arange(3, 24), batch_size=2,
                          unlabeled_batch_size=4, epoch_length="labeled", use_unlabeled=False)
    assert none.epoch(1)[1] is None and none.steps_per_epoch == 2


def test_shard_splits_a_batch_contiguously():
    b = np.arange(10)
    parts = [views.shard(b, 4, r) for r in range(4)]
    assert np.concatenate(parts).tolist() == b.tolist() and [len(p) for p in parts] == [2, 3, 2, 3]


def test_bicubic_crop_for_the_imagenet_protocol():
    """crop_interpolation bicubic (the authors' ImageNet scripts) resizes the same crop
    with torchvision's bicubic filter."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    img = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    p = views.crop_params(1, views.pack_keys(0, 0, 3).item(), img.width, img.height, 0.5)
    bicubic = views.render_view(img, p, 24, "bicubic")
    ref = TF.resized_crop(img, p.top, p.left, p.height, p.width, [24, 24],
                          interpolation=InterpolationMode.BICUBIC, antialias=True)
    ref = TF.to_tensor(TF.hflip(ref) if p.flip else ref)
    assert torch.equal(bicubic, ref)
    assert not torch.equal(bicubic, views.render_view(img, p, 24))  # default bilinear differs
