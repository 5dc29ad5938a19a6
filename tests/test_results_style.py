"""dho.results.style: one style per method/teacher, in the paper's order, stable under additions."""

from __future__ import annotations

import pandas as pd

from dho.results.style import (KNOWN_METHODS, labels_label, method_label, method_style, order_methods,
                               sort_frame, teacher_label, teacher_sort_key)


def test_known_methods_follow_the_papers_table_1_with_dho_last():
    assert order_methods(["dho", "kd", "ce", "sskd", "dhkd", "kd_feature"]) == [
        "ce", "kd", "kd_feature", "sskd", "dhkd", "dho"]
    assert method_label("kd") == "KD (logit)" and method_label("dho") == "DHO"


def test_unknown_methods_come_after_the_known_ones_in_name_order():
    assert order_methods(["zeta", "dho", "alpha_new", "ce"]) == ["ce", "dho", "alpha_new", "zeta"]
    assert method_label("alpha_new") == "alpha_new"


def test_a_methods_style_does_not_depend_on_the_other_methods_present():
    before = {m: method_style(m) for m in ["ce", "kd", "dho", "dho_lam0.1"]}
    order_methods(["ce", "kd", "dho", "dho_lam0.1", "new_baseline", "another"])  # adding methods
    assert {m: method_style(m) for m in before} == before
    # unknown names are styled by their name alone: same answer, and not all alike
    assert method_style("new_baseline") == method_style("new_baseline")
    styles = {(method_style(f"m{i}").color, method_style(f"m{i}").marker) for i in range(20)}
    assert len(styles) > 5


def test_known_methods_have_distinct_colours_except_aliases():
    colours = {}
    for style in KNOWN_METHODS.values():
        colours.setdefault(style.color, set()).add(style.label)
    assert all(len(labels) == 1 for labels in colours.values()), colours


def test_teacher_and_label_display_names():
    assert teacher_label("zs") == "zero-shot" and teacher_label("fs") == "Tip-Adapter-F"
    assert teacher_label("zs_rn50") == "zero-shot (rn50)" and teacher_label("other") == "other"
    assert sorted(["none", "fs", "other", "zs"], key=teacher_sort_key) == ["zs", "fs", "other", "none"]
    assert [labels_label(x) for x in ("1shot", "16shot", "10pct", "list")] == [
        "1 shot", "16 shots", "10 %", "list"]


def test_sort_frame_orders_methods_teachers_and_label_counts():
    df = pd.DataFrame({"teacher": ["fs", "zs", "zs", "zs"], "method": ["ce", "dho", "ce", "ce"],
                       "labels": ["1shot", "1shot", "16shot", "4shot"], "label_count": [1, 1, 16, 4]})
    out = sort_frame(df, ["teacher", "method", "labels"])
    assert list(zip(out["teacher"], out["method"], out["labels"])) == [
        ("zs", "ce", "4shot"), ("zs", "ce", "16shot"), ("zs", "dho", "1shot"), ("fs", "ce", "1shot")]
