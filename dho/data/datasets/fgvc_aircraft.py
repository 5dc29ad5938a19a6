"""FGVC-Aircraft (100 variants) in CoOp's layout.

``fgvc_aircraft/images/<id>.jpg``, ``fgvc_aircraft/variants.txt`` (one variant name per
line; line order = label) and ``fgvc_aircraft/images_variant_{train,val,test}.txt``
(lines ``<id> <variant name, may contain spaces>``), the files of the
``fgvc-aircraft-2013b/data`` folder.
"""

from __future__ import annotations

from .. import templates
from ..registry import DATASETS
from ..source import DatasetSource, Index, clean_classname


@DATASETS.register("fgvc_aircraft", help="FGVC-Aircraft (100 aircraft variants)")
class FGVCAircraft(DatasetSource):
    folder_name = "fgvc_aircraft"
    image_subdir = "images"
    clip_templates = templates.CLIP_FGVC_AIRCRAFT
    templates = templates.FGVC_AIRCRAFT

    def layout(self) -> str:
        return (f"{self.folder}/variants.txt, {self.folder}/images_variant_{{train,val,test}}.txt and the "
                f"images under {self.image_dir}/")

    def _read_lines(self, name: str, problems: list[str]) -> list[tuple[int, str]] | None:
        path = self.folder / name
        if not path.is_file():
            problems.append(f"list file not found: {path}")
            return None
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            problems.append(f"cannot read list file {path}: {e}")
            return None
        return [(n, line.strip()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]

    def _scan(self, problems: list[str]) -> Index:
        variants = self._read_lines("variants.txt", problems) or []
        label_of: dict[str, int] = {}
        for n, name in variants:
            if name in label_of:
                problems.append(f"{self.folder / 'variants.txt'} line {n}: variant '{name}' appears twice")
            else:
                label_of[name] = len(label_of)
        items: dict[str, list[tuple[str, int]]] = {}
        for split in self.splits:
            items[split] = []
            fname = f"images_variant_{split}.txt"
            for n, line in self._read_lines(fname, problems) or []:
                parts = line.split(maxsplit=1)
                if len(parts) != 2:
                    problems.append(f"{self.folder / fname} line {n}: {line!r}: expected '<image id> <variant name>'")
                    continue
                image_id, variant = parts
                if variant not in label_of:
                    problems.append(f"{self.folder / fname} line {n}: variant {variant!r} is not listed in "
                                    f"{self.folder / 'variants.txt'}")
                    continue
                items[split].append((f"{image_id}.jpg", label_of[variant]))
        return Index(classnames=[clean_classname(v) for v in label_of], items=items)
