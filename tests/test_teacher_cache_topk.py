"""The teacher cache's top-k mode: the logits rebuilt from the k largest (checked by hand),
a run with k = C equal to a feature-cache run, and the refusals (another k, another head,
a Tip-Adapter-F teacher, a method that needs features, in a run and in a suite)."""

import json
import math

import numpy as np
import pytest
import torch

from dho import train  # noqa: E402
from dho.cli import main  # noqa: E402
from dho.errors import ConfigError  # noqa: E402
from dho.teacher_cache import TopkFidelity, build_cache, index_dtype, topk_logits, topk_pack  # noqa: E402
from test_suite import compiled  # noqa: E402
from test_teacher_cache import RESULT_KEYS, assets, cache, make_spec  # noqa: E402,F401 (fixtures)

torch.set_num_threads(1)


def test_topk_rebuilds_the_logits_computed_by_hand():
    # 5 classes, probabilities 1/8, 2/8, 1/16, 4/8, 1/16 (logits shifted by 3), k = 2
    logits = torch.tensor([[math.log(1), math.log(2), math.log(0.5), math.log(4), math.log(0.5)]]) + 3.0
    packed = topk_pack(logits, 2)
    assert packed["indices"].tolist() == [[3, 1]] and packed["indices"].dtype == torch.int16
    assert packed["logprobs"].dtype == torch.float16
    torch.testing.assert_close(packed["logprobs"].float(), torch.tensor([[math.log(0.5), math.log(0.25)]]),
                               atol=1e-3, rtol=0)
    torch.testing.assert_close(packed["lse"], torch.tensor([math.log(8) + 3]))
    torch.testing.assert_close(packed["tail"], torch.tensor([math.log(0.25)]))  # 1 - 1/2 - 1/4
    z = topk_logits(packed, 5)
    # top-2 logits back; the other 3 classes share 1/4 evenly: logit ln(8 * 1/12) + 3
    torch.testing.assert_close(z, torch.tensor([[math.log(2 / 3), math.log(2), math.log(2 / 3), math.log(4),
                                                 math.log(2 / 3)]]) + 3.0, atol=2e-3, rtol=0)
    torch.testing.assert_close(z.softmax(1), torch.tensor([[1 / 12, 1 / 4, 1 / 12, 1 / 2, 1 / 12]]),
                               atol=1e-3, rtol=0)
    # at T = 2: proportional to sqrt(8 p'): 2/3 -> 0.8165, 2 -> 1.4142, 4 -> 2; sum 5.8637
    torch.testing.assert_close((z / 2).softmax(1), torch.tensor([[0.13925, 0.24118, 0.13925, 0.34108, 0.13925]]),
                               atol=1e-3, rtol=0)
    full = topk_logits(topk_pack(logits, 5), 5)  # k = C: every logit back, nothing filled
    torch.testing.assert_close(full, logits, atol=2e-3, rtol=0)
    assert index_dtype(32767) == torch.int16 and index_dtype(32768) == torch.int32


def test_topk_fidelity_computed_by_hand():
    # the 5-class example above, k = 2: teacher p = (1/8, 2/8, 1/16, 4/8, 1/16), rebuilt
    # q = (1/12, 1/4, 1/12, 1/2, 1/12); at T = 1 KL = 1/8 ln(3/2) + 2/16 ln(3/4), TV = 1/24
    logits = torch.tensor([[math.log(1), math.log(2), math.log(0.5), math.log(4), math.log(0.5)]]) + 3.0
    fid = TopkFidelity()
    fid.add(logits, topk_pack(logits, 2))
    fid.add(logits, topk_pack(logits, 2))  # two views, the same: means = the one view's values
    f = fid.summary()
    assert f["views"] == 2
    assert f["mean_tail_mass"] == pytest.approx(0.25, abs=1e-6)
    assert f["mean_kl_T1"] == pytest.approx(math.log(1.5) / 8 + math.log(0.75) / 8, abs=2e-4)
    assert f["mean_tv_T1"] == pytest.approx(1 / 24, abs=2e-4) and f["max_tv_T1"] == pytest.approx(1 / 24, abs=2e-4)
    # T = 2: teacher softened ~ sqrt(8 p) = (1, 1.4142, 0.7071, 2, 0.7071) / 5.8284; rebuilt
    # (0.13925, 0.24118, 0.13925, 0.34108, 0.13925): more tail mass, as the docstring says
    p2 = torch.tensor([1, 2 ** 0.5, 2 ** -0.5, 2, 2 ** -0.5]) / (3 + 2 * 2 ** 0.5)
    q2 = torch.tensor([0.13925, 0.24118, 0.13925, 0.34108, 0.13925])
    assert f["mean_kl_T2"] == pytest.approx(float((p2 * (p2 / q2).log()).sum()), abs=2e-4)
    assert f["mean_tv_T2"] == pytest.approx(float(0.5 * (p2 - q2).abs().sum()), abs=2e-4)
    exact = TopkFidelity()
    exact.add(logits, topk_pack(logits, 5))  # k = C: nothing changes (to the fp16 log-probabilities)
    assert all(v < 1e-3 for k, v in exact.summary().items() if k != "views")


def _topk_cache(assets, tmp, k, teacher="teacher.pt"):
    specs = [make_spec(assets, tmp, teacher_cache="c.pt", teacher_cache_topk=k, split={"kind": "fewshot", "shots": n})
             for n in (1, 2)]
    (tmp / "specs.json").write_text(json.dumps([s.to_dict() for s in specs]))
    out = tmp / f"top{k}.pt"
    assert main(["teacher", "cache", "--teacher", str(assets / teacher), "--spec", str(tmp / "specs.json"),
                 "--device", "cpu", "--quiet", "--batch-size", "7", "--topk", str(k), "--out", str(out)]) == 0
    return out


