"""The packaged reported numbers (dho/results/reported.csv): schema, completeness, hand-checked values."""

from __future__ import annotations

import math

import pytest

from dho.errors import DataError
from dho.results.reported import REPORTED_COLUMNS, find_reported, load_reported, lookup


@pytest.fixture(scope="module")
def reported():
    return load_reported()


def test_schema_and_size(reported):
    assert list(reported.columns[:len(REPORTED_COLUMNS)]) == list(REPORTED_COLUMNS)
    assert {"paper_student", "paper_teacher", "paper_method", "note"} <= set(reported.columns)
    assert len(reported) == 546
    assert reported["value"].dtype == "float64" and reported["value"].notna().all()
    # the tables each paper suite renders are all there (counts of the transcription)
    counts = reported["table"].value_counts()
    for table, n in {"Tab1": 78, "Tab3": 61, "Tab6": 4, "Tab12": 73, "Tab17": 45, "Tab18": 40, "Tab19": 12,
                     "Fig6": 2, "Fig9": 2}.items():
        assert counts[table] == n, table


# Values read off the paper's v2 text by hand (table, keys, value).
HAND_CHECKED = [
    ("Tab1", dict(dataset="imagenet", labels="16shot", student="resnet50 dino", teacher="zs", method="dho"), 64.7),
    ("Tab1", dict(dataset="imagenet", labels="1shot", student="resnet18 scratch", teacher="fs", method="dho"), 53.7),
    ("Tab1", dict(dataset="imagenet", labels="8shot", student="resnet18 scratch", teacher="none", method="ce"), 3.4),
    ("Tab1", dict(dataset="imagenet", labels="0shot", student="resnet50 dino", method="kd_logit_unlabeled_only"), 61.0),
    ("Tab1", dict(dataset="imagenet", labels="4shot", teacher="fs", method="teacher"), 62.5),
    ("Tab3", dict(dataset="imagenet", labels="10pct", student="clip_vit_l14_336", method="ce+kd_logit"), 83.6),
    ("Tab6", dict(method="dho init ce=yes kd=no, align=no"), 78.5),
    ("Tab17", dict(dataset="imagenet_a", labels="10pct", student="clip_vit_b16", teacher="l14"), 41.4),
    ("Tab17", dict(dataset="imagenet_r", labels="zero-shot", student="DFN ViT-H/14"), 92.3),
    ("Tab18", dict(dataset="average of 10 fine-grained", labels="4shot", method="dho (linear heads)"), 68.4),
]


@pytest.mark.parametrize("table,keys,value", HAND_CHECKED)
def test_hand_checked_values(reported, table, keys, value):
    assert lookup(reported, table, **keys) == value


def test_other_metrics_and_counts(reported):
    assert lookup(reported, "Tab19", metric="top1_acc_combined", method="dho (linear heads)") == 65.37
    assert lookup(reported, "Tab12", metric="n_train", dataset="stanford_cars") == 6509
    assert lookup(reported, "Tab12", metric="n_test", dataset="imagenet_sketch") == 50889
    assert math.isnan(lookup(reported, "Tab1", dataset="imagenet", labels="32shot", method="dho", student="resnet50 dino"))


def test_lookup_refuses_ambiguous_keys(reported):
    with pytest.raises(DataError, match="rows of Tab1 match"):
        lookup(reported, "Tab1", method="dho")


def test_generic_matching_only_uses_accuracies(tmp_path):
    path = tmp_path / "reported.csv"
    path.write_text("table,protocol,dataset,labels,student,teacher,method,metric,value,source\n"
                    "T,p,imagenet,1pct,vit_b16,dfn,dho,params_M,86,x\n"
                    "T,p,imagenet,1pct,vit_b16,dfn,dho,top1_acc,81.6,y\n")
    assert find_reported(load_reported(path), "imagenet", "1pct", "clip_vit_b16", "dfn", "dho").value == 81.6
