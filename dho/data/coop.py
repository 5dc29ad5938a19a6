"""Datasets stored the CoOp way: images plus one ``split_zhou_<Name>.json``.

The split file is ``{"train": [[relpath, label, classname], ...], "val": [...],
"test": [...]}`` with ``relpath`` relative to ``root/<folder_name>/<image_subdir>``.
Class names come from the file (label -> classname, ordered by label); labels must be
``0 .. C-1`` where ``C`` is the number of distinct class names in the file.
"""

from __future__ import annotations

import json

from .source import DatasetSource, Index, clean_classname, is_safe_relpath


def _short(value: object, limit: int = 80) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class CoopSplitDataset(DatasetSource):
    """Base class for a dataset described by a CoOp split JSON in its folder.

    Subclasses set ``folder_name``, ``image_subdir``, ``split_file`` and ``templates``::

        @DATASETS.register("dtd", help="Describable Textures (47 classes)")
        class DTD(CoopSplitDataset):
            folder_name = "dtd"
            image_subdir = "images"
            split_file = "split_zhou_DescribableTextures.json"
            templates = [...]
    """

    split_file: str = ""

    @property
    def split_path(self):
        return self.folder / self.split_file

    def layout(self) -> str:
        return f"{self.split_path} (CoOp split JSON) and the images under {self.image_dir}/"

    def _scan(self, problems: list[str]) -> Index:
        path = self.split_path
        empty = Index(classnames=[], items={s: [] for s in self.splits})
        expected = "a JSON object {" + ", ".join(f'"{s}": [[relpath, label, classname], ...]' for s in self.splits) + "}"
        if not path.is_file():
            problems.append(f"split file not found: {path} (expected {expected})")
            return empty
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            problems.append(f"split file {path} is not valid JSON: {e}")
            return empty
        except OSError as e:
            problems.append(f"cannot read split file {path}: {e.strerror or e}")
            return empty
        if not isinstance(data, dict):
            problems.append(f"split file {path}: got a JSON {type(data).__name__}, expected {expected}")
            return empty

        names: dict[int, str] = {}
        items: dict[str, list[tuple[str, int]]] = {}
        for split in self.splits:
            entries = data.get(split)
            items[split] = []
            seen: set[str] = set()
            if not isinstance(entries, list):
                got = "no such key" if entries is None else f"a {type(entries).__name__}"
                problems.append(f"split file {path}: key '{split}': {got}, expected a list of [relpath, label, classname]")
                continue
            for i, entry in enumerate(entries):
                where = f"split file {path}: {split}[{i}] = {_short(entry)}"
                if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
                        and isinstance(entry[1], int) and not isinstance(entry[1], bool)
                        and isinstance(entry[2], str)):
                    problems.append(f"{where}: expected [relpath (string), label (integer), classname (string)]")
                    continue
                rel, label, cname = entry
                if not is_safe_relpath(rel):
                    problems.append(f"{where}: expected a relative path inside {self.image_dir}")
                    continue
                if label < 0:
                    problems.append(f"{where}: label {label} is negative, expected 0 or more")
                    continue
                if names.setdefault(label, cname) != cname:
                    problems.append(f"{where}: label {label} is named '{cname}' here but '{names[label]}' before")
                    continue
                if rel in seen:
                    problems.append(f"{where}: image listed twice in '{split}', expected each image once")
                    continue
                seen.add(rel)
                items[split].append((rel, label))

        num_classes = len(names)
        for split in self.splits:
            for i, (rel, label) in enumerate(items[split]):
                if label >= num_classes:
                    problems.append(f"split file {path}: {split} entry {rel!r} has label {label} out of range: "
                                    f"labels must be 0..{num_classes - 1} without gaps ({num_classes} distinct labels in the file)")
                    break
        items = {s: [(r, lab) for r, lab in v if lab < num_classes] for s, v in items.items()}
        classnames = [clean_classname(names.get(c, "")) for c in range(num_classes)]
        return Index(classnames=classnames, items=items)
