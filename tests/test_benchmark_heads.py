"""Benchmark 6 (Table 9): the harness's students have the paper's parameter counts, one
head or two, and the second head adds exactly a linear layer's parameters."""

from __future__ import annotations

import json

from benchmarks import heads_cost


def test_table9_parameters_match_the_paper_and_the_second_head_is_one_linear_layer(tmp_path, capsys):
    out = tmp_path / "t9.json"
    assert heads_cost.main(["--students", "resnet18", "mobilenet_v2", "--batch", "1", "--rounds", "1",
                            "--json", str(out)]) == 0
    rows = {(r["student"], r["method"]): r for r in json.loads(out.read_text())["rows"]}
    for student, feature_dim in (("resnet18", 512), ("mobilenet_v2", 1280)):
        single, dho = rows[student, "single head"], rows[student, "dho"]
        assert round(single["params_M"], 2) == single["paper_params_M"]  # 11.69 / 3.5
        assert round(dho["params_M"], 2) == dho["paper_params_M"]        # 12.2 / 4.79
        assert round((dho["params_M"] - single["params_M"]) * 1e6) == (feature_dim + 1) * 1000
        # the second head adds (feature_dim x 1000) MACs to a forward of 1.8 / 0.3 GMACs
        assert abs((dho["gmacs"] - single["gmacs"]) * 1e9 - feature_dim * 1000) < 2000
        assert dho["img_per_s"] > 0 and dho["throughput_ratio"] > 0
    assert abs(rows["resnet18", "single head"]["gmacs"] - 1.82) < 0.02  # torchvision's 1.81 "GFLOPS"
    assert "| resnet18 | dho | 12.20 | 12.20 |" in capsys.readouterr().out
