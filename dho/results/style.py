"""One style table for every figure and table: display names, colours, markers and order.

Methods are listed in the order of the paper's Table 1 (CE, the single-head KD baselines,
the dual-head KD baselines, ..., DHO last). A method that is not listed (a new baseline, or
a suite variant such as ``dho_lam0.1``) still gets a colour and a marker that depend on its
name only, never on which other methods are present, and comes after the listed ones
(alphabetically among themselves). So adding a baseline never changes another method's
colour or position.

Teachers, students, datasets and label levels have display names too; a name not listed
is shown as it is.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterable

import pandas as pd


@dataclass(frozen=True)
class MethodStyle:
    name: str      # the name in runs.csv
    label: str     # display name
    color: str     # matplotlib colour
    marker: str    # matplotlib marker
    order: int     # position in tables and legends


# name, display name, colour, marker -- in the paper's order (Table 1, then Tables 13-15, 18-19)
_METHODS: tuple[tuple[str, str, str, str], ...] = (
    ("ce", "CE", "#7f7f7f", "s"),
    ("kd_unlabeled", "KD (logit, unlabeled only)", "#c5b0d5", "h"),
    ("kd", "KD (logit)", "#1f77b4", "o"),
    ("kd_logit", "KD (logit)", "#1f77b4", "o"),
    ("kd_feature", "KD (feature)", "#17becf", "v"),
    ("sskd", "SSKD", "#2ca02c", "^"),
    ("dhkd", "DHKD", "#9467bd", "D"),
    ("pseudo_label", "Pseudo-label", "#8c564b", "P"),
    ("pcgrad", "KD + PCGrad", "#e377c2", "X"),
    ("dkd", "DKD", "#bcbd22", "<"),
    ("wkd", "WKD", "#ff7f0e", ">"),
    ("dkd_dho", "DKD + DHO", "#dbdb8d", "p"),
    ("wkd_dho", "WKD + DHO", "#ffbb78", "H"),
    ("dho_nl_ce", "DHO, non-linear CE head", "#f7b6d2", "d"),
    ("dho_nl_kd", "DHO, non-linear KD head", "#98df8a", "d"),
    ("dho_nl_both", "DHO, non-linear heads", "#9edae5", "d"),
    ("dho_labeled", "DHO, no unlabeled data", "#ff9896", "*"),
    ("dho", "DHO", "#d62728", "*"),
)
KNOWN_METHODS: dict[str, MethodStyle] = {
    name: MethodStyle(name, label, color, marker, i) for i, (name, label, color, marker) in enumerate(_METHODS)}

#: Colours and markers for methods not in the table (picked by a hash of the name).
EXTRA_COLORS = ("#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#31a354",
                "#756bb1", "#636363", "#e6550d", "#9c9ede", "#cedb9c", "#e7969c", "#a55194")
EXTRA_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "<", ">", "p", "h", "d")

#: Teacher names of the suites (config.yaml) -> display name; ``zs_*`` / ``fs_*`` by prefix.
TEACHERS = {"zs": "zero-shot", "fs": "Tip-Adapter-F", "dfn": "zero-shot DFN5B ViT-H/14",
            "none": "no teacher"}
_TEACHER_PREFIXES = (("zs", "zero-shot"), ("fs", "Tip-Adapter-F"))

STUDENTS = {"resnet18": "ResNet-18", "resnet18_scratch": "ResNet-18 from scratch", "resnet50": "ResNet-50",
            "mobilenet_v2": "MobileNetV2",
            "clip_vit_b16": "CLIP ViT-B/16", "clip_vit_l14_336": "CLIP ViT-L/14@336",
            "dino_resnet50": "ResNet-50 (DINO)"}

DATASETS = {"imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
            "stanford_cars": "StanfordCars", "flowers102": "Flowers102", "food101": "Food101",
            "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "dtd": "DTD", "eurosat": "EuroSAT",
            "ucf101": "UCF101", "imagenet_v2": "ImageNet-V2", "imagenet_sketch": "ImageNet-Sketch",
            "imagenet_a": "ImageNet-A", "imagenet_r": "ImageNet-R", "shapes": "shapes"}


def _digest(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


def method_style(name: str) -> MethodStyle:
    """The style of ``name``; a name not in the table gets a colour/marker fixed by its name."""
    name = str(name)
    if name in KNOWN_METHODS:
        return KNOWN_METHODS[name]
    h = _digest(name)
    return MethodStyle(name, name, EXTRA_COLORS[h % len(EXTRA_COLORS)],
                       EXTRA_MARKERS[(h // len(EXTRA_COLORS)) % len(EXTRA_MARKERS)], len(_METHODS))


def method_label(name: str) -> str:
    return method_style(name).label


def method_sort_key(name: str) -> tuple[int, str]:
    """Listed methods in the paper's order, then the others alphabetically."""
    return method_style(name).order, str(name)


def order_methods(names: Iterable[str]) -> list[str]:
    """Distinct ``names`` in display order."""
    return sorted(set(map(str, names)), key=method_sort_key)


def teacher_label(name: str) -> str:
    """``zs`` -> zero-shot, ``fs`` -> Tip-Adapter-F, ``zs_rn50`` -> zero-shot (rn50)."""
    name = str(name)
    if name in TEACHERS:
        return TEACHERS[name]
    for prefix, label in _TEACHER_PREFIXES:
        if name.startswith(prefix + "_"):
            return f"{label} ({name[len(prefix) + 1:]})"
    return name


def teacher_sort_key(name: str) -> tuple[int, str]:
    """Zero-shot teachers first, then Tip-Adapter-F, then others; ``none`` last."""
    name = str(name)
    rank = 3 if name == "none" else 2
    for i, (prefix, _) in enumerate(_TEACHER_PREFIXES):
        if name == prefix or name.startswith(prefix + "_"):
            rank = i
    return rank, name


def student_label(name: str) -> str:
    return STUDENTS.get(str(name), str(name))


def dataset_label(name: str) -> str:
    return DATASETS.get(str(name), str(name))


def labels_label(labels: str) -> str:
    """``1shot`` -> 1 shot, ``16shot`` -> 16 shots, ``10pct`` -> 10 %; anything else as it is."""
    labels = str(labels)
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(shot|pct)", labels)
    if not m:
        return labels
    number, unit = m.groups()
    if unit == "pct":
        return f"{number} %"
    return f"{number} shot" + ("" if number == "1" else "s")


_SORT_KEYS = {"method": method_sort_key, "teacher": teacher_sort_key}


def sort_frame(df: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """``df`` sorted stably by the columns ``by``; ``method`` and ``teacher`` in display order,
    ``labels`` by ``label_count`` when that column exists, others as text."""
    keys = []
    for col in by:
        if col in _SORT_KEYS:
            keys.append(df[col].map(lambda v, f=_SORT_KEYS[col]: f(v)))
        elif col == "labels" and "label_count" in df:
            keys.append(df["label_count"].astype(float).fillna(float("inf")))
            keys.append(df["labels"].astype(str))
        else:
            keys.append(df[col].astype(str) if df[col].dtype == object else df[col])
    if df.empty:
        return df.reset_index(drop=True)
    order = pd.DataFrame({f"k{i}": k for i, k in enumerate(keys)}, index=df.index)
    return df.loc[order.sort_values(list(order.columns), kind="mergesort").index].reset_index(drop=True)
