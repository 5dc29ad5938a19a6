import json

import pytest
import torch

from dho.cli import main
from dho.models import TipAdapterTeacher, load_teacher
from tiny_clip import make_tiny_clip

torch.set_num_threads(1)

TINY = "dho-test-cli-clip"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A tiny generated "shapes" dataset, a 1-shot split manifest and tiny CLIP weights."""
    from dho.data import get_dataset
    from dho.data.splits import make_split
    from dho.demo.data import ShapesParams, generate_shapes

    root = tmp_path_factory.mktemp("data")
    generate_shapes(root, ShapesParams(train=2, val=1, test=2, size=16), progress=False)
    manifest = root / "split.json"
    make_split(get_dataset("shapes", root), {"kind": "fewshot", "shots": 1}, seed=1).save(manifest)
    return root, manifest, make_tiny_clip(root, TINY, image_size=16)


def test_students_lists_every_student(capsys):
    assert main(["students"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["clip_tiny", "clip_vit_b16", "clip_vit_l14_336", "coop_tiny",
                                                  "coop_vit_b16", "dino_resnet50", "mobilenet_v2", "resnet18",
                                                  "vpt_tiny", "vpt_vit_b16"]


def test_teacher_commands_end_to_end(setup, tmp_path, capsys):
    root, manifest, weights = setup
    zs = tmp_path / "zs.pt"
    common = ["--dataset", "shapes", "--root", str(root), "--device", "cpu", "--quiet"]
    assert main(["teacher", "zeroshot", *common, "--model", TINY, "--pretrained", str(weights),
                 "--out", str(zs)]) == 0
    teacher = load_teacher(zs, expected_classes=12)
    assert teacher.model == TINY and teacher.num_classes == 12

    out_json = tmp_path / "eval" / "zs.json"
    assert main(["teacher", "eval", *common, "--teacher", str(zs), "--num-workers", "0",
                 "--out", str(out_json)]) == 0
    result = json.loads(out_json.read_text())
    assert result["split"] == "test" and result["num_images"] == 24 and result["kind"] == "zeroshot"
    # the reported accuracy is the teacher's accuracy on the eval crops, recomputed here
    from dho.data import ImageList, eval_transform, get_dataset

    source = get_dataset("shapes", root)
    images = ImageList(source, source.items("test"), eval_transform(16))
    x = torch.stack([images[i][0] for i in range(len(images))])
    y = torch.tensor([images[i][1] for i in range(len(images))])
    expected = 100.0 * (teacher(x).argmax(1) == y).float().mean().item()
    assert result["accuracy"] == pytest.approx(expected)

    tip = tmp_path / "tip.pt"
    assert main(["teacher", "tip-adapter-f", *common, "--base", str(zs), "--split-manifest", str(manifest),
                 "--epochs", "1", "--augment-epochs", "1", "--num-workers", "0",
                 "--out", str(tip)]) == 0
    fitted = load_teacher(tip, expected_classes=12)
    assert isinstance(fitted, TipAdapterTeacher) and fitted.cache_keys.shape == (12, 32)


def test_teacher_command_errors(setup, tmp_path, capsys):
    root, manifest, weights = setup
    common = ["--dataset", "shapes", "--root", str(root), "--device", "cpu", "--quiet"]
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert main(["teacher", "eval", *common, "--teacher", str(bad)]) == 2
    assert "error: teacher file" in capsys.readouterr().err
    assert main(["teacher", "zeroshot", *common, "--model", "no-such-model", "--pretrained", "x",
                 "--out", str(tmp_path / "t.pt")]) == 2
    assert "unknown open_clip model 'no-such-model'" in capsys.readouterr().err
    assert main(["teacher", "tip-adapter-f", *common, "--base", str(bad), "--split-manifest", str(manifest),
                 "--image-size", "16", "--epochs", "0", "--out", str(tmp_path / "t.pt")]) == 2
    assert "--epochs = 0" in capsys.readouterr().err


# Transcribed from erjui/DHO configs/<dataset>.yaml (init_alpha, init_beta, search_scale,
# search_step, train_epoch, augment_epoch, lr); dataset names are the harness's.
AUTHORS_TIP_CONFIGS = {
    "caltech101": (3, 1, [12, 5], [200, 20], 200, 10, 0.001),
    "dtd": (2, 1, [13, 13], [200, 20], 200, 10, 0.001),
    "eurosat": (2, 1, [12, 10], [200, 20], 200, 10, 0.001),
    "fgvc_aircraft": (5, 1, [30, 30], [200, 20], 200, 10, 0.001),
    "food101": (1.17, 1, [10, 10], [200, 20], 200, 10, 0.001),
    "imagenet": (1.17, 1, [7, 3], [200, 20], 20, 10, 0.001),
    "flowers102": (10, 1, [50, 50], [200, 20], 200, 10, 0.001),
    "oxford_pets": (1.17, 1, [7, 3], [200, 20], 200, 10, 0.001),
    "stanford_cars": (3, 1, [20, 10], [200, 20], 200, 10, 0.001),
    "sun397": (1.17, 1, [12, 10], [200, 20], 200, 10, 0.001),
    "ucf101": (3, 1, [7, 3], [200, 20], 200, 10, 0.001),
}


@pytest.mark.parametrize("dataset", sorted(AUTHORS_TIP_CONFIGS))
def test_tip_adapter_settings_are_the_authors(dataset):
    from dho.data import DATASETS
    from dho.models.tip_adapter import SETTING_KEYS, tip_adapter_settings

    assert dataset in DATASETS
    s = tip_adapter_settings(dataset)
    assert tuple(s[k] for k in SETTING_KEYS) == AUTHORS_TIP_CONFIGS[dataset]


def test_tip_adapter_cli_uses_the_datasets_settings(tmp_path, monkeypatch):
    """dho teacher tip-adapter-f on caltech101: init (3, 1), 200 epochs, beta grid 0.1..12
    in 200 steps, alpha grid 0.1..5 in 20 steps; a flag overrides one setting."""
    from dho.data import get_dataset
    from dho.data.splits import make_split
    from dho.models import tip_adapter
    from fake_datasets import make_fake_dataset

    make_fake_dataset("caltech101", tmp_path, num_classes=3, per_class=(2, 1, 1), size=16)
    weights = make_tiny_clip(tmp_path, "dho-test-cli-clip16", image_size=16)
    manifest = tmp_path / "split.json"
    make_split(get_dataset("caltech101", tmp_path), {"kind": "fewshot", "shots": 1}, seed=1).save(manifest)
    common = ["--dataset", "caltech101", "--root", str(tmp_path), "--device", "cpu", "--quiet"]
    zs = tmp_path / "zs.pt"
    assert main(["teacher", "zeroshot", *common, "--model", "dho-test-cli-clip16", "--pretrained", str(weights),
                 "--out", str(zs)]) == 0
    seen = []

    class Stop(Exception):
        pass

    def capture(base, labeled, val, **kwargs):
        seen.append(kwargs)
        raise Stop

    monkeypatch.setattr(tip_adapter, "fit_tip_adapter_f", capture)
    for extra in ([], ["--epochs", "7"], ["--epoch-on", "test"]):
        with pytest.raises(Stop):
            main(["teacher", "tip-adapter-f", *common, "--base", str(zs), "--split-manifest", str(manifest),
                  "--num-workers", "0", "--out", str(tmp_path / "tip.pt"), *extra])
    first, second, third = seen
    assert first["epoch_loader"] is None  # the fine-tuning epoch is chosen on val by default
    assert len(third["epoch_loader"].dataset) == 3  # --epoch-on test: Tip-Adapter's code, on the test images
    assert (first["init_alpha"], first["init_beta"], first["epochs"], first["augment_epochs"]) == (3, 1, 200, 10)
    assert len(first["betas"]) == 200 and first["betas"][0] == pytest.approx(0.1)
    assert first["betas"][-1] == pytest.approx(0.1 + 199 * (12 - 0.1) / 200)
    assert len(first["alphas"]) == 20 and first["alphas"][-1] == pytest.approx(0.1 + 19 * (5 - 0.1) / 20)
    assert second["epochs"] == 7 and second["init_alpha"] == 3
