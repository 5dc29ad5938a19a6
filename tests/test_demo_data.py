"""The demo's procedurally generated "shapes" dataset: determinism, layout, reuse, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dho.cli import main
from dho.demo.data import (MANIFEST_FILE, SPLIT_FILE, ShapesParams, class_names, generate_shapes,
                           is_complete, render_split)
from dho.demo.render import Attributes, all_attributes, benchmark_classes, render
from dho.errors import ConfigError

torch.set_num_threads(1)

TINY = ShapesParams(seed=3, train=3, val=1, test=2, size=16)


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _sha(folder: Path) -> str:
    return json.loads((folder / MANIFEST_FILE).read_text())["sha256"]


def test_render_is_deterministic_and_varied():
    a = Attributes("red", "striped", "circle")
    first = render(a, np.random.default_rng(7), 32)
    assert first.shape == (32, 32, 3) and first.dtype == np.uint8
    assert np.array_equal(first, render(a, np.random.default_rng(7), 32))
    assert not np.array_equal(first, render(a, np.random.default_rng(8), 32))
    # every attribute combination renders, at odd sizes too
    for attrs in all_attributes()[::7]:
        assert render(attrs, np.random.default_rng(0), 17).shape == (17, 17, 3)


def test_class_names_are_attribute_phrases():
    names = class_names()
    assert len(names) == 12 == len(set(names))
    assert names[0] == "red striped circle"
    assert all(len(n.split()) == 3 for n in names)
    assert {a.phrase for a in benchmark_classes()} < {a.phrase for a in all_attributes()}


def test_same_seed_gives_identical_files(tmp_path):
    f1, made1 = generate_shapes(tmp_path / "a", TINY, progress=False)
    f2, made2 = generate_shapes(tmp_path / "b", TINY, progress=False)
    assert made1 and made2
    assert _files(f1) == _files(f2)
    f3, _ = generate_shapes(tmp_path / "c", ShapesParams(seed=4, train=3, val=1, test=2, size=16), progress=False)
    assert _sha(f3) != _sha(f1)
    png1, png3 = _files(f1), _files(f3)
    assert all(png1[k] != png3[k] for k in png1 if k.endswith(".png"))


def test_layout_is_read_by_the_real_loader(tmp_path):
    from dho.data import ImageList, eval_transform, get_dataset

    generate_shapes(tmp_path, TINY, progress=False)
    source = get_dataset("shapes", tmp_path)
    assert source.classnames == class_names()
    assert source.num_classes == 12
    assert [len(source.items(s)) for s in ("train", "val", "test")] == [36, 12, 24]
    assert all("{}" in t for t in source.templates)
    report = source.check(sample=4)
    assert report.ok, report.problems
    # decoded pixels are exactly the in-memory rendering (PNG is lossless), in split order
    images, labels = render_split(TINY, "test")
    data = ImageList(source, source.items("test"), eval_transform(16))
    for i in (0, 5, 23):
        x, y, _ = data[i]
        assert y == labels[i]
        assert torch.equal((x * 255).round().to(torch.uint8), torch.from_numpy(images[i]).permute(2, 0, 1))


def test_complete_copy_is_reused_and_a_stale_one_replaced(tmp_path):
    folder, made = generate_shapes(tmp_path, TINY, progress=False)
    assert made and is_complete(folder, TINY)
    before = _files(folder)
    assert generate_shapes(tmp_path, TINY, progress=False) == (folder, False)

    victim = folder / "images" / "red_striped_circle" / "train_0000.png"
    victim.write_bytes(b"not a png")
    assert not is_complete(folder, TINY)
    assert generate_shapes(tmp_path, TINY, progress=False) == (folder, True)
    assert _files(folder) == before

    bigger = ShapesParams(seed=3, train=4, val=1, test=2, size=16)
    assert generate_shapes(tmp_path, bigger, progress=False) == (folder, True)
    split = json.loads((folder / SPLIT_FILE).read_text())
    assert len(split["train"]) == 48
    # images shared by both parameter sets are identical: each image has its own seed
    assert (folder / "images/red_striped_circle/train_0001.png").read_bytes() == \
        before["images/red_striped_circle/train_0001.png"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folders left


@pytest.mark.parametrize("params, key", [
    (ShapesParams(train=0), "--per-class train"),
    (ShapesParams(size=4), "--size"),
    (ShapesParams(seed=-1), "--seed"),
])
def test_bad_parameters_raise_config_error(tmp_path, params, key):
    with pytest.raises(ConfigError, match=key):
        generate_shapes(tmp_path, params, progress=False)
    assert not (tmp_path / "shapes").exists()


def test_cli_writes_then_skips(tmp_path, capsys):
    args = ["demo", "data", "--root", str(tmp_path), "--seed", "1", "--per-class", "2", "1", "1",
            "--size", "16", "--quiet"]
    assert main(args) == 0
    assert "written to" in capsys.readouterr().out
    assert main(args) == 0
    assert "already complete" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "shapes" / MANIFEST_FILE).read_text())
    assert manifest["params"]["seed"] == 1 and manifest["counts"] == {"train": 24, "val": 12, "test": 12}


def test_cli_rejects_bad_input(tmp_path, capsys):
    assert main(["demo", "data", "--root", str(tmp_path), "--size", "1000", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --size") and "\n" not in err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["demo", "data", "--root", str(blocker), "--quiet", "--per-class", "1", "1", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: cannot write the demo dataset") and "\n" not in err
