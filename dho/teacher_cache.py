"""The teacher-output cache: the teacher's image features on every training view that a
group of runs will show it, computed once (``dho teacher cache``) and read by each run
(spec key ``teacher_cache``).

What is cached.  The L2-normalised image features of the teacher's image tower (fp16 by
default), not its logits: the zero-shot head (``100 f W``) and Tip-Adapter-F's cache model
are cheap functions of the features, applied at training time, so one cache serves every
teacher built on the same image tower (zero-shot and each label level's Tip-Adapter-F),
every student, method and label level that shares (dataset, seed, crop scale).  A feature
costs ``2 * D`` bytes whatever the class count (RN50: 2 KB, ViT-H/14: 2 KB), so no top-k
truncation of 1000-class logits is needed and KD sees the teacher's full distribution.

Which views.  A view is fixed by its key (:mod:`dho.data.views`); the cache command
replays the schedule of each run spec it is given (:meth:`Schedule.teacher_keys`) and
stores the union of their keys, sorted, plus the teacher's features on the test split
(for ``teacher_test_acc``).  A run asking for a key the cache lacks fails with a
:class:`~dho.errors.ConfigError` naming the cache (it was built for other runs).

Validity.  The file records the dataset, a hash of its train split, the augmentation seed,
``crop_scale_min``, the crop resolution and the teacher's *encoder identity* (open_clip
model, pretrained tag or weights file and that file's sha256).  A run whose spec or
teacher file disagrees is refused; a changed weights file therefore invalidates the cache.
The student's own resolution may differ from the cache's: it sees the same crop box.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import CheckpointError, ConfigError
from .io import atomic_torch_save

FORMAT, VERSION = "dho-teacher-cache", 1
META_KEYS = ("dataset", "train_hash", "seed", "crop_scale_min", "crop_interpolation", "image_size", "encoder")


def train_hash(train_items: Sequence[tuple[str, int]]) -> str:
    blob = json.dumps([[str(r), int(y)] for r, y in train_items], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_schedule(spec, source, use_unlabeled: bool = True):
    """The :class:`~dho.data.views.Schedule` of a run spec (its split computed or loaded)."""
    from .data import splits, views

    manifest = (splits.SplitManifest.load(spec.split_manifest) if spec.split_manifest
                else splits.make_split(source, spec.split, spec.split_seed))
    train_items = source.items("train")
    lab, unl = views.train_indices(train_items, manifest.labeled, manifest.unlabeled)
    return views.Schedule(seed=spec.seed, n_train=len(train_items), labeled=lab, unlabeled=unl,
                          batch_size=spec.batch_size, unlabeled_batch_size=spec.unlabeled_batch_size,
                          epoch_length=spec.epoch_length, use_unlabeled=use_unlabeled)


def _common(specs: Sequence, key: str) -> Any:
    values = {json.dumps(getattr(s, key), sort_keys=True) for s in specs}
    if len(values) != 1:
        raise ConfigError(f"teacher cache: the run specs disagree on key '{key}' ({', '.join(sorted(values))}); "
                          f"one cache serves runs with one {key}")
    return getattr(specs[0], key)


def cache_meta(source, spec, encoder: dict, image_size: int | None = None) -> dict[str, Any]:
    """What a cache must agree on with a run (``spec``) besides the view keys."""
    return {"dataset": source.name, "train_hash": train_hash(source.items("train")), "seed": int(spec.seed),
            "crop_scale_min": float(spec.crop_scale_min), "crop_interpolation": str(spec.crop_interpolation),
            "image_size": int(image_size or spec.image_size), "encoder": dict(encoder)}


def _encode(teacher, loader, device, progress: bool, desc: str):
    import torch

    from tqdm.auto import tqdm

    out = []
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress):
        out.append(teacher.encode(batch[0].to(device, non_blocking=True)).cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def build_cache(teacher_file: str | Path, specs: Sequence, out: str | Path, image_size: int | None = None,
                dtype: str = "float16", batch_size: int = 256, num_workers: int = 0, device: str = "auto",
                progress: bool = False) -> dict[str, Any]:
    """Compute and write the cache for ``specs`` (RunSpecs sharing dataset, seed, crop scale)."""
    import torch

    from .data import ImageList, eval_transform, get_dataset, views
    from .models import encoder_identity, load_teacher, read_teacher_file
    from .train import resolve_device

    if not specs:
        raise ConfigError("teacher cache: no run specs given (--spec)")
    dataset, root = _common(specs, "dataset"), _common(specs, "data_root")
    seed, scale = _common(specs, "seed"), _common(specs, "crop_scale_min")
    interpolation = _common(specs, "crop_interpolation")
    size = int(image_size or _common(specs, "image_size"))
    if dtype not in ("float16", "float32"):
        raise ConfigError(f"teacher cache: dtype {dtype!r}: expected float16 or float32")
    source = get_dataset(dataset, root)
    keys = np.unique(np.concatenate([run_schedule(s, source).teacher_keys(s.epochs) for s in specs]))
    dev = resolve_device(device)
    teacher = load_teacher(teacher_file, dev, expected_classes=source.num_classes)
    encoder = encoder_identity(read_teacher_file(teacher_file))
    loader_kw = dict(num_workers=num_workers, pin_memory=dev.type == "cuda")
    train_set = views.ViewDataset(source, source.items("train"), size, scale, seed, mask_labels=True,
                                  interpolation=interpolation)
    batches = [keys[i:i + batch_size].tolist() for i in range(0, len(keys), batch_size)]
    feats = _encode(teacher, torch.utils.data.DataLoader(train_set, batch_sampler=batches, **loader_kw),
                    dev, progress, "teacher cache (train views)")
    test_items = source.items("test")
    test_loader = torch.utils.data.DataLoader(ImageList(source, test_items, eval_transform(size)),
                                              batch_size=batch_size, **loader_kw)
    test_feats = _encode(teacher, test_loader, dev, progress, "teacher cache (test)")
    store = getattr(torch, dtype)
    record = {"format": FORMAT, "version": VERSION,
              **cache_meta(source, specs[0], encoder, size),
              "keys": torch.from_numpy(keys), "features": feats.to(store).contiguous(),
              "test_features": test_feats.to(store).contiguous(),
              "test_labels": torch.tensor([int(y) for _, y in test_items], dtype=torch.int64),
              "teacher_forwards": int(len(keys) + len(test_items)), "runs": len(specs)}
    atomic_torch_save(record, out)
    return {"views": int(len(keys)), "test_images": len(test_items), "dim": int(feats.shape[1]),
            "bytes": Path(out).stat().st_size}


class TeacherCache:
    """A loaded cache (memory-mapped); :meth:`features` looks up packed view keys."""

    def __init__(self, path: str | Path, record: dict[str, Any]):
        self.path = Path(path)
        self.meta = {k: record[k] for k in META_KEYS}
        self.keys = record["keys"].numpy()
        self.features_table = record["features"]
        self.test_features = record["test_features"]
        self.test_labels = record["test_labels"]

    @classmethod
    def load(cls, path: str | Path, expected: dict[str, Any]) -> "TeacherCache":
        """Load ``path`` and check it against ``expected`` (:func:`cache_meta` of the run;
        ``image_size`` is not compared: the student may see the crop at another size)."""
        import torch

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"teacher cache not found: {path} (make it with `dho teacher cache`)")
        try:
            record = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
            raise CheckpointError(f"teacher cache {path} cannot be read (corrupt or truncated?): "
                                  f"{type(e).__name__}") from None
        if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("version") != VERSION:
            raise CheckpointError(f"{path} is not a dho teacher cache (format {FORMAT} v{VERSION})")
        for key in META_KEYS:
            if key != "image_size" and record.get(key) != expected[key]:
                raise ConfigError(f"teacher cache {path} was made for {key} = {record.get(key)!r}, this run has "
                                  f"{expected[key]!r}; rebuild it (dho teacher cache) or set teacher_cache: null")
        return cls(path, record)

    def features(self, keys):
        """Cached features (stored dtype, cpu) of packed view keys [B] -> [B, D]."""
        import torch

        from .data.views import unpack_keys

        k = keys.cpu().numpy().astype(np.int64)
        pos = np.searchsorted(self.keys, k)
        pos_c = np.minimum(pos, len(self.keys) - 1)
        missing = (len(self.keys) == 0) | (self.keys[pos_c] != k)
        if np.any(missing):
            e, p, i = (int(a[0]) for a in unpack_keys(k[missing][:1]))
            raise ConfigError(f"teacher cache {self.path} has no view (epoch {e}, pass {p}, image {i}): it was "
                              f"built for other runs; rebuild it with this run's spec")
        return self.features_table[torch.from_numpy(pos_c)]


def load_specs(files: Sequence[str]) -> list:
    """RunSpecs from files holding one spec mapping or a list of them (YAML/JSON)."""
    from .spec import RunSpec, _yaml_load

    specs = []
    for f in files:
        p = Path(f)
        if not p.is_file():
            raise ConfigError(f"spec file not found: {p}")
        d = _yaml_load(p.read_text())
        for i, item in enumerate(d if isinstance(d, list) else [d]):
            specs.append(RunSpec.from_dict(item, source=f"{p}[{i}]" if isinstance(d, list) else str(p)))
    return specs


def _cmd_cache(args) -> int:
    specs = load_specs(args.spec)
    info = build_cache(args.teacher, specs, args.out, image_size=args.image_size, dtype=args.dtype,
                       batch_size=args.batch_size, num_workers=args.num_workers, device=args.device,
                       progress=not args.quiet)
    print(f"{args.out}: {info['views']} training views + {info['test_images']} test images for {len(specs)} "
          f"run(s), dim {info['dim']}, {info['bytes'] / 2**20:.1f} MiB")
    return 0


def add_cli(tsub) -> None:
    """``dho teacher cache`` (added under ``dho teacher`` by :mod:`dho.models.cli`)."""
    c = tsub.add_parser("cache", help="teacher image features on every training view of a group of runs")
    c.add_argument("--teacher", required=True, help="teacher file (its image tower is what is cached)")
    c.add_argument("--spec", action="extend", nargs="+", required=True, metavar="FILE",
                   help="run spec file(s), each one spec or a list of specs; they must share dataset, "
                        "data_root, seed and crop_scale_min")
    c.add_argument("--image-size", type=int, default=None, help="crop resolution fed to the teacher "
                   "(default: the specs' image_size)")
    c.add_argument("--dtype", default="float16", choices=("float16", "float32"), help="stored dtype (float16)")
    c.add_argument("--batch-size", type=int, default=256, help="teacher batch size (256)")
    c.add_argument("--num-workers", type=int, default=0, help="data loader workers (0)")
    c.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    c.add_argument("--out", required=True, help="cache file to write")
    c.set_defaults(func=_cmd_cache)