def test_topk_run_with_k_equal_to_classes_matches_the_feature_cache(assets, cache, tmp_path):
    """k = C (3 classes) holds every logit: the feature-cache run's results, logits to fp16
    tolerance; k = 1 < C runs too and keeps the teacher's test accuracy (its argmax)."""
    top3 = _topk_cache(assets, tmp_path, 3)
    feat = train.run_training(make_spec(assets, tmp_path / "f", teacher_cache=str(cache)), tmp_path / "feat")
    top = train.run_training(make_spec(assets, tmp_path / "t", teacher_cache=str(top3), teacher_cache_topk=3),
                             tmp_path / "top3")
    assert {k: top[k] for k in RESULT_KEYS} == {k: feat[k] for k in RESULT_KEYS}
    assert top["spec_hash"] != feat["spec_hash"]  # top-k targets are another experiment
    with np.load(tmp_path / "feat" / "logits_test.npz") as a, np.load(tmp_path / "top3" / "logits_test.npz") as b:
        for head in ("ce", "kd"):
            np.testing.assert_allclose(a[head], b[head], atol=0.05, rtol=0.01)
    (tmp_path / "k1").mkdir()
    top1 = _topk_cache(assets, tmp_path / "k1", 1)
    one = train.run_training(make_spec(assets, tmp_path / "o", teacher_cache=str(top1), teacher_cache_topk=1),
                             tmp_path / "top1")
    assert one["teacher_test_acc"] == feat["teacher_test_acc"]
    # the fidelity the build measured on the real teacher's training views: none lost at k = C
    exact, lossy = (torch.load(p, weights_only=True)["topk_fidelity"] for p in (top3, top1))
    assert exact["views"] == lossy["views"] > 0 and exact["max_tv_T2"] < 1e-3
    assert lossy["mean_tail_mass"] > 0 and lossy["mean_kl_T2"] > exact["mean_kl_T2"]


def _tip_teacher(assets, path):
    from dho.models import TipAdapterTeacher, load_teacher, save_teacher

    base = load_teacher(assets / "teacher.pt")
    torch.manual_seed(0)
    keys = torch.nn.functional.normalize(torch.randn(3, base.embedding_dim), dim=-1)
    save_teacher(TipAdapterTeacher.from_base(base, keys, torch.eye(3), 1.0, 5.0), path)
    return path


def test_topk_cache_is_refused_for_another_k_head_teacher_or_method(assets, tmp_path):
    top2 = _topk_cache(assets, tmp_path, 2)

    def run(**kw):
        kw.setdefault("teacher_cache_topk", 2)
        return train.run_training(make_spec(assets, tmp_path / "r", teacher_cache=str(top2), **kw), tmp_path / "r")

    with pytest.raises(ConfigError, match="topk = 2, this run has 3"):
        run(teacher_cache_topk=3)
    with pytest.raises(ConfigError, match="topk = 2, this run has None"):  # a feature-cache run
        run(teacher_cache_topk=None)
    other = torch.load(assets / "teacher.pt", weights_only=True)  # same image tower, another head
    other["text_classifier"] = other["text_classifier"].roll(1, dims=1)
    torch.save(other, tmp_path / "other_head.pt")
    with pytest.raises(ConfigError, match="was made for head = "):
        run(teacher_file=str(tmp_path / "other_head.pt"))
    tip = _tip_teacher(assets, tmp_path / "tip.pt")
    with pytest.raises(ConfigError, match=r"^key 'teacher_cache_topk' = 2: teacher file .* tip_adapter_f"):
        run(teacher_file=str(tip))
    with pytest.raises(ConfigError, match=r"^key 'teacher_cache_topk' = 2: method 'kd_feature' needs"):
        run(method="kd_feature")
    with pytest.raises(ConfigError, match="^teacher cache --topk 2: teacher file .* tip_adapter_f"):
        build_cache(tip, [make_spec(assets, tmp_path, teacher_cache="c.pt", teacher_cache_topk=2)], tmp_path / "x.pt",
                    device="cpu", topk=2)
    with pytest.raises(ConfigError, match="'teacher_cache_topk' = None"):  # specs that would refuse it
        build_cache(assets / "teacher.pt", [make_spec(assets, tmp_path)], tmp_path / "x.pt", device="cpu", topk=2)


def test_suite_with_a_topk_cache(tmp_path):
    """demo + teacher_cache {topk: 3}: refused while it has Tip-Adapter-F or feature KD;
    without them each run's spec asks for the k, and the cache job passes --topk."""
    def edit(extra):
        def apply(suites):
            suites["demo"]["teacher_cache"] = {"topk": 3}
            extra(suites["demo"])
        return apply

    with pytest.raises(ConfigError, match=r"^config key 'suites\.demo\.teacher_cache' = \{topk: 3\}: teacher 'fs'"):
        compiled("demo", edit(lambda d: None)).compiled()
    drop_fs = lambda d: d["teachers"].pop("fs")  # noqa: E731
    with pytest.raises(ConfigError, match=r"teacher_cache' = \{topk: 3\}: method 'kd_feature' needs the teacher's "
                                          r"embedding"):
        compiled("demo", edit(drop_fs)).compiled()
    suite = compiled("demo", edit(lambda d: (drop_fs(d), d["methods"].pop("kd_feature")))).compiled()[0]
    cells = [c for c in suite.grid if c.teacher != "none"]
    assert cells and all(suite.run_spec(c)["teacher_cache_topk"] == 3 for c in cells)
    assert suite.cache_topk == 3 and compiled("demo").compiled()[0].cache_topk is None
